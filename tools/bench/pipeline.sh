# tools/bench/pipeline.sh: what the benchmarks of the services together share (e2e.sh,
# growth.sh, hops.sh, partitions.sh), sourced after tools/bench/lib.sh, once the script has set
# root, build, port, base (the services' ports: base+0 .. base+7; the receiver base+9), pgdir,
# db and a say function, and after bench_build.
#
#   pipeline_setup [--statements]
#       a work directory ($work; removed at exit, with every process in pid[] and the cluster),
#       the private cluster (with pg_stat_statements when asked), database $db prepared by
#       deploy/db-init.sh, a key file and certificates for the demonstration's agencies, and
#       $config: the demonstration configuration with intake, routing, shelter and notify on
#       base+0 .. base+7 and one coordinator subscription (shelter.allocated,
#       shelter.waitlisted) to the receiver on $hook_port. The providers' max_open_referrals
#       are raised to 1,000,000 so that every need is referred, as in the Graphile peer (with
#       the demonstration's 15-25, the needs of all but the first reports are unroutable and
#       notify sends the coordinator two referral.unroutable alerts per report that the peer
#       never sends). Exports what services and nrmctl read.
#   q SQL                       one value from $db
#   start NAME [SERVICE [CONFIG]]  starts SERVICE (default NAME) as NAME, waits for its Ping
#   stop NAME                   stops it (SIGTERM) and waits
#   receiver_start              starts tools/bench/e2e_receiver.py on $hook_port ($work/hooks.log)
#   caught_up CONSUMER STREAM...  the consumer's checkpoint of each stream has reached its head
#   wait_caught_up              until notify has caught up with intake, routing and shelter
#   wait_hooks CASES [TIMEOUT]  until every case of CASES (nrm-bench --log) has its shelter
#                               webhook in $work/hooks.log (default 300 s); prints
#                               tools/bench/e2e_wait.py's figures, fails on the timeout
#   now_ms                      wall clock in milliseconds
#   submit ARG...               tools/bench/nrm-bench against intake as the national hotline
# shellcheck shell=bash disable=SC2154 # root, build, port, base, pgdir and db are the sourcing script's

declare -A pid=()
bench_dir=$root/tools/bench
hook_port=$((base + 9))
nrmctl_bin=$build/tools/nrmctl/nrmctl
work=$(mktemp -d /tmp/nrm-bench-XXXXXX)
chmod 755 "$work"
config=$work/config.bench.json

pipeline_cleanup() {
  local name
  for name in "${!pid[@]}"; do kill "${pid[$name]}" 2>/dev/null || true; done
  for name in "${!pid[@]}"; do wait "${pid[$name]}" 2>/dev/null || true; done
  bench_cluster_stop
  rm -rf "$work"
}
trap pipeline_cleanup EXIT

q() { psql -X -qAt -d "$db" -c "$1"; }

pipeline_setup() {
  bench_cluster_start
  if [ "${1:-}" = --statements ]; then
    psql -X -q -d postgres -c "ALTER SYSTEM SET shared_preload_libraries = 'pg_stat_statements'" \
      >/dev/null
    bash "$root/tests/pg-cluster.sh" restart "$pgdir" >/dev/null
  fi
  psql -X -q -d postgres -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null
  bash "$root/deploy/db-init.sh" "$db" >/dev/null
  [ "${1:-}" != --statements ] || q "CREATE EXTENSION pg_stat_statements" >/dev/null
  "$nrmctl_bin" keygen "$work/keys.json"
  bash "$root/deploy/certify.sh" "$nrmctl_bin" "$root/deploy/demo/config.json" "$work"
  jq --argjson base "$base" --arg hook "http://127.0.0.1:$hook_port/bench" '
    .services |= (to_entries | map(
      ({intake: 0, routing: 2, shelter: 4, notify: 6}[.key]) as $o |
      if $o == null then . else
        .value.api = "tcp://127.0.0.1:\($base + $o)" | .value.api_connect = .value.api |
        .value.events = "tcp://127.0.0.1:\($base + $o + 1)" | .value.events_connect = .value.events
      end) | from_entries) |
    .providers |= map(.max_open_referrals = 1000000) |
    .notify.webhook_allow = ["127.0.0.1/32"] |
    .subscriptions = [{subscription_id: "bench-shelter", agency_id: "coordinator",
      channel: "webhook", address: $hook, topics: ["shelter.allocated", "shelter.waitlisted"],
      secret: "bench-only-shelter-secret-000001"}]
  ' "$work/config.json" >"$config"
  export NRM_CERT=$work/certs/coordinator.cert
  export NRM_DATABASE_CONNINFO="host=$pgdir/sock port=$port dbname=$db"
  export NRM_CRYPTO_KEYS_FILE=$work/keys.json
  export NRM_LOG_LEVEL=warn
  intake_key=$("$nrmctl_bin" cert key "$work/certs/service-intake.cert")
  hotline=(--cert "$work/certs/hotline-national.cert" --server-key "$intake_key")
}

