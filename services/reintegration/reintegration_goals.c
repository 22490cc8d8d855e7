/* Goals with their milestones (UpsertGoal) and the steps of an assisted voluntary return
 * (RecordReturn). No free text: domains, states, reason codes, dates, a country, an agency. */
#include "nrm_authz.h"
#include "nrm_crypto.h"
#include "nrm_validate.h"
#include "reintegration.h"

#include <stdio.h>
#include <string.h>

#define S_PATH_MAX 96

/* What an abandoned milestone may give as its reason: codes, never free text. */
static const char *const s_abandon_reasons[] = {"person_declined", "not_available", "goal_changed",
                                                "no_provider",     "other",         NULL};

static const char s_sql_goal_load[] = "SELECT plan_id FROM goals WHERE goal_id = $1 FOR UPDATE";
static const char s_sql_goal_count[] = "SELECT count(*) FROM goals WHERE plan_id = $1";
static const char s_sql_goal_insert[] =
    "INSERT INTO goals (goal_id, plan_id, domain, position) VALUES ($1, $2, $3, $4)";
static const char s_sql_goal_update[] = "UPDATE goals SET domain = $2 WHERE goal_id = $1";
static const char s_sql_milestones_clear[] = "DELETE FROM milestones WHERE goal_id = $1";
static const char s_sql_milestone_insert[] =
    "INSERT INTO milestones (goal_id, position, due_ms, state, abandon_reason)"
    " VALUES ($1, $2, $3, $4, $5)";
static const char s_sql_return[] =
    "UPDATE plans SET country_of_return = $2, travel_documents = $3, departure_ms = $4,"
    " departure_confirmed = $5, reception_partner = $6, arrival_confirmed = $7"
    " WHERE plan_id = $1";

void reint_goals_prepare(nrm_db_t *db)
{
    nrm_db_statement(db, "reint_goal_load", s_sql_goal_load);
    nrm_db_statement(db, "reint_goal_count", s_sql_goal_count);
    nrm_db_statement(db, "reint_goal_insert", s_sql_goal_insert);
    nrm_db_statement(db, "reint_goal_update", s_sql_goal_update);
    nrm_db_statement(db, "reint_milestones_clear", s_sql_milestones_clear);
    nrm_db_statement(db, "reint_milestone_insert", s_sql_milestone_insert);
    nrm_db_statement(db, "reint_return", s_sql_return);
}

static bool s_reason_known(const char *reason)
{
    for (size_t i = 0; s_abandon_reasons[i]; i++)
        if (strcmp(reason, s_abandon_reasons[i]) == 0)
            return true;
    return false;
}

/* Checks the goal's domain and milestones (field paths upsert_goal.milestones[i].state ...). */
nrm_status_t reint_check_goal(const Nrm__V1__UpsertGoal *g, nrm_error_t *err)
{
    if (nrm_check_enum(err, "upsert_goal.domain", &nrm__v1__goal_domain__descriptor, g->domain,
                       false) != NRM_OK ||
        nrm_check_text(err, "upsert_goal.goal_id", g->goal_id, REINT_ID_MAX, false) != NRM_OK)
        return NRM_INVALID_ARGUMENT;
    if (g->n_milestones > REINT_MAX_MILESTONES)
        return nrm_fail(err, NRM_INVALID_ARGUMENT, "upsert_goal.milestones",
                        "at most %d milestones", REINT_MAX_MILESTONES);
    for (size_t i = 0; i < g->n_milestones; i++) {
        const Nrm__V1__Milestone *m = g->milestones[i];
        char base[S_PATH_MAX], path[S_PATH_MAX];
        nrm_path_index(base, sizeof base, "upsert_goal.milestones", i);
        snprintf(path, sizeof path, "%s.state", base);
        if (nrm_check_enum(err, path, &nrm__v1__milestone_state__descriptor, m->state, false) !=
            NRM_OK)
            return NRM_INVALID_ARGUMENT;
        snprintf(path, sizeof path, "%s.due_ms", base);
        if (m->due_ms <= 0)
            return nrm_fail(err, NRM_INVALID_ARGUMENT, path, "a milestone needs a due date");
        snprintf(path, sizeof path, "%s.abandon_reason", base);
        bool abandoned = m->state == NRM__V1__MILESTONE_STATE__MILESTONE_STATE_ABANDONED;
        if (abandoned && !s_reason_known(m->abandon_reason))
            return nrm_fail(err, NRM_INVALID_ARGUMENT, path,
                            "an abandoned milestone needs a reason: person_declined, "
                            "not_available, goal_changed, no_provider or other");
        if (!abandoned && m->abandon_reason[0])
            return nrm_fail(err, NRM_INVALID_ARGUMENT, path,
                            "only an abandoned milestone has a reason");
    }
    return NRM_OK;
}

