/* ListReferrals: the referrals an agency may see, filtered and paged. A provider sees those made
 * to it, the case manager and the reporters those of their cases, the coordinator all; with a
 * case_id, a sender with none of these relations to the case is refused (nrm_authz). Pages
 * follow creation order (created_ms, referral_id), which never changes once a referral is
 * written, so a token stays valid while referrals are created or answered between pages. */
#include "nrm_authz.h"
#include "nrm_page.h"
#include "nrm_validate.h"
#include "routing.h"

#include <stdio.h>
#include <string.h>

#define S_STATES_MAX 6    /* distinct referral states */
#define S_SERVICES_MAX 16 /* service filters accepted */
#define S_FIELD_MAX 48
#define S_LIST_TEXT 128 /* a filter list joined by commas */

static const char *const s_states[] = {"pending", "accepted",  "declined",
                                       "expired", "completed", "revoked"};

#define S_COLUMNS                                                                                  \
    "r.referral_id, r.case_id, r.service, r.state, r.attempt, r.urgency, c.region, r.due_ms,"      \
    " r.rule_id, r.reason, r.provider_id,"                                                         \
    " GREATEST(r.created_ms, COALESCE(r.answered_ms, 0), COALESCE(r.ended_ms, 0)), r.created_ms"
/* $3 states and $4 services joined by commas ("" for all), $5 overdue only at $6, $7 first page
 * or after ($8 created_ms, $9 referral_id); $10 the rows wanted */
#define S_FILTERS                                                                                  \
    " AND ($3::text = '' OR r.state = ANY (string_to_array($3::text, ',')))"                       \
    " AND ($4::text = '' OR r.service = ANY (string_to_array($4::text, ',')::int[]))"              \
    " AND (NOT $5::boolean OR (r.state = 'pending' AND r.due_ms <= $6::bigint))"                   \
    " AND ($7::boolean OR (r.created_ms, r.referral_id) > ($8::bigint, $9::text))"
#define S_ORDER " ORDER BY r.created_ms, r.referral_id LIMIT $10"
#define S_REPORTS_ON_CASE                                                                          \
    "EXISTS (SELECT 1 FROM case_reporters p WHERE p.case_id = r.case_id AND p.agency_id = $1)"

/* The coordinator, no case: every referral ($1 and $2 are "") */
static const char s_sql_all[] =
    "SELECT " S_COLUMNS " FROM referrals r JOIN cases c"
    " ON c.case_id = r.case_id WHERE $1::text = '' AND $2::text = ''" S_FILTERS S_ORDER;
/* One case ($2), as the coordinator ($1 "") or as an agency: the rows it relates to */
static const char s_sql_case[] =
    "SELECT " S_COLUMNS " FROM referrals r JOIN cases c ON c.case_id = r.case_id"
    " WHERE r.case_id = $2::text AND ($1::text = '' OR r.provider_id = $1::text"
    " OR c.case_manager = $1::text OR " S_REPORTS_ON_CASE ")" S_FILTERS S_ORDER;
/* An agency ($1), no case ($2 ""): its inbox, its managed cases', its reported cases' (one
 * ordered, limited branch each, so that every branch can use its index) */
static const char s_sql_scoped[] =
    "WITH mine AS ("
    " (SELECT r.referral_id FROM referrals r WHERE r.provider_id = $1::text AND $2::text = "
    "''" S_FILTERS S_ORDER ")"
    " UNION (SELECT r.referral_id FROM referrals r JOIN cases m ON m.case_id = r.case_id"
    "  WHERE m.case_manager = $1::text" S_FILTERS S_ORDER ")"
    " UNION (SELECT r.referral_id FROM referrals r JOIN case_reporters p"
    "  ON p.case_id = r.case_id WHERE p.agency_id = $1::text" S_FILTERS S_ORDER "))"
    " SELECT " S_COLUMNS " FROM mine JOIN referrals r ON r.referral_id = mine.referral_id"
    " JOIN cases c ON c.case_id = r.case_id ORDER BY r.created_ms, r.referral_id LIMIT $10";
static const char s_sql_relations[] =
    "SELECT c.case_manager = $2::text,"
    " EXISTS (SELECT 1 FROM case_reporters p WHERE p.case_id = $1 AND p.agency_id = $2::text),"
    " EXISTS (SELECT 1 FROM referrals r WHERE r.case_id = $1 AND r.provider_id = $2::text)"
    " FROM cases c WHERE c.case_id = $1";

