/* Shelters: validation, UpsertShelter, seeding from the configuration, GetOccupancy. */
#include "nrm_alloc.h"
#include "nrm_json.h"
#include "nrm_authz.h"
#include "nrm_log.h"
#include "nrm_pgarray.h"
#include "nrm_validate.h"
#include "shelter.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define S_PATH NRM_ERROR_FIELD_MAX
#define S_PREFIX 32 /* "shelters[NNNN]" */

/* The columns every shelter_row_t is read from, in s_read_row's order; xmin is the row's
 * version (shelter_row_t.version). */
#define S_COLUMNS                                                                                  \
    "shelter_id, operator_agency_id, region, capacity, occupied, held, population, min_age,"       \
    " max_age, accepts_children, accessible, array_to_string(languages, ','), active,"             \
    " xmin::text::bigint"

static const char s_sql_active[] =
    "SELECT " S_COLUMNS " FROM shelters WHERE active ORDER BY shelter_id";
static const char s_sql_in_region[] =
    "SELECT " S_COLUMNS ", name FROM shelters WHERE ($1 = '' OR region = $1)"
    " AND ($2 = '' OR operator_agency_id = $2) ORDER BY region, shelter_id";
static const char s_sql_operates[] = "SELECT 1 FROM shelters WHERE operator_agency_id = $1 LIMIT 1";
/* the facts of the people holding or occupying beds of shelter $1 (their last requests) */
static const char s_sql_live_needs[] =
    "SELECT 0, " SHELTER_NEED_COLUMNS " FROM bed_requests WHERE case_id IN"
    " (SELECT case_id FROM allocations WHERE shelter_id = $1 AND state <> 'released')";
static const char s_sql_lock[] =
    "SELECT operator_agency_id, capacity, occupied, held FROM shelters WHERE shelter_id = $1"
    " FOR UPDATE";
static const char s_sql_insert[] =
    "INSERT INTO shelters (shelter_id, name, operator_agency_id, region, capacity, population,"
    " min_age, max_age, accepts_children, accessible, languages, active, seeded)"
    " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11::text[], $12, $13)";
static const char s_sql_seed[] =
    "INSERT INTO shelters (shelter_id, name, operator_agency_id, region, capacity, population,"
    " min_age, max_age, accepts_children, accessible, languages, active, seeded)"
    " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11::text[], $12, $13)"
    " ON CONFLICT (shelter_id) DO NOTHING RETURNING shelter_id";
/* the WHERE clause refuses a capacity below the beds in use even if a caller forgot to check */
static const char s_sql_update[] =
    "UPDATE shelters SET name = $2, operator_agency_id = $3, region = $4, capacity = $5,"
    " population = $6, min_age = $7, max_age = $8, accepts_children = $9, accessible = $10,"
    " languages = $11::text[], active = $12, updated_at = now()"
    " WHERE shelter_id = $1 AND occupied + held <= $5 RETURNING occupied";

static const char s_sql_lock_beds[] = "SELECT pg_advisory_xact_lock(hashtext('nrm.shelter.beds'))";

void shelter_registry_prepare(nrm_db_t *db)
{
    nrm_db_statement(db, "shelter_lock_beds", s_sql_lock_beds);
    nrm_db_statement(db, "shelter_active", s_sql_active);
    nrm_db_statement(db, "shelter_in_region", s_sql_in_region);
    nrm_db_statement(db, "shelter_operates", s_sql_operates);
    nrm_db_statement(db, "shelter_lock", s_sql_lock);
    nrm_db_statement(db, "shelter_live_needs", s_sql_live_needs);
    nrm_db_statement(db, "shelter_insert", s_sql_insert);
    nrm_db_statement(db, "shelter_seed", s_sql_seed);
    nrm_db_statement(db, "shelter_update", s_sql_update);
}

nrm_status_t shelter_lock_beds(nrm_tx_t *tx)
{
    return nrm_db_exec_later(tx->db, "shelter_lock_beds", NULL, tx->err);
}

