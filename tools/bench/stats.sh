#!/usr/bin/env bash
# Benchmark (not a test): GetStatistics over one million events. Builds a release tree, starts
# a private PostgreSQL cluster and one nrm-stats (CURVE, the demonstration configuration), and
# feeds the statistics tables directly the way the consumer's batch flush writes them (one row
# per case.opened, one per referral.created whose later accepted / declined / expired event
# moved it): 600000 case.opened and 200000 referrals with 200000 outcomes, 1000000 events in
# all, over three years, twelve regions, twenty nationalities. Then times, with one client, the
# typical tables (nrm-stats-bench: p50 and p99 over R requests each) and, as the baseline on
# the same machine in the same run, the bare SQL count of the same grouping (psql's \timing on
# one connection, median of R): the ratio is what the service adds (CUBE for margins, suppression,
# the reply, CURVE). Nothing is asserted about time.
#
#   tools/bench/stats.sh [R]   (default 30 requests per table)
set -euo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
requests=${1:-30}
cases=600000
referrals=200000
build=${NRM_BENCH_BUILD_DIR:-$root/build-bench}
port=${NRM_BENCH_PGPORT:-31463}
pgdir=/tmp/nrm-bench-stats-pg-$port
. "$root/tools/bench/lib.sh"
work=$(mktemp -d /tmp/nrm-bench-stats-XXXXXX)
db=nrm_bench_stats
service_pid=""

cleanup() {
  [ -n "$service_pid" ] && kill "$service_pid" 2>/dev/null && wait "$service_pid" 2>/dev/null
  bench_cluster_stop
  rm -rf "$work"
}
trap cleanup EXIT

bench_build nrm-stats nrmctl nrm-stats-bench

bench_cluster_start
psql -X -q -d postgres -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null
bash "$root/deploy/db-init.sh" "$db" >/dev/null
sql() { psql -X -q -t -A -v ON_ERROR_STOP=1 -d "$db" "$@"; }

nrmctl_bin=$build/tools/nrmctl/nrmctl
"$nrmctl_bin" keygen "$work/keys.json" >/dev/null
bash "$root/deploy/certify.sh" "$nrmctl_bin" "$root/deploy/demo/config.json" "$work"
stats_key=$("$nrmctl_bin" cert key "$work/certs/service-stats.cert")
export NRM_DATABASE_CONNINFO="host=$pgdir/sock port=$port dbname=$db"
export NRM_CRYPTO_KEYS_FILE=$work/keys.json
api_port=${NRM_BENCH_API_PORT:-57661} # api, and events on the next port
export NRM_SERVICES_STATS_API=tcp://127.0.0.1:$api_port
export NRM_SERVICES_STATS_EVENTS=tcp://127.0.0.1:$((api_port + 1))
export NRM_SERVICES_STATS_API_CONNECT=$NRM_SERVICES_STATS_API
export NRM_LOG_LEVEL=warn

"$build/services/stats/nrm-stats" --config "$work/config.json" 2>>"$work/stats.log" &
service_pid=$!
for _ in $(seq 200); do
  "$nrmctl_bin" --config "$work/config.json" --cert "$work/certs/coordinator.cert" \
    --timeout 300 ping stats >/dev/null 2>&1 && break
  sleep 0.1
done

started=$(date +%s%N)
sql -v cases="$cases" -v referrals="$referrals" <<'SQL'
SET search_path = stats;
-- case.opened: what stats_flush writes for each (the same columns and codes)
INSERT INTO cases
SELECT 'bench-case-' || g, t.ms, to_char(to_timestamp(t.ms / 1000) AT TIME ZONE 'UTC', 'YYYY-MM'),
       to_char(to_timestamp(t.ms / 1000) AT TIME ZONE 'UTC', 'YYYY'),
       'MA-' || lpad((1 + g % 12)::text, 2, '0'),
       (ARRAY['FEMALE', 'MALE', 'OTHER', 'UNKNOWN'])[1 + (g * 7 % 10) / 4],
       (ARRAY['0--8', '9--17', '18--20', '21--23', '24--26', '27--29', '30--38', '39--47',
              '48+'])[1 + g * 13 % 9],
       (ARRAY['NG', 'MA', 'SN', 'CI', 'CM', 'GN', 'ML', 'SY', 'BD', 'PH', 'VN', 'NP', 'ER',
              'SD', 'CD', 'GH', 'LR', 'SL', 'BF', 'TG'])[1 + g * 17 % 20],
       (ARRAY['LAW_ENFORCEMENT', 'LABOUR_INSPECTION', 'NGO', 'HOTLINE', 'HEALTH'])[1 + g % 5],
       ((g * 13 % 9) < 2)::text,
       CASE WHEN g % 7 = 0 THEN ARRAY['FORCED_LABOUR', 'DOMESTIC_SERVITUDE']
            ELSE ARRAY[(ARRAY['SEXUAL_EXPLOITATION', 'FORCED_LABOUR', 'FORCED_BEGGING',
                              'FORCED_CRIMINALITY', 'FORCED_MARRIAGE'])[1 + g % 5]] END,
       'MA'