/* Loads the plan a write names and checks the sender may change it, and that it is live. */
static nrm_status_t s_load_live(nrm_call_t *call, const char *plan_id, const char *field,
                                reint_plan_t *plan)
{
    nrm_status_t st = reint_plan_load(call, plan_id, field, plan);
    if (st == NRM_OK)
        st = nrm_authz_check(call, reint_plan_relations(call, plan));
    if (st == NRM_OK && strcmp(plan->state, "closed") == 0)
        st = nrm_fail(call->tx.err, NRM_FAILED_PRECONDITION, field, "the plan is closed");
    return st;
}

/* Creates the goal, or checks that the existing one belongs to the plan and updates it. */
static nrm_status_t s_goal_store(nrm_call_t *call, const Nrm__V1__UpsertGoal *g,
                                 const reint_plan_t *plan, char goal_id[REINT_ID_MAX + 1])
{
    nrm_params_t p = {0};
    PGresult *res = NULL;
    nrm_status_t st;
    if (g->goal_id[0]) {
        snprintf(goal_id, REINT_ID_MAX + 1, "%s", g->goal_id);
        nrm_params_text(&p, goal_id);
        if ((st = nrm_db_exec(call->tx.db, "reint_goal_load", &p, &res, call->tx.err)) != NRM_OK)
            return st;
        bool mine = PQntuples(res) == 1 && strcmp(nrm_db_text(res, 0, 0), plan->plan_id) == 0;
        PQclear(res);
        if (!mine)
            return nrm_fail(call->tx.err, NRM_NOT_FOUND, "upsert_goal.goal_id",
                            "no such goal in this plan");
        nrm_params_int(&p, g->domain);
        return nrm_db_exec(call->tx.db, "reint_goal_update", &p, NULL, call->tx.err);
    }
    nrm_params_text(&p, plan->plan_id);
    if ((st = nrm_db_exec(call->tx.db, "reint_goal_count", &p, &res, call->tx.err)) != NRM_OK)
        return st;
    int64_t count = nrm_db_int(res, 0, 0);
    PQclear(res);
    if (count >= REINT_MAX_GOALS)
        return nrm_fail(call->tx.err, NRM_FAILED_PRECONDITION, "upsert_goal.plan_id",
                        "a plan has at most %d goals", REINT_MAX_GOALS);
    char id[REINT_UUID_SIZE];
    nrm_uuid_v4(id);
    snprintf(goal_id, REINT_ID_MAX + 1, "%s", id);
    nrm_params_t q = {0};
    nrm_params_text(&q, goal_id);
    nrm_params_text(&q, plan->plan_id);
    nrm_params_int(&q, g->domain);
    nrm_params_int(&q, count + 1);
    return nrm_db_exec(call->tx.db, "reint_goal_insert", &q, NULL, call->tx.err);
}

nrm_status_t reint_upsert_goal(void *ctx, nrm_call_t *call)
{
    const Nrm__V1__UpsertGoal *g = call->request->upsert_goal;
    reint_plan_t plan;
    nrm_status_t st = s_load_live(call, g->plan_id, "upsert_goal.plan_id", &plan);
    if (st != NRM_OK)
        return st;
    if (reint_check_goal(g, call->tx.err) != NRM_OK)
        return NRM_INVALID_ARGUMENT;
    char goal_id[REINT_ID_MAX + 1];
    if ((st = s_goal_store(call, g, &plan, goal_id)) != NRM_OK)
        return st;
    nrm_params_t c = {0};
    nrm_params_text(&c, goal_id);
    st = nrm_db_exec(call->tx.db, "reint_milestones_clear", &c, NULL, call->tx.err);
    int achieved = 0, abandoned = 0;
    for (size_t i = 0; i < g->n_milestones && st == NRM_OK; i++) {
        const Nrm__V1__Milestone *m = g->milestones[i];
        nrm_params_t p = {0};
        nrm_params_text(&p, goal_id);
        nrm_params_int(&p, (int64_t)i + 1);
        nrm_params_int(&p, m->due_ms);
        nrm_params_int(&p, m->state);
        nrm_params_text(&p, m->abandon_reason);
        st = nrm_db_exec(call->tx.db, "reint_milestone_insert", &p, NULL, call->tx.err);
        achieved += m->state == NRM__V1__MILESTONE_STATE__MILESTONE_STATE_ACHIEVED;
        abandoned += m->state == NRM__V1__MILESTONE_STATE__MILESTONE_STATE_ABANDONED;
    }
    if (st != NRM_OK)
        return st;
    Nrm__V1__GoalUpdated body = NRM__V1__GOAL_UPDATED__INIT;
    body.plan_id = plan.plan_id;
    body.goal_id = goal_id;
    body.domain = g->domain;
    body.milestones = (int32_t)g->n_milestones;
    body.achieved = achieved;
    body.abandoned = abandoned;
    if ((st = nrm_tx_emit_body(&call->tx, plan.case_id, NRM__V1__EVENT__BODY_GOAL_UPDATED,
                               &body)) != NRM_OK)
        return st;
    Nrm__V1__GoalRef *ref = nrm_call_alloc(call, sizeof *ref);
    nrm__v1__goal_ref__init(ref);
    ref->plan_id = nrm_call_strdup(call, plan.plan_id);
    ref->goal_id = nrm_call_strdup(call, goal_id);
    call->reply->result_case = NRM__V1__REPLY__RESULT_GOAL_REF;
    call->reply->goal_ref = ref;
    return NRM_OK;
}

