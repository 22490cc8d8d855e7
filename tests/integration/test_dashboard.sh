#!/usr/bin/env bash
# The dashboard page in a real browser (headless Chromium from Debian, driven over its DevTools
# protocol by tests/browser/dashboard.py) against the real gateway and the real services: the
# coordinator sees a report submitted through intake appear on the map and in the live feed;
# the provider the report was referred to accepts it with a click and referral.accepted is on
# routing's stream; a stranger's session sees and does none of it; the shelter operator sees its
# shelters. The coordinator's statistics panel shows what GetStatistics answers (stats runs with
# k = 2, so some cells are suppressed), nobody else has one, and it says "statistics
# unavailable" once stats is stopped; nrmctl status and ping list stats. A screenshot of each view is written into the test's output folder and copied
# under build-test/screenshots/ (NRM_SCREENSHOTS overrides), and the page load time is printed.
#
# Skipped (exit 77, CTest SKIP_RETURN_CODE) while the gateway is not built.
# Run by CTest with NRM_TEST_PGHOST, NRM_TEST_PGPORT, NRM_BUILD_DIR and NRM_SOURCE_DIR.
set -euo pipefail
# shellcheck disable=SC2034 # SYS_CONFIG_FILTER is read by sys_config

: "${NRM_BUILD_DIR:?}" "${NRM_SOURCE_DIR:?}"
GATEWAY=$NRM_BUILD_DIR/services/gateway/nrm-gateway
if [ ! -x "$GATEWAY" ]; then
  echo "skip: the gateway is not built ($GATEWAY missing): the dashboard needs it"
  echo "0 passed, 0 failed, 1 skipped"
  exit 77
fi

source "$NRM_SOURCE_DIR/tests/harness/system.sh"

DB=t_dashboard
SERVICES=(intake routing shelter notify stats)
STATS_K=2 # small enough that two cases show, and that single cases are suppressed
PY=/usr/bin/python3 # Debian's, with python3-websocket and python3-nacl
TOKEN=dashboard-test-token-$RANDOM$RANDOM
EMPTY_REGION=MA-99 # configured here only: no case, shelter or referral is ever in it

sys_begin dashboard

# no_inline FILE: no inline script or style (the gateway's Content-Security-Policy forbids them)
no_inline() {
  ! grep -Eq '<script>|<script [^>]*>[^<]|<style|style=' "$1"
}

# lacks FILE GREP-ARGS...: none of the fixed strings is in FILE.
lacks() {
  local file=$1
  shift
  ! grep -q -F "$@" "$file"
}

for need in /usr/bin/chromium "$PY"; do
  [ -x "$need" ] || { echo "not ok - $need is missing (deploy/install-deps.sh installs it)"; exit 1; }
done
"$PY" -c 'import websocket, nacl.pwhash' ||
  { echo "not ok - python3-websocket and python3-nacl are needed (deploy/install-deps.sh)"; exit 1; }

# --- Setup: database, keyring, configuration with the gateway and a login for every agency -----