FROM generate_series(1, :cases) g,
     LATERAL (SELECT 1672531200000 + (g::bigint * 94608000000 / :cases) AS ms) t;
-- referral.created, then referral.accepted / declined / expired moving its outcome
INSERT INTO referrals
SELECT 'bench-ref-' || g, 'bench-case-' || (1 + g * 3 % :cases), s.service, c.ms, c.month,
       c.year, o.outcome,
       CASE WHEN o.outcome = 'accepted' THEN c.ms + 3600000 * (1 + g % 72) END,
       CASE WHEN o.outcome = 'declined' THEN 'NO_CAPACITY' ELSE 'NONE' END
FROM generate_series(1, :referrals) g
CROSS JOIN LATERAL (SELECT opened_ms AS ms, month, year FROM cases
                    WHERE case_id = 'bench-case-' || (1 + g * 3 % :cases)) c
CROSS JOIN LATERAL (SELECT (ARRAY['SHELTER', 'MEDICAL', 'PSYCHOSOCIAL', 'LEGAL_AID',
                                  'CHILD_PROTECTION'])[1 + g % 5] AS service) s
CROSS JOIN LATERAL (SELECT CASE g % 10 WHEN 0 THEN 'declined' WHEN 1 THEN 'expired'
                                       ELSE 'accepted' END AS outcome) o;
ANALYZE cases;
ANALYZE referrals;
SQL
loaded_ms=$((($(date +%s%N) - started) / 1000000))
echo "stats bench: $(sql -c "SELECT count(*) FROM stats.cases") case.opened +" \
  "$(sql -c "SELECT count(*) FROM stats.referrals") referral.created and as many outcomes" \
  "= $((cases + 2 * referrals)) events, fed to the stats tables in $loaded_ms ms"

# median_ms SQL: the median time of SQL over $requests runs, as psql's \timing sees it (sent,
# executed, every row received), on one connection.
median_ms() {
  local _
  {
    echo "SET search_path = stats;"
    echo '\timing on'
    for _ in $(seq "$requests"); do echo "$1 \g /dev/null"; done
  } | sql | sed -n 's/^Time: \([0-9.]*\) ms.*/\1/p' |
    sort -n | awk '{a[NR] = $1} END {printf "%.2f", a[int((NR + 1) / 2)]}'
}
declare -A baseline=(
  ["cases by month"]="SELECT month, count(*) FROM cases GROUP BY month"
  ["cases by month x region"]="SELECT month, region, count(*) FROM cases GROUP BY month, region"
  ["cases by region x exploitation type"]="SELECT region, t, count(*) FROM cases, unnest(exploitation_types) t GROUP BY region, t"
  ["cases by age band x gender, one region"]="SELECT age_band, gender, count(*) FROM cases WHERE region = 'MA-04' GROUP BY age_band, gender"
  ["referrals by service (acceptance median, p90)"]="SELECT service, count(*), percentile_cont(0.5) WITHIN GROUP (ORDER BY accepted_ms - created_ms), percentile_cont(0.9) WITHIN GROUP (ORDER BY accepted_ms - created_ms) FROM referrals GROUP BY service"
)
echo "GetStatistics, one client (the coordinator), $requests requests per table (CURVE, release" \
  "build); baseline: the bare SQL count of the same grouping, median of $requests:"
"$build/tools/bench/nrm-stats-bench" --endpoint "$NRM_SERVICES_STATS_API" \
  --server-key "$stats_key" --cert "$work/certs/coordinator.cert" --requests "$requests" |
  while read -r line; do
    table=$(jq -r .table <<<"$line")
    base=$(median_ms "${baseline[$table]}")
    jq -r --arg base "$base" '"  \(.table): p50 \(.p50_ms) ms, p99 \(.p99_ms) ms (\(.ok)/\(.requests) ok, \(.rows) rows);" +
      " SQL count \($base) ms; ratio p50/SQL \((.p50_ms / ($base | tonumber) * 100 | round) / 100)"' <<<"$line"
  done
