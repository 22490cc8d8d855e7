#!/usr/bin/env bash
# A realistic day of the mechanism, end to end, checked as an operator would: through nrmctl
# only (no SQL).
#
# The whole system starts natively from the demonstration configuration (deploy/demo/, its
# includes made absolute; database, keyring and endpoints of this test). Then a day: 36 reports
# from 13 agencies in 9 regions (adults, six minors, families with children, high-risk cases,
# one person reported twice by two agencies, one report without consent to referral whose
# consent is given later with UpdateCase); providers answer their referrals (accept, decline,
# complete, as the agency each referral was made to, found with nrmctl tail); shelter operators
# confirm arrivals and release a bed; a case is closed with a reason code. At the end: nrmctl
# status healthy with zero lag everywhere, the count of every topic as the day's actions
# imply, the occupancy consistent with the arrivals, the release and the closure (nrmctl
# request getOccupancy and nrmctl top --once), and no submitted name, phone, document or note
# in any event or any service log.
#
# Run by CTest with NRM_TEST_PGHOST, NRM_TEST_PGPORT (the test cluster, fixture "pg"),
# NRM_BUILD_DIR and NRM_SOURCE_DIR. Creates the database t_day; everything else lives in a
# temporary directory removed at exit, with the service processes.
set -euo pipefail
# shellcheck disable=SC2016 # jq programs in single quotes: their $ are jq variables

source "${NRM_SOURCE_DIR:?}/tests/harness/system.sh"

DB=t_day
SERVICES=(intake routing shelter notify)
IDLE_MS=1500        # a tail of the history ends after this long without an event
HOUR_MS=3600000

sys_begin day

# equal NAME EXPECTED ACTUAL: passes when both are the same text.
equal() {
  if [ "$2" = "$3" ]; then pass "$1 ($3)"; else fail "$1: expected $2, got $3"; fi
}

# lacks_any PATTERNS-FILE FILE...: none of the fixed strings of PATTERNS-FILE is in the files.
lacks_any() {
  local patterns=$1
  shift
  ! grep -q -F -f "$patterns" "$@"
}

# ctl AGENCY ARGS...: nrmctl as AGENCY; stdout in $WORK/out, stderr appended to $WORK/stderr.all
# (checked for identifying data at the end) and in $WORK/err, exit code in RC.
ctl() {
  local agency=$1
  shift
  RC=0
  "$NRMCTL" --config "$WORK/config.json" --cert "$(cert_of "$agency")" "$@" >"$WORK/out" 2>"$WORK/err" ||
    RC=$?
  cat "$WORK/err" >>"$WORK/stderr.all"
}

# req AGENCY SERVICE JSON: a whole Request (JSON text) sent to SERVICE as AGENCY.
req() {
  local agency=$1 service=$2 json=$3
  RC=0
  printf '%s' "$json" | "$NRMCTL" --config "$WORK/config.json" --cert "$(cert_of "$agency")" \
    request "$service" - >"$WORK/out" 2>"$WORK/err" || RC=$?
  cat "$WORK/err" >>"$WORK/stderr.all"
}

# history FILE [ARGS...]: every event so far (or those ARGS select) as JSON lines into FILE.
history() {
  local file=$1
  shift
  "$NRMCTL" --config "$WORK/config.json" tail --from 1 --idle-exit "$IDLE_MS" "$@" \
    >"$file" 2>>"$WORK/stderr.all"
}

# count TOPIC: how many events of TOPIC the day's history holds.
count() {
  jq -r --arg t "$1" 'select(.topic == $t) | .seq' "$WORK/day.jsonl" | wc -l
}

# --- Setup: database, keyring, configuration, the four services -------------------------------

sys_database "$DB"
"$NRMCTL" keygen "$WORK/keys.json"
sys_config "$DB" "$WORK/keys.json" "${SERVICES[@]}"
for i in "${!SERVICES[@]}"; do sys_start "$i" "${SERVICES[$i]}"; done
for i in "${!SERVICES[@]}"; do sys_wait_ready "$i" "${SERVICES[$i]}"; done
ctl coordinator status
check "the morning: status exits 0" [ "$RC" -eq 0 ]

