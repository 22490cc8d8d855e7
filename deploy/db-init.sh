#!/usr/bin/env bash
# Prepares a database for the five services. Idempotent: a second run changes nothing.
#
#   PGHOST=... PGPORT=... PGUSER=<superuser> deploy/db-init.sh DBNAME
#
# Creates, when missing: the database DBNAME; the LOGIN roles nrm_intake, nrm_routing,
# nrm_shelter, nrm_notify, nrm_reintegration and nrm_stats; the NOLOGIN role nrm_audit_owner; the schemas
# intake, routing, shelter, notify, reintegration and stats, each owned by nrm_audit_owner, its service's role granted USAGE and CREATE
# on it (the role owns the tables its migrations create there). In DBNAME it revokes everything
# on schema public and CONNECT from PUBLIC, grants CONNECT to the five roles, and revokes any
# privilege PUBLIC holds on the five schemas and a role holds on another service's schema, so
# each role reaches only its own schema.
#
# The audit: each schema's audit_log, its sequence, its trigger function and its append-only
# trigger belong to nrm_audit_owner. The service's role may only INSERT the columns a request
# fills (never id or at, which come from their defaults) and draw ids from the sequence: it
# cannot read, update, delete or truncate rows, alter, disable or drop the table or its trigger,
# nor replace the function. Owning the schema is part of this: a schema's owner may drop any
# table in it. The NOLOGIN role nrm_audit_reader may read every audit_log (USAGE on the five
# schemas, SELECT on audit_log, nothing else): grant it to the people who read the audit
# (OPERATIONS.md). Any other privilege on audit_log is revoked on every run.
#
# Upgrade: run it again. A database prepared by an earlier version (schemas and audit_log owned
# by the service's role) is moved to this arrangement: schema and audit ownership change, the
# role's privileges on audit_log are reduced to the INSERT above, a disabled append-only trigger
# is enabled again. Existing rows are kept.
#
# A role's password comes from NRM_INTAKE_DB_PASSWORD, NRM_ROUTING_DB_PASSWORD,
# NRM_SHELTER_DB_PASSWORD, NRM_NOTIFY_DB_PASSWORD or
# NRM_REINTEGRATION_DB_PASSWORD when set (else none: local trust setups).
# It is set only on a role that has no password yet; change one later with ALTER ROLE. The
# password never appears on a command line (psql reads it with \getenv) and statement logging
# is off for the session that sets it.
set -euo pipefail

SERVICES=(intake routing shelter notify reintegration stats)
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
-- One run at a time: two runs at once on a cluster without the roles (tests preparing their
-- databases side by side) would both create a missing role, and the second would fail on the
-- catalog's unique index. Every run takes this lock in the maintenance database; it is the
-- session's, released when psql exits.
SELECT pg_advisory_lock(hashtext('nrm.db-init')) AS locked \gset
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
SELECT 'CREATE ROLE nrm_audit_owner NOLOGIN'
 WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'nrm_audit_owner') \gexec
SELECT 'ALTER ROLE nrm_audit_owner NOLOGIN'
  FROM pg_roles WHERE rolname = 'nrm_audit_owner' AND rolcanlogin \gexec
SELECT 'CREATE ROLE nrm_audit_reader NOLOGIN'
 WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'nrm_audit_reader') \gexec
SELECT 'ALTER ROLE nrm_audit_reader NOLOGIN'
  FROM pg_roles WHERE rolname = 'nrm_audit_reader' AND rolcanlogin \gexec
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
    services text[] := ARRAY['intake', 'routing', 'shelter', 'notify', 'reintegration', 'stats'];
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
            EXECUTE format('CREATE SCHEMA %I AUTHORIZATION nrm_audit_owner', svc);
        ELSIF (SELECT pg_get_userbyid(nspowner) FROM pg_namespace WHERE nspname = svc)
                  <> 'nrm_audit_owner' THEN
            EXECUTE format('ALTER SCHEMA %I OWNER TO nrm_audit_owner', svc);
        END IF;
        IF NOT has_schema_privilege('nrm_' || svc, svc, 'USAGE')
           OR NOT has_schema_privilege('nrm_' || svc, svc, 'CREATE') THEN
            EXECUTE format('GRANT USAGE, CREATE ON SCHEMA %I TO %I', svc, 'nrm_' || svc);
        END IF;
        IF EXISTS (SELECT FROM pg_namespace, aclexplode(nspacl) a
                    WHERE nspname = svc AND a.grantee = 0) THEN
            EXECUTE format('REVOKE ALL ON SCHEMA %I FROM PUBLIC', svc);
        END IF;
    END LOOP;
    -- Only now do all five schemas exist.
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

