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
SYS_CONFIG_FILTER=".services.gateway = {http: \"127.0.0.1:$HTTP_PORT\", www: \"$WORK/www\"}
  | .metrics_refresh_ms = 300" \
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

# --- SIGHUP: logins and regions read again -------------------------------------------------
# sign_in URL AGENCY TOKEN [CURL ARGS...]: the HTTP status of a sign-in; headers in $WORK/headers
sign_in() {
  local url=$1 agency=$2 token=$3
  shift 3
  curl -s -o /dev/null -D "$WORK/headers" -w '%{http_code}' "$@" -H 'Content-Type: application/json' \
    -d "{\"agencyId\": \"$agency\", \"token\": \"$token\"}" "$url/api/v1/session" || true
}
# regions_of URL COOKIE [CURL ARGS...]: the region codes GET /api/v1/regions lists, one a line
regions_of() {
  local url=$1 cookie=$2
  shift 2
  curl -s "$@" -b "nrm_session=$cookie" "$url/api/v1/regions" | jq -r '.regions[].code' || true
}
cookie_of_headers() {
  sed -n 's/^Set-Cookie: nrm_session=\([0-9a-f]*\);.*/\1/Ip' "$WORK/headers" | tr -d '\r'
}
BASE="http://127.0.0.1:$HTTP_PORT"
sign_in "$BASE" police-ma-06 token-police-ma-06 >/dev/null
POLICE_COOKIE=$(cookie_of_headers)
rotated=$(printf 'token-rotated\n' | "$NRMCTL" gateway-hash)
jq --arg h "$rotated" '(.gateway.logins[] | select(.agency_id == "coordinator") | .token_hash) = $h
  | .regions += [{code: "ZZ-99", name: "Reload test region"}]' "$WORK/config.json" >"$WORK/config.tmp"
cp "$WORK/config.json" "$WORK/config.before-reload.json"
mv "$WORK/config.tmp" "$WORK/config.json"
kill -HUP "${PIDS[9]}"
deadline=$((SECONDS + 10))
until regions_of "$BASE" "$POLICE_COOKIE" | grep -qx ZZ-99 || [ "$SECONDS" -ge "$deadline" ]; do
  sleep 0.2
done
check "after SIGHUP /api/v1/regions lists a region added to the configuration" \
  bash -c "curl -s -b 'nrm_session=$POLICE_COOKIE' '$BASE/api/v1/regions' | jq -e '.regions[-1].code == \"ZZ-99\"'"
check "... a session opened before the reload goes on (200)" \
  [ "$(curl -s -o /dev/null -w '%{http_code}' -b "nrm_session=$POLICE_COOKIE" "$BASE/api/v1/session")" = 200 ]
check "... the coordinator's new token signs in (200)" [ "$(sign_in "$BASE" coordinator token-rotated)" = 200 ]
check "... and its old token no longer does (401)" [ "$(sign_in "$BASE" coordinator token-coordinator)" = 401 ]
check "... and the gateway is still running" kill -0 "${PIDS[9]}"
# a file whose gateway section is refused keeps the configuration in force
jq '.gateway.session_ttl_s = "a day" | .regions += [{code: "ZZ-98", name: "Refused region"}]' \
  "$WORK/config.json" >"$WORK/config.tmp" && mv "$WORK/config.tmp" "$WORK/config.json"
kill -HUP "${PIDS[9]}"
deadline=$((SECONDS + 10))
until grep -q '"msg":"configuration reload refused"' "$WORK/gateway.log" || [ "$SECONDS" -ge "$deadline" ]; do
  sleep 0.2
done
check "a SIGHUP whose gateway section is refused logs the field (gateway.session_ttl_s)" \
  grep -q '"msg":"gateway configuration refused","field":"gateway.session_ttl_s"' "$WORK/gateway.log"
check "... and changes nothing: no new region, the rotated token still signs in (200)" \
  [ -z "$(regions_of "$BASE" "$POLICE_COOKIE" | grep -x ZZ-98)" -a "$(sign_in "$BASE" coordinator token-rotated)" = 200 ]
mv "$WORK/config.before-reload.json" "$WORK/config.json"