size_t shelter_languages_parse(const char *csv, char out[][SHELTER_LANGUAGE_SIZE], size_t max)
{
    size_t n = 0;
    for (const char *p = csv; p && *p && n < max;) {
        const char *end = strchr(p, ',');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        if (len == 2 && p[0] >= 'a' && p[0] <= 'z' && p[1] >= 'a' && p[1] <= 'z') {
            out[n][0] = p[0];
            out[n][1] = p[1];
            out[n++][2] = '\0';
        }
        p = end ? end + 1 : p + len;
    }
    return n;
}

/* The literal of SHELTER_MAX_LANGUAGES codes of two letters ({"ar","fr"}: 4 bytes and a comma
 * each, the braces) fits a need's text, so the literal below is always written whole. */
_Static_assert(sizeof(((shelter_need_text_t *)0)->languages) >
                   2 + SHELTER_MAX_LANGUAGES * (SHELTER_LANGUAGE_SIZE + 2),
               "a need's languages literal fits its text");

void shelter_languages_literal(const char langs[][SHELTER_LANGUAGE_SIZE], size_t n, char *buf,
                               size_t size)
{
    nrm_pgarray_t a;
    nrm_pgarray_init(&a);
    for (size_t i = 0; i < n; i++)
        nrm_pgarray_text(&a, langs[i]);
    const char *text = nrm_pgarray_close(&a);
    size_t len = strlen(text);
    if (len < size)
        memcpy(buf, text, len + 1);
    else if (size > 0)
        buf[0] = '\0'; /* never a cut literal: an empty text is refused by the text[] cast */
    nrm_pgarray_free(&a);
}

/* True when s is an id of letters, digits, '-', '_' and '.'. */
static bool s_id_shape(const char *s)
{
    for (; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') ||
              *s == '-' || *s == '_' || *s == '.'))
            return false;
    return true;
}

/* Checks the age range against the population: only a minors' shelter takes people under the
 * adult age, and it takes nobody older. */
static nrm_status_t s_check_ages(const Nrm__V1__UpsertShelter *u, const char *prefix,
                                 nrm_error_t *err)
{
    char path[S_PATH];
    snprintf(path, sizeof path, "%s.min_age", prefix);
    if (nrm_check_range(err, path, u->min_age, 0, SHELTER_MAX_AGE) != NRM_OK)
        return NRM_INVALID_ARGUMENT;
    snprintf(path, sizeof path, "%s.max_age", prefix);
    if (nrm_check_range(err, path, u->max_age, u->min_age, SHELTER_MAX_AGE) != NRM_OK)
        return NRM_INVALID_ARGUMENT;
    bool minors = u->population == NRM__V1__SHELTER_POPULATION__SHELTER_POPULATION_MINORS;
    if (minors && u->max_age >= SHELTER_ADULT_AGE)
        return nrm_fail(err, NRM_INVALID_ARGUMENT, path,
                        "a minors' shelter takes people under %d only", SHELTER_ADULT_AGE);
    snprintf(path, sizeof path, "%s.min_age", prefix);
    if (!minors && u->min_age < SHELTER_ADULT_AGE)
        return nrm_fail(err, NRM_INVALID_ARGUMENT, path,
                        "only a minors' shelter may take people under %d", SHELTER_ADULT_AGE);
    return NRM_OK;
}

