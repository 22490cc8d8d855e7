#include "nrm_directory.h"
#include "nrm_alloc.h"
#include "nrm_log.h"
#include "nrm_time.h"

#include <string.h>

#define S_CHECK_EVERY_MS 1000 /* the longest a write by another instance stays unseen */
#define S_TYPE_PREFIX "AGENCY_TYPE_"
#define S_KEYS_MAX (NRM_DIRECTORY_MAX_KEYS * 41 + 1)

/* The registrar's write: a new entry at revision 1, a known one replaced at the next revision. */
static const char s_sql_register[] =
    "INSERT INTO directory_agencies (agency_id, type, public_keys, active, name, revision)"
    " VALUES ($1, $2, string_to_array($3, ' '), $4, $5, 1)"
    " ON CONFLICT (agency_id) DO UPDATE SET type = EXCLUDED.type,"
    "   public_keys = EXCLUDED.public_keys, active = EXCLUDED.active, name = EXCLUDED.name,"
    "   revision = directory_agencies.revision + 1,"
    "   local_rev = nextval('directory_revision'), updated_at = now()"
    " RETURNING revision";
/* A copy's write from an event: only a newer revision replaces what is stored. */
static const char s_sql_apply[] =
    "INSERT INTO directory_agencies (agency_id, type, public_keys, active, name, revision)"
    " VALUES ($1, $2, string_to_array($3, ' '), $4, $5, $6)"
    " ON CONFLICT (agency_id) DO UPDATE SET type = EXCLUDED.type,"
    "   public_keys = EXCLUDED.public_keys, active = EXCLUDED.active, name = EXCLUDED.name,"
    "   revision = EXCLUDED.revision,"
    "   local_rev = nextval('directory_revision'), updated_at = now()"
    " WHERE directory_agencies.revision < EXCLUDED.revision";
/* Every committed write raises one row's local_rev: count and sum change together with it. */
static const char s_sql_stamp[] =
    "SELECT count(*)::bigint, coalesce(sum(local_rev), 0)::bigint FROM directory_agencies";
static const char s_sql_rows[] =
    "SELECT agency_id, type, array_to_string(public_keys, ' '), active, name, revision"
    " FROM directory_agencies WHERE active OR $1 ORDER BY agency_id";
static const char s_sql_key_holder[] =
    "SELECT agency_id FROM directory_agencies WHERE $1 = ANY(public_keys) AND agency_id <> $2"
    " LIMIT 1";

struct nrm_directory_t {
    nrm_db_t *db;
    bool dirty;          /* written since the last refresh */
    bool loaded;         /* stamp_* hold the last read */
    int64_t stamp_count; /* rows at the last read */
    int64_t stamp_sum;   /* sum of local_rev at the last read */
    int64_t checked_ms;  /* monotonic time of the last check */
};

/* Registers the statements on db (idempotent). */
static void s_prepare(nrm_db_t *db)
{
    nrm_db_statement(db, "directory_register", s_sql_register);
    nrm_db_statement(db, "directory_apply", s_sql_apply);
    nrm_db_statement(db, "directory_stamp", s_sql_stamp);
    nrm_db_statement(db, "directory_rows", s_sql_rows);
    nrm_db_statement(db, "directory_key_holder", s_sql_key_holder);
}

nrm_directory_t *nrm_directory_new(nrm_db_t *db)
{
    nrm_directory_t *self = nrm_xcalloc(1, sizeof *self);
    self->db = db;
    self->dirty = true;
    s_prepare(db);
    return self;
}

void nrm_directory_destroy(nrm_directory_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    free(*self_p);
    *self_p = NULL;
}

