/* Reintegration against real intake, routing and reintegration processes: plans open from an
 * accepted referral exactly once, goals and milestones come back as they were written, a
 * national cannot have a return plan, and nothing identifying reaches reintegration's stream. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "harness.h"
#include "reint_fixture.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define OK NRM__V1__STATUS__STATUS_OK
#define INVALID NRM__V1__STATUS__STATUS_INVALID_ARGUMENT
#define REINTEGRATION NRM__V1__SERVICE_TYPE__SERVICE_TYPE_REINTEGRATION
#define RETURN_ASSISTANCE NRM__V1__SERVICE_TYPE__SERVICE_TYPE_RETURN_ASSISTANCE
#define LOCAL NRM__V1__PLAN_KIND__PLAN_KIND_LOCAL_REINTEGRATION
#define RETURN NRM__V1__PLAN_KIND__PLAN_KIND_ASSISTED_VOLUNTARY_RETURN
#define PLANNED NRM__V1__MILESTONE_STATE__MILESTONE_STATE_PLANNED
#define ACHIEVED NRM__V1__MILESTONE_STATE__MILESTONE_STATE_ACHIEVED
#define ABANDONED NRM__V1__MILESTONE_STATE__MILESTONE_STATE_ABANDONED
#define TRAINING NRM__V1__GOAL_DOMAIN__GOAL_DOMAIN_VOCATIONAL_TRAINING
#define EMPLOYMENT NRM__V1__GOAL_DOMAIN__GOAL_DOMAIN_EMPLOYMENT
#define DAY_MS 86400000LL
#define DUE_1 (1893456000000LL) /* 2030-01-01 */
#define SECRET_NAME "Zainab Quartermile-Oyelaran"
#define SECRET_DOB "1990-04-12"

static harness_t *h;

static int setup(void **state)
{
    h = harness_new("reintegration");
    if (harness_start(h, "intake", 0) != 0 || harness_start(h, "routing", 0) != 0)
        return -1;
    return harness_start(h, "reintegration", 0);
}

static int teardown(void **state)
{
    harness_destroy(&h);
    return 0;
}

/* True once reintegration's checkpoint on stream (routing, intake) reaches its head. */
static bool s_caught_up_with(const char *stream)
{
    char sql[512];
    snprintf(sql, sizeof sql,
             "SELECT CASE WHEN coalesce((SELECT seq FROM reintegration.checkpoints"
             " WHERE stream = '%s'), 0) >= (SELECT head FROM %s.stream_head) THEN 1 ELSE 0 END",
             stream, stream);
    return harness_wait_sql(h, sql, 1, REINT_WAIT_MS) == 1;
}

static bool s_caught_up_with_routing(void)
{
    return s_caught_up_with("routing");
}

/* Opens a local reintegration plan by OpenPlan as the case manager; returns its id. */
static void s_open_plan(const char *case_id, int kind, char plan_id[ROUTING_ID_TEXT])
{
    Nrm__V1__OpenPlan o = NRM__V1__OPEN_PLAN__INIT;
    o.case_id = (char *)case_id;
    o.kind = kind;
    Nrm__V1__Reply *r = reint_call(h, REINT_REPORTER, NRM__V1__REQUEST__BODY_OPEN_PLAN, &o);
    assert_non_null(r);
    assert_string_equal(r->error_message, "");
    assert_int_equal(r->status, OK);
    snprintf(plan_id, ROUTING_ID_TEXT, "%s", r->plan_ref->plan_id);
    nrm__v1__reply__free_unpacked(r, NULL);
}

static void
a_plan_opens_once_from_an_accepted_referral_even_when_the_stream_is_replayed(void **state)
{
    reint_person_t p;
    assert_true(reint_refer(h, "NG", REINTEGRATION, NULL, &p));
    assert_true(reint_accept(h, &p));
    assert_int_equal(reint_wait_plans(h, p.case_id, 1), 1);
    char sql[512];
    snprintf(sql, sizeof sql,
             "SELECT count(*) FROM reintegration.plans WHERE case_id = '%s' AND kind = %d"
             " AND manager_agency_id = '%s' AND referral_id = '%s'",
             p.case_id, LOCAL, p.provider, p.referral_id);
    assert_int_equal(harness_sql_int(h, sql), 1);
    assert_true(s_caught_up_with_routing());

    /* reintegration forgets how far it read routing's stream and reads it all again */
    assert_int_equal(harness_signal(h, "reintegration", 0, SIGTERM), 0);
    harness_sql_int(h, "UPDATE reintegration.checkpoints SET seq = 0 WHERE stream = 'routing'"
                       " RETURNING 0");
    assert_int_equal(harness_start(h, "reintegration", 0), 0);
    assert_true(s_caught_up_with_routing());
    assert_int_equal(reint_wait_plans(h, p.case_id, 1), 1);
    assert_int_equal(reint_count_events(h, "reintegration.plan_opened", p.case_id), 1);
}