nrm_status_t shelter_check(const Nrm__V1__UpsertShelter *u, nrm_config_t *config,
                           const char *prefix, nrm_error_t *err)
{
    char path[S_PATH], item[S_PATH];
    snprintf(path, sizeof path, "%s.shelter_id", prefix);
    if (nrm_check_text(err, path, u->shelter_id, SHELTER_ID_MAX, true) != NRM_OK)
        return NRM_INVALID_ARGUMENT;
    if (!s_id_shape(u->shelter_id))
        return nrm_fail(err, NRM_INVALID_ARGUMENT, path,
                        "shelter_id may hold letters, digits, '-', '_' and '.' only");
    snprintf(path, sizeof path, "%s.name", prefix);
    if (nrm_check_text(err, path, u->name, SHELTER_NAME_MAX, true) != NRM_OK)
        return NRM_INVALID_ARGUMENT;
    snprintf(path, sizeof path, "%s.operator_agency_id", prefix);
    const char *type = nrm_config_agency_type(config, u->operator_agency_id);
    if (!type || strcmp(type, "SHELTER_OPERATOR") != 0)
        return nrm_fail(err, NRM_INVALID_ARGUMENT, path,
                        "operator_agency_id must be a configured SHELTER_OPERATOR agency");
    snprintf(path, sizeof path, "%s.region", prefix);
    if (!nrm_config_region_known(config, u->region))
        return nrm_fail(err, NRM_INVALID_ARGUMENT, path,
                        "region is not one of the configured regions");
    snprintf(path, sizeof path, "%s.capacity", prefix);
    if (nrm_check_range(err, path, u->capacity, 0, SHELTER_MAX_CAPACITY) != NRM_OK)
        return NRM_INVALID_ARGUMENT;
    snprintf(path, sizeof path, "%s.population", prefix);
    if (nrm_check_enum(err, path, &nrm__v1__shelter_population__descriptor, u->population, false) !=
            NRM_OK ||
        s_check_ages(u, prefix, err) != NRM_OK)
        return NRM_INVALID_ARGUMENT;
    snprintf(path, sizeof path, "%s.languages", prefix);
    if (u->n_languages > SHELTER_MAX_LANGUAGES)
        return nrm_fail(err, NRM_INVALID_ARGUMENT, path, "at most %d languages",
                        SHELTER_MAX_LANGUAGES);
    for (size_t i = 0; i < u->n_languages; i++)
        if (nrm_check_language(err, nrm_path_index(item, sizeof item, path, i), u->languages[i]) !=
            NRM_OK)
            return NRM_INVALID_ARGUMENT;
    return NRM_OK;
}

/* Returns the configured shelter i as an UpsertShelter (caller frees with
 * protobuf_c_message_free_unpacked), or NULL with err naming "shelters[i]...". */
static Nrm__V1__UpsertShelter *s_config_shelter(json_t *entry, size_t i, nrm_error_t *err)
{
    nrm_error_t inner;
    nrm_error_clear(&inner);
    ProtobufCMessage *msg =
        nrm_json_to_message(&nrm__v1__upsert_shelter__descriptor, entry, &inner);
    if (!msg) {
        char path[2 * S_PATH];
        snprintf(path, sizeof path, "shelters[%zu]%s%s", i, inner.field[0] ? "." : "", inner.field);
        nrm_fail(err, NRM_INVALID_ARGUMENT, path, "%s", inner.message);
    }
    return (Nrm__V1__UpsertShelter *)msg;
}

nrm_status_t shelter_check_config(nrm_config_t *config, nrm_error_t *err)
{
    if (nrm_config_int(config, "shelter.hold_s", SHELTER_DEFAULT_HOLD_S) <= 0)
        return nrm_fail(err, NRM_INVALID_ARGUMENT, "shelter.hold_s", "hold_s must be positive");
    if (nrm_config_int(config, "shelter.expiry_check_ms", SHELTER_DEFAULT_CHECK_MS) <= 0)
        return nrm_fail(err, NRM_INVALID_ARGUMENT, "shelter.expiry_check_ms",
                        "expiry_check_ms must be positive");
    json_t *list = nrm_config_get(config, "shelters");
    if (list && !json_is_array(list))
        return nrm_fail(err, NRM_INVALID_ARGUMENT, "shelters", "shelters must be a list");
    json_t *ids = json_object(); /* the shelter ids seen so far, as a set */
    size_t i;
    json_t *entry;
    nrm_status_t st = NRM_OK;
    json_array_foreach(list, i, entry)
    {
        char prefix[S_PREFIX];
        snprintf(prefix, sizeof prefix, "shelters[%zu]", i);
        Nrm__V1__UpsertShelter *u = s_config_shelter(entry, i, err);
        st = u ? shelter_check(u, config, prefix, err) : NRM_INVALID_ARGUMENT;
        char path[S_PATH];
        snprintf(path, sizeof path, "%s.shelter_id", prefix);
        if (st == NRM_OK && json_object_get(ids, u->shelter_id))
            st = nrm_fail(err, NRM_INVALID_ARGUMENT, path,
                          "shelter_id repeats the id of an earlier shelter");
        if (st == NRM_OK)
            json_object_set_new(ids, u->shelter_id, json_true());
        if (u)
            protobuf_c_message_free_unpacked(&u->base, NULL);
        if (st != NRM_OK)
            break;
    }
    json_decref(ids);
    return st;
}