# --- The reports of the day ----------------------------------------------------------------------

YEAR=$(date -u +%Y)
MINOR13=$((YEAR - 13)) MINOR14=$((YEAR - 14)) MINOR15=$((YEAR - 15))
MINOR16=$((YEAR - 16)) MINOR17=$((YEAR - 17))
# agency|region|full name|date of birth|gender|nationality|languages|needs|urgency|risk|
# consent|children|exploitation|pregnant. Gender F or M; needs: S shelter, M medical, P
# psychosocial, L legal aid, C child protection, R return assistance, G reintegration; urgency
# R routine, U urgent, E emergency; risk L, M, H; exploitation SX sexual, FL forced labour, DS
# domestic servitude, FB forced begging. All fictitious.
cat >"$WORK/day.txt" <<EOF
police-ma-06|MA-06|Amina Belkadi Ouali|1996-03-14|F|NG|en|SMP|U|H|1|0|SX|0
police-ma-06|MA-06|Grace Okonkwo Eze|1999-07-02|F|NG|en|SML|U|H|1|1|SX|0
labour-ma-06|MA-06|Rahul Dasgupta Sen|1988-11-20|M|BD|bn,en|MLG|R|L|1|0|FL|0
labour-ma-06|MA-06|Karim Moussaoui Tahar|1979-01-09|M|MA|ar|MG|R|M|1|0|FL|0
hospital-ma-06|MA-06|Fatou Diallo Ndiaye|2001-05-30|F|SN|fr,wo|SMP|E|H|1|0|SX|0
police-ma-01|MA-01|Aisha Kamara Bangura|$MINOR16-02-11|F|GN|fr|SCM|U|H|1|0|SX|0
border-ma-01|MA-01|Ibrahim Traore Kone|$MINOR15-08-21|M|ML|fr,bm|SCP|U|M|1|0|FB|0
border-ma-01|MA-01|Jose Mendes Silva|1990-04-04|M|AO|pt|RM|R|L|1|0|FL|0
police-ma-01|MA-01|Maricel Santos Reyes|1993-09-09|F|PH|tl,en|SPL|U|H|1|0|DS|0
gendarmerie-ma-02|MA-02|Blessing Adeyemi Bello|1998-12-12|F|NG|en,yo|SMP|U|H|1|2|SX|0
gendarmerie-ma-02|MA-02|Samuel Mensah Owusu|1985-06-06|M|GH|en|RM|R|L|1|0|FL|0
gendarmerie-ma-02|MA-02|Mariam Cisse Barry|$MINOR14-10-10|F|GN|fr|SC|E|H|1|0|SX|0
police-ma-04|MA-04|Nadia Benali Rami|1997-02-27|F|MA|ar,fr|SPL|U|H|1|0|SX|0
police-ma-04|MA-04|Joy Chukwu Obi|1995-08-15|F|NG|en|SML|U|M|1|0|SX|0
hospital-ma-04|MA-04|Esther Nwosu Adaeze|2000-01-01|F|NG|en|MP|U|M|1|0|SX|1
hotline-national|MA-04|Wei Zhang Lin|1992-03-03|F|CN|zh|SMP|U|H|1|0|SX|0
consulate-ng|MA-04|Chioma Eze Nnamdi|1994-04-20|F|NG|en,ig|SRL|U|H|1|0|SX|0
iom-ma|MA-04|Mohamed Kone Sylla|1987-07-07|M|CI|fr|RM|R|L|1|0|FL|0
hospital-ma-04|MA-04|Yasmine Haddad Idrissi|$MINOR17-01-15|F|MA|ar|CMP|U|H|1|0|SX|0
ngo-ma-07|MA-07|Khadija Ait Lahcen|1991-05-05|F|MA|ar|SPL|U|H|1|0|DS|0
ngo-ma-07|MA-07|Precious Okafor Uche|1996-10-10|F|NG|en|SPL|U|H|1|1|SX|0
ngo-ma-07|MA-07|Joy Chukwu Obi|1995-08-15|F|NG|en|SPL|U|H|1|0|SX|0
labour-ma-09|MA-09|Abdoulaye Sow Ba|1983-02-02|M|SN|fr,wo|MLG|R|M|1|0|FL|0
labour-ma-09|MA-09|Rashid Khan Ali|1989-12-01|M|PK|ur,en|SMG|U|M|1|0|FL|0
labour-ma-09|MA-09|Hassan Ouchen Amrani|1975-03-30|M|MA|ar|G|R|L|1|0|FL|0
labour-ma-09|MA-09|Aminata Camara Keita|1998-06-18|F|ML|fr,bm|SPL|U|H|1|0|FL|0
hotline-national|MA-03|Fatima Zahra Alami|1999-09-19|F|MA|ar,fr|SP|U|H|1|2|DS|0
hotline-national|MA-03|Youssef Tazi Bennani|$MINOR16-04-04|M|MA|ar|CP|U|M|1|0|FB|0
police-ma-06|MA-06|Olga Petrenko Ivanova|1990-11-11|F|UA|uk,en|SMPL|E|H|0|0|SX|0
iom-ma|MA-01|Emmanuel Boateng Asante|1986-08-08|M|GH|en|RG|R|L|1|0|FL|0
hospital-ma-06|MA-06|Sara Mahmoud Salem|1995-12-25|F|SY|ar|MP|U|M|1|0|SX|0
police-ma-06|MA-06|Zainab Yusuf Garba|$MINOR13-07-07|F|NG|en,ha|SC|E|H|1|0|SX|0
labour-ma-06|MA-06|Nguyen Van Minh|1984-10-30|M|VN|vi|MLR|R|L|1|0|FL|0
consulate-ng|MA-06|Ngozi Obi Okeke|1997-03-08|F|NG|en|SL|U|H|1|0|SX|0
hotline-national|MA-05|Halima Bouzid Cherki|1994-02-14|F|MA|ar|SM|U|H|1|0|DS|0
hotline-national|MA-08|Rachid El Fassi Mourad|1980-01-20|M|MA|ar|SMG|R|M|1|0|FL|0
EOF
REPORTS=$(wc -l <"$WORK/day.txt")
FIRST_JOY_INDEX=13  # 0-based lines of day.txt: Joy Chukwu Obi, reported by the police
LINKED_INDEX=21     # Joy Chukwu Obi again, reported by an NGO in another region
NO_CONSENT_INDEX=28 # Olga Petrenko Ivanova: no consent to referral at first
CLOSED_INDEX=33     # Ngozi Obi Okeke: her case is closed at the end of the day
MINORS=6

