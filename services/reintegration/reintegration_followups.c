/* Follow-ups: scheduled when a plan opens, due at their offset (reintegration.followup_due for
 * the plan's manager), overdue at the end of their window (reintegration.followup_overdue for
 * the coordinator), recorded by RecordFollowUp. Each move is one conditional UPDATE over rows
 * locked FOR UPDATE SKIP LOCKED: two instances scanning at once move disjoint rows, and a row
 * moves (and its event is written) in the transaction that commits the move, so a crash during
 * a scan loses and doubles nothing. */
#include "nrm_authz.h"
#include "nrm_log.h"
#include "nrm_validate.h"
#include "reintegration.h"

#include <stdio.h>
#include <string.h>

#define S_RISK_FOLLOWUP "followup"

static const char s_sql_schedule[] =
    "INSERT INTO followups (plan_id, number, due_ms, window_end_ms) VALUES ($1, $2, $3, $4)";
static const char s_sql_cancel[] = "UPDATE followups SET state = 'cancelled' WHERE plan_id = $1"
                                   " AND state IN ('scheduled', 'due', 'overdue')";
static const char s_sql_shift[] =
    "UPDATE followups SET due_ms = due_ms + $2, window_end_ms = window_end_ms + $2"
    " WHERE plan_id = $1 AND state IN ('scheduled', 'due')";
/* the earliest of each, one probe of followups_scheduled and followups_due (as EXISTS with
 * "<= $1" the generic plan may read every row: routing_referrals.c) */
static const char s_sql_any[] =
    "SELECT coalesce((SELECT min(due_ms) FROM followups WHERE state = 'scheduled') <= $1, false)"
    " OR coalesce((SELECT min(window_end_ms) FROM followups WHERE state = 'due') <= $1, false)";
/* the plan's row is held too: a suspension or a closing committing meanwhile is either seen (the
 * plan no longer open: nothing falls due) or waits for the scan (and comes after its event) */
static const char s_sql_fall_due[] =
    "WITH d AS (SELECT f.plan_id, f.number FROM followups f JOIN plans p USING (plan_id)"
    "           WHERE f.state = 'scheduled' AND f.due_ms <= $1 AND p.state = 'open'"
    "           ORDER BY f.due_ms, f.plan_id, f.number LIMIT $2 FOR UPDATE OF f SKIP LOCKED"
    "           FOR SHARE OF p SKIP LOCKED)"
    " UPDATE followups f SET state = 'due' FROM d, plans p"
    " WHERE f.plan_id = d.plan_id AND f.number = d.number AND p.plan_id = f.plan_id"
    " RETURNING f.plan_id, f.number, f.due_ms, f.window_end_ms, p.case_id, p.manager_agency_id";
static const char s_sql_fall_overdue[] =
    "WITH d AS (SELECT f.plan_id, f.number FROM followups f JOIN plans p USING (plan_id)"
    "           WHERE f.state = 'due' AND f.window_end_ms <= $1 AND p.state = 'open'"
    "           ORDER BY f.window_end_ms, f.plan_id, f.number LIMIT $2"
    "           FOR UPDATE OF f SKIP LOCKED FOR SHARE OF p SKIP LOCKED)"
    " UPDATE followups f SET state = 'overdue' FROM d, plans p"
    " WHERE f.plan_id = d.plan_id AND f.number = d.number AND p.plan_id = f.plan_id"
    " RETURNING f.plan_id, f.number, f.due_ms, f.window_end_ms, p.case_id, p.manager_agency_id";
static const char s_sql_next[] =
    "SELECT number FROM followups WHERE plan_id = $1 AND state IN ('scheduled', 'due', 'overdue')"
    " ORDER BY number LIMIT 1 FOR UPDATE";
static const char s_sql_record[] =
    "UPDATE followups SET state = 'recorded', contact_made = $3, economic = $4, social = $5,"
    " psychosocial = $6, safe_housing = $7, income = $8, retrafficking_risk = $9,"
    " recorded_ms = $10, recorded_by = $11 WHERE plan_id = $1 AND number = $2";

void reint_followups_prepare(nrm_db_t *db)
{
    nrm_db_statement(db, "reint_fu_schedule", s_sql_schedule);
    nrm_db_statement(db, "reint_fu_cancel", s_sql_cancel);
    nrm_db_statement(db, "reint_fu_shift", s_sql_shift);
    nrm_db_statement(db, "reint_fu_any", s_sql_any);
    nrm_db_statement(db, "reint_fu_fall_due", s_sql_fall_due);
    nrm_db_statement(db, "reint_fu_fall_overdue", s_sql_fall_overdue);
    nrm_db_statement(db, "reint_fu_next", s_sql_next);
    nrm_db_statement(db, "reint_fu_record", s_sql_record);
}

