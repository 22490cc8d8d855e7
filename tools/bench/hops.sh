#!/bin/bash
# tools/bench/hops.sh [RATE] [SECONDS]: where the time of one report goes, hop by hop (a
# benchmark, not a test). Starts intake, routing, shelter and notify on a private cluster with the
# receiver of e2e.sh (tools/bench/pipeline.sh), submits RATE reports/s (default 100) for SECONDS
# (default 5) after a warm-up, and prints p50/p90/p99 of each hop, each report followed by its
# case_id through the rows the services wrote: the submission (nrm-bench's log), intake's
# case.opened, routing's shelter.requested, shelter's outcome (outbox created_at: the start of
# the transaction that wrote it; sequenced_at: its numbering), notify's delivery (created_at,
# the claim's last_attempt_ms, finished_ms) and the receiver's log. Cluster on NRM_BENCH_PGPORT
# (default 31477). NRM_HOPS_WARM (default 100) reports go through first, at full speed (e2e.sh's
# fixed-rate phase comes after about 4,000), then settle (tools/bench/pipeline.sh). Then the
# first three hops split at the commits (track_commit_timestamp): of the transaction that wrote
# the case's row (intake.cases, routing.cases, shelter.bed_requests) and of the numbering (the
# outbox row's). Last, the WAL the phase wrote and the WAL syncs that the commits waited for
# (pg_stat_wal with track_wal_io_timing, read 11 s after the phase: an idle backend reports its
# counts within 10 s), per report, and the machine's CPU (every process's, /proc/stat): cores
# busy over 3 s at rest before the phase and over the phase, and milliseconds per report above
# rest. NRM_HOPS_PERF=FILE records the phase with perf (as NRM_E2E_PERF does in e2e.sh; as
# root). NRM_HOPS_TOP=FILE adds pg_stat_statements and writes each statement of the phase
# there: role, calls, mean ms, text. NRM_HOPS_WAL=FILE writes the phase's WAL there by relation
# (pg_walinspect, from the phase's start to its last webhook): records and bytes per report with
# the kinds of record, then the records by kind.
set -euo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
rate=${1:-100}
seconds=${2:-5}
build=${NRM_BENCH_BUILD_DIR:-$root/build-bench}
port=${NRM_BENCH_PGPORT:-31477}
base=$((port + 100))
pgdir=/tmp/nrm-hops-pg-$port
db=nrm_hops
say() { echo "hops: $*" >&2; }
. "$root/tools/bench/lib.sh"

bench_build nrm-intake nrm-routing nrm-shelter nrm-notify nrm-bench nrmctl
. "$root/tools/bench/pipeline.sh"
# cpu_busy: the machine's busy and total CPU time so far, in clock ticks summed over its cores
# (/proc/stat: user, nice, system, irq, softirq and steal are busy; idle and iowait are not).
cpu_busy() { awk '/^cpu / { b = $2 + $3 + $4 + $7 + $8 + $9; print b, b + $5 + $6 }' /proc/stat; }
wal_relations() { # FROM_LSN REPORTS: the WAL since FROM_LSN by the relation of its first block
  q "CREATE EXTENSION IF NOT EXISTS pg_walinspect" >/dev/null
  psql -X -q -d "$db" -v ON_ERROR_STOP=1 -c "
    SELECT coalesce(r.oid::regclass::text, w.node, '(no block)') AS relation,
      round(count(*)::numeric / $2, 1) AS records_per_report,
      round(sum(w.record_length)::numeric / $2) AS bytes_per_report,
      string_agg(DISTINCT w.resource_manager || '/' || w.record_type, ' ') AS kinds
    FROM (SELECT *, substring(block_ref from 'rel [0-9]+/[0-9]+/([0-9]+)') AS node
          FROM pg_get_wal_records_info('$1', pg_current_wal_flush_lsn())) w
    LEFT JOIN pg_class r ON r.relfilenode::text = w.node
    GROUP BY 1 ORDER BY count(*) DESC" -c "
    SELECT \"resource_manager/record_type\" AS kind,
      round(count::numeric / $2, 1) AS records_per_report,
      round(record_size::numeric / $2) AS bytes_per_report
    FROM pg_get_wal_stats('$1', pg_current_wal_flush_lsn(), true)
    WHERE count > 0 ORDER BY count DESC"
}