# --- a gateway section that does not read as GatewaySettings is refused at start -------------
# refused_field FILTER FIELD: the gateway started from the configuration filtered by jq FILTER
# exits 2, naming FIELD
refused_field() {
  jq "$1" "$WORK/config.json" >"$WORK/bad.json"
  RC=0
  timeout 20 "$GATEWAY" --config "$WORK/bad.json" >"$WORK/out" 2>"$WORK/err" || RC=$?
  [ "$RC" -eq 2 ] && grep -q "\"msg\":\"gateway configuration refused\",\"field\":\"$2\"" "$WORK/err"
}
check "a negative gateway.max_sse_clients is refused at start, naming the field" \
  refused_field '.gateway.max_sse_clients = -1' gateway.max_sse_clients
check "a login without its token_hash is refused at start, naming the field" \
  refused_field '.gateway.logins[0] |= del(.token_hash)' 'gateway.logins\[0\].token_hash'
check "an unknown gateway setting is refused at start, naming it" \
  refused_field '.gateway.max_sessions = 5' gateway.max_sessions
check "a negative gateway.connection_timeout_s is refused at start, naming the field" \
  refused_field '.gateway.connection_timeout_s = -1' gateway.connection_timeout_s

# --- limits: idle connections, one address, sign-ins at once, streams that lose their right ---
# a gateway of its own, with short limits (tests/integration/gateway_limits.py)
LIMITS_PORT=$(free_port)
LIMITS_BASE="http://127.0.0.1:$LIMITS_PORT"
jq --arg http "127.0.0.1:$LIMITS_PORT" '.services.gateway.http = $http
  | .gateway.connection_timeout_s = 2 | .gateway.max_connections_per_ip = 8
  | .gateway.max_sse_clients = 4 | .gateway.session_ttl_s = 20' "$WORK/config.json" >"$WORK/limits.json"
"$GATEWAY" --config "$WORK/limits.json" 2>>"$WORK/gateway-limits.log" &
PIDS[12]=$!
deadline=$((SECONDS + START_TIMEOUT_S))
until curl -sf "$LIMITS_BASE/healthz" >/dev/null 2>&1 ||
  ! kill -0 "${PIDS[12]}" 2>/dev/null || [ "$SECONDS" -ge "$deadline" ]; do
  sleep 0.2
done
RC=0
/usr/bin/python3 "$NRM_SOURCE_DIR/tests/integration/gateway_limits.py" "$LIMITS_BASE" \
  "$WORK/limits.json" "${PIDS[12]}" >"$WORK/limits.out" 2>&1 || RC=$?
cat "$WORK/limits.out"
PASSED=$((PASSED + $(grep -c '^ok - ' "$WORK/limits.out" || true)))
FAILED=$((FAILED + $(grep -c '^not ok - ' "$WORK/limits.out" || true)))
check "the limits driver ran to its end" [ "$RC" -eq 0 ]

# --- a catch-up that cannot move on ends the stream ---------------------------------------
# intake's stream loses its first event; a stream resuming from intake:0 gets, from Fetch, the
# events after it but never it
pg() {
  psql -X -A -t -h "$NRM_TEST_PGHOST" -p "$NRM_TEST_PGPORT" -U postgres -d "$DB" -c "$1"
}
fetches_from_1() {
  pg "SELECT count(*) FROM intake.audit_log WHERE kind = 'fetch' AND subject_id = 'intake@1'"
}
sign_in "$LIMITS_BASE" coordinator token-coordinator >/dev/null
STUCK_COOKIE=$(cookie_of_headers)
pg "DELETE FROM intake.outbox WHERE seq = 1" >/dev/null
fetches_before=$(fetches_from_1)
started=$SECONDS
curl -s -N -m 20 -b "nrm_session=$STUCK_COOKIE" -H 'Last-Event-ID: intake:0' \
  "$LIMITS_BASE/api/v1/events" >"$WORK/stuck.out" 2>/dev/null || true
stuck_s=$((SECONDS - started))
check "a stream whose catch-up Fetch does not give the next event ends (within 5 s)" \
  [ "$stuck_s" -le 5 -a -n "$(grep ': connected' "$WORK/stuck.out")" ]
