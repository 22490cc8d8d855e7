#!/usr/bin/env bash
# Gives every service and every agency of a configuration a CURVE key pair and writes the
# configuration that lists them.
#
#   deploy/certify.sh NRMCTL CONFIG OUT
#
# Reads CONFIG with its included data files merged (nrmctl config show), makes the certificates
# OUT/certs/<agency>.cert and OUT/certs/service-<name>.cert (with their _secret files; existing
# ones are kept, so running it again changes no key), and writes OUT/config.json: CONFIG merged,
# with services.<name>.cert_file and public_key, and each agency's public_keys (an agency that
# already lists keys keeps its own). For the local runner, the tests and the benchmark; a real
# deployment issues each agency its key (nrmctl cert new) and lists only public keys.
set -euo pipefail

[ $# -eq 3 ] || { echo "usage: $0 NRMCTL CONFIG OUT" >&2; exit 2; }
nrmctl=$1 config=$2 out=$3
mkdir -p "$out/certs"
merged=$("$nrmctl" --config "$config" config show)

names=$( (jq -r '.services | keys[] | "service:" + .' <<<"$merged"; jq -r '.agencies[]?.id' <<<"$merged") )
# shellcheck disable=SC2086 # one name per word
keys=$("$nrmctl" cert ensure "$out/certs" $names | jq -Rn '[inputs | split("\t") | {(.[0]): .[1]}] | add')
jq --argjson keys "$keys" --arg certs "$out/certs" '
  .services |= with_entries(.value.cert_file = ($certs + "/service-" + .key + ".cert") |
                            .value.public_key = $keys["service:" + .key]) |
  .agencies |= map(if .public_keys then . else .public_keys = [$keys[.id]] end)
' <<<"$merged" >"$out/config.json"