nrm_status_t shelter_configure(void *ctx, nrm_config_t *config)
{
    shelter_t *self = ctx;
    nrm_error_t err;
    nrm_error_clear(&err);
    if (shelter_check_config(config, &err) != NRM_OK) {
        nrm_log_error("invalid shelter configuration", "{s:s, s:s}", "field", err.field, "message",
                      err.message);
        return err.status;
    }
    self->config = config;
    self->hold_ms =
        nrm_config_int(config, "shelter.hold_s", SHELTER_DEFAULT_HOLD_S) * SHELTER_MS_PER_S;
    self->fruitless_known = false; /* the next serving pass reads the queue under these rules */
    return NRM_OK;
}

/* Fills p with the 12 parameters shared by insert, seed and update, in their order (inserts
 * add `seeded`). langs receives the languages literal (initialised here): it must outlive p,
 * and the caller frees it (nrm_pgarray_free). */
static void s_shelter_params(nrm_params_t *p, const Nrm__V1__UpsertShelter *u, nrm_pgarray_t *langs)
{
    nrm_pgarray_init(langs);
    for (size_t i = 0; i < u->n_languages && i < SHELTER_MAX_LANGUAGES; i++)
        nrm_pgarray_text(langs, u->languages[i]);
    nrm_params_text(p, u->shelter_id);
    nrm_params_text(p, u->name);
    nrm_params_text(p, u->operator_agency_id);
    nrm_params_text(p, u->region);
    nrm_params_int(p, u->capacity);
    nrm_params_int(p, u->population);
    nrm_params_int(p, u->min_age);
    nrm_params_int(p, u->max_age);
    nrm_params_bool(p, u->accepts_children);
    nrm_params_bool(p, u->accessible);
    nrm_params_text(p, nrm_pgarray_close(langs));
    nrm_params_bool(p, u->active);
}

nrm_status_t shelter_emit_capacity(nrm_tx_t *tx, const char *shelter_id, int capacity, int occupied)
{
    Nrm__V1__ShelterCapacityChanged body = NRM__V1__SHELTER_CAPACITY_CHANGED__INIT;
    body.shelter_id = (char *)shelter_id;
    body.capacity = capacity;
    body.occupied = occupied;
    return nrm_tx_emit_body(tx, NULL, NRM__V1__EVENT__BODY_SHELTER_CAPACITY_CHANGED, &body);
}

nrm_status_t shelter_seed(void *ctx, nrm_tx_t *tx)
{
    shelter_t *self = ctx;
    json_t *list = nrm_config_get(self->config, "shelters");
    size_t i, seeded = 0;
    json_t *entry;
    nrm_status_t st = shelter_lock_beds(tx);
    if (st != NRM_OK)
        return st;
    json_array_foreach(list, i, entry)
    {
        Nrm__V1__UpsertShelter *u = s_config_shelter(entry, i, tx->err);
        if (!u)
            return NRM_INVALID_ARGUMENT; /* checked at start: cannot happen */
        nrm_pgarray_t langs;
        nrm_params_t p = {0};
        s_shelter_params(&p, u, &langs);
        nrm_params_bool(&p, true);
        PGresult *res = NULL;
        st = nrm_db_exec(tx->db, "shelter_seed", &p, &res, tx->err);
        nrm_pgarray_free(&langs);
        bool inserted = st == NRM_OK && PQntuples(res) == 1;
        PQclear(res);
        if (inserted) {
            seeded++;
            st = shelter_emit_capacity(tx, u->shelter_id, u->capacity, 0);
        }
        protobuf_c_message_free_unpacked(&u->base, NULL);
        if (st != NRM_OK)
            return st;
    }
    nrm_log_info("shelters seeded from the configuration", "{s:I, s:I}", "configured",
                 (json_int_t)json_array_size(list), "new", (json_int_t)seeded);
    return seeded ? shelter_waitlist_serve(self, tx) : NRM_OK;
}

