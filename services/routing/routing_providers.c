/* The providers table: UpsertProvider and ListProviders (the coordinator), and the seeding of
 * the configuration's "providers" at start and after SIGHUP. A configuration entry is applied
 * when it is new or differs from what the configuration said when last seeded (the
 * configuration changed: it wins); otherwise changes made at run time stand. A provider the
 * configuration no longer lists is made inactive, unless it was changed at run time. Every
 * change moves the directory's version, so that every routing instance reloads it before it
 * routes again, and serves the waiting needs at once. */
#include "routing.h"
#include "nrm_alloc.h"
#include "nrm_authz.h"
#include "nrm_log.h"
#include "nrm_pgarray.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define S_OPEN_COUNT                                                                               \
    "(SELECT count(*) FROM referrals WHERE provider_id = $1 AND state IN ('pending', 'accepted'))"

static const char s_sql_upsert[] =
    "INSERT INTO providers (provider_id, spec, active, max_open, open_count, updated_ms)"
    " VALUES ($1, $2, $3, $4, " S_OPEN_COUNT ", $5) ON CONFLICT (provider_id) DO UPDATE SET"
    " spec = EXCLUDED.spec, active = EXCLUDED.active, max_open = EXCLUDED.max_open,"
    " updated_ms = EXCLUDED.updated_ms";
static const char s_sql_seed[] =
    "INSERT INTO providers (provider_id, spec, config_spec, active, max_open, open_count,"
    " updated_ms) VALUES ($1, $2, $2, $3, $4, " S_OPEN_COUNT ", $5)"
    " ON CONFLICT (provider_id) DO UPDATE SET spec = EXCLUDED.spec,"
    " config_spec = EXCLUDED.config_spec, active = EXCLUDED.active, max_open = EXCLUDED.max_open,"
    " updated_ms = EXCLUDED.updated_ms"
    " WHERE providers.config_spec IS DISTINCT FROM EXCLUDED.config_spec RETURNING provider_id";
static const char s_sql_unlisted[] =
    "UPDATE providers SET active = CASE WHEN spec = config_spec THEN false ELSE active END,"
    " config_spec = NULL, updated_ms = $2"
    " WHERE config_spec IS NOT NULL AND NOT (provider_id = ANY ($1::text[]))"
    " RETURNING provider_id";
static const char s_sql_bump[] =
    "UPDATE directory_version SET version = txid_current() RETURNING version";
static const char s_sql_list[] =
    "SELECT spec, active, open_count, config_spec IS NOT NULL AND spec = config_spec, updated_ms"
    " FROM providers WHERE NOT $1::boolean OR active ORDER BY provider_id";

void routing_providers_prepare(nrm_db_t *db)
{
    nrm_db_statement(db, "routing_provider_upsert", s_sql_upsert);
    nrm_db_statement(db, "routing_provider_seed", s_sql_seed);
    nrm_db_statement(db, "routing_provider_unlisted", s_sql_unlisted);
    nrm_db_statement(db, "routing_directory_bump", s_sql_bump);
    nrm_db_statement(db, "routing_provider_list", s_sql_list);
}

/* Moves the directory's version (*version may be NULL), reloads it and serves the waiting
 * needs the change may let through. */
static nrm_status_t s_changed(routing_t *self, nrm_tx_t *tx, int64_t *version)
{
    PGresult *res = NULL;
    nrm_status_t st = nrm_db_exec(tx->db, "routing_directory_bump", NULL, &res, tx->err);
    if (st != NRM_OK)
        return st;
    if (version)
        *version = PQntuples(res) == 1 ? nrm_db_int(res, 0, 0) : 0;
    PQclear(res);
    st = routing_directory_refresh(self, tx);
    return st == NRM_OK ? routing_serve_waiting(self, tx) : st;
}

/* Runs stmt (upsert or seed) for u, its active flag written as given. Returns the statement's
 * result through *res when not NULL. */
static nrm_status_t s_write(nrm_tx_t *tx, const char *stmt, const Nrm__V1__UpsertProvider *u,
                            PGresult **res)
{
    Nrm__V1__UpsertProvider copy = *u;
    copy.base.unknown_fields = NULL;
    copy.base.n_unknown_fields = 0;
    size_t len = protobuf_c_message_get_packed_size(&copy.base);
    uint8_t *bytes = nrm_xmalloc(len ? len : 1);
    protobuf_c_message_pack(&copy.base, bytes);
    nrm_params_t p = {0};
    nrm_params_text(&p, u->id);
    nrm_params_bytes(&p, bytes, len);
    nrm_params_bool(&p, u->active);
    nrm_params_int(&p, u->max_open_referrals);
    nrm_params_int(&p, tx->now_ms);
    nrm_status_t st = nrm_db_exec(tx->db, stmt, &p, res, tx->err);
    free(bytes);
    return st;
}

