#!/usr/bin/env bash
# End-to-end benchmark (not a test; nothing is asserted about time): N reports through
# intake -> routing -> shelter -> notify -> a local webhook receiver, against the same four
# stages on Node + Graphile Worker over the same PostgreSQL, and pgbench, in one run.
#
#   tools/bench/e2e.sh [N] [C]          (defaults: 2000 reports, 8 clients)
#
# Builds a release tree (build-bench), starts a private PostgreSQL cluster with
# pg_stat_statements, gives every service and agency a CURVE key pair (deploy/certify.sh) and
# points one coordinator subscription (shelter.allocated, shelter.waitlisted) at
# tools/bench/e2e_receiver.py. Every report needs a bed, so each has exactly one shelter
# outcome and one webhook. In order:
#   1. the receiver alone (its requests/s from 8 keep-alive clients); pgbench's one-row INSERT
#      with 1 and 8 clients
#   2. each stage alone from a backlog: intake takes N reports with nothing else running, then
#      routing, shelter and notify are started one at a time and each drains what the one
#      before left (its checkpoints reaching the heads; notify: every webhook received)
#   3. end to end with all four running: N reports from C clients, reports/s from the first
#      submission to the last webhook; ack p50/p99; statements per report per service role
#      (pg_stat_statements calls, BEGIN/COMMIT included; with NRM_E2E_TOP=FILE, each
#      statement's calls per report and mean time, by role, are written to FILE; with
#      NRM_E2E_PERF=FILE, the phase is recorded by `perf record -a -g` and FILE gets its CPU by
#      process and PostgreSQL's by activity, tools/bench/perf_breakdown.py; run as root)
#   4. submit-to-webhook p50/p99 at a moderate fixed rate, evenly spaced (NRM_E2E_RATE,
#      default 100/s, 5 s)
#   5. a burst of 500 reports from one region (MA-04) from 16 clients: time from the first
#      submission until each has a shelter outcome (shelter's outbox row committed)
#   6. idle RSS per service
#   7. the peer: Graphile Worker 0.16 (tools/bench/graphile, installed there by npm ci) with
#      the tasks intake, route, allocate, webhook, concurrency 8: the same N from C clients
#      (add_job), its moderate-rate latency, its statements per report (role nrm_peer)
# and then the ratios (NRM_E2E_QUICK=1: phases 1 to 3 only). Every webhook phase also counts cases whose webhook came twice.
set -euo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
reports=${1:-2000}
clients=${2:-8}
rate=${NRM_E2E_RATE:-100}
build=${NRM_BENCH_BUILD_DIR:-$root/build-bench}
port=${NRM_BENCH_PGPORT:-31461}
base=$((port + 100)) # the services' ports: base+0 .. base+7; the receiver: base+9
pgdir=/tmp/nrm-e2e-pg-$port
db=nrm_e2e
say() { echo "e2e: $*" >&2; }
. "$root/tools/bench/lib.sh"

bench_build nrm-intake nrm-routing nrm-shelter nrm-notify nrm-bench nrmctl
. "$root/tools/bench/pipeline.sh"
command -v node >/dev/null || apt-get install -y nodejs npm >/dev/null
(cd "$bench_dir/graphile" && { [ -d node_modules ] || npm ci --no-audit --no-fund >/dev/null 2>&1; })

pipeline_setup --statements
psql -X -q -d "$db" \
  -c "DO \$\$ BEGIN CREATE ROLE nrm_peer LOGIN; EXCEPTION WHEN duplicate_object THEN NULL; END \$\$" \
  -c "GRANT CONNECT, CREATE ON DATABASE $db TO nrm_peer" >/dev/null

# drain STARTED_MS CONSUMER STREAM...: prints the milliseconds from STARTED_MS until caught_up.
drain() {
  local started=$1
  shift
  until caught_up "$@"; do sleep 0.05; done
  echo $(($(now_ms) - started))
}
reset_stats() { q "SELECT pg_stat_statements_reset()" >/dev/null; }
# statements ROLE...: pg_stat_statements calls per role since the last reset, "role=calls ...".
statements() {
  local roles
  roles=$(printf "'%s'," "$@")
  q "SELECT string_agg(rolname || '=' || calls, ' ' ORDER BY rolname) FROM
       (SELECT r.rolname, sum(s.calls)::bigint AS calls FROM pg_stat_statements s
        JOIN pg_roles r ON r.oid = s.userid WHERE r.rolname IN (${roles%,}) GROUP BY 1) t"
}
rss_kb() { awk '/^VmRSS/ {print $2}' "/proc/$1/status"; }
declare -A fig=()

# --- 1. the receiver alone; pgbench ------------------------------------------------------------
receiver_start
fig[receiver]=$(/usr/bin/python3 "$bench_dir/e2e_receiver.py" --load "http://127.0.0.1:$hook_port" \
  --seconds 3 --clients 8 | jq .requests_per_s)