# report LINE INDEX: the SubmitReport of one line of day.txt, with identifying data (a phone,
# a document number and notes that name the person) that must never come out again.
report() {
  local line=$1 index=$2
  IFS='|' read -r agency region name dob gender nationality languages needs urgency risk \
    consent children exploitation pregnant <<<"$line"
  jq -n --arg region "$region" --arg name "$name" --arg dob "$dob" --arg gender "$gender" \
    --arg nationality "$nationality" --arg languages "$languages" --arg need_codes "$needs" \
    --arg urgency "$urgency" --arg risk "$risk" --arg consent "$consent" \
    --arg children "$children" --arg exploitation "$exploitation" --arg pregnant "$pregnant" \
    --arg identified "$(($(date +%s) * 1000 - (index + 1) * HOUR_MS / 4))" \
    --arg phone "+21266$(printf '%07d' $((index * 7919 + 1234567)))" \
    --arg document "DOC$(printf '%06d' $((index * 104729 % 1000000)))X" '
    {"S": "SHELTER", "M": "MEDICAL", "P": "PSYCHOSOCIAL", "L": "LEGAL_AID",
     "C": "CHILD_PROTECTION", "R": "RETURN_ASSISTANCE", "G": "REINTEGRATION"} as $needs |
    {"F": "FEMALE", "M": "MALE"} as $genders |
    {"R": "ROUTINE", "U": "URGENT", "E": "EMERGENCY"} as $urgencies |
    {"L": "LOW", "M": "MEDIUM", "H": "HIGH"} as $risks |
    {"SX": "SEXUAL_EXPLOITATION", "FL": "FORCED_LABOUR", "DS": "DOMESTIC_SERVITUDE",
     "FB": "FORCED_BEGGING"} as $exploitations |
    {region: $region, identifiedAtMs: $identified,
     person: {fullName: $name, dateOfBirth: $dob, phone: $phone, documentNumber: $document},
     profile: {gender: ("GENDER_" + $genders[$gender]), nationality: $nationality,
               languages: ($languages | split(",")), accompanyingChildren: ($children | tonumber),
               pregnant: ($pregnant == "1")},
     exploitationTypes: ["EXPLOITATION_TYPE_" + $exploitations[$exploitation]],
     countryOfExploitation: "MA",
     needs: [$need_codes | split("")[] | "SERVICE_TYPE_" + $needs[.]],
     urgency: ("URGENCY_" + $urgencies[$urgency]), safetyRisk: ("SAFETY_RISK_" + $risks[$risk]),
     consentToReferral: ($consent == "1"), consentToDataSharing: true,
     notes: ("Met at the bus station; " + $name + " gave the phone " + $phone)}'
  printf '%s\n' "$name" >>"$WORK/identifying.txt"
}

