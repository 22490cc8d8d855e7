/* Referrals after they are made: a provider's answer (accept, or decline and the next provider),
 * the outcome, the deadline passing (expired, and the next provider), revocation when consent
 * is withdrawn or the case closes. Responders' notes are checked and dropped, never stored. */
#include "routing.h"
#include "nrm_authz.h"
#include "nrm_log.h"

#include <stdio.h>
#include <string.h>

#define S_STATE_MAX 16

static const char s_sql_load[] =
    "SELECT case_id, service, provider_id, state, due_ms FROM referrals WHERE referral_id = $1"
    " FOR UPDATE";
static const char s_sql_accept[] =
    "UPDATE referrals SET state = 'accepted', answered_ms = $2 WHERE referral_id = $1";
static const char s_sql_decline[] =
    "UPDATE referrals SET state = 'declined', answered_ms = $2, ended_ms = $2,"
    " decline_reason = $3 WHERE referral_id = $1";
static const char s_sql_complete[] =
    "UPDATE referrals SET state = 'completed', ended_ms = $2, service_delivered = $3,"
    " outcome_reason = $4 WHERE referral_id = $1";
static const char s_sql_service_completed[] =
    "UPDATE case_services SET state = 'completed', updated_at = now()"
    " WHERE case_id = $1 AND service = $2";
/* the earliest deadline, one probe of referrals_due: as EXISTS (... due_ms <= $1) the generic
 * plan expected a third of the rows to match and read them all, none being due */
static const char s_sql_overdue_any[] =
    "SELECT coalesce(min(due_ms) <= $1, false) FROM referrals WHERE state = 'pending'";
static const char s_sql_expire[] =
    "WITH due AS (SELECT referral_id FROM referrals WHERE state = 'pending' AND due_ms <= $1"
    "             ORDER BY due_ms, referral_id LIMIT $2 FOR UPDATE SKIP LOCKED),"
    " gone AS (UPDATE referrals r SET state = 'expired', ended_ms = $1 FROM due"
    "          WHERE r.referral_id = due.referral_id"
    "          RETURNING r.referral_id, r.case_id, r.service, r.provider_id, r.due_ms)"
    " SELECT referral_id, case_id, service, provider_id FROM gone ORDER BY due_ms, referral_id";
static const char s_sql_revoke[] =
    "UPDATE referrals r SET state = 'revoked', revoke_reason = $3, ended_ms = $4"
    " FROM case_services s WHERE r.case_id = $1 AND r.state IN ('pending', 'accepted')"
    " AND s.case_id = r.case_id AND s.service = r.service AND (NOT $2::boolean OR NOT s.mandatory)"
    " RETURNING r.referral_id";
static const char s_sql_services_wait[] =
    "UPDATE case_services SET state = 'awaiting_consent', updated_at = now()"
    " WHERE case_id = $1 AND NOT mandatory AND state IN ('referred', 'waiting')";
static const char s_sql_services_close[] =
    "UPDATE case_services SET state = 'closed', updated_at = now()"
    " WHERE case_id = $1 AND state IN ('awaiting_consent', 'referred', 'not_referred', 'waiting')";

void routing_referrals_prepare(nrm_db_t *db)
{
    nrm_db_statement(db, "routing_referral_load", s_sql_load);
    nrm_db_statement(db, "routing_referral_accept", s_sql_accept);
    nrm_db_statement(db, "routing_referral_decline", s_sql_decline);
    nrm_db_statement(db, "routing_referral_complete", s_sql_complete);
    nrm_db_statement(db, "routing_service_completed", s_sql_service_completed);
    nrm_db_statement(db, "routing_overdue_any", s_sql_overdue_any);
    nrm_db_statement(db, "routing_expire", s_sql_expire);
    nrm_db_statement(db, "routing_revoke", s_sql_revoke);
    nrm_db_statement(db, "routing_services_wait", s_sql_services_wait);
    nrm_db_statement(db, "routing_services_close", s_sql_services_close);
}