/* Reads columns S_COLUMNS of row i into r. */
static void s_read_row(const PGresult *res, int i, shelter_row_t *r)
{
    memset(r, 0, sizeof *r);
    snprintf(r->id, sizeof r->id, "%s", nrm_db_text(res, i, 0));
    snprintf(r->operator_id, sizeof r->operator_id, "%s", nrm_db_text(res, i, 1));
    snprintf(r->region, sizeof r->region, "%s", nrm_db_text(res, i, 2));
    r->capacity = (int)nrm_db_int(res, i, 3);
    r->occupied = (int)nrm_db_int(res, i, 4);
    r->held = (int)nrm_db_int(res, i, 5);
    r->population = (int)nrm_db_int(res, i, 6);
    r->min_age = (int)nrm_db_int(res, i, 7);
    r->max_age = (int)nrm_db_int(res, i, 8);
    r->accepts_children = nrm_db_int(res, i, 9) != 0;
    r->accessible = nrm_db_int(res, i, 10) != 0;
    r->n_languages =
        shelter_languages_parse(nrm_db_text(res, i, 11), r->languages, SHELTER_MAX_LANGUAGES);
    r->active = nrm_db_int(res, i, 12) != 0;
    r->version = nrm_db_int(res, i, 13);
}

/* Runs a shelter query and reads every row into *rows (malloc'd, caller frees). */
static nrm_status_t s_load(nrm_tx_t *tx, const char *stmt, const nrm_params_t *p,
                           shelter_row_t **rows, size_t *n, PGresult **keep)
{
    *rows = NULL;
    *n = 0;
    PGresult *res = NULL;
    nrm_status_t st = nrm_db_exec(tx->db, stmt, p, &res, tx->err);
    if (st != NRM_OK)
        return st;
    int count = PQntuples(res);
    *rows = nrm_xcalloc((size_t)(count ? count : 1), sizeof **rows);
    for (int i = 0; i < count; i++)
        s_read_row(res, i, &(*rows)[i]);
    *n = (size_t)count;
    if (keep)
        *keep = res;
    else
        PQclear(res);
    return NRM_OK;
}

nrm_status_t shelter_load_active(nrm_tx_t *tx, shelter_row_t **rows, size_t *n)
{
    return s_load(tx, "shelter_active", NULL, rows, n, NULL);
}

/* Permission for an upsert (nrm_authz): the sender is the shelter's operator when the shelter
 * exists, is operated by it and stays so; an operator that names another operator is refused
 * on operator_agency_id. existing_operator is NULL for a new shelter. */
static nrm_status_t s_may_upsert(nrm_call_t *call, const char *existing_operator)
{
    const Nrm__V1__UpsertShelter *u = call->request->upsert_shelter;
    bool operates = existing_operator && strcmp(existing_operator, call->agency_id) == 0;
    bool stays = strcmp(u->operator_agency_id, call->agency_id) == 0;
    return nrm_authz_check_at(call, operates && stays ? NRM_ROLE_SHELTER_OPERATOR : 0,
                              operates ? "upsert_shelter.operator_agency_id"
                                       : "upsert_shelter.shelter_id");
}

/* FAILED_PRECONDITION naming the rule when the upsert's rules would no longer take someone who
 * holds or occupies a bed of the shelter (a minors' shelter made an adults' one, say). */
static nrm_status_t s_rules_fit_the_people_there(nrm_call_t *call)
{
    const Nrm__V1__UpsertShelter *u = call->request->upsert_shelter;
    shelter_row_t rules = {.population = u->population,
                           .min_age = u->min_age,
                           .max_age = u->max_age,
                           .accepts_children = u->accepts_children,
                           .accessible = u->accessible};
    nrm_params_t p = {0};
    nrm_params_text(&p, u->shelter_id);
    PGresult *res = NULL;
    nrm_status_t st = nrm_db_exec(call->tx.db, "shelter_live_needs", &p, &res, call->tx.err);
    if (st != NRM_OK)
        return st;
    const char *rule = NULL;
    int unfit = 0;
    for (int i = 0; i < PQntuples(res); i++) {
        shelter_need_t need;
        shelter_need_read(res, i, &need);
        const char *r = shelter_unfit_rule(&rules, &need);
        if (r && !rule)
            rule = r;
        unfit += r != NULL;
    }
    PQclear(res);
    if (!rule)
        return NRM_OK;
    char field[64];
    snprintf(field, sizeof field, "upsert_shelter.%s", rule);
    return nrm_fail(call->tx.err, NRM_FAILED_PRECONDITION, field,
                    "%d of the people holding or occupying beds here would no longer fit these "
                    "rules: release their beds first",
                    unfit);
}

