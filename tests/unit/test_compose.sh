#!/usr/bin/env bash
# docker-compose.yml is valid (`docker-compose config`) and says what operators rely on: the
# six services and the gateway from one image, each service with a health check through nrmctl, restart policy, the
# database healthy first, configuration mounted read-only, the contract's ports, passwords and
# keys as secrets only, each service's CURVE certificate as two compose secrets
# (/run/secrets/<service>.cert and .cert_secret) named by NRM_SERVICES_<NAME>_CERT_FILE and
# used by its health check (nrmctl --cert); the Dockerfile is multi-stage, runs as a non-root user and bakes in no
# secret. The optional profile "replica" adds a streaming standby (postgres-replica) that only runs
# with --profile replica; the services' connection string names both servers with
# target_session_attrs=read-write, and the primary's synchronous_standby_names comes from
# NRM_SYNC_STANDBYS (empty by default).
set -euo pipefail
root=${NRM_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}
cd "$root"
out=$(mktemp)
trap 'rm -f "$out"' EXIT
passed=0
failed=0
check() {
  if "$@"; then passed=$((passed + 1)); else failed=$((failed + 1)); echo "not ok: $*"; fi
}
check docker-compose -f docker-compose.yml config -q
docker-compose -f docker-compose.yml config >"$out"
check /usr/bin/python3 - "$out" <<'PY'
import sys, yaml
c = yaml.safe_load(open(sys.argv[1]))
s = c["services"]
ports = {"intake": (7101, 7102), "routing": (7201, 7202), "shelter": (7301, 7302), "notify": (7401, 7402),
         "reintegration": (7501, 7502), "stats": (7601, 7602)}
assert set(s) == {"postgres", "postgres-replica", "gateway", *ports}, sorted(s)
# the replica: a profile of its own, cloned from postgres, its own volume, the replication secret
rep = s["postgres-replica"]
assert rep["profiles"] == ["replica"], rep.get("profiles")
assert rep["image"] == s["postgres"]["image"], rep["image"]
assert rep["depends_on"]["postgres"]["condition"] == "service_healthy"
assert any("pgreplica:" in str(v) or (isinstance(v, dict) and v.get("source") == "pgreplica")
           for v in rep["volumes"]), rep["volumes"]
assert [x if isinstance(x, str) else x["source"] for x in rep["secrets"]] == ["replication_password"]
assert "synchronous_standby_names=" in " ".join(s["postgres"]["command"]), s["postgres"]["command"]
for name in ports:
    conninfo = s[name]["environment"]["NRM_DATABASE_CONNINFO"]
    assert "host=postgres,postgres-replica" in conninfo and "target_session_attrs=read-write" in conninfo, conninfo
