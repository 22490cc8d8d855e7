#!/usr/bin/env bash
# nrmctl for people, against real intake and routing services: tail --human (one line per event,
# the streams merged in time order, local time, the case id shortened, stream.head hidden),
# tail's choice of output (--json, JSON when stdout is not a terminal), the --option=VALUE
# form of the global options, the configuration found in var/config.json of a parent directory
# (the local runner's), and short enum names with the valid names listed when one is wrong.
#
# Run by CTest with NRM_TEST_PGHOST, NRM_TEST_PGPORT (the test cluster, fixture "pg"),
# NRM_BUILD_DIR and NRM_SOURCE_DIR. Creates the database t_nrmctl_human; everything else lives in
# a temporary directory removed at exit, with the services.
set -euo pipefail

source "${NRM_SOURCE_DIR:?}/tests/harness/system.sh"

DB=t_nrmctl_human
SERVICES=(intake routing)
# local time in a zone that is neither UTC nor a whole hour from it (POSIX TZ: no tzdata needed)
export TZ=NRM-05:30

sys_begin nrmctl_human

# run ARGS...: nrmctl with the test configuration; stdout in $WORK/out, stderr in $WORK/err,
# exit code in RC.
run() {
  RC=0
  "$NRMCTL" --config "$WORK/config.json" "$@" >"$WORK/out" 2>"$WORK/err" || RC=$?
}

# lacks PATTERN FILE: FILE does not contain PATTERN.
lacks() {
  ! grep -q -- "$1" "$2"
}

# complained CODE TEXT: the last run exited CODE with TEXT (fixed string) on stderr.
complained() {
  [ "$RC" -eq "$1" ] && grep -qF -- "$2" "$WORK/err"
}

# report REGION NAME: a SubmitReport (legal aid and medical care needed: routing refers both).
report() {
  jq -n --arg region "$1" --arg name "$2" --arg identified "$(($(date +%s) * 1000 - 3600000))" '
    {region: $region, identifiedAtMs: $identified, person: {fullName: $name},
     profile: {ageYears: 30, gender: "FEMALE", nationality: "NG", languages: ["en"]},
     exploitationTypes: ["FORCED_LABOUR"], countryOfExploitation: "MA",
     needs: ["LEGAL_AID", "MEDICAL"], urgency: "URGENT", safetyRisk: "LOW",
     consentToReferral: true, consentToDataSharing: true}'
}

# --- Setup ------------------------------------------------------------------------------------

sys_database "$DB"
"$NRMCTL" keygen "$WORK/keys.json"
SYS_CONFIG_FILTER='del(.services.shelter, .services.notify)' # only the two streams started
sys_config "$DB" "$WORK/keys.json" "${SERVICES[@]}"
for i in "${!SERVICES[@]}"; do sys_start "$i" "${SERVICES[$i]}"; done
for i in "${!SERVICES[@]}"; do sys_wait_ready "$i" "${SERVICES[$i]}"; done

# --- Short enum names ---------------------------------------------------------------------------

# two reports one after the other, each settled: intake's second case.opened comes after
# routing's referrals for the first, so time order interleaves the streams
report MA-06 "Humantest Person One" >"$WORK/report.json"
run submit "$WORK/report.json"
check "a report written with short enum names is accepted" [ "$RC" -eq 0 ]
check "the system settles after the first report" sys_settle
sleep 1.1 # the second report's events fall in a later second
report MA-04 "Humantest Person Two" >"$WORK/report.json"
run submit "$WORK/report.json"
check "the second report is accepted" [ "$RC" -eq 0 ]
check "the system settles after the second report" sys_settle

jq -n '{respondToReferral: {referralId: "r", decision: "MAYBE"}}' >"$WORK/bad.json"
run request routing "$WORK/bad.json"
check "a wrong enum name is a usage error listing the valid names" \
  complained 2 "invalid value 'MAYBE' for field decision (valid: ACCEPT, DECLINE)"

# --- tail: JSON and human output -----------------------------------------------------------------

run tail --from 1 --idle-exit 1500
cp "$WORK/out" "$WORK/events.json"
check "tail prints JSON lines when stdout is not a terminal" \
  holds -s 'length >= 6 and all(.[]; has("occurredAtMs"))' "$WORK/events.json"
check "tail prints intake's stream, then routing's (stream by stream)" \
  holds -s '[.[].stream] | . == (sort_by(if . == "intake" then 0 else 1 end))' "$WORK/events.json"

