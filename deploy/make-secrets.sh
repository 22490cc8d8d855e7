#!/usr/bin/env bash
# Creates what docker-compose.yml mounts, in deploy/secrets/ (never committed):
#   postgres_password, <service>_db_password   a password per database role
#   replication_password                       the role "replicator" of the replica profile
#   nrm_keys.json                              intake's keyring
#   <service>.cert, <service>.cert_secret      each service's CURVE certificate (zcert format)
#   agencies/<agency>.cert, .cert_secret       a CURVE certificate for each agency of the
#                                              configuration that lists no public key of its
#                                              own: every demonstration agency, among them
#                                              agencies/coordinator.cert for the operator
#   config.json                                the configuration the containers read: CONFIG
#                                              with its data files merged in, every service's
#                                              public key and every agency's public keys
#
#   deploy/make-secrets.sh [CONFIG]        (default deploy/demo/config.json)
#
# Passwords, keyring and certificates are made once: existing files are kept, so running it
# again changes no secret and no key. config.json is derived and rewritten on every run (same
# keys): edit CONFIG, not config.json, then run this again and send SIGHUP (OPERATIONS.md).
# config.json is rewritten in place (same inode), because a running container sees a
# single-file bind mount's inode, not its path.
#
# Needs jq and a built nrmctl, taken from $NRMCTL, else build/tools/nrmctl/nrmctl; when neither
# exists, nrmctl alone is built into build/ (deploy/install-deps.sh installs the packages).
# NRM_SECRETS_DIR chooses another directory (the tests use it).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
dir=${NRM_SECRETS_DIR:-$root/deploy/secrets}
config=${1:-$root/deploy/demo/config.json}
services=(intake routing shelter notify reintegration stats) # the services of docker-compose.yml

nrmctl=${NRMCTL:-$root/build/tools/nrmctl/nrmctl}
if [ ! -x "$nrmctl" ]; then
  echo "make-secrets: building nrmctl in $root/build" >&2
  bash "$root/deploy/install-deps.sh"
  cmake -S "$root" -B "$root/build" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DNRM_TESTS=OFF >/dev/null
  cmake --build "$root/build" -j"$(nproc)" --target nrmctl >/dev/null
fi

mkdir -p "$dir/agencies"
chmod 700 "$dir" "$dir/agencies"
umask 077

# Passwords and the keyring: random, made once.
random() { head -c 32 /dev/urandom | base64 | tr -d '/+=\n' | head -c 32; }
for name in postgres_password replication_password "${services[@]/%/_db_password}"; do
  [ -s "$dir/$name" ] || random >"$dir/$name"
done
[ -s "$dir/nrm_keys.json" ] || "$nrmctl" keygen "$dir/nrm_keys.json" >/dev/null

# CURVE certificates: `nrmctl cert ensure` makes the missing ones and prints "NAME<TAB>KEY" for
# each (an existing public file is enough for its key to be printed: after handing an agency
# its _secret file, the operator may delete their copy).
merged=$("$nrmctl" --config "$config" config show)
to_json() { jq -Rn '[inputs | split("\t") | {(.[0]): .[1]}] | add // {}'; }
service_keys=$("$nrmctl" cert ensure "$dir" "${services[@]}" gateway | to_json)
# the gateway's HTTPS certificate (self-signed, for a first start; replace it with the
# deployment's own): compose publishes 7700 from 0.0.0.0, where plain HTTP is refused
if [ ! -s "$dir/gateway_tls.key" ]; then
  openssl req -x509 -newkey rsa:2048 -nodes -days 365 -subj /CN=localhost \
    -keyout "$dir/gateway_tls.key" -out "$dir/gateway_tls.crt" 2>/dev/null
fi
mapfile -t agencies < <(jq -r '.agencies[]? | select((.public_keys // []) == []) | .id' <<<"$merged")
agency_keys='{}'
if [ ${#agencies[@]} -gt 0 ]; then
  agency_keys=$("$nrmctl" cert ensure "$dir/agencies" "${agencies[@]}" | to_json)
fi

# config.json: public keys only. Each container is told where its own certificate is by
# NRM_SERVICES_<NAME>_CERT_FILE (docker-compose.yml); an agency that lists keys keeps them.
jq --argjson services "$service_keys" --argjson agencies "$agency_keys" '
  .services |= with_entries(if $services[.key] then .value.public_key = $services[.key] else . end) |
  .agencies |= (. // [] | map(if (.public_keys // []) == [] then .public_keys = [$agencies[.id]] else . end))
' <<<"$merged" >"$dir/config.json.new"
cat "$dir/config.json.new" >"$dir/config.json" # in place: see above
rm -f "$dir/config.json.new"

# The containers (services as uid 10001, postgres as uid 999) read the files of deploy/secrets/
# through their bind mounts (compose secrets), so those files are world-readable (644); the
# directory, mode 700, keeps other host users out. The agencies' certificates are not mounted
# and stay 600 in their own 700 directory.
find "$dir" -maxdepth 1 -type f -exec chmod 644 {} +
find "$dir/agencies" -maxdepth 1 -type f -exec chmod 600 {} +
chmod 700 "$dir" "$dir/agencies"
echo "secrets ready in $dir (operator: nrmctl --config $dir/config.json" \
  "--cert $dir/agencies/coordinator.cert)" >&2