: >"$WORK/identifying.txt"
: >"$WORK/stderr.all"
CASES=()
AGENCIES=()
submitted=0
linked_ok=0
index=0
while IFS= read -r line; do
  report "$line" "$index" >"$WORK/report.json"
  jq -r '.person.phone, .person.documentNumber' "$WORK/report.json" >>"$WORK/identifying.txt"
  agency=${line%%|*}
  ctl "$agency" submit "$WORK/report.json"
  if [ "$RC" -eq 0 ]; then submitted=$((submitted + 1)); fi
  CASES+=("$(jq -r '.caseRef.caseId // ""' "$WORK/out")")
  AGENCIES+=("$agency")
  if [ "$(jq -r '.caseRef.linked // false' "$WORK/out")" = true ]; then
    linked_ok=$((linked_ok + 1))
  fi
  index=$((index + 1))
done <"$WORK/day.txt"
echo "Met at the bus station" >>"$WORK/identifying.txt"
equal "every report is accepted" "$REPORTS" "$submitted"
equal "one report is linked to an existing case" 1 "$linked_ok"
check "the second report of the same person joins her case" \
  [ "${CASES[$LINKED_INDEX]}" = "${CASES[$FIRST_JOY_INDEX]}" ]
PERSONS=$((REPORTS - 1))
equal "the other reports open distinct cases" "$PERSONS" \
  "$(printf '%s\n' "${CASES[@]}" | sort -u | grep -c .)"

check "the system settles after the reports" sys_settle
NO_CONSENT_CASE=${CASES[$NO_CONSENT_INDEX]}
history "$WORK/before-consent.jsonl" --service routing referral.
equal "no referral for the case without consent" 0 \
  "$(jq -r --arg c "$NO_CONSENT_CASE" 'select(.caseId == $c) | .seq' \
    "$WORK/before-consent.jsonl" | wc -l)"

# The person consents: the police who reported her record it.
req "${AGENCIES[$NO_CONSENT_INDEX]}" intake \
  "{\"updateCase\": {\"caseId\": \"$NO_CONSENT_CASE\", \"consentToReferral\": true}}"
check "consent given with UpdateCase" [ "$RC" -eq 0 ]
check "the system settles after the consent" sys_settle

# --- Providers answer their referrals ---------------------------------------------------------

history "$WORK/referrals.jsonl" --service routing referral.created
CLOSED_CASE=${CASES[$CLOSED_INDEX]}
jq -r '[.referralCreated.referralId, .referralCreated.providerAgencyId, .caseId] | @tsv' \
  "$WORK/referrals.jsonl" >"$WORK/referrals.tsv"
check "routing referred the day's needs" [ "$(wc -l <"$WORK/referrals.tsv")" -ge "$PERSONS" ]

