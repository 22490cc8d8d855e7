#!/usr/bin/env bash
# Runs the whole system on this machine (README command one): installs what is missing, builds,
# starts a private PostgreSQL cluster under var/ in the working tree (initialised on first use,
# as an unprivileged user, on its own port and socket directory), starts every service that
# exists with the demonstration configuration and a demonstration receiver of notify's webhooks
# and mail (deploy/demo/receiver.py), submits a short scenario of fictitious reports and shows
# the events flowing: one line per event in time order on a terminal, JSON lines when the output
# is piped (or --json). Ctrl-C or SIGTERM stops everything within seconds.
#
#   deploy/run-local.sh [--reset] [--no-scenario] [--json|--human]
#
# --reset starts from an empty database (dropped and made again; the keys in var/ are kept).
# Each run's scenario opens new cases: from the second run on (without --reset), its people's
# names carry the run number (var/demo-run), as reports about different people would; without
# that, every report would only be linked to the first run's cases.
#
# The services read var/config.json: the demonstration configuration (NRM_CONFIG, default
# deploy/demo/config.json) with a key pair per service and agency from deploy/certify.sh
# (var/certs/; nrmctl --cert var/certs/<agency>.cert speaks as that agency; nrmctl run in the
# working tree finds var/config.json and the coordinator's certificate by itself), and, for this
# machine only, the webhook subscriptions pointed at the receiver on 127.0.0.1 (allowed by
# notify.webhook_allow) and the SMTP relay at its sink. The demonstration files keep their
# example.invalid addresses and allow nothing inward.
#
# Environment: NRM_LOCAL_PGPORT (default 55432); NRM_LOCAL_HOOK_PORT and NRM_LOCAL_SMTP_PORT,
# the receiver's (default 7790 and 2525); NRM_REINTEGRATION_FOLLOWUP_OFFSETS_S (default here
# "30,15552000,31104000": the first follow-up of a plan falls due 30 seconds after it opens, so
# that the scenario shows one).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
build=$root/build
var=$root/var
port=${NRM_LOCAL_PGPORT:-55432}
hook_port=${NRM_LOCAL_HOOK_PORT:-7790}
smtp_port=${NRM_LOCAL_SMTP_PORT:-2525}
config=${NRM_CONFIG:-$root/deploy/demo/config.json}
scenario=1 reset=0 output=--json
[ -t 1 ] && output=--human
for arg in "$@"; do
  case $arg in
    --no-scenario) scenario=0 ;;
    --reset) reset=1 ;;
    --json | --human) output=$arg ;;
    *) echo "usage: $0 [--reset] [--no-scenario] [--json|--human]" >&2; exit 2 ;;
  esac
done
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
# this machine only: deliveries go to the demonstration receiver (never in deploy/demo/), and
# the duty officer's mail also follows new cases, so that the scenario shows mail delivered
# (what concerns a coordinator otherwise, expiries and alerts, comes later or not at all)
jq --argjson hook "$hook_port" --argjson smtp "$smtp_port" '
  .subscriptions |= map(if .channel == "webhook"
    then .address = "http://127.0.0.1:\($hook)/\(.subscription_id)" else . end) |
  .notify.webhook_allow = ["127.0.0.1/32"] |
  .notify.smtp.url = "smtp://127.0.0.1:\($smtp)" | .notify.smtp.tls = "none" |
  (.subscriptions[] | select(.subscription_id == "demo-coordinator-email") | .topics) |=
    (if . == [] then ["case.opened"] else . end)
' "$config" >"$config.new" && mv "$config.new" "$config"
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

# Everything runs in the background and the runner waits, so that SIGTERM (as well as Ctrl-C)
# runs the trap at once, whatever the output is connected to; what does not stop within
# STOP_GRACE_S is killed.
STOP_GRACE_S=5
stop_all() {
  trap - EXIT
  trap '' INT TERM # a second Ctrl-C or SIGTERM must not cut the stop short (the cluster too)
  say "stopping"
  local pid deadline=$((SECONDS + STOP_GRACE_S))
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do
    while kill -0 "$pid" 2>/dev/null && [ "$SECONDS" -lt "$deadline" ]; do sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  bash "$root/tests/pg-cluster.sh" stop "$pgdir" >/dev/null || true
  say "stopped"
}
trap stop_all EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

bash "$root/tests/pg-cluster.sh" start "$pgdir" "$port" >&2
if [ "$reset" -eq 1 ]; then
  say "--reset: the database nrm starts empty (the keys in var/ are kept)"
  PGOPTIONS="-c client_min_messages=warning" psql -X -q -h "$pgdir/sock" -p "$port" -U postgres \
    -c "DROP DATABASE IF EXISTS nrm WITH (FORCE)" >/dev/null
  rm -f "$var/demo-run"
fi
PGHOST=$pgdir/sock PGPORT=$port PGUSER=postgres bash "$root/deploy/db-init.sh" nrm >&2
run=$(($(cat "$var/demo-run" 2>/dev/null || echo 0) + 1))
echo "$run" >"$var/demo-run"
[ -f "$var/keys.json" ] || "${nrmctl[@]}" keygen "$var/keys.json"
export NRM_DATABASE_CONNINFO="host=$pgdir/sock port=$port dbname=nrm"
export NRM_CRYPTO_KEYS_FILE=$var/keys.json
export NRM_REINTEGRATION_FOLLOWUP_OFFSETS_S=${NRM_REINTEGRATION_FOLLOWUP_OFFSETS_S:-30,15552000,31104000}

python3 "$root/deploy/demo/receiver.py" --config "$config" --http-port "$hook_port" \
  --smtp-port "$smtp_port" --log "$var/log/receiver.log" >&2 &
pids+=($!)

services=()
for service in intake routing shelter notify reintegration stats; do
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
"${nrmctl[@]}" ping "${services[@]}" >&2
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
    # identified an hour ago; from the second run on, other people (their names carry the run)
    suffix=""
    [ "$run" -gt 1 ] && suffix=" run $run"
    sed -e "s/\"identifiedAtMs\": \"0\"/\"identifiedAtMs\": \"$((now - 3600000))\"/" \
      -e "s/\"fullName\": \"\([^\"]*\)\"/\"fullName\": \"\1$suffix\"/" "$file" >"$var/report.json"
    say "submitting $name as $agency"
    "${nrmctl[@]}" --cert "$var/certs/$agency.cert" submit "$var/report.json" >/dev/null || true
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
      '{respondToReferral: {referralId: $r.referralId, decision: "ACCEPT"}}' |
      "${nrmctl[@]}" --cert "$var/certs/$provider.cert" request routing - >/dev/null || true
  fi
fi

[ "$run" -gt 1 ] && say "run $run on this database: new cases for new people (--reset starts empty)"
say "events of every stream follow (Ctrl-C stops everything)"
"${nrmctl[@]}" tail "$output" --from 1 &
pids+=($!)
wait "$!" || true
