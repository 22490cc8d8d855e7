/* The case file, categorical data only: GetCase for the coordinator, the case manager and the
 * reporters of the case; ListCases for a coordinator (every case) and a case manager (its own),
 * newest first, paged by keyset on (opened_at, case_id) behind an opaque token, so that a page
 * never repeats or skips a case that existed when paging started, whatever is written meanwhile.
 * Both are reads (NRM_HANDLER_READ): audited, nothing stored. */
#include "intake.h"
#include "nrm_authz.h"
#include "nrm_validate.h"

#include <sodium.h>

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define S_PAGE_DEFAULT 50
#define S_PAGE_MAX 500
#define S_TOKEN_VERSION "c1"
#define S_TOKEN_TEXT 160
#define S_FILTER_HASH 8 /* bytes of the filters' hash carried in a token */
#define S_FILTER_TEXT 128
#define S_REGION_MAX 16
/* the cursor of a first page: after every real opening time (year 9999, in microseconds) */
#define S_CURSOR_END_US INT64_C(253402300800000000)

/* The columns of a CaseView, in the order s_view reads them. */
#define S_VIEW_COLUMNS                                                                             \
    "c.case_id, c.region, c.profile, c.is_minor, array_to_string(c.needs, ','), c.urgency,"        \
    " c.safety_risk, c.consent_to_referral, c.consent_to_data_sharing, c.status,"                  \
    " c.case_manager_agency_id,"                                                                   \
    " (SELECT string_agg(a.agency_id, ',' ORDER BY a.agency_id) FROM case_agencies a"              \
    "   WHERE a.case_id = c.case_id),"                                                             \
    " (SELECT count(*)::int FROM reports r WHERE r.case_id = c.case_id),"                          \
    " (extract(epoch FROM c.opened_at) * 1000)::bigint,"                                           \
    " (extract(epoch FROM c.updated_at) * 1000)::bigint,"                                          \
    " COALESCE((extract(epoch FROM c.closed_at) * 1000)::bigint, 0),"                              \
    " COALESCE(c.close_reason, ''), array_to_string(c.exploitation_types, ','),"                   \
    " c.country_of_exploitation, c.identity_erased_at IS NOT NULL,"                                \
    " (extract(epoch FROM c.opened_at) * 1000000)::bigint"
enum { S_COLUMN_OPENED_US = 20, S_COLUMN_COUNT = 21 };

/* The filters every list statement shares; $1 region, $2 open_only, $3 minor_only, $4
 * urgency, $5 and $6 the cursor (opened_at in microseconds, case_id), $7 the limit. */
#define S_LIST_FILTERS                                                                             \
    " ($1 = '' OR c.region = $1) AND (NOT $2::boolean OR c.status = 'open')"                       \
    " AND (NOT $3::boolean OR c.is_minor) AND ($4::int = 0 OR c.urgency = $4::int)"                \
    " AND (c.opened_at, c.case_id) < (timestamptz 'epoch' + $5::bigint * interval '1 "             \
    "microsecond',"                                                                                \
    " $6)"
#define S_LIST_ORDER " ORDER BY c.opened_at DESC, c.case_id DESC LIMIT $7"

static const char s_sql_get[] =
    "SELECT " S_VIEW_COLUMNS ", c.case_manager_agency_id = $2,"
    " EXISTS (SELECT 1 FROM case_agencies a WHERE a.case_id = c.case_id AND a.agency_id = $2)"
    " FROM cases c WHERE c.case_id = $1";
static const char s_sql_list_all[] =
    "SELECT " S_VIEW_COLUMNS " FROM cases c WHERE" S_LIST_FILTERS S_LIST_ORDER;
static const char s_sql_list_managed[] =
    "SELECT " S_VIEW_COLUMNS " FROM cases c WHERE"
    " c.case_manager_agency_id = $8 AND" S_LIST_FILTERS S_LIST_ORDER;
static const char s_sql_manages[] =
    "SELECT EXISTS (SELECT 1 FROM cases WHERE case_manager_agency_id = $1)";

void intake_read_prepare(nrm_db_t *db)
{
    nrm_db_statement(db, "intake_read_get", s_sql_get);
    nrm_db_statement(db, "intake_read_list_all", s_sql_list_all);
    nrm_db_statement(db, "intake_read_list_managed", s_sql_list_managed);
    nrm_db_statement(db, "intake_read_manages", s_sql_manages);
}

