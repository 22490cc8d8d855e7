#include "nrm_migrate.h"
#include "nrm_log.h"

#include <string.h>

static const char s_create_table[] =
    "CREATE TABLE IF NOT EXISTS schema_migrations ("
    " name text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())";

/* Takes the schema's migration lock for the current transaction. */
static nrm_status_t s_lock(nrm_db_t *db, nrm_error_t *err)
{
    nrm_db_statement(db, "migrate_lock",
                     "SELECT pg_advisory_xact_lock(hashtext('nrm.migrate.' || $1::text))");
    nrm_params_t p = {0};
    nrm_params_text(&p, nrm_db_schema(db));
    return nrm_db_exec(db, "migrate_lock", &p, NULL, err);
}

/* Applies one migration in its own transaction unless already recorded. */
static nrm_status_t s_apply_one(nrm_db_t *db, const nrm_migration_t *m, nrm_error_t *err)
{
    nrm_status_t st = nrm_db_begin(db, err);
    if (st == NRM_OK)
        st = s_lock(db, err);
    if (st == NRM_OK)
        st = nrm_db_sql(db, s_create_table, err);
    PGresult *res = NULL;
    nrm_params_t p = {0};
    nrm_params_text(&p, m->name);
    if (st == NRM_OK)
        st = nrm_db_exec(db, "migrate_seen", &p, &res, err);
    bool seen = res && PQntuples(res) > 0;
    PQclear(res);
    if (st == NRM_OK && !seen) {
        st = nrm_db_sql(db, m->sql, err);
        if (st == NRM_OK)
            st = nrm_db_exec(db, "migrate_record", &p, NULL, err);
    }
    if (st == NRM_OK)
        st = nrm_db_commit(db, err);
    if (st != NRM_OK) {
        nrm_db_rollback(db);
        nrm_fail(err, st, NULL, "migration %s failed", m->name);
        return st;
    }
    if (!seen)
        nrm_log_info("migration applied", "{s:s, s:s}", "schema", nrm_db_schema(db), "name",
                     m->name);
    return NRM_OK;
}

nrm_status_t nrm_migrate(nrm_db_t *db, const nrm_migration_t *list, size_t count, nrm_error_t *err)
{
    nrm_db_statement(db, "migrate_seen", "SELECT 1 FROM schema_migrations WHERE name = $1");
    nrm_db_statement(db, "migrate_record", "INSERT INTO schema_migrations (name) VALUES ($1)");
    for (size_t i = 0; i < count; i++) {
        nrm_status_t st = s_apply_one(db, &list[i], err);
        if (st != NRM_OK)
            return st;
    }
    return NRM_OK;
}