start() {
  local name=$1 service=${2:-$1} conf=${3:-$config}
  "$build/services/$service/nrm-$service" --config "$conf" 2>>"$work/$name.log" &
  pid[$name]=$!
  for _ in $(seq 100); do
    "$nrmctl_bin" --config "$conf" --timeout 300 ping "$service" >/dev/null 2>&1 && return 0
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

receiver_start() {
  /usr/bin/python3 "$bench_dir/e2e_receiver.py" --port "$hook_port" --log "$work/hooks.log" &
  pid[receiver]=$!
  for _ in $(seq 50); do
    curl -s "http://127.0.0.1:$hook_port/count" >/dev/null && return 0
    sleep 0.1
  done
}

# Before a timed phase: a CHECKPOINT writes back what the phases before dirtied, then a second's
# pause. Without it a phase pays for that write-back in slower WAL flushes (hops.sh at 100/s after
# 4,000 reports at full speed: a WAL sync took 0.91 ms without, 0.63 with; end to end p50/p99
# 48-76/204-455 ms in three runs without, 35-44/67-156 in four with; see the README). And an
# ANALYZE: the statistics that autovacuum gathers within a minute or so in a deployment that
# has run a while. A database seconds old still has those of its empty tables, and generic plans
# made from them seq-scan what has grown since (after 4,000 reports: routing's batch updates of
# cases and case_services, 1.7 and 2.1 ms a call against 0.17 and 0.16 once analyzed).
settle() {
  q "ANALYZE" >/dev/null
  q "CHECKPOINT" >/dev/null
  sleep 1
}

caught_up() {
  local consumer=$1 s
  shift
  for s in "$@"; do
    [ "$(q "SELECT (SELECT coalesce(max(seq), 0) FROM $consumer.checkpoints WHERE stream = '$s')
               >= (SELECT head FROM $s.stream_head)")" = t ] || return 1
  done
}

wait_caught_up() {
  until caught_up notify intake routing shelter; do sleep 0.05; done
}

wait_hooks() { /usr/bin/python3 "$bench_dir/e2e_wait.py" "$1" "$work/hooks.log" "${2:-300}"; }

now_ms() { echo $(($(date +%s%N) / 1000000)); }
# perf_start, then perf_stop FILE: records the machine between the two (`perf record -a -g`,
# 299 samples a second per core; as root) and writes to FILE its CPU by process and
# PostgreSQL's by activity (tools/bench/perf_breakdown.py).
perf_pid=
perf_start() {
  perf record -a -g -F 299 -o "$work/perf.data" >"$work/perf.log" 2>&1 &
  perf_pid=$!
}
perf_stop() {
  kill -INT "$perf_pid" 2>/dev/null || say "perf record had stopped: $(tail -1 "$work/perf.log")"
  wait "$perf_pid" || true
  /usr/bin/python3 "$bench_dir/perf_breakdown.py" "$work/perf.data" >"$1"
}

submit() {
  "$build/tools/bench/nrm-bench" --endpoint "tcp://127.0.0.1:$base" "${hotline[@]}" --shelter "$@"
}