pg = s["postgres"]
assert pg["image"].startswith("postgres:15"), pg["image"]
assert any("/var/lib/postgresql/data" in str(v) for v in pg["volumes"]), "postgres data volume"
assert "pg_isready" in " ".join(pg["healthcheck"]["test"])
images = set()
for name, (api, events) in ports.items():
    svc = s[name]
    images.add(svc["image"])
    assert svc["command"][0] == "nrm-" + name, svc["command"]
    assert svc["restart"] == "unless-stopped"
    assert svc["depends_on"]["postgres"]["condition"] == "service_healthy"
    test = svc["healthcheck"]["test"]
    assert "nrmctl" in test and "ping" in test and name in test, test
    cert = f"/run/secrets/{name}.cert"
    # CURVE: the health check pings with the service's own certificate
    assert "--cert" in test and test[test.index("--cert") + 1] == cert, test
    published = {int(p["target"]) if isinstance(p, dict) else int(str(p).split(":")[-1]) for p in svc["ports"]}
    assert published == {api, events}, published
    env = svc["environment"]
    assert env[f"NRM_SERVICES_{name.upper()}_DB_PASSWORD_FILE"].startswith("/run/secrets/")
    for key, value in env.items():
        assert not (key.endswith("PASSWORD") or key.endswith("SECRET")), key
    secrets = [x if isinstance(x, str) else x["source"] for x in svc["secrets"]]
    assert f"{name}_db_password" in secrets, secrets
    assert env[f"NRM_SERVICES_{name.upper()}_CERT_FILE"] == cert, env
    # both halves of the certificate, where zcert_load looks for them (FILE and FILE_secret)
    targets = {x["source"]: x.get("target") for x in svc["secrets"] if isinstance(x, dict)}
    assert targets.get(f"{name}_cert") in (f"{name}.cert", cert), targets
    assert targets.get(f"{name}_cert_secret") in (f"{name}.cert_secret", cert + "_secret"), targets
    assert c["secrets"][f"{name}_cert"]["file"].endswith(f"deploy/secrets/{name}.cert")
    assert c["secrets"][f"{name}_cert_secret"]["file"].endswith(f"deploy/secrets/{name}.cert_secret")
    # no other service's secret half is mounted here
    others = [x for x in secrets if x.endswith("_cert_secret") and x != f"{name}_cert_secret"]
    assert not others, others
    # the configuration with the public keys that make-secrets writes
    assert any(str(v).endswith("deploy/secrets/config.json:/etc/nrm/config.json:ro") for v in svc["volumes"]), svc["volumes"]
    assert env["NRM_CONFIG"] == "/etc/nrm/config.json"
# the gateway: same image, HTTPS on 7700 (plain HTTP is refused off loopback), its CURVE
# certificate and TLS files as secrets, a health check on /healthz, no database password
gw = s["gateway"]
images.add(gw["image"])
assert gw["command"][0] == "nrm-gateway", gw["command"]
assert gw["restart"] == "unless-stopped"
published = {int(p["target"]) if isinstance(p, dict) else int(str(p).split(":")[-1]) for p in gw["ports"]}
assert published == {7700}, published
assert "/healthz" in " ".join(gw["healthcheck"]["test"]), gw["healthcheck"]
genv = gw["environment"]
assert genv["NRM_SERVICES_GATEWAY_CERT_FILE"] == "/run/secrets/gateway.cert", genv
assert genv["NRM_SERVICES_GATEWAY_TLS_CERT_FILE"].startswith("/run/secrets/"), genv
assert genv["NRM_SERVICES_GATEWAY_TLS_KEY_FILE"].startswith("/run/secrets/"), genv
gsecrets = {x["source"] for x in gw["secrets"] if isinstance(x, dict)}
assert gsecrets == {"gateway_cert", "gateway_cert_secret", "gateway_tls_crt", "gateway_tls_key"}, gsecrets
assert len(images) == 1, images
for name in ("intake", "notify"):  # identities and webhook secrets are sealed with the keyring
    assert "nrm_keys" in [x if isinstance(x, str) else x["source"] for x in s[name]["secrets"]]
for name, secret in c["secrets"].items():
    assert "file" in secret and "deploy/secrets/" in secret["file"], name
PY
# the profile: only the replica is added by --profile replica, and NRM_SYNC_STANDBYS reaches the
# primary's synchronous_standby_names
check docker-compose -f docker-compose.yml --profile replica config -q
check test "$(NRM_SYNC_STANDBYS=replica docker-compose -f docker-compose.yml --profile replica config |
  grep -c 'synchronous_standby_names=replica')" -eq 1
dockerfile=deploy/Dockerfile
check test "$(grep -c '^FROM debian:bookworm-slim' "$dockerfile")" -eq 2
check grep -q '^USER nrm' "$dockerfile"
# the image's build is a hardened release build (CMakeLists.txt, NRM_HARDEN; test_hardening)
check grep -qE 'CMAKE_BUILD_TYPE=(Release|RelWithDebInfo)' "$dockerfile"
check test -z "$(grep -E 'NRM_HARDEN=OFF' "$dockerfile" || true)"
check test -z "$(grep -iE 'COPY .*secrets|COPY .*keys|PASSWORD=' "$dockerfile" || true)"
check grep -q '^deploy/secrets/' .dockerignore
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