nrm_status_t reint_followups_schedule(reint_t *self, nrm_tx_t *tx, const char *plan_id,
                                      int64_t opened_ms, int *count)
{
    nrm_status_t st = NRM_OK;
    *count = 0;
    for (int i = 0; i < self->n_offsets && st == NRM_OK; i++) {
        nrm_params_t p = {0};
        int64_t due = opened_ms + self->offsets_ms[i];
        nrm_params_text(&p, plan_id);
        nrm_params_int(&p, i + 1);
        nrm_params_int(&p, due);
        nrm_params_int(&p, due + self->window_ms);
        st = nrm_db_exec(tx->db, "reint_fu_schedule", &p, NULL, tx->err);
        if (st == NRM_OK)
            (*count)++;
    }
    return st;
}

nrm_status_t reint_followups_cancel(nrm_tx_t *tx, const char *plan_id)
{
    nrm_params_t p = {0};
    nrm_params_text(&p, plan_id);
    return nrm_db_exec(tx->db, "reint_fu_cancel", &p, NULL, tx->err);
}

nrm_status_t reint_followups_shift(nrm_tx_t *tx, const char *plan_id, int64_t paused_ms)
{
    if (paused_ms <= 0)
        return NRM_OK;
    nrm_params_t p = {0};
    nrm_params_text(&p, plan_id);
    nrm_params_int(&p, paused_ms);
    return nrm_db_exec(tx->db, "reint_fu_shift", &p, NULL, tx->err);
}

/* Runs one move (statement: fall_due or fall_overdue) and publishes an event for each row
 * moved. Returns how many in *moved. */
static nrm_status_t s_move(reint_t *self, nrm_tx_t *tx, const char *statement, bool overdue,
                           int *moved)
{
    nrm_params_t p = {0};
    nrm_params_int(&p, tx->now_ms);
    nrm_params_int(&p, self->scan_batch);
    PGresult *res = NULL;
    nrm_status_t st = nrm_db_exec(tx->db, statement, &p, &res, tx->err);
    if (st != NRM_OK)
        return st;
    *moved = PQntuples(res);
    for (int i = 0; i < *moved && st == NRM_OK; i++) {
        char *plan_id = (char *)nrm_db_text(res, i, 0);
        int number = (int)nrm_db_int(res, i, 1);
        int64_t due_ms = nrm_db_int(res, i, 2), end_ms = nrm_db_int(res, i, 3);
        const char *case_id = nrm_db_text(res, i, 4);
        char *manager = (char *)nrm_db_text(res, i, 5);
        if (overdue) {
            Nrm__V1__FollowUpOverdue b = NRM__V1__FOLLOW_UP_OVERDUE__INIT;
            b.plan_id = plan_id;
            b.number = number;
            b.due_ms = due_ms;
            b.window_end_ms = end_ms;
            b.manager_agency_id = manager;
            st = nrm_tx_emit_body(tx, case_id, NRM__V1__EVENT__BODY_FOLLOWUP_OVERDUE, &b);
        } else {
            Nrm__V1__FollowUpDue b = NRM__V1__FOLLOW_UP_DUE__INIT;
            b.plan_id = plan_id;
            b.number = number;
            b.due_ms = due_ms;
            b.window_end_ms = end_ms;
            b.manager_agency_id = manager;
            st = nrm_tx_emit_body(tx, case_id, NRM__V1__EVENT__BODY_FOLLOWUP_DUE, &b);
        }
    }
    PQclear(res);
    return st;
}

nrm_status_t reint_scan_followups(void *ctx, nrm_tx_t *tx)
{
    reint_t *self = ctx;
    nrm_params_t p = {0};
    nrm_params_int(&p, tx->now_ms);
    PGresult *res = NULL;
    nrm_status_t st = nrm_db_exec(tx->db, "reint_fu_any", &p, &res, tx->err);
    bool any = st == NRM_OK && nrm_db_int(res, 0, 0) != 0;
    PQclear(res);
    if (!any)
        return st;
    /* due first: a follow-up whose whole window passed unseen is due, then overdue, in order */
    int due = 0, overdue = 0;
    st = s_move(self, tx, "reint_fu_fall_due", false, &due);
    if (st == NRM_OK)
        st = s_move(self, tx, "reint_fu_fall_overdue", true, &overdue);
    if (st == NRM_OK && (due || overdue)) {
        if (self->followups_due)
            nrm_db_count_on_commit(tx->db, self->followups_due, due);
        if (self->followups_overdue)
            nrm_db_count_on_commit(tx->db, self->followups_overdue, overdue);
        nrm_log_info("follow-ups scanned", "{s:i, s:i}", "due", due, "overdue", overdue);
    }
    return st;
}

nrm_status_t reint_emit_risk(nrm_tx_t *tx, const char *case_id, const char *plan_id,
                             const char *plan_state, const char *reason, const char *agency_id)
{
    Nrm__V1__RiskAlert body = NRM__V1__RISK_ALERT__INIT;
    body.plan_id = (char *)plan_id;
    body.plan_state = (char *)plan_state;
    body.reason = (char *)reason;
    body.reporting_agency_id = (char *)(agency_id ? agency_id : "");
    return nrm_tx_emit_body(tx, case_id, NRM__V1__EVENT__BODY_RISK_ALERT, &body);
}

