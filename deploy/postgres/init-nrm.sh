#!/usr/bin/env bash
# Run once by the postgres image on a new data volume (/docker-entrypoint-initdb.d): prepares the
# database "nrm" for the five services with deploy/db-init.sh, taking each role's password from
# its compose secret.
set -euo pipefail
for service in intake routing shelter notify reintegration stats; do
  secret=/run/secrets/${service}_db_password
  [ -r "$secret" ] && export "NRM_${service^^}_DB_PASSWORD=$(cat "$secret")"
done
PGUSER=${POSTGRES_USER:-postgres} PGHOST=/var/run/postgresql bash /usr/local/lib/nrm/db-init.sh nrm
