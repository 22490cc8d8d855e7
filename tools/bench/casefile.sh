#!/usr/bin/env bash
# Benchmark (not a test): latency of the case file's reads with a large case file. Builds a
# release tree, starts a private PostgreSQL cluster and nrm-intake (CURVE, keys from
# deploy/certify.sh), loads CASES cases (default 100,000) straight into intake's tables with
# INSERT ... SELECT generate_series (rows copied from one real report, so every row is what
# intake itself writes: a serialized Profile, needs, one report and one reporting agency per
# case; 1 in 5 closed, twelve regions, six case-managing agencies), ANALYZEs,
# then nrm-casefile-bench measures from one client, one request at a time: GetCase of random
# cases, ListCases' first page (page_size 50) unfiltered and by region + open_only, and
# ListCases page after page, as the coordinator, then ListCases as one case manager. Prints one
# JSON line per measurement. Nothing is asserted about time.
#
#   tools/bench/casefile.sh [CASES] [REQUESTS]     (defaults: 100000 cases, 2000 requests)
#
# Other case-file reads (routing's ListReferrals, shelter's ListAllocations) may add their
# measurement below, on the same cluster, against the same cases.
set -euo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
cases=${1:-100000}
requests=${2:-2000}
build=${NRM_BENCH_BUILD_DIR:-$root/build-bench}
port=${NRM_BENCH_PGPORT:-31480}
pgdir=/tmp/nrm-casefile-bench-pg-$port
. "$root/tools/bench/lib.sh"
work=$(mktemp -d /tmp/nrm-casefile-bench-XXXXXX)
db=nrm_casefile_bench
intake_pid=""

cleanup() {
  [ -z "$intake_pid" ] || { kill "$intake_pid" 2>/dev/null && wait "$intake_pid" 2>/dev/null; }
  bench_cluster_stop
  rm -rf "$work"
}
trap cleanup EXIT

bench_build nrm-intake nrm-bench nrm-casefile-bench nrmctl

bench_cluster_start
psql -X -q -d postgres -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null
bash "$root/deploy/db-init.sh" "$db" >/dev/null

nrmctl_bin=$build/tools/nrmctl/nrmctl
"$nrmctl_bin" keygen "$work/keys.json"
bash "$root/deploy/certify.sh" "$nrmctl_bin" "$root/deploy/demo/config.json" "$work"
config=$work/config.json
certs=$work/certs
intake_key=$("$nrmctl_bin" cert key "$certs/service-intake.cert")
export NRM_CERT=$certs/coordinator.cert
export NRM_DATABASE_CONNINFO="host=$pgdir/sock port=$port dbname=$db"
export NRM_CRYPTO_KEYS_FILE=$work/keys.json
export NRM_SERVICES_INTAKE_API=tcp://127.0.0.1:$((port + 1))
export NRM_SERVICES_INTAKE_EVENTS=tcp://127.0.0.1:$((port + 2))
export NRM_SERVICES_INTAKE_API_CONNECT=$NRM_SERVICES_INTAKE_API
export NRM_SERVICES_INTAKE_EVENTS_CONNECT=$NRM_SERVICES_INTAKE_EVENTS
export NRM_SERVICES_ROUTING_API_CONNECT=tcp://127.0.0.1:$((port + 3)) # not started
export NRM_SERVICES_ROUTING_EVENTS_CONNECT=tcp://127.0.0.1:$((port + 4))
export NRM_LOG_LEVEL=warn
nrmctl=("$nrmctl_bin" --config "$config")

"$build/services/intake/nrm-intake" --config "$config" 2>"$work/intake.log" &
intake_pid=$!
for _ in $(seq 50); do
  "${nrmctl[@]}" --timeout 500 ping intake >/dev/null 2>&1 && break
  sleep 0.2
done
"${nrmctl[@]}" --timeout 500 ping intake >/dev/null || { cat "$work/intake.log" >&2; exit 1; }

