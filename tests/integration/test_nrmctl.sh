#!/usr/bin/env bash
# nrmctl against a real intake service: keygen, help, submit, request (idempotent repeat),
# input errors, ping (reachable, unreachable, environment override) and tail (catch-up with
# --from, live following, topic prefixes, --count, --idle-exit).
#
# Run by CTest with NRM_TEST_PGHOST, NRM_TEST_PGPORT (the test cluster, fixture "pg"),
# NRM_BUILD_DIR and NRM_SOURCE_DIR. Creates the database t_nrmctl; everything else lives in a
# temporary directory removed at exit, with the intake process.
set -euo pipefail

source "${NRM_SOURCE_DIR:?}/tests/harness/system.sh"

INTAKE=$NRM_BUILD_DIR/services/intake/nrm-intake
DB=t_nrmctl
TAIL_WAIT_S=20         # how long a background tail may take to finish
FULL_NAME="Amina Testcase Benali"

sys_begin nrmctl

# exited CODE [PATTERN]: the last run exited CODE (and its stdout matches PATTERN).
exited() {
  [ "$RC" -eq "$1" ] || return 1
  [ $# -lt 2 ] || grep -q -- "$2" "$WORK/out"
}

# complained CODE PATTERN: the last run exited CODE with PATTERN on stderr.
complained() {
  [ "$RC" -eq "$1" ] && grep -q -- "$2" "$WORK/err"
}

# lacks PATTERN FILE: FILE does not contain PATTERN.
lacks() {
  ! grep -q -- "$1" "$2"
}

# wait_for PID: waits (at most TAIL_WAIT_S) for a background nrmctl; its exit code in WAIT_RC.
wait_for() {
  local pid=$1 waited=0
  while kill -0 "$pid" 2>/dev/null && [ "$waited" -lt $((TAIL_WAIT_S * 10)) ]; do
    sleep 0.1
    waited=$((waited + 1))
  done
  kill "$pid" 2>/dev/null || true
  WAIT_RC=0
  wait "$pid" || WAIT_RC=$?
}

# run ARGS...: runs nrmctl with the test configuration; stdout in $WORK/out, stderr in
# $WORK/err, exit code in RC.
run() {
  RC=0
  "$NRMCTL" --config "$WORK/config.json" "$@" >"$WORK/out" 2>"$WORK/err" || RC=$?
}

# report REGION GENDER: a realistic SubmitReport in proto3 JSON.
report() {
  local identified=$(($(date +%s) * 1000 - 3600000))
  cat <<EOF
{
  "region": "$1",
  "identifiedAtMs": "$identified",
  "person": {"fullName": "$FULL_NAME", "dateOfBirth": "1999-04-12",
             "phone": "+212600000000", "aliases": ["Mina"]},
  "profile": {"ageYears": 25, "gender": "$2", "nationality": "NG",
              "languages": ["en", "fr"], "accompanyingChildren": 1},
  "exploitationTypes": ["EXPLOITATION_TYPE_SEXUAL_EXPLOITATION"],
  "countryOfExploitation": "MA",
  "needs": ["SERVICE_TYPE_SHELTER", "SERVICE_TYPE_MEDICAL"],
  "urgency": "URGENCY_URGENT",
  "safetyRisk": "SAFETY_RISK_HIGH",
  "consentToReferral": true,
  "consentToDataSharing": true,
  "notes": "Met at the bus station by $FULL_NAME's cousin"
}
EOF
}

# --- Setup: database, keyring, configuration, intake ----------------------------------------

sys_database "$DB"

RC=0
"$NRMCTL" keygen "$WORK/keys.json" >"$WORK/out" 2>"$WORK/err" || RC=$?
check "keygen writes a keyring" [ "$RC" -eq 0 -a -s "$WORK/keys.json" ]
check "the keyring is private" [ "$(stat -c %a "$WORK/keys.json")" = 600 ]
cp "$WORK/keys.json" "$WORK/keys.before"
RC=0
"$NRMCTL" keygen "$WORK/keys.json" >"$WORK/out" 2>"$WORK/err" || RC=$?
check "keygen refuses to overwrite (exit 2)" [ "$RC" -eq 2 ]
check "keygen left the keyring alone" cmp -s "$WORK/keys.json" "$WORK/keys.before"
cp "$WORK/keys.json" "$WORK/rotated.json"
RC=0
"$NRMCTL" keyrotate "$WORK/rotated.json" >"$WORK/out" 2>"$WORK/err" || RC=$?
check "keyrotate prints the new key id" [ "$RC" -eq 0 -a "$(cat "$WORK/out")" = 2 ]
check "keyrotate made it active" [ "$(jq .active "$WORK/rotated.json")" = 2 ]

API_PORT=$(free_port)
EVENTS_PORT=$(free_port)
DEAD_PORT=$(free_port)
jq --arg conninfo "host=$NRM_TEST_PGHOST port=$NRM_TEST_PGPORT dbname=$DB" \
  --arg keys "$WORK/keys.json" \
  --arg api "tcp://127.0.0.1:$API_PORT" --arg events "tcp://127.0.0.1:$EVENTS_PORT" \
  --arg dead "tcp://127.0.0.1:$DEAD_PORT" --arg demo "$NRM_SOURCE_DIR/deploy/demo" '
  (if has("include") then
     .include |= map(if startswith("/") then . else $demo + "/" + . end)
   else . end) |
  .database.conninfo = $conninfo | .crypto.keys_file = $keys | .heartbeat_ms = 500 |
  .services.intake.api = $api | .services.intake.events = $events |
  .services.intake.api_connect = $api | .services.intake.events_connect = $events |
  reduce ("routing", "shelter", "notify", "reintegration", "stats") as $s (.;
    .services[$s].api_connect = $dead | .services[$s].events_connect = $dead)
  ' "$NRM_SOURCE_DIR/deploy/demo/config.json" >"$WORK/config.json"
bash "$NRM_SOURCE_DIR/deploy/certify.sh" "$NRMCTL" "$WORK/config.json" "$WORK"
export NRM_CERT=$WORK/certs/coordinator.cert

"$INTAKE" --config "$WORK/config.json" >"$WORK/intake.log" 2>&1 &
INTAKE_PID=$!
PIDS+=("$INTAKE_PID")
deadline=$((SECONDS + START_TIMEOUT_S))
until "$NRMCTL" --config "$WORK/config.json" --timeout 1000 ping intake >/dev/null 2>&1; do
  if ! kill -0 "$INTAKE_PID" 2>/dev/null || [ "$SECONDS" -ge "$deadline" ]; then
    echo "intake did not start; its log:"
    cat "$WORK/intake.log"
    exit 1
  fi
  sleep 0.2
done

# --- Help -------------------------------------------------------------------------------------

for args in "help" "--help" "help tail"; do
  RC=0
  # shellcheck disable=SC2086 # split on purpose
  "$NRMCTL" $args >"$WORK/out" 2>"$WORK/err" || RC=$?
  check "nrmctl $args prints usage" exited 0 "^usage: nrmctl"
done
"$NRMCTL" --help >"$WORK/out"
check "the usage documents the exit codes" grep -q "3  service unavailable" "$WORK/out"
for cmd in submit request ping tail keygen keyrotate help; do
  RC=0
  "$NRMCTL" "$cmd" --help >"$WORK/out" 2>"$WORK/err" || RC=$?
  check "nrmctl $cmd --help" exited 0 "^usage: nrmctl.* $cmd"
done
run frobnicate
check "an unknown command exits 2" [ "$RC" -eq 2 ]
check "usage errors are one line on stderr" [ "$(wc -l <"$WORK/err")" -eq 1 ]
check "usage errors start with nrmctl:" grep -q "^nrmctl: " "$WORK/err"
run
check "no command exits 2" [ "$RC" -eq 2 ]
run tail --count
check "an option without value exits 2" [ "$RC" -eq 2 ]

# --- Submit -------------------------------------------------------------------------------------

report MA-06 GENDER_FEMALE >"$WORK/report.json"
run --cert "$(cert_of police-ma-06)" submit "$WORK/report.json"
CASE_ID=$(jq -r '.caseRef.caseId // empty' "$WORK/out" 2>/dev/null || true)
check "submit exits 0" [ "$RC" -eq 0 ]
check "submit prints STATUS_OK" [ "$(jq -r .status "$WORK/out")" = STATUS_OK ]
check "submit prints a caseId" [ -n "$CASE_ID" ]
check "submit prints one line" [ "$(wc -l <"$WORK/out")" -eq 1 ]

RC=0
report MA-01 GENDER_MALE | sed "s/$FULL_NAME/Yusuf Second Person/" |
  "$NRMCTL" --config "$WORK/config.json" --cert "$(cert_of police-ma-01)" submit - \
    >"$WORK/out" 2>"$WORK/err" || RC=$?
SECOND_CASE=$(jq -r '.caseRef.caseId // empty' "$WORK/out" 2>/dev/null || true)
check "submit reads stdin" [ "$RC" -eq 0 -a -n "$SECOND_CASE" ]

# --- Tail with --from ---------------------------------------------------------------------------

run tail --service intake --from 1 --count 1 case.
check "tail --from 1 --count 1 exits 0" [ "$RC" -eq 0 ]
check "tail prints one line" [ "$(wc -l <"$WORK/out")" -eq 1 ]
check "tail prints case.opened" [ "$(jq -r .topic "$WORK/out")" = case.opened ]
check "the event carries the caseId" [ "$(jq -r .caseId "$WORK/out")" = "$CASE_ID" ]
check "the event carries the profile" [ "$(jq -r .caseOpened.region "$WORK/out")" = MA-06 ]
check "the event does not carry the name" lacks "$FULL_NAME" "$WORK/out"
check "the event does not carry the notes" lacks "bus station" "$WORK/out"

run tail --service intake --from 1 --idle-exit 1500
check "tail --idle-exit exits 0" [ "$RC" -eq 0 ]
SEQS=$(jq -r .seq "$WORK/out" 2>/dev/null | tr '\n' ' ' || true)
EVENTS=$(wc -l <"$WORK/out")
check "tail --from 1 prints the stream in order, once" [ "$SEQS" = "$(seq -s ' ' 1 "$EVENTS") " ]
check "tail saw both cases" [ "$EVENTS" -ge 2 ]
check "tail never prints heartbeats" lacks stream.head "$WORK/out"

run tail --service intake --from 2 --idle-exit 1000
check "tail --from 2 starts at seq 2" [ "$(jq -r .seq "$WORK/out" | head -1)" = 2 ]
check "the second case is another case" [ "$SECOND_CASE" != "$CASE_ID" ]
run tail --service intake --from 1 --idle-exit 1000 referral.
check "a prefix that matches nothing prints nothing" [ "$RC" -eq 0 -a ! -s "$WORK/out" ]

# --- Tail live --------------------------------------------------------------------------------

# Follows live only: the first heartbeat (every 500 ms) positions it; then a new case.
"$NRMCTL" --config "$WORK/config.json" tail --service intake --count 1 --idle-exit 15000 \
  case.opened >"$WORK/live.out" 2>"$WORK/live.err" &
LIVE_PID=$!
# Catches up from 1 on all four (three unreachable, reported on stderr), then follows live
# until one more event than there is now.
"$NRMCTL" --config "$WORK/config.json" --timeout 500 tail --from 1 --count $((EVENTS + 1)) \
  --idle-exit 15000 >"$WORK/both.out" 2>"$WORK/both.err" &
BOTH_PID=$!
sleep 1.5
report MA-04 GENDER_FEMALE | sed "s/$FULL_NAME/Someone Else Entirely/" >"$WORK/third.json"
run --cert "$(cert_of hospital-ma-04)" submit "$WORK/third.json"
THIRD_CASE=$(jq -r '.caseRef.caseId // empty' "$WORK/out" 2>/dev/null || true)
check "a third submit works" [ "$RC" -eq 0 -a -n "$THIRD_CASE" ]
wait_for "$LIVE_PID"
LIVE_RC=$WAIT_RC
wait_for "$BOTH_PID"
BOTH_RC=$WAIT_RC
check "live tail exits 0 after --count" [ "$LIVE_RC" -eq 0 ]
check "live tail prints only the new case" \
  [ "$(jq -r .caseId "$WORK/live.out" | tr '\n' ' ')" = "$THIRD_CASE " ]
check "catch-up then live prints every event once" \
  [ "$BOTH_RC" -eq 0 -a "$(jq -r .seq "$WORK/both.out" | tr '\n' ' ')" = \
  "$(seq -s ' ' 1 $((EVENTS + 1))) " ]
check "catch-up then live ends with the new case" \
  [ "$(tail -1 "$WORK/both.out" | jq -r .caseId)" = "$THIRD_CASE" ]
check "tail of all four says which cannot catch up" grep -q "^nrmctl: routing: " "$WORK/both.err"

# --- Invalid input ------------------------------------------------------------------------------

report XX-99 GENDER_FEMALE >"$WORK/bad-region.json"
run submit "$WORK/bad-region.json"
check "an unknown region exits 1" [ "$RC" -eq 1 ]
check "the reply is still printed" [ "$(jq -r .status "$WORK/out")" = STATUS_INVALID_ARGUMENT ]
check "the reply names the field" [ "$(jq -r .errorField "$WORK/out")" = submit_report.region ]

report MA-06 GENDER_ROBOT >"$WORK/bad-gender.json"
run submit "$WORK/bad-gender.json"
check "an unknown enum value exits 2" [ "$RC" -eq 2 ]
check "the error names the field" complained 2 "submit_report\.profile\.gender"
check "the error is one line" [ "$(wc -l <"$WORK/err")" -eq 1 ]
check "nothing is sent on invalid input" [ ! -s "$WORK/out" ]

printf '{"region": "MA-06", "person": {"fullName": "%s" oops}}' "$FULL_NAME" >"$WORK/broken.json"
run submit "$WORK/broken.json"
check "invalid JSON exits 2" [ "$RC" -eq 2 ]
check "a JSON error does not quote the input" lacks "Amina\|Benali\|oops" "$WORK/err"

echo '{"region": "MA-06", "colour": "blue"}' >"$WORK/unknown.json"
run submit "$WORK/unknown.json"
check "an unknown field exits 2 and is named" complained 2 "submit_report\.colour"

run submit "$WORK/does-not-exist.json"
check "a missing file exits 2" [ "$RC" -eq 2 ]
for f in bad-region bad-gender broken; do
  run submit "$WORK/$f.json"
  check "stderr never shows the name ($f)" lacks "Amina\|Benali" "$WORK/err"
done

# --- Request ------------------------------------------------------------------------------------

REQUEST_ID=$(cat /proc/sys/kernel/random/uuid)
jq --arg id "$REQUEST_ID" '{requestId: $id, submitReport: .}' "$WORK/report.json" |
  sed "s/$FULL_NAME/Fatima Request Idem/" >"$WORK/request.json"
run --cert "$(cert_of ngo-ma-07)" request intake "$WORK/request.json"
FIRST=$(jq -r '.caseRef.caseId // empty' "$WORK/out" 2>/dev/null || true)
check "request exits 0 with a caseId" [ "$RC" -eq 0 -a -n "$FIRST" ]
check "request keeps the requestId" [ "$(jq -r .requestId "$WORK/out")" = "$REQUEST_ID" ]
run --cert "$(cert_of ngo-ma-07)" request intake "$WORK/request.json"
check "a repeated requestId gets the same caseId" \
  [ "$RC" -eq 0 -a "$(jq -r .caseRef.caseId "$WORK/out")" = "$FIRST" ]

jq 'del(.requestId) | .submitReport.person.fullName = "Other Person Noid"' \
  "$WORK/request.json" >"$WORK/noid.json"
run --cert "$(cert_of ngo-ma-07)" request intake "$WORK/noid.json"
check "request generates a missing requestId" \
  [ "$RC" -eq 0 -a "$(jq -r .requestId "$WORK/out" | wc -c)" -eq 37 ]

echo '{"fetch": {"stream": "routing", "fromSeq": "1"}}' >"$WORK/fetch.json"
run request intake "$WORK/fetch.json"
check "a refused request exits 1 and prints the reply" \
  [ "$RC" -eq 1 -a "$(jq -r .status "$WORK/out")" = STATUS_INVALID_ARGUMENT ]
echo '{"ping": {}, "pinG": 1}' >"$WORK/badreq.json"
run request intake "$WORK/badreq.json"
check "an invalid Request exits 2" [ "$RC" -eq 2 ]
run request "$WORK/request.json"
check "request without FILE exits 2" [ "$RC" -eq 2 ]

# --- Ping ---------------------------------------------------------------------------------------

run ping intake
check "ping intake exits 0" [ "$RC" -eq 0 ]
check "ping prints the Pong" [ "$(jq -r .service "$WORK/out")" = intake ]

START=$SECONDS
run --timeout 500 ping routing
check "ping of an unreachable service exits 3" [ "$RC" -eq 3 ]
check "it prints UNAVAILABLE" \
  [ "$(jq -c . "$WORK/out")" = '{"service":"routing","status":"UNAVAILABLE"}' ]
check "it gives up after the timeout" [ $((SECONDS - START)) -le 3 ]

START=$SECONDS
run --timeout 500 ping
check "ping of all six exits 3 when some are down" [ "$RC" -eq 3 ]
check "ping of all six (stats configured) prints six lines in order" \
  [ "$(jq -r .service "$WORK/out" | tr '\n' ' ')" = "intake routing shelter notify reintegration stats " ]
check "the six are pinged at once" [ $((SECONDS - START)) -le 3 ]

RC=0
NRM_SERVICES_INTAKE_API_CONNECT="tcp://127.0.0.1:$DEAD_PORT" "$NRMCTL" --config \
  "$WORK/config.json" --timeout 500 ping intake >"$WORK/out" 2>"$WORK/err" || RC=$?
check "the environment overrides the endpoint" [ "$RC" -eq 3 ]
run ping nosuchservice
check "ping of an unknown service exits 2" [ "$RC" -eq 2 ]
RC=0
"$NRMCTL" --config "$WORK/missing.json" ping >"$WORK/out" 2>"$WORK/err" || RC=$?
check "a missing configuration exits 2" [ "$RC" -eq 2 ]
run --timeout soon ping
check "an invalid --timeout exits 2" [ "$RC" -eq 2 ]

check "intake is still running" kill -0 "$INTAKE_PID"

if [ "$FAILED" -gt 0 ]; then
  echo "intake log (last lines):"
  tail -20 "$WORK/intake.log"
fi
sys_end