/* A referral as its answer and outcome need it. */
typedef struct {
    char case_id[ROUTING_ID_MAX];
    int service;
    char provider_id[ROUTING_ID_MAX];
    char state[S_STATE_MAX];
} s_referral_t;

/* Loads (and locks) the referral the sender answers: PERMISSION_DENIED unless the matrix lets
 * the sender (its provider, a coordinator), for an unknown referral too (nrm_authz_not_found),
 * NOT_FOUND when there is none,
 * FAILED_PRECONDITION unless it is in state `want` (and, pending, before its deadline). field
 * names the request's referral_id. */
static nrm_status_t s_load_for_provider(routing_t *self, nrm_call_t *call, const char *referral_id,
                                        const char *field, const char *want, s_referral_t *ref)
{
    nrm_status_t st = routing_lock(self, &call->tx);
    if (st != NRM_OK)
        return st;
    nrm_params_t p = {0};
    nrm_params_text(&p, referral_id);
    PGresult *res = NULL;
    st = nrm_db_exec(call->tx.db, "routing_referral_load", &p, &res, call->tx.err);
    if (st != NRM_OK)
        return st;
    if (PQntuples(res) != 1) {
        PQclear(res);
        return nrm_authz_not_found(call, field, "no such referral");
    }
    snprintf(ref->case_id, sizeof ref->case_id, "%s", nrm_db_text(res, 0, 0));
    ref->service = (int)nrm_db_int(res, 0, 1);
    snprintf(ref->provider_id, sizeof ref->provider_id, "%s", nrm_db_text(res, 0, 2));
    snprintf(ref->state, sizeof ref->state, "%s", nrm_db_text(res, 0, 3));
    int64_t due_ms = nrm_db_int(res, 0, 4);
    PQclear(res);
    call->subject_id = nrm_call_strdup(call, referral_id);
    unsigned relations =
        strcmp(ref->provider_id, call->agency_id) == 0 ? NRM_ROLE_REFERRED_PROVIDER : 0;
    if ((st = nrm_authz_check(call, relations)) != NRM_OK)
        return st;
    if (strcmp(ref->state, want) != 0)
        return nrm_fail(call->tx.err, NRM_FAILED_PRECONDITION, field, "the referral is %s, not %s",
                        ref->state, want);
    /* past its deadline a pending referral is the expiry's (passed on within a check), not the
     * provider's: an answer then would race the escalation */
    if (strcmp(want, "pending") == 0 && due_ms <= call->tx.now_ms)
        return nrm_fail(call->tx.err, NRM_FAILED_PRECONDITION, field,
                        "the referral's deadline has passed");
    return NRM_OK;
}

/* Sets the reply: the referral and its new state. */
static void s_reply(nrm_call_t *call, const char *referral_id, const char *state)
{
    Nrm__V1__ReferralRef *ref = nrm_call_alloc(call, sizeof *ref);
    nrm__v1__referral_ref__init(ref);
    ref->referral_id = nrm_call_strdup(call, referral_id);
    ref->state = nrm_call_strdup(call, state);
    call->reply->result_case = NRM__V1__REPLY__RESULT_REFERRAL_REF;
    call->reply->referral_ref = ref;
}

/* Loads the case of a referral that ended without service and refers the service on. */
static nrm_status_t s_refer_on(routing_t *self, nrm_tx_t *tx, const char *case_id, int service)
{
    routing_case_t c;
    nrm_status_t st = routing_case_load(tx, case_id, NULL, &c);
    if (st == NRM_OK)
        st = routing_reassign(self, tx, &c, service);
    routing_case_release(&c);
    return st;
}

