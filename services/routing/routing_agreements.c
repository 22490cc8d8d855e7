/* Partnership agreements: UpsertAgreement and ListAgreements (the coordinator), and the warning
 * routing.agreement_ending, published once per agreement and end date when the end is 30 days
 * away or less. With routing.require_agreement, routing_assign.c refers a service to a provider
 * only under an agreement that covers it in the case's region today with room left (its
 * open_count, kept by a trigger, below its capacity). */
#include "routing.h"
#include "nrm_alloc.h"
#include "nrm_authz.h"
#include "nrm_log.h"
#include "nrm_pgarray.h"
#include "nrm_validate.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define S_PATH NRM_ERROR_FIELD_MAX
#define S_ID_MAX 64
#define S_MAX_REGIONS 64
#define S_WARN_DAYS 30
#define S_WARN_BATCH 100
#define S_DAY_SIZE 16
#define S_CAPACITY_MAX 1000000

static const char s_sql_provider[] = "SELECT 1 FROM providers WHERE provider_id = $1";
static const char s_sql_upsert[] =
    "INSERT INTO agreements (agreement_id, provider_id, services, regions, capacity, start_date,"
    " end_date, updated_ms) VALUES ($1, $2, $3::int[], $4::text[], $5, $6::date, $7::date, $8)"
    " ON CONFLICT (agreement_id) DO UPDATE SET services = EXCLUDED.services,"
    " regions = EXCLUDED.regions, capacity = EXCLUDED.capacity,"
    " start_date = EXCLUDED.start_date, end_date = EXCLUDED.end_date,"
    " updated_ms = EXCLUDED.updated_ms, warned_end = CASE WHEN agreements.end_date ="
    " EXCLUDED.end_date THEN agreements.warned_end END"
    " WHERE agreements.provider_id = EXCLUDED.provider_id RETURNING agreement_id";
static const char s_sql_list[] =
    "SELECT agreement_id, provider_id, array_to_string(services, ','),"
    " array_to_string(regions, ','), capacity, start_date::text, end_date::text, open_count,"
    " start_date <= $2::date AND end_date >= $2::date, warned_end IS NOT DISTINCT FROM end_date"
    " FROM agreements WHERE $1 = '' OR provider_id = $1 ORDER BY agreement_id";
/* the agreements ending within S_WARN_DAYS not warned of for this end date, taken once */
static const char s_sql_warn[] =
    "UPDATE agreements g SET warned_end = g.end_date FROM (SELECT agreement_id FROM agreements"
    "  WHERE warned_end IS DISTINCT FROM end_date AND end_date >= $1::date"
    "  AND end_date <= $1::date + $2::int ORDER BY end_date, agreement_id LIMIT $3"
    "  FOR UPDATE SKIP LOCKED) due WHERE g.agreement_id = due.agreement_id"
    " RETURNING g.agreement_id, g.provider_id, g.end_date::text, g.end_date - $1::date";

void routing_agreements_prepare(nrm_db_t *db)
{
    nrm_db_statement(db, "routing_agreement_provider", s_sql_provider);
    nrm_db_statement(db, "routing_agreement_upsert", s_sql_upsert);
    nrm_db_statement(db, "routing_agreement_list", s_sql_list);
    nrm_db_statement(db, "routing_agreement_warn", s_sql_warn);
}

/* Writes the UTC day of ms ("YYYY-MM-DD") into day. */
static void s_day(int64_t ms, char day[S_DAY_SIZE])
{
    time_t t = (time_t)(ms / 1000);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(day, S_DAY_SIZE, "%Y-%m-%d", &tm);
}

