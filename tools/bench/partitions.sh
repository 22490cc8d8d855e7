#!/usr/bin/env bash
# Partitioned consumption benchmark (not a test; nothing is asserted about time): how fast notify
# drains a backlog with one instance, and with two (consumer.partitions, nrm_consumer.h).
#
#   tools/bench/partitions.sh [N] [P]     (defaults: 1000 reports, 4 partitions)
#
# Release build (build-bench), private cluster (NRM_BENCH_PGPORT, default 31470), intake,
# routing and shelter running, one coordinator subscription to shelter.allocated and
# shelter.waitlisted (tools/bench/e2e_receiver.py). With notify stopped, N reports are submitted
# and routing and shelter drain them; then one notify instance is started and timed until its
# checkpoints of intake, routing and shelter reach the heads. The same again with a fresh backlog
# of N and two instances. Prints both rates (reports per second, and events per second) and the
# ratio.
set -euo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
reports=${1:-1000}
partitions=${2:-4}
clients=8
build=${NRM_BENCH_BUILD_DIR:-$root/build-bench}
port=${NRM_BENCH_PGPORT:-31470}
base=$((port + 100)) # the services' ports: base+0 .. base+7, the second notify base+10, +11
pgdir=/tmp/nrm-partitions-pg-$port
db=nrm_partitions
say() { echo "partitions: $*" >&2; }
. "$root/tools/bench/lib.sh"

bench_build nrm-intake nrm-routing nrm-shelter nrm-notify nrm-bench nrmctl
. "$root/tools/bench/pipeline.sh"
pipeline_setup
jq --argjson partitions "$partitions" '.consumer.partitions = $partitions' "$config" \
  >"$work/config.a.json"
jq --argjson base "$base" '.services.notify.api = "tcp://127.0.0.1:\($base + 10)" |
  .services.notify.events = "tcp://127.0.0.1:\($base + 11)"' \
  "$work/config.a.json" >"$work/config.b.json"
config=$work/config.a.json

backlog_events() {
  q "SELECT (SELECT head FROM intake.stream_head) + (SELECT head FROM routing.stream_head)
            + (SELECT head FROM shelter.stream_head)"
}

receiver_start
start intake intake "$work/config.a.json"
start routing routing "$work/config.a.json"
start shelter shelter "$work/config.a.json"
start notify-a notify "$work/config.a.json"
submit --reports $((reports / 10 + clients)) --clients "$clients" --log "$work/warm.cases" >/dev/null
wait_caught_up # warm-up, not measured
stop notify-a

declare -A rate=()
for instances in 1 2; do
  before=$(backlog_events)
  submit --reports "$reports" --clients "$clients" --log "$work/backlog$instances.cases" >/dev/null
  until caught_up routing intake && caught_up shelter routing; do sleep 0.1; done
  events=$(($(backlog_events) - before))
  started=$(now_ms)
  start notify-a notify "$work/config.a.json"
  [ "$instances" = 1 ] || start notify-b notify "$work/config.b.json"
  until caught_up notify intake routing shelter; do sleep 0.02; done
  ms=$(($(now_ms) - started))
  rate[$instances]=$((reports * 1000 / (ms > 0 ? ms : 1)))
  say "$instances instance(s), $partitions partitions: $reports reports ($events events) drained" \
    "in $ms ms: ${rate[$instances]} reports/s ($((events * 1000 / (ms > 0 ? ms : 1))) events/s)"
  stop notify-a
  [ "$instances" = 1 ] || stop notify-b
done
echo "PARTITIONS $reports reports, $partitions partitions: 1 instance ${rate[1]} reports/s;" \
  "2 instances ${rate[2]} reports/s; ratio $(awk -v a="${rate[1]}" -v b="${rate[2]}" \
  'BEGIN { printf "%.2f", (a > 0) ? b / a : 0 }')"
