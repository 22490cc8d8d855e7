/* Each case's last request for a bed (bed_requests), and RequestBed: the case manager or the
 * coordinator asks for a bed again when the last request ended without one (a no_show), with
 * the facts routing gave last. The routing stream's consumer is shelter_batch.c. */
#include "nrm_authz.h"
#include "nrm_crypto.h"
#include "nrm_log.h"
#include "nrm_validate.h"
#include "shelter.h"

#include <stdio.h>
#include <string.h>

#define S_FIELD "request_bed.case_id"

static const char s_sql_remember[] =
    "INSERT INTO bed_requests (case_id, request_event_id, region, urgency, safety_risk, is_minor,"
    " age_years, gender, languages, disability, children, beds, requested_at_ms)"
    " VALUES ($1, $2::uuid, $3, $4, $5, $6, $7, $8, $9::text[], $10, $11, $12, "
    "$13)" SHELTER_REMEMBER_CONFLICT;
static const char s_sql_withdraw[] =
    "UPDATE bed_requests SET withdrawn = true, updated_at = now() WHERE case_id = $1";
/* the request (locked), whether it was withdrawn, and the case's manager */
static const char s_sql_load[] =
    "SELECT 0, " SHELTER_NEED_COLUMNS ", withdrawn,"
    " coalesce((SELECT agency_id FROM case_managers m WHERE m.case_id = r.case_id), '')"
    " FROM bed_requests r WHERE case_id = $1 FOR UPDATE";
static const char s_sql_manages[] =
    "SELECT EXISTS (SELECT 1 FROM case_managers WHERE case_id = $1 AND agency_id = $2)";
static const char s_sql_held[] =
    "SELECT allocation_id FROM allocations WHERE case_id = $1 AND state = 'held'";
#define S_COL_WITHDRAWN 14
#define S_COL_MANAGER 15

void shelter_requests_prepare(nrm_db_t *db)
{
    nrm_db_statement(db, "requests_remember", s_sql_remember);
    nrm_db_statement(db, "requests_withdraw", s_sql_withdraw);
    nrm_db_statement(db, "requests_load", s_sql_load);
    nrm_db_statement(db, "requests_manages", s_sql_manages);
    nrm_db_statement(db, "requests_held", s_sql_held);
}

nrm_status_t shelter_request_remember(nrm_tx_t *tx, const shelter_need_t *need)
{
    shelter_need_text_t text;
    nrm_params_t p = {0};
    shelter_need_params(&p, need, &text);
    return nrm_db_exec(tx->db, "requests_remember", &p, NULL, tx->err);
}

nrm_status_t shelter_request_withdraw(nrm_tx_t *tx, const char *case_id)
{
    nrm_params_t p = {0};
    nrm_params_text(&p, case_id);
    return nrm_db_exec(tx->db, "requests_withdraw", &p, NULL, tx->err);
}

/* The answer when shelter has no request for the case: NOT_FOUND to its case manager and a
 * coordinator, PERMISSION_DENIED to others (who learn nothing of whether the case exists). */
static nrm_status_t s_no_request(nrm_call_t *call, const char *case_id)
{
    nrm_params_t p = {0};
    nrm_params_text(&p, case_id);
    nrm_params_text(&p, call->agency_id);
    PGresult *res = NULL;
    nrm_status_t st = nrm_db_exec(call->tx.db, "requests_manages", &p, &res, call->tx.err);
    if (st != NRM_OK)
        return st;
    bool is_manager = nrm_db_int(res, 0, 0) != 0;
    PQclear(res);
    if ((st = nrm_authz_check(call, is_manager ? NRM_ROLE_CASE_MANAGER : 0)) != NRM_OK)
        return st;
    return nrm_fail(call->tx.err, NRM_NOT_FOUND, S_FIELD, "no bed was requested for this case");
}

/* Loads (and locks) the case's last request into need for the sender: PERMISSION_DENIED unless
 * the matrix lets the sender (its case manager, a coordinator), checked before NOT_FOUND (shelter
 * has no request for the case: s_no_request); *withdrawn tells whether routing withdrew it. */