# One real report (through intake, CURVE) is the template of every loaded row.
"$build/tools/bench/nrm-bench" --endpoint "$NRM_SERVICES_INTAKE_API" --reports 1 --clients 1 \
  --cert "$certs/hotline-national.cert" --server-key "$intake_key" >/dev/null

started=$(date +%s%N)
psql -X -q -v ON_ERROR_STOP=1 -d "$db" -v n="$cases" <<'SQL'
SET search_path = intake;
CREATE TEMP TABLE managers (k int PRIMARY KEY, agency text);
INSERT INTO managers VALUES (0, 'hotline-national'), (1, 'police-ma-04'), (2, 'labour-ma-06'),
    (3, 'hospital-ma-06'), (4, 'ngo-ma-07'), (5, 'border-ma-01');
CREATE TEMP TABLE loaded AS
SELECT i, gen_random_uuid()::text AS case_id, m.agency,
       'MA-' || lpad((i % 12 + 1)::text, 2, '0') AS region,
       now() - make_interval(secs => (:n - i) * 60) AS opened_at
  FROM generate_series(1, :n) i JOIN managers m ON m.k = i % 6;
INSERT INTO cases (case_id, identity_hash, status, region, reporting_agency_id, is_minor, profile,
                   exploitation_types, country_of_exploitation, needs, urgency, safety_risk,
                   consent_to_referral, consent_to_data_sharing, close_reason, opened_at,
                   updated_at, closed_at, case_manager_agency_id)
SELECT l.case_id, NULL, CASE WHEN l.i % 5 = 0 THEN 'closed' ELSE 'open' END, l.region, l.agency,
       t.is_minor, t.profile, t.exploitation_types, t.country_of_exploitation, t.needs,
       1 + l.i % 3, t.safety_risk, l.i % 4 <> 0, l.i % 3 = 0,
       CASE WHEN l.i % 5 = 0 THEN 'reintegrated' END, l.opened_at, l.opened_at,
       CASE WHEN l.i % 5 = 0 THEN l.opened_at + interval '30 days' END, l.agency
  FROM loaded l, (SELECT * FROM cases LIMIT 1) t;
INSERT INTO reports (case_id, request_id, reporting_agency_id, region, identified_at, linked,
                     key_id, person_sealed, notes_sealed, received_at, sealed_under)
SELECT l.case_id, gen_random_uuid(), l.agency, l.region, l.opened_at, false, 0,
       r.person_sealed, r.notes_sealed, l.opened_at, 'case_key'
  FROM loaded l, (SELECT * FROM reports LIMIT 1) r;
INSERT INTO case_agencies (case_id, agency_id) SELECT case_id, agency FROM loaded;
ANALYZE cases;
ANALYZE reports;
ANALYZE case_agencies;
SQL
echo "loaded $cases cases in $((($(date +%s%N) - started) / 1000000)) ms:" \
  "$(psql -X -At -d "$db" -c 'SELECT count(*) FROM intake.cases') cases," \
  "$(psql -X -At -d "$db" -c 'SELECT count(*) FROM intake.reports') reports," \
  "database $(psql -X -At -d "$db" -c "SELECT pg_size_pretty(pg_database_size('$db'))")"
psql -X -At -d "$db" -c "SELECT case_id FROM intake.cases ORDER BY random() LIMIT $requests" \
  >"$work/cases.txt"

echo "intake (CURVE), one client, one request at a time, $requests requests each:"
echo "as the coordinator:"
"$build/tools/bench/nrm-casefile-bench" --endpoint "$NRM_SERVICES_INTAKE_API" \
  --cases "$work/cases.txt" --requests "$requests" --cert "$certs/coordinator.cert" \
  --server-key "$intake_key"
echo "as a case manager (hotline-national, 1 case in 6; GetCase of cases it does not manage is" \
  "refused and counted as not ok):"
"$build/tools/bench/nrm-casefile-bench" --endpoint "$NRM_SERVICES_INTAKE_API" \
  --cases "$work/cases.txt" --requests "$requests" --cert "$certs/hotline-national.cert" \
  --server-key "$intake_key"
