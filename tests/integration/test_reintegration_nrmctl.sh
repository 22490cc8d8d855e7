#!/usr/bin/env bash
# Reintegration through nrmctl only, as the local runner's scenario does it: the demonstration
# report 05 (a woman from Nigeria who needs reintegration) is submitted, the provider routing
# chose accepts the referral with nrmctl request, reintegration publishes plan_opened, and with
# the follow-up offsets set in seconds (NRM_REINTEGRATION_FOLLOWUP_OFFSETS_S) followup_due
# follows; the provider sees the plan with nrmctl plans and plan, records the follow-up with
# nrmctl followup, an unrelated agency sees no plan; nrmctl status shows reintegration healthy.
#
# Run by CTest with NRM_TEST_PGHOST, NRM_TEST_PGPORT (the test cluster, fixture "pg"),
# NRM_BUILD_DIR and NRM_SOURCE_DIR. Creates the database t_reintegration_nrmctl.
set -euo pipefail
# shellcheck disable=SC2016 # jq programs in single quotes: their $ are jq variables

source "${NRM_SOURCE_DIR:?}/tests/harness/system.sh"

DB=t_reintegration_nrmctl
SERVICES=(intake routing reintegration)
DUE_WAIT_MS=15000

sys_begin reintegration-nrmctl

# ctl AGENCY ARGS...: nrmctl as AGENCY; stdout in $WORK/out, exit code in RC.
ctl() {
  local agency=$1
  shift
  RC=0
  "$NRMCTL" --config "$WORK/config.json" --cert "$(cert_of "$agency")" "$@" >"$WORK/out" \
    2>"$WORK/err" || RC=$?
}

sys_database "$DB"
"$NRMCTL" keygen "$WORK/keys.json"
sys_config "$DB" "$WORK/keys.json" "${SERVICES[@]}"
export NRM_REINTEGRATION_FOLLOWUP_OFFSETS_S=3,600
for i in "${!SERVICES[@]}"; do sys_start "$i" "${SERVICES[$i]}"; done
for i in "${!SERVICES[@]}"; do sys_wait_ready "$i" "${SERVICES[$i]}"; done

now=$(date +%s%3N)
sed "s/\"identifiedAtMs\": \"0\"/\"identifiedAtMs\": \"$((now - 3600000))\"/" \
  "$NRM_SOURCE_DIR/deploy/demo/scenario/05-reintegration-ma06.json" >"$WORK/report.json"
ctl police-ma-06 submit "$WORK/report.json"
check "the report is accepted" [ "$RC" -eq 0 ]
CASE_ID=$(jq -r .caseRef.caseId "$WORK/out")

"$NRMCTL" --config "$WORK/config.json" tail --service routing --from 1 --count 1 \
  --idle-exit 10000 referral.created >"$WORK/referral.json"
check "routing refers the case to reintegration" \
  holds '.referralCreated.service == "SERVICE_TYPE_REINTEGRATION"' "$WORK/referral.json"
PROVIDER=$(jq -r .referralCreated.providerAgencyId "$WORK/referral.json")
jq -c '{respondToReferral: {referralId: .referralCreated.referralId,
                            decision: "REFERRAL_DECISION_ACCEPT"}}' "$WORK/referral.json" \
  >"$WORK/accept.json"
ctl "$PROVIDER" request routing "$WORK/accept.json"
check "the provider accepts" [ "$RC" -eq 0 ]

"$NRMCTL" --config "$WORK/config.json" tail --service reintegration --from 1 --count 2 \
  --idle-exit "$DUE_WAIT_MS" reintegration. >"$WORK/plan.jsonl"
check "reintegration opens a plan managed by the provider" \
  holds --slurp --arg p "$PROVIDER" \
  '.[0].topic == "reintegration.plan_opened" and .[0].planOpened.managerAgencyId == $p' \
  "$WORK/plan.jsonl"
check "its first follow-up falls due" \
  holds --slurp '.[1].topic == "reintegration.followup_due" and .[1].followupDue.number == 1' \
  "$WORK/plan.jsonl"
check "the events carry the case id" holds --slurp --arg c "$CASE_ID" 'all(.caseId == $c)' \
  "$WORK/plan.jsonl"
check "no name on the stream" [ "$(grep -c "Demo Person" "$WORK/plan.jsonl")" -eq 0 ]
PLAN_ID=$(jq -r 'select(.topic == "reintegration.plan_opened") | .planOpened.planId' \
  "$WORK/plan.jsonl")

ctl "$PROVIDER" plans
check "nrmctl plans lists the provider's plan" \
  [ "$RC" -eq 0 -a "$(jq -r .planId "$WORK/out")" = "$PLAN_ID" ]
ctl ngo-ma-07 plans
check "another agency lists no plan" [ "$RC" -eq 0 -a ! -s "$WORK/out" ]
ctl coordinator plans --state open
check "the coordinator lists it" [ "$(jq -r .planId "$WORK/out")" = "$PLAN_ID" ]
ctl "$PROVIDER" plan "$PLAN_ID"
check "nrmctl plan shows its follow-ups" \
  holds '.planView.followups | length == 2 and .[0].state == "due"' "$WORK/out"
ctl ngo-ma-07 plan "$PLAN_ID"
check "another agency may not read it" \
  [ "$RC" -eq 1 -a "$(jq -r .status "$WORK/out")" = STATUS_PERMISSION_DENIED ]
ctl "$PROVIDER" followup "$PLAN_ID" --contact yes --economic 3 --social 4 --psychosocial 2 \
  --safe-housing
check "nrmctl followup records the first follow-up" \
  [ "$RC" -eq 0 -a "$(jq -r .followUpRef.number "$WORK/out")" = 1 ]
ctl "$PROVIDER" followup "$PLAN_ID" --contact yes
check "scores are required after a contact" \
  [ "$RC" -eq 1 -a "$(jq -r .errorField "$WORK/out")" = record_follow_up.scores.economic ]
ctl "$PROVIDER" followup "$PLAN_ID"
check "followup without --contact is a usage error" [ "$RC" -eq 2 ]

ctl coordinator status
check "status shows reintegration healthy" grep -q "^reintegration  *ok  *ok" "$WORK/out"
sys_end
