# The shell side of the integration harness, sourced by tests/integration/*.sh: a work folder
# removed at exit with the processes started, pass/fail bookkeeping, free ports, a database on
# the test cluster, a configuration made from the demonstration one, and the services started
# natively. Needs NRM_TEST_PGHOST, NRM_TEST_PGPORT, NRM_BUILD_DIR and NRM_SOURCE_DIR (CTest
# gives them) and jq.
# shellcheck shell=bash

: "${NRM_TEST_PGHOST:?}" "${NRM_TEST_PGPORT:?}" "${NRM_BUILD_DIR:?}" "${NRM_SOURCE_DIR:?}"

NRMCTL=$NRM_BUILD_DIR/tools/nrmctl/nrmctl
START_TIMEOUT_S=${START_TIMEOUT_S:-30}       # how long a service may take to answer its first Ping
SETTLE_TIMEOUT_S=${SETTLE_TIMEOUT_S:-30}     # how long the system may take to apply everything
PIDS=()
PASSED=0
FAILED=0

# sys_begin NAME: creates the work folder $WORK and arranges the clean-up at exit.
sys_begin() {
  WORK=$(mktemp -d "/tmp/nrm-t-$1-XXXXXX")
  trap sys_cleanup EXIT
}

# sys_cleanup: stops every process in PIDS, removes the work folder and frees the ports
# reserved (free_port).
sys_cleanup() {
  local pid
  for pid in "${PIDS[@]}"; do [ -n "$pid" ] && kill "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do [ -n "$pid" ] && wait "$pid" 2>/dev/null || true; done
  rm -rf "$WORK"
  local f
  for f in /tmp/nrm-test-port-*; do
    [ "$(cat "$f" 2>/dev/null)" = "$$" ] && rm -f "$f"
  done
  return 0
}

# sys_end: prints the closing line and exits 0 only when nothing failed.
sys_end() {
  echo "$PASSED passed, $FAILED failed"
  [ "$FAILED" -eq 0 ]
}

pass() {
  PASSED=$((PASSED + 1))
  echo "ok - $1"
}

# fail NAME: counts a failure and shows the start of the last command's output.
fail() {
  FAILED=$((FAILED + 1))
  echo "not ok - $1"
  local f
  for f in out err; do
    [ -s "$WORK/$f" ] && sed "s/^/    $f: /" "$WORK/$f" | head -20
  done
  return 0
}

# check NAME COMMAND...: passes when COMMAND succeeds.
check() {
  local name=$1
  shift
  if "$@"; then pass "$name"; else fail "$name"; fi
}

# holds JQ-ARGS...: jq -e on its arguments is true (its output is not shown).
holds() {
  jq -e "$@" >/dev/null
}

# free_port: a TCP port on 127.0.0.1 nobody listens on and no test holds, in 10000-19999:
# below the C harness's ports and outside the kernel's range for outgoing connections
# (32768-60999), where a port free now can be taken by a client a moment later. Each port
# handed out is reserved for this script until it exits: a file naming its pid
# (/tmp/nrm-test-port-N), created with noclobber so that two tests starting together cannot
# both take a port, nor one script twice (free_port runs in $(...), a subshell, so it cannot
# remember what it handed out; $$ is still the script's pid there). A reservation whose owner
# is gone (a test killed) is taken over.
free_port() {
  local port file owner
  while :; do
    port=$((10000 + RANDOM % 10000))
    file=/tmp/nrm-test-port-$port
    if ! (set -o noclobber && echo "$$" >"$file") 2>/dev/null; then
      owner=$(cat "$file" 2>/dev/null || true)
      [ -n "$owner" ] && [ -d "/proc/$owner" ] || rm -f "$file"
      continue
    fi
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
      echo "$port"
      return
    fi
  done
}

# sys_database DB: a fresh database DB on the test cluster, prepared by deploy/db-init.sh.
sys_database() {
  PGOPTIONS="-c client_min_messages=warning" psql -X -q -h "$NRM_TEST_PGHOST" \
    -p "$NRM_TEST_PGPORT" -U postgres -c "DROP DATABASE IF EXISTS $1 WITH (FORCE)" >/dev/null
  PGHOST=$NRM_TEST_PGHOST PGPORT=$NRM_TEST_PGPORT PGUSER=postgres \
    "$NRM_SOURCE_DIR/deploy/db-init.sh" "$1" >/dev/null
}