static void goals_and_milestones_round_trip(void **state)
{
    reint_person_t p;
    assert_true(reint_refer(h, "CI", REINTEGRATION, NULL, &p));
    assert_true(reint_wait_case(h, p.case_id));
    char plan_id[ROUTING_ID_TEXT];
    s_open_plan(p.case_id, LOCAL, plan_id);

    Nrm__V1__Milestone m1 = NRM__V1__MILESTONE__INIT, m2 = NRM__V1__MILESTONE__INIT;
    m1.due_ms = DUE_1;
    m1.state = PLANNED;
    m2.due_ms = DUE_1 + 30 * DAY_MS;
    m2.state = ABANDONED;
    m2.abandon_reason = "goal_changed";
    Nrm__V1__Milestone *ms[] = {&m1, &m2};
    Nrm__V1__UpsertGoal g = NRM__V1__UPSERT_GOAL__INIT;
    g.plan_id = plan_id;
    g.domain = TRAINING;
    g.n_milestones = 2;
    g.milestones = ms;
    Nrm__V1__Reply *r = reint_call(h, REINT_REPORTER, NRM__V1__REQUEST__BODY_UPSERT_GOAL, &g);
    assert_non_null(r);
    assert_string_equal(r->error_message, "");
    char goal_id[ROUTING_ID_TEXT];
    snprintf(goal_id, sizeof goal_id, "%s", r->goal_ref->goal_id);
    nrm__v1__reply__free_unpacked(r, NULL);

    /* the same goal written again: another domain, its first milestone achieved */
    m1.state = ACHIEVED;
    g.goal_id = goal_id;
    g.domain = EMPLOYMENT;
    assert_int_equal(reint_status(h, REINT_REPORTER, NRM__V1__REQUEST__BODY_UPSERT_GOAL, &g), OK);

    Nrm__V1__GetPlan get = NRM__V1__GET_PLAN__INIT;
    get.plan_id = plan_id;
    r = reint_call(h, REINT_REPORTER, NRM__V1__REQUEST__BODY_GET_PLAN, &get);
    assert_non_null(r);
    assert_int_equal(r->status, OK);
    const Nrm__V1__PlanView *v = r->plan_view;
    assert_string_equal(v->case_id, p.case_id);
    assert_int_equal(v->kind, LOCAL);
    assert_string_equal(v->state, "open");
    assert_string_equal(v->manager_agency_id, REINT_REPORTER);
    assert_int_equal(v->n_goals, 1);
    assert_string_equal(v->goals[0]->goal_id, goal_id);
    assert_int_equal(v->goals[0]->domain, EMPLOYMENT);
    assert_int_equal(v->goals[0]->n_milestones, 2);
    assert_int_equal(v->goals[0]->milestones[0]->due_ms, DUE_1);
    assert_int_equal(v->goals[0]->milestones[0]->state, ACHIEVED);
    assert_int_equal(v->goals[0]->milestones[1]->state, ABANDONED);
    assert_string_equal(v->goals[0]->milestones[1]->abandon_reason, "goal_changed");
    assert_int_equal(v->n_followups, 3); /* 3, 6 and 12 months by default */
    nrm__v1__reply__free_unpacked(r, NULL);
}

static void an_abandoned_milestone_without_a_reason_code_is_refused_naming_it(void **state)
{
    reint_person_t p;
    assert_true(reint_refer(h, "SN", REINTEGRATION, NULL, &p));
    assert_true(reint_wait_case(h, p.case_id));
    char plan_id[ROUTING_ID_TEXT];
    s_open_plan(p.case_id, LOCAL, plan_id);
    Nrm__V1__Milestone m = NRM__V1__MILESTONE__INIT;
    m.due_ms = DUE_1;
    m.state = ABANDONED;
    m.abandon_reason = "she moved to her cousin in Fes"; /* free text: refused */
    Nrm__V1__Milestone *ms[] = {&m};
    Nrm__V1__UpsertGoal g = NRM__V1__UPSERT_GOAL__INIT;
    g.plan_id = plan_id;
    g.domain = TRAINING;
    g.n_milestones = 1;
    g.milestones = ms;
    Nrm__V1__Reply *r = reint_call(h, REINT_REPORTER, NRM__V1__REQUEST__BODY_UPSERT_GOAL, &g);
    assert_non_null(r);
    assert_int_equal(r->status, INVALID);
    assert_string_equal(r->error_field, "upsert_goal.milestones[0].abandon_reason");
    nrm__v1__reply__free_unpacked(r, NULL);
}

