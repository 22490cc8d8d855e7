#!/usr/bin/env bash
# nrmctl agencies against real intake and routing with CURVE: the coordinator onboards a partner
# whose certificate it made (upsert with flags), lists it, the partner reports at once with its
# certificate and may not manage the directory itself, a bad entry from a JSON file is refused
# with its field, and deactivate revokes the partner (a new connection with its key gets no
# session, routing refuses it too) while list --all still shows it, inactive.
#
# Run by CTest with NRM_TEST_PGHOST, NRM_TEST_PGPORT (the test cluster, fixture "pg"),
# NRM_BUILD_DIR and NRM_SOURCE_DIR. Creates the database t_nrmctl_agencies; everything else lives
# in a temporary directory removed at exit, with the service processes.
set -euo pipefail
# shellcheck disable=SC2016 # jq programs in single quotes: their $ are jq variables

source "${NRM_SOURCE_DIR:?}/tests/harness/system.sh"

DB=t_nrmctl_agencies
SERVICES=(intake routing)
PARTNER=partner-cli
KNOWN_WAIT_S=10 # how long routing may take to learn or forget the partner

sys_begin nrmctl-agencies

# run ARGS...: nrmctl with the test configuration; stdout in $WORK/out, stderr in $WORK/err,
# exit code in RC.
run() {
  RC=0
  "$NRMCTL" --config "$WORK/config.json" "$@" >"$WORK/out" 2>"$WORK/err" || RC=$?
}

# as_partner ARGS...: run, with the partner's certificate.
as_partner() {
  run --cert "$WORK/partner/$PARTNER.cert" --agency "$PARTNER" --timeout 2000 "$@"
}

# answered JQ-PROGRAM: the last run exited 0 and the program is true of its stdout.
answered() {
  [ "$RC" -eq 0 ] && holds "$1" "$WORK/out"
}

# refused CODE STATUS FIELD: the last run exited CODE with a Reply of STATUS naming FIELD.
refused() {
  [ "$RC" -eq "$1" ] && holds --arg s "$2" --arg f "$3" '.status == $s and .errorField == $f' \
    "$WORK/out"
}

# report NAME: a SubmitReport in proto3 JSON.
report() {
  jq -n --arg name "$1" --arg identified "$(($(date +%s) * 1000 - 3600000))" '
    {region: "MA-06", identifiedAtMs: $identified, person: {fullName: $name},
     profile: {ageYears: 30, gender: "GENDER_FEMALE", nationality: "UA"},
     exploitationTypes: ["EXPLOITATION_TYPE_FORCED_LABOUR"], countryOfExploitation: "MA",
     needs: ["SERVICE_TYPE_MEDICAL"], urgency: "URGENCY_ROUTINE", safetyRisk: "SAFETY_RISK_LOW",
     consentToReferral: true}'
}

# routing_says STATUS: within KNOWN_WAIT_S, the partner's ListReferrals on routing gets STATUS
# ("none": no answer at all).
routing_says() {
  local deadline=$((SECONDS + KNOWN_WAIT_S)) got
  echo '{"listReferrals": {}}' >"$WORK/list.json"
  while [ "$SECONDS" -lt "$deadline" ]; do
    as_partner request routing "$WORK/list.json"
    got=$(jq -r '.status // "STATUS_OK"' "$WORK/out" 2>/dev/null || echo none)
    [ "$RC" -eq 3 ] && got=none
    [ "$got" = "$1" ] && return 0
    sleep 0.2
  done
  return 1
}

sys_database "$DB"
"$NRMCTL" keygen "$WORK/keys.json"
sys_config "$DB" "$WORK/keys.json" "${SERVICES[@]}"
for i in "${!SERVICES[@]}"; do sys_start "$i" "${SERVICES[$i]}"; done
for i in "${!SERVICES[@]}"; do sys_wait_ready "$i" "${SERVICES[$i]}"; done

run agencies --help
check "nrmctl agencies --help" grep -q "^usage: nrmctl.* agencies list" "$WORK/out"
run help
check "the general usage lists agencies" grep -q "^  agencies " "$WORK/out"

# --- Onboarding --------------------------------------------------------------------------------

mkdir "$WORK/partner"
"$NRMCTL" cert new "$PARTNER" "$WORK/partner" >/dev/null
run agencies upsert --id "$PARTNER" --type NGO --key-file "$WORK/partner/$PARTNER.cert" \
  --name "Partner organisation"
check "the coordinator registers a partner" \
  answered '.agencyRef.agencyId == "partner-cli" and .agencyRef.revision == "1"'
run agencies list
check "the list shows the partner from the directory and the file's agencies" \
  holds -s --arg key "$("$NRMCTL" cert key "$WORK/partner/$PARTNER.cert")" '
    any(.[]; .agencyId == "partner-cli" and .source == "directory" and .active and
               .publicKeys == [$key] and .type == "AGENCY_TYPE_NGO") and
    any(.[]; .agencyId == "coordinator" and .source == "configuration")' "$WORK/out"
report "Agencies Person Farida" >"$WORK/report.json"
as_partner submit "$WORK/report.json"
check "the partner reports at once with its certificate" answered '.caseRef.caseId | length > 0'
as_partner agencies list
check "the partner may not list the directory" refused 1 STATUS_PERMISSION_DENIED list_agencies
check "routing knows the partner within ${KNOWN_WAIT_S} s" routing_says STATUS_OK

# --- Bad input ----------------------------------------------------------------------------------

jq -n '{agencyId: "partner-bad", type: "AGENCY_TYPE_NGO", publicKeys: ["short"], active: true}' \
  >"$WORK/bad.json"
run agencies upsert "$WORK/bad.json"
check "a bad key from a file is refused with its field" \
  refused 1 STATUS_INVALID_ARGUMENT 'upsert_agency.public_keys[0]'
run agencies upsert --id partner-bad --type PIRATE
check "an unknown type is a usage error" [ "$RC" -eq 2 ]
run agencies list --all
check "nothing was registered for the bad entries" \
  holds -s 'all(.[]; .agencyId != "partner-bad")' "$WORK/out"

# --- Revocation ---------------------------------------------------------------------------------

run agencies deactivate "$PARTNER"
check "the coordinator deactivates the partner" answered '.agencyRef.revision == "2"'
as_partner submit "$WORK/report.json"
check "the partner's key gets no session on intake any more" [ "$RC" -eq 3 ]
check "routing refuses the partner within ${KNOWN_WAIT_S} s" routing_says none
run agencies list --all
check "list --all shows the partner inactive, without keys" \
  holds -s 'any(.[]; .agencyId == "partner-cli" and (.active // false) == false and
                     ((.publicKeys // []) | length) == 0)' "$WORK/out"
run agencies list
check "list leaves inactive agencies out" holds -s 'all(.[]; .agencyId != "partner-cli")' \
  "$WORK/out"
run agencies deactivate police-ma-04
check "an agency of the file is not deactivated from nrmctl" [ "$RC" -eq 1 ]

sys_end