/* Checks a RecordFollowUp's scores: 1-5 each after a contact, all 0 without one. */
nrm_status_t reint_check_scores(const Nrm__V1__RecordFollowUp *r, nrm_error_t *err)
{
    const Nrm__V1__ReintegrationScores *s = r->scores;
    const int32_t values[] = {s ? s->economic : 0, s ? s->social : 0, s ? s->psychosocial : 0};
    static const char *const fields[] = {"record_follow_up.scores.economic",
                                         "record_follow_up.scores.social",
                                         "record_follow_up.scores.psychosocial"};
    for (size_t i = 0; i < sizeof values / sizeof values[0]; i++) {
        if (r->contact_made &&
            nrm_check_range(err, fields[i], values[i], REINT_SCORE_MIN, REINT_SCORE_MAX) != NRM_OK)
            return NRM_INVALID_ARGUMENT;
        if (!r->contact_made && values[i] != 0)
            return nrm_fail(err, NRM_INVALID_ARGUMENT, fields[i],
                            "no score without a contact (contact_made is false)");
    }
    return NRM_OK;
}

nrm_status_t reint_record_followup(void *ctx, nrm_call_t *call)
{
    const Nrm__V1__RecordFollowUp *r = call->request->record_follow_up;
    reint_plan_t plan;
    nrm_status_t st = reint_plan_load(call, r->plan_id, "record_follow_up.plan_id", &plan);
    if (st == NRM_OK)
        st = nrm_authz_check(call, reint_plan_relations(call, &plan));
    if (st != NRM_OK)
        return st;
    if (reint_check_scores(r, call->tx.err) != NRM_OK)
        return NRM_INVALID_ARGUMENT;
    if (strcmp(plan.state, "open") != 0)
        return nrm_fail(call->tx.err, NRM_FAILED_PRECONDITION, "record_follow_up.plan_id",
                        "the plan is %s", plan.state);
    nrm_params_t p = {0};
    nrm_params_text(&p, plan.plan_id);
    PGresult *res = NULL;
    if ((st = nrm_db_exec(call->tx.db, "reint_fu_next", &p, &res, call->tx.err)) != NRM_OK)
        return st;
    int number = PQntuples(res) == 1 ? (int)nrm_db_int(res, 0, 0) : 0;
    PQclear(res);
    if (!number)
        return nrm_fail(call->tx.err, NRM_FAILED_PRECONDITION, "record_follow_up.plan_id",
                        "every follow-up of the plan is recorded");
    const Nrm__V1__ReintegrationScores *s = r->scores;
    nrm_params_t u = {0};
    nrm_params_text(&u, plan.plan_id);
    nrm_params_int(&u, number);
    nrm_params_bool(&u, r->contact_made);
    nrm_params_int(&u, s ? s->economic : 0);
    nrm_params_int(&u, s ? s->social : 0);
    nrm_params_int(&u, s ? s->psychosocial : 0);
    nrm_params_bool(&u, r->safe_housing);
    nrm_params_bool(&u, r->income);
    nrm_params_bool(&u, r->retrafficking_risk);
    nrm_params_int(&u, call->tx.now_ms);
    nrm_params_text(&u, call->agency_id);
    if ((st = nrm_db_exec(call->tx.db, "reint_fu_record", &u, NULL, call->tx.err)) != NRM_OK)
        return st;
    Nrm__V1__ReintegrationScores scores = NRM__V1__REINTEGRATION_SCORES__INIT;
    if (s) {
        scores.economic = s->economic;
        scores.social = s->social;
        scores.psychosocial = s->psychosocial;
    }
    Nrm__V1__FollowUpRecorded body = NRM__V1__FOLLOW_UP_RECORDED__INIT;
    body.plan_id = plan.plan_id;
    body.number = number;
    body.contact_made = r->contact_made;
    body.scores = &scores;
    body.safe_housing = r->safe_housing;
    body.income = r->income;
    body.retrafficking_risk = r->retrafficking_risk;
    body.reporting_agency_id = (char *)call->agency_id;
    st = nrm_tx_emit_body(&call->tx, plan.case_id, NRM__V1__EVENT__BODY_FOLLOWUP_RECORDED, &body);
    if (st == NRM_OK && r->retrafficking_risk)
        st = reint_emit_risk(&call->tx, plan.case_id, plan.plan_id, plan.state, S_RISK_FOLLOWUP,
                             call->agency_id);
    if (st != NRM_OK)
        return st;
    Nrm__V1__FollowUpRef *ref = nrm_call_alloc(call, sizeof *ref);
    nrm__v1__follow_up_ref__init(ref);
    ref->plan_id = nrm_call_strdup(call, plan.plan_id);
    ref->number = number;
    call->reply->result_case = NRM__V1__REPLY__RESULT_FOLLOW_UP_REF;
    call->reply->follow_up_ref = ref;
    return NRM_OK;
}
