#!/usr/bin/env bash
# nrmctl's operator commands against the four services: status (table, --json fields, lag,
# "coordinator only", a service not configured, exit 3 with a service down), deliveries (list,
# states, --max, retry, usage errors, an agency that is not a coordinator sees only its own
# deliveries and may not retry another agency's) and top (--once snapshot counts against what was submitted, per-service, a
# plain-text screen when stdout is not a terminal, exit 3 when a stream cannot be caught up).
#
# Notify runs with notify.max_attempts = 1 and webhooks pointing at a port nobody listens on,
# so that deliveries are dead-lettered at once and can be listed and retried.
#
# Run by CTest with NRM_TEST_PGHOST, NRM_TEST_PGPORT (the test cluster, fixture "pg"),
# NRM_BUILD_DIR and NRM_SOURCE_DIR. Creates the database t_nrmctl_ops; everything else lives
# in a temporary directory removed at exit, with the service processes.
set -euo pipefail
# shellcheck disable=SC2016 # jq programs in single quotes: their $ are jq variables

source "${NRM_SOURCE_DIR:?}/tests/harness/system.sh"

DB=t_nrmctl_ops
SERVICES=(intake routing shelter notify)
FAILED_WAIT_S=20    # how long notify may take to dead-letter the first deliveries
TOP_LIVE_S=2        # how long the live top runs before Ctrl-C
STOP_WAIT_S=10      # how long a stopped service or top may take to exit
FULL_NAME="Oksana Opstest Halyna"

sys_begin nrmctl-ops

# printed CODE PATTERN: the last run exited CODE and its stdout matches PATTERN.
printed() {
  [ "$RC" -eq "$1" ] && grep -q -- "$2" "$WORK/out"
}

# answered JQ-PROGRAM: the last run exited 0 and the program is true of its stdout.
answered() {
  [ "$RC" -eq 0 ] && holds "$1" "$WORK/out"
}

# run ARGS...: nrmctl with the test configuration; stdout in $WORK/out, stderr in $WORK/err,
# exit code in RC.
run() {
  RC=0
  "$NRMCTL" --config "$WORK/config.json" "$@" >"$WORK/out" 2>"$WORK/err" || RC=$?
}

# start SERVICE: starts the service in the background (its PID in PIDS at its index).
start() {
  local i
  for i in "${!SERVICES[@]}"; do
    if [ "${SERVICES[$i]}" = "$1" ]; then sys_start "$i" "$1"; fi
  done
}

# wait_pid PID: waits (at most STOP_WAIT_S) for a background process; its exit code in WAIT_RC.
wait_pid() {
  local pid=$1 waited=0
  while kill -0 "$pid" 2>/dev/null && [ "$waited" -lt $((STOP_WAIT_S * 10)) ]; do
    sleep 0.1
    waited=$((waited + 1))
  done
  kill -KILL "$pid" 2>/dev/null || true
  WAIT_RC=0
  wait "$pid" || WAIT_RC=$?
}

# report REGION AGE NAME: a SubmitReport in proto3 JSON (shelter and medical care needed).
report() {
  jq -n --arg region "$1" --argjson age "$2" --arg name "$3" \
    --arg identified "$(($(date +%s) * 1000 - 3600000))" '
    {region: $region, identifiedAtMs: $identified,
     person: {fullName: $name, phone: "+212600000001"},
     profile: {ageYears: $age, gender: "GENDER_FEMALE", nationality: "UA", languages: ["en"]},
     exploitationTypes: ["EXPLOITATION_TYPE_FORCED_LABOUR"], countryOfExploitation: "MA",
     needs: ["SERVICE_TYPE_SHELTER", "SERVICE_TYPE_MEDICAL"], urgency: "URGENCY_URGENT",
     safetyRisk: "SAFETY_RISK_MEDIUM", consentToReferral: true, consentToDataSharing: true,
     notes: ("Reported by a neighbour of " + $name)}'
}

# --- Setup: database, keyring, configuration, the four services -------------------------------

