#!/usr/bin/env bash
# Benchmark (not a test): builds a release tree, starts a private PostgreSQL cluster and
# nrm-intake, submits N reports from C concurrent clients with nrm-bench, measures pgbench's
# one-row INSERT TPS on the same cluster in the same run and prints both with their ratio; then
# starts nrm-routing on the backlog of N cases and times how long it takes to route them all
# (its intake checkpoint reaching intake's head). Nothing is asserted about time.
#
#   tools/bench/run.sh [N] [C]          (defaults: 4000 reports, 8 clients)
set -euo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
reports=${1:-4000}
clients=${2:-8}
build=${NRM_BENCH_BUILD_DIR:-$root/build-bench}
port=${NRM_BENCH_PGPORT:-55460}
pgdir=/tmp/nrm-bench-pg-$port
work=$(mktemp -d /tmp/nrm-bench-XXXXXX)
db=nrm_bench
intake_pid=""
routing_pid=""

cleanup() {
  for pid in $routing_pid $intake_pid; do
    kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
  done
  bash "$root/tests/pg-cluster.sh" stop "$pgdir" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

bash "$root/deploy/install-deps.sh"
cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Release -DNRM_TESTS=OFF >/dev/null
cmake --build "$build" -j"$(nproc)" --target nrm-intake nrm-routing nrm-bench nrmctl >/dev/null

bash "$root/tests/pg-cluster.sh" start "$pgdir" "$port" >/dev/null
export PGHOST=$pgdir/sock PGPORT=$port PGUSER=postgres
psql -X -q -d postgres -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null
bash "$root/deploy/db-init.sh" "$db" >/dev/null

"$build/tools/nrmctl/nrmctl" keygen "$work/keys.json"
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
nrmctl=("$build/tools/nrmctl/nrmctl" --config "$root/deploy/demo/config.json")
"$build/services/intake/nrm-intake" --config "$root/deploy/demo/config.json" 2>"$work/intake.log" &
intake_pid=$!
for _ in $(seq 50); do
  "${nrmctl[@]}" --timeout 500 ping intake >/dev/null 2>&1 && break
  sleep 0.2
done

# CPU seconds used so far by a process (user + system), from /proc.
cpu_s() { awk -v hz="$(getconf CLK_TCK)" '{printf "%.2f", ($14 + $15) / hz}' "/proc/$1/stat"; }

echo "intake: $reports reports from $clients clients"
cpu_before=$(cpu_s "$intake_pid")
intake=$("$build/tools/bench/nrm-bench" --endpoint "$NRM_SERVICES_INTAKE_API" \
  --reports "$reports" --clients "$clients")
echo "$intake"
echo "intake process CPU during the run: $(echo "$(cpu_s "$intake_pid") - $cpu_before" | bc) s"


# The baseline: one-row INSERTs, one transaction each, same cluster, same client count.
psql -X -q -d "$db" -c "CREATE TABLE public.bench_insert (id bigserial PRIMARY KEY, body text)"
echo "INSERT INTO public.bench_insert (body) VALUES ('x');" >"$work/insert.sql"
per_client=$(((reports + clients - 1) / clients))
tps=$(/usr/lib/postgresql/15/bin/pgbench -n -c "$clients" -j 2 -t "$per_client" \
  -f "$work/insert.sql" "$db" 2>/dev/null | sed -n 's/^tps = \([0-9.]*\) (without.*/\1/p')
echo "pgbench one-row INSERT: $tps tps ($clients clients, $per_client transactions each)"
python3 - "$intake" "$tps" <<'PY'
import json, sys
r = json.loads(sys.argv[1]); tps = float(sys.argv[2])
print(f"ratio: intake {r['reports_per_s']:.0f} reports/s = {r['reports_per_s'] / tps:.2f} x "
      f"pgbench {tps:.0f} one-row INSERT tps; ack p50 {r['ack_p50_ms']} ms, p99 {r['ack_p99_ms']} ms")
PY

# Routing from a backlog: every report above is a case waiting to be routed.
head=$("${nrmctl[@]}" ping intake | /usr/bin/python3 -c 'import json,sys; print(json.load(sys.stdin).get("streamHead", 0))')
started=$(date +%s%N)
"$build/services/routing/nrm-routing" --config "$root/deploy/demo/config.json" 2>"$work/routing.log" &
routing_pid=$!
checkpoint=0
while [ "$checkpoint" -lt "$head" ]; do
  sleep 0.2
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
echo "routing: $head intake events ($reports cases) routed in $elapsed_ms ms from process start:" \
  "$((head * 1000 / (elapsed_ms > 0 ? elapsed_ms : 1))) events/s"