static nrm_status_t s_load(nrm_call_t *call, const char *case_id, shelter_need_t *need,
                           bool *withdrawn)
{
    nrm_params_t p = {0};
    nrm_params_text(&p, case_id);
    PGresult *res = NULL;
    nrm_status_t st = nrm_db_exec(call->tx.db, "requests_load", &p, &res, call->tx.err);
    if (st != NRM_OK)
        return st;
    if (PQntuples(res) != 1) {
        PQclear(res);
        return s_no_request(call, case_id);
    }
    shelter_need_read(res, 0, need);
    *withdrawn = nrm_db_int(res, 0, S_COL_WITHDRAWN) != 0;
    bool is_manager = strcmp(nrm_db_text(res, 0, S_COL_MANAGER), call->agency_id) == 0;
    PQclear(res);
    st = nrm_authz_check(call, is_manager ? NRM_ROLE_CASE_MANAGER : 0);
    if (st == NRM_OK)
        call->subject_id = nrm_call_strdup(call, case_id);
    return st;
}

/* Sets the reply: the hold made, or the waitlist place. */
static nrm_status_t s_reply(nrm_call_t *call, const char *case_id, bool allocated, int position)
{
    Nrm__V1__AllocationRef *ref = nrm_call_alloc(call, sizeof *ref);
    nrm__v1__allocation_ref__init(ref);
    ref->allocation_id = nrm_call_strdup(call, "");
    ref->state = nrm_call_strdup(call, allocated ? "held" : "waiting");
    ref->waitlist_position = position;
    call->reply->result_case = NRM__V1__REPLY__RESULT_ALLOCATION_REF;
    call->reply->allocation_ref = ref;
    if (!allocated)
        return NRM_OK;
    nrm_params_t p = {0};
    nrm_params_text(&p, case_id);
    PGresult *res = NULL;
    nrm_status_t st = nrm_db_exec(call->tx.db, "requests_held", &p, &res, call->tx.err);
    if (st == NRM_OK && PQntuples(res) == 1)
        ref->allocation_id = nrm_call_strdup(call, nrm_db_text(res, 0, 0));
    PQclear(res);
    return st;
}

nrm_status_t shelter_request_bed(void *ctx, nrm_call_t *call)
{
    shelter_t *self = ctx;
    const Nrm__V1__RequestBed *r = call->request->request_bed;
    if (nrm_check_text(call->tx.err, S_FIELD, r->case_id, SHELTER_ID_MAX, true) != NRM_OK)
        return NRM_INVALID_ARGUMENT;
    shelter_need_t need;
    bool withdrawn = false, closed = false, served = false;
    nrm_status_t st = shelter_lock_beds(&call->tx);
    if (st == NRM_OK)
        st = s_load(call, r->case_id, &need, &withdrawn);
    if (st == NRM_OK)
        st = shelter_case_state(&call->tx, r->case_id, &closed, &served);
    if (st != NRM_OK)
        return st;
    if (closed)
        return nrm_fail(call->tx.err, NRM_FAILED_PRECONDITION, S_FIELD, "the case is closed");
    if (withdrawn)
        return nrm_fail(call->tx.err, NRM_FAILED_PRECONDITION, S_FIELD,
                        "consent to referral was withdrawn: routing asks again once it is given");
    if (served)
        return nrm_fail(call->tx.err, NRM_FAILED_PRECONDITION, S_FIELD,
                        "the case holds or occupies a bed, or waits for one");
    /* a new request: its own id, and its time in the queue from now */
    nrm_uuid_v4(need.request_event_id);
    need.requested_at_ms = call->tx.now_ms;
    bool allocated = false;
    int position = 0;
    st = shelter_request_remember(&call->tx, &need);
    if (st == NRM_OK)
        st = shelter_place_need(self, &call->tx, &need, &allocated, &position);
    if (st == NRM_OK)
        st = s_reply(call, r->case_id, allocated, position);
    return st;
}