nrm_status_t routing_upsert_provider(void *ctx, nrm_call_t *call)
{
    routing_t *self = ctx;
    const Nrm__V1__UpsertProvider *u = call->request->upsert_provider;
    nrm_status_t st = nrm_authz_check(call, 0);
    if (st != NRM_OK)
        return st;
    if (routing_provider_check(u, call->config, "upsert_provider", NRM_INVALID_ARGUMENT,
                               call->tx.err) != NRM_OK)
        return NRM_INVALID_ARGUMENT;
    int64_t version = 0;
    st = routing_lock(self, &call->tx);
    if (st == NRM_OK)
        st = s_write(&call->tx, "routing_provider_upsert", u, NULL);
    if (st == NRM_OK)
        st = s_changed(self, &call->tx, &version);
    if (st != NRM_OK)
        return st;
    Nrm__V1__ProviderRef *ref = nrm_call_alloc(call, sizeof *ref);
    nrm__v1__provider_ref__init(ref);
    ref->id = nrm_call_strdup(call, u->id);
    ref->directory_version = version;
    call->reply->result_case = NRM__V1__REPLY__RESULT_PROVIDER_REF;
    call->reply->provider_ref = ref;
    call->subject_id = ref->id;
    return NRM_OK;
}

nrm_status_t routing_seed_providers(void *ctx, nrm_tx_t *tx)
{
    routing_t *self = ctx;
    json_t *list = nrm_config_get(self->config, "providers");
    self->seeding = true; /* routing_lock must not seed again */
    nrm_status_t st = routing_lock(self, tx);
    self->seeding = false;
    size_t i, changed = 0;
    json_t *entry;
    nrm_pgarray_t ids;
    nrm_pgarray_init(&ids);
    json_array_foreach(list, i, entry)
    {
        if (st != NRM_OK)
            break;
        Nrm__V1__UpsertProvider *u = routing_provider_from_config(entry, i, tx->err);
        if (!u) { /* checked when the configuration was loaded: cannot happen */
            st = NRM_FAILED_PRECONDITION;
            break;
        }
        nrm_pgarray_text(&ids, u->id);
        PGresult *res = NULL;
        st = s_write(tx, "routing_provider_seed", u, &res);
        changed += st == NRM_OK && PQntuples(res) == 1;
        PQclear(res);
        protobuf_c_message_free_unpacked(&u->base, NULL);
    }
    nrm_params_t p = {0};
    nrm_params_text(&p, nrm_pgarray_close(&ids));
    nrm_params_int(&p, tx->now_ms);
    PGresult *res = NULL;
    if (st == NRM_OK)
        st = nrm_db_exec(tx->db, "routing_provider_unlisted", &p, &res, tx->err);
    size_t unlisted = st == NRM_OK ? (size_t)PQntuples(res) : 0;
    PQclear(res);
    nrm_pgarray_free(&ids);
    if (st == NRM_OK)
        nrm_log_info("providers seeded from the configuration", "{s:I, s:I, s:I}", "configured",
                     (json_int_t)json_array_size(list), "changed", (json_int_t)changed, "unlisted",
                     (json_int_t)unlisted);
    if (st == NRM_OK && changed + unlisted > 0)
        st = s_changed(self, tx, NULL);
    return st;
}

nrm_status_t routing_list_providers(void *ctx, nrm_call_t *call)
{
    (void)ctx;
    const Nrm__V1__ListProviders *l = call->request->list_providers;
    nrm_status_t st = nrm_authz_check(call, 0);
    if (st != NRM_OK)
        return st;
    nrm_params_t p = {0};
    nrm_params_bool(&p, l->active_only);
    PGresult *res = NULL, *ver = NULL;
    st = nrm_db_exec(call->tx.db, "routing_provider_list", &p, &res, call->tx.err);
    if (st == NRM_OK)
        st = nrm_db_exec(call->tx.db, "routing_directory_version", NULL, &ver, call->tx.err);
    if (st != NRM_OK) {
        PQclear(res);
        return st;
    }
    int rows = PQntuples(res);
    Nrm__V1__ProviderList *out = nrm_call_alloc(call, sizeof *out);
    nrm__v1__provider_list__init(out);
    out->providers = nrm_call_alloc(call, (size_t)(rows ? rows : 1) * sizeof *out->providers);
    for (int row = 0; row < rows; row++) {
        size_t len = 0;
        const uint8_t *data = nrm_db_bytes(res, row, 0, &len);
        Nrm__V1__UpsertProvider *u = nrm__v1__upsert_provider__unpack(NULL, len, data);
        if (!u)
            continue;
        nrm_call_keep(call, u);
        u->active = nrm_db_int(res, row, 1) != 0;
        Nrm__V1__ProviderRow *r = nrm_call_alloc(call, sizeof *r);
        nrm__v1__provider_row__init(r);
        r->provider = u;
        r->open_referrals = (int32_t)nrm_db_int(res, row, 2);
        r->from_configuration = nrm_db_int(res, row, 3) != 0;
        r->updated_ms = nrm_db_int(res, row, 4);
        out->providers[out->n_providers++] = r;
    }
    out->directory_version = PQntuples(ver) == 1 ? nrm_db_int(ver, 0, 0) : 0;
    PQclear(res);
    PQclear(ver);
    call->reply->result_case = NRM__V1__REPLY__RESULT_PROVIDER_LIST;
    call->reply->provider_list = out;
    call->subject_id = "providers";
    return NRM_OK;
}