ACCEPTED=()
ACCEPTED_BY=()
N_ACCEPT=0
N_DECLINE=0
refused=0
i=0
decline_reasons=(DECLINE_REASON_NO_CAPACITY DECLINE_REASON_NOT_ELIGIBLE)
while IFS=$'\t' read -r referral provider case_id; do
  if [ $((i % 3)) -eq 0 ]; then
    # the note names the person: it is checked, then dropped unread
    req "$provider" routing "{\"respondToReferral\": {\"referralId\": \"$referral\",
      \"decision\": \"REFERRAL_DECISION_ACCEPT\", \"note\": \"Called Amina Belkadi Ouali\"}}"
    if [ "$RC" -eq 0 ]; then
      N_ACCEPT=$((N_ACCEPT + 1))
      ACCEPTED+=("$referral")
      ACCEPTED_BY+=("$provider")
    else
      refused=$((refused + 1))
    fi
  elif [ $((i % 7)) -eq 1 ]; then
    req "$provider" routing "{\"respondToReferral\": {\"referralId\": \"$referral\",
      \"decision\": \"REFERRAL_DECISION_DECLINE\",
      \"declineReason\": \"${decline_reasons[$((N_DECLINE % 2))]}\"}}"
    if [ "$RC" -eq 0 ]; then N_DECLINE=$((N_DECLINE + 1)); else refused=$((refused + 1)); fi
  fi
  i=$((i + 1))
done <"$WORK/referrals.tsv"
equal "every provider's answer is taken" 0 "$refused"
check "some referrals are accepted, some declined" [ "$N_ACCEPT" -ge 5 -a "$N_DECLINE" -ge 2 ]

# Only the provider a referral was made to may answer it; an answered one cannot be again.
req police-ma-06 routing "{\"respondToReferral\": {\"referralId\": \"${ACCEPTED[0]}\",
  \"decision\": \"REFERRAL_DECISION_ACCEPT\"}}"
check "another agency's answer is PERMISSION_DENIED" \
  [ "$RC" -eq 1 -a "$(jq -r .status "$WORK/out")" = STATUS_PERMISSION_DENIED ]
req "${ACCEPTED_BY[0]}" routing "{\"respondToReferral\": {\"referralId\": \"${ACCEPTED[0]}\",
  \"decision\": \"REFERRAL_DECISION_ACCEPT\"}}"
check "a second answer is FAILED_PRECONDITION" \
  [ "$RC" -eq 1 -a "$(jq -r .status "$WORK/out")" = STATUS_FAILED_PRECONDITION ]

# Half of the accepted services are delivered by the end of the day, one is not.
N_COMPLETE=0
for j in "${!ACCEPTED[@]}"; do
  if [ $((j % 2)) -eq 0 ]; then
    body="\"serviceDelivered\": true"
  elif [ "$j" -eq 1 ]; then
    body="\"serviceDelivered\": false, \"reason\": \"lost_contact\""
  else
    continue
  fi
  req "${ACCEPTED_BY[$j]}" routing \
    "{\"completeReferral\": {\"referralId\": \"${ACCEPTED[$j]}\", $body}}"
  if [ "$RC" -eq 0 ]; then N_COMPLETE=$((N_COMPLETE + 1)); else refused=$((refused + 1)); fi
done
equal "every outcome is recorded" 0 "$refused"
check "the system settles after the answers" sys_settle

# --- Shelter: arrivals and a release ----------------------------------------------------------

history "$WORK/allocations.jsonl" --service shelter shelter.allocated
jq -r '[.shelterAllocated.allocationId, .shelterAllocated.operatorAgencyId,
        .shelterAllocated.beds, .caseId] | @tsv' "$WORK/allocations.jsonl" >"$WORK/allocations.tsv"