void routing_list_prepare(nrm_db_t *db)
{
    nrm_db_statement(db, "routing_list_all", s_sql_all);
    nrm_db_statement(db, "routing_list_case", s_sql_case);
    nrm_db_statement(db, "routing_list_scoped", s_sql_scoped);
    nrm_db_statement(db, "routing_case_relations", s_sql_relations);
}

/* True when state is a referral state. */
static bool s_state_known(const char *state)
{
    for (size_t i = 0; i < sizeof s_states / sizeof s_states[0]; i++)
        if (strcmp(state, s_states[i]) == 0)
            return true;
    return false;
}

/* Checks the filters and joins them for SQL: states and services ("" when none). */
static nrm_status_t s_check(const Nrm__V1__ListReferrals *l, char *states, char *services,
                            nrm_error_t *err)
{
    char field[S_FIELD_MAX];
    if (l->n_state > S_STATES_MAX)
        return nrm_fail(err, NRM_INVALID_ARGUMENT, "list_referrals.state", "at most %d states",
                        S_STATES_MAX);
    size_t used = 0;
    states[0] = '\0';
    for (size_t i = 0; i < l->n_state; i++) {
        if (!s_state_known(l->state[i]))
            return nrm_fail(err, NRM_INVALID_ARGUMENT,
                            nrm_path_index(field, sizeof field, "list_referrals.state", i),
                            "state is pending, accepted, declined, expired, completed or revoked");
        used +=
            (size_t)snprintf(states + used, S_LIST_TEXT - used, "%s%s", i ? "," : "", l->state[i]);
    }
    if (l->n_service > S_SERVICES_MAX)
        return nrm_fail(err, NRM_INVALID_ARGUMENT, "list_referrals.service", "at most %d services",
                        S_SERVICES_MAX);
    used = 0;
    services[0] = '\0';
    for (size_t i = 0; i < l->n_service; i++) {
        if (nrm_check_enum(err, nrm_path_index(field, sizeof field, "list_referrals.service", i),
                           &nrm__v1__service_type__descriptor, (int)l->service[i], false) != NRM_OK)
            return NRM_INVALID_ARGUMENT;
        used += (size_t)snprintf(services + used, S_LIST_TEXT - used, "%s%d", i ? "," : "",
                                 (int)l->service[i]);
    }
    return nrm_check_text(err, "list_referrals.case_id", l->case_id, ROUTING_ID_MAX - 1, false);
}

/* The sender's relations to the case (none when routing does not know it). */
static nrm_status_t s_relations(nrm_call_t *call, const char *case_id, unsigned *relations)
{
    *relations = 0;
    nrm_params_t p = {0};
    nrm_params_text(&p, case_id);
    nrm_params_text(&p, call->agency_id);
    PGresult *res = NULL;
    nrm_status_t st = nrm_db_exec(call->tx.db, "routing_case_relations", &p, &res, call->tx.err);
    if (st != NRM_OK)
        return st;
    if (PQntuples(res) == 1) {
        *relations |= nrm_db_int(res, 0, 0) ? NRM_ROLE_CASE_MANAGER : 0;
        *relations |= nrm_db_int(res, 0, 1) ? NRM_ROLE_REPORTER : 0;
        *relations |= nrm_db_int(res, 0, 2) ? NRM_ROLE_REFERRED_PROVIDER : 0;
    }
    PQclear(res);
    return NRM_OK;
}

/* One row of a list statement as a ReferralRow (strings owned by the call). */
static Nrm__V1__ReferralRow *s_row(nrm_call_t *call, const PGresult *res, int i)
{
    Nrm__V1__ReferralRow *r = nrm_call_alloc(call, sizeof *r);
    nrm__v1__referral_row__init(r);
    r->referral_id = nrm_call_strdup(call, nrm_db_text(res, i, 0));
    r->case_id = nrm_call_strdup(call, nrm_db_text(res, i, 1));
    r->service = (Nrm__V1__ServiceType)nrm_db_int(res, i, 2);
    r->state = nrm_call_strdup(call, nrm_db_text(res, i, 3));
    r->attempt = (int32_t)nrm_db_int(res, i, 4);
    r->urgency = (Nrm__V1__Urgency)nrm_db_int(res, i, 5);
    r->region = nrm_call_strdup(call, nrm_db_text(res, i, 6));
    r->due_ms = nrm_db_int(res, i, 7);
    r->rule_id = nrm_call_strdup(call, nrm_db_text(res, i, 8));
    r->reason = nrm_call_strdup(call, nrm_db_text(res, i, 9));
    r->provider_agency_id = nrm_call_strdup(call, nrm_db_text(res, i, 10));
    r->updated_ms = nrm_db_int(res, i, 11);
    return r;
}