static void
opening_a_plan_tells_an_agency_that_may_not_nothing_of_whether_the_case_exists(void **state)
{
    Nrm__V1__OpenPlan o = NRM__V1__OPEN_PLAN__INIT;
    o.case_id = "00000000-0000-4000-8000-00000000dead";
    o.kind = LOCAL;
    assert_int_equal(reint_status(h, "consulate-ng", NRM__V1__REQUEST__BODY_OPEN_PLAN, &o),
                     NRM__V1__STATUS__STATUS_PERMISSION_DENIED);
    assert_int_equal(reint_status(h, "coordinator", NRM__V1__REQUEST__BODY_OPEN_PLAN, &o),
                     NRM__V1__STATUS__STATUS_NOT_FOUND);
}

static void a_return_plan_for_a_national_is_refused_naming_the_field(void **state)
{
    reint_person_t p;
    assert_true(reint_refer(h, "MA", REINTEGRATION, NULL, &p));
    assert_true(reint_wait_case(h, p.case_id));
    Nrm__V1__OpenPlan o = NRM__V1__OPEN_PLAN__INIT;
    o.case_id = p.case_id;
    o.kind = RETURN;
    Nrm__V1__Reply *r = reint_call(h, REINT_REPORTER, NRM__V1__REQUEST__BODY_OPEN_PLAN, &o);
    assert_non_null(r);
    assert_int_equal(r->status, INVALID);
    assert_string_equal(r->error_field, "open_plan.kind");
    nrm__v1__reply__free_unpacked(r, NULL);
    assert_int_equal(harness_sql_int(h, "SELECT count(*) FROM reintegration.plans p JOIN"
                                        " reintegration.cases c USING (case_id)"
                                        " WHERE c.nationality = 'MA' AND p.kind = 2"),
                     0);
}

static void a_return_is_recorded_and_its_reception_partner_then_reports(void **state)
{
    reint_person_t p;
    assert_true(reint_refer(h, "NG", RETURN_ASSISTANCE, NULL, &p));
    assert_true(reint_accept(h, &p));
    assert_int_equal(reint_wait_plans(h, p.case_id, 1), 1);
    char plan_id[ROUTING_ID_TEXT];
    assert_true(reint_plan_of(h, p.case_id, plan_id));

    Nrm__V1__RecordFollowUp f = NRM__V1__RECORD_FOLLOW_UP__INIT;
    Nrm__V1__ReintegrationScores sc = NRM__V1__REINTEGRATION_SCORES__INIT;
    sc.economic = 2;
    sc.social = 4;
    sc.psychosocial = 3;
    f.plan_id = plan_id;
    f.contact_made = true;
    f.scores = &sc;
    f.safe_housing = true;
    /* before the arrival the partner has no say */
    assert_int_equal(reint_status(h, "reception-ng", NRM__V1__REQUEST__BODY_RECORD_FOLLOW_UP, &f),
                     NRM__V1__STATUS__STATUS_PERMISSION_DENIED);

    Nrm__V1__RecordReturn ret = NRM__V1__RECORD_RETURN__INIT;
    ret.plan_id = plan_id;
    ret.country_of_return = "NG";
    ret.travel_documents_obtained = true;
    ret.departure_ms = DUE_1;
    ret.departure_confirmed = true;
    ret.reception_partner_agency_id = "reception-ng";
    ret.arrival_confirmed = true;
    assert_int_equal(reint_status(h, p.provider, NRM__V1__REQUEST__BODY_RECORD_RETURN, &ret), OK);
    Nrm__V1__Reply *r = reint_call(h, "reception-ng", NRM__V1__REQUEST__BODY_RECORD_FOLLOW_UP, &f);
    assert_non_null(r);
    assert_string_equal(r->error_message, "");
    assert_int_equal(r->follow_up_ref->number, 1);
    nrm__v1__reply__free_unpacked(r, NULL);

    Nrm__V1__GetPlan get = NRM__V1__GET_PLAN__INIT;
    get.plan_id = plan_id;
    r = reint_call(h, p.provider, NRM__V1__REQUEST__BODY_GET_PLAN, &get);
    assert_non_null(r);
    assert_int_equal(r->status, OK);
    assert_string_equal(r->plan_view->return_state->country_of_return, "NG");
    assert_true(r->plan_view->return_state->arrival_confirmed);
    assert_string_equal(r->plan_view->followups[0]->state, "recorded");
    assert_string_equal(r->plan_view->followups[0]->recorded_by_agency_id, "reception-ng");
    assert_int_equal(r->plan_view->followups[0]->scores->social, 4);
    nrm__v1__reply__free_unpacked(r, NULL);
}