# read by tests/pg-cluster.sh when pipeline_setup starts the cluster
export PG_CLUSTER_SETTINGS="${PG_CLUSTER_SETTINGS:-} -c track_commit_timestamp=on"
PG_CLUSTER_SETTINGS+=" -c track_wal_io_timing=on"
if [ -n "${NRM_HOPS_TOP:-}" ]; then pipeline_setup --statements; else pipeline_setup; fi
receiver_start
for s in intake routing shelter notify; do start "$s"; done
submit --reports "${NRM_HOPS_WARM:-100}" --clients 8 --log "$work/warm.cases" >/dev/null
wait_hooks "$work/warm.cases" >/dev/null
wait_caught_up
settle
rest_from=$(cpu_busy) # the machine at rest with every service running, for 3 s
sleep 3
rest_to=$(cpu_busy)
since=$(q "SELECT now()")
q "SELECT pg_stat_reset_shared('wal')" >/dev/null
wal_from=$(q "SELECT pg_current_wal_flush_lsn()")
[ -z "${NRM_HOPS_TOP:-}" ] || q "SELECT pg_stat_statements_reset()" >/dev/null
cpu_from=$(cpu_busy)
[ -z "${NRM_HOPS_PERF:-}" ] || perf_start
submit --reports $((rate * seconds)) --clients 4 --rate "$rate" --log "$work/rate.cases" >/dev/null
wait_hooks "$work/rate.cases" >/dev/null
wait_caught_up
echo "$rest_from $rest_to $cpu_from $(cpu_busy)" >"$work/cpu"
[ -z "${NRM_HOPS_PERF:-}" ] || perf_stop "$NRM_HOPS_PERF"
[ -z "${NRM_HOPS_TOP:-}" ] ||
  q "SELECT r.rolname, s.calls, round(s.mean_exec_time::numeric, 3),
       left(regexp_replace(s.query, '\s+', ' ', 'g'), 100)
     FROM pg_stat_statements s JOIN pg_roles r ON r.oid = s.userid
     WHERE r.rolname LIKE 'nrm\_%' ORDER BY r.rolname, s.total_exec_time DESC" >"$NRM_HOPS_TOP"
[ -z "${NRM_HOPS_WAL:-}" ] || wal_relations "$wal_from" $((rate * seconds)) >"$NRM_HOPS_WAL"
sleep 11
q "SELECT wal_records, wal_fpi, wal_bytes, wal_sync, wal_sync_time FROM pg_stat_wal" |
  tr '|' ' ' >"$work/wal"

