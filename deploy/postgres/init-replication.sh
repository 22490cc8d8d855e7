#!/usr/bin/env bash
# Run once by the postgres image on a new data volume (/docker-entrypoint-initdb.d), after
# init-nrm.sh: the role "replicator" (password from the compose secret replication_password)
# that the replica profile's standby streams with, and its line in pg_hba.conf.
set -euo pipefail
secret=/run/secrets/replication_password
[ -r "$secret" ] || exit 0
# the password reaches psql through its environment (\getenv), never a command line
NRM_REPLICATION_PASSWORD=$(cat "$secret") \
  psql -v ON_ERROR_STOP=1 -U "${POSTGRES_USER:-postgres}" -h /var/run/postgresql -d postgres <<'SQL'
\getenv password NRM_REPLICATION_PASSWORD
SELECT format('CREATE ROLE replicator WITH REPLICATION LOGIN PASSWORD %L', :'password')
WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'replicator') \gexec
SQL
grep -q '^host replication replicator' "$PGDATA/pg_hba.conf" ||
  echo "host replication replicator all scram-sha-256" >>"$PGDATA/pg_hba.conf"