ALLOCATED=$(wc -l <"$WORK/allocations.tsv")
check "beds were allocated" [ "$ALLOCATED" -ge 10 ]
HELD_BEDS=$(awk -F'\t' '{n += $3} END {print n + 0}' "$WORK/allocations.tsv")
ARRIVED_BEDS=0
RELEASED_BEDS=0
ARRIVALS=0
CLOSED_HELD_BEDS=0
while IFS=$'\t' read -r allocation operator beds case_id; do
  if [ "$case_id" = "$CLOSED_CASE" ]; then
    CLOSED_HELD_BEDS=$beds # she will not arrive: her case is closed
    continue
  fi
  [ "$ARRIVALS" -lt 6 ] || continue
  req "$operator" shelter "{\"confirmArrival\": {\"allocationId\": \"$allocation\"}}"
  if [ "$RC" -ne 0 ]; then
    fail "arrival confirmed by the operator"
    continue
  fi
  ARRIVALS=$((ARRIVALS + 1))
  ARRIVED_BEDS=$((ARRIVED_BEDS + beds))
  if [ "$ARRIVALS" -eq 1 ]; then
    FIRST_ALLOCATION=$allocation FIRST_OPERATOR=$operator FIRST_BEDS=$beds
  fi
done <"$WORK/allocations.tsv"
equal "six arrivals confirmed by the shelter operators" 6 "$ARRIVALS"
req police-ma-06 shelter "{\"confirmArrival\": {\"allocationId\": \"$FIRST_ALLOCATION\"}}"
check "only the operator confirms an arrival" \
  [ "$RC" -eq 1 -a "$(jq -r .status "$WORK/out")" = STATUS_PERMISSION_DENIED ]
req "$FIRST_OPERATOR" shelter \
  "{\"releaseBed\": {\"allocationId\": \"$FIRST_ALLOCATION\", \"reason\": \"departed\"}}"
check "the operator releases a bed" [ "$RC" -eq 0 ]
RELEASED_BEDS=$FIRST_BEDS

# --- A case is closed -------------------------------------------------------------------------

req "${AGENCIES[$CLOSED_INDEX]}" intake \
  "{\"closeCase\": {\"caseId\": \"$CLOSED_CASE\", \"reason\": \"declined_assistance\"}}"
check "the reporting agency closes a case when the person declines assistance" [ "$RC" -eq 0 ]
req "${AGENCIES[$CLOSED_INDEX]}" intake \
  "{\"closeCase\": {\"caseId\": \"$CLOSED_CASE\", \"reason\": \"not a code\"}}"
check "a close reason must be a code" [ "$RC" -eq 1 ]
check "the system settles at the end of the day" sys_settle

# --- The end of the day, as an operator sees it -------------------------------------------------

ctl coordinator status
check "status exits 0" [ "$RC" -eq 0 ]
check "status shows the four services healthy" \
  [ "$(grep -c -E '^(intake|routing|shelter|notify) +ok +ok' "$WORK/out")" -eq 4 ]
ctl coordinator status --json
cp "$WORK/out" "$WORK/status.json"
check "status --json: every service healthy" \
  holds '.healthy and ([.services[] | select(.healthy and .databaseOk)] | length) == 4' \
  "$WORK/status.json"
check "status --json: zero lag everywhere" \
  holds '[.services[].consumers[].lag] | length > 0 and all(. == 0)' "$WORK/status.json"
check "status --json: no failed delivery" holds '.failedDeliveries == 0' "$WORK/status.json"

history "$WORK/day.jsonl"
equal "case.opened" "$PERSONS" "$(count case.opened)"
equal "case.linked" 1 "$(count case.linked)"
# one update gives consent; the second report of the same person adds shelter and psychosocial
# support to her case's needs, which routing hears as case.updated too
equal "case.updated (consent, needs added by the linked report)" \
  "$(printf '%s\n' "$NO_CONSENT_CASE" "${CASES[$FIRST_JOY_INDEX]}" | sort | tr '\n' ' ')" \
  "$(jq -r 'select(.topic == "case.updated") | .caseId' "$WORK/day.jsonl" | sort | tr '\n' ' ')"
equal "case.closed" 1 "$(count case.closed)"
equal "referral.accepted" "$N_ACCEPT" "$(count referral.accepted)"
equal "referral.declined" "$N_DECLINE" "$(count referral.declined)"
equal "referral.completed" "$N_COMPLETE" "$(count referral.completed)"
equal "referral.expired" 0 "$(count referral.expired)"
equal "shelter.released (a departure, a closed case)" \
  $((1 + (CLOSED_HELD_BEDS > 0 ? 1 : 0))) "$(count shelter.released)"
