#!/usr/bin/env bash
# The entrypoint of postgres-replica (docker-compose.yml, profile "replica"), run as postgres:
# on an empty volume it clones the primary NRM_PRIMARY_HOST with pg_basebackup (-R: a standby
# that streams from it, through the replication slot "replica"), then runs the server. Once
# promoted (pg_ctl promote) the same volume starts as a primary.
set -euo pipefail
: "${PGDATA:?}" "${NRM_PRIMARY_HOST:?}"
if [ ! -s "$PGDATA/PG_VERSION" ]; then
  PGPASSWORD=$(cat /run/secrets/replication_password)
  export PGPASSWORD
  until pg_isready -q -h "$NRM_PRIMARY_HOST" -p 5432; do sleep 1; done
  # the slot keeps the primary's WAL until this standby has it; -R writes primary_conninfo
  pg_basebackup -h "$NRM_PRIMARY_HOST" -p 5432 -U replicator -D "$PGDATA" -R -X stream \
    -C -S replica -c fast --no-password
  echo "primary_conninfo = 'host=$NRM_PRIMARY_HOST port=5432 user=replicator password=$PGPASSWORD application_name=replica'" \
    >>"$PGDATA/postgresql.auto.conf"
  chmod 700 "$PGDATA"
fi
exec postgres