sys_database "$DB"
"$NRMCTL" keygen "$WORK/keys.json"
DEAD_PORT=$(free_port)
# the demonstration subscriptions, their webhooks and SMTP relay on a port nobody listens on
# (on loopback, which notify refuses unless allow-listed)
jq --arg dead "http://127.0.0.1:$DEAD_PORT/nrm" --arg smtp "smtp://127.0.0.1:$DEAD_PORT" '
  .subscriptions |= map(if .channel == "webhook" then .address = $dead else . end) |
  .notify.smtp.url = $smtp | .notify.webhook_allow = ["127.0.0.1/32"]' "$NRM_SOURCE_DIR/deploy/demo/notify.json" >"$WORK/notify.json"
SYS_CONFIG_FILTER=".include |= map(if endswith(\"/notify.json\") then \"$WORK/notify.json\" else . end)"
sys_config "$DB" "$WORK/keys.json" "${SERVICES[@]}"
export NRM_NOTIFY_MAX_ATTEMPTS=1 # a delivery that fails once is a dead letter at once
for s in "${SERVICES[@]}"; do start "$s"; done
for i in "${!SERVICES[@]}"; do sys_wait_ready "$i" "${SERVICES[$i]}"; done

# --- Help ---------------------------------------------------------------------------------------

for cmd in status deliveries top; do
  run "$cmd" --help
  check "nrmctl $cmd --help" printed 0 "^usage: nrmctl.* $cmd"
  run help
  check "the general usage lists $cmd" grep -q "^  $cmd " "$WORK/out"
done
run status --help
check "status documents its exit codes" grep -q "3 one does not answer" "$WORK/out"

# --- The reports ----------------------------------------------------------------------------

# four persons in three regions, one of them reported a second time, one a minor
REGIONS=(MA-06 MA-06 MA-04 MA-01 MA-04)
AGES=(31 27 16 44 31)
NAMES=("$FULL_NAME" "Iryna Opstest Bondar" "Sofiia Opstest Melnyk" "Tetiana Opstest Kravets"
  "$FULL_NAME")
for i in "${!REGIONS[@]}"; do
  report "${REGIONS[$i]}" "${AGES[$i]}" "${NAMES[$i]}" >"$WORK/report.json"
  run --cert "$(cert_of police-ma-06)" submit "$WORK/report.json"
  check "report $((i + 1)) accepted" [ "$RC" -eq 0 ]
done
check "the last report is linked" [ "$(jq -r .caseRef.linked "$WORK/out")" = true ]
LINKED_CASE=$(jq -r .caseRef.caseId "$WORK/out")
check "the system settles" sys_settle

# --- Status -----------------------------------------------------------------------------------

run status
check "status exits 0 when everything is healthy" [ "$RC" -eq 0 ]
check "status prints a table header" grep -q "^SERVICE  *HEALTH  *DATABASE  *HEAD" "$WORK/out"
check "status shows the four services ok" \
  [ "$(grep -c -E '^(intake|routing|shelter|notify) +ok +ok +[0-9]+' "$WORK/out")" -eq 4 ]
check "status shows routing's lag on intake" grep -q "^routing .* intake 0" "$WORK/out"
check "status shows the waitlist" grep -q "^shelter waitlist: *0$" "$WORK/out"
check "status shows the failed deliveries" grep -q "^failed deliveries: *[0-9]" "$WORK/out"
check "status prints no case id" [ "$(grep -c -E '[0-9a-f]{8}-[0-9a-f]{4}-' "$WORK/out")" -eq 0 ]

run status --json
cp "$WORK/out" "$WORK/status.json"
check "status --json exits 0" [ "$RC" -eq 0 ]
check "status --json is one line" [ "$(wc -l <"$WORK/status.json")" -eq 1 ]
check "status --json: healthy" holds '.healthy == true' "$WORK/status.json"
check "status --json: the four services in order" \
  holds '[.services[].service] == ["intake", "routing", "shelter", "notify"]' "$WORK/status.json"
check "status --json: each service's fields" holds '
  all(.services[]; .healthy == true and .status == "OK" and .databaseOk == true and
      (.streamHead | type) == "number" and (.version | type) == "string" and
      (.consumers | type) == "array")' "$WORK/status.json"
check "status --json: intake's head counts the cases" \
  holds '.services[0].streamHead == 5' "$WORK/status.json"