# sys_config DB KEYS SERVICE...: writes $WORK/config.json, the demonstration configuration
# with its data files merged in, a CURVE certificate per service and agency ($WORK/certs), the
# database DB, the keyring KEYS, a 500 ms heartbeat and
# endpoints on free ports for each SERVICE. reintegration and stats, optional for the others, are
# left out of the configuration unless they are among the SERVICEs. A jq filter in SYS_CONFIG_FILTER
# (optional) is applied last.
sys_config() {
  local db=$1 keys=$2 endpoints='{}' s
  shift 2
  for s in "$@"; do
    endpoints=$(jq --arg s "$s" --arg api "tcp://127.0.0.1:$(free_port)" \
      --arg events "tcp://127.0.0.1:$(free_port)" \
      '.[$s] = {api: $api, events: $events}' <<<"$endpoints")
  done
  jq --arg conninfo "host=$NRM_TEST_PGHOST port=$NRM_TEST_PGPORT dbname=$db" \
    --arg keys "$keys" --arg demo "$NRM_SOURCE_DIR/deploy/demo" \
    --argjson endpoints "$endpoints" "
    .include |= map(if startswith(\"/\") then . else \$demo + \"/\" + . end) |
    .database.conninfo = \$conninfo | .crypto.keys_file = \$keys | .heartbeat_ms = 500 |
    reduce (\$endpoints | keys[]) as \$s (.;
      .services[\$s].api = \$endpoints[\$s].api | .services[\$s].events = \$endpoints[\$s].events |
      .services[\$s].api_connect = \$endpoints[\$s].api |
      .services[\$s].events_connect = \$endpoints[\$s].events) |
    (if \$endpoints | has(\"reintegration\") then . else del(.services.reintegration) end) |
    (if \$endpoints | has(\"stats\") then . else del(.services.stats) end) |
    ${SYS_CONFIG_FILTER:-.}
    " "$NRM_SOURCE_DIR/deploy/demo/config.json" >"$WORK/config.json"
  # every service and agency gets its CURVE key; nrmctl speaks as the coordinator by default
  bash "$NRM_SOURCE_DIR/deploy/certify.sh" "$NRMCTL" "$WORK/config.json" "$WORK"
  export NRM_CERT=$WORK/certs/coordinator.cert
}

# cert_of AGENCY: the certificate file of AGENCY made by sys_config (for nrmctl --cert).
cert_of() {
  echo "$WORK/certs/$1.cert"
}

# sys_start INDEX SERVICE: starts SERVICE with $WORK/config.json in the background, its log in
# $WORK/SERVICE.log, its PID in PIDS[INDEX].
sys_start() {
  "$NRM_BUILD_DIR/services/$2/nrm-$2" --config "$WORK/config.json" 2>>"$WORK/$2.log" &
  PIDS[$1]=$!
}

# sys_wait_ready INDEX SERVICE: waits until SERVICE answers Ping; exits the test with its log
# when it dies or START_TIMEOUT_S passes.
sys_wait_ready() {
  local deadline=$((SECONDS + START_TIMEOUT_S))
  until "$NRMCTL" --config "$WORK/config.json" --timeout 1000 ping "$2" >/dev/null 2>&1; do
    if ! kill -0 "${PIDS[$1]}" 2>/dev/null || [ "$SECONDS" -ge "$deadline" ]; then
      echo "$2 did not start; its log:"
      cat "$WORK/$2.log"
      exit 1
    fi
    sleep 0.2
  done
}

# sys_settle: waits until every consumer's lag is 0 and no head moved for one poll. Returns 1
# when the system does not settle within SETTLE_TIMEOUT_S.
sys_settle() {
  local deadline=$((SECONDS + SETTLE_TIMEOUT_S)) previous="" heads
  while [ "$SECONDS" -lt "$deadline" ]; do
    if "$NRMCTL" --config "$WORK/config.json" --timeout 2000 status --json \
      >"$WORK/settle.json" 2>/dev/null; then
      heads=$(jq -c '[.services[].streamHead]' "$WORK/settle.json")
      if holds '[.services[].consumers[].lag] | all(. == 0)' "$WORK/settle.json" &&
        [ "$heads" = "$previous" ]; then
        return 0
      fi
      previous=$heads
    fi
    sleep 0.5
  done
  return 1
}
