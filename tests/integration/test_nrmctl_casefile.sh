#!/usr/bin/env bash
# nrmctl's case-file commands against real intake, routing, shelter (and notify) processes,
# each run under the certificate of the agency it speaks for: referrals (a provider's inbox, filters,
# pages, a stranger refused for a case), case (the case, its referrals, its bed and its
# timeline in one view; what a service refuses or cannot answer named under "missing", the rest
# still shown) and cases (intake's ListCases).
#
# Intake's GetCase and ListCases are checked where intake implements them; where it answers
# UNIMPLEMENTED the test checks that nrmctl says so and still prints the other parts.
#
# Run by CTest with NRM_TEST_PGHOST, NRM_TEST_PGPORT (the test cluster, fixture "pg"),
# NRM_BUILD_DIR and NRM_SOURCE_DIR. Creates the database t_nrmctl_casefile; everything else
# lives in a temporary directory removed at exit, with the service processes.
set -euo pipefail
# shellcheck disable=SC2016 # jq programs in single quotes: their $ are jq variables

source "${NRM_SOURCE_DIR:?}/tests/harness/system.sh"

DB=t_nrmctl_casefile
SERVICES=(intake routing shelter notify) # notify: so that status (and sys_settle) sees every service
REPORTER=police-ma-04
PROVIDER=legal-aid-ma-04
STRANGER=consulate-ng

sys_begin nrmctl-casefile

# run ARGS...: nrmctl with the test configuration; stdout in $WORK/out, stderr in $WORK/err,
# exit code in RC.
run() {
  RC=0
  "$NRMCTL" --config "$WORK/config.json" "$@" >"$WORK/out" 2>"$WORK/err" || RC=$?
}

# as AGENCY ARGS...: run as AGENCY (its certificate).
as() {
  local agency=$1
  shift
  run --cert "$(cert_of "$agency")" "$@"
}

# all_of SHELL-CONDITION: the condition (a string evaluated here) holds.
all_of() {
  eval "$1"
}

# lines: the number of lines of the last run's stdout.
lines() {
  wc -l <"$WORK/out"
}

# every JQ-PROGRAM: the last run exited 0 and the program is true of every line of stdout.
every() {
  [ "$RC" -eq 0 ] && jq -s -e "all(.[]; $1)" "$WORK/out" >/dev/null
}

# report NAME: a SubmitReport in proto3 JSON of an adult woman in MA-04 needing legal aid and
# shelter.
report() {
  jq -n --arg name "$1" --arg identified "$(($(date +%s) * 1000 - 3600000))" '
    {region: "MA-04", identifiedAtMs: $identified,
     person: {fullName: $name, dateOfBirth: "1990-04-05"},
     profile: {ageYears: 36, gender: "GENDER_FEMALE", nationality: "NG", languages: ["en"]},
     exploitationTypes: ["EXPLOITATION_TYPE_SEXUAL_EXPLOITATION"], countryOfExploitation: "MA",
     needs: ["SERVICE_TYPE_LEGAL_AID", "SERVICE_TYPE_SHELTER"], urgency: "URGENCY_URGENT",
     safetyRisk: "SAFETY_RISK_LOW", consentToReferral: true}'
}

# --- Setup ---------------------------------------------------------------------------------------

sys_database "$DB"
"$NRMCTL" keygen "$WORK/keys.json"
sys_config "$DB" "$WORK/keys.json" "${SERVICES[@]}"
for i in "${!SERVICES[@]}"; do sys_start "$i" "${SERVICES[$i]}"; done
for i in "${!SERVICES[@]}"; do sys_wait_ready "$i" "${SERVICES[$i]}"; done

for cmd in referrals case cases; do
  run "$cmd" --help
  check "nrmctl $cmd --help" grep -q "^usage: nrmctl.* $cmd" "$WORK/out"
  run help
  check "the general usage lists $cmd" grep -q "^  $cmd " "$WORK/out"
done

CASES=()
for name in "Amina Casefile Okafor" "Blessing Casefile Eze" "Chioma Casefile Obi"; do
  report "$name" >"$WORK/report.json"
  as "$REPORTER" submit "$WORK/report.json"
  CASES+=("$(jq -r .caseRef.caseId "$WORK/out")")
done
check "three cases opened" all_of '[ "${#CASES[@]}" -eq 3 ] && [ "${CASES[2]}" != null ]'
check "the system settles" sys_settle
CASE=${CASES[0]}

# --- referrals -----------------------------------------------------------------------------------

run referrals --all-pages
cp "$WORK/out" "$WORK/all.jsonl"
check "the coordinator lists every referral" all_of '[ "$RC" -eq 0 ] && [ "$(lines)" -ge 3 ]'
check "each referral is a JSON line with its fields" every \
  '.referralId and .caseId and .service and .state and .attempt and .region and .dueMs and .ruleId and .providerAgencyId'