sys_database "$DB"
"$NRMCTL" keygen "$WORK/keys.json"
HTTP_PORT=$(free_port)
HASH=$("$PY" -c 'import sys, nacl.pwhash; print(nacl.pwhash.str(sys.argv[1].encode()).decode())' "$TOKEN")
AGENCIES=$(jq -s -c '[.[].agencies[]?.id] | unique' "$NRM_SOURCE_DIR"/deploy/demo/*.json)
LOGINS=$(jq -c --arg h "$HASH" 'map({agency_id: ., token_hash: $h})' <<<"$AGENCIES")
SYS_CONFIG_FILTER=".services.gateway.http = \"127.0.0.1:$HTTP_PORT\" |
  .services.gateway.www = \"$NRM_SOURCE_DIR/services/gateway/www\" | .gateway.logins = $LOGINS |
  .regions += [{code: \"$EMPTY_REGION\", name: \"Configured, without cases\"}] |
  .stats.k = $STATS_K | .stats.readers = []"
sys_config "$DB" "$WORK/keys.json" "${SERVICES[@]}"

i=0
for s in "${SERVICES[@]}"; do
  sys_start "$i" "$s"
  i=$((i + 1))
done
i=0
for s in "${SERVICES[@]}"; do
  sys_wait_ready "$i" "$s"
  i=$((i + 1))
done
sys_start "$i" gateway
URL=http://127.0.0.1:$HTTP_PORT
deadline=$((SECONDS + START_TIMEOUT_S))
until curl -fsS -o /dev/null "$URL/readyz" 2>/dev/null || curl -fsS -o /dev/null "$URL/healthz" 2>/dev/null; do
  if ! kill -0 "${PIDS[$i]}" 2>/dev/null || [ "$SECONDS" -ge "$deadline" ]; then
    echo "the gateway did not start; its log:"
    cat "$WORK/gateway.log"
    exit 1
  fi
  sleep 0.2
done
check "the gateway serves the page" curl -fsS -o "$WORK/index.html" "$URL/"
check "the page has no inline script or style" no_inline "$WORK/index.html"

# nrmctl's health commands list stats when it is configured
"$NRMCTL" --config "$WORK/config.json" status --json >"$WORK/out" 2>"$WORK/err" || true
check "nrmctl status lists stats after the five (here four) services, healthy" holds \
  '[.services[].service] == ["intake", "routing", "shelter", "notify", "stats"] and
   (.services[] | select(.service == "stats") | .healthy == true)' "$WORK/out"
"$NRMCTL" --config "$WORK/config.json" ping >"$WORK/out" 2>"$WORK/err" || true
check "nrmctl ping asks stats by default when it is configured, last" holds -s \
  '[.[].service] == ["intake", "routing", "shelter", "notify", "stats"]' "$WORK/out"

# a second case in another region, so that the statistics have a count of 2 (shown) and of 1
# (suppressed with k = 2) before the browser's own report
jq '.identifiedAtMs = (now * 1000 - 3600000 | floor | tostring)' \
  "$NRM_SOURCE_DIR/deploy/demo/scenario/01-minor-ma04.json" >"$WORK/report2.json"
"$NRMCTL" --config "$WORK/config.json" --cert "$(cert_of police-ma-04)" submit "$WORK/report2.json" \
  >"$WORK/out" 2>"$WORK/err" || true
check "a second report (MA-04) opens a case" holds '.caseRef.caseId | length > 0' "$WORK/out"

# --- The browser --------------------------------------------------------------------------------

OUT=$WORK/out-browser
mkdir -p "$OUT"
jq '.person.fullName = "Dashboard Test Person" | .person.phone = "+212 600 111 222" |
  .identifiedAtMs = (now * 1000 | floor | tostring)' \
  "$NRM_SOURCE_DIR/deploy/demo/scenario/02-forced-labour-ma06.json" >"$WORK/report.json"
RC=0
NRM_GATEWAY_URL=$URL NRM_TOKEN=$TOKEN NRMCTL=$NRMCTL NRM_CONFIG=$WORK/config.json \
  NRM_CERTS=$WORK/certs NRM_REPORT=$WORK/report.json NRM_REPORTER=police-ma-06 \
  NRM_SHELTER_OPERATOR=shelter-op-casa NRM_STRANGER=consulate-ng NRM_OUT=$OUT \
  NRM_EMPTY_REGION=$EMPTY_REGION NRM_STATS_K=$STATS_K NRM_STATS_PID=${PIDS[4]} NRM_CASES_BEFORE=1 \
  timeout 240 "$PY" "$NRM_SOURCE_DIR/tests/browser/dashboard.py" >"$WORK/browser.out" 2>&1 || RC=$?
grep -v -E '^[0-9]+ passed, [0-9]+ failed' "$WORK/browser.out" || true
PASSED=$((PASSED + $(grep -c '^ok - ' "$WORK/browser.out" || true)))
FAILED=$((FAILED + $(grep -c '^not ok - ' "$WORK/browser.out" || true)))
if [ "$RC" -ne 0 ] && ! grep -q '^not ok - ' "$WORK/browser.out"; then
  fail "the browser test ended with status $RC"
fi

# the screenshots outlive the work folder, for a person to look at
SHOTS=${NRM_SCREENSHOTS:-$NRM_BUILD_DIR/screenshots}
mkdir -p "$SHOTS"
cp "$OUT"/*.png "$SHOTS"/ 2>/dev/null || true
for png in "$SHOTS"/*.png; do
  if [ -e "$png" ]; then echo "# screenshot: $png"; fi
done

check "no identifying data in the gateway's log" \
  lacks "$WORK/gateway.log" -e "Dashboard Test Person" -e "600 111 222"

sys_end
