/* Plans: opening (from an accepted referral or OpenPlan), closing and reassignment, and the
 * loading and relations every request about a plan starts with. */
#include "nrm_authz.h"
#include "nrm_crypto.h"
#include "nrm_validate.h"
#include "reintegration.h"

#include <stdio.h>
#include <string.h>

static const char s_sql_case_load[] =
    "SELECT manager_agency_id, nationality, consent, open FROM cases WHERE case_id = $1";
/* any unique violation (the referral's plan, or a live plan of this kind) inserts nothing */
static const char s_sql_plan_insert[] =
    "INSERT INTO plans (plan_id, case_id, kind, manager_agency_id, referral_id, opened_ms)"
    " VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING RETURNING plan_id";
static const char s_sql_plan_load[] =
    "SELECT p.case_id, p.kind, p.state, p.manager_agency_id, p.reception_partner,"
    " p.arrival_confirmed, coalesce(c.manager_agency_id, '') FROM plans p"
    " LEFT JOIN cases c USING (case_id) WHERE p.plan_id = $1 FOR UPDATE OF p";
static const char s_sql_plan_close[] =
    "UPDATE plans SET state = 'closed', closed_ms = $2, outcome = $3, close_reason = $4"
    " WHERE plan_id = $1 AND state <> 'closed'";
static const char s_sql_plan_reassign[] =
    "UPDATE plans SET manager_agency_id = $2 WHERE plan_id = $1";

void reint_plans_prepare(nrm_db_t *db)
{
    nrm_db_statement(db, "reint_case_load", s_sql_case_load);
    nrm_db_statement(db, "reint_plan_insert", s_sql_plan_insert);
    nrm_db_statement(db, "reint_plan_load", s_sql_plan_load);
    nrm_db_statement(db, "reint_plan_close", s_sql_plan_close);
    nrm_db_statement(db, "reint_plan_reassign", s_sql_plan_reassign);
}

/* ---- opening ---- */

/* Opens a plan (a new id) with its follow-ups and publishes reintegration.plan_opened; when a
 * unique rule refuses it (the referral already opened one, or the case has a live plan of this
 * kind) nothing happens and *opened is false. referral_id may be NULL. plan_id (may be NULL)
 * receives the new id. */
nrm_status_t reint_plan_open(reint_t *self, nrm_tx_t *tx, const char *case_id, int kind,
                             const char *manager, const char *referral_id, bool *opened,
                             char *plan_id)
{
    char id[REINT_UUID_SIZE];
    nrm_uuid_v4(id);
    nrm_params_t p = {0};
    nrm_params_text(&p, id);
    nrm_params_text(&p, case_id);
    nrm_params_int(&p, kind);
    nrm_params_text(&p, manager);
    nrm_params_text(&p, referral_id);
    nrm_params_int(&p, tx->now_ms);
    PGresult *res = NULL;
    nrm_status_t st = nrm_db_exec(tx->db, "reint_plan_insert", &p, &res, tx->err);
    if (st != NRM_OK)
        return st;
    *opened = PQntuples(res) == 1;
    PQclear(res);
    if (!*opened)
        return NRM_OK;
    int followups = 0;
    st = reint_followups_schedule(self, tx, id, tx->now_ms, &followups);
    if (st != NRM_OK)
        return st;
    Nrm__V1__PlanOpened body = NRM__V1__PLAN_OPENED__INIT;
    body.plan_id = id;
    body.kind = kind;
    body.manager_agency_id = (char *)manager;
    body.referral_id = (char *)(referral_id ? referral_id : "");
    body.followups = followups;
    st = nrm_tx_emit_body(tx, case_id, NRM__V1__EVENT__BODY_PLAN_OPENED, &body);
    if (st == NRM_OK && self->plans_opened)
        nrm_db_count_on_commit(tx->db, self->plans_opened, 1);
    if (plan_id)
        snprintf(plan_id, REINT_UUID_SIZE, "%s", id);
    return st;
}

nrm_status_t reint_case_load(nrm_tx_t *tx, const char *case_id, reint_case_t *c)
{
    memset(c, 0, sizeof *c);
    nrm_params_t p = {0};
    nrm_params_text(&p, case_id);
    PGresult *res = NULL;
    nrm_status_t st = nrm_db_exec(tx->db, "reint_case_load", &p, &res, tx->err);
    if (st != NRM_OK)
        return st;
    if (PQntuples(res) == 1) {
        c->known = true;
        snprintf(c->manager, sizeof c->manager, "%s", nrm_db_text(res, 0, 0));
        snprintf(c->nationality, sizeof c->nationality, "%s", nrm_db_text(res, 0, 1));
        c->consent = nrm_db_int(res, 0, 2) != 0;
        c->open = nrm_db_int(res, 0, 3) != 0;
    }
    PQclear(res);
    return NRM_OK;
}