const char *nrm_directory_type_name(Nrm__V1__AgencyType type)
{
    if (type == NRM__V1__AGENCY_TYPE__AGENCY_TYPE_UNSPECIFIED)
        return NULL;
    const ProtobufCEnumValue *v =
        protobuf_c_enum_descriptor_get_value(&nrm__v1__agency_type__descriptor, (int)type);
    if (!v || strncmp(v->name, S_TYPE_PREFIX, strlen(S_TYPE_PREFIX)) != 0)
        return NULL;
    return v->name + strlen(S_TYPE_PREFIX);
}

Nrm__V1__AgencyType nrm_directory_type_of(const char *name)
{
    char full[64];
    if (!name || snprintf(full, sizeof full, S_TYPE_PREFIX "%s", name) >= (int)sizeof full)
        return NRM__V1__AGENCY_TYPE__AGENCY_TYPE_UNSPECIFIED;
    const ProtobufCEnumValue *v =
        protobuf_c_enum_descriptor_get_value_by_name(&nrm__v1__agency_type__descriptor, full);
    return v ? (Nrm__V1__AgencyType)v->value : NRM__V1__AGENCY_TYPE__AGENCY_TYPE_UNSPECIFIED;
}

/* Writes the keys of agency, separated by spaces, into buf. */
static void s_join_keys(const Nrm__V1__Agency *agency, char buf[S_KEYS_MAX])
{
    size_t used = 0;
    buf[0] = '\0';
    for (size_t i = 0; i < agency->n_public_keys && i < NRM_DIRECTORY_MAX_KEYS; i++)
        used += (size_t)snprintf(buf + used, S_KEYS_MAX - used, "%s%s", i ? " " : "",
                                 agency->public_keys[i]);
}

/* Adds the entry's columns ($1..$5) to p; keys is the buffer the joined keys live in. */
static nrm_status_t s_entry_params(const Nrm__V1__Agency *agency, nrm_params_t *p,
                                   char keys[S_KEYS_MAX], nrm_error_t *err)
{
    const char *type = nrm_directory_type_name(agency->type);
    if (!type || !agency->agency_id || !agency->agency_id[0])
        return nrm_fail(err, NRM_INTERNAL, NULL, "directory entry without id or type");
    s_join_keys(agency, keys);
    nrm_params_text(p, agency->agency_id);
    nrm_params_text(p, type);
    nrm_params_text(p, keys);
    nrm_params_bool(p, agency->active);
    nrm_params_text(p, agency->name ? agency->name : "");
    return NRM_OK;
}

nrm_status_t nrm_directory_register(nrm_directory_t *self, nrm_tx_t *tx,
                                    const Nrm__V1__Agency *agency, int64_t *revision)
{
    s_prepare(tx->db);
    nrm_params_t p = {0};
    char keys[S_KEYS_MAX];
    PGresult *res = NULL;
    nrm_status_t st = s_entry_params(agency, &p, keys, tx->err);
    if (st == NRM_OK)
        st = nrm_db_exec(tx->db, "directory_register", &p, &res, tx->err);
    if (st != NRM_OK)
        return st;
    int64_t rev = nrm_db_int(res, 0, 0);
    PQclear(res);
    Nrm__V1__AgencyUpserted body = NRM__V1__AGENCY_UPSERTED__INIT;
    Nrm__V1__Agency copy = *agency;
    copy.source = (char *)"";
    copy.type_name = (char *)"";
    body.agency = &copy;
    body.revision = rev;
    st = nrm_tx_emit_body(tx, NULL, NRM__V1__EVENT__BODY_AGENCY_UPSERTED, &body);
    if (st == NRM_OK && revision)
        *revision = rev;
    if (self)
        self->dirty = true;
    return st;
}