/* Checks a RecordReturn against the plan and the configuration. */
static nrm_status_t s_check_return(reint_t *self, nrm_call_t *call, const Nrm__V1__RecordReturn *r)
{
    nrm_error_t *err = call->tx.err;
    if (nrm_check_country(err, "record_return.country_of_return", r->country_of_return, true) !=
            NRM_OK ||
        nrm_check_text(err, "record_return.reception_partner_agency_id",
                       r->reception_partner_agency_id, REINT_ID_MAX, false) != NRM_OK)
        return NRM_INVALID_ARGUMENT;
    if (self->country[0] && strcmp(r->country_of_return, self->country) == 0)
        return nrm_fail(err, NRM_INVALID_ARGUMENT, "record_return.country_of_return",
                        "the country of return cannot be the country of identification");
    if (r->reception_partner_agency_id[0] &&
        !nrm_config_agency(call->config, r->reception_partner_agency_id))
        return nrm_fail(err, NRM_INVALID_ARGUMENT, "record_return.reception_partner_agency_id",
                        "the reception partner must be an agency of the configuration");
    if (r->departure_ms < 0)
        return nrm_fail(err, NRM_INVALID_ARGUMENT, "record_return.departure_ms",
                        "a date in milliseconds since the epoch");
    if (r->departure_confirmed && !r->travel_documents_obtained)
        return nrm_fail(err, NRM_INVALID_ARGUMENT, "record_return.departure_confirmed",
                        "a departure needs travel documents");
    if (r->arrival_confirmed && !r->departure_confirmed)
        return nrm_fail(err, NRM_INVALID_ARGUMENT, "record_return.arrival_confirmed",
                        "an arrival needs a confirmed departure");
    if (r->arrival_confirmed && !r->reception_partner_agency_id[0])
        return nrm_fail(err, NRM_INVALID_ARGUMENT, "record_return.reception_partner_agency_id",
                        "an arrival needs a reception partner");
    return NRM_OK;
}

nrm_status_t reint_record_return(void *ctx, nrm_call_t *call)
{
    reint_t *self = ctx;
    const Nrm__V1__RecordReturn *r = call->request->record_return;
    reint_plan_t plan;
    nrm_status_t st = s_load_live(call, r->plan_id, "record_return.plan_id", &plan);
    if (st != NRM_OK)
        return st;
    if (plan.kind != NRM__V1__PLAN_KIND__PLAN_KIND_ASSISTED_VOLUNTARY_RETURN)
        return nrm_fail(call->tx.err, NRM_FAILED_PRECONDITION, "record_return.plan_id",
                        "the plan is not an assisted voluntary return");
    if (s_check_return(self, call, r) != NRM_OK)
        return NRM_INVALID_ARGUMENT;
    nrm_params_t p = {0};
    nrm_params_text(&p, plan.plan_id);
    nrm_params_text(&p, r->country_of_return);
    nrm_params_bool(&p, r->travel_documents_obtained);
    nrm_params_int(&p, r->departure_ms);
    nrm_params_bool(&p, r->departure_confirmed);
    nrm_params_text(&p, r->reception_partner_agency_id);
    nrm_params_bool(&p, r->arrival_confirmed);
    if ((st = nrm_db_exec(call->tx.db, "reint_return", &p, NULL, call->tx.err)) != NRM_OK)
        return st;
    Nrm__V1__ReturnUpdated body = NRM__V1__RETURN_UPDATED__INIT;
    body.plan_id = plan.plan_id;
    body.country_of_return = r->country_of_return;
    body.travel_documents_obtained = r->travel_documents_obtained;
    body.departure_confirmed = r->departure_confirmed;
    body.reception_partner_agency_id = r->reception_partner_agency_id;
    body.arrival_confirmed = r->arrival_confirmed;
    if ((st = nrm_tx_emit_body(&call->tx, plan.case_id, NRM__V1__EVENT__BODY_RETURN_UPDATED,
                               &body)) != NRM_OK)
        return st;
    Nrm__V1__PlanRef *ref = nrm_call_alloc(call, sizeof *ref);
    nrm__v1__plan_ref__init(ref);
    ref->plan_id = nrm_call_strdup(call, plan.plan_id);
    ref->state = nrm_call_strdup(call, plan.state);
    call->reply->result_case = NRM__V1__REPLY__RESULT_PLAN_REF;
    call->reply->plan_ref = ref;
    return NRM_OK;
}
