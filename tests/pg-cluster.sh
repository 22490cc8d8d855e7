#!/usr/bin/env bash
# Manages a private PostgreSQL 15 cluster for the tests and the local runner.
#
#   tests/pg-cluster.sh start DIR PORT   initialise on first use, start, wait until ready
#   tests/pg-cluster.sh stop DIR         stop (fast mode); a no-op when not running
#   tests/pg-cluster.sh restart DIR      stop (fast) and start again on the last PORT
#   tests/pg-cluster.sh status DIR       print the state; exit 0 running, 3 stopped, 4 no cluster
#   tests/pg-cluster.sh standby DIR PRIMARY_DIR PORT
#                                        a streaming standby of the running cluster in PRIMARY_DIR
#                                        (pg_basebackup -R on first use), started on PORT
#   tests/pg-cluster.sh promote DIR      promote a standby (pg_ctl promote, waits until it writes)
#   tests/pg-cluster.sh kill DIR         stop in immediate mode (what a crash leaves behind)
#
# PG_CLUSTER_LISTEN (default 127.0.0.1) is the TCP address the server listens on; set it empty
# for a cluster reached only through its unix socket (no TCP port taken: the failover and chaos
# tests use it). PG_CLUSTER_SETTINGS adds server options (for example "-c fsync=off").
#
# DIR holds everything and nothing is written outside it: DIR/data (the cluster), DIR/sock (the
# unix socket directory, mode 777 so any local user's client can connect), DIR/postgres.log and
# DIR/port (the last PORT, for restart). The server listens only on DIR/sock and on
# 127.0.0.1:PORT (unless PG_CLUSTER_LISTEN says otherwise); authentication is trust (replication
# connections too, for a standby) and the superuser is "postgres".
#
# PostgreSQL refuses to run as root. When run as root, the cluster runs as the system user nrmpg
# (created if missing); DIR is created, made mode 755 and given to that user. Every parent of
# DIR must be traversable (x) by nrmpg -- /tmp and the usual places are; the script does not
# change any directory above DIR. Otherwise the cluster runs as the current user.
# DIR must not contain white space or quotes.
set -euo pipefail

PG_BIN=/usr/lib/postgresql/15/bin
PG_SYSTEM_USER=nrmpg
READY_TIMEOUT=30 # seconds start waits for the server to accept connections
SETTINGS=(-c max_connections=200 -c shared_buffers=128MB)

die() {
  echo "pg-cluster: $*" >&2
  exit 1
}

usage() {
  echo "usage: $0 start DIR PORT | stop DIR | restart DIR | status DIR |" \
    "standby DIR PRIMARY_DIR PORT | promote DIR | kill DIR" >&2
  exit 2
}

# Runs a command as the user that owns the cluster.
as_owner() {
  if [ "$(id -u)" -eq 0 ]; then
    runuser -u "$PG_SYSTEM_USER" -- "$@"
  else
    "$@"
  fi
}

