#!/usr/bin/env bash
# nrmctl's directory commands against intake and routing: providers list and upsert from a JSON
# file (the configuration's shape), agreements upsert and list, the coordinator only, a bad
# field named; and a configuration entry changed and applied on SIGHUP.
#
# Run by CTest with NRM_TEST_PGHOST, NRM_TEST_PGPORT (the test cluster, fixture "pg"),
# NRM_BUILD_DIR and NRM_SOURCE_DIR. Creates the database t_nrmctl_directory.
set -euo pipefail
# shellcheck disable=SC2016 # jq programs in single quotes

source "${NRM_SOURCE_DIR:?}/tests/harness/system.sh"

DB=t_nrmctl_directory
SERVICES=(intake routing)
HUP_WAIT_S=10

sys_begin nrmctl-directory

# run ARGS...: nrmctl as the coordinator; stdout in $WORK/out, exit code in RC.
run() {
  RC=0
  "$NRMCTL" --config "$WORK/config.json" --cert "$(cert_of coordinator)" "$@" \
    >"$WORK/out" 2>"$WORK/err" || RC=$?
}

sys_database "$DB"
"$NRMCTL" keygen "$WORK/keys.json"
sys_config "$DB" "$WORK/keys.json" "${SERVICES[@]}"
for i in "${!SERVICES[@]}"; do sys_start "$i" "${SERVICES[$i]}"; done
for i in "${!SERVICES[@]}"; do sys_wait_ready "$i" "${SERVICES[$i]}"; done

run providers --help
check "nrmctl providers --help" grep -q "^usage: nrmctl.* providers" "$WORK/out"

run providers list
check "providers list exits 0" [ "$RC" -eq 0 ]
check "the configured providers are listed" holds -s \
  'length >= 40 and any(.[]; .provider.id == "iom-ma" and .fromConfiguration and .provider.active)' \
  "$WORK/out"

cat >"$WORK/provider.json" <<'JSON'
{"id": "consulate-ng", "services": ["RETURN_ASSISTANCE"], "regions": ["MA-03"],
 "languages": ["en", "fr"], "max_open_referrals": 5, "active": true}
JSON
run providers upsert "$WORK/provider.json"
check "providers upsert exits 0" [ "$RC" -eq 0 ]
check "the reply names the provider" holds '.providerRef.id == "consulate-ng"' "$WORK/out"
run providers list --active
check "the new provider is listed, active, not from the configuration" holds -s \
  'any(.[]; .provider.id == "consulate-ng" and .provider.active and (.fromConfiguration | not))' \
  "$WORK/out"

jq '.regions = ["XX-99"]' "$WORK/provider.json" >"$WORK/bad.json"
run providers upsert "$WORK/bad.json"
check "a bad region is refused, the field named" holds \
  '.status == "STATUS_INVALID_ARGUMENT" and .errorField == "upsert_provider.regions[0]"' "$WORK/out"
check "and exits 1" [ "$RC" -eq 1 ]

RC=0
"$NRMCTL" --config "$WORK/config.json" --cert "$(cert_of police-ma-01)" providers list \
  >"$WORK/out" 2>"$WORK/err" || RC=$?
check "an agency that is not the coordinator is refused" \
  holds '.status == "STATUS_PERMISSION_DENIED"' "$WORK/out"

cat >"$WORK/agreement.json" <<JSON
{"agreementId": "agr-consulate", "providerId": "consulate-ng", "services": ["RETURN_ASSISTANCE"],
 "capacity": 3, "startDate": "$(date -u +%F)", "endDate": "$(date -u -d '+90 days' +%F)"}
JSON
run agreements upsert "$WORK/agreement.json"
check "agreements upsert exits 0" holds '.agreementRef.agreementId == "agr-consulate"' "$WORK/out"
run agreements list --provider consulate-ng
check "agreements list shows it valid today" holds -s \
  'length == 1 and .[0].agreement.capacity == 3 and .[0].validToday' "$WORK/out"

# the configuration changes iom-ma's cap: applied on SIGHUP
"$NRMCTL" --config "$WORK/config.json" config show |
  jq 'del(.include) | (.providers[] | select(.id == "iom-ma") | .max_open_referrals) = 61' \
    >"$WORK/config.new"
mv "$WORK/config.new" "$WORK/config.json"
kill -HUP "${PIDS[1]}"
seen=false
for _ in $(seq $((HUP_WAIT_S * 10))); do
  run providers list
  if holds -s 'any(.[]; .provider.id == "iom-ma" and .provider.maxOpenReferrals == 61)' \
    "$WORK/out"; then
    seen=true
    break
  fi
  sleep 0.1
done
check "a configuration entry changed is applied on SIGHUP" [ "$seen" = true ]
run providers list
check "a run-time provider survives the reload" holds -s \
  'any(.[]; .provider.id == "consulate-ng" and .provider.maxOpenReferrals == 5)' "$WORK/out"

sys_end