say "receiver alone: ${fig[receiver]} requests/s (8 keep-alive clients)"
q "CREATE TABLE public.bench_insert (id bigserial PRIMARY KEY, body text)" >/dev/null
echo "INSERT INTO public.bench_insert (body) VALUES ('x');" >"$work/insert.sql"
for c in 1 8; do
  fig[pgbench$c]=$(/usr/lib/postgresql/15/bin/pgbench -n -c "$c" -j "$((c < 2 ? 1 : 2))" -T 5 \
    -f "$work/insert.sql" "$db" 2>/dev/null | sed -n 's/^tps = \([0-9.]*\) (without.*/\1/p')
  say "pgbench one-row INSERT, $c client(s): ${fig[pgbench$c]} tps"
done

# --- 2. each stage alone, from a backlog -------------------------------------------------------
start intake
start routing
start shelter
start notify
submit --reports $((reports / 10 + clients)) --clients "$clients" --log "$work/warm.cases" >/dev/null
wait_hooks "$work/warm.cases" >/dev/null # warm-up, not measured
wait_caught_up
for s in notify shelter routing; do stop "$s"; done
out=$(submit --reports "$reports" --clients "$clients" --log "$work/alone.cases")
fig[intake_alone]=$(jq .reports_per_s <<<"$out")
say "intake alone: $out"
started=$(now_ms)
start routing
ms=$(drain "$started" routing intake)
fig[routing_alone]=$((reports * 1000 / (ms > 0 ? ms : 1)))
say "routing alone: $reports cases in $ms ms (from its start): ${fig[routing_alone]}/s"
started=$(now_ms)
start shelter
ms=$(drain "$started" shelter routing)
fig[shelter_alone]=$((reports * 1000 / (ms > 0 ? ms : 1)))
say "shelter alone: $reports requests in $ms ms: ${fig[shelter_alone]}/s"
started=$(now_ms)
start notify
wait_hooks "$work/alone.cases" >/dev/null
wait_caught_up
ms=$(($(now_ms) - started))
fig[notify_alone]=$((reports * 1000 / (ms > 0 ? ms : 1)))
say "notify alone: $reports reports' events (intake, routing, shelter) and webhooks in $ms ms" \
  "(from its start): ${fig[notify_alone]} reports/s"

# --- 3. end to end, all running ----------------------------------------------------------------
settle
reset_stats
[ -z "${NRM_E2E_PERF:-}" ] || perf_start
out=$(submit --reports "$reports" --clients "$clients" --log "$work/e2e.cases")
hooks=$(wait_hooks "$work/e2e.cases")
wait_caught_up
[ -z "${NRM_E2E_PERF:-}" ] || perf_stop "$NRM_E2E_PERF"
stmts=$(statements nrm_intake nrm_routing nrm_shelter nrm_notify)
fig[e2e]=$(jq .per_s <<<"$hooks")
fig[ack_p50]=$(jq .ack_p50_ms <<<"$out")
fig[ack_p99]=$(jq .ack_p99_ms <<<"$out")
fig[stmts]=$stmts
say "end to end: submitted $out"
say "end to end: webhooks $hooks"
say "end to end: statements $stmts"
if [ -n "${NRM_E2E_TOP:-}" ]; then # each statement's calls per report, by role, into that file
  q "SELECT r.rolname, round(s.calls::numeric / $reports, 2), round(s.mean_exec_time::numeric, 3),
            regexp_replace(left(s.query, 160), '\s+', ' ', 'g')
     FROM pg_stat_statements s JOIN pg_roles r ON r.oid = s.userid
     WHERE r.rolname LIKE 'nrm_%' ORDER BY r.rolname, s.calls DESC" >"$NRM_E2E_TOP"
fi

if [ -n "${NRM_E2E_QUICK:-}" ]; then # a developer's check: phases 1 to 3 only, no ratios
  /usr/bin/python3 -c 'import sys; n = int(sys.argv[1]); s = {k: int(v) for k, v in (p.split("=") for p in sys.argv[2].split())}
print(f"QUICK ({n} reports): {float(sys.argv[3]):.0f} reports/s end to end; statements per report {sum(s.values()) / n:.1f} (" + ", ".join(f"{k[4:]} {v / n:.1f}" for k, v in sorted(s.items())) + ")")' \
    "$reports" "$stmts" "${fig[e2e]}"
  exit 0
fi

# --- 4. moderate fixed rate --------------------------------------------------------------------
settle
submit --reports $((rate * 5)) --clients 4 --rate "$rate" --log "$work/rate.cases" >/dev/null
fig[rate]=$(wait_hooks "$work/rate.cases")
say "at $rate reports/s: submit-to-webhook ${fig[rate]}"

# --- 5. burst of 500 from one region -----------------------------------------------------------
settle
before=$(q "SELECT coalesce(max(id), 0) FROM shelter.outbox")
submit --reports 500 --clients 16 --region MA-04 --log "$work/burst.cases" >/dev/null
# the earliest submission (awk reads it all: "sort | head" could die of SIGPIPE under pipefail,
# which stopped the script here without a message)
first=$(awk 'NR == 1 || $2 < m { m = $2 } END { print m }' "$work/burst.cases")
for _ in $(seq 600); do
  [ "$(q "SELECT count(*) FROM shelter.outbox WHERE id > $before
          AND topic IN ('shelter.allocated', 'shelter.waitlisted')")" -ge 500 ] && break
  sleep 0.05