/* Inserts or updates the shelter of the request; *capacity_changed tells whether to announce
 * it, *occupied receives its occupied beds. The row is locked first. */
static nrm_status_t s_write_shelter(nrm_call_t *call, bool *capacity_changed, int *occupied)
{
    const Nrm__V1__UpsertShelter *u = call->request->upsert_shelter;
    nrm_params_t k = {0};
    nrm_params_text(&k, u->shelter_id);
    PGresult *res = NULL;
    nrm_status_t st = shelter_lock_beds(&call->tx);
    if (st == NRM_OK)
        st = nrm_db_exec(call->tx.db, "shelter_lock", &k, &res, call->tx.err);
    if (st != NRM_OK)
        return st;
    bool exists = PQntuples(res) == 1;
    char operator_id[SHELTER_ID_MAX + 1] = "";
    int capacity = 0, in_use = 0;
    if (exists) {
        snprintf(operator_id, sizeof operator_id, "%s", nrm_db_text(res, 0, 0));
        capacity = (int)nrm_db_int(res, 0, 1);
        *occupied = (int)nrm_db_int(res, 0, 2);
        in_use = *occupied + (int)nrm_db_int(res, 0, 3);
    }
    PQclear(res);
    if ((st = s_may_upsert(call, exists ? operator_id : NULL)) != NRM_OK)
        return st;
    if (u->capacity < in_use)
        return nrm_fail(call->tx.err, NRM_FAILED_PRECONDITION, "upsert_shelter.capacity",
                        "capacity %d is below the %d beds in use: release beds first, or make "
                        "the shelter inactive",
                        u->capacity, in_use);
    if (in_use > 0 && (st = s_rules_fit_the_people_there(call)) != NRM_OK)
        return st;
    nrm_pgarray_t langs;
    nrm_params_t p = {0};
    s_shelter_params(&p, u, &langs);
    *capacity_changed = !exists || capacity != u->capacity;
    if (!exists) {
        *occupied = 0;
        nrm_params_bool(&p, false);
        st = nrm_db_exec(call->tx.db, "shelter_insert", &p, NULL, call->tx.err);
        nrm_pgarray_free(&langs);
        return st;
    }
    st = nrm_db_exec(call->tx.db, "shelter_update", &p, &res, call->tx.err);
    nrm_pgarray_free(&langs);
    if (st == NRM_OK && PQntuples(res) != 1)
        st = nrm_fail(call->tx.err, NRM_FAILED_PRECONDITION, "upsert_shelter.capacity",
                      "capacity is below the beds in use");
    PQclear(res);
    return st;
}

nrm_status_t shelter_upsert(void *ctx, nrm_call_t *call)
{
    shelter_t *self = ctx;
    const Nrm__V1__UpsertShelter *u = call->request->upsert_shelter;
    if (shelter_check(u, call->config, "upsert_shelter", call->tx.err) != NRM_OK)
        return NRM_INVALID_ARGUMENT;
    bool capacity_changed = false;
    int occupied = 0;
    nrm_status_t st = s_write_shelter(call, &capacity_changed, &occupied);
    if (st == NRM_OK && capacity_changed)
        st = shelter_emit_capacity(&call->tx, u->shelter_id, u->capacity, occupied);
    /* more beds, a shelter made active or taking more people: the queue may move */
    if (st == NRM_OK)
        st = shelter_waitlist_serve(self, &call->tx);
    if (st != NRM_OK)
        return st;
    Nrm__V1__ShelterRef *ref = nrm_call_alloc(call, sizeof *ref);
    nrm__v1__shelter_ref__init(ref);
    ref->shelter_id = nrm_call_strdup(call, u->shelter_id);
    call->reply->result_case = NRM__V1__REPLY__RESULT_SHELTER_REF;
    call->reply->shelter_ref = ref;
    call->subject_id = ref->shelter_id;
    return NRM_OK;
}