nrm_status_t routing_respond(void *ctx, nrm_call_t *call)
{
    routing_t *self = ctx;
    const Nrm__V1__RespondToReferral *r = call->request->respond_to_referral;
    if (routing_check_respond(r, call->tx.err) != NRM_OK)
        return NRM_INVALID_ARGUMENT;
    s_referral_t ref;
    nrm_status_t st = s_load_for_provider(self, call, r->referral_id,
                                          "respond_to_referral.referral_id", "pending", &ref);
    if (st != NRM_OK)
        return st;
    bool accept = r->decision == NRM__V1__REFERRAL_DECISION__REFERRAL_DECISION_ACCEPT;
    nrm_params_t p = {0};
    nrm_params_text(&p, r->referral_id);
    nrm_params_int(&p, call->tx.now_ms);
    if (!accept)
        nrm_params_int(&p, r->decline_reason);
    st = nrm_db_exec(call->tx.db, accept ? "routing_referral_accept" : "routing_referral_decline",
                     &p, NULL, call->tx.err);
    Nrm__V1__ReferralAccepted accepted = NRM__V1__REFERRAL_ACCEPTED__INIT;
    Nrm__V1__ReferralDeclined declined = NRM__V1__REFERRAL_DECLINED__INIT;
    Nrm__V1__Event ev = NRM__V1__EVENT__INIT;
    ev.case_id = ref.case_id;
    if (accept) {
        accepted.referral_id = r->referral_id;
        accepted.provider_agency_id = ref.provider_id;
        ev.body_case = NRM__V1__EVENT__BODY_REFERRAL_ACCEPTED;
        ev.referral_accepted = &accepted;
    } else {
        declined.referral_id = r->referral_id;
        declined.provider_agency_id = ref.provider_id;
        declined.decline_reason = r->decline_reason;
        ev.body_case = NRM__V1__EVENT__BODY_REFERRAL_DECLINED;
        ev.referral_declined = &declined;
    }
    if (st == NRM_OK)
        st = routing_emit(self, &call->tx, &ev);
    if (st == NRM_OK && !accept)
        st = s_refer_on(self, &call->tx, ref.case_id, ref.service);
    if (st == NRM_OK && !accept) /* the provider has a place again */
        st = routing_serve_waiting(self, &call->tx);
    if (st == NRM_OK)
        s_reply(call, r->referral_id, accept ? "accepted" : "declined");
    return st;
}

nrm_status_t routing_complete(void *ctx, nrm_call_t *call)
{
    routing_t *self = ctx;
    const Nrm__V1__CompleteReferral *r = call->request->complete_referral;
    if (routing_check_complete(r, call->tx.err) != NRM_OK)
        return NRM_INVALID_ARGUMENT;
    s_referral_t ref;
    nrm_status_t st = s_load_for_provider(self, call, r->referral_id,
                                          "complete_referral.referral_id", "accepted", &ref);
    if (st != NRM_OK)
        return st;
    nrm_params_t p = {0};
    nrm_params_text(&p, r->referral_id);
    nrm_params_int(&p, call->tx.now_ms);
    nrm_params_bool(&p, r->service_delivered);
    nrm_params_text(&p, r->service_delivered ? "delivered" : r->reason);
    st = nrm_db_exec(call->tx.db, "routing_referral_complete", &p, NULL, call->tx.err);
    nrm_params_t s = {0};
    nrm_params_text(&s, ref.case_id);
    nrm_params_int(&s, ref.service);
    if (st == NRM_OK)
        st = nrm_db_exec(call->tx.db, "routing_service_completed", &s, NULL, call->tx.err);
    Nrm__V1__ReferralCompleted body = NRM__V1__REFERRAL_COMPLETED__INIT;
    body.referral_id = r->referral_id;
    body.service_delivered = r->service_delivered;
    body.reason = r->reason;
    if (st == NRM_OK)
        st = routing_emit_body(self, &call->tx, ref.case_id,
                               NRM__V1__EVENT__BODY_REFERRAL_COMPLETED, &body);
    if (st == NRM_OK) /* the provider has a place again */
        st = routing_serve_waiting(self, &call->tx);
    if (st == NRM_OK)
        s_reply(call, r->referral_id, "completed");
    return st;
}