# Database level: each schema's audit_log, owned by nrm_audit_owner with its sequence, trigger
# function and append-only trigger; the service's role may insert the columns a request fills.
# Earlier versions let the service's role own them: ownership moves, privileges are reduced, a
# disabled trigger is enabled again. Each change is made only when needed.
audit_sql() {
  cat <<'SQL'
DO $$
DECLARE
    services text[] := ARRAY['intake', 'routing', 'shelter', 'notify', 'reintegration', 'stats'];
    insert_columns text[] := ARRAY['request_id', 'agency_id', 'kind', 'status', 'error_field',
                                   'subject_id'];
    owner oid := 'nrm_audit_owner'::regrole;
    reader oid := 'nrm_audit_reader'::regrole;
    svc text;
    role text;
    tbl regclass;
    fn regprocedure;
    seq text;
    col text;
    grantee oid;
BEGIN
    FOREACH svc IN ARRAY services LOOP
        role := 'nrm_' || svc;
        IF to_regclass(format('%I.audit_log', svc)) IS NULL THEN
            -- Append-only audit of every request: who, what, when, outcome. Never identifying
            -- data.
            EXECUTE format($sql$
                CREATE TABLE %I.audit_log (
                    id          bigserial   PRIMARY KEY,
                    at          timestamptz NOT NULL DEFAULT now(),
                    request_id  text        NOT NULL,
                    agency_id   text        NOT NULL,
                    kind        text        NOT NULL,
                    status      text        NOT NULL,
                    error_field text        NOT NULL DEFAULT '',
                    subject_id  text        NOT NULL DEFAULT ''
                )$sql$, svc);
        END IF;
        tbl := to_regclass(format('%I.audit_log', svc));
        IF (SELECT relowner FROM pg_class WHERE oid = tbl) <> owner THEN
            -- the owned sequence and the indexes follow the table
            EXECUTE format('ALTER TABLE %s OWNER TO nrm_audit_owner', tbl);
        END IF;

        IF to_regprocedure(format('%I.audit_log_refuse_change()', svc)) IS NULL THEN
            EXECUTE format($sql$
                CREATE FUNCTION %I.audit_log_refuse_change() RETURNS trigger LANGUAGE plpgsql
                AS $body$
                BEGIN
                    RAISE EXCEPTION 'audit_log is append-only';
                END;
                $body$
            $sql$, svc);
        END IF;
        fn := to_regprocedure(format('%I.audit_log_refuse_change()', svc));
        IF (SELECT proowner FROM pg_proc WHERE oid = fn) <> owner THEN
            EXECUTE format('ALTER FUNCTION %s OWNER TO nrm_audit_owner', fn);
        END IF;
        IF NOT EXISTS (SELECT FROM pg_trigger
                        WHERE tgrelid = tbl AND tgname = 'audit_log_append_only') THEN
            EXECUTE format('CREATE TRIGGER audit_log_append_only'
                           ' BEFORE UPDATE OR DELETE OR TRUNCATE ON %s'
                           ' FOR EACH STATEMENT EXECUTE FUNCTION %s', tbl, fn);
        ELSIF (SELECT tgenabled FROM pg_trigger
                WHERE tgrelid = tbl AND tgname = 'audit_log_append_only') <> 'O' THEN
            EXECUTE format('ALTER TABLE %s ENABLE TRIGGER audit_log_append_only', tbl);
        END IF;

        -- No other role (nor PUBLIC) holds anything on it, even one the service's role granted.
        FOR grantee IN
            SELECT DISTINCT a.grantee FROM pg_class, aclexplode(relacl) a
             WHERE oid = tbl AND a.grantee NOT IN (owner, role::regrole, reader)
            UNION
            SELECT DISTINCT a.grantee FROM pg_attribute, aclexplode(attacl) a
             WHERE attrelid = tbl AND a.grantee NOT IN (owner, role::regrole, reader)
        LOOP
            EXECUTE format('REVOKE ALL ON TABLE %s FROM %s', tbl,
                           CASE WHEN grantee = 0 THEN 'PUBLIC' ELSE grantee::regrole::text END);
        END LOOP;
        -- The service's role: INSERT of the columns a request fills, nothing else.
        IF has_table_privilege(role, tbl,
                               'SELECT, INSERT, UPDATE, DELETE, TRUNCATE, REFERENCES, TRIGGER')
           OR has_any_column_privilege(role, tbl, 'SELECT, UPDATE, REFERENCES')
           OR has_column_privilege(role, tbl, 'id', 'INSERT')
           OR has_column_privilege(role, tbl, 'at', 'INSERT') THEN
            EXECUTE format('REVOKE ALL ON TABLE %s FROM %I', tbl, role);
        END IF;
        FOREACH col IN ARRAY insert_columns LOOP
            IF NOT has_column_privilege(role, tbl, col, 'INSERT') THEN
                EXECUTE format('GRANT INSERT (%s) ON TABLE %s TO %I',
                               array_to_string(insert_columns, ', '), tbl, role);
                EXIT;
            END IF;
        END LOOP;
        -- nrm_audit_reader, for the people who read the audit: SELECT, nothing else.
        IF NOT has_schema_privilege(reader, svc, 'USAGE') THEN
            EXECUTE format('GRANT USAGE ON SCHEMA %I TO nrm_audit_reader', svc);
        END IF;
        IF has_table_privilege(reader, tbl, 'INSERT, UPDATE, DELETE, TRUNCATE, REFERENCES, TRIGGER')
           OR has_any_column_privilege(reader, tbl, 'INSERT, UPDATE, REFERENCES') THEN
            EXECUTE format('REVOKE ALL ON TABLE %s FROM nrm_audit_reader', tbl);
        END IF;
        IF NOT has_table_privilege(reader, tbl, 'SELECT') THEN
            EXECUTE format('GRANT SELECT ON TABLE %s TO nrm_audit_reader', tbl);
        END IF;
        seq := pg_get_serial_sequence(tbl::text, 'id');
        IF has_sequence_privilege(role, seq, 'SELECT, UPDATE') THEN
            EXECUTE format('REVOKE ALL ON SEQUENCE %s FROM %I', seq, role);
        END IF;
        IF NOT has_sequence_privilege(role, seq, 'USAGE') THEN
            EXECUTE format('GRANT USAGE ON SEQUENCE %s TO %I', seq, role);
        END IF;
    END LOOP;
END
$$;
SQL
}

cluster_sql | "${PSQL[@]}" -d "$MAINTENANCE_DB" -v db="$DB" ||
  die "could not prepare the roles or the database $DB"
database_sql | "${PSQL[@]}" -d "$DB" ||
  die "could not prepare the schemas and privileges of $DB"
audit_sql | "${PSQL[@]}" -d "$DB" ||
  die "could not prepare the audit tables of $DB"
echo "db-init: database $DB ready for ${SERVICES[*]}"
