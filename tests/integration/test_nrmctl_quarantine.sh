#!/usr/bin/env bash
# nrmctl quarantine and status against intake and routing: a trigger the test adds to
# routing.cases refuses the cases of one region, so routing's consumer sets that report's
# case.opened aside after consumer.max_attempts (2 here); status counts it, `quarantine list
# routing` prints it (coordinators only), `quarantine retry routing ID` fails while the trigger
# is there and applies it once the trigger is gone; usage errors exit 2.
#
# Run by CTest with NRM_TEST_PGHOST, NRM_TEST_PGPORT, NRM_BUILD_DIR and NRM_SOURCE_DIR. Creates
# the database t_nrmctl_quarantine.
set -euo pipefail

source "${NRM_SOURCE_DIR:?}/tests/harness/system.sh"

DB=t_nrmctl_quarantine
SERVICES=(intake routing)
WAIT_S=30

sys_begin nrmctl-quarantine

run() {
  RC=0
  "$NRMCTL" --config "$WORK/config.json" "$@" >"$WORK/out" 2>"$WORK/err" || RC=$?
}

# replied CODE JQ-PROGRAM: the last run exited CODE and the program is true of its stdout.
replied() {
  [ "$RC" -eq "$1" ] && holds "$2" "$WORK/out"
}

sql() {
  psql -X -q -At -h "$NRM_TEST_PGHOST" -p "$NRM_TEST_PGPORT" -U postgres -d "$DB" -c "$1"
}

# report REGION NAME: a SubmitReport in proto3 JSON (two names: two cases, not one linked).
report() {
  jq -n --arg region "$1" --arg name "$2" --arg identified "$(($(date +%s) * 1000 - 3600000))" '
    {region: $region, identifiedAtMs: $identified,
     person: {fullName: $name},
     profile: {ageYears: 30, gender: "GENDER_FEMALE", nationality: "UA"},
     exploitationTypes: ["EXPLOITATION_TYPE_FORCED_LABOUR"], countryOfExploitation: "MA",
     needs: ["SERVICE_TYPE_SHELTER"], urgency: "URGENCY_URGENT", consentToReferral: true}'
}

sys_database "$DB"
"$NRMCTL" keygen "$WORK/keys.json"
sys_config "$DB" "$WORK/keys.json" "${SERVICES[@]}"
export NRM_CONSUMER_MAX_ATTEMPTS=2 NRM_CONSUMER_RETRY_BACKOFF_MS=50
for i in "${!SERVICES[@]}"; do sys_start "$i" "${SERVICES[$i]}"; done
for i in "${!SERVICES[@]}"; do sys_wait_ready "$i" "${SERVICES[$i]}"; done

run quarantine list
check "quarantine list without a service is a usage error" [ "$RC" -eq 2 ]
run quarantine retry routing x
check "quarantine retry with an id that is no number is a usage error" [ "$RC" -eq 2 ]
run quarantine show routing
check "an unknown subcommand is a usage error" [ "$RC" -eq 2 ]

sql "CREATE FUNCTION routing.test_refuse() RETURNS trigger LANGUAGE plpgsql AS \$\$
     BEGIN IF NEW.region = 'MA-01' THEN RAISE EXCEPTION 'refused by the test'; END IF;
     RETURN NEW; END \$\$;
     CREATE TRIGGER test_refuse BEFORE INSERT ON routing.cases
     FOR EACH ROW EXECUTE FUNCTION routing.test_refuse()"
report MA-01 "Quarantine Person One" >"$WORK/refused.json"
report MA-04 "Quarantine Person Two" >"$WORK/next.json"
run --cert "$(cert_of labour-ma-06)" submit "$WORK/refused.json"
REFUSED=$(jq -r .caseRef.caseId "$WORK/out")
run --cert "$(cert_of labour-ma-06)" submit "$WORK/next.json"
NEXT=$(jq -r .caseRef.caseId "$WORK/out")
check "two reports, two cases" [ "$REFUSED" != null -a "$NEXT" != null -a "$REFUSED" != "$NEXT" ]

deadline=$((SECONDS + WAIT_S))
until run status && grep -q "^quarantined events: 1 (routing 1)" "$WORK/out" ||
  [ "$SECONDS" -ge "$deadline" ]; do sleep 0.3; done
check "status shows routing's quarantined event" grep -q "^quarantined events: 1 (routing 1)" "$WORK/out"
check "the report behind it is applied" \
  [ "$(sql "SELECT count(*) FROM routing.cases WHERE case_id = '$NEXT'")" = 1 ]
run status --json
check "status --json: routing's count" \
  holds '.services[] | select(.service == "routing") | .quarantined == 1' "$WORK/out"

run quarantine list routing
check "quarantine list exits 0" [ "$RC" -eq 0 ]
check "quarantine list prints the set-aside case.opened" \
  holds -s 'length == 1 and .[0].stream == "intake" and .[0].topic == "case.opened" and
    .[0].attempts == 2 and (.[0].lastError | startswith("INTERNAL"))' "$WORK/out"
check "no identifying data in the list" bash -c "! grep -q 'Quarantine Person' '$WORK/out'"
ID=$(jq -r .id "$WORK/out")
run --cert "$(cert_of labour-ma-06)" quarantine list routing
check "an agency that is no coordinator is refused" \
  replied 1 '.status == "STATUS_PERMISSION_DENIED"'

run quarantine retry routing "$ID"
check "retry while the cause is there fails and says why" replied 1 '.status == "STATUS_INTERNAL"'
check "the event stays set aside" \
  [ "$(sql "SELECT count(*) FROM routing.consumer_quarantine")" = 1 ]
sql "DROP TRIGGER test_refuse ON routing.cases"
run quarantine retry routing "$ID"
check "retry once the cause is fixed applies it" \
  replied 0 '.status == "STATUS_OK" and .quarantineRetried.stream == "intake"'
check "the refused case is in routing now" \
  [ "$(sql "SELECT count(*) FROM routing.cases WHERE case_id = '$REFUSED'")" = 1 ]
run quarantine list routing
check "the quarantine is empty" [ "$RC" -eq 0 -a ! -s "$WORK/out" ]
run quarantine retry routing "$ID"
check "a second retry is NOT_FOUND" replied 1 '.status == "STATUS_NOT_FOUND"'
deadline=$((SECONDS + WAIT_S))
until run status && grep -q "^quarantined events: 0$" "$WORK/out" ||
  [ "$SECONDS" -ge "$deadline" ]; do sleep 0.3; done
check "status shows none" grep -q "^quarantined events: 0$" "$WORK/out"

sys_end