/* A calendar date "YYYY-MM-DD" (any year from 2000 to 2199). */
static nrm_status_t s_check_day(nrm_error_t *err, const char *field, const char *s)
{
    int y, m, d;
    char extra;
    if (!s || strlen(s) != 10 || sscanf(s, "%4d-%2d-%2d%c", &y, &m, &d, &extra) != 3 || y < 2000 ||
        y > 2199 || m < 1 || m > 12 || d < 1)
        return nrm_fail(err, NRM_INVALID_ARGUMENT, field, "%s must be a date YYYY-MM-DD", field);
    static const int days[] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    if (d > days[m - 1] || (m == 2 && d == 29 && !leap))
        return nrm_fail(err, NRM_INVALID_ARGUMENT, field, "%s is not a calendar date", field);
    return NRM_OK;
}

/* True when s is an id of letters, digits, '-', '_' and '.', at most S_ID_MAX. */
static bool s_id_ok(const char *s)
{
    size_t n = s ? strlen(s) : 0;
    if (n == 0 || n > S_ID_MAX)
        return false;
    for (; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') ||
              *s == '-' || *s == '_' || *s == '.'))
            return false;
    return true;
}

/* Checks an UpsertAgreement: INVALID_ARGUMENT naming the field. */
static nrm_status_t s_check(const Nrm__V1__UpsertAgreement *a, nrm_config_t *config,
                            nrm_error_t *err)
{
    char item[S_PATH];
    if (!s_id_ok(a->agreement_id))
        return nrm_fail(err, NRM_INVALID_ARGUMENT, "upsert_agreement.agreement_id",
                        "agreement_id: 1 to %d letters, digits, '-', '_' or '.'", S_ID_MAX);
    if (!s_id_ok(a->provider_id))
        return nrm_fail(err, NRM_INVALID_ARGUMENT, "upsert_agreement.provider_id",
                        "provider_id must be the id of a provider");
    if (a->n_services == 0)
        return nrm_fail(err, NRM_INVALID_ARGUMENT, "upsert_agreement.services",
                        "services must list the services covered");
    for (size_t i = 0; i < a->n_services; i++) {
        nrm_path_index(item, sizeof item, "upsert_agreement.services", i);
        if (nrm_check_enum(err, item, &nrm__v1__service_type__descriptor, (int)a->services[i],
                           false) != NRM_OK)
            return NRM_INVALID_ARGUMENT;
        if (a->services[i] == NRM__V1__SERVICE_TYPE__SERVICE_TYPE_SHELTER)
            return nrm_fail(err, NRM_INVALID_ARGUMENT, item,
                            "shelters belong to the shelter service, not to agreements");
    }
    if (a->n_regions > S_MAX_REGIONS)
        return nrm_fail(err, NRM_INVALID_ARGUMENT, "upsert_agreement.regions", "at most %d regions",
                        S_MAX_REGIONS);
    for (size_t i = 0; i < a->n_regions; i++)
        if (!nrm_config_region_known(config, a->regions[i]))
            return nrm_fail(err, NRM_INVALID_ARGUMENT,
                            nrm_path_index(item, sizeof item, "upsert_agreement.regions", i),
                            "not a configured region");
    if (nrm_check_range(err, "upsert_agreement.capacity", a->capacity, 1, S_CAPACITY_MAX) !=
            NRM_OK ||
        s_check_day(err, "upsert_agreement.start_date", a->start_date) != NRM_OK ||
        s_check_day(err, "upsert_agreement.end_date", a->end_date) != NRM_OK)
        return NRM_INVALID_ARGUMENT;
    if (strcmp(a->end_date, a->start_date) < 0)
        return nrm_fail(err, NRM_INVALID_ARGUMENT, "upsert_agreement.end_date",
                        "end_date is before start_date");
    return NRM_OK;
}

/* Writes the array literals of the services and the regions into services and regions (both
 * left open: the caller closes and frees them). */
static void s_literals(const Nrm__V1__UpsertAgreement *a, nrm_pgarray_t *services,
                       nrm_pgarray_t *regions)
{
    nrm_pgarray_init(services);
    for (size_t i = 0; i < a->n_services; i++)
        nrm_pgarray_int(services, (int)a->services[i]);
    nrm_pgarray_init(regions);
    for (size_t i = 0; i < a->n_regions; i++)
        nrm_pgarray_text(regions, a->regions[i]);
}

