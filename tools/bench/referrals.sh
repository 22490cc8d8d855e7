#!/usr/bin/env bash
# Benchmark (not a test): ListReferrals latency with N cases' referrals in routing's tables.
# Builds a release tree, starts a private PostgreSQL cluster and nrm-routing (CURVE, keys from
# deploy/certify.sh), fills routing's copy of N cases (regions MA-01..MA-12, case managers and
# reporters among the demonstration's reporting agencies) and two referrals per case (legal
# aid and medical care, to the demonstration's providers of the case's region; states mixed,
# 1 % of the pending ones overdue) with generate_series, then runs nrm-referrals-bench: one
# client, R requests per scenario, p50/p99 per scenario. Nothing is asserted about time.
#
#   tools/bench/referrals.sh [N] [R]          (defaults: 100000 cases, 200 requests)
set -euo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
cases=${1:-100000}
requests=${2:-200}
build=${NRM_BENCH_BUILD_DIR:-$root/build-bench}
port=${NRM_BENCH_PGPORT:-31470}
pgdir=/tmp/nrm-bench-pg-$port
. "$root/tools/bench/lib.sh"
work=$(mktemp -d /tmp/nrm-referrals-bench-XXXXXX)
db=nrm_referrals_bench
prefix=bench-case-
routing_pid=""

cleanup() {
  [ -n "$routing_pid" ] && kill "$routing_pid" 2>/dev/null && wait "$routing_pid" 2>/dev/null
  bench_cluster_stop
  rm -rf "$work"
}
trap cleanup EXIT

bench_build nrm-routing nrm-referrals-bench nrmctl

bench_cluster_start
psql -X -q -d postgres -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null
bash "$root/deploy/db-init.sh" "$db" >/dev/null

nrmctl_bin=$build/tools/nrmctl/nrmctl
"$nrmctl_bin" keygen "$work/keys.json"
bash "$root/deploy/certify.sh" "$nrmctl_bin" "$root/deploy/demo/config.json" "$work"
config=$work/config.json
export NRM_CERT=$work/certs/coordinator.cert
routing_key=$("$nrmctl_bin" cert key "$work/certs/service-routing.cert")
export NRM_DATABASE_CONNINFO="host=$pgdir/sock port=$port dbname=$db"
export NRM_CRYPTO_KEYS_FILE=$work/keys.json
export NRM_SERVICES_ROUTING_API=tcp://127.0.0.1:$((port + 1))
export NRM_SERVICES_ROUTING_EVENTS=tcp://127.0.0.1:$((port + 2))
export NRM_SERVICES_ROUTING_API_CONNECT=$NRM_SERVICES_ROUTING_API
export NRM_SERVICES_INTAKE_API_CONNECT=tcp://127.0.0.1:$((port + 3)) # nobody: no intake here
export NRM_SERVICES_INTAKE_EVENTS_CONNECT=tcp://127.0.0.1:$((port + 4))
export NRM_ROUTING_EXPIRY_CHECK_MS=86400000 # overdue referrals stay pending
export NRM_LOG_LEVEL=error

"$build/services/routing/nrm-routing" --config "$config" 2>"$work/routing.log" &
routing_pid=$!
for _ in $(seq 50); do
  "$nrmctl_bin" --config "$config" --timeout 500 ping routing >/dev/null 2>&1 && break
  sleep 0.2
done
"$nrmctl_bin" --config "$config" --timeout 500 ping routing >/dev/null ||
  { echo "routing did not start; its log:" >&2; cat "$work/routing.log" >&2; exit 1; }

# Routing's copy of the cases and their referrals (the migrations ran when routing started).
started=$(date +%s%N)
psql -X -q -v ON_ERROR_STOP=1 -d "$db" -v n="$cases" -v prefix="$prefix" <<'SQL'
SET search_path = routing;
CREATE TEMP TABLE managers (i int PRIMARY KEY, agency text);
INSERT INTO managers VALUES (0, 'police-ma-01'), (1, 'police-ma-04'), (2, 'police-ma-06'),
  (3, 'gendarmerie-ma-02'), (4, 'border-ma-01'), (5, 'labour-ma-06'), (6, 'labour-ma-09'),
  (7, 'hotline-national'), (8, 'ngo-ma-07');