/* True when the person is a national of the country of identification. */
bool reint_national(const reint_t *self, const reint_case_t *c)
{
    return self->country[0] && c->nationality[0] && strcmp(self->country, c->nationality) == 0;
}

/* Sets the reply to a PlanRef. */
static void s_reply_ref(nrm_call_t *call, const char *plan_id, const char *state)
{
    Nrm__V1__PlanRef *ref = nrm_call_alloc(call, sizeof *ref);
    nrm__v1__plan_ref__init(ref);
    ref->plan_id = nrm_call_strdup(call, plan_id);
    ref->state = nrm_call_strdup(call, state);
    call->reply->result_case = NRM__V1__REPLY__RESULT_PLAN_REF;
    call->reply->plan_ref = ref;
}

nrm_status_t reint_open_plan(void *ctx, nrm_call_t *call)
{
    reint_t *self = ctx;
    const Nrm__V1__OpenPlan *o = call->request->open_plan;
    nrm_error_t *err = call->tx.err;
    if (nrm_check_text(err, "open_plan.case_id", o->case_id, REINT_ID_MAX, true) != NRM_OK ||
        nrm_check_enum(err, "open_plan.kind", &nrm__v1__plan_kind__descriptor, o->kind, false) !=
            NRM_OK ||
        nrm_check_text(err, "open_plan.manager_agency_id", o->manager_agency_id, REINT_ID_MAX,
                       false) != NRM_OK)
        return NRM_INVALID_ARGUMENT;
    if (o->manager_agency_id[0] && !nrm_config_agency(call->config, o->manager_agency_id))
        return nrm_fail(err, NRM_INVALID_ARGUMENT, "open_plan.manager_agency_id",
                        "the manager must be an agency of the configuration");
    reint_case_t c;
    nrm_status_t st = reint_case_load(&call->tx, o->case_id, &c);
    if (st != NRM_OK)
        return st;
    if (!c.known)
        return nrm_authz_not_found(call, "open_plan.case_id", "no such case");
    bool is_manager = strcmp(c.manager, call->agency_id) == 0;
    if ((st = nrm_authz_check(call, is_manager ? NRM_ROLE_CASE_MANAGER : 0)) != NRM_OK)
        return st;
    call->subject_id = nrm_call_strdup(call, o->case_id);
    if (o->kind == NRM__V1__PLAN_KIND__PLAN_KIND_ASSISTED_VOLUNTARY_RETURN &&
        reint_national(self, &c))
        return nrm_fail(err, NRM_INVALID_ARGUMENT, "open_plan.kind",
                        "a national of the country of identification cannot have a return plan");
    if (!c.open)
        return nrm_fail(err, NRM_FAILED_PRECONDITION, "open_plan.case_id", "the case is closed");
    if (!c.consent)
        return nrm_fail(err, NRM_FAILED_PRECONDITION, "open_plan.case_id",
                        "consent to referral was withdrawn");
    const char *manager = o->manager_agency_id[0] ? o->manager_agency_id : c.manager;
    bool opened = false;
    char plan_id[REINT_UUID_SIZE] = "";
    st = reint_plan_open(self, &call->tx, o->case_id, o->kind, manager, NULL, &opened, plan_id);
    if (st != NRM_OK)
        return st;
    if (!opened)
        return nrm_fail(err, NRM_CONFLICT, "open_plan.kind",
                        "the case already has a live plan of this kind");
    s_reply_ref(call, plan_id, "open");
    return NRM_OK;
}
/* ---- closing, reassigning ---- */

/* Closes a live plan: its follow-ups are cancelled, reintegration.plan_closed published. */
nrm_status_t reint_plan_close(nrm_tx_t *tx, const char *case_id, const char *plan_id, int outcome,
                              const char *reason)
{
    nrm_params_t p = {0};
    nrm_params_text(&p, plan_id);
    nrm_params_int(&p, tx->now_ms);
    nrm_params_int(&p, outcome);
    nrm_params_text(&p, reason);
    nrm_status_t st = nrm_db_exec(tx->db, "reint_plan_close", &p, NULL, tx->err);
    if (st == NRM_OK)
        st = reint_followups_cancel(tx, plan_id);
    if (st != NRM_OK)
        return st;
    Nrm__V1__PlanClosed body = NRM__V1__PLAN_CLOSED__INIT;
    body.plan_id = (char *)plan_id;
    body.outcome = outcome;
    body.reason = (char *)reason;
    return nrm_tx_emit_body(tx, case_id, NRM__V1__EVENT__BODY_PLAN_CLOSED, &body);
}