# an outbox row's case_id: Event field 5, a string of 36 bytes (tag 0x2a, length 0x24); no
# field before it can hold those two bytes in a row
case_id="convert_from(substring(payload from position('\\x2a24'::bytea in payload) + 2 for 36), 'UTF8')"
ms() { echo "round(extract(epoch from $1) * 1000, 3)"; }
rows() { # SCHEMA TOPIC_CONDITION CASE_TABLE: the outbox's times and the case row's commit
  q "SELECT o.c, $(ms o.created_at), $(ms o.sequenced_at), $(ms "pg_xact_commit_timestamp(o.x)"),
       coalesce($(ms "(SELECT pg_xact_commit_timestamp(t.xmin) FROM $3 t
                       WHERE t.case_id = o.c)"), 0)
     FROM (SELECT $case_id AS c, xmin AS x, created_at, sequenced_at FROM $1.outbox
           WHERE created_at >= '$since' AND $2) o" | tr '|' ' '
}
rows intake "topic = 'case.opened'" intake.cases >"$work/intake.rows"
rows routing "topic = 'shelter.requested'" routing.cases >"$work/routing.rows"
rows shelter "topic IN ('shelter.allocated', 'shelter.waitlisted')" shelter.bed_requests \
  >"$work/shelter.rows"
q "SELECT case_id, $(ms created_at), last_attempt_ms, finished_ms FROM notify.deliveries
   WHERE channel = 'webhook' AND created_at >= '$since'" | tr '|' ' ' >"$work/notify.rows"
/usr/bin/python3 - "$work" "$rate" <<'PY'
import os
import sys

work, rate = sys.argv[1], sys.argv[2]
def table(name, cols):
    out = {}
    for line in open(f"{work}/{name}"):
        parts = line.split()
        if len(parts) == cols + 1 and parts[0] not in out:
            out[parts[0]] = [float(x) for x in parts[1:]]
    return out
submitted = table("rate.cases", 1)
# outbox created_at, sequenced_at, the numbering's commit, the commit of the case's row
intake, routing = table("intake.rows", 4), table("routing.rows", 4)
shelter = table("shelter.rows", 4)
notify = table("notify.rows", 3)
received = {}
for line in open(f"{work}/hooks.log"):
    parts = line.split()
    if len(parts) == 4 and parts[1].startswith("shelter.") and parts[2] not in received:
        received[parts[2]] = float(parts[0])
cases = [c for c in submitted if all(c in t for t in (intake, routing, shelter, notify, received))]
hops = [
    ("submission to intake's transaction", lambda c: intake[c][0] - submitted[c][0]),
    ("intake's transaction to its numbering", lambda c: intake[c][1] - intake[c][0]),
    ("to routing's transaction", lambda c: routing[c][0] - intake[c][1]),
    ("routing's transaction to its numbering", lambda c: routing[c][1] - routing[c][0]),
    ("to shelter's transaction", lambda c: shelter[c][0] - routing[c][1]),
    ("shelter's transaction to its numbering", lambda c: shelter[c][1] - shelter[c][0]),
    ("to notify's delivery (its transaction)", lambda c: notify[c][0] - shelter[c][1]),
    ("delivery to the sender's claim", lambda c: notify[c][1] - notify[c][0]),
    ("claim to the receiver", lambda c: received[c] - notify[c][1]),
    ("submission to the receiver", lambda c: received[c] - submitted[c][0]),
]
def show(hops, cases):
    for name, f in hops:
        v = sorted(f(c) for c in cases)
        if v:
            pct = lambda p: v[(len(v) - 1) * p // 100]
            print(f"  {name:40s} p50 {pct(50):7.1f}  p90 {pct(90):7.1f}  p99 {pct(99):7.1f}")
print(f"HOPS at {rate} reports/s, {len(cases)} of {len(submitted)} reports followed (ms):")
show(hops, cases)
# the case's row was written by the transaction of the outbox row (its commit falls between
# that transaction's start and the numbering), else another transaction changed it since
split = []
for name, t in (("intake", intake), ("routing", routing), ("shelter", shelter)):
    split += [
        (f"{name}'s transaction, start to commit", lambda c, t=t: t[c][3] - t[c][0]),
        (f"  its commit to its numbering", lambda c, t=t: t[c][1] - t[c][3]),
        (f"  the numbering, start to commit", lambda c, t=t: t[c][2] - t[c][1]),
    ]
whole = [c for c in cases if all(t[c][0] <= t[c][3] <= t[c][1] for t in (intake, routing, shelter))]
print(f"Within the first hops, {len(whole)} of {len(cases)} reports (ms):")
show(split, whole)
records, fpi, size, syncs, sync_ms = (float(x) for x in open(f"{work}/wal").read().split())
n = len(submitted)
rb0, ra0, rb1, ra1, busy0, all0, busy1, all1 = (int(x) for x in open(f"{work}/cpu").read().split())
rest, busy = (rb1 - rb0) / max(ra1 - ra0, 1), (busy1 - busy0) / max(all1 - all0, 1)  # busy share
cores, ticks = os.cpu_count(), os.sysconf("SC_CLK_TCK")
above_ms = ((busy1 - busy0) - rest * (all1 - all0)) / ticks * 1000  # CPU time above rest
print(f"CPU (every process, /proc/stat): at rest {rest * cores:.2f} of {cores} cores busy; over "
      f"the phase {busy * cores:.2f}, {above_ms / n:.1f} ms per report above rest")
print(f"WAL of the phase, per report: {records / n:.0f} records ({fpi / n:.2f} full pages), "
      f"{size / n / 1000:.1f} kB, {syncs / n:.1f} syncs of {sync_ms / max(syncs, 1):.2f} ms "
      f"on average")
PY
