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
# fixed-rate phase comes after about 4,000), then settle (tools/bench/pipeline.sh).
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
pipeline_setup
receiver_start
for s in intake routing shelter notify; do start "$s"; done
wait_hooks() { /usr/bin/python3 "$bench_dir/e2e_wait.py" "$1" "$work/hooks.log" 300 >/dev/null; }
submit --reports "${NRM_HOPS_WARM:-100}" --clients 8 --log "$work/warm.cases" >/dev/null
wait_hooks "$work/warm.cases"
until caught_up notify intake routing shelter; do sleep 0.05; done
settle
since=$(q "SELECT now()")
submit --reports $((rate * seconds)) --clients 4 --rate "$rate" --log "$work/rate.cases" >/dev/null
wait_hooks "$work/rate.cases"
until caught_up notify intake routing shelter; do sleep 0.05; done

# an outbox row's case_id: Event field 5, a string of 36 bytes (tag 0x2a, length 0x24); no
# field before it can hold those two bytes in a row
case_id="convert_from(substring(payload from position('\\x2a24'::bytea in payload) + 2 for 36), 'UTF8')"
ms() { echo "round(extract(epoch from $1) * 1000, 3)"; }
rows() { # SCHEMA TOPIC_CONDITION
  q "SELECT $case_id, $(ms created_at), $(ms sequenced_at) FROM $1.outbox
     WHERE created_at >= '$since' AND $2" | tr '|' ' '
}
rows intake "topic = 'case.opened'" >"$work/intake.rows"
rows routing "topic = 'shelter.requested'" >"$work/routing.rows"
rows shelter "topic IN ('shelter.allocated', 'shelter.waitlisted')" >"$work/shelter.rows"
q "SELECT case_id, $(ms created_at), last_attempt_ms, finished_ms FROM notify.deliveries
   WHERE channel = 'webhook' AND created_at >= '$since'" | tr '|' ' ' >"$work/notify.rows"
/usr/bin/python3 - "$work" "$rate" <<'PY'
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
intake, routing, shelter = table("intake.rows", 2), table("routing.rows", 2), table("shelter.rows", 2)
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
print(f"HOPS at {rate} reports/s, {len(cases)} of {len(submitted)} reports followed (ms):")
for name, f in hops:
    v = sorted(f(c) for c in cases)
    if v:
        pct = lambda p: v[(len(v) - 1) * p // 100]
        print(f"  {name:40s} p50 {pct(50):7.1f}  p90 {pct(90):7.1f}  p99 {pct(99):7.1f}")
PY