nrm_status_t routing_upsert_agreement(void *ctx, nrm_call_t *call)
{
    routing_t *self = ctx;
    const Nrm__V1__UpsertAgreement *a = call->request->upsert_agreement;
    nrm_status_t st = nrm_authz_check(call, 0);
    if (st != NRM_OK)
        return st;
    if (s_check(a, call->config, call->tx.err) != NRM_OK)
        return NRM_INVALID_ARGUMENT;
    if ((st = routing_lock(self, &call->tx)) != NRM_OK)
        return st;
    nrm_params_t k = {0};
    nrm_params_text(&k, a->provider_id);
    PGresult *res = NULL;
    if ((st = nrm_db_exec(call->tx.db, "routing_agreement_provider", &k, &res, call->tx.err)) !=
        NRM_OK)
        return st;
    bool known = PQntuples(res) == 1;
    PQclear(res);
    if (!known)
        return nrm_fail(call->tx.err, NRM_NOT_FOUND, "upsert_agreement.provider_id",
                        "no such provider in the directory");
    nrm_pgarray_t services, regions;
    s_literals(a, &services, &regions);
    nrm_params_t p = {0};
    nrm_params_text(&p, a->agreement_id);
    nrm_params_text(&p, a->provider_id);
    nrm_params_text(&p, nrm_pgarray_close(&services));
    nrm_params_text(&p, nrm_pgarray_close(&regions));
    nrm_params_int(&p, a->capacity);
    nrm_params_text(&p, a->start_date);
    nrm_params_text(&p, a->end_date);
    nrm_params_int(&p, call->tx.now_ms);
    st = nrm_db_exec(call->tx.db, "routing_agreement_upsert", &p, &res, call->tx.err);
    nrm_pgarray_free(&services);
    nrm_pgarray_free(&regions);
    if (st != NRM_OK)
        return st;
    bool written = PQntuples(res) == 1;
    PQclear(res);
    if (!written)
        return nrm_fail(call->tx.err, NRM_FAILED_PRECONDITION, "upsert_agreement.provider_id",
                        "the agreement exists with another provider: its provider cannot change");
    /* a new or larger agreement may let waiting needs through */
    if ((st = routing_serve_waiting(self, &call->tx)) != NRM_OK)
        return st;
    Nrm__V1__AgreementRef *ref = nrm_call_alloc(call, sizeof *ref);
    nrm__v1__agreement_ref__init(ref);
    ref->agreement_id = nrm_call_strdup(call, a->agreement_id);
    call->reply->result_case = NRM__V1__REPLY__RESULT_AGREEMENT_REF;
    call->reply->agreement_ref = ref;
    call->subject_id = ref->agreement_id;
    return NRM_OK;
}

/* Splits a comma-separated list into a call-owned array of strings; *n receives the count. */
static char **s_split(nrm_call_t *call, const char *csv, size_t *n)
{
    *n = 0;
    size_t cap = 1;
    for (const char *c = csv; *c; c++)
        cap += *c == ',';
    char **out = nrm_call_alloc(call, cap * sizeof *out);
    char *copy = nrm_call_strdup(call, csv);
    for (char *save = NULL, *tok = strtok_r(copy, ",", &save); tok;
         tok = strtok_r(NULL, ",", &save))
        out[(*n)++] = tok;
    return out;
}

