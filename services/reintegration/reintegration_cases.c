/* What other services' streams do to plans: routing's referral.created (the referrals that may
 * open a plan) and referral.accepted (opens it), and the life of the case from intake's stream
 * (the case manager and nationality, consent withdrawn and given again, the case closed, a new
 * report linked to the case). */
#include "nrm_log.h"
#include "reintegration.h"

#include <stdio.h>
#include <string.h>

#define S_RISK_LINKED "linked_report"

static const char s_sql_case_upsert[] =
    "INSERT INTO cases (case_id, manager_agency_id, nationality, region, consent, last_seq)"
    " VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (case_id) DO NOTHING";
/* an event of intake's stream is applied to a known case once, even when the stream is read
 * again from an earlier checkpoint */
static const char s_sql_case_advance[] =
    "UPDATE cases SET last_seq = $2 WHERE case_id = $1 AND last_seq < $2 RETURNING 1";
static const char s_sql_case_manager[] =
    "UPDATE cases SET manager_agency_id = $2 WHERE case_id = $1";
static const char s_sql_case_consent[] = "UPDATE cases SET consent = $2 WHERE case_id = $1";
static const char s_sql_case_closed[] = "UPDATE cases SET open = false WHERE case_id = $1";
static const char s_sql_referral_add[] =
    "INSERT INTO referrals (referral_id, case_id, service, provider_agency_id)"
    " VALUES ($1, $2, $3, $4) ON CONFLICT (referral_id) DO NOTHING";
static const char s_sql_referral_load[] =
    "SELECT case_id, service FROM referrals WHERE referral_id = $1";
static const char s_sql_case_live_plans[] =
    "SELECT plan_id FROM plans WHERE case_id = $1 AND state <> 'closed' ORDER BY plan_id"
    " FOR UPDATE";
static const char s_sql_suspend[] =
    "UPDATE plans SET state = 'suspended', suspended_ms = $2 WHERE case_id = $1"
    " AND state = 'open' RETURNING plan_id";
static const char s_sql_resume[] =
    "WITH s AS (SELECT plan_id, suspended_ms FROM plans WHERE case_id = $1"
    "           AND state = 'suspended' FOR UPDATE)"
    " UPDATE plans p SET state = 'open', suspended_ms = NULL FROM s WHERE p.plan_id = s.plan_id"
    " RETURNING p.plan_id, s.suspended_ms";
static const char s_sql_risk_plan[] =
    "SELECT plan_id, state FROM plans WHERE case_id = $1 AND (state <> 'closed' OR closed_ms >= $2)"
    " ORDER BY opened_ms DESC, plan_id LIMIT 1";

void reint_cases_prepare(nrm_db_t *db)
{
    nrm_db_statement(db, "reint_case_upsert", s_sql_case_upsert);
    nrm_db_statement(db, "reint_case_advance", s_sql_case_advance);
    nrm_db_statement(db, "reint_case_manager", s_sql_case_manager);
    nrm_db_statement(db, "reint_case_consent", s_sql_case_consent);
    nrm_db_statement(db, "reint_case_closed", s_sql_case_closed);
    nrm_db_statement(db, "reint_referral_add", s_sql_referral_add);
    nrm_db_statement(db, "reint_referral_load", s_sql_referral_load);
    nrm_db_statement(db, "reint_case_live_plans", s_sql_case_live_plans);
    nrm_db_statement(db, "reint_suspend", s_sql_suspend);
    nrm_db_statement(db, "reint_resume", s_sql_resume);
    nrm_db_statement(db, "reint_risk_plan", s_sql_risk_plan);
}

static nrm_status_t s_set_consent(nrm_tx_t *tx, const char *case_id, bool consent);

/* referral.accepted: the referral is one of ours (REINTEGRATION or RETURN_ASSISTANCE, from
 * referral.created) and opens a plan managed by the provider, unless one is live already; a
 * case whose consent is withdrawn gets it suspended. */