/* Fills one ShelterState; its waitlist counts the waiting needs the shelter could take. */
static Nrm__V1__ShelterState *s_state(nrm_call_t *call, const shelter_row_t *r, const char *name,
                                      const shelter_need_t *waiting, size_t n_waiting)
{
    Nrm__V1__ShelterState *s = nrm_call_alloc(call, sizeof *s);
    nrm__v1__shelter_state__init(s);
    s->shelter_id = nrm_call_strdup(call, r->id);
    s->name = nrm_call_strdup(call, name);
    s->region = nrm_call_strdup(call, r->region);
    s->capacity = r->capacity;
    s->occupied = r->occupied;
    s->held = r->held;
    s->population = (Nrm__V1__ShelterPopulation)r->population;
    s->active = r->active;
    s->operator_agency_id = nrm_call_strdup(call, r->operator_id);
    for (size_t i = 0; i < n_waiting; i++)
        s->waitlist += r->active && shelter_eligible(r, &waiting[i]);
    return s;
}

/* Decides who sees what of the occupancy (nrm_authz): a coordinator every shelter, an agency
 * that operates a shelter its own ones (*operator_filter set to its id), others nothing. */
static nrm_status_t s_may_see_occupancy(nrm_call_t *call, const char **operator_filter)
{
    *operator_filter = "";
    if (nrm_authz_sender_is(call, NRM_ROLE_COORDINATOR))
        return nrm_authz_check(call, 0);
    nrm_params_t p = {0};
    nrm_params_text(&p, call->agency_id);
    PGresult *res = NULL;
    nrm_status_t st = nrm_db_exec(call->tx.db, "shelter_operates", &p, &res, call->tx.err);
    if (st != NRM_OK)
        return st;
    bool operates = PQntuples(res) == 1;
    PQclear(res);
    *operator_filter = call->agency_id;
    return nrm_authz_check(call, operates ? NRM_ROLE_SHELTER_OPERATOR : 0);
}

nrm_status_t shelter_get_occupancy(void *ctx, nrm_call_t *call)
{
    const Nrm__V1__GetOccupancy *g = call->request->get_occupancy;
    if (g->region[0] && !nrm_config_region_known(call->config, g->region))
        return nrm_fail(call->tx.err, NRM_INVALID_ARGUMENT, "get_occupancy.region",
                        "region is not one of the configured regions");
    const char *operator_filter = "";
    nrm_status_t st = s_may_see_occupancy(call, &operator_filter);
    if (st != NRM_OK)
        return st;
    nrm_params_t p = {0};
    nrm_params_text(&p, g->region);
    nrm_params_text(&p, operator_filter);
    shelter_row_t *rows = NULL;
    shelter_need_t *waiting = NULL;
    size_t n = 0, n_waiting = 0;
    PGresult *res = NULL;
    st = s_load(&call->tx, "shelter_in_region", &p, &rows, &n, &res);
    if (st == NRM_OK)
        st = shelter_waitlist_load(&call->tx, &waiting, &n_waiting);
    if (st == NRM_OK) {
        Nrm__V1__Occupancy *occ = nrm_call_alloc(call, sizeof *occ);
        nrm__v1__occupancy__init(occ);
        occ->shelters = nrm_call_alloc(call, (n ? n : 1) * sizeof *occ->shelters);
        for (size_t i = 0; i < n; i++)
            occ->shelters[occ->n_shelters++] =
                s_state(call, &rows[i], nrm_db_text(res, (int)i, 14), waiting, n_waiting);
        for (size_t i = 0; i < n_waiting; i++)
            occ->waitlist += !g->region[0] || strcmp(waiting[i].region, g->region) == 0;
        call->reply->result_case = NRM__V1__REPLY__RESULT_OCCUPANCY;
        call->reply->occupancy = occ;
        call->subject_id = g->region;
    }
    PQclear(res);
    free(rows);
    free(waiting);
    return st;
}
