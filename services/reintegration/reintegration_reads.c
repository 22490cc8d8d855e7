/* Reads: GetPlan (the whole plan: goals, milestones, return, follow-ups) and ListPlans (a
 * manager's own plans, every plan for a coordinator; paged by plan id). */
#include "nrm_authz.h"
#include "nrm_validate.h"
#include "reintegration.h"

#include <stdio.h>
#include <string.h>

#define S_LIST_DEFAULT 100
#define S_LIST_MAX 1000

static const char s_sql_plan[] =
    "SELECT kind, state, manager_agency_id, coalesce(referral_id, ''), opened_ms,"
    " coalesce(closed_ms, 0), outcome, close_reason, country_of_return, travel_documents,"
    " departure_ms, departure_confirmed, reception_partner, arrival_confirmed"
    " FROM plans WHERE plan_id = $1";
static const char s_sql_goals[] =
    "SELECT g.goal_id, g.domain, m.due_ms, m.state, m.abandon_reason FROM goals g"
    " LEFT JOIN milestones m USING (goal_id) WHERE g.plan_id = $1"
    " ORDER BY g.position, m.position";
static const char s_sql_followups[] =
    "SELECT number, due_ms, window_end_ms, state, contact_made, economic, social, psychosocial,"
    " safe_housing, income, retrafficking_risk, recorded_ms, recorded_by FROM followups"
    " WHERE plan_id = $1 ORDER BY number";
static const char s_sql_list[] =
    "SELECT p.plan_id, p.case_id, p.kind, p.state, p.manager_agency_id, p.opened_ms,"
    " coalesce((SELECT min(f.due_ms) FROM followups f WHERE f.plan_id = p.plan_id"
    "           AND f.state IN ('scheduled', 'due', 'overdue')), 0)"
    " FROM plans p WHERE ($1 = '' OR p.state = $1) AND ($2 = '' OR p.manager_agency_id = $2)"
    " AND ($3::bigint = 0 OR EXISTS (SELECT 1 FROM followups f WHERE f.plan_id = p.plan_id"
    "                         AND f.state IN ('scheduled', 'due', 'overdue') AND f.due_ms < "
    "$3::bigint))"
    " AND p.plan_id > $4 ORDER BY p.plan_id LIMIT $5";

void reint_reads_prepare(nrm_db_t *db)
{
    nrm_db_statement(db, "reint_read_plan", s_sql_plan);
    nrm_db_statement(db, "reint_read_goals", s_sql_goals);
    nrm_db_statement(db, "reint_read_followups", s_sql_followups);
    nrm_db_statement(db, "reint_read_list", s_sql_list);
}

/* Fills view's goals and milestones from the rows of reint_read_goals. */
static void s_fill_goals(nrm_call_t *call, Nrm__V1__PlanView *view, const PGresult *res)
{
    int rows = PQntuples(res);
    view->goals = nrm_call_alloc(call, sizeof *view->goals * (size_t)(rows ? rows : 1));
    Nrm__V1__Goal *goal = NULL;
    for (int i = 0; i < rows; i++) {
        const char *goal_id = nrm_db_text(res, i, 0);
        if (!goal || strcmp(goal->goal_id, goal_id) != 0) {
            goal = nrm_call_alloc(call, sizeof *goal);
            nrm__v1__goal__init(goal);
            goal->goal_id = nrm_call_strdup(call, goal_id);
            goal->domain = (int)nrm_db_int(res, i, 1);
            goal->milestones = nrm_call_alloc(call, sizeof *goal->milestones * (size_t)rows);
            view->goals[view->n_goals++] = goal;
        }
        if (nrm_db_is_null(res, i, 2))
            continue;
        Nrm__V1__Milestone *m = nrm_call_alloc(call, sizeof *m);
        nrm__v1__milestone__init(m);
        m->due_ms = nrm_db_int(res, i, 2);
        m->state = (int)nrm_db_int(res, i, 3);
        m->abandon_reason = nrm_call_strdup(call, nrm_db_text(res, i, 4));
        goal->milestones[goal->n_milestones++] = m;
    }
}