/* Sets the reply to the first page->size rows of res, with the next page's token when res has
 * one row more. */
static void s_reply(nrm_call_t *call, const PGresult *res, const nrm_page_t *page)
{
    Nrm__V1__ReferralList *list = nrm_call_alloc(call, sizeof *list);
    nrm__v1__referral_list__init(list);
    int rows = PQntuples(res);
    int shown = rows > page->size ? page->size : rows;
    list->referrals = nrm_call_alloc(call, (size_t)(shown ? shown : 1) * sizeof *list->referrals);
    for (int i = 0; i < shown; i++)
        list->referrals[list->n_referrals++] = s_row(call, res, i);
    list->next_page_token = "";
    if (rows > page->size) {
        char token[NRM_PAGE_TOKEN_MAX];
        nrm_page_token(token, nrm_db_int(res, shown - 1, 12), nrm_db_text(res, shown - 1, 0));
        list->next_page_token = nrm_call_strdup(call, token);
    }
    call->reply->result_case = NRM__V1__REPLY__RESULT_REFERRAL_LIST;
    call->reply->referral_list = list;
}

nrm_status_t routing_list_referrals(void *ctx, nrm_call_t *call)
{
    (void)ctx;
    const Nrm__V1__ListReferrals *l = call->request->list_referrals;
    char states[S_LIST_TEXT], services[S_LIST_TEXT];
    nrm_page_t page;
    if (s_check(l, states, services, call->tx.err) != NRM_OK ||
        nrm_page_from_request(call->tx.err, "list_referrals", l->page_token, l->page_size, &page) !=
            NRM_OK)
        return NRM_INVALID_ARGUMENT;
    bool coordinator = nrm_authz_sender_is(call, NRM_ROLE_COORDINATOR);
    bool one_case = l->case_id[0] != '\0';
    /* without a case the answer holds only rows the sender relates to as provider, case
     * manager or reporter (every one a relation the matrix allows); with one, the sender's
     * relations to that case decide */
    unsigned relations = NRM_ROLE_REFERRED_PROVIDER | NRM_ROLE_CASE_MANAGER | NRM_ROLE_REPORTER;
    nrm_status_t st = one_case ? s_relations(call, l->case_id, &relations) : NRM_OK;
    if (st == NRM_OK)
        st = nrm_authz_check(call, relations);
    if (st != NRM_OK)
        return st;
    if (one_case)
        call->subject_id = nrm_call_strdup(call, l->case_id);
    nrm_params_t p = {0};
    nrm_params_text(&p, coordinator ? "" : call->agency_id);
    nrm_params_text(&p, l->case_id);
    nrm_params_text(&p, states);
    nrm_params_text(&p, services);
    nrm_params_bool(&p, l->overdue_only);
    nrm_params_int(&p, call->tx.now_ms);
    nrm_params_bool(&p, page.first);
    nrm_params_int(&p, page.after_key);
    nrm_params_text(&p, page.after_id);
    nrm_params_int(&p, page.size + 1);
    const char *statement = one_case      ? "routing_list_case"
                            : coordinator ? "routing_list_all"
                                          : "routing_list_scoped";
    PGresult *res = NULL;
    bool scoped = !one_case && !coordinator;
    /* PostgreSQL 15 sizes a Memoize node's hash table by the cases it expects, and allocates
     * it for every execution: for the scoped list that costs tens of ms against a millisecond
     * of work (tools/bench/referrals.sh), so Memoize is off while it is planned and run */
    if (scoped)
        st = nrm_db_sql(call->tx.db, "SET LOCAL enable_memoize = off", call->tx.err);
    if (st == NRM_OK)
        st = nrm_db_exec(call->tx.db, statement, &p, &res, call->tx.err);
    if (scoped && st == NRM_OK)
        st = nrm_db_sql(call->tx.db, "SET LOCAL enable_memoize = DEFAULT", call->tx.err);
    if (st != NRM_OK) {
        PQclear(res);
        return st;
    }
    s_reply(call, res, &page);
    PQclear(res);
    return NRM_OK;
}