equal "every shelter request is answered" "$(count shelter.requested)" \
  $(($(count shelter.allocated) + $(count shelter.waitlisted)))
equal "no one waits for a bed" 0 "$(count shelter.waitlisted)"
equal "shelter.allocated" "$ALLOCATED" "$(count shelter.allocated)"
equal "the close reason is a code" declined_assistance \
  "$(jq -r 'select(.topic == "case.closed") | .caseClosed.reason' "$WORK/day.jsonl")"
equal "the linked report is in the second agency's region" "MA-07 ${CASES[$FIRST_JOY_INDEX]}" \
  "$(jq -r 'select(.topic == "case.linked") | "\(.caseLinked.region) \(.caseId)"' \
    "$WORK/day.jsonl")"
equal "every minor is referred to child protection" "$MINORS" "$(jq -rs '
  [.[] | select(.topic == "case.opened" and .caseOpened.isMinor) | .caseId] as $minors |
  [.[] | select((.topic == "referral.created" and
                 .referralCreated.service == "SERVICE_TYPE_CHILD_PROTECTION") or
                (.topic == "referral.unroutable" and
                 .referralUnroutable.service == "SERVICE_TYPE_CHILD_PROTECTION")) | .caseId]
  | unique | map(select(. as $c | $minors | index($c))) | length' "$WORK/day.jsonl")"
check "the consent started the referrals of her case" holds -s --arg c "$NO_CONSENT_CASE" '
  (map(select(.topic == "case.updated" and .caseId == $c)) | .[0].eventId) as $update |
  map(select(.topic == "referral.created" and .caseId == $c)) |
  length > 0 and all(.causationId == $update)' "$WORK/day.jsonl"
check "every decline is referred on (or reported unroutable)" holds -s '
  map(select(.topic == "referral.created") | .referralCreated + {caseId}) as $created |
  map(select(.topic == "referral.unroutable") | {caseId, service: .referralUnroutable.service})
  as $unroutable |
  [.[] | select(.topic == "referral.declined") | .referralDeclined.referralId] |
  length > 0 and all(. as $id | ($created | map(select(.referralId == $id))[0]) as $d |
    ($created | any(.caseId == $d.caseId and .service == $d.service and
                    .attempt == $d.attempt + 1)) or
    ($unroutable | any(.caseId == $d.caseId and .service == $d.service)))' \
  "$WORK/day.jsonl"