/* Fills view's follow-ups from the rows of reint_read_followups. */
static void s_fill_followups(nrm_call_t *call, Nrm__V1__PlanView *view, const PGresult *res)
{
    int rows = PQntuples(res);
    view->followups = nrm_call_alloc(call, sizeof *view->followups * (size_t)(rows ? rows : 1));
    for (int i = 0; i < rows; i++) {
        Nrm__V1__FollowUp *f = nrm_call_alloc(call, sizeof *f);
        nrm__v1__follow_up__init(f);
        f->number = (int)nrm_db_int(res, i, 0);
        f->due_ms = nrm_db_int(res, i, 1);
        f->window_end_ms = nrm_db_int(res, i, 2);
        f->state = nrm_call_strdup(call, nrm_db_text(res, i, 3));
        f->contact_made = nrm_db_int(res, i, 4) != 0;
        f->scores = nrm_call_alloc(call, sizeof *f->scores);
        nrm__v1__reintegration_scores__init(f->scores);
        f->scores->economic = (int)nrm_db_int(res, i, 5);
        f->scores->social = (int)nrm_db_int(res, i, 6);
        f->scores->psychosocial = (int)nrm_db_int(res, i, 7);
        f->safe_housing = nrm_db_int(res, i, 8) != 0;
        f->income = nrm_db_int(res, i, 9) != 0;
        f->retrafficking_risk = nrm_db_int(res, i, 10) != 0;
        f->recorded_ms = nrm_db_int(res, i, 11);
        f->recorded_by_agency_id = nrm_call_strdup(call, nrm_db_text(res, i, 12));
        view->followups[view->n_followups++] = f;
    }
}

/* Fills view's own columns and the return from the row of reint_read_plan. */
static void s_fill_plan(nrm_call_t *call, Nrm__V1__PlanView *v, const PGresult *res)
{
    v->kind = (int)nrm_db_int(res, 0, 0);
    v->state = nrm_call_strdup(call, nrm_db_text(res, 0, 1));
    v->manager_agency_id = nrm_call_strdup(call, nrm_db_text(res, 0, 2));
    v->referral_id = nrm_call_strdup(call, nrm_db_text(res, 0, 3));
    v->opened_ms = nrm_db_int(res, 0, 4);
    v->closed_ms = nrm_db_int(res, 0, 5);
    v->outcome = (int)nrm_db_int(res, 0, 6);
    v->close_reason = nrm_call_strdup(call, nrm_db_text(res, 0, 7));
    if (v->kind != NRM__V1__PLAN_KIND__PLAN_KIND_ASSISTED_VOLUNTARY_RETURN)
        return;
    Nrm__V1__ReturnState *r = nrm_call_alloc(call, sizeof *r);
    nrm__v1__return_state__init(r);
    r->country_of_return = nrm_call_strdup(call, nrm_db_text(res, 0, 8));
    r->travel_documents_obtained = nrm_db_int(res, 0, 9) != 0;
    r->departure_ms = nrm_db_int(res, 0, 10);
    r->departure_confirmed = nrm_db_int(res, 0, 11) != 0;
    r->reception_partner_agency_id = nrm_call_strdup(call, nrm_db_text(res, 0, 12));
    r->arrival_confirmed = nrm_db_int(res, 0, 13) != 0;
    v->return_state = r;
}

nrm_status_t reint_get_plan(void *ctx, nrm_call_t *call)
{
    reint_plan_t plan;
    nrm_status_t st =
        reint_plan_load(call, call->request->get_plan->plan_id, "get_plan.plan_id", &plan);
    if (st == NRM_OK)
        st = nrm_authz_check(call, reint_plan_relations(call, &plan));
    if (st != NRM_OK)
        return st;
    Nrm__V1__PlanView *view = nrm_call_alloc(call, sizeof *view);
    nrm__v1__plan_view__init(view);
    view->plan_id = nrm_call_strdup(call, plan.plan_id);
    view->case_id = nrm_call_strdup(call, plan.case_id);
    nrm_params_t p = {0};
    nrm_params_text(&p, plan.plan_id);
    static const char *const statements[] = {"reint_read_plan", "reint_read_goals",
                                             "reint_read_followups"};
    for (size_t i = 0; i < sizeof statements / sizeof statements[0]; i++) {
        PGresult *res = NULL;
        if ((st = nrm_db_exec(call->tx.db, statements[i], &p, &res, call->tx.err)) != NRM_OK)
            return st;
        if (i == 0)
            s_fill_plan(call, view, res);
        else if (i == 1)
            s_fill_goals(call, view, res);
        else
            s_fill_followups(call, view, res);
        PQclear(res);
    }
    call->reply->result_case = NRM__V1__REPLY__RESULT_PLAN_VIEW;
    call->reply->plan_view = view;
    return NRM_OK;
}

