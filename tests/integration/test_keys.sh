#!/usr/bin/env bash
# shellcheck disable=SC2016 # jq filters and bash -c scripts are single-quoted on purpose
# Key files and certificates, as operators handle them:
#   - nrmctl keyrotate keeps the keyring's mode and owner, so the service's user can still read
#     it (as root: a keyring owned by `nobody`, or readable by its group, stays so);
#   - nrmctl cert new writes both files of a certificate, refuses to overwrite, never prints the
#     secret key, and the key in the entry it prints is the one `nrmctl cert key` reads; pyzmq's
#     zmq.auth.load_certificate reads the files (when Debian's python3-zmq is installed);
#   - deploy/make-secrets.sh makes every file docker-compose.yml mounts, once (a second run
#     changes nothing), with the modes the containers need, and a configuration that lists the
#     public key of every service and agency and no secret; intake started from that
#     configuration with its own certificate answers the compose health check's Ping, the
#     operator's coordinator certificate, and the README's Python client with CURVE.
#
# Run by CTest with NRM_TEST_PGHOST, NRM_TEST_PGPORT (the test cluster, fixture "pg"),
# NRM_BUILD_DIR and NRM_SOURCE_DIR. Creates the database t_keys; everything else lives in a
# temporary directory removed at exit, with the intake process.
set -euo pipefail

source "${NRM_SOURCE_DIR:?}/tests/harness/system.sh"

DB=t_keys
OTHER_USER=nobody # the service's user in these checks: not the one running the tests
OTHER_GROUP=nogroup
PYTHON=/usr/bin/python3
SERVICES=(intake routing shelter notify)

sys_begin keys

# run ARGS...: nrmctl; stdout in $WORK/out, stderr in $WORK/err, exit code in RC.
run() {
  RC=0
  "$NRMCTL" "$@" >"$WORK/out" 2>"$WORK/err" || RC=$?
}

# skip NAME WHY: a check that cannot run here.
skip() {
  echo "ok - $1 # skipped: $2"
}

# secret_of FILE_secret: the Z85 secret key written in a zcert secret file.
secret_of() {
  sed -n 's/^ *secret-key = "\(.*\)"$/\1/p' "$1"
}

# key_of FILE: the public key of a certificate, as nrmctl reads it.
key_of() {
  "$NRMCTL" cert key "$1"
}

have_pyzmq=0
"$PYTHON" -c 'import zmq, zmq.auth' 2>/dev/null && have_pyzmq=1
is_root=0
[ "$(id -u)" -eq 0 ] && id "$OTHER_USER" >/dev/null 2>&1 && is_root=1

# --- keyrotate keeps the keyring's mode and owner ---------------------------------------------

# $WORK is private (mktemp -d); the keyrings live in a directory the other user can reach.
chmod 711 "$WORK"
mkdir -m 755 "$WORK/keyrings"

# rotate_keeps MODE OWNER:GROUP: a keyring with MODE and OWNER:GROUP (the current user when not
# root) is rotated; mode, owner and group are unchanged, the new key is active, no temporary
# file is left, and (as root) the other user still reads the new key.
rotate_keeps() {
  local mode=$1 owner=$2 file before
  file=$WORK/keyrings/keys-$mode.json
  "$NRMCTL" keygen "$file" >/dev/null
  chmod "$mode" "$file"
  [ "$is_root" -eq 1 ] && chown "$owner" "$file"
  before=$(stat -c '%a %U:%G' "$file")
  run keyrotate "$file"
  check "keyrotate of a $before keyring succeeds" [ "$RC" -eq 0 -a "$(cat "$WORK/out")" = 2 ]
  check "keyrotate keeps $before" [ "$(stat -c '%a %U:%G' "$file")" = "$before" ]
  check "the rotated $before keyring has the new key active" \
    [ "$(jq -r '.active' "$file")" = 2 -a "$(jq -r '.keys | length' "$file")" = 2 ]
  check "keyrotate leaves no temporary file beside $before" \
    [ "$(find "$WORK/keyrings" -name "keys-$mode.json?*" | wc -l)" -eq 0 ]
  if [ "$is_root" -eq 1 ]; then
    check "$OTHER_USER still reads the rotated $before keyring" \
      holds '.keys["2"] | length > 0' <(runuser -u "$OTHER_USER" -- cat "$file")
  fi
}

