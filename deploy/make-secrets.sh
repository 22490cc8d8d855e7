#!/usr/bin/env bash
# Creates the secrets docker-compose.yml mounts, once, in deploy/secrets/ (mode 600; never
# committed): a password per database role, the postgres superuser password, and intake's
# keyring. Existing files are kept: run it again safely. Rotate keys with `nrmctl keyrotate`.
set -euo pipefail
dir=$(cd "$(dirname "$0")" && pwd)/secrets
mkdir -p "$dir"
chmod 700 "$dir"
umask 077
random() { head -c 32 /dev/urandom | base64 | tr -d '/+=\n' | head -c 32; }
for name in postgres_password intake_db_password routing_db_password shelter_db_password \
  notify_db_password; do
  [ -s "$dir/$name" ] || random >"$dir/$name"
done
if [ ! -s "$dir/nrm_keys.json" ]; then
  key=$(head -c 32 /dev/urandom | base64)
  hash=$(head -c 32 /dev/urandom | base64)
  printf '{\n  "active": 1,\n  "keys": {"1": "%s"},\n  "hash_key": "%s"\n}\n' "$key" "$hash" \
    >"$dir/nrm_keys.json"
fi
# The containers (services as uid 10001, postgres as uid 999) read the files through their bind
# mounts, so the files are world-readable; the directory, mode 700, keeps other host users out.
chmod 644 "$dir"/*
chmod 700 "$dir"
echo "secrets ready in $dir"
