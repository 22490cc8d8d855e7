#!/usr/bin/env bash
# deploy/db-init.sh run several times at once on a cluster that has none of the roles yet (as
# the tests do at the start of a run, each preparing its own database): every run succeeds and
# every database is prepared. Before the runs took a lock, 6 of 40 runs failed here
# with a duplicate key in pg_authid, the second to create a missing role.
#
# Uses a private cluster (unix socket only) in a temporary directory, removed at exit; the
# roles are dropped between rounds so that each round starts without them.
set -euo pipefail

SRC=${NRM_SOURCE_DIR:?}
ROUNDS=6
RUNS=4
DIR=$(mktemp -d /tmp/nrm-t-dbinit-XXXXXX)
chmod 755 "$DIR"
PORT=${NRM_TEST_PGPORT:-5432} # a socket name only: nothing listens on TCP
export PG_CLUSTER_LISTEN=
cleanup() {
  bash "$SRC/tests/pg-cluster.sh" stop "$DIR/pg" >/dev/null 2>&1 || true
  [ -n "${NRM_TEST_KEEP:-}" ] || rm -rf "$DIR"
}
trap cleanup EXIT
bash "$SRC/tests/pg-cluster.sh" start "$DIR/pg" "$PORT" >/dev/null
export PGHOST=$DIR/pg/sock PGPORT=$PORT PGUSER=postgres
sql() { psql -X -qAt -v ON_ERROR_STOP=1 -d postgres -c "$1"; }

failed=0
for round in $(seq "$ROUNDS"); do
  pids=()
  for i in $(seq "$RUNS"); do
    bash "$SRC/deploy/db-init.sh" "t_dbinit_${round}_$i" >/dev/null 2>"$DIR/err.$round.$i" &
    pids+=($!)
  done
  for i in $(seq "$RUNS"); do
    if ! wait "${pids[$((i - 1))]}"; then
      failed=$((failed + 1))
      echo "round $round, run $i failed:" >&2
      cat "$DIR/err.$round.$i" >&2
    else
      owner=$(psql -X -qAt -d "t_dbinit_${round}_$i" \
        -c "SELECT pg_get_userbyid(nspowner) FROM pg_namespace WHERE nspname = 'intake'")
      [ "$owner" = nrm_audit_owner ] || {
        failed=$((failed + 1))
        echo "round $round, run $i: schema intake owned by '$owner'" >&2
      }
    fi
  done
  for i in $(seq "$RUNS"); do sql "DROP DATABASE IF EXISTS t_dbinit_${round}_$i"; done
  sql "SELECT format('DROP ROLE %I;', rolname) FROM pg_roles WHERE rolname LIKE 'nrm\_%'" |
    psql -X -q -v ON_ERROR_STOP=1 -d postgres
  [ "$(sql "SELECT count(*) FROM pg_roles WHERE rolname LIKE 'nrm\_%'")" = 0 ]
done

if [ "$failed" -ne 0 ]; then
  echo "not ok - $failed of $((ROUNDS * RUNS)) runs of db-init at once failed"
  exit 1
fi
echo "ok - $((ROUNDS * RUNS)) runs of db-init, $RUNS at a time on a cluster without the roles"
