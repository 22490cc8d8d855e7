#!/usr/bin/env bash
# Benchmark (not a test): the reintegration due-scan with many open plans. Builds a release
# tree, starts a private PostgreSQL cluster, bulk-inserts P open plans with three follow-ups
# each (3 x P rows, none due), then:
#   1. the idle scan: the probe the timer runs every check_ms when nothing is due, and the two
#      due/overdue statements finding nothing, timed with psql (median of R runs each);
#   2. the due-scan: D first follow-ups made due at once, one nrm-reintegration (CURVE, the
#      demonstration configuration) started with check_ms 50 and scan_batch B, and the time
#      until every one is due (each move writes its reintegration.followup_due event in the
#      same transaction), hence the time per scan of B and per due follow-up.
# Nothing is asserted about time.
#
#   tools/bench/reintegration.sh [P] [D] [B]   (defaults: 100000 plans, 10000 due, batch 500)
set -euo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
plans=${1:-100000}
due=${2:-10000}
batch=${3:-500}
runs=21
build=${NRM_BENCH_BUILD_DIR:-$root/build-bench}
port=${NRM_BENCH_PGPORT:-31462}
pgdir=/tmp/nrm-bench-reint-pg-$port
. "$root/tools/bench/lib.sh"
work=$(mktemp -d /tmp/nrm-bench-reint-XXXXXX)
db=nrm_bench_reintegration
service_pid=""

cleanup() {
  [ -n "$service_pid" ] && kill "$service_pid" 2>/dev/null && wait "$service_pid" 2>/dev/null
  bench_cluster_stop
  rm -rf "$work"
}
trap cleanup EXIT

bench_build nrm-reintegration nrmctl

bench_cluster_start
psql -X -q -d postgres -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null
bash "$root/deploy/db-init.sh" "$db" >/dev/null
sql() { psql -X -q -t -A -v ON_ERROR_STOP=1 -d "$db" "$@"; }

nrmctl_bin=$build/tools/nrmctl/nrmctl
"$nrmctl_bin" keygen "$work/keys.json" >/dev/null
bash "$root/deploy/certify.sh" "$nrmctl_bin" "$root/deploy/demo/config.json" "$work"
export NRM_CERT=$work/certs/coordinator.cert
export NRM_DATABASE_CONNINFO="host=$pgdir/sock port=$port dbname=$db"
export NRM_CRYPTO_KEYS_FILE=$work/keys.json
api_port=${NRM_BENCH_API_PORT:-57561} # api, and events on the next port
export NRM_SERVICES_REINTEGRATION_API=tcp://127.0.0.1:$api_port
export NRM_SERVICES_REINTEGRATION_EVENTS=tcp://127.0.0.1:$((api_port + 1))
export NRM_SERVICES_REINTEGRATION_API_CONNECT=$NRM_SERVICES_REINTEGRATION_API
export NRM_REINTEGRATION_CHECK_MS=50
export NRM_REINTEGRATION_SCAN_BATCH=$batch
export NRM_LOG_LEVEL=warn
nrmctl=("$nrmctl_bin" --config "$work/config.json")

# The schema: one start of the service applies the migrations.
start_service() {
  "$build/services/reintegration/nrm-reintegration" --config "$work/config.json" \
    2>>"$work/reintegration.log" &
  service_pid=$!
  for _ in $(seq 200); do
    "${nrmctl[@]}" --timeout 300 ping reintegration >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  cat "$work/reintegration.log"
  exit 1
}
stop_service() {
  kill "$service_pid" 2>/dev/null || true
  wait "$service_pid" || true
  service_pid=""
}
start_service
stop_service

echo "reintegration bench: $plans open plans, 3 follow-ups each (far in the future)"
start=$(date +%s%3N)
sql <<SQL
\\set ON_ERROR_STOP 1
SET search_path = reintegration;
INSERT INTO plans (plan_id, case_id, kind, manager_agency_id, opened_ms)
SELECT 'bench-' || g, 'bench-case-' || g, 1, 'ilo-partner-national',
       (extract(epoch FROM now()) * 1000)::bigint FROM generate_series(1, $plans) g;