check "... having asked the service once, not again and again" \
  [ $(($(fetches_from_1) - fetches_before)) -eq 1 ]
check "... and the gateway logs where it is stuck (stream and seq only)" \
  grep -q '"msg":"SSE catch-up stuck: the service gave no usable event at the position","stream":"intake","seq":1,"head":' \
  "$WORK/gateway-limits.log"
# --- a Last-Event-ID ahead of the stream goes on from its head ------------------------------
# stats_event CASE_ID: appends an event of topic gateway.test about CASE_ID to stats' stream
# (which nothing consumes) and waits until it is numbered
stats_event() {
  local before deadline=$((SECONDS + 10))
  before=$(pg "SELECT head FROM stats.stream_head")
  pg "INSERT INTO stats.outbox (event_id, topic, payload) SELECT gen_random_uuid(), 'gateway.test',
        '\\x3a0c676174657761792e74657374'::bytea || '\\x2a'::bytea
        || set_byte('\\x00'::bytea, 0, octet_length(c)) || c FROM convert_to('$1', 'UTF8') AS c" >/dev/null
  until [ "$(pg "SELECT head FROM stats.stream_head")" -gt "$before" ] ||
    [ "$SECONDS" -ge "$deadline" ]; do sleep 0.1; done
}
sign_in "$LIMITS_BASE" coordinator token-coordinator >/dev/null
AHEAD_COOKIE=$(cookie_of_headers)
AHEAD=$(($(pg "SELECT head FROM stats.stream_head") + 1000))
curl -s -N -m 5 -b "nrm_session=$AHEAD_COOKIE" -H "Last-Event-ID: stats:$AHEAD" \
  "$LIMITS_BASE/api/v1/events?topics=gateway.test" >"$WORK/ahead.out" 2>/dev/null &
LIVE=$!
sleep 1.5
stats_event after-a-resume-ahead
wait "$LIVE" || true
check "a stream resuming ahead of the stream's head (another history) gets the events that come" \
  grep -q "after-a-resume-ahead" "$WORK/ahead.out"
check "... and the gateway logs it by stream and positions" \
  grep -q "\"msg\":\"SSE resume ahead of the stream: going on from its head\",\"stream\":\"stats\",\"from\":$AHEAD," \
  "$WORK/gateway-limits.log"

kill -TERM "${PIDS[12]}"
RC=0
wait "${PIDS[12]}" || RC=$?
PIDS[12]=""
check "SIGTERM stops the limits gateway with exit 0" [ "$RC" -eq 0 ]

# --- TLS: HTTPS with a configured certificate, Secure cookie, short sessions expire -----------
openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=localhost \
  -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" -keyout "$WORK/tls.key" -out "$WORK/tls.crt" \
  >/dev/null 2>&1
TLS_PORT=$(free_port)
# bound to every address: allowed with TLS (plain HTTP there is refused below)
jq --arg crt "$WORK/tls.crt" --arg key "$WORK/tls.key" --arg http "0.0.0.0:$TLS_PORT" \
  '.services.gateway.http = $http | .services.gateway.tls_cert_file = $crt
   | .services.gateway.tls_key_file = $key | .gateway.session_ttl_s = 3' \
  "$WORK/config.json" >"$WORK/tls.json"
"$GATEWAY" --config "$WORK/tls.json" 2>>"$WORK/gateway-tls.log" &
PIDS[10]=$!
TLS_BASE="https://localhost:$TLS_PORT"
deadline=$((SECONDS + START_TIMEOUT_S))
until curl -sf --cacert "$WORK/tls.crt" "$TLS_BASE/healthz" >/dev/null 2>&1 ||
  ! kill -0 "${PIDS[10]}" 2>/dev/null || [ "$SECONDS" -ge "$deadline" ]; do
  sleep 0.2
done
check "with a certificate the gateway serves HTTPS on a non-loopback binding (verified by its certificate)" \
  curl -sf --cacert "$WORK/tls.crt" "$TLS_BASE/healthz" -o /dev/null
check "... and answers no plain HTTP on that port" \
  bash -c "! curl -sf -m 5 'http://127.0.0.1:$TLS_PORT/healthz' -o /dev/null"