/* Parses "1,2,3" into an array from the call's memory; *n its length. */
static int *s_int_list(nrm_call_t *call, const char *text, size_t *n)
{
    size_t count = *text ? 1 : 0;
    for (const char *p = text; *p; p++)
        count += *p == ',';
    int *v = nrm_call_alloc(call, (count ? count : 1) * sizeof *v);
    *n = 0;
    for (const char *p = text; *p && *n < count;) {
        v[(*n)++] = atoi(p);
        const char *comma = strchr(p, ',');
        if (!comma)
            break;
        p = comma + 1;
    }
    return v;
}

/* Splits "a,b" into strings from the call's memory; *n their count. */
static char **s_text_list(nrm_call_t *call, const char *text, size_t *n)
{
    char *copy = nrm_call_strdup(call, text);
    size_t count = *copy ? 1 : 0;
    for (const char *p = copy; *p; p++)
        count += *p == ',';
    char **v = nrm_call_alloc(call, (count ? count : 1) * sizeof *v);
    *n = 0;
    char *save = NULL;
    for (char *t = strtok_r(copy, ",", &save); t && *n < count; t = strtok_r(NULL, ",", &save))
        v[(*n)++] = t;
    return v;
}

/* A CaseView of row i of res (S_VIEW_COLUMNS), in the call's memory. */
static Nrm__V1__CaseView *s_view(nrm_call_t *call, const PGresult *res, int i)
{
    Nrm__V1__CaseView *v = nrm_call_alloc(call, sizeof *v);
    nrm__v1__case_view__init(v);
    v->case_id = nrm_call_strdup(call, nrm_db_text(res, i, 0));
    v->region = nrm_call_strdup(call, nrm_db_text(res, i, 1));
    size_t len = 0;
    const uint8_t *profile = nrm_db_bytes(res, i, 2, &len);
    v->profile = nrm_call_keep(call, nrm__v1__profile__unpack(NULL, len, profile));
    v->is_minor = nrm_db_int(res, i, 3) != 0;
    v->needs = (Nrm__V1__ServiceType *)s_int_list(call, nrm_db_text(res, i, 4), &v->n_needs);
    v->urgency = (Nrm__V1__Urgency)nrm_db_int(res, i, 5);
    v->safety_risk = (Nrm__V1__SafetyRisk)nrm_db_int(res, i, 6);
    v->consent_to_referral = nrm_db_int(res, i, 7) != 0;
    v->consent_to_data_sharing = nrm_db_int(res, i, 8) != 0;
    v->state = nrm_call_strdup(call, nrm_db_text(res, i, 9));
    v->case_manager_agency_id = nrm_call_strdup(call, nrm_db_text(res, i, 10));
    v->reporter_agency_ids = s_text_list(call, nrm_db_text(res, i, 11), &v->n_reporter_agency_ids);
    v->report_count = (int32_t)nrm_db_int(res, i, 12);
    v->opened_at_ms = nrm_db_int(res, i, 13);
    v->updated_at_ms = nrm_db_int(res, i, 14);
    v->closed_at_ms = nrm_db_int(res, i, 15);
    v->close_reason = nrm_call_strdup(call, nrm_db_text(res, i, 16));
    v->exploitation_types = (Nrm__V1__ExploitationType *)s_int_list(call, nrm_db_text(res, i, 17),
                                                                    &v->n_exploitation_types);
    v->country_of_exploitation = nrm_call_strdup(call, nrm_db_text(res, i, 18));
    v->identity_erased = nrm_db_int(res, i, 19) != 0;
    return v;
}

nrm_status_t intake_get_case(void *ctx, nrm_call_t *call)
{
    (void)ctx;
    const Nrm__V1__GetCase *g = call->request->get_case;
    if (nrm_check_text(call->tx.err, "get_case.case_id", g->case_id, INTAKE_ID_MAX, true) != NRM_OK)
        return NRM_INVALID_ARGUMENT;
    nrm_params_t p = {0};
    nrm_params_text(&p, g->case_id);
    nrm_params_text(&p, call->agency_id);
    PGresult *res = NULL;
    nrm_status_t st = nrm_db_exec(call->tx.db, "intake_read_get", &p, &res, call->tx.err);
    if (st != NRM_OK)
        return st;
    if (PQntuples(res) != 1) {
        PQclear(res);
        return nrm_authz_not_found(call, "get_case.case_id", "no such case");
    }
    unsigned relations = (nrm_db_int(res, 0, S_COLUMN_COUNT) ? NRM_ROLE_CASE_MANAGER : 0) |
                         (nrm_db_int(res, 0, S_COLUMN_COUNT + 1) ? NRM_ROLE_REPORTER : 0);
    st = nrm_authz_check(call, relations);
    if (st == NRM_OK) {
        call->reply->case_view = s_view(call, res, 0);
        call->reply->result_case = NRM__V1__REPLY__RESULT_CASE_VIEW;
        call->subject_id = call->reply->case_view->case_id;
    }
    PQclear(res);
    return st;
}