static nrm_status_t s_on_accepted(reint_t *self, nrm_tx_t *tx, const Nrm__V1__Event *ev)
{
    const Nrm__V1__ReferralAccepted *a = ev->referral_accepted;
    if (!a->referral_id[0] || strlen(a->referral_id) > REINT_ID_MAX ||
        strlen(a->provider_agency_id) > REINT_ID_MAX)
        return NRM_OK;
    nrm_params_t p = {0};
    nrm_params_text(&p, a->referral_id);
    PGresult *res = NULL;
    nrm_status_t st = nrm_db_exec(tx->db, "reint_referral_load", &p, &res, tx->err);
    if (st != NRM_OK)
        return st;
    bool ours = PQntuples(res) == 1;
    char case_id[REINT_ID_MAX + 1] = "";
    int service = 0;
    if (ours) {
        snprintf(case_id, sizeof case_id, "%s", nrm_db_text(res, 0, 0));
        service = (int)nrm_db_int(res, 0, 1);
    }
    PQclear(res);
    if (!ours)
        return NRM_OK;
    int kind = service == NRM__V1__SERVICE_TYPE__SERVICE_TYPE_RETURN_ASSISTANCE
                   ? NRM__V1__PLAN_KIND__PLAN_KIND_ASSISTED_VOLUNTARY_RETURN
                   : NRM__V1__PLAN_KIND__PLAN_KIND_LOCAL_REINTEGRATION;
    reint_case_t c;
    if ((st = reint_case_load(tx, case_id, &c)) != NRM_OK)
        return st;
    if (kind == NRM__V1__PLAN_KIND__PLAN_KIND_ASSISTED_VOLUNTARY_RETURN &&
        reint_national(self, &c)) {
        nrm_log_warn("return referral for a national: no plan", "{s:s}", "referral_id",
                     a->referral_id);
        return NRM_OK;
    }
    if (c.known && !c.open)
        return NRM_OK;
    bool opened = false;
    st = reint_plan_open(self, tx, case_id, kind, a->provider_agency_id, a->referral_id, &opened,
                         NULL);
    /* the two streams are read apart: consent withdrawn on intake's may have been applied before
     * this acceptance on routing's; the plan is then suspended at once, as it would have been */
    if (st == NRM_OK && opened && c.known && !c.consent)
        st = s_set_consent(tx, case_id, false);
    return st;
}

nrm_status_t reint_on_referral_event(void *ctx, nrm_tx_t *tx, const Nrm__V1__Event *ev)
{
    reint_t *self = ctx;
    if (ev->body_case == NRM__V1__EVENT__BODY_REFERRAL_CREATED) {
        const Nrm__V1__ReferralCreated *r = ev->referral_created;
        if ((r->service != NRM__V1__SERVICE_TYPE__SERVICE_TYPE_REINTEGRATION &&
             r->service != NRM__V1__SERVICE_TYPE__SERVICE_TYPE_RETURN_ASSISTANCE) ||
            !r->referral_id[0] || strlen(r->referral_id) > REINT_ID_MAX || !ev->case_id[0] ||
            strlen(ev->case_id) > REINT_ID_MAX)
            return NRM_OK;
        nrm_params_t p = {0};
        nrm_params_text(&p, r->referral_id);
        nrm_params_text(&p, ev->case_id);
        nrm_params_int(&p, r->service);
        nrm_params_text(&p, r->provider_agency_id);
        return nrm_db_exec(tx->db, "reint_referral_add", &p, NULL, tx->err);
    }
    if (ev->body_case == NRM__V1__EVENT__BODY_REFERRAL_ACCEPTED)
        return s_on_accepted(self, tx, ev);
    return NRM_OK;
}
/* ---- the case's life ---- */

/* Closes every live plan of the case (the case closed). */
static nrm_status_t s_close_case_plans(nrm_tx_t *tx, const char *case_id, const char *reason)
{
    nrm_params_t p = {0};
    nrm_params_text(&p, case_id);
    PGresult *res = NULL;
    nrm_status_t st = nrm_db_exec(tx->db, "reint_case_closed", &p, NULL, tx->err);
    if (st == NRM_OK)
        st = nrm_db_exec(tx->db, "reint_case_live_plans", &p, &res, tx->err);
    if (st != NRM_OK)
        return st;
    for (int i = 0; i < PQntuples(res) && st == NRM_OK; i++)
        st = reint_plan_close(tx, case_id, nrm_db_text(res, i, 0),
                              NRM__V1__PLAN_OUTCOME__PLAN_OUTCOME_CASE_CLOSED, reason);
    PQclear(res);
    return st;
}

/* Suspends the case's open plans (consent withdrawn) or resumes its suspended ones. */
static nrm_status_t s_set_consent(nrm_tx_t *tx, const char *case_id, bool consent)
{
    nrm_params_t p = {0};
    nrm_params_text(&p, case_id);
    nrm_params_bool(&p, consent);
    nrm_status_t st = nrm_db_exec(tx->db, "reint_case_consent", &p, NULL, tx->err);
    nrm_params_t q = {0};
    nrm_params_text(&q, case_id);
    if (!consent)
        nrm_params_int(&q, tx->now_ms);
    PGresult *res = NULL;
    if (st == NRM_OK)
        st = nrm_db_exec(tx->db, consent ? "reint_resume" : "reint_suspend", &q, &res, tx->err);
    if (st != NRM_OK)
        return st;
    for (int i = 0; i < PQntuples(res) && st == NRM_OK; i++) {
        const char *plan_id = nrm_db_text(res, i, 0);
        if (consent)
            st = reint_followups_shift(tx, plan_id, tx->now_ms - nrm_db_int(res, i, 1));
        Nrm__V1__PlanSuspended body = NRM__V1__PLAN_SUSPENDED__INIT;
        body.plan_id = (char *)plan_id;
        body.suspended = !consent;
        if (st == NRM_OK)
            st = nrm_tx_emit_body(tx, case_id, NRM__V1__EVENT__BODY_PLAN_SUSPENDED, &body);
    }
    PQclear(res);
    return st;
}