static void a_report_linked_to_a_case_with_a_plan_raises_a_risk_alert(void **state)
{
    reint_person_t p;
    assert_true(reint_refer(h, "CI", REINTEGRATION, "Adjoua Linkmatch-Kouassi", &p));
    assert_true(reint_wait_case(h, p.case_id));
    char plan_id[ROUTING_ID_TEXT];
    s_open_plan(p.case_id, LOCAL, plan_id);
    /* the same person is met again by another agency */
    scenario_report_t s;
    routing_person(&s, "MA-01", 30, NRM__V1__GENDER__GENDER_FEMALE, "CI", true);
    routing_person_named(&s, "Adjoua Linkmatch-Kouassi", SECRET_DOB);
    char again[ROUTING_ID_TEXT];
    assert_int_equal(routing_submit(h, &s, "police-ma-01", again), OK);
    assert_string_equal(again, p.case_id);
    char sql[512];
    snprintf(sql, sizeof sql,
             "SELECT count(*) FROM reintegration.outbox WHERE topic = 'reintegration.risk_alert'"
             " AND position(convert_to('%s', 'UTF8') in payload) > 0",
             plan_id);
    assert_int_equal(harness_wait_sql(h, sql, 1, REINT_WAIT_MS), 1);
}

/* The state of a plan and of its first follow-up, as "state/state". */
static void s_plan_state(const char *plan_id, char out[64])
{
    char sql[512];
    snprintf(sql, sizeof sql,
             "SELECT p.state || '/' || f.state FROM reintegration.plans p JOIN"
             " reintegration.followups f USING (plan_id) WHERE p.plan_id = '%s' AND f.number = 1",
             plan_id);
    PGresult *res = harness_sql(h, sql);
    snprintf(out, 64, "%s", PQntuples(res) == 1 ? PQgetvalue(res, 0, 0) : "");
    PQclear(res);
}

static void withdrawn_consent_suspends_the_plan_until_consent_is_given_again(void **state)
{
    reint_person_t p;
    assert_true(reint_refer(h, "SN", REINTEGRATION, NULL, &p));
    assert_true(reint_wait_case(h, p.case_id));
    char plan_id[ROUTING_ID_TEXT], sql[512], st[64];
    s_open_plan(p.case_id, LOCAL, plan_id);
    assert_int_equal(routing_withdraw_consent(h, REINT_REPORTER, p.case_id), OK);
    snprintf(sql, sizeof sql,
             "SELECT count(*) FROM reintegration.plans WHERE plan_id = '%s'"
             " AND state = 'suspended'",
             plan_id);
    assert_int_equal(harness_wait_sql(h, sql, 1, REINT_WAIT_MS), 1);
    /* a suspended plan takes no follow-up */
    Nrm__V1__RecordFollowUp f = NRM__V1__RECORD_FOLLOW_UP__INIT;
    f.plan_id = plan_id;
    assert_int_equal(reint_status(h, REINT_REPORTER, NRM__V1__REQUEST__BODY_RECORD_FOLLOW_UP, &f),
                     NRM__V1__STATUS__STATUS_FAILED_PRECONDITION);
    assert_int_equal(routing_give_consent(h, REINT_REPORTER, p.case_id), OK);
    snprintf(sql, sizeof sql,
             "SELECT count(*) FROM reintegration.plans WHERE plan_id = '%s' AND state = 'open'",
             plan_id);
    assert_int_equal(harness_wait_sql(h, sql, 1, REINT_WAIT_MS), 1);
    s_plan_state(plan_id, st);
    assert_string_equal(st, "open/scheduled");
    assert_int_equal(reint_count_events(h, "reintegration.plan_suspended", p.case_id), 2);
}