# Sets DIR, DATA, SOCK, LOG, PORT_FILE from the DIR argument (made absolute).
set_paths() {
  [ -n "$1" ] || usage
  case "$1" in
    *[[:space:]\'\"\\]*) die "DIR must not contain white space, quotes or backslashes: $1" ;;
  esac
  DIR=$(realpath -m -- "$1")
  DATA=$DIR/data
  SOCK=$DIR/sock
  LOG=$DIR/postgres.log
  PORT_FILE=$DIR/port
}

# Creates DIR for the owner (and, as root, the owner itself). Touches nothing above DIR.
prepare_dir() {
  if [ "$(id -u)" -eq 0 ]; then
    if ! id -u "$PG_SYSTEM_USER" >/dev/null 2>&1; then
      useradd --system --no-create-home --shell /usr/sbin/nologin "$PG_SYSTEM_USER" ||
        die "cannot create the system user $PG_SYSTEM_USER"
    fi
    mkdir -p -- "$DIR" || die "cannot create $DIR"
    chmod 755 -- "$DIR"
    chown "$PG_SYSTEM_USER:" -- "$DIR" || die "cannot give $DIR to $PG_SYSTEM_USER"
    runuser -u "$PG_SYSTEM_USER" -- test -x "$DIR" -a -w "$DIR" ||
      die "user $PG_SYSTEM_USER cannot reach $DIR: every parent directory must be traversable"
  else
    mkdir -p -- "$DIR" || die "cannot create $DIR"
    chmod 755 -- "$DIR"
  fi
  # Run from DIR so the owner never starts in a directory it cannot read (such as /root).
  cd "$DIR"
  [ -e "$LOG" ] || as_owner touch "$LOG"
  as_owner mkdir -p "$SOCK"
  as_owner chmod 777 "$SOCK"
}

is_initialised() {
  [ -s "$DATA/PG_VERSION" ]
}

is_running() {
  is_initialised && as_owner "$PG_BIN/pg_ctl" status -D "$DATA" >/dev/null 2>&1
}

initialise() {
  local locale=(--no-locale)
  if locale -a 2>/dev/null | grep -qiE '^c\.utf-?8$'; then
    locale=(--locale=C.UTF-8)
  fi
  echo "pg-cluster: initialising $DATA" >&2
  as_owner "$PG_BIN/initdb" -D "$DATA" --auth=trust --username=postgres --encoding=UTF8 \
    "${locale[@]}" >>"$LOG" 2>&1 || die "initdb failed; see $LOG"
}

start() {
  local port=$1
  [[ "$port" =~ ^[0-9]{1,5}$ ]] && [ "$port" -ge 1 ] && [ "$port" -le 65535 ] ||
    die "PORT must be a number from 1 to 65535: $port"
  prepare_dir
  if is_running; then
    local running_port
    running_port=$(cat "$PORT_FILE" 2>/dev/null || echo "?")
    [ "$running_port" = "$port" ] ||
      echo "pg-cluster: warning: already running on port $running_port, not $port" >&2
    echo "pg-cluster: already running in $DIR"
    return 0
  fi
  is_initialised || initialise
  printf '%s\n' "$port" | as_owner tee "$PORT_FILE" >/dev/null
  local started=$SECONDS
  local options="-c listen_addresses='${PG_CLUSTER_LISTEN-127.0.0.1}' -c port=$port"
  options+=" -c unix_socket_directories=$SOCK ${SETTINGS[*]} ${PG_CLUSTER_SETTINGS:-}"
  if ! as_owner "$PG_BIN/pg_ctl" start -D "$DATA" -l "$LOG" -w -t "$READY_TIMEOUT" \
    -o "$options" >/dev/null; then
    tail -n 20 "$LOG" >&2
    die "the server did not start; see $LOG"
  fi
  until "$PG_BIN/pg_isready" -q -h "$SOCK" -p "$port" -U postgres; do
    if [ $((SECONDS - started)) -ge "$READY_TIMEOUT" ]; then
      tail -n 20 "$LOG" >&2
      die "the server is not ready after ${READY_TIMEOUT}s; see $LOG"
    fi
    sleep 0.2
  done
  echo "pg-cluster: running in $DIR (socket $SOCK, port $port)"
}

# standby PRIMARY_DIR PORT: clones the running primary in PRIMARY_DIR (first use only) into a
# standby that streams from it through its unix socket, and starts it on PORT.
standby() {
  local primary
  primary=$(realpath -m -- "$1")
  local primary_port
  primary_port=$(cat "$primary/port" 2>/dev/null) || die "no running cluster in $primary"
  prepare_dir
  if ! is_initialised; then
    as_owner "$PG_BIN/pg_basebackup" -h "$primary/sock" -p "$primary_port" -U postgres \
      -D "$DATA" -R -X stream -c fast >>"$LOG" 2>&1 || die "pg_basebackup failed; see $LOG"
  fi
  start "$2"
}

promote() {
  is_initialised || die "no cluster in $DIR"
  cd "$DIR"
  as_owner "$PG_BIN/pg_ctl" promote -D "$DATA" -w -t "$READY_TIMEOUT" >/dev/null ||
    die "the standby was not promoted; see $LOG"
  echo "pg-cluster: promoted $DIR"
}

kill_now() {
  is_initialised || die "no cluster in $DIR"
  cd "$DIR"
  is_running || return 0
  as_owner "$PG_BIN/pg_ctl" stop -D "$DATA" -m immediate -w -t "$READY_TIMEOUT" >/dev/null ||
    die "the server did not stop; see $LOG"
  echo "pg-cluster: killed $DIR"
}

stop() {
  if ! is_initialised; then
    echo "pg-cluster: no cluster in $DIR; nothing to stop" >&2
    return 0
  fi
  cd "$DIR"
  if ! is_running; then
    echo "pg-cluster: not running in $DIR"
    return 0
  fi
  as_owner "$PG_BIN/pg_ctl" stop -D "$DATA" -m fast -w -t "$READY_TIMEOUT" >/dev/null ||
    die "the server did not stop; see $LOG"
  echo "pg-cluster: stopped $DIR"
}

status() {
  if ! is_initialised; then
    echo "pg-cluster: no cluster in $DIR"
    exit 4
  fi
  cd "$DIR"
  if is_running; then
    echo "pg-cluster: running in $DIR (socket $SOCK, 127.0.0.1:$(cat "$PORT_FILE" 2>/dev/null))"
    exit 0
  fi
  echo "pg-cluster: stopped ($DIR)"
  exit 3
}

[ $# -ge 2 ] || usage
command=$1
set_paths "$2"
case "$command" in
  start)
    [ $# -eq 3 ] || usage
    start "$3"
    ;;
  stop)
    [ $# -eq 2 ] || usage
    stop
    ;;
  restart)
    [ $# -eq 2 ] || usage
    is_initialised && [ -s "$PORT_FILE" ] || die "no cluster in $DIR; use: $0 start DIR PORT"
    port=$(cat "$PORT_FILE")
    stop
    start "$port"
    ;;
  status)
    [ $# -eq 2 ] || usage
    status
    ;;
  standby)
    [ $# -eq 4 ] || usage
    standby "$3" "$4"
    ;;
  promote)
    [ $# -eq 2 ] || usage
    promote
    ;;
  kill)
    [ $# -eq 2 ] || usage
    kill_now
    ;;
  *) usage ;;
esac