INSERT INTO cases (case_id, region, is_minor, profile, needs, urgency, safety_risk,
                   consent_to_referral, last_seq, case_manager, manager_seq)
SELECT :'prefix' || g, 'MA-' || lpad((1 + g % 12)::text, 2, '0'), g % 10 = 0, '\x'::bytea,
       '{4,2}', 1 + g % 3, 1, true, g, m.agency, g
FROM generate_series(1, :n) g JOIN managers m ON m.i = g % 9;
INSERT INTO case_reporters (case_id, agency_id)
SELECT case_id, case_manager FROM cases
UNION ALL
SELECT case_id, 'hotline-national' FROM cases WHERE last_seq % 4 = 0 AND case_manager <> 'hotline-national';
-- two referrals per case: legal aid (service 4) and medical care (service 2)
INSERT INTO referrals (referral_id, case_id, service, attempt, provider_id, urgency, rule_id,
                       reason, causation_id, state, created_ms, due_ms, answered_ms, ended_ms)
SELECT md5(c.case_id || '/' || s)::uuid::text, c.case_id, s, 1,
       CASE WHEN s = 4 AND c.region IN ('MA-01', 'MA-04', 'MA-06', 'MA-09')
            THEN 'legal-aid-' || lower(c.region)
            WHEN s = 4 THEN 'legal-clinic-national'
            ELSE 'hospital-' || lower(c.region) END,
       c.urgency, 'stated-need', 'Need stated in the report', gen_random_uuid()::text, st.state,
       t.created, CASE WHEN st.state = 'pending' AND c.last_seq % 100 = 0 THEN t.created + 1
                       ELSE (extract(epoch FROM now()) * 1000)::bigint + 86400000 END,
       CASE WHEN st.state IN ('pending', 'expired') THEN NULL ELSE t.created + 60000 END,
       CASE WHEN st.state IN ('completed', 'declined', 'expired', 'revoked')
            THEN t.created + 120000 END
FROM cases c CROSS JOIN (VALUES (4), (2)) AS v(s)
CROSS JOIN LATERAL (SELECT (extract(epoch FROM now()) * 1000)::bigint
                           - (:n - c.last_seq) * 10000 - s AS created) t
CROSS JOIN LATERAL (SELECT CASE (c.last_seq + s) % 20
    WHEN 0 THEN 'declined' WHEN 1 THEN 'expired' WHEN 2 THEN 'revoked'
    WHEN 3 THEN 'pending' WHEN 4 THEN 'pending' WHEN 5 THEN 'pending' WHEN 6 THEN 'pending'
    WHEN 7 THEN 'accepted' WHEN 8 THEN 'accepted' WHEN 9 THEN 'accepted'
    ELSE 'completed' END AS state) st;
ANALYZE cases;
ANALYZE case_reporters;
ANALYZE referrals;
SQL
loaded_ms=$((($(date +%s%N) - started) / 1000000))
counts=$(psql -X -At -d "$db" -c "SELECT (SELECT count(*) FROM routing.cases) || ' cases, ' ||
  (SELECT count(*) FROM routing.referrals) || ' referrals (' ||
  (SELECT count(*) FROM routing.referrals WHERE state = 'pending' AND due_ms < extract(epoch FROM now()) * 1000) ||
  ' overdue), ' || (SELECT count(*) FROM routing.case_reporters) || ' reporter rows'")
echo "routing: $counts, loaded in $loaded_ms ms"
echo "ListReferrals, one client, $requests requests per scenario (CURVE, release build):"
"$build/tools/bench/nrm-referrals-bench" --endpoint "$NRM_SERVICES_ROUTING_API" \
  --server-key "$routing_key" --certs "$work/certs" --case-prefix "$prefix" --cases "$cases" \
  --requests "$requests"