nrm_status_t reint_list_plans(void *ctx, nrm_call_t *call)
{
    const Nrm__V1__ListPlans *l = call->request->list_plans;
    nrm_error_t *err = call->tx.err;
    static const char *const states[] = {"", "open", "suspended", "closed"};
    bool state_known = false;
    for (size_t i = 0; i < sizeof states / sizeof states[0]; i++)
        state_known = state_known || strcmp(l->state, states[i]) == 0;
    if (!state_known)
        return nrm_fail(err, NRM_INVALID_ARGUMENT, "list_plans.state",
                        "state must be open, suspended, closed or empty");
    if (nrm_check_text(err, "list_plans.manager_agency_id", l->manager_agency_id, REINT_ID_MAX,
                       false) != NRM_OK ||
        nrm_check_text(err, "list_plans.page_token", l->page_token, REINT_ID_MAX, false) !=
            NRM_OK ||
        nrm_check_range(err, "list_plans.limit", l->limit, 0, S_LIST_MAX) != NRM_OK ||
        nrm_check_range(err, "list_plans.due_before_ms", l->due_before_ms, 0, INT64_MAX) != NRM_OK)
        return NRM_INVALID_ARGUMENT;
    /* a manager sees its own plans only, whatever it asks for */
    const char *manager = l->manager_agency_id;
    if (!nrm_authz_sender_is(call, NRM_ROLE_COORDINATOR))
        manager = call->agency_id;
    int limit = l->limit ? l->limit : S_LIST_DEFAULT;
    nrm_params_t p = {0};
    nrm_params_text(&p, l->state);
    nrm_params_text(&p, manager);
    nrm_params_int(&p, l->due_before_ms);
    nrm_params_text(&p, l->page_token);
    nrm_params_int(&p, limit);
    PGresult *res = NULL;
    nrm_status_t st = nrm_db_exec(call->tx.db, "reint_read_list", &p, &res, err);
    if (st != NRM_OK)
        return st;
    int rows = PQntuples(res);
    Nrm__V1__PlanList *list = nrm_call_alloc(call, sizeof *list);
    nrm__v1__plan_list__init(list);
    list->plans = nrm_call_alloc(call, sizeof *list->plans * (size_t)(rows ? rows : 1));
    for (int i = 0; i < rows; i++) {
        Nrm__V1__PlanSummary *s = nrm_call_alloc(call, sizeof *s);
        nrm__v1__plan_summary__init(s);
        s->plan_id = nrm_call_strdup(call, nrm_db_text(res, i, 0));
        s->case_id = nrm_call_strdup(call, nrm_db_text(res, i, 1));
        s->kind = (int)nrm_db_int(res, i, 2);
        s->state = nrm_call_strdup(call, nrm_db_text(res, i, 3));
        s->manager_agency_id = nrm_call_strdup(call, nrm_db_text(res, i, 4));
        s->opened_ms = nrm_db_int(res, i, 5);
        s->next_due_ms = nrm_db_int(res, i, 6);
        list->plans[list->n_plans++] = s;
    }
    list->next_page_token =
        nrm_call_strdup(call, rows == limit && rows ? nrm_db_text(res, rows - 1, 0) : "");
    PQclear(res);
    call->reply->result_case = NRM__V1__REPLY__RESULT_PLAN_LIST;
    call->reply->plan_list = list;
    return NRM_OK;
}