nrm_status_t reint_plan_load(nrm_call_t *call, const char *plan_id, const char *field,
                             reint_plan_t *plan)
{
    if (nrm_check_text(call->tx.err, field, plan_id, REINT_ID_MAX, true) != NRM_OK)
        return NRM_INVALID_ARGUMENT;
    nrm_params_t p = {0};
    nrm_params_text(&p, plan_id);
    PGresult *res = NULL;
    nrm_status_t st = nrm_db_exec(call->tx.db, "reint_plan_load", &p, &res, call->tx.err);
    if (st != NRM_OK)
        return st;
    if (PQntuples(res) != 1) {
        PQclear(res);
        return nrm_authz_not_found(call, field, "no such plan");
    }
    memset(plan, 0, sizeof *plan);
    snprintf(plan->plan_id, sizeof plan->plan_id, "%s", plan_id);
    snprintf(plan->case_id, sizeof plan->case_id, "%s", nrm_db_text(res, 0, 0));
    plan->kind = (int)nrm_db_int(res, 0, 1);
    snprintf(plan->state, sizeof plan->state, "%s", nrm_db_text(res, 0, 2));
    snprintf(plan->manager, sizeof plan->manager, "%s", nrm_db_text(res, 0, 3));
    snprintf(plan->reception_partner, sizeof plan->reception_partner, "%s", nrm_db_text(res, 0, 4));
    plan->arrival_confirmed = nrm_db_int(res, 0, 5) != 0;
    snprintf(plan->case_manager, sizeof plan->case_manager, "%s", nrm_db_text(res, 0, 6));
    PQclear(res);
    call->subject_id = nrm_call_strdup(call, plan_id);
    return NRM_OK;
}

unsigned reint_plan_relations(const nrm_call_t *call, const reint_plan_t *plan)
{
    unsigned r = 0;
    if (strcmp(plan->manager, call->agency_id) == 0)
        r |= NRM_ROLE_PLAN_MANAGER;
    if (plan->arrival_confirmed && strcmp(plan->reception_partner, call->agency_id) == 0)
        r |= NRM_ROLE_RECEPTION_PARTNER;
    if (plan->case_manager[0] && strcmp(plan->case_manager, call->agency_id) == 0)
        r |= NRM_ROLE_CASE_MANAGER;
    return r;
}

nrm_status_t reint_close_plan(void *ctx, nrm_call_t *call)
{
    const Nrm__V1__ClosePlan *c = call->request->close_plan;
    reint_plan_t plan;
    nrm_status_t st = reint_plan_load(call, c->plan_id, "close_plan.plan_id", &plan);
    if (st == NRM_OK)
        st = nrm_authz_check(call, reint_plan_relations(call, &plan));
    if (st != NRM_OK)
        return st;
    if (nrm_check_enum(call->tx.err, "close_plan.outcome", &nrm__v1__plan_outcome__descriptor,
                       c->outcome, false) != NRM_OK)
        return NRM_INVALID_ARGUMENT;
    if (c->outcome == NRM__V1__PLAN_OUTCOME__PLAN_OUTCOME_CASE_CLOSED)
        return nrm_fail(call->tx.err, NRM_INVALID_ARGUMENT, "close_plan.outcome",
                        "CASE_CLOSED is set when the case closes");
    if (strcmp(plan.state, "closed") == 0)
        return nrm_fail(call->tx.err, NRM_FAILED_PRECONDITION, "close_plan.plan_id",
                        "the plan is closed");
    st = reint_plan_close(&call->tx, plan.case_id, plan.plan_id, c->outcome, "");
    if (st == NRM_OK)
        s_reply_ref(call, plan.plan_id, "closed");
    return st;
}

nrm_status_t reint_reassign_plan(void *ctx, nrm_call_t *call)
{
    const Nrm__V1__ReassignPlan *r = call->request->reassign_plan;
    if (nrm_check_text(call->tx.err, "reassign_plan.manager_agency_id", r->manager_agency_id,
                       REINT_ID_MAX, true) != NRM_OK)
        return NRM_INVALID_ARGUMENT;
    if (!nrm_config_agency(call->config, r->manager_agency_id))
        return nrm_fail(call->tx.err, NRM_INVALID_ARGUMENT, "reassign_plan.manager_agency_id",
                        "the manager must be an agency of the configuration");
    reint_plan_t plan;
    nrm_status_t st = reint_plan_load(call, r->plan_id, "reassign_plan.plan_id", &plan);
    if (st != NRM_OK)
        return st;
    if (strcmp(plan.state, "closed") == 0)
        return nrm_fail(call->tx.err, NRM_FAILED_PRECONDITION, "reassign_plan.plan_id",
                        "the plan is closed");
    nrm_params_t p = {0};
    nrm_params_text(&p, plan.plan_id);
    nrm_params_text(&p, r->manager_agency_id);
    st = nrm_db_exec(call->tx.db, "reint_plan_reassign", &p, NULL, call->tx.err);
    if (st == NRM_OK)
        s_reply_ref(call, plan.plan_id, plan.state);
    return st;
}