/* The filters of a ListCases and its scope ("" for all, else the managing agency), hashed into
 * out (S_FILTER_HASH bytes): a token is valid only with the filters it was made for. */
static void s_filter_hash(const Nrm__V1__ListCases *l, const char *scope, uint8_t *out)
{
    char text[S_FILTER_TEXT];
    snprintf(text, sizeof text, "%s|%d|%d|%d|%s", l->region, l->open_only ? 1 : 0,
             l->minor_only ? 1 : 0, (int)l->urgency, scope);
    crypto_generichash(out, S_FILTER_HASH, (const uint8_t *)text, strlen(text), NULL, 0);
}

/* Writes the token of the page after the case (opened_us, case_id) into the call's memory. */
static char *s_token(nrm_call_t *call, const Nrm__V1__ListCases *l, const char *scope,
                     int64_t opened_us, const char *case_id)
{
    uint8_t hash[S_FILTER_HASH];
    s_filter_hash(l, scope, hash);
    char hex[2 * S_FILTER_HASH + 1], plain[S_TOKEN_TEXT];
    sodium_bin2hex(hex, sizeof hex, hash, sizeof hash);
    int n = snprintf(plain, sizeof plain, "%s.%" PRId64 ".%s.%s", S_TOKEN_VERSION, opened_us, hex,
                     case_id);
    size_t size = sodium_base64_ENCODED_LEN((size_t)n, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
    char *token = nrm_call_alloc(call, size);
    sodium_bin2base64(token, size, (const uint8_t *)plain, (size_t)n,
                      sodium_base64_VARIANT_URLSAFE_NO_PADDING);
    return token;
}

/* Reads a page token into the cursor. OK, or INVALID_ARGUMENT naming list_cases.page_token. */
static nrm_status_t s_cursor(const Nrm__V1__ListCases *l, const char *scope, nrm_error_t *err,
                             int64_t *opened_us, char case_id[INTAKE_ID_MAX + 1])
{
    *opened_us = S_CURSOR_END_US;
    case_id[0] = '\0';
    if (!l->page_token[0])
        return NRM_OK;
    char plain[S_TOKEN_TEXT];
    size_t len = 0;
    if (strlen(l->page_token) >= S_TOKEN_TEXT ||
        sodium_base642bin((uint8_t *)plain, sizeof plain - 1, l->page_token, strlen(l->page_token),
                          NULL, &len, NULL, sodium_base64_VARIANT_URLSAFE_NO_PADDING) != 0)
        return nrm_fail(err, NRM_INVALID_ARGUMENT, "list_cases.page_token",
                        "page_token is not a token of ListCases");
    plain[len] = '\0';
    uint8_t hash[S_FILTER_HASH];
    s_filter_hash(l, scope, hash);
    char hex[2 * S_FILTER_HASH + 1], version[4] = "";
    sodium_bin2hex(hex, sizeof hex, hash, sizeof hash);
    long long us = 0;
    int consumed = 0;
    char token_hex[2 * S_FILTER_HASH + 1] = "";
    if (sscanf(plain, "%3[^.].%lld.%16[0-9a-f].%n", version, &us, token_hex, &consumed) != 3 ||
        strcmp(version, S_TOKEN_VERSION) != 0 || consumed <= 0 || strlen(plain + consumed) == 0 ||
        strlen(plain + consumed) > INTAKE_ID_MAX)
        return nrm_fail(err, NRM_INVALID_ARGUMENT, "list_cases.page_token",
                        "page_token is not a token of ListCases");
    if (strcmp(token_hex, hex) != 0)
        return nrm_fail(err, NRM_INVALID_ARGUMENT, "list_cases.page_token",
                        "page_token was made for other filters");
    *opened_us = us;
    snprintf(case_id, INTAKE_ID_MAX + 1, "%s", plain + consumed);
    return NRM_OK;
}

/* Checks the filters of a ListCases. */
static nrm_status_t s_check_list(const Nrm__V1__ListCases *l, nrm_config_t *config,
                                 nrm_error_t *err)
{
    if (nrm_check_text(err, "list_cases.region", l->region, S_REGION_MAX, false) != NRM_OK ||
        nrm_check_enum(err, "list_cases.urgency", &nrm__v1__urgency__descriptor, l->urgency,
                       true) != NRM_OK ||
        nrm_check_range(err, "list_cases.page_size", l->page_size, 0, INT32_MAX) != NRM_OK)
        return NRM_INVALID_ARGUMENT;
    if (l->region[0] && !nrm_config_region_known(config, l->region))
        return nrm_fail(err, NRM_INVALID_ARGUMENT, "list_cases.region",
                        "region is not one of the configured regions");
    return NRM_OK;
}

/* The sender's scope: every case for a coordinator, else its own when it manages any (else the
 * matrix refuses). scope receives "" or the sender. */
static nrm_status_t s_list_scope(nrm_call_t *call, const char **scope)
{
    *scope = "";
    if (nrm_authz_sender_is(call, NRM_ROLE_COORDINATOR))
        return nrm_authz_check(call, 0);
    nrm_params_t p = {0};
    nrm_params_text(&p, call->agency_id);
    PGresult *res = NULL;
    nrm_status_t st = nrm_db_exec(call->tx.db, "intake_read_manages", &p, &res, call->tx.err);
    if (st != NRM_OK)
        return st;
    bool manages = nrm_db_int(res, 0, 0) != 0;
    PQclear(res);
    *scope = call->agency_id;
    return nrm_authz_check(call, manages ? NRM_ROLE_CASE_MANAGER : 0);
}

nrm_status_t intake_list_cases(void *ctx, nrm_call_t *call)
{
    (void)ctx;
    const Nrm__V1__ListCases *l = call->request->list_cases;
    if (s_check_list(l, call->config, call->tx.err) != NRM_OK)
        return NRM_INVALID_ARGUMENT;
    const char *scope = "";
    nrm_status_t st = s_list_scope(call, &scope);
    if (st != NRM_OK)
        return st;
    int64_t after_us = 0;
    char after_id[INTAKE_ID_MAX + 1];
    if (s_cursor(l, scope, call->tx.err, &after_us, after_id) != NRM_OK)
        return NRM_INVALID_ARGUMENT;
    int page = l->page_size <= 0           ? S_PAGE_DEFAULT
               : l->page_size > S_PAGE_MAX ? S_PAGE_MAX
                                           : l->page_size;
    nrm_params_t p = {0};
    nrm_params_text(&p, l->region);
    nrm_params_bool(&p, l->open_only);
    nrm_params_bool(&p, l->minor_only);
    nrm_params_int(&p, l->urgency);
    nrm_params_int(&p, after_us);
    nrm_params_text(&p, after_id);
    nrm_params_int(&p, page + 1); /* one more: is there a next page? */
    if (scope[0])
        nrm_params_text(&p, scope);
    PGresult *res = NULL;
    st = nrm_db_exec(call->tx.db, scope[0] ? "intake_read_list_managed" : "intake_read_list_all",
                     &p, &res, call->tx.err);
    if (st != NRM_OK)
        return st;
    int rows = PQntuples(res);
    int shown = rows > page ? page : rows;
    Nrm__V1__CaseList *list = nrm_call_alloc(call, sizeof *list);
    nrm__v1__case_list__init(list);
    list->cases = nrm_call_alloc(call, (size_t)(shown ? shown : 1) * sizeof *list->cases);
    for (int i = 0; i < shown; i++)
        list->cases[list->n_cases++] = s_view(call, res, i);
    list->next_page_token =
        rows > page ? s_token(call, l, scope, nrm_db_int(res, shown - 1, S_COLUMN_OPENED_US),
                              nrm_db_text(res, shown - 1, 0))
                    : nrm_call_strdup(call, "");
    PQclear(res);
    call->reply->result_case = NRM__V1__REPLY__RESULT_CASE_LIST;
    call->reply->case_list = list;
    return NRM_OK;
}
