#!/usr/bin/env bash
# Benchmark (not a test): builds a release tree, starts a private PostgreSQL cluster and two
# nrm-intake processes on databases of their own: one with CURVE (every service and agency of
# the demonstration configuration gets a key pair from deploy/certify.sh, in the work
# directory), one in plain text (security.curve false, through NRM_SECURITY_CURVE=false in
# that process's environment only). nrm-bench submits N reports to each from C concurrent
# clients, as the national hotline (with its certificate for the CURVE one), after a warm-up,
# in alternating halves; both figures therefore come from one run, with their ratio
# CURVE/plain. It measures pgbench's one-row INSERT TPS on the same cluster and prints each
# intake figure against it; then starts nrm-routing (CURVE) on the backlog of the CURVE intake
# and times how long it takes to route it all (its intake checkpoint reaching intake's head).
# Nothing is asserted about time.
#
#   tools/bench/run.sh [N] [C]          (defaults: 4000 reports, 8 clients)
set -euo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
reports=${1:-4000}
clients=${2:-8}
build=${NRM_BENCH_BUILD_DIR:-$root/build-bench}
port=${NRM_BENCH_PGPORT:-31460}
pgdir=/tmp/nrm-bench-pg-$port
. "$root/tools/bench/lib.sh"
work=$(mktemp -d /tmp/nrm-bench-XXXXXX)
db=nrm_bench
plain_db=nrm_bench_plain
intake_pid=""
plain_pid=""
routing_pid=""

cleanup() {
  for pid in $routing_pid $plain_pid $intake_pid; do
    kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
  done
  bench_cluster_stop
  rm -rf "$work"
}
trap cleanup EXIT

bench_build nrm-intake nrm-routing nrm-bench nrmctl

bench_cluster_start
for name in $db $plain_db; do
  psql -X -q -d postgres -c "DROP DATABASE IF EXISTS $name WITH (FORCE)" >/dev/null
  bash "$root/deploy/db-init.sh" "$name" >/dev/null
done