as "$PROVIDER" referrals --all-pages
check "a provider's inbox holds its referrals only" every ".providerAgencyId == \"$PROVIDER\""
check "a provider's inbox holds all of them" [ "$(lines)" -eq \
  "$(jq -s "[.[] | select(.providerAgencyId == \"$PROVIDER\")] | length" "$WORK/all.jsonl")" ]
as "$PROVIDER" referrals --page-size 1
check "one page is one line" all_of '[ "$RC" -eq 0 ] && [ "$(lines)" -eq 1 ]'
check "the next page's token is said on stderr" grep -q -- "--page-token " "$WORK/err"
TOKEN=$(sed -n 's/.*--page-token \([^ ]*\).*/\1/p' "$WORK/err")
# shellcheck disable=SC2034 # read by the check below, inside its quoted condition
FIRST=$(jq -r .referralId "$WORK/out")
as "$PROVIDER" referrals --page-size 1 --page-token "$TOKEN"
check "the next page starts after the first" all_of '[ "$RC" -eq 0 ] && [ "$(jq -r .referralId "$WORK/out")" != "$FIRST" ]'
as "$REPORTER" referrals --case "$CASE"
check "the case manager lists the referrals of its case" every ".caseId == \"$CASE\""
run referrals --state pending --service LEGAL_AID
check "filters by state and service" every '.state == "pending" and .service == "SERVICE_TYPE_LEGAL_AID"'
run referrals --overdue
check "no referral is overdue" all_of '[ "$RC" -eq 0 ] && [ "$(lines)" -eq 0 ]'
run referrals --service NOT_A_SERVICE
check "an unknown service is a usage error" [ "$RC" -eq 2 ]
as "$STRANGER" referrals --case "$CASE"
check "a stranger is refused the referrals of a case" all_of '[ "$RC" -eq 1 ] &&
  holds '\''.status == "STATUS_PERMISSION_DENIED" and .errorField == "list_referrals.case_id"'\'' "$WORK/out"'
as "$STRANGER" referrals
check "a stranger's inbox is empty" all_of '[ "$RC" -eq 0 ] && [ "$(lines)" -eq 0 ]'

# --- case ----------------------------------------------------------------------------------------

run case "$CASE"
cp "$WORK/out" "$WORK/case.json"
check "case prints one JSON object" all_of '[ "$(lines)" -eq 1 ] && holds ".caseId == \"$CASE\"" "$WORK/case.json"'
check "case shows the case's referrals" holds \
  "(.referrals | length) >= 1 and all(.referrals[]; .caseId == \"$CASE\")" "$WORK/case.json"
check "case shows the case's bed" holds \
  "(.allocations | length) == 1 and .allocations[0].caseId == \"$CASE\"" "$WORK/case.json"
check "case shows the case's timeline from the three streams" holds '
  [.timeline[].topic] as $t | ($t | index("case.opened")) and ($t | index("referral.created"))
  and ($t | index("shelter.allocated"))' "$WORK/case.json"
check "the timeline is the case's only, in time order" holds "
  all(.timeline[]; .caseId == \"$CASE\") and
  ([.timeline[].occurredAtMs | tonumber] | . == sort)" "$WORK/case.json"
if holds 'any(.missing[]; .part == "case" and .status == "UNIMPLEMENTED")' "$WORK/case.json"; then
  echo "# intake does not implement GetCase yet: its part is checked as missing"
  check "case names intake's record as missing and exits 1" all_of '[ "$RC" -eq 1 ] &&
    holds '\''.missing == [{"part": "case", "service": "intake", "status": "UNIMPLEMENTED"}]'\'' "$WORK/case.json"'
else
  check "case shows intake's record of the case" all_of '[ "$RC" -eq 0 ] && holds "
    .case.caseId == \"$CASE\" and .case.region == \"MA-04\" and .missing == []" "$WORK/case.json"'
  check "the record carries no identifying data" bash -c "! grep -q 'Casefile' '$WORK/case.json'"
fi
run case "$CASE" --text
check "case --text is a readable view" all_of 'grep -q "^Case $CASE" "$WORK/out" &&
  grep -q "^Referrals (" "$WORK/out" && grep -q "^Allocations (1)" "$WORK/out" &&
  grep -q "^Timeline (" "$WORK/out"'
as "$PROVIDER" case "$CASE"
check "a provider's view has its referrals and names the timeline as refused" holds "
  all(.referrals[]; .providerAgencyId == \"$PROVIDER\") and
  any(.missing[]; .part == \"timeline\" and .status == \"PERMISSION_DENIED\")" "$WORK/out"
run case
check "case without a CASE_ID is a usage error" [ "$RC" -eq 2 ]

# shelter down: the rest is still shown, the bed is named as missing
kill "${PIDS[2]}"
wait "${PIDS[2]}" 2>/dev/null || true
PIDS[2]=""
run --timeout 1000 case "$CASE"
check "with shelter down, case exits 3" [ "$RC" -eq 3 ]
check "with shelter down, case still shows the referrals" holds '(.referrals | length) >= 1' "$WORK/out"
check "with shelter down, case names the bed and shelter's timeline as missing" holds '
  any(.missing[]; .part == "allocations" and .service == "shelter" and .status == "UNAVAILABLE")
  and any(.missing[]; .part == "timeline" and .service == "shelter")' "$WORK/out"

# --- cases ---------------------------------------------------------------------------------------

run cases --region MA-04 --open --urgency URGENT --all-pages
if [ "$RC" -eq 1 ] && holds '.status == "STATUS_UNIMPLEMENTED"' "$WORK/out"; then
  echo "# intake does not implement ListCases yet: the reply is checked"
  pass "cases prints intake's UNIMPLEMENTED reply and exits 1"
else
  check "cases lists the open MA-04 cases" every '.region == "MA-04" and .caseId'
  check "cases lists the three cases" [ "$(lines)" -eq 3 ]
fi
run cases --urgency SOMETIMES
check "an unknown urgency is a usage error" [ "$RC" -eq 2 ]

sys_end