check "closing the case revoked its open referrals" holds -s --arg c "$CLOSED_CASE" '
  (map(select(.caseId == $c)) | . as $e |
   [$e[] | select(.topic == "referral.created") | .referralCreated.referralId] -
   [$e[] | select(.topic == "referral.declined" or .topic == "referral.completed") |
    (.referralDeclined // .referralCompleted).referralId]) as $open |
  [.[] | select(.topic == "referral.revoked")] as $revoked |
  ($revoked | length) == ($open | length) and
  ($revoked | all(.caseId == $c and .referralRevoked.reason == "case_closed"))' \
  "$WORK/day.jsonl"
check "closing the case released its held bed" holds -s --arg c "$CLOSED_CASE" \
  --argjson held "$CLOSED_HELD_BEDS" '
  [.[] | select(.topic == "shelter.released" and .caseId == $c) | .shelterReleased.reason] |
  if $held > 0 then . == ["case_closed"] else . == [] end' "$WORK/day.jsonl"

# Occupancy: what the operators did, as shelter reports it and as top shows it.
EXPECTED_OCCUPIED=$((ARRIVED_BEDS - RELEASED_BEDS))
EXPECTED_HELD=$((HELD_BEDS - ARRIVED_BEDS - CLOSED_HELD_BEDS))
req coordinator shelter '{"getOccupancy": {}}'
equal "occupied beds (GetOccupancy)" "$EXPECTED_OCCUPIED" \
  "$(jq '[.occupancy.shelters[].occupied // 0] | add' "$WORK/out")"
equal "held beds (GetOccupancy)" "$EXPECTED_HELD" \
  "$(jq '[.occupancy.shelters[].held // 0] | add' "$WORK/out")"
check "no shelter is over capacity" \
  holds 'all(.occupancy.shelters[]; (.occupied // 0) + (.held // 0) <= .capacity)' "$WORK/out"

ctl coordinator top --once
cp "$WORK/out" "$WORK/top.json"
check "top --once exits 0" [ "$RC" -eq 0 ]
equal "top: occupied beds" "$EXPECTED_OCCUPIED" "$(jq .shelters.total.occupied "$WORK/top.json")"
equal "top: held beds" "$EXPECTED_HELD" "$(jq .shelters.total.held "$WORK/top.json")"
equal "top: the waitlist" 0 "$(jq .shelters.waitlist "$WORK/top.json")"
check "top: the count of every case, referral and shelter topic" holds -s '
  (.[0].topics | with_entries(select(.key | test("^(case|referral|shelter)\\.")) |
    .value = .value.total)) as $top |
  (.[1:] | map(.topic) | map(select(test("^(case|referral|shelter)\\."))) |
    group_by(.) | map({key: .[0], value: length}) | from_entries) as $tail |
  $top == $tail' "$WORK/top.json" "$WORK/day.jsonl"
check "top: open referrals add up with the streams" holds -s '
  .[0].openReferrals as $open |
  (.[1:] | map(.topic)) as $t |
  ([$open[] | .pending + .accepted] | add) ==
  ([$t[] | select(. == "referral.created")] | length) -
  ([$t[] | select(. == "referral.declined" or . == "referral.expired" or
                  . == "referral.revoked" or . == "referral.completed")] | length)' \
  "$WORK/top.json" "$WORK/day.jsonl"
check "top: accepted referrals still open" holds -s '
  ([.[0].openReferrals[] | .accepted] | add) ==
  ([.[1:][] | select(.topic == "referral.accepted") | .referralAccepted.referralId] -
   [.[1:][] | select(.topic == "referral.completed" or .topic == "referral.revoked") |
    (.referralCompleted // .referralRevoked).referralId] | length)' \
  "$WORK/top.json" "$WORK/day.jsonl"
check "top: no referral is overdue yet" holds '[.openReferrals[].overdue] | add == 0' \
  "$WORK/top.json"
check "top: events per region add up" holds -s '
  ([.[0].regions[]] | add) ==
  ([.[1:][] | select(.topic == "case.opened" or .topic == "case.linked" or
                     .topic == "shelter.allocated" or (.topic | startswith("referral.")))]
   | length)' "$WORK/top.json" "$WORK/day.jsonl"
equal "Casablanca-Settat's cases" "$(grep -c '|MA-06|' "$WORK/day.txt")" "$(jq -s '
  [.[1:][] | select(.topic == "case.opened" and .caseOpened.region == "MA-06")] | length' \
  "$WORK/top.json" "$WORK/day.jsonl")"
check "top: deliveries seen by the coordinator" holds '.deliveries.failed == 0' "$WORK/top.json"
check "top shows counts, never a case id" lacks_any <(printf '%s\n' "${CASES[@]}") \
  "$WORK/top.json"

ctl coordinator deliveries --state undeliverable --max 5
check "deliveries lists what could not be delivered" \
  [ "$RC" -eq 0 -a "$(jq -r .state "$WORK/out" | sort -u)" = undeliverable ]

# Nothing identifying anywhere.
check "no name, phone, document or note in any event" \
  lacks_any "$WORK/identifying.txt" "$WORK/day.jsonl"
for s in "${SERVICES[@]}"; do
  check "no name, phone, document or note in the $s log" \
    lacks_any "$WORK/identifying.txt" "$WORK/$s.log"
done
check "no name, phone, document or note on nrmctl's stderr" \
  lacks_any "$WORK/identifying.txt" "$WORK/stderr.all"
for i in "${!SERVICES[@]}"; do
  check "${SERVICES[$i]} is still running" kill -0 "${PIDS[$i]}"
done

if [ "$FAILED" -gt 0 ]; then
  for s in "${SERVICES[@]}"; do
    echo "$s log (last lines):"
    tail -5 "$WORK/$s.log"
  done
fi
sys_end
