#!/usr/bin/env bash
# The HTTP gateway against real services: only the gateway's key may speak on behalf of an
# agency; sign-in, CSRF, the JSON API, SSE resume, /metrics and static files (driven by
# tests/integration/gateway_driver.py, one behaviour per check).
#
# Run by CTest with NRM_TEST_PGHOST, NRM_TEST_PGPORT, NRM_BUILD_DIR and NRM_SOURCE_DIR.
# Creates the database t_gateway; the rest lives in a temporary directory removed at exit.
set -euo pipefail

source "${NRM_SOURCE_DIR:?}/tests/harness/system.sh"

DB=t_gateway
SERVICES=(intake routing shelter notify stats)
GATEWAY=$NRM_BUILD_DIR/services/gateway/nrm-gateway

sys_begin gateway

# ctl CERT ARGS...: nrmctl with certificate file CERT; stdout in $WORK/out, exit code in RC.
ctl() {
  local cert=$1
  shift
  RC=0
  "$NRMCTL" --config "$WORK/config.json" --cert "$cert" "$@" >"$WORK/out" 2>"$WORK/err" || RC=$?
}

# denied: the last nrmctl run got a PERMISSION_DENIED reply (exit 1).
denied() {
  [ "$RC" -eq 1 ] && grep -q PERMISSION_DENIED "$WORK/out"
}

# refused_plain: the last gateway start failed, saying why.
refused_plain() {
  [ "$RC" -ne 0 ] && grep -q "refusing plain HTTP" "$WORK/err"
}

sys_database "$DB"
"$NRMCTL" keygen "$WORK/keys.json"
HTTP_PORT=$(free_port)
mkdir -p "$WORK/www"
echo '<!doctype html><title>NRM test page</title>' >"$WORK/www/index.html"
echo 'secret outside www' >"$WORK/outside.txt"
SYS_CONFIG_FILTER=".services.gateway = {http: \"127.0.0.1:$HTTP_PORT\", www: \"$WORK/www\"}" \
  sys_config "$DB" "$WORK/keys.json" "${SERVICES[@]}"

# every agency signs in with the token "token-<id>" (hashed with nrmctl gateway-hash)
jq -r '.agencies[].id' "$WORK/config.json" | while read -r id; do
  printf '%s\t%s\n' "$id" "$(printf 'token-%s\n' "$id" | "$NRMCTL" gateway-hash)"
done | jq -Rn '[inputs | split("\t") | {agency_id: .[0], token_hash: .[1]}]' >"$WORK/logins.json"
jq --slurpfile logins "$WORK/logins.json" '.gateway.logins = $logins[0]' "$WORK/config.json" \
  >"$WORK/config.tmp" && mv "$WORK/config.tmp" "$WORK/config.json"

for i in "${!SERVICES[@]}"; do sys_start "$i" "${SERVICES[$i]}"; done
for i in "${!SERVICES[@]}"; do sys_wait_ready "$i" "${SERVICES[$i]}"; done

# --- the gateway's key, and only it, speaks for an agency --------------------------------
ctl "$WORK/certs/service-gateway.cert" --agency police-ma-06 cases
check "the gateway's key naming an agency gets the matrix of that agency (police may not list cases)" \
  grep -q '"errorMessage":"list_cases is for: coordinator, case manager"' "$WORK/out"
ctl "$WORK/certs/service-gateway.cert" --agency coordinator cases
check "the gateway's key naming the coordinator lists cases as the coordinator" [ "$RC" -eq 0 ]
check "... and the audit names the coordinator" [ "$(psql -X -A -t -h "$NRM_TEST_PGHOST" \
  -p "$NRM_TEST_PGPORT" -U postgres -d "$DB" -c "SELECT count(*) FROM intake.audit_log
  WHERE agency_id = 'coordinator' AND kind = 'list_cases' AND status = 'OK'")" = 1 ]
ctl "$WORK/certs/service-gateway.cert" --agency nobody-listed cases
check "the gateway's key naming an unlisted agency is PERMISSION_DENIED" denied
ctl "$WORK/certs/service-routing.cert" --agency coordinator cases
check "another service's key naming an agency is PERMISSION_DENIED" denied

# one report before the gateway starts: its events are older than the gateway's rings
now=$(date +%s%3N)
sed "s/\"identifiedAtMs\": \"0\"/\"identifiedAtMs\": \"$((now - 3600000))\"/" \
  "$NRM_SOURCE_DIR/deploy/demo/scenario/02-forced-labour-ma06.json" >"$WORK/early.json"
ctl "$(cert_of police-ma-06)" submit "$WORK/early.json"
check "a report before the gateway starts is accepted" [ "$RC" -eq 0 ]
sys_settle || true

"$GATEWAY" --config "$WORK/config.json" 2>>"$WORK/gateway.log" &
PIDS[9]=$!
deadline=$((SECONDS + START_TIMEOUT_S))
until curl -sf "http://127.0.0.1:$HTTP_PORT/healthz" >/dev/null 2>&1; do
  if ! kill -0 "${PIDS[9]}" 2>/dev/null || [ "$SECONDS" -ge "$deadline" ]; then
    echo "the gateway did not start; its log:"
    cat "$WORK/gateway.log"
    exit 1
  fi
  sleep 0.2
done

sed "s/\"identifiedAtMs\": \"0\"/\"identifiedAtMs\": \"$((now - 3600000))\"/" \
  "$NRM_SOURCE_DIR/deploy/demo/scenario/05-reintegration-ma06.json" >"$WORK/report.json"
RC=0
NRM_CONFIG=$WORK/config.json /usr/bin/python3 "$NRM_SOURCE_DIR/tests/integration/gateway_driver.py" \
  "http://127.0.0.1:$HTTP_PORT" "$WORK" "$NRMCTL" >"$WORK/driver.out" 2>&1 || RC=$?
cat "$WORK/driver.out"
PASSED=$((PASSED + $(grep -c '^ok - ' "$WORK/driver.out" || true)))
FAILED=$((FAILED + $(grep -c '^not ok - ' "$WORK/driver.out" || true)))
check "the driver ran to its end" [ "$RC" -eq 0 ]

# --- plain HTTP is refused on a non-loopback address ------------------------------------
jq '.services.gateway.http = "0.0.0.0:'"$(free_port)"'"' "$WORK/config.json" >"$WORK/open.json"
RC=0
timeout 20 "$GATEWAY" --config "$WORK/open.json" >"$WORK/out" 2>"$WORK/err" || RC=$?
check "plain HTTP on a non-loopback address is refused at start" refused_plain

kill -TERM "${PIDS[9]}"
RC=0
wait "${PIDS[9]}" || RC=$?
PIDS[9]=""
check "SIGTERM stops the gateway with exit 0" [ "$RC" -eq 0 ]
if grep -q "ERROR: AddressSanitizer\|runtime error" "$WORK/gateway.log"; then
  fail "the gateway's log has no sanitizer report"
  grep -A30 "ERROR: AddressSanitizer\|runtime error" "$WORK/gateway.log" | head -60
else
  pass "the gateway's log has no sanitizer report"
fi
sys_end