rotate_keeps 644 "$OTHER_USER:$OTHER_GROUP" # world-readable, as make-secrets makes it
rotate_keeps 640 "root:$OTHER_GROUP"        # readable by the service's group only
rotate_keeps 600 "$OTHER_USER:$OTHER_GROUP" # the service's own private file
[ "$is_root" -eq 1 ] || skip "keyrotate keeps the owner" "not root, or no user $OTHER_USER"

# --- nrmctl cert new / cert key -----------------------------------------------------------------

certs=$WORK/certs
mkdir -p "$certs"
run cert new agency-test "$certs"
check "cert new exits 0" [ "$RC" -eq 0 ]
check "cert new writes the public file and the secret file" \
  [ -s "$certs/agency-test.cert" -a -s "$certs/agency-test.cert_secret" ]
check "the secret file is private" [ "$(stat -c %a "$certs/agency-test.cert_secret")" = 600 ]
cp "$WORK/out" "$WORK/entry.json"
check "cert new prints the agency's entry" \
  holds '.id == "agency-test" and (.public_keys | length) == 1' "$WORK/entry.json"
entry_key=$(jq -r '.public_keys[0]' "$WORK/entry.json")
check "the entry's key is cert key of the public file" \
  [ "$(key_of "$certs/agency-test.cert")" = "$entry_key" ]
check "and of the secret file" [ "$(key_of "$certs/agency-test.cert_secret")" = "$entry_key" ]
secret=$(secret_of "$certs/agency-test.cert_secret")
check "the secret file holds a secret key" [ "${#secret}" -eq 40 ]
check "cert new never prints the secret key" \
  bash -c '! grep -qF -- "$1" "$2" "$3"' _ "$secret" "$WORK/entry.json" "$WORK/err"
check "the public file holds no secret key" bash -c '! grep -qF -- "$1" "$2"' _ "$secret" \
  "$certs/agency-test.cert"

cp "$certs/agency-test.cert" "$WORK/public.before"
cp "$certs/agency-test.cert_secret" "$WORK/secret.before"
run cert new agency-test "$certs"
check "cert new refuses to overwrite (exit 2)" \
  bash -c '[ "$1" -eq 2 ] && grep -q refusing "$2"' _ "$RC" "$WORK/err"
check "the certificate is unchanged" cmp -s "$certs/agency-test.cert" "$WORK/public.before"
check "its secret is unchanged" cmp -s "$certs/agency-test.cert_secret" "$WORK/secret.before"
mv "$certs/agency-test.cert" "$WORK/public.moved"
run cert new agency-test "$certs"
check "cert new refuses when only the secret file exists" [ "$RC" -eq 2 ]
check "and keeps that secret" cmp -s "$certs/agency-test.cert_secret" "$WORK/secret.before"
mv "$WORK/public.moved" "$certs/agency-test.cert"
run cert new ../escape "$certs"
check "cert new refuses a name that is not a plain word" [ "$RC" -eq 2 ]
run cert key "$certs/missing.cert"
check "cert key of a missing file exits 2" [ "$RC" -eq 2 ]

if [ "$have_pyzmq" -eq 1 ]; then
  check "pyzmq's load_certificate reads the certificate nrmctl wrote" \
    "$PYTHON" - "$certs/agency-test.cert" "$entry_key" <<'PY'
import sys, zmq, zmq.auth
path, key = sys.argv[1], sys.argv[2].encode()
public, secret = zmq.auth.load_certificate(path)
assert public == key and secret is None, (public, secret)
public, secret = zmq.auth.load_certificate(path + "_secret")
assert public == key and len(secret) == 40
assert zmq.curve_public(secret) == public  # the two halves belong together
PY
else
  skip "pyzmq reads the certificate" "python3-zmq is not installed"
fi

# --- deploy/make-secrets.sh -------------------------------------------------------------------

# The source configuration: the demonstration one, with one agency that already has its key
# (the one issued above), which make-secrets must keep and issue no certificate for.
cp -r "$NRM_SOURCE_DIR/deploy/demo" "$WORK/src"
jq --arg key "$entry_key" '.agencies |= map(if .id == "iom-ma" then .public_keys = [$key] else . end)' \
  "$NRM_SOURCE_DIR/deploy/demo/config.json" >"$WORK/src/config.json"
