#!/usr/bin/env bash
# Prepares a database for the four services. Idempotent: a second run changes nothing.
#
#   PGHOST=... PGPORT=... PGUSER=<superuser> deploy/db-init.sh DBNAME
#
# Creates, when missing: the database DBNAME; the LOGIN roles nrm_intake, nrm_routing,
# nrm_shelter and nrm_notify; the schemas intake, routing, shelter and notify, each owned by
# its role. In DBNAME it revokes everything on schema public and CONNECT from PUBLIC, grants
# CONNECT to the four roles, and revokes any privilege PUBLIC holds on the four schemas and a
# role holds on another service's schema, so each role reaches only its own schema.
#
# A role's password comes from NRM_INTAKE_DB_PASSWORD, NRM_ROUTING_DB_PASSWORD,
# NRM_SHELTER_DB_PASSWORD or NRM_NOTIFY_DB_PASSWORD when set (else none: local trust setups).
# It is set only on a role that has no password yet; change one later with ALTER ROLE. The
# password never appears on a command line (psql reads it with \getenv) and statement logging
# is off for the session that sets it.
set -euo pipefail

SERVICES=(intake routing shelter notify)
MAINTENANCE_DB=postgres # where roles and the database are created
PSQL=(psql -v ON_ERROR_STOP=1 -X -q)

die() {
  echo "db-init: $*" >&2
  exit 1
}

[ $# -eq 1 ] || {
  echo "usage: PGHOST=... PGPORT=... PGUSER=<superuser> $0 DBNAME" >&2
  exit 2
}
DB=$1
[[ "$DB" =~ ^[A-Za-z_][A-Za-z0-9_]*$ ]] ||
  die "DBNAME must be letters, digits and underscores, not starting with a digit: $DB"
command -v psql >/dev/null || die "psql not found"

# Cluster level: roles, passwords, the database.
cluster_sql() {
  cat <<'SQL'
DO $$
BEGIN
    IF NOT (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) THEN
        RAISE EXCEPTION 'PGUSER must be a superuser';
    END IF;
END
$$;
SET log_statement = 'none';
SET log_min_duration_statement = -1;
SQL
  for svc in "${SERVICES[@]}"; do
    cat <<SQL
\\set role nrm_$svc
\\unset password
\\getenv password NRM_${svc^^}_DB_PASSWORD
SQL
    cat <<'SQL'
SELECT format('CREATE ROLE %I LOGIN', :'role')
 WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = :'role') \gexec
SELECT format('ALTER ROLE %I LOGIN', :'role')
  FROM pg_roles WHERE rolname = :'role' AND NOT rolcanlogin \gexec
\if :{?password}
SELECT format('ALTER ROLE %I PASSWORD %L', :'role', :'password')
  FROM pg_authid WHERE rolname = :'role' AND rolpassword IS NULL AND :'password' <> '' \gexec
\endif
SQL
  done
  cat <<'SQL'
SELECT format('CREATE DATABASE %I ENCODING ''UTF8'' TEMPLATE template0', :'db')
 WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = :'db') \gexec
SQL
}

# Database level: public schema, CONNECT, one schema per service owned by its role. Each change
# is made only when needed, so that a second run leaves the catalogs untouched.
database_sql() {
  cat <<'SQL'
DO $$
DECLARE
    services text[] := ARRAY['intake', 'routing', 'shelter', 'notify'];
    db text := current_database();
    svc text;
    other text;
BEGIN
    IF EXISTS (SELECT FROM pg_namespace, aclexplode(coalesce(nspacl, acldefault('n', nspowner))) a
                WHERE nspname = 'public' AND a.grantee = 0) THEN
        REVOKE ALL ON SCHEMA public FROM PUBLIC;
    END IF;
    IF EXISTS (SELECT FROM pg_database, aclexplode(coalesce(datacl, acldefault('d', datdba))) a
                WHERE datname = db AND a.grantee = 0 AND a.privilege_type = 'CONNECT') THEN
        EXECUTE format('REVOKE CONNECT ON DATABASE %I FROM PUBLIC', db);
    END IF;
    FOREACH svc IN ARRAY services LOOP
        IF NOT has_database_privilege('nrm_' || svc, db, 'CONNECT') THEN
            EXECUTE format('GRANT CONNECT ON DATABASE %I TO %I', db, 'nrm_' || svc);
        END IF;
        IF NOT EXISTS (SELECT FROM pg_namespace WHERE nspname = svc) THEN
            EXECUTE format('CREATE SCHEMA %I AUTHORIZATION %I', svc, 'nrm_' || svc);
        ELSIF (SELECT pg_get_userbyid(nspowner) FROM pg_namespace WHERE nspname = svc)
                  <> 'nrm_' || svc THEN
            EXECUTE format('ALTER SCHEMA %I OWNER TO %I', svc, 'nrm_' || svc);
        END IF;
        IF EXISTS (SELECT FROM pg_namespace, aclexplode(nspacl) a
                    WHERE nspname = svc AND a.grantee = 0) THEN
            EXECUTE format('REVOKE ALL ON SCHEMA %I FROM PUBLIC', svc);
        END IF;
    END LOOP;
    -- Only now do all four schemas exist.
    FOREACH svc IN ARRAY services LOOP
        FOREACH other IN ARRAY services LOOP
            IF other <> svc AND has_schema_privilege('nrm_' || svc, other, 'USAGE, CREATE') THEN
                EXECUTE format('REVOKE ALL ON SCHEMA %I FROM %I', other, 'nrm_' || svc);
            END IF;
        END LOOP;
    END LOOP;
END
$$;
SQL
}

cluster_sql | "${PSQL[@]}" -d "$MAINTENANCE_DB" -v db="$DB" ||
  die "could not prepare the roles or the database $DB"
database_sql | "${PSQL[@]}" -d "$DB" ||
  die "could not prepare the schemas and privileges of $DB"
echo "db-init: database $DB ready for ${SERVICES[*]}"