nrm_status_t nrm_directory_apply(void *ctx, nrm_tx_t *tx, const Nrm__V1__Event *ev)
{
    nrm_directory_t *self = ctx;
    if (ev->body_case != NRM__V1__EVENT__BODY_AGENCY_UPSERTED)
        return NRM_OK;
    const Nrm__V1__AgencyUpserted *up = ev->agency_upserted;
    if (!up || !up->agency || !nrm_directory_type_name(up->agency->type)) {
        nrm_log_warn("directory event without a usable entry: skipped", NULL);
        return NRM_OK;
    }
    nrm_params_t p = {0};
    char keys[S_KEYS_MAX];
    nrm_status_t st = s_entry_params(up->agency, &p, keys, tx->err);
    nrm_params_int(&p, up->revision);
    if (st == NRM_OK)
        st = nrm_db_exec(tx->db, "directory_apply", &p, NULL, tx->err);
    self->dirty = true;
    return st;
}

void nrm_directory_touch(nrm_directory_t *self)
{
    self->dirty = true;
}

bool nrm_directory_due(const nrm_directory_t *self)
{
    return self->dirty || nrm_mono_ms() - self->checked_ms >= S_CHECK_EVERY_MS;
}

/* The entry of row i of a directory_rows result as a configuration agency object. */
static json_t *s_row_json(const PGresult *res, int i)
{
    json_t *keys = json_array();
    char *joined = nrm_xstrdup(nrm_db_text(res, i, 2));
    char *save = NULL;
    for (char *k = strtok_r(joined, " ", &save); k; k = strtok_r(NULL, " ", &save))
        json_array_append_new(keys, json_string(k));
    free(joined);
    json_t *entry = json_pack("{s:s, s:s, s:o, s:s, s:s}", "id", nrm_db_text(res, i, 0), "type",
                              nrm_db_text(res, i, 1), "public_keys", keys, "name",
                              nrm_db_text(res, i, 4), "source", NRM_DIRECTORY_SOURCE_RUNTIME);
    if (!entry)
        nrm_oom("directory entry");
    return entry;
}

int nrm_directory_refresh(nrm_directory_t *self, bool force, json_t **agencies)
{
    *agencies = NULL;
    self->checked_ms = nrm_mono_ms();
    nrm_error_t err;
    nrm_error_clear(&err);
    PGresult *stamp = NULL, *rows = NULL;
    if (nrm_db_exec(self->db, "directory_stamp", NULL, &stamp, &err) != NRM_OK)
        return -1;
    int64_t count = nrm_db_int(stamp, 0, 0), sum = nrm_db_int(stamp, 0, 1);
    PQclear(stamp);
    self->dirty = false;
    if (!force && self->loaded && count == self->stamp_count && sum == self->stamp_sum)
        return 0;
    nrm_params_t p = {0};
    nrm_params_bool(&p, false);
    if (nrm_db_exec(self->db, "directory_rows", &p, &rows, &err) != NRM_OK) {
        self->dirty = true;
        return -1;
    }
    json_t *list = json_array();
    for (int i = 0; i < PQntuples(rows); i++)
        json_array_append_new(list, s_row_json(rows, i));
    PQclear(rows);
    /* a write committed between the two reads is seen again at the next check */
    self->stamp_count = count;
    self->stamp_sum = sum;
    self->loaded = true;
    *agencies = list;
    return 1;
}

nrm_status_t nrm_directory_key_holder(nrm_tx_t *tx, const char *key, const char *agency_id,
                                      char *holder, size_t size)
{
    s_prepare(tx->db);
    nrm_params_t p = {0};
    nrm_params_text(&p, key);
    nrm_params_text(&p, agency_id);
    PGresult *res = NULL;
    nrm_status_t st = nrm_db_exec(tx->db, "directory_key_holder", &p, &res, tx->err);
    if (st != NRM_OK)
        return st;
    snprintf(holder, size, "%s", PQntuples(res) ? nrm_db_text(res, 0, 0) : "");
    PQclear(res);
    return NRM_OK;
}

nrm_status_t nrm_directory_rows(nrm_tx_t *tx, bool include_inactive, PGresult **res)
{
    s_prepare(tx->db);
    nrm_params_t p = {0};
    nrm_params_bool(&p, include_inactive);
    return nrm_db_exec(tx->db, "directory_rows", &p, res, tx->err);
}
