#!/usr/bin/env bash
# The local runner's demonstration receiver (deploy/demo/receiver.py) against a real notify:
# the demonstration subscriptions pointed at it as deploy/run-local.sh points them, a report
# through intake, and the receiver gets the signed webhooks (signature checked with each
# subscription's secret) and the mail; notify records them delivered (notification.delivered,
# as tail --human shows them). Then the receiver stops at once on SIGTERM.
#
# Run by CTest with NRM_TEST_PGHOST, NRM_TEST_PGPORT (the test cluster, fixture "pg"),
# NRM_BUILD_DIR and NRM_SOURCE_DIR. Creates the database t_demo_receiver; everything else lives
# in a temporary directory removed at exit, with the services and the receiver.
set -euo pipefail

source "${NRM_SOURCE_DIR:?}/tests/harness/system.sh"

DB=t_demo_receiver
SERVICES=(intake routing notify) # intake consumes routing's stream
RECEIVER_INDEX=${#SERVICES[@]} # its PID in PIDS after the services'
DELIVERY_WAIT_S=30             # how long the deliveries may take
STOP_WAIT_S=3                  # how long the receiver may take to stop

sys_begin demo_receiver

# received PATTERN: the receiver's log has a line matching PATTERN (extended regex) within
# DELIVERY_WAIT_S.
received() {
  local deadline=$((SECONDS + DELIVERY_WAIT_S))
  until grep -qE -- "$1" "$WORK/receiver.log" 2>/dev/null; do
    [ "$SECONDS" -lt "$deadline" ] || return 1
    sleep 0.2
  done
}

# --- Setup: the receiver, then intake and notify with the subscriptions pointed at it ----------

HOOK_PORT=$(free_port)
SMTP_PORT=$(free_port)
sys_database "$DB"
"$NRMCTL" keygen "$WORK/keys.json"
# what run-local.sh does to var/config.json, on the test's ports (the subscriptions and the
# relay are in the included notify.json); here the duty officer's mail also follows case.opened
# (a new case concerns no coordinator's mail otherwise)
jq --argjson hook "$HOOK_PORT" --argjson smtp "$SMTP_PORT" '
  .subscriptions |= map(if .channel == "webhook"
    then .address = "http://127.0.0.1:\($hook)/\(.subscription_id)" else . end) |
  .notify.webhook_allow = ["127.0.0.1/32"] |
  .notify.smtp.url = "smtp://127.0.0.1:\($smtp)" | .notify.smtp.tls = "none" |
  (.subscriptions[] | select(.subscription_id == "demo-coordinator-email") | .topics) =
    ["case.opened"]
' "$NRM_SOURCE_DIR/deploy/demo/notify.json" >"$WORK/notify.json"
SYS_CONFIG_FILTER="del(.services.shelter) |
  .include |= map(if endswith(\"/notify.json\") then \"$WORK/notify.json\" else . end)"
sys_config "$DB" "$WORK/keys.json" "${SERVICES[@]}"
python3 "$NRM_SOURCE_DIR/deploy/demo/receiver.py" --config "$WORK/config.json" \
  --http-port "$HOOK_PORT" --smtp-port "$SMTP_PORT" --log "$WORK/receiver.log" \
  >"$WORK/receiver.out" 2>&1 &
PIDS[RECEIVER_INDEX]=$!
check "the receiver listens" received "^receiver: listening"
for i in "${!SERVICES[@]}"; do sys_start "$i" "${SERVICES[$i]}"; done
for i in "${!SERVICES[@]}"; do sys_wait_ready "$i" "${SERVICES[$i]}"; done

# --- A report: case.opened to the coordinator's and IOM's webhooks and the duty officer's mail --

jq -n --arg identified "$(($(date +%s) * 1000 - 3600000))" '
  {region: "MA-04", identifiedAtMs: $identified, person: {fullName: "Receivertest Person"},
   profile: {ageYears: 33, gender: "MALE", nationality: "SN"},
   exploitationTypes: ["FORCED_LABOUR"], needs: ["LEGAL_AID"], urgency: "ROUTINE",
   safetyRisk: "LOW", consentToReferral: true}' >"$WORK/report.json"
RC=0
"$NRMCTL" --config "$WORK/config.json" --cert "$(cert_of police-ma-04)" submit \
  "$WORK/report.json" >"$WORK/out" 2>"$WORK/err" || RC=$?
check "the report is accepted" [ "$RC" -eq 0 ]

check "the coordinator's webhook arrives with a valid signature" \
  received "^receiver: webhook demo-coordinator-webhook case.opened delivery [0-9a-f-]{36} signature valid$"
check "IOM's webhook arrives with a valid signature" \
  received "^receiver: webhook demo-iom-ma-webhook case.opened delivery [0-9a-f-]{36} signature valid$"
check "the duty officer's mail arrives at the sink" \
  received "^receiver: email duty-officer@example.invalid .* delivery [0-9a-f-]{36}$"
check "no delivery has an invalid signature" [ "$(grep -c INVALID "$WORK/receiver.log")" -eq 0 ]

RC=0
"$NRMCTL" --config "$WORK/config.json" tail --human --service notify --from 1 --idle-exit 1500 \
  notification. >"$WORK/out" 2>"$WORK/err" || RC=$?
check "notify records the webhook delivered" \
  grep -qE "notify +notification.delivered +[^ ]+ case.opened demo-coordinator-webhook to coordinator" \
  "$WORK/out"
check "no delivery to a subscription failed" \
  [ "$(grep -c "notification.failed .* demo-" "$WORK/out")" -eq 0 ]

# --- The receiver stops at once on SIGTERM --------------------------------------------------------

start_ms=$(date +%s%3N)
kill -TERM "${PIDS[RECEIVER_INDEX]}"
RC=0
timeout "$STOP_WAIT_S" tail --pid="${PIDS[RECEIVER_INDEX]}" -f /dev/null || RC=$?
echo "# the receiver stopped $(($(date +%s%3N) - start_ms)) ms after SIGTERM"
check "the receiver stops within $STOP_WAIT_S s of SIGTERM" [ "$RC" -eq 0 ]

sys_end