nrm_status_t routing_list_agreements(void *ctx, nrm_call_t *call)
{
    (void)ctx;
    const Nrm__V1__ListAgreements *l = call->request->list_agreements;
    nrm_status_t st = nrm_authz_check(call, 0);
    if (st != NRM_OK)
        return st;
    char day[S_DAY_SIZE];
    s_day(call->tx.now_ms, day);
    nrm_params_t p = {0};
    nrm_params_text(&p, l->provider_id);
    nrm_params_text(&p, day);
    PGresult *res = NULL;
    if ((st = nrm_db_exec(call->tx.db, "routing_agreement_list", &p, &res, call->tx.err)) != NRM_OK)
        return st;
    int rows = PQntuples(res);
    Nrm__V1__AgreementList *out = nrm_call_alloc(call, sizeof *out);
    nrm__v1__agreement_list__init(out);
    out->agreements = nrm_call_alloc(call, (size_t)(rows ? rows : 1) * sizeof *out->agreements);
    for (int row = 0; row < rows; row++) {
        Nrm__V1__UpsertAgreement *a = nrm_call_alloc(call, sizeof *a);
        nrm__v1__upsert_agreement__init(a);
        a->agreement_id = nrm_call_strdup(call, nrm_db_text(res, row, 0));
        a->provider_id = nrm_call_strdup(call, nrm_db_text(res, row, 1));
        size_t n = 0;
        char **services = s_split(call, nrm_db_text(res, row, 2), &n);
        a->services = nrm_call_alloc(call, (n ? n : 1) * sizeof *a->services);
        for (size_t i = 0; i < n; i++)
            a->services[i] = (Nrm__V1__ServiceType)atoi(services[i]);
        a->n_services = n;
        a->regions = s_split(call, nrm_db_text(res, row, 3), &a->n_regions);
        a->capacity = (int32_t)nrm_db_int(res, row, 4);
        a->start_date = nrm_call_strdup(call, nrm_db_text(res, row, 5));
        a->end_date = nrm_call_strdup(call, nrm_db_text(res, row, 6));
        Nrm__V1__AgreementRow *r = nrm_call_alloc(call, sizeof *r);
        nrm__v1__agreement_row__init(r);
        r->agreement = a;
        r->open_referrals = (int32_t)nrm_db_int(res, row, 7);
        r->valid_today = nrm_db_int(res, row, 8) != 0;
        r->ending_warned = nrm_db_int(res, row, 9) != 0;
        out->agreements[out->n_agreements++] = r;
    }
    PQclear(res);
    call->reply->result_case = NRM__V1__REPLY__RESULT_AGREEMENT_LIST;
    call->reply->agreement_list = out;
    call->subject_id = l->provider_id[0] ? l->provider_id : "agreements";
    return NRM_OK;
}

nrm_status_t routing_warn_agreements(routing_t *self, nrm_tx_t *tx)
{
    (void)self;
    char day[S_DAY_SIZE];
    s_day(tx->now_ms, day);
    nrm_params_t p = {0};
    nrm_params_text(&p, day);
    nrm_params_int(&p, S_WARN_DAYS);
    nrm_params_int(&p, S_WARN_BATCH);
    PGresult *res = NULL;
    nrm_status_t st = nrm_db_exec(tx->db, "routing_agreement_warn", &p, &res, tx->err);
    if (st != NRM_OK)
        return st;
    for (int row = 0; st == NRM_OK && row < PQntuples(res); row++) {
        Nrm__V1__AgreementEnding body = NRM__V1__AGREEMENT_ENDING__INIT;
        body.agreement_id = (char *)nrm_db_text(res, row, 0);
        body.provider_agency_id = (char *)nrm_db_text(res, row, 1);
        body.end_date = (char *)nrm_db_text(res, row, 2);
        body.days_left = (int32_t)nrm_db_int(res, row, 3);
        nrm_log_info("agreement ending", "{s:s, s:s, s:s}", "agreement_id", body.agreement_id,
                     "provider", body.provider_agency_id, "end_date", body.end_date);
        st = routing_emit_body(self, tx, NULL, NRM__V1__EVENT__BODY_AGREEMENT_ENDING, &body);
    }
    PQclear(res);
    return st;
}