status=$(sign_in "$TLS_BASE" police-ma-06 token-police-ma-06 --cacert "$WORK/tls.crt")
signed_in_at=$SECONDS
check "signing in over HTTPS is 200" [ "$status" = 200 ]
check "... and the session cookie is Secure, HttpOnly and SameSite=Strict" \
  bash -c "grep -i '^Set-Cookie: nrm_session=' '$WORK/headers' | grep -q '; Secure' &&
    grep -i '^Set-Cookie: nrm_session=' '$WORK/headers' | grep -q 'HttpOnly; SameSite=Strict'"
TLS_COOKIE=$(cookie_of_headers)
check "a fresh session (gateway.session_ttl_s = 3) is accepted (200)" \
  [ "$(curl -s -o /dev/null -w '%{http_code}' --cacert "$WORK/tls.crt" -b "nrm_session=$TLS_COOKIE" \
    "$TLS_BASE/api/v1/session")" = 200 -a $((SECONDS - signed_in_at)) -lt 3 ]
sleep 4
check "... and once its lifetime has passed it is refused (401), for the API as well" \
  [ "$(curl -s -o /dev/null -w '%{http_code}' --cacert "$WORK/tls.crt" -b "nrm_session=$TLS_COOKIE" \
    "$TLS_BASE/api/v1/session")" = 401 -a \
  "$(curl -s -o /dev/null -w '%{http_code}' --cacert "$WORK/tls.crt" -b "nrm_session=$TLS_COOKIE" \
    -H 'Content-Type: application/json' -d '{}' "$TLS_BASE/api/v1/intake/list_cases")" = 401 ]
kill -TERM "${PIDS[10]}"
RC=0
wait "${PIDS[10]}" || RC=$?
PIDS[10]=""
check "SIGTERM stops the TLS gateway with exit 0" [ "$RC" -eq 0 ]

# --- IPv6 ---------------------------------------------------------------------------------
if /usr/bin/python3 -c 'import socket; socket.socket(socket.AF_INET6).bind(("::1", 0))' 2>/dev/null; then
  V6_PORT=$(free_port)
  jq --arg http "[::1]:$V6_PORT" '.services.gateway.http = $http' "$WORK/config.json" >"$WORK/v6.json"
  "$GATEWAY" --config "$WORK/v6.json" 2>>"$WORK/gateway-v6.log" &
  PIDS[11]=$!
  deadline=$((SECONDS + START_TIMEOUT_S))
  until curl -sfg "http://[::1]:$V6_PORT/healthz" >/dev/null 2>&1 ||
    ! kill -0 "${PIDS[11]}" 2>/dev/null || [ "$SECONDS" -ge "$deadline" ]; do
    sleep 0.2
  done
  check "the gateway listens on IPv6 [::1] (plain HTTP: loopback)" \
    curl -sfg "http://[::1]:$V6_PORT/healthz" -o /dev/null
  check "... and signs in there (200)" [ "$(sign_in "http://[::1]:$V6_PORT" police-ma-06 token-police-ma-06 -g)" = 200 ]
  kill -TERM "${PIDS[11]}"
  RC=0
  wait "${PIDS[11]}" || RC=$?
  PIDS[11]=""
  check "SIGTERM stops the IPv6 gateway with exit 0" [ "$RC" -eq 0 ]
  jq '.services.gateway.http = "[::]:'"$(free_port)"'"' "$WORK/config.json" >"$WORK/open6.json"
  RC=0
  timeout 20 "$GATEWAY" --config "$WORK/open6.json" >"$WORK/out" 2>"$WORK/err" || RC=$?
  check "plain HTTP on a non-loopback IPv6 address [::] is refused at start" refused_plain
else
  echo "# skipped: this machine has no ::1, the IPv6 checks are not run"
fi

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
cat "$WORK"/gateway-*.log >>"$WORK/gateway.log" 2>/dev/null || true
if grep -q "ERROR: AddressSanitizer\|runtime error\|LeakSanitizer" "$WORK/gateway.log"; then
  fail "the gateway's log has no sanitizer report"
  grep -A30 "ERROR: AddressSanitizer\|runtime error\|LeakSanitizer" "$WORK/gateway.log" | head -60
else
  pass "the gateway's log has no sanitizer report"
fi
sys_end