check "status --json: consumers per stream with checkpoint, head and lag" holds '
  (.services | map({key: .service, value: [.consumers[].stream] | sort}) | from_entries) ==
    {intake: ["routing"], routing: ["intake", "shelter"], shelter: ["intake", "routing"],
     notify: ["intake", "routing", "shelter"]} and
  all(.services[].consumers[]; .lag == 0 and .checkpoint == .head and
      (.checkpoint | type) == "number")' "$WORK/status.json"
check "status --json: a consumer's head is its owner's" holds '
  (.services | map({key: .service, value: .streamHead}) | from_entries) as $heads |
  all(.services[].consumers[]; .head == $heads[.stream])' "$WORK/status.json"
check "status --json: waitlist and failed deliveries are counts" \
  holds '(.shelterWaitlist | type) == "number" and (.failedDeliveries | type) == "number"' \
  "$WORK/status.json"

run --cert "$(cert_of police-ma-06)" status --json
check "status as an agency that is no coordinator exits 0" [ "$RC" -eq 0 ]
check "... counting its own failed deliveries and saying the waitlist is not for it" \
  holds '(.failedDeliveries | type) == "number" and .shelterWaitlist == null and
         .shelterWaitlistError == "coordinator only"' "$WORK/out"
run --cert "$(cert_of police-ma-06)" status
check "... in the table too" grep -q "^shelter waitlist: *coordinator only$" "$WORK/out"

RC=0
NRM_SERVICES_SHELTER_API_CONNECT="" "$NRMCTL" --config "$WORK/config.json" status --json \
  >"$WORK/out" 2>"$WORK/err" || RC=$?
check "a service without endpoint is skipped" \
  answered '[.services[].service] == ["intake", "routing", "notify"]'
check "... and its waitlist is not configured" \
  holds '.shelterWaitlist == null and .shelterWaitlistError == "not configured"' "$WORK/out"
run status --verbose
check "status with an unknown option exits 2" [ "$RC" -eq 2 ]

# --- Deliveries -------------------------------------------------------------------------------

deadline=$((SECONDS + FAILED_WAIT_S))
until run deliveries && [ "$RC" -eq 0 ] && [ -s "$WORK/out" ]; do
  [ "$SECONDS" -lt "$deadline" ] || break
  sleep 0.5
done
cp "$WORK/out" "$WORK/failed.jsonl"
FAILED_COUNT=$(wc -l <"$WORK/failed.jsonl")
check "deliveries lists the dead letters" [ "$RC" -eq 0 -a "$FAILED_COUNT" -ge 1 ]
check "deliveries prints Delivery objects, all failed" \
  holds -s 'all(.[]; .state == "failed" and (.deliveryId | length) == 36 and
                     (.attempts | type) == "number")' "$WORK/failed.jsonl"
run deliveries --max 1
check "deliveries --max 1 prints one" [ "$RC" -eq 0 -a "$(wc -l <"$WORK/out")" -eq 1 ]
run deliveries --state all --max 1000
check "deliveries --state all lists every state" \
  [ "$RC" -eq 0 -a "$(wc -l <"$WORK/out")" -ge "$FAILED_COUNT" ]
run deliveries --state undeliverable
check "deliveries --state undeliverable lists only those" \
  holds -s 'length > 0 and all(.[]; .state == "undeliverable" and (.attempts // 0) == 0)' \
  "$WORK/out"
for args in "--state lost" "--max 0" "--max 1001" "--max" "--state" "--frobnicate" "retry" \
  "retry not-a-uuid" "retry $(jq -r .deliveryId "$WORK/failed.jsonl" | head -1) 1234"; do
  # shellcheck disable=SC2086 # split on purpose
  run deliveries $args
  check "deliveries $args exits 2, sends nothing" [ "$RC" -eq 2 -a ! -s "$WORK/out" ]
  check "... with one line on stderr" [ "$(wc -l <"$WORK/err")" -eq 1 ]
done

run --cert "$(cert_of police-ma-06)" deliveries --state all --max 1000
check "deliveries as an agency that is no coordinator exits 0" [ "$RC" -eq 0 ]
check "... listing only its own deliveries" \
  holds -s 'all(.[]; .agencyId == "police-ma-06")' "$WORK/out"
