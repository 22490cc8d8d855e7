#!/usr/bin/env bash
# SSE fan-out against the local runner (deploy/run-local.sh, running): 100 coordinator event
# streams on the gateway while nrmctl submits REPORTS reports; prints events/s delivered (live:
# bounded by how fast the reports are made), then CLIENTS streams catching up from the start of
# every stream at once (Last-Event-ID; events_per_busy_s is the gateway's fan-out rate).
#   tools/bench/sse.sh [CLIENTS=100] [REPORTS=200]
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
clients=${1:-100} reports=${2:-200}
nrmctl=("$root/build/tools/nrmctl/nrmctl" --config "$root/var/config.json")
/usr/bin/python3 "$root/tools/bench/sse.py" http://127.0.0.1:7700 coordinator \
  demo-token-coordinator "$clients" 30 &
bench=$!
sleep 3
now=$(date +%s%3N)
sed "s/\"identifiedAtMs\": \"0\"/\"identifiedAtMs\": \"$((now - 3600000))\"/" \
  "$root/deploy/demo/scenario/02-forced-labour-ma06.json" >/tmp/nrm-sse-report.json
for _ in $(seq "$reports"); do
  "${nrmctl[@]}" --cert "$root/var/certs/police-ma-06.cert" submit /tmp/nrm-sse-report.json >/dev/null
done
wait "$bench"
/usr/bin/python3 "$root/tools/bench/sse.py" http://127.0.0.1:7700 coordinator \
  demo-token-coordinator "$clients" 30 "intake:0,routing:0,shelter:0,notify:0"