/* Publishes referral.expired for one row of the expiry and refers the service on. */
static nrm_status_t s_expired(routing_t *self, nrm_tx_t *tx, const PGresult *res, int row)
{
    Nrm__V1__ReferralExpired body = NRM__V1__REFERRAL_EXPIRED__INIT;
    body.referral_id = (char *)nrm_db_text(res, row, 0);
    body.provider_agency_id = (char *)nrm_db_text(res, row, 3);
    Nrm__V1__Event ev = NRM__V1__EVENT__INIT;
    ev.case_id = (char *)nrm_db_text(res, row, 1);
    ev.body_case = NRM__V1__EVENT__BODY_REFERRAL_EXPIRED;
    ev.referral_expired = &body;
    int service = (int)nrm_db_int(res, row, 2);
    nrm_log_info("referral expired", "{s:s, s:s, s:s, s:s}", "referral_id", body.referral_id,
                 "case_id", ev.case_id, "service_type", routing_service_name(service), "provider",
                 body.provider_agency_id);
    nrm_db_count_on_commit(tx->db, self->referrals_expired, 1);
    nrm_status_t st = routing_emit(self, tx, &ev);
    return st == NRM_OK ? s_refer_on(self, tx, ev.case_id, service) : st;
}

nrm_status_t routing_expire_overdue(void *ctx, nrm_tx_t *tx)
{
    routing_t *self = ctx;
    nrm_params_t p = {0};
    nrm_params_int(&p, tx->now_ms);
    PGresult *res = NULL;
    nrm_status_t st = nrm_db_exec(tx->db, "routing_overdue_any", &p, &res, tx->err);
    if (st != NRM_OK)
        return st;
    bool any = nrm_db_int(res, 0, 0) != 0;
    PQclear(res);
    if (!any || (st = routing_lock(self, tx)) != NRM_OK)
        return st;
    nrm_params_int(&p, self->expire_batch);
    st = nrm_db_exec(tx->db, "routing_expire", &p, &res, tx->err);
    if (st != NRM_OK)
        return st;
    for (int row = 0; st == NRM_OK && row < PQntuples(res); row++)
        st = s_expired(self, tx, res, row);
    PQclear(res);
    return st == NRM_OK ? routing_serve_waiting(self, tx) : st; /* places freed */
}

nrm_status_t routing_revoke_open(routing_t *self, nrm_tx_t *tx, const char *case_id,
                                 bool consented_only, const char *reason)
{
    routing_prefetch_drop(self); /* open counts fall: candidates are asked for again */
    nrm_status_t st = routing_batch_sync(self, tx); /* the states held are those changed here */
    if (st != NRM_OK)
        return st;
    nrm_params_t p = {0};
    nrm_params_text(&p, case_id);
    nrm_params_bool(&p, consented_only);
    nrm_params_text(&p, reason);
    nrm_params_int(&p, tx->now_ms);
    PGresult *res = NULL;
    st = nrm_db_exec(tx->db, "routing_revoke", &p, &res, tx->err);
    if (st != NRM_OK)
        return st;
    for (int row = 0; st == NRM_OK && row < PQntuples(res); row++) {
        Nrm__V1__ReferralRevoked body = NRM__V1__REFERRAL_REVOKED__INIT;
        body.referral_id = (char *)nrm_db_text(res, row, 0);
        body.reason = (char *)reason;
        Nrm__V1__Event ev = NRM__V1__EVENT__INIT;
        ev.case_id = (char *)case_id;
        ev.body_case = NRM__V1__EVENT__BODY_REFERRAL_REVOKED;
        ev.referral_revoked = &body;
        st = routing_emit(self, tx, &ev);
    }
    PQclear(res);
    nrm_params_t s = {0};
    nrm_params_text(&s, case_id);
    if (st == NRM_OK)
        st =
            nrm_db_exec(tx->db, consented_only ? "routing_services_wait" : "routing_services_close",
                        &s, NULL, tx->err);
    if (st == NRM_OK && consented_only) /* a pending bed request goes with them */
        st = routing_shelter_withdraw(self, tx, case_id, reason);
    return st;
}