FIRST_FAILED=$(jq -r .deliveryId "$WORK/failed.jsonl" | head -1)
OTHERS_FAILED=$(jq -r 'select(.agencyId != "police-ma-06") | .deliveryId' "$WORK/failed.jsonl" |
  head -1)
check "a failed delivery of another agency exists" [ -n "$OTHERS_FAILED" ]
run --cert "$(cert_of police-ma-06)" deliveries retry "$OTHERS_FAILED"
check "retry of another agency's delivery is PERMISSION_DENIED" \
  [ "$RC" -eq 1 -a "$(jq -r .status "$WORK/out")" = STATUS_PERMISSION_DENIED ]

run status --json
check "status counts the failed deliveries" \
  [ "$(jq .failedDeliveries "$WORK/out")" -ge "$FAILED_COUNT" ]

run deliveries retry "$FIRST_FAILED"
check "retry of a failed delivery exits 0" [ "$RC" -eq 0 ]
check "... printing one OK reply" \
  [ "$(wc -l <"$WORK/out")" -eq 1 -a "$(jq -r .status "$WORK/out")" = STATUS_OK ]
UNKNOWN=$(cat /proc/sys/kernel/random/uuid)
run deliveries retry "$UNKNOWN"
check "retry of an unknown delivery exits 1 (NOT_FOUND)" \
  [ "$RC" -eq 1 -a "$(jq -r .status "$WORK/out")" = STATUS_NOT_FOUND ]
SECOND_FAILED=$(jq -r .deliveryId "$WORK/failed.jsonl" | sed -n 2p)
if [ -n "$SECOND_FAILED" ]; then
  run deliveries retry "$SECOND_FAILED" "$UNKNOWN"
  check "retry of two prints two replies, exits 1 when one is not OK" \
    [ "$RC" -eq 1 -a "$(jq -r .status "$WORK/out" | tr '\n' ' ')" = "STATUS_OK STATUS_NOT_FOUND " ]
fi
UNDELIVERABLE=$(NRM_CERT=$(cert_of coordinator) "$NRMCTL" --config "$WORK/config.json" deliveries \
  --state undeliverable --max 1 | jq -r .deliveryId)
run deliveries retry "$UNDELIVERABLE"
check "retry of a delivery that did not fail is FAILED_PRECONDITION" \
  [ "$RC" -eq 1 -a "$(jq -r .status "$WORK/out")" = STATUS_FAILED_PRECONDITION ]

# --- A bed asked for again (refusals only: nothing changes, top's counts stay) -----------------

run request-bed
check "request-bed without a case id is a usage error" [ "$RC" -eq 2 ]
run request-bed no-such-case
check "request-bed of a case shelter never had a request for exits 1 (NOT_FOUND)" \
  [ "$RC" -eq 1 -a "$(jq -r .status "$WORK/out")" = STATUS_NOT_FOUND -a \
    "$(jq -r .errorField "$WORK/out")" = request_bed.case_id ]
run --cert "$(cert_of police-ma-06)" request-bed "$LINKED_CASE"
check "request-bed by the case manager while the case holds or waits for a bed: FAILED_PRECONDITION" \
  [ "$RC" -eq 1 -a "$(jq -r .status "$WORK/out")" = STATUS_FAILED_PRECONDITION ]
run --cert "$(cert_of iom-ma)" request-bed "$LINKED_CASE"
check "request-bed by an agency with no relation to the case: PERMISSION_DENIED" \
  [ "$RC" -eq 1 -a "$(jq -r .status "$WORK/out")" = STATUS_PERMISSION_DENIED ]

# --- Possible duplicates (refusals only: nothing changes) ------------------------------------

run duplicates resolve "$LINKED_CASE"
check "duplicates resolve without both ids and --confirm or --dismiss is a usage error" \
  [ "$RC" -eq 2 ]
run duplicates resolve "$LINKED_CASE" no-such-case --confirm
check "duplicates resolve against an unknown case exits 1 (NOT_FOUND, its field)" \
  [ "$RC" -eq 1 -a "$(jq -r .status "$WORK/out")" = STATUS_NOT_FOUND -a \
    "$(jq -r .errorField "$WORK/out")" = resolve_duplicate.other_case_id ]