run tail --human --from 1 --idle-exit 1500
cp "$WORK/out" "$WORK/human.txt"
check "tail --human prints one line per event" \
  [ "$(wc -l <"$WORK/human.txt")" -eq "$(wc -l <"$WORK/events.json")" ]
check "tail --human hides stream.head" lacks "stream.head" "$WORK/human.txt"

# the JSON events sorted by time (ties keep each stream's order), as "stream topic case8"
jq -rs 'to_entries | sort_by((.value.occurredAtMs | tonumber), .key) | .[].value |
  "\(.stream) \(.topic) \(.caseId[0:8])"' "$WORK/events.json" >"$WORK/expected.txt"
awk '{print $2, $3, $4}' "$WORK/human.txt" >"$WORK/got.txt"
check "tail --human merges the streams in time order" cmp -s "$WORK/expected.txt" "$WORK/got.txt"
check "time order is not stream order here (the streams interleave)" \
  [ "$(awk '{print $2}' "$WORK/got.txt" | uniq | wc -l)" -gt 2 ]
check "tail --human shortens the case id to 8 characters" \
  [ "$(awk 'length($4) != 8' "$WORK/human.txt" | wc -l)" -eq 0 ]

first_ms=$(jq -rs 'map(.occurredAtMs | tonumber) | min' "$WORK/events.json")
expected_time=$(date -d "@$((first_ms / 1000))" +%H:%M:%S)
check "tail --human shows the local time as HH:MM:SS" \
  [ "$(head -1 "$WORK/human.txt" | awk '{print $1}')" = "$expected_time" ]
check "the local time is not UTC" \
  [ "$(TZ=UTC date -d "@$((first_ms / 1000))" +%H:%M:%S)" != "$expected_time" ]
check "case.opened shows region, age group, gender, exploitation, needs, urgency" \
  grep -qE "intake +case.opened +[0-9a-f]{8} MA-06 adult female FORCED_LABOUR needs (LEGAL_AID,MEDICAL|MEDICAL,LEGAL_AID) urgent" \
  "$WORK/human.txt"
check "referral.created shows the service, the provider and when it is due" \
  grep -qE "routing +referral.created +[0-9a-f]{8} (LEGAL_AID|MEDICAL) -> [a-z0-9-]+ due ([0-9]{4}-[0-9]{2}-[0-9]{2} )?[0-9]{2}:[0-9]{2} " \
  "$WORK/human.txt"

run tail --json --from 1 --count 1 case.opened
check "tail --json forces JSON lines" holds -e '.topic == "case.opened"' "$WORK/out"

# --- Global options: --option=VALUE, the local runner's configuration ---------------------------

RC=0
"$NRMCTL" --config="$WORK/config.json" --timeout=3000 --cert="$(cert_of coordinator)" \
  ping intake >"$WORK/out" 2>"$WORK/err" || RC=$?
check "--config=FILE, --timeout=MS and --cert=FILE are taken" [ "$RC" -eq 0 ]
RC=0
"$NRMCTL" --timeout= ping intake >"$WORK/out" 2>"$WORK/err" || RC=$?
check "--timeout= without a value is a usage error" [ "$RC" -eq 2 ]

if [ -e /etc/nrm/config.json ]; then
  echo "ok - # skip: /etc/nrm/config.json exists, nrmctl takes it before var/config.json"
else
  mkdir -p "$WORK/tree/var/certs" "$WORK/tree/deeper/still"
  cp "$WORK/config.json" "$WORK/tree/var/config.json"
  cp "$(cert_of coordinator)" "$(cert_of coordinator)_secret" "$WORK/tree/var/certs/"
  RC=0
  (cd "$WORK/tree/deeper/still" && env -u NRM_CONFIG -u NRM_CERT "$NRMCTL" ping intake) \
    >"$WORK/out" 2>"$WORK/err" || RC=$?
  check "without --config nrmctl finds var/config.json and its certificate in a parent" \
    [ "$RC" -eq 0 ]
  RC=0
  (cd "$WORK" && env -u NRM_CONFIG -u NRM_CERT "$NRMCTL" ping intake) \
    >"$WORK/out" 2>"$WORK/err" || RC=$?
  check "without var/config.json in any parent nrmctl says what it could not read" \
    complained 2 "config.json"
fi

sys_end