static void
an_acceptance_applied_after_the_withdrawal_of_consent_opens_the_plan_suspended(void **state)
{
    reint_person_t p;
    assert_true(reint_refer(h, "GH", REINTEGRATION, NULL, &p));
    assert_true(reint_wait_case(h, p.case_id));
    /* intake's stream applied first: the withdrawal is known before the acceptance comes */
    char sql[512];
    snprintf(sql, sizeof sql,
             "WITH u AS (UPDATE reintegration.cases SET consent = false WHERE case_id = '%s'"
             " RETURNING 1) SELECT count(*) FROM u",
             p.case_id);
    assert_int_equal(harness_sql_int(h, sql), 1);
    assert_true(reint_accept(h, &p));
    assert_int_equal(reint_wait_plans(h, p.case_id, 1), 1);
    assert_true(s_caught_up_with_routing());
    snprintf(sql, sizeof sql,
             "SELECT count(*) FROM reintegration.plans WHERE case_id = '%s' AND state = 'open'",
             p.case_id);
    assert_int_equal(harness_sql_int(h, sql), 0);
    assert_int_equal(reint_count_events(h, "reintegration.plan_suspended", p.case_id), 1);
    /* and it takes no follow-up (the resume is withdrawn_consent_suspends_the_plan...'s) */
    char plan_id[ROUTING_ID_TEXT];
    assert_true(reint_plan_of(h, p.case_id, plan_id));
    Nrm__V1__RecordFollowUp f = NRM__V1__RECORD_FOLLOW_UP__INIT;
    f.plan_id = plan_id;
    assert_int_equal(reint_status(h, p.provider, NRM__V1__REQUEST__BODY_RECORD_FOLLOW_UP, &f),
                     NRM__V1__STATUS__STATUS_FAILED_PRECONDITION);
}

static void closing_the_case_closes_its_plan_and_cancels_its_followups(void **state)
{
    reint_person_t p;
    assert_true(reint_refer(h, "CI", REINTEGRATION, NULL, &p));
    assert_true(reint_wait_case(h, p.case_id));
    char plan_id[ROUTING_ID_TEXT], sql[512], st[64];
    s_open_plan(p.case_id, LOCAL, plan_id);
    assert_int_equal(routing_close_case(h, REINT_REPORTER, p.case_id, "other"), OK);
    snprintf(sql, sizeof sql,
             "SELECT count(*) FROM reintegration.plans WHERE plan_id = '%s' AND state = 'closed'"
             " AND outcome = %d AND close_reason = 'other'",
             plan_id, NRM__V1__PLAN_OUTCOME__PLAN_OUTCOME_CASE_CLOSED);
    assert_int_equal(harness_wait_sql(h, sql, 1, REINT_WAIT_MS), 1);
    s_plan_state(plan_id, st);
    assert_string_equal(st, "closed/cancelled");
    assert_int_equal(reint_count_events(h, "reintegration.plan_closed", p.case_id), 1);
}

/* Lists the plans agency may see (asking for manager's), page by page of 2; returns how many,
 * after checking that each is managed by want_manager. */
static int s_list_all(const char *agency, const char *manager, const char *want_manager)
{
    Nrm__V1__ListPlans l = NRM__V1__LIST_PLANS__INIT;
    l.manager_agency_id = (char *)manager;
    l.limit = 2;
    char token[ROUTING_ID_TEXT] = "";
    int seen = 0;
    do {
        l.page_token = token;
        Nrm__V1__Reply *r = reint_call(h, agency, NRM__V1__REQUEST__BODY_LIST_PLANS, &l);
        assert_non_null(r);
        assert_int_equal(r->status, OK);
        assert_true(r->plan_list->n_plans <= 2);
        for (size_t i = 0; i < r->plan_list->n_plans; i++)
            assert_string_equal(r->plan_list->plans[i]->manager_agency_id, want_manager);
        seen += (int)r->plan_list->n_plans;
        snprintf(token, sizeof token, "%s", r->plan_list->next_page_token);
        nrm__v1__reply__free_unpacked(r, NULL);
    } while (token[0]);
    return seen;
}