/* A new report linked to the case: a live plan, or one closed within the risk window, raises
 * reintegration.risk_alert. */
static nrm_status_t s_on_linked(reint_t *self, nrm_tx_t *tx, const Nrm__V1__Event *ev)
{
    nrm_params_t p = {0};
    nrm_params_text(&p, ev->case_id);
    nrm_params_int(&p, tx->now_ms - self->risk_window_ms);
    PGresult *res = NULL;
    nrm_status_t st = nrm_db_exec(tx->db, "reint_risk_plan", &p, &res, tx->err);
    if (st != NRM_OK)
        return st;
    if (PQntuples(res) == 1)
        st = reint_emit_risk(tx, ev->case_id, nrm_db_text(res, 0, 0), nrm_db_text(res, 0, 1),
                             S_RISK_LINKED, ev->case_linked->reporting_agency_id);
    PQclear(res);
    return st;
}

/* True in *fresh when the event is newer than anything applied to the case (then recorded as
 * the case's last); false for a case reintegration does not know or an event seen before. */
static nrm_status_t s_advance(nrm_tx_t *tx, const Nrm__V1__Event *ev, bool *fresh)
{
    nrm_params_t p = {0};
    nrm_params_text(&p, ev->case_id);
    nrm_params_int(&p, ev->seq);
    PGresult *res = NULL;
    nrm_status_t st = nrm_db_exec(tx->db, "reint_case_advance", &p, &res, tx->err);
    *fresh = st == NRM_OK && PQntuples(res) == 1;
    PQclear(res);
    return st;
}

nrm_status_t reint_on_case_event(void *ctx, nrm_tx_t *tx, const Nrm__V1__Event *ev)
{
    reint_t *self = ctx;
    if (!ev->case_id || !ev->case_id[0] || strlen(ev->case_id) > REINT_ID_MAX)
        return NRM_OK;
    bool fresh = true;
    nrm_status_t st = NRM_OK;
    if (ev->body_case != NRM__V1__EVENT__BODY_CASE_OPENED)
        st = s_advance(tx, ev, &fresh);
    if (st != NRM_OK || !fresh)
        return st;
    nrm_params_t p = {0};
    nrm_params_text(&p, ev->case_id);
    switch (ev->body_case) {
    case NRM__V1__EVENT__BODY_CASE_OPENED: {
        const Nrm__V1__CaseOpened *o = ev->case_opened;
        const char *nationality =
            o->profile && o->profile->nationality ? o->profile->nationality : "";
        nrm_params_text(&p, o->reporting_agency_id);
        nrm_params_text(&p, strlen(nationality) == 2 ? nationality : "");
        nrm_params_text(&p, o->region);
        nrm_params_bool(&p, o->consent_to_referral);
        nrm_params_int(&p, ev->seq);
        return nrm_db_exec(tx->db, "reint_case_upsert", &p, NULL, tx->err);
    }
    case NRM__V1__EVENT__BODY_CASE_MANAGER_CHANGED:
        nrm_params_text(&p, ev->case_manager_changed->case_manager_agency_id);
        return nrm_db_exec(tx->db, "reint_case_manager", &p, NULL, tx->err);
    case NRM__V1__EVENT__BODY_CONSENT_WITHDRAWN:
        if (ev->consent_withdrawn->data_sharing_only)
            return NRM_OK;
        return s_set_consent(tx, ev->case_id, false);
    case NRM__V1__EVENT__BODY_CASE_UPDATED:
        if (!ev->case_updated->consent_to_referral)
            return NRM_OK;
        return s_set_consent(tx, ev->case_id, true);
    case NRM__V1__EVENT__BODY_CASE_CLOSED:
        return s_close_case_plans(tx, ev->case_id, ev->case_closed->reason);
    case NRM__V1__EVENT__BODY_CASE_LINKED:
        return s_on_linked(self, tx, ev);
    default:
        return NRM_OK;
    }
}