done
fig[burst_ms]=$(q "SELECT round(extract(epoch FROM max(created_at)) * 1000 - $first) FROM shelter.outbox
                   WHERE id > $before AND topic IN ('shelter.allocated', 'shelter.waitlisted')")
say "burst of 500 from MA-04: the last shelter outcome $((fig[burst_ms])) ms after the first submission"
wait_hooks "$work/burst.cases" >/dev/null

# --- 6. idle RSS -------------------------------------------------------------------------------
sleep 3
fig[rss]=$(for s in intake routing shelter notify; do printf '%s=%sMB ' "$s" "$(($(rss_kb "${pid[$s]}") / 1024))"; done)
say "idle RSS: ${fig[rss]}"
for s in notify shelter routing intake; do stop "$s"; done

# --- 7. the peer: Graphile Worker --------------------------------------------------------------
peer_conn="postgresql://nrm_peer@/$db?host=$pgdir/sock&port=$port"
capacities=$(jq -c '[.shelters[] | {region, capacity}] | group_by(.region) |
  map({(.[0].region): map(.capacity)}) | add' "$config")
node "$bench_dir/graphile/peer.js" setup "$peer_conn" "$capacities"
node "$bench_dir/graphile/peer.js" worker "$peer_conn" "http://127.0.0.1:$hook_port/peer" 8 \
  2>"$work/peer.log" >/dev/null &
pid[peer]=$!
node "$bench_dir/graphile/peer.js" submit "$peer_conn" $((reports / 10 + clients)) "$clients" MA-06 \
  0 "$work/peer-warm.cases" >/dev/null
wait_hooks "$work/peer-warm.cases" >/dev/null
settle
reset_stats
out=$(node "$bench_dir/graphile/peer.js" submit "$peer_conn" "$reports" "$clients" MA-06 0 "$work/peer.cases")
hooks=$(wait_hooks "$work/peer.cases" 600)
fig[peer_stmts]=$(statements nrm_peer)
fig[peer]=$(jq .per_s <<<"$hooks")
say "peer end to end: submitted $out"
say "peer end to end: webhooks $hooks"
say "peer end to end: statements ${fig[peer_stmts]}"
settle
node "$bench_dir/graphile/peer.js" submit "$peer_conn" $((rate * 5)) 4 MA-06 "$rate" "$work/peer-rate.cases" >/dev/null
fig[peer_rate]=$(wait_hooks "$work/peer-rate.cases")
say "peer at $rate reports/s: submit-to-webhook ${fig[peer_rate]}"
fig[peer_rss]=$(($(rss_kb "${pid[peer]}") / 1024))

# --- summary -----------------------------------------------------------------------------------
/usr/bin/python3 - "$reports" "$(for k in "${!fig[@]}"; do printf '%s\t%s\n' "$k" "${fig[$k]}"; done)" <<'PY'
import json, sys
n = int(sys.argv[1])
f = dict(line.split("\t", 1) for line in sys.argv[2].splitlines() if "\t" in line)
stmts = {k: int(v) for k, v in (p.split("=") for p in f["stmts"].split())}
peer_stmts = sum(int(p.split("=")[1]) for p in f["peer_stmts"].split())
e2e, peer = float(f["e2e"]), float(f["peer"])
rate, peer_rate = json.loads(f["rate"]), json.loads(f["peer_rate"])
print(f"SUMMARY ({n} reports)")
print(f"  end to end: {e2e:.0f} reports/s; Graphile Worker {peer:.0f}/s; ratio {e2e / peer:.2f}x; "
      f"pgbench one-row INSERT 1 client {float(f['pgbench1']):.0f} tps, 8 clients "
      f"{float(f['pgbench8']):.0f} tps (e2e/pgbench8 {e2e / float(f['pgbench8']):.3f}x)")
print(f"  statements per report: {sum(stmts.values()) / n:.1f} ("
      + ", ".join(f"{k.removeprefix('nrm_')} {v / n:.1f}" for k, v in sorted(stmts.items()))
      + f"); Graphile Worker {peer_stmts / n:.1f}")
print(f"  each stage alone: intake {float(f['intake_alone']):.0f}/s, routing {f['routing_alone']}/s, "
      f"shelter {f['shelter_alone']}/s, notify {f['notify_alone']}/s; receiver alone "
      f"{float(f['receiver']):.0f} requests/s")
print(f"  ack p50 {f['ack_p50']} ms, p99 {f['ack_p99']} ms")
print(f"  submit-to-webhook at a fixed rate: p50 {rate['p50_ms']} ms, p99 {rate['p99_ms']} ms "
      f"(Graphile Worker p50 {peer_rate['p50_ms']} ms, p99 {peer_rate['p99_ms']} ms)")
print(f"  burst of 500 from one region: every shelter outcome within {f['burst_ms']} ms")
print(f"  idle RSS: {f['rss'].strip()}; Graphile Worker process {f['peer_rss']}MB")
PY
