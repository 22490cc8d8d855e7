#!/usr/bin/env bash
# Runs the whole system on this machine (README command one): installs what is missing, builds,
# starts a private PostgreSQL cluster under var/ in the working tree (initialised on first use,
# as an unprivileged user, on its own port and socket directory), starts every service that
# exists with the demonstration configuration, submits a short scenario of fictitious reports
# and shows the events flowing. Ctrl-C stops everything cleanly.
#
#   deploy/run-local.sh [--no-scenario]
#
# Environment: NRM_LOCAL_PGPORT (default 55432); NRM_CONFIG (default deploy/demo/config.json),
# which deploy/certify.sh turns into var/config.json with a key pair per service and agency
# (var/certs/; nrmctl --cert var/certs/<agency>.cert speaks as that agency);
# NRM_REINTEGRATION_FOLLOWUP_OFFSETS_S (default here "30,15552000,31104000": the first
# follow-up of a plan falls due 30 seconds after it opens, so that the scenario shows one).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
build=$root/build
var=$root/var
port=${NRM_LOCAL_PGPORT:-55432}
config=${NRM_CONFIG:-$root/deploy/demo/config.json}
scenario=1
[ "${1:-}" = "--no-scenario" ] && scenario=0
pids=()

say() { echo "run-local: $*" >&2; }

bash "$root/deploy/install-deps.sh"
cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DNRM_TESTS=OFF >/dev/null
cmake --build "$build" -j"$(nproc)" >/dev/null
mkdir -p "$var/log"
# every service and demonstration agency gets a CURVE key pair (kept across runs in var/certs);
# the services read var/config.json, the demonstration configuration with those keys
bash "$root/deploy/certify.sh" "$build/tools/nrmctl/nrmctl" "$config" "$var"
config=$var/config.json
export NRM_CERT=$var/certs/coordinator.cert
nrmctl=("$build/tools/nrmctl/nrmctl" --config "$config")

# PostgreSQL runs as the unprivileged user nrmpg when this runs as root; that user must be able
# to reach var/. A checkout under a private home (such as /root) is not reachable: fall back to
# /tmp then, and say so.
pgdir=$var/pg
if [ "$(id -u)" -eq 0 ] && ! runuser -u nrmpg -- test -x "$var" 2>/dev/null; then
  id nrmpg >/dev/null 2>&1 || useradd --system --no-create-home --shell /usr/sbin/nologin nrmpg
  if ! runuser -u nrmpg -- test -x "$var" 2>/dev/null; then
    pgdir=/tmp/nrm-local-pg-$port
    say "var/ is not reachable by the database user nrmpg; the cluster lives in $pgdir"
  fi
fi

stop_all() {
  trap - INT TERM EXIT
  say "stopping"
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  bash "$root/tests/pg-cluster.sh" stop "$pgdir" >/dev/null || true
  say "stopped"
}
trap stop_all INT TERM EXIT

bash "$root/tests/pg-cluster.sh" start "$pgdir" "$port"
PGHOST=$pgdir/sock PGPORT=$port PGUSER=postgres bash "$root/deploy/db-init.sh" nrm
[ -f "$var/keys.json" ] || "${nrmctl[@]}" keygen "$var/keys.json"
export NRM_DATABASE_CONNINFO="host=$pgdir/sock port=$port dbname=nrm"
export NRM_CRYPTO_KEYS_FILE=$var/keys.json
export NRM_REINTEGRATION_FOLLOWUP_OFFSETS_S=${NRM_REINTEGRATION_FOLLOWUP_OFFSETS_S:-30,15552000,31104000}

services=()
for service in intake routing shelter notify reintegration; do
  binary=$build/services/$service/nrm-$service
  [ -x "$binary" ] || continue
  "$binary" --config "$config" 2>>"$var/log/$service.log" &
  pids+=($!)
  services+=("$service")
done
say "started ${services[*]} (logs in var/log/)"
for _ in $(seq 100); do
  "${nrmctl[@]}" --timeout 300 ping "${services[@]}" >/dev/null 2>&1 && break
  sleep 0.3
done
"${nrmctl[@]}" ping "${services[@]}"

# the HTTP gateway: the dashboard, the JSON API, server-sent events and /metrics
gateway=$build/services/gateway/nrm-gateway
if [ -x "$gateway" ]; then
  NRM_SERVICES_GATEWAY_WWW=${NRM_SERVICES_GATEWAY_WWW:-$root/services/gateway/www} \
    "$gateway" --config "$config" 2>>"$var/log/gateway.log" &
  pids+=($!)
  say "dashboard: http://127.0.0.1:7700/ (demonstration sign-in: agency coordinator," \
    "token demo-token-coordinator; every demo agency ID has the token demo-token-ID," \
    "deploy/demo/gateway.json)"
fi

if [ "$scenario" -eq 1 ]; then
  declare -A reporter=([01]=hotline-national [02]=labour-ma-06 [03]=police-ma-06 [04]=hospital-ma-04
    [05]=police-ma-06)
  now=$(date +%s%3N)
  for file in "$root"/deploy/demo/scenario/*.json; do
    name=$(basename "$file")
    agency=${reporter[${name%%-*}]:-coordinator}
    # identified an hour ago
    sed "s/\"identifiedAtMs\": \"0\"/\"identifiedAtMs\": \"$((now - 3600000))\"/" "$file" >"$var/report.json"
    say "submitting $name as $agency"
    "${nrmctl[@]}" --cert "$var/certs/$agency.cert" submit "$var/report.json" || true
  done
  rm -f "$var/report.json"
  # the reintegration provider accepts the REINTEGRATION referral: reintegration opens a plan
  # (reintegration.plan_opened) whose first follow-up falls due 30 s later (followup_due)
  referral=$("${nrmctl[@]}" tail --service routing --from 1 --idle-exit 3000 referral.created |
    jq -c 'select(.referralCreated.service == "SERVICE_TYPE_REINTEGRATION") | .referralCreated' |
    tail -1)
  if [ -n "$referral" ]; then
    provider=$(jq -r .providerAgencyId <<<"$referral")
    say "$provider accepts the reintegration referral"
    jq -n --argjson r "$referral" \
      '{respondToReferral: {referralId: $r.referralId, decision: "REFERRAL_DECISION_ACCEPT"}}' |
      "${nrmctl[@]}" --cert "$var/certs/$provider.cert" request routing - || true
  fi
fi

say "events of every stream follow (Ctrl-C stops everything)"
"${nrmctl[@]}" tail --from 1
