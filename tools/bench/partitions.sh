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
. "$root/tools/bench/lib.sh"
work=$(mktemp -d /tmp/nrm-partitions-XXXXXX)
chmod 755 "$work"
db=nrm_partitions
bench_dir=$root/tools/bench
declare -A pid=()

cleanup() {
  for name in "${!pid[@]}"; do kill "${pid[$name]}" 2>/dev/null || true; done
  for name in "${!pid[@]}"; do wait "${pid[$name]}" 2>/dev/null || true; done
  bench_cluster_stop
  rm -rf "$work"
}
trap cleanup EXIT
say() { echo "partitions: $*" >&2; }

bench_build nrm-intake nrm-routing nrm-shelter nrm-notify nrm-bench nrmctl
bench_cluster_start
psql -X -q -d postgres -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null
bash "$root/deploy/db-init.sh" "$db" >/dev/null
q() { psql -X -qAt -d "$db" -c "$1"; }

nrmctl_bin=$build/tools/nrmctl/nrmctl
"$nrmctl_bin" keygen "$work/keys.json"
bash "$root/deploy/certify.sh" "$nrmctl_bin" "$root/deploy/demo/config.json" "$work"
hook_port=$((base + 9))
jq --argjson base "$base" --arg hook "http://127.0.0.1:$hook_port/bench" \
  --argjson partitions "$partitions" '
  .services |= (to_entries | map(
    ({intake: 0, routing: 2, shelter: 4, notify: 6}[.key]) as $o |
    if $o == null then . else
      .value.api = "tcp://127.0.0.1:\($base + $o)" | .value.api_connect = .value.api |
      .value.events = "tcp://127.0.0.1:\($base + $o + 1)" | .value.events_connect = .value.events
    end) | from_entries) |
  .consumer.partitions = $partitions |
  .notify.webhook_allow = ["127.0.0.1/32"] |
  .subscriptions = [{subscription_id: "bench-shelter", agency_id: "coordinator",
    channel: "webhook", address: $hook, topics: ["shelter.allocated", "shelter.waitlisted"],
    secret: "bench-only-shelter-secret-000001"}]
' "$work/config.json" >"$work/config.a.json"
jq --argjson base "$base" '.services.notify.api = "tcp://127.0.0.1:\($base + 10)" |
  .services.notify.events = "tcp://127.0.0.1:\($base + 11)"' \
  "$work/config.a.json" >"$work/config.b.json"
export NRM_CERT=$work/certs/coordinator.cert
export NRM_DATABASE_CONNINFO="host=$pgdir/sock port=$port dbname=$db"
export NRM_CRYPTO_KEYS_FILE=$work/keys.json
export NRM_LOG_LEVEL=warn
nrmctl=("$nrmctl_bin" --config "$work/config.a.json")
intake_key=$("$nrmctl_bin" cert key "$work/certs/service-intake.cert")
hotline=(--cert "$work/certs/hotline-national.cert" --server-key "$intake_key")

# start NAME SERVICE CONFIG: starts SERVICE as NAME, waits until it answers Ping.
start() {
  local name=$1 service=$2 config=$3
  "$build/services/$service/nrm-$service" --config "$config" 2>>"$work/$name.log" &
  pid[$name]=$!
  for _ in $(seq 100); do
    "$nrmctl_bin" --config "$config" --timeout 300 ping "$service" >/dev/null 2>&1 && return 0
    kill -0 "${pid[$name]}" 2>/dev/null || break
    sleep 0.1
  done
  say "$name did not start; its log:"
  cat "$work/$name.log" >&2
  exit 1
}
stop() {
  kill "${pid[$1]}"
  wait "${pid[$1]}" 2>/dev/null || true
  unset "pid[$1]"
}
# caught_up CONSUMER STREAM...: the consumer's checkpoint of each stream has reached its head.
caught_up() {
  local consumer=$1 s
  shift
  for s in "$@"; do
    [ "$(q "SELECT (SELECT coalesce(max(seq), 0) FROM $consumer.checkpoints WHERE stream = '$s')
               >= (SELECT head FROM $s.stream_head)")" = t ] || return 1
  done
}
now_ms() { echo $(($(date +%s%N) / 1000000)); }
submit() {
  "$build/tools/bench/nrm-bench" --endpoint "tcp://127.0.0.1:$base" "${hotline[@]}" --shelter "$@"
}
backlog_events() {
  q "SELECT (SELECT head FROM intake.stream_head) + (SELECT head FROM routing.stream_head)
            + (SELECT head FROM shelter.stream_head)"
}

/usr/bin/python3 "$bench_dir/e2e_receiver.py" --port "$hook_port" --log "$work/hooks.log" &
pid[receiver]=$!
for _ in $(seq 50); do curl -s "http://127.0.0.1:$hook_port/count" >/dev/null && break; sleep 0.1; done
start intake intake "$work/config.a.json"
start routing routing "$work/config.a.json"
start shelter shelter "$work/config.a.json"
start notify-a notify "$work/config.a.json"
submit --reports $((reports / 10 + clients)) --clients "$clients" --log "$work/warm.cases" >/dev/null
until caught_up notify intake routing shelter; do sleep 0.1; done # warm-up, not measured
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