secrets=$WORK/secrets
make_secrets() {
  RC=0
  NRMCTL=$NRMCTL NRM_SECRETS_DIR=$secrets bash "$NRM_SOURCE_DIR/deploy/make-secrets.sh" \
    "$WORK/src/config.json" >"$WORK/out" 2>"$WORK/err" || RC=$?
}
make_secrets
check "make-secrets succeeds" [ "$RC" -eq 0 ]
expected=(postgres_password nrm_keys.json config.json agencies/coordinator.cert
  agencies/coordinator.cert_secret)
for s in "${SERVICES[@]}"; do expected+=("${s}_db_password" "$s.cert" "$s.cert_secret"); done
missing=()
for f in "${expected[@]}"; do [ -s "$secrets/$f" ] || missing+=("$f"); done
check "make-secrets makes every file compose mounts and the operator's certificate" \
  [ ${#missing[@]} -eq 0 ]
[ ${#missing[@]} -eq 0 ] || echo "    missing: ${missing[*]}"
check "the secrets directory is mode 700" [ "$(stat -c %a "$secrets")" = 700 ]
check "the files the containers read (uid 10001, 999) are 644" \
  [ -z "$(find "$secrets" -maxdepth 1 -type f ! -perm 644)" ]
check "the agencies' certificates are 600 in a 700 directory" \
  [ "$(stat -c %a "$secrets/agencies")" = 700 -a -z "$(find "$secrets/agencies" -type f ! -perm 600)" ]
check "the keyring is a keyring" holds '.active == 1 and (.hash_key | length) > 0' \
  "$secrets/nrm_keys.json"

config=$secrets/config.json
for s in "${SERVICES[@]}"; do
  check "config.json lists $s's public key" \
    [ "$(jq -r --arg s "$s" '.services[$s].public_key' "$config")" = "$(key_of "$secrets/$s.cert")" ]
done
wrong=$(jq -r '.agencies[] | select(.id != "iom-ma") | "\(.id) \(.public_keys[0])"' "$config" |
  while read -r id key; do
    [ "$(key_of "$secrets/agencies/$id.cert")" = "$key" ] || echo "$id"
  done)
check "config.json lists every demonstration agency's key" [ -z "$wrong" ]
check "an agency that lists its keys keeps them" \
  holds --arg key "$entry_key" '.agencies[] | select(.id == "iom-ma") | .public_keys == [$key]' "$config"
check "and gets no certificate" [ ! -e "$secrets/agencies/iom-ma.cert" ]
check "config.json has each agency once" \
  holds '[.agencies[].id] | length == (unique | length) and length > 10' "$config"
check "config.json has its data files merged in" \
  holds '(has("include") | not) and (.providers | length) > 0' "$config"
leaked=$(for f in "$secrets"/*.cert_secret "$secrets"/agencies/*.cert_secret; do
  grep -qF -- "$(secret_of "$f")" "$config" && echo "$f"
done || true)
check "config.json holds no secret key" [ -z "$leaked" ]

fingerprint() { (cd "$secrets" && find . -type f | sort | xargs md5sum); }
fingerprint >"$WORK/secrets.before"
make_secrets
check "make-secrets again succeeds" [ "$RC" -eq 0 ]
check "and changes no file (passwords, keyring, certificates, configuration)" \
  cmp -s <(fingerprint) "$WORK/secrets.before"
ino=$(stat -c %i "$config")
jq '.agencies += [{"id": "ngo-test-new", "name": "A new agency (test)", "type": "NGO", "region": "MA-04"}]' \
  "$WORK/src/config.json" >"$WORK/src/config.new" && mv "$WORK/src/config.new" "$WORK/src/config.json"
make_secrets
check "a new agency gets a certificate and its key in config.json" \
  [ "$RC" -eq 0 -a "$(jq -r '.agencies[] | select(.id == "ngo-test-new") | .public_keys[0]' "$config")" = \
  "$(key_of "$secrets/agencies/ngo-test-new.cert")" ]
check "config.json is rewritten in place (a bind mount keeps its inode)" \
  [ "$(stat -c %i "$config")" = "$ino" ]
check "the other keys did not change" \
  cmp -s <(fingerprint | grep -v -e config.json -e ngo-test-new) <(grep -v config.json "$WORK/secrets.before")

run keyrotate "$secrets/nrm_keys.json"
check "make-secrets' keyring stays 644 after keyrotate" \
  [ "$RC" -eq 0 -a "$(stat -c %a "$secrets/nrm_keys.json")" = 644 ]

# --- intake from make-secrets' configuration, as in its container -------------------------------

sys_database "$DB"
api=tcp://127.0.0.1:$(free_port)
events=tcp://127.0.0.1:$(free_port)
export NRM_DATABASE_CONNINFO="host=$NRM_TEST_PGHOST port=$NRM_TEST_PGPORT dbname=$DB"
export NRM_CRYPTO_KEYS_FILE=$secrets/nrm_keys.json
export NRM_SERVICES_INTAKE_API=$api NRM_SERVICES_INTAKE_API_CONNECT=$api
export NRM_SERVICES_INTAKE_EVENTS=$events NRM_SERVICES_INTAKE_EVENTS_CONNECT=$events
export NRM_SERVICES_INTAKE_CERT_FILE=$secrets/intake.cert # as docker-compose.yml sets it
export NRM_HEARTBEAT_MS=500
"$NRM_BUILD_DIR/services/intake/nrm-intake" --config "$config" 2>>"$WORK/intake.log" &
PIDS[0]=$!
cp "$config" "$WORK/config.json" # sys_wait_ready pings with $WORK/config.json
export NRM_CERT=$secrets/intake.cert
sys_wait_ready 0 intake

run --config "$config" --cert "$secrets/intake.cert" --timeout 2000 ping intake
check "the compose health check (ping with the service's own certificate) passes" \
  bash -c '[ "$1" -eq 0 ] && jq -e ".service == \"intake\"" "$2" >/dev/null' _ "$RC" "$WORK/out"
run --config "$config" --cert "$secrets/agencies/coordinator.cert" --timeout 2000 ping intake
check "the operator pings with the coordinator's certificate" [ "$RC" -eq 0 ]
run cert new stranger "$certs"
run --config "$config" --cert "$certs/stranger.cert" --timeout 500 ping intake
check "a key that is not in config.json gets no answer (exit 3)" [ "$RC" -eq 3 ]

if [ "$have_pyzmq" -eq 1 ]; then
  protoc -I"$NRM_SOURCE_DIR/proto" --python_out="$WORK" "$NRM_SOURCE_DIR"/proto/nrm/v1/*.proto
  # The README's client: a DEALER and a SUB with CURVE, keys from certificate files.
  check "Python connects a DEALER and a SUB to intake with CURVE (README example)" \
    "$PYTHON" - "$WORK" "$secrets/agencies/coordinator.cert_secret" \
    "$(jq -r .services.intake.public_key "$config")" "$api" "$events" <<'PY'
import sys, uuid
import zmq, zmq.auth
sys.path.insert(0, sys.argv[1])
from nrm.v1 import api_pb2, events_pb2, enums_pb2
cert, server_key, api_endpoint, events_endpoint = sys.argv[2], sys.argv[3].encode(), sys.argv[4], sys.argv[5]
public, secret = zmq.auth.load_certificate(cert)
ctx = zmq.Context()

def curve(sock):
    sock.curve_secretkey = secret
    sock.curve_publickey = public
    sock.curve_serverkey = server_key
    return sock

api = curve(ctx.socket(zmq.DEALER))
api.connect(api_endpoint)
req = api_pb2.Request(request_id=str(uuid.uuid4()))  # no agency_id: the key says who
req.ping.SetInParent()
api.send(req.SerializeToString())
assert api.poll(5000), "no reply"
reply = api_pb2.Reply.FromString(api.recv_multipart()[-1])
assert reply.status == enums_pb2.STATUS_OK and reply.pong.service == "intake", reply

sub = curve(ctx.socket(zmq.SUB))
sub.setsockopt(zmq.SUBSCRIBE, b"stream.head")
sub.connect(events_endpoint)
assert sub.poll(10000), "no heartbeat"
topic, body = sub.recv_multipart()
event = events_pb2.Event.FromString(body)
assert topic == b"stream.head" and event.stream == "intake", (topic, event)
ctx.destroy(linger=0)
PY
else
  skip "Python connects with CURVE" "python3-zmq is not installed"
fi

if [ "$FAILED" -gt 0 ]; then
  echo "intake log (last lines):"
  tail -20 "$WORK/intake.log"
fi
sys_end