INSERT INTO followups (plan_id, number, due_ms, window_end_ms)
SELECT 'bench-' || g, n, (extract(epoch FROM now()) * 1000)::bigint + n * 7776000000,
       (extract(epoch FROM now()) * 1000)::bigint + n * 7776000000 + 2592000000
  FROM generate_series(1, $plans) g, generate_series(1, 3) n;
ANALYZE plans;
ANALYZE followups;
SQL
echo "  bulk insert: $(($(date +%s%3N) - start)) ms"

# median_ms SQL: the median execution time of SQL over $runs runs (EXPLAIN ANALYZE).
median_ms() {
  local _
  for _ in $(seq "$runs"); do
    sql -c "SET search_path = reintegration" -c "EXPLAIN (ANALYZE, FORMAT JSON) $1" |
      jq '.[0]["Execution Time"]'
  done | sort -n | awk '{a[NR] = $1} END {printf "%.3f", a[int((NR + 1) / 2)]}'
}
now_ms=$(date +%s%3N)
probe="SELECT EXISTS (SELECT 1 FROM followups WHERE state = 'scheduled' AND due_ms <= $now_ms) OR EXISTS (SELECT 1 FROM followups WHERE state = 'due' AND window_end_ms <= $now_ms)"
fall_due="SELECT f.plan_id FROM followups f JOIN plans p USING (plan_id) WHERE f.state = 'scheduled' AND f.due_ms <= $now_ms AND p.state = 'open' ORDER BY f.due_ms, f.plan_id, f.number LIMIT $batch"
echo "  idle scan, nothing due (median of $runs): probe $(median_ms "$probe") ms;" \
  "due statement $(median_ms "$fall_due") ms"

# The due-scan: the first follow-up of $due plans falls due now.
sql -c "UPDATE reintegration.followups SET due_ms = $now_ms, window_end_ms = $now_ms + 3600000
        WHERE number = 1 AND plan_id IN (SELECT 'bench-' || g FROM generate_series(1, $due) g)" \
  >/dev/null
sql -c "ANALYZE reintegration.followups" >/dev/null
# the move of one batch alone (the UPDATE the scan runs, rolled back each time)
move="WITH d AS (SELECT f.plan_id, f.number FROM followups f JOIN plans p USING (plan_id) WHERE f.state = 'scheduled' AND f.due_ms <= $now_ms AND p.state = 'open' ORDER BY f.due_ms, f.plan_id, f.number LIMIT $batch FOR UPDATE OF f SKIP LOCKED) UPDATE followups f SET state = 'due' FROM d, plans p WHERE f.plan_id = d.plan_id AND f.number = d.number AND p.plan_id = f.plan_id RETURNING f.plan_id"
for _ in $(seq "$runs"); do
  sql -c "SET search_path = reintegration" -c "BEGIN" \
    -c "EXPLAIN (ANALYZE, FORMAT JSON) $move" -c "ROLLBACK" | grep -v '^$' | jq '.[0]["Execution Time"]'
done | sort -n | awk -v b="$batch" '{a[NR] = $1} END {
  m = a[int((NR + 1) / 2)]; printf "  one batch moved (SQL only, median): %.3f ms, %.4f ms per follow-up\n", m, m / b }'
start=$(date +%s%3N)
start_service
ready=$(date +%s%3N)
until [ "$(sql -c "SELECT count(*) FROM reintegration.followups WHERE state = 'due'")" -ge "$due" ]; do
  sleep 0.05
done
end=$(date +%s%3N)
stop_service
events=$(sql -c "SELECT count(*) FROM reintegration.outbox WHERE topic = 'reintegration.followup_due'")
elapsed=$((end - ready))
scans=$(((due + batch - 1) / batch))
echo "  due-scan: $due follow-ups due among $((plans * 3)), batch $batch: ${elapsed} ms after" \
  "the service answered ($((ready - start)) ms start-up, check_ms 50)"
awk -v e="$elapsed" -v d="$due" -v s="$scans" -v ev="$events" 'BEGIN {
  printf "  per scan of up to a batch (timer every 50 ms included): %.1f ms (%d scans);" \
         " per due follow-up: %.3f ms; events written: %d\n", e / s, s, e / d, ev }'