nrmctl_bin=$build/tools/nrmctl/nrmctl
"$nrmctl_bin" keygen "$work/keys.json"
# CURVE: a key pair per service and agency; $work/config.json lists them
bash "$root/deploy/certify.sh" "$nrmctl_bin" "$root/deploy/demo/config.json" "$work"
config=$work/config.json
export NRM_CERT=$work/certs/coordinator.cert # nrmctl speaks as the coordinator
hotline_cert=$work/certs/hotline-national.cert
intake_key=$("$nrmctl_bin" cert key "$work/certs/service-intake.cert")
export NRM_DATABASE_CONNINFO="host=$pgdir/sock port=$port dbname=$db"
export NRM_CRYPTO_KEYS_FILE=$work/keys.json
export NRM_SERVICES_INTAKE_API=tcp://127.0.0.1:$((port + 1))
export NRM_SERVICES_INTAKE_EVENTS=tcp://127.0.0.1:$((port + 2))
export NRM_SERVICES_ROUTING_API=tcp://127.0.0.1:$((port + 3))
export NRM_SERVICES_ROUTING_EVENTS=tcp://127.0.0.1:$((port + 4))
export NRM_SERVICES_INTAKE_API_CONNECT=$NRM_SERVICES_INTAKE_API
export NRM_SERVICES_INTAKE_EVENTS_CONNECT=$NRM_SERVICES_INTAKE_EVENTS
export NRM_SERVICES_ROUTING_API_CONNECT=$NRM_SERVICES_ROUTING_API
export NRM_LOG_LEVEL=warn
nrmctl=("$nrmctl_bin" --config "$config")
# The plain-text intake: its own database and ports; CURVE off for that process (and for the
# nrmctl that pings it) through the environment only.
plain_api=tcp://127.0.0.1:$((port + 5))
plain_env=(NRM_SECURITY_CURVE=false NRM_DATABASE_CONNINFO="host=$pgdir/sock port=$port dbname=$plain_db"
  NRM_SERVICES_INTAKE_API="$plain_api" NRM_SERVICES_INTAKE_API_CONNECT="$plain_api"
  NRM_SERVICES_INTAKE_EVENTS=tcp://127.0.0.1:$((port + 6))
  NRM_SERVICES_INTAKE_EVENTS_CONNECT=tcp://127.0.0.1:$((port + 6)))

# wait_ready LOG NRMCTL-PREFIX...: waits until intake answers a Ping; shows LOG and exits if not.
wait_ready() {
  local log=$1
  shift
  for _ in $(seq 50); do
    "$@" --timeout 500 ping intake >/dev/null 2>&1 && return 0
    sleep 0.2
  done
  echo "intake did not start; its log:" >&2
  cat "$log" >&2
  exit 1
}

"$build/services/intake/nrm-intake" --config "$config" 2>"$work/intake.log" &
intake_pid=$!
wait_ready "$work/intake.log" "${nrmctl[@]}"
env "${plain_env[@]}" "$build/services/intake/nrm-intake" --config "$config" \
  2>"$work/intake-plain.log" &
plain_pid=$!
wait_ready "$work/intake-plain.log" env "${plain_env[@]}" "${nrmctl[@]}"

# CPU seconds used so far by a process (user + system), from /proc.
cpu_s() { awk -v hz="$(getconf CLK_TCK)" '{printf "%.2f", ($14 + $15) / hz}' "/proc/$1/stat"; }

# Warm-up, not measured: each intake takes a tenth of the reports first (connections, caches,
# the database's first pages), so that neither run pays the cold start for the other.
warmup=$(((reports + 9) / 10))
[ "$warmup" -ge "$clients" ] || warmup=$clients
"$build/tools/bench/nrm-bench" --endpoint "$NRM_SERVICES_INTAKE_API" --reports "$warmup" \
  --clients "$clients" --cert "$hotline_cert" --server-key "$intake_key" >/dev/null
"$build/tools/bench/nrm-bench" --endpoint "$plain_api" --reports "$warmup" --clients "$clients" \
  --agency hotline-national >/dev/null

# The measured runs alternate CURVE, plain, plain, CURVE with half the reports each, so that a
# drift of the shared machine's load during the run weighs on both alike. Each run's line is
# printed; the figures of each mode are its two halves together (reports/s: reports over
# seconds; latencies: the mean of the two halves' percentiles).
half=$((reports / 2))
[ "$half" -ge "$clients" ] || half=$clients
runs=()
# bench MODE: one run of $half reports against the CURVE or the plain intake, printed, kept.
bench() {
  local pid out before
  if [ "$1" = curve ]; then
    pid=$intake_pid
    before=$(cpu_s "$pid")
    out=$("$build/tools/bench/nrm-bench" --endpoint "$NRM_SERVICES_INTAKE_API" --reports "$half" \
      --clients "$clients" --cert "$hotline_cert" --server-key "$intake_key")
  else
    pid=$plain_pid
    before=$(cpu_s "$pid")
    out=$("$build/tools/bench/nrm-bench" --endpoint "$plain_api" --reports "$half" \
      --clients "$clients" --agency hotline-national)
  fi
  echo "intake $1: $out, intake CPU $(echo "$(cpu_s "$pid") - $before" | bc) s"
  runs+=("$1 $out")
}
echo "intake: $((half * 2)) reports per mode from $clients clients (as hotline-national)," \
  "CURVE and plain text (security.curve false) alternating"
bench curve
bench plain
bench plain
bench curve
kill "$plain_pid" 2>/dev/null || true
wait "$plain_pid" 2>/dev/null || true
plain_pid=""

# The baseline: one-row INSERTs, one transaction each, same cluster, same client count.
psql -X -q -d "$db" -c "CREATE TABLE public.bench_insert (id bigserial PRIMARY KEY, body text)"
echo "INSERT INTO public.bench_insert (body) VALUES ('x');" >"$work/insert.sql"
per_client=$(((reports + clients - 1) / clients))
tps=$(/usr/lib/postgresql/15/bin/pgbench -n -c "$clients" -j 2 -t "$per_client" \
  -f "$work/insert.sql" "$db" 2>/dev/null | sed -n 's/^tps = \([0-9.]*\) (without.*/\1/p')
echo "pgbench one-row INSERT: $tps tps ($clients clients, $per_client transactions each)"
/usr/bin/python3 - "$tps" "${runs[@]}" <<'PY'
import json, sys
tps = float(sys.argv[1])
modes = {}
for run in sys.argv[2:]:
    mode, result = run.split(" ", 1)
    modes.setdefault(mode, []).append(json.loads(result))
def total(mode):
    rs = modes[mode]
    return {"reports_per_s": sum(r["ok"] for r in rs) / sum(r["seconds"] for r in rs),
            "ack_p50_ms": sum(r["ack_p50_ms"] for r in rs) / len(rs),
            "ack_p99_ms": sum(r["ack_p99_ms"] for r in rs) / len(rs)}
curve, plain = total("curve"), total("plain")
for name, r in (("intake", curve), ("plain intake", plain)):
    print(f"ratio: {name} {r['reports_per_s']:.0f} reports/s = {r['reports_per_s'] / tps:.2f} x "
          f"pgbench {tps:.0f} one-row INSERT tps; ack p50 {r['ack_p50_ms']:.2f} ms, "
          f"p99 {r['ack_p99_ms']:.2f} ms")
print(f"ratio CURVE/plain: reports/s {curve['reports_per_s'] / plain['reports_per_s']:.2f}, "
      f"ack p50 {curve['ack_p50_ms'] / plain['ack_p50_ms']:.2f}, "
      f"ack p99 {curve['ack_p99_ms'] / plain['ack_p99_ms']:.2f}")
PY

# Routing from a backlog: every report above is a case waiting to be routed.
head=$("${nrmctl[@]}" ping intake | /usr/bin/python3 -c 'import json,sys; print(json.load(sys.stdin).get("streamHead", 0))')
started=$(date +%s%N)
"$build/services/routing/nrm-routing" --config "$config" 2>"$work/routing.log" &
routing_pid=$!
checkpoint=0
while [ "$checkpoint" -lt "$head" ]; do
  sleep 0.2
  kill -0 "$routing_pid" 2>/dev/null || { echo "routing died; its log:" >&2; cat "$work/routing.log" >&2; exit 1; }
  pong=$("${nrmctl[@]}" --timeout 2000 ping routing 2>/dev/null || true)
  checkpoint=$(/usr/bin/python3 -c '
import json, sys
try:
    pong = json.loads(sys.argv[1])
except ValueError:
    pong = {}
print(next((int(c.get("checkpoint", 0)) for c in pong.get("consumers", []) if c["stream"] == "intake"), 0))' "$pong")
done
elapsed_ms=$((($(date +%s%N) - started) / 1000000))
echo "routing: $head intake events ($head cases) routed in $elapsed_ms ms from process start:" \
  "$((head * 1000 / (elapsed_ms > 0 ? elapsed_ms : 1))) events/s"