run duplicates resolve "$LINKED_CASE" "$LINKED_CASE" --dismiss
check "duplicates resolve of a pair never proposed: FAILED_PRECONDITION" \
  [ "$RC" -eq 1 -a "$(jq -r .status "$WORK/out")" = STATUS_FAILED_PRECONDITION ]
run --cert "$(cert_of police-ma-06)" duplicates resolve "$LINKED_CASE" "$LINKED_CASE" --dismiss
check "duplicates resolve by a case manager: PERMISSION_DENIED" \
  [ "$RC" -eq 1 -a "$(jq -r .status "$WORK/out")" = STATUS_PERMISSION_DENIED ]

# --- Top --------------------------------------------------------------------------------------

check "the system settles again" sys_settle
run tail --from 1 --idle-exit 1500
cp "$WORK/out" "$WORK/all.jsonl"
run top --once
cp "$WORK/out" "$WORK/top.json"
check "top --once exits 0" [ "$RC" -eq 0 ]
check "top --once prints one JSON object" [ "$(wc -l <"$WORK/top.json")" -eq 1 ]
check "top --once: the five parts" \
  holds 'keys == ["deliveries", "openReferrals", "regions", "shelters", "topics"]' \
  "$WORK/top.json"
check "top --once: the cases submitted" holds '
  .topics["case.opened"] == {total: 4, lastMinute: 4} and
  .topics["case.linked"] == {total: 1, lastMinute: 1}' "$WORK/top.json"
check "top --once: every topic of the streams, counted once" holds -s '
  (.[0].topics | map_values(.total)) ==
  (.[1:] | group_by(.topic) | map({key: .[0].topic, value: length}) | from_entries)' \
  "$WORK/top.json" "$WORK/all.jsonl"
check "top --once: events per region (cases, links, allocations, referrals)" holds -s '
  .[0].regions as $top | .[1:] as $events |
  ($events | map(select(.topic == "case.opened")) | map({key: .caseId, value:
    .caseOpened.region}) | from_entries) as $region_of |
  ($events | map(if .topic == "case.opened" then .caseOpened.region
                 elif .topic == "case.linked" then .caseLinked.region
                 elif .topic == "shelter.allocated" then .shelterAllocated.region
                 elif (.topic | startswith("referral.")) then $region_of[.caseId]
                 else empty end) | group_by(.) | map({key: .[0], value: length})
   | from_entries) == $top and $top["MA-06"] >= 3' "$WORK/top.json" "$WORK/all.jsonl"
check "top --once: every referral still pending, by service" holds -s '
  (.[0].openReferrals | map_values(.pending)) ==
  (.[1:] | map(select(.topic == "referral.created") | .referralCreated.service) |
   group_by(.) | map({key: .[0], value: length}) | from_entries) and
  all(.[0].openReferrals[]; .accepted == 0 and .overdue == 0)' \
  "$WORK/top.json" "$WORK/all.jsonl"
check "top --once: the minor is referred to child protection" \
  holds '.openReferrals.SERVICE_TYPE_CHILD_PROTECTION.pending == 1' "$WORK/top.json"
check "top --once: shelters of the demonstration, beds held for the persons" holds -s '
  .[0].shelters.total.shelters == (.[1].shelters | length) and
  .[0].shelters.total.capacity == ([.[1].shelters[].capacity] | add) and
  .[0].shelters.total.held == ([.[2:][] | select(.topic == "shelter.allocated") |
                                .shelterAllocated.beds] | add) and
  .[0].shelters.total.occupied == 0 and .[0].shelters.waitlist == 0 and
  .[0].shelters.regions["MA-06"].shelters == 4' \
  "$WORK/top.json" "$NRM_SOURCE_DIR/deploy/demo/shelter.json" "$WORK/all.jsonl"
check "top --once: failed deliveries and the rate of notifications" holds '
  .deliveries.failed >= 1 and .deliveries.failedPerMinute >= 1 and
  .deliveries.failedPerMinute == .topics["notification.failed"].lastMinute and
  .deliveries.deliveredPerMinute == 0' "$WORK/top.json"
