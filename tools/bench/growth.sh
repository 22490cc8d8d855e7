#!/bin/bash
# tools/bench/growth.sh [N] [BIG]: which statements cost more as the data grows (a benchmark, not
# a test). Starts intake, routing, shelter and notify on a private cluster with the receiver of
# e2e.sh (tools/bench/pipeline.sh) and pg_stat_statements, then measures N reports (default
# 2000) twice: once after a warm-up of 500, once after BIG more (default 40000). Each
# measurement is submitted from 8 clients after settle (ANALYZE, CHECKPOINT) and lasts until
# every webhook has come and every consumer has caught up. Prints both submissions, each
# service's statement time per report in both, and the statements whose mean time grew most,
# as ratios of the second measurement to the first: a statement whose plan reads what the
# tables hold rather than what a batch needs stands out. The two measurements share the
# machine's drift; read the ratios against those of the trivial statements (BEGIN, COMMIT).
# Cluster on NRM_BENCH_PGPORT (default 31478).
set -euo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
n=${1:-2000}
big=${2:-40000}
build=${NRM_BENCH_BUILD_DIR:-$root/build-bench}
port=${NRM_BENCH_PGPORT:-31478}
base=$((port + 100))
pgdir=/tmp/nrm-growth-pg-$port
db=nrm_growth
say() { echo "growth: $*" >&2; }
. "$root/tools/bench/lib.sh"

bench_build nrm-intake nrm-routing nrm-shelter nrm-notify nrm-bench nrmctl
. "$root/tools/bench/pipeline.sh"
pipeline_setup --statements
receiver_start
for s in intake routing shelter notify; do start "$s"; done
drain() { # CASES_LOG
  wait_hooks "$1" 1800 >/dev/null
  wait_caught_up
}

# measure NAME: N reports after settle; the submission's figures into $work/NAME.submit, each
# statement's role, calls, mean ms, query id and text into $work/NAME.statements
measure() {
  settle
  q "SELECT pg_stat_statements_reset()" >/dev/null
  submit --reports "$n" --clients 8 --log "$work/$1.cases" >"$work/$1.submit"
  drain "$work/$1.cases"
  q "SELECT r.rolname || '|' || s.calls || '|' || s.mean_exec_time || '|' || s.queryid || '|'
            || left(regexp_replace(s.query, '\s+', ' ', 'g'), 100)
       FROM pg_stat_statements s JOIN pg_roles r ON r.oid = s.userid
      WHERE r.rolname LIKE 'nrm_%'" >"$work/$1.statements"
}

submit --reports 500 --clients 8 --log "$work/warm.cases" >/dev/null
drain "$work/warm.cases"
measure small
say "adding $big reports"
submit --reports "$big" --clients 8 --log "$work/bulk.cases" >/dev/null
drain "$work/bulk.cases"
measure large
echo "growth: tables: $(q "SELECT string_agg(schemaname || '.' || relname || '=' || n_live_tup, ' '
                               ORDER BY n_live_tup DESC) FROM (SELECT * FROM pg_stat_user_tables
                               ORDER BY n_live_tup DESC LIMIT 6) t")"
/usr/bin/python3 - "$work" "$n" "$big" <<'PY'
import json
import sys

work, n, big = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])


def statements(name):
    out = {}
    for line in open(f"{work}/{name}.statements"):
        parts = line.rstrip("\n").split("|", 4)
        if len(parts) == 5:
            role, calls, mean, qid, text = parts
            out[(role, qid)] = (int(calls), float(mean), text)
    return out


small, large = statements("small"), statements("large")
for name, label in (("small", "after 500"), ("large", f"after {500 + n + big}")):
    s = json.load(open(f"{work}/{name}.submit"))
    print(f"growth: {n} reports {label}: {s['reports_per_s']} reports/s,"
          f" ack p50 {s['ack_p50_ms']} ms, p99 {s['ack_p99_ms']} ms")
roles = sorted({role for role, _ in large})
for role in roles:
    t = [sum(c * m for (r, _), (c, m, _) in d.items() if r == role) / n for d in (small, large)]
    print(f"growth: {role}: statement time per report {t[0]:.3f} ms, then {t[1]:.3f} ms"
          f" ({t[1] / max(t[0], 1e-6):.2f}x)")
rows = []
for key, (calls, mean, text) in large.items():
    if key in small and small[key][1] > 0:
        rows.append((mean / small[key][1], key[0], small[key], (calls, mean), text))
rows.sort(reverse=True)
print("growth: mean time grown most (ratio, role, calls x mean ms before and after, statement):")
for ratio, role, before, after, text in rows[:15]:
    print(f"  {ratio:6.2f}x {role:12} {before[0]:5d} x {before[1]:7.3f}"
          f"  {after[0]:5d} x {after[1]:7.3f}  {text}")
PY