static void a_manager_lists_its_own_plans_page_by_page_and_nobody_else_sees_them(void **state)
{
    for (int i = 0; i < 3; i++) {
        reint_person_t p;
        assert_true(reint_refer(h, "GH", REINTEGRATION, NULL, &p));
        assert_true(reint_wait_case(h, p.case_id));
        char plan_id[ROUTING_ID_TEXT];
        s_open_plan(p.case_id, LOCAL, plan_id);
    }
    int own = (int)harness_sql_int(h, "SELECT count(*) FROM reintegration.plans"
                                      " WHERE manager_agency_id = '" REINT_REPORTER "'");
    assert_true(own >= 3);
    assert_int_equal(s_list_all(REINT_REPORTER, "", REINT_REPORTER), own);
    /* another agency asking for them gets its own plans: none */
    assert_int_equal(s_list_all("consulate-ng", REINT_REPORTER, "consulate-ng"), 0);
    /* the coordinator sees them */
    assert_int_equal(s_list_all("coordinator", REINT_REPORTER, REINT_REPORTER), own);
}

static void nothing_identifying_reaches_the_stream(void **state)
{
    harness_sub_t *sub = harness_subscribe(h, "reintegration", 0);
    reint_person_t p;
    assert_true(reint_refer(h, "NG", REINTEGRATION, SECRET_NAME, &p));
    assert_true(reint_accept(h, &p));
    Nrm__V1__Event *ev = harness_sub_next(sub, "reintegration.plan_opened", REINT_WAIT_MS);
    assert_non_null(ev);
    nrm__v1__event__free_unpacked(ev, NULL);
    assert_false(harness_sub_saw_bytes(sub, "Zainab"));
    assert_false(harness_sub_saw_bytes(sub, "Quartermile"));
    assert_false(harness_sub_saw_bytes(sub, SECRET_DOB));
    assert_int_equal(harness_sql_int(h, "SELECT count(*) FROM reintegration.outbox WHERE"
                                        " position(convert_to('Quartermile', 'UTF8') in payload)"
                                        " > 0"),
                     0);
    harness_sub_destroy(&sub);
}

static void reading_both_streams_again_changes_and_publishes_nothing(void **state)
{
    assert_true(s_caught_up_with("intake"));
    assert_true(s_caught_up_with("routing"));
    long long events = harness_sql_int(h, "SELECT count(*) FROM reintegration.outbox");
    char *before = NULL;
    PGresult *res = harness_sql(h, "SELECT string_agg(plan_id || state || manager_agency_id, ','"
                                   " ORDER BY plan_id) FROM reintegration.plans");
    before = strdup(PQgetvalue(res, 0, 0));
    PQclear(res);
    assert_int_equal(harness_signal(h, "reintegration", 0, SIGTERM), 0);
    harness_sql_int(h, "UPDATE reintegration.checkpoints SET seq = 0 RETURNING 0");
    assert_int_equal(harness_start(h, "reintegration", 0), 0);
    assert_true(s_caught_up_with("intake"));
    assert_true(s_caught_up_with("routing"));
    res = harness_sql(h, "SELECT string_agg(plan_id || state || manager_agency_id, ','"
                         " ORDER BY plan_id) FROM reintegration.plans");
    assert_string_equal(PQgetvalue(res, 0, 0), before);
    PQclear(res);
    free(before);
    assert_int_equal(harness_sql_int(h, "SELECT count(*) FROM reintegration.outbox"), events);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(
            a_plan_opens_once_from_an_accepted_referral_even_when_the_stream_is_replayed),
        cmocka_unit_test(goals_and_milestones_round_trip),
        cmocka_unit_test(an_abandoned_milestone_without_a_reason_code_is_refused_naming_it),
        cmocka_unit_test(a_return_plan_for_a_national_is_refused_naming_the_field),
        cmocka_unit_test(
            opening_a_plan_tells_an_agency_that_may_not_nothing_of_whether_the_case_exists),
        cmocka_unit_test(a_return_is_recorded_and_its_reception_partner_then_reports),
        cmocka_unit_test(a_report_linked_to_a_case_with_a_plan_raises_a_risk_alert),
        cmocka_unit_test(withdrawn_consent_suspends_the_plan_until_consent_is_given_again),
        cmocka_unit_test(
            an_acceptance_applied_after_the_withdrawal_of_consent_opens_the_plan_suspended),
        cmocka_unit_test(closing_the_case_closes_its_plan_and_cancels_its_followups),
        cmocka_unit_test(a_manager_lists_its_own_plans_page_by_page_and_nobody_else_sees_them),
        cmocka_unit_test(nothing_identifying_reaches_the_stream),
        cmocka_unit_test(reading_both_streams_again_changes_and_publishes_nothing),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