check "top --once prints counts only, never a case id" \
  [ "$(grep -c -E '[0-9a-f]{8}-[0-9a-f]{4}-' "$WORK/top.json")" -eq 0 ]

run --cert "$(cert_of police-ma-06)" top --once
check "top --once as an agency that may not read the streams cannot catch up (exit 3)" \
  [ "$RC" -eq 3 ]
check "... because its Fetch is refused" grep -q "fetch refused: PERMISSION_DENIED" "$WORK/err"
run top --once --service intake --service intake
check "top --once --service intake: intake's topics only, once" \
  holds '(.topics | keys) == ["case.linked", "case.opened"] and
         .topics["case.opened"].total == 4' "$WORK/out"
for args in "--interval 50" "--interval" "--service" "--service a.b" "--frobnicate" "extra"; do
  # shellcheck disable=SC2086 # split on purpose
  run top $args
  check "top $args exits 2" [ "$RC" -eq 2 ]
done

# Live, with stdout not a terminal: plain text screens until Ctrl-C (SIGINT).
"$NRMCTL" --config "$WORK/config.json" top --interval 200 >"$WORK/live.out" \
  2>"$WORK/live.err" </dev/null &
TOP_PID=$!
sleep "$TOP_LIVE_S"
kill -INT "$TOP_PID"
wait_pid "$TOP_PID"
check "live top exits 0 on Ctrl-C" [ "$WAIT_RC" -eq 0 ]
check "live top draws several screens" [ "$(grep -c '^EVENTS BY TOPIC' "$WORK/live.out")" -ge 3 ]
check "live top shows the counts" grep -q "^  case.opened  *4  *4$" "$WORK/live.out"
check "live top shows the shelters" grep -q "^  all regions " "$WORK/live.out"
check "live top writes no ANSI code when stdout is not a terminal" \
  [ "$(grep -c $'\033' "$WORK/live.out")" -eq 0 ]
check "live top prints no case id" \
  [ "$(grep -c -E '[0-9a-f]{8}-[0-9a-f]{4}-' "$WORK/live.out")" -eq 0 ]

# --- A service down ---------------------------------------------------------------------------

kill -TERM "${PIDS[1]}" # routing
wait_pid "${PIDS[1]}"
check "routing stops on SIGTERM" [ "$WAIT_RC" -eq 0 ]
START=$SECONDS
run --timeout 500 status
check "status exits 3 when a service does not answer" [ "$RC" -eq 3 ]
check "status says so in the table" grep -q "^routing  *unavailable " "$WORK/out"
check "status does not wait more than its timeout" [ $((SECONDS - START)) -le 3 ]
run --timeout 500 status --json
check "status --json exits 3 too" [ "$RC" -eq 3 ]
check "status --json: routing unavailable, the others healthy" holds '
  .healthy == false and
  (.services | map({key: .service, value: .status}) | from_entries) ==
    {intake: "OK", routing: "UNAVAILABLE", shelter: "OK", notify: "OK"} and
  (.services[1] | has("streamHead") | not)' "$WORK/out"
check "status --json: routing's stream measured by what its consumers know" \
  holds '[.services[].consumers // [] | .[] | select(.stream == "routing") | .lag] == [0, 0, 0]' \
  "$WORK/out"
run --timeout 500 top --once
check "top --once exits 3 when a stream cannot be caught up" [ "$RC" -eq 3 ]
check "... and still prints its snapshot" holds '.topics["case.opened"].total == 4' "$WORK/out"
start routing
check "routing is back" sys_settle
run status
check "status exits 0 again" [ "$RC" -eq 0 ]

# Nothing identifying on any output.
for f in "$WORK"/*.log "$WORK/all.jsonl" "$WORK/top.json" "$WORK/live.out" "$WORK/live.err"; do
  check "no name in $(basename "$f")" \
    [ "$(grep -c -e "$FULL_NAME" -e "Opstest" -e "neighbour" "$f")" -eq 0 ]
done

if [ "$FAILED" -gt 0 ]; then
  for s in "${SERVICES[@]}"; do
    echo "$s log (last lines):"
    tail -5 "$WORK/$s.log"
  done
fi
sys_end
