/* The case file's lists against real nrm-intake, nrm-routing and nrm-shelter processes, each
 * request under the key of the agency that sends it: routing's ListReferrals (a provider's
 * inbox, a case's referrals as its case manager and reporters see them, overdue referrals) and
 * shelter's ListAllocations (a case's bed as its shelter's operator, its case manager and the
 * coordinator see it), and who is refused. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "authz_fixture.h"
#include "harness.h"
#include "nrm_page.h"
#include "routing_scenario.h"
#include "scenario.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define OK NRM__V1__STATUS__STATUS_OK
#define DENIED NRM__V1__STATUS__STATUS_PERMISSION_DENIED
#define INVALID NRM__V1__STATUS__STATUS_INVALID_ARGUMENT
#define LEGAL_AID NRM__V1__SERVICE_TYPE__SERVICE_TYPE_LEGAL_AID
#define SHELTER NRM__V1__SERVICE_TYPE__SERVICE_TYPE_SHELTER
#define MEDICAL NRM__V1__SERVICE_TYPE__SERVICE_TYPE_MEDICAL
#define B(name) NRM__V1__REQUEST__BODY_##name

#define MANAGER "police-ma-04"
#define REPORTER "hotline-national"
#define STRANGER "consulate-ng"
#define NEW_MANAGER "police-ma-06"
#define INBOX_CASES 5
#define PAGE_SIZE 2
#define MAX_SEEN 256
#define SQL_MAX 512
#define HOUR_MS 3600000LL

static harness_t *h;

static int setup(void **state)
{
    h = harness_new("casefile_lists");
    /* overdue referrals stay pending (the test makes one overdue by hand) */
    harness_config_set(h, "routing.expiry_check_ms", json_integer(HOUR_MS));
    const char *services[] = {"intake", "routing", "shelter"};
    for (size_t i = 0; i < sizeof services / sizeof *services; i++)
        if (harness_start(h, services[i], 0) != 0)
            return -1;
    return 0;
}

static int teardown(void **state)
{
    harness_destroy(&h);
    return 0;
}

/* Sends ListReferrals as agency; returns the Reply (caller frees), never NULL. */
static Nrm__V1__Reply *s_list_referrals(const char *agency, Nrm__V1__ListReferrals *l)
{
    Nrm__V1__Request req = NRM__V1__REQUEST__INIT;
    scenario_request(&req, B(LIST_REFERRALS), l);
    Nrm__V1__Reply *reply = harness_call(h, "routing", agency, &req);
    assert_non_null(reply);
    return reply;
}

/* Sends ListAllocations as agency; returns the Reply (caller frees), never NULL. */
static Nrm__V1__Reply *s_list_allocations(const char *agency, Nrm__V1__ListAllocations *l)
{
    Nrm__V1__Request req = NRM__V1__REQUEST__INIT;
    scenario_request(&req, B(LIST_ALLOCATIONS), l);
    Nrm__V1__Reply *reply = harness_call(h, "shelter", agency, &req);
    assert_non_null(reply);
    return reply;
}

/* The referrals of the case as agency sees them: asserts OK and returns how many. */
static size_t s_case_referrals(const char *agency, const char *case_id)
{
    Nrm__V1__ListReferrals l = NRM__V1__LIST_REFERRALS__INIT;
    l.case_id = (char *)case_id;
    Nrm__V1__Reply *reply = s_list_referrals(agency, &l);
    assert_int_equal(reply->status, OK);
    assert_int_equal(reply->result_case, NRM__V1__REPLY__RESULT_REFERRAL_LIST);
    size_t n = reply->referral_list->n_referrals;
    for (size_t i = 0; i < n; i++)
        assert_string_equal(reply->referral_list->referrals[i]->case_id, case_id);
    nrm__v1__reply__free_unpacked(reply, NULL);
    return n;
}

/* Waits until routing has a row of `where` ("table WHERE condition") for the case. */
static void s_wait_routing_knows(const char *case_id, const char *where)
{
    char sql[SQL_MAX];
    snprintf(sql, sizeof sql, "SELECT count(*) FROM routing.%s AND case_id = '%s'", where, case_id);
    assert_int_equal(harness_wait_sql(h, sql, 1, ROUTING_WAIT_MS), 1);
}

/* Waits until shelter knows who manages the case (from intake's stream). */
static void s_wait_shelter_knows_manager(const char *case_id)
{
    char sql[SQL_MAX];
    snprintf(sql, sizeof sql, "SELECT count(*) FROM shelter.case_managers WHERE case_id = '%s'",
             case_id);
    assert_int_equal(harness_wait_sql(h, sql, 1, ROUTING_WAIT_MS), 1);
}

/* Opens a case in MA-04 that needs legal aid, reported by MANAGER; returns its referral. */
static void s_legal_aid_case(authz_fixture_case_t *c)
{
    authz_fixture_case(h, MANAGER, NULL, LEGAL_AID, c);
}

static void
test_a_providers_inbox_shows_exactly_its_referrals_in_pages_stable_while_new_ones_are_created(
    void **state)
{
    authz_fixture_case_t c;
    for (int i = 0; i < INBOX_CASES; i++)
        s_legal_aid_case(&c);
    const char *provider = c.provider_id;
    char sql[SQL_MAX];
    snprintf(sql, sizeof sql, "SELECT count(*) FROM routing.referrals WHERE provider_id = '%s'",
             provider);
    long long before = harness_sql_int(h, sql);
    assert_true(before >= INBOX_CASES);
    static char seen[MAX_SEEN][AUTHZ_FIXTURE_ID];
    size_t n_seen = 0, pages = 0;
    char token[NRM_PAGE_TOKEN_MAX] = "";
    do {
        Nrm__V1__ListReferrals l = NRM__V1__LIST_REFERRALS__INIT;
        l.page_size = PAGE_SIZE;
        l.page_token = token;
        Nrm__V1__Reply *reply = s_list_referrals(provider, &l);
        assert_int_equal(reply->status, OK);
        const Nrm__V1__ReferralList *list = reply->referral_list;
        assert_true(list->n_referrals <= PAGE_SIZE);
        for (size_t i = 0; i < list->n_referrals; i++) {
            assert_string_equal(list->referrals[i]->provider_agency_id, provider);
            for (size_t k = 0; k < n_seen; k++) /* never twice */
                assert_string_not_equal(seen[k], list->referrals[i]->referral_id);
            assert_true(n_seen < MAX_SEEN);
            snprintf(seen[n_seen++], AUTHZ_FIXTURE_ID, "%s", list->referrals[i]->referral_id);
        }
        snprintf(token, sizeof token, "%s", list->next_page_token);
        nrm__v1__reply__free_unpacked(reply, NULL);
        if (pages++ == 0)
            s_legal_aid_case(&c); /* a new referral between the first and second pages */
    } while (token[0]);
    assert_true(pages > 1);
    /* every referral that existed before the first page was listed once; nothing else but the
     * provider's own new ones */
    snprintf(sql, sizeof sql,
             "SELECT referral_id FROM routing.referrals WHERE provider_id = '%s'"
             " ORDER BY created_ms, referral_id LIMIT %lld",
             provider, before);
    PGresult *res = harness_sql(h, sql);
    for (int row = 0; row < PQntuples(res); row++) {
        bool listed = false;
        for (size_t k = 0; k < n_seen && !listed; k++)
            listed = strcmp(seen[k], PQgetvalue(res, row, 0)) == 0;
        assert_true(listed);
    }
    PQclear(res);
}

static void test_a_stranger_asking_for_the_referrals_of_a_case_is_denied(void **state)
{
    authz_fixture_case_t c;
    s_legal_aid_case(&c);
    Nrm__V1__ListReferrals l = NRM__V1__LIST_REFERRALS__INIT;
    l.case_id = c.case_id;
    Nrm__V1__Reply *reply = s_list_referrals(STRANGER, &l);
    assert_int_equal(reply->status, DENIED);
    assert_string_equal(reply->error_field, "list_referrals.case_id");
    nrm__v1__reply__free_unpacked(reply, NULL);
}

static void test_a_stranger_listing_referrals_without_a_case_gets_an_empty_list(void **state)
{
    authz_fixture_case_t c;
    s_legal_aid_case(&c);
    Nrm__V1__ListReferrals l = NRM__V1__LIST_REFERRALS__INIT;
    Nrm__V1__Reply *reply = s_list_referrals(STRANGER, &l);
    assert_int_equal(reply->status, OK);
    assert_int_equal(reply->referral_list->n_referrals, 0);
    assert_string_equal(reply->referral_list->next_page_token, "");
    nrm__v1__reply__free_unpacked(reply, NULL);
}

static void test_the_case_manager_and_a_linked_reporter_see_every_referral_of_the_case(void **state)
{
    authz_fixture_case_t c;
    authz_fixture_case(h, MANAGER, REPORTER, LEGAL_AID, &c);
    s_wait_routing_knows(c.case_id, "case_reporters WHERE agency_id = '" REPORTER "'");
    long long all = routing_count_referrals(h, c.case_id, 0);
    assert_true(all >= 1);
    assert_int_equal(s_case_referrals(MANAGER, c.case_id), all);
    assert_int_equal(s_case_referrals(REPORTER, c.case_id), all);
    assert_int_equal(s_case_referrals("coordinator", c.case_id), all);
}

static void test_a_provider_sees_only_its_own_referrals_of_a_case(void **state)
{
    scenario_report_t s;
    routing_person(&s, "MA-04", 33, NRM__V1__GENDER__GENDER_FEMALE, "NG", true);
    routing_person_needs(&s, LEGAL_AID);
    routing_person_needs(&s, MEDICAL);
    char case_id[ROUTING_ID_TEXT], legal[ROUTING_ID_TEXT], lawyer[ROUTING_ID_TEXT];
    assert_int_equal(routing_submit(h, &s, MANAGER, case_id), OK);
    assert_int_equal(routing_wait_referrals(h, case_id, 2), 2);
    assert_true(routing_referral(h, case_id, LEGAL_AID, 1, legal, lawyer));
    Nrm__V1__ListReferrals l = NRM__V1__LIST_REFERRALS__INIT;
    l.case_id = case_id;
    Nrm__V1__Reply *reply = s_list_referrals(lawyer, &l);
    assert_int_equal(reply->status, OK);
    assert_int_equal(reply->referral_list->n_referrals, 1);
    assert_string_equal(reply->referral_list->referrals[0]->referral_id, legal);
    assert_int_equal(reply->referral_list->referrals[0]->service, LEGAL_AID);
    assert_string_equal(reply->referral_list->referrals[0]->region, "MA-04");
    nrm__v1__reply__free_unpacked(reply, NULL);
}

static void
test_a_reassigned_case_is_listed_to_its_new_case_manager_and_still_to_its_reporter(void **state)
{
    authz_fixture_case_t c;
    s_legal_aid_case(&c);
    Nrm__V1__ReassignCase r = NRM__V1__REASSIGN_CASE__INIT;
    r.case_id = c.case_id;
    r.case_manager_agency_id = NEW_MANAGER;
    assert_int_equal(authz_fixture_call(h, "intake", "coordinator", B(REASSIGN_CASE), &r, NULL),
                     OK);
    s_wait_routing_knows(c.case_id, "cases WHERE case_manager = '" NEW_MANAGER "'");
    assert_int_equal(s_case_referrals(NEW_MANAGER, c.case_id), 1);
    Nrm__V1__ListReferrals l = NRM__V1__LIST_REFERRALS__INIT;
    l.case_id = c.case_id;
    Nrm__V1__Reply *reply = s_list_referrals(MANAGER, &l); /* its report opened it: a reporter */
    assert_int_equal(reply->status, OK);
    nrm__v1__reply__free_unpacked(reply, NULL);
}

static void test_a_replay_of_intakes_stream_fills_in_the_parties_of_a_case_and_routes_nothing_again(
    void **state)
{
    authz_fixture_case_t c;
    authz_fixture_case(h, MANAGER, REPORTER, LEGAL_AID, &c);
    s_wait_routing_knows(c.case_id, "case_reporters WHERE agency_id = '" REPORTER "'");
    char *before = routing_fingerprint(h);
    char sql[SQL_MAX];
    /* a case routed before routing knew its parties, as after the upgrade */
    snprintf(sql, sizeof sql,
             "DELETE FROM routing.case_reporters WHERE case_id = '%s';"
             " UPDATE routing.cases SET case_manager = '', manager_seq = 0 WHERE case_id = '%s'",
             c.case_id, c.case_id);
    PQclear(harness_sql(h, sql));
    assert_int_equal(harness_signal(h, "routing", 0, SIGKILL) >= 0, 1);
    PQclear(harness_sql(h, "UPDATE routing.checkpoints SET seq = 0 WHERE stream = 'intake'"));
    assert_int_equal(harness_start(h, "routing", 0), 0);
    assert_true(routing_wait_caught_up(h, ROUTING_WAIT_MS));
    s_wait_routing_knows(c.case_id, "cases WHERE case_manager = '" MANAGER "'");
    s_wait_routing_knows(c.case_id, "case_reporters WHERE agency_id = '" REPORTER "'");
    char *after = routing_fingerprint(h);
    assert_string_equal(after, before);
    free(before);
    free(after);
    assert_int_equal(s_case_referrals(REPORTER, c.case_id), 1);
}

static void test_overdue_only_lists_the_pending_referrals_past_their_deadline(void **state)
{
    authz_fixture_case_t late, on_time;
    s_legal_aid_case(&late);
    s_legal_aid_case(&on_time);
    char sql[SQL_MAX];
    snprintf(sql, sizeof sql, "UPDATE routing.referrals SET due_ms = 1 WHERE referral_id = '%s'",
             late.referral_id);
    PQclear(harness_sql(h, sql));
    Nrm__V1__ListReferrals l = NRM__V1__LIST_REFERRALS__INIT;
    l.overdue_only = 1;
    Nrm__V1__Reply *reply = s_list_referrals("coordinator", &l);
    assert_int_equal(reply->status, OK);
    assert_int_equal(reply->referral_list->n_referrals, 1);
    assert_string_equal(reply->referral_list->referrals[0]->referral_id, late.referral_id);
    assert_int_equal(reply->referral_list->referrals[0]->due_ms, 1);
    nrm__v1__reply__free_unpacked(reply, NULL);
    PQclear(harness_sql(h, "UPDATE routing.referrals SET due_ms = 4102444800000"
                           " WHERE due_ms = 1"));
}

static void test_a_state_filter_keeps_only_referrals_in_those_states(void **state)
{
    authz_fixture_case_t c;
    s_legal_aid_case(&c);
    Nrm__V1__Reply *answer = routing_provider_respond(
        h, c.provider_id, c.referral_id, NRM__V1__REFERRAL_DECISION__REFERRAL_DECISION_ACCEPT,
        NRM__V1__DECLINE_REASON__DECLINE_REASON_UNSPECIFIED, "");
    assert_int_equal(answer->status, OK);
    nrm__v1__reply__free_unpacked(answer, NULL);
    char *states[] = {"accepted", "completed"};
    Nrm__V1__ListReferrals l = NRM__V1__LIST_REFERRALS__INIT;
    l.case_id = c.case_id;
    l.state = states;
    l.n_state = 2;
    Nrm__V1__Reply *reply = s_list_referrals(MANAGER, &l);
    assert_int_equal(reply->status, OK);
    assert_int_equal(reply->referral_list->n_referrals, 1);
    assert_string_equal(reply->referral_list->referrals[0]->state, "accepted");
    assert_true(reply->referral_list->referrals[0]->updated_ms > 0);
    nrm__v1__reply__free_unpacked(reply, NULL);
}

static void test_an_unknown_state_is_refused_naming_its_place_in_the_list(void **state)
{
    char *states[] = {"pending", "lost"};
    Nrm__V1__ListReferrals l = NRM__V1__LIST_REFERRALS__INIT;
    l.state = states;
    l.n_state = 2;
    Nrm__V1__Reply *reply = s_list_referrals(MANAGER, &l);
    assert_int_equal(reply->status, INVALID);
    assert_string_equal(reply->error_field, "list_referrals.state[1]");
    nrm__v1__reply__free_unpacked(reply, NULL);
}

static void test_a_page_token_not_from_a_page_is_refused(void **state)
{
    Nrm__V1__ListReferrals l = NRM__V1__LIST_REFERRALS__INIT;
    l.page_token = "not-a-token";
    Nrm__V1__Reply *reply = s_list_referrals(MANAGER, &l);
    assert_int_equal(reply->status, INVALID);
    assert_string_equal(reply->error_field, "list_referrals.page_token");
    nrm__v1__reply__free_unpacked(reply, NULL);
    l.page_token = "";
    l.page_size = NRM_PAGE_MAX + 1;
    reply = s_list_referrals(MANAGER, &l);
    assert_int_equal(reply->status, INVALID);
    assert_string_equal(reply->error_field, "list_referrals.page_size");
    nrm__v1__reply__free_unpacked(reply, NULL);
}

/* The allocations of the case as agency sees them: asserts OK and returns the reply. */
static Nrm__V1__Reply *s_case_allocations(const char *agency, const char *case_id)
{
    Nrm__V1__ListAllocations l = NRM__V1__LIST_ALLOCATIONS__INIT;
    l.case_id = (char *)case_id;
    Nrm__V1__Reply *reply = s_list_allocations(agency, &l);
    assert_int_equal(reply->status, OK);
    assert_int_equal(reply->result_case, NRM__V1__REPLY__RESULT_ALLOCATION_LIST);
    return reply;
}

static void test_the_shelter_operator_and_the_coordinator_list_the_bed_held_for_a_case(void **state)
{
    authz_fixture_case_t c;
    authz_fixture_case(h, MANAGER, NULL, SHELTER, &c);
    const char *who[] = {c.operator_id, "coordinator"};
    for (size_t i = 0; i < 2; i++) {
        Nrm__V1__Reply *reply = s_case_allocations(who[i], c.case_id);
        assert_int_equal(reply->allocation_list->n_allocations, 1);
        const Nrm__V1__AllocationRow *a = reply->allocation_list->allocations[0];
        assert_string_equal(a->allocation_id, c.allocation_id);
        assert_string_equal(a->state, "held");
        assert_string_equal(a->operator_agency_id, c.operator_id);
        assert_true(a->beds >= 1 && a->hold_until_ms > 0 && a->created_ms > 0);
        nrm__v1__reply__free_unpacked(reply, NULL);
    }
}

static void
test_a_stranger_or_a_reporter_asking_for_the_allocations_of_a_case_is_denied(void **state)
{
    authz_fixture_case_t c;
    const char *who[] = {STRANGER, REPORTER}; /* a reporter has no say over the bed */
    authz_fixture_case(h, MANAGER, REPORTER, SHELTER, &c);
    for (size_t i = 0; i < sizeof who / sizeof *who; i++) {
        Nrm__V1__ListAllocations l = NRM__V1__LIST_ALLOCATIONS__INIT;
        l.case_id = c.case_id;
        Nrm__V1__Reply *reply = s_list_allocations(who[i], &l);
        assert_int_equal(reply->status, DENIED);
        assert_string_equal(reply->error_field, "list_allocations.case_id");
        nrm__v1__reply__free_unpacked(reply, NULL);
    }
}

static void test_an_agency_is_denied_the_allocations_of_a_shelter_it_does_not_operate(void **state)
{
    authz_fixture_case_t c;
    authz_fixture_case(h, MANAGER, NULL, SHELTER, &c);
    char sql[SQL_MAX];
    snprintf(sql, sizeof sql,
             "SELECT shelter_id FROM shelter.allocations WHERE allocation_id = '%s'",
             c.allocation_id);
    PGresult *res = harness_sql(h, sql);
    char shelter_id[AUTHZ_FIXTURE_ID];
    snprintf(shelter_id, sizeof shelter_id, "%s", PQgetvalue(res, 0, 0));
    PQclear(res);
    Nrm__V1__ListAllocations l = NRM__V1__LIST_ALLOCATIONS__INIT;
    l.shelter_id = shelter_id;
    Nrm__V1__Reply *reply = s_list_allocations(STRANGER, &l);
    assert_int_equal(reply->status, DENIED);
    assert_string_equal(reply->error_field, "list_allocations.shelter_id");
    nrm__v1__reply__free_unpacked(reply, NULL);
    reply = s_list_allocations(c.operator_id, &l);
    assert_int_equal(reply->status, OK);
    assert_true(reply->allocation_list->n_allocations >= 1);
    for (size_t i = 0; i < reply->allocation_list->n_allocations; i++)
        assert_string_equal(reply->allocation_list->allocations[i]->shelter_id, shelter_id);
    nrm__v1__reply__free_unpacked(reply, NULL);
}

static void test_a_case_managers_list_without_a_case_holds_its_cases_beds_only(void **state)
{
    authz_fixture_case_t mine, other;
    authz_fixture_case(h, NEW_MANAGER, NULL, SHELTER, &mine);
    authz_fixture_case(h, MANAGER, NULL, SHELTER, &other);
    s_wait_shelter_knows_manager(mine.case_id);
    Nrm__V1__ListAllocations l = NRM__V1__LIST_ALLOCATIONS__INIT;
    Nrm__V1__Reply *reply = s_list_allocations(NEW_MANAGER, &l);
    assert_int_equal(reply->status, OK);
    assert_int_equal(reply->allocation_list->n_allocations, 1);
    assert_string_equal(reply->allocation_list->allocations[0]->case_id, mine.case_id);
    nrm__v1__reply__free_unpacked(reply, NULL);
}

static void test_a_released_bed_is_listed_released_with_its_reason(void **state)
{
    authz_fixture_case_t c;
    authz_fixture_case(h, MANAGER, NULL, SHELTER, &c);
    Nrm__V1__ReleaseBed r = NRM__V1__RELEASE_BED__INIT;
    r.allocation_id = c.allocation_id;
    r.reason = "departed";
    assert_int_equal(authz_fixture_call(h, "shelter", c.operator_id, B(RELEASE_BED), &r, NULL), OK);
    char *states[] = {"released"};
    Nrm__V1__ListAllocations l = NRM__V1__LIST_ALLOCATIONS__INIT;
    l.case_id = c.case_id;
    l.state = states;
    l.n_state = 1;
    Nrm__V1__Reply *reply = s_list_allocations(c.operator_id, &l);
    assert_int_equal(reply->status, OK);
    assert_int_equal(reply->allocation_list->n_allocations, 1);
    assert_string_equal(reply->allocation_list->allocations[0]->state, "released");
    assert_string_equal(reply->allocation_list->allocations[0]->reason, "departed");
    nrm__v1__reply__free_unpacked(reply, NULL);
}

/* Puts a case on shelter's waitlist (for a family no shelter can take: never served) with its
 * urgency, and records its case manager. */
static void s_waitlisted(const char *case_id, int urgency, const char *manager)
{
    char sql[SQL_MAX * 2];
    snprintf(sql, sizeof sql,
             "INSERT INTO shelter.waitlist (case_id, request_event_id, region, urgency,"
             " safety_risk, is_minor, gender, disability, children, beds, requested_at_ms, reason)"
             " VALUES ('%s', gen_random_uuid(), 'MA-04', %d, 1, false, 2, false, 999, 1000,"
             " 1, 'no shelter takes 1000 beds');"
             " INSERT INTO shelter.case_managers VALUES ('%s', '%s', 1)",
             case_id, urgency, case_id, manager);
    PQclear(harness_sql(h, sql));
}

static void
test_a_waitlisted_case_is_listed_waiting_with_its_place_to_the_coordinator_and_its_manager(
    void **state)
{
    s_waitlisted("casefile-waiting-routine", NRM__V1__URGENCY__URGENCY_ROUTINE, MANAGER);
    s_waitlisted("casefile-waiting-emergency", NRM__V1__URGENCY__URGENCY_EMERGENCY, MANAGER);
    const char *who[] = {"coordinator", MANAGER};
    for (size_t i = 0; i < sizeof who / sizeof *who; i++) {
        Nrm__V1__Reply *reply = s_case_allocations(who[i], "casefile-waiting-routine");
        assert_int_equal(reply->allocation_list->n_allocations, 1);
        const Nrm__V1__AllocationRow *a = reply->allocation_list->allocations[0];
        assert_string_equal(a->state, "waiting");
        assert_string_equal(a->shelter_id, "");
        assert_int_equal(strncmp(a->allocation_id, "waitlist:", strlen("waitlist:")), 0);
        assert_int_equal(a->waitlist_position, 2); /* behind the emergency */
        nrm__v1__reply__free_unpacked(reply, NULL);
    }
    Nrm__V1__ListAllocations l = NRM__V1__LIST_ALLOCATIONS__INIT;
    l.case_id = "casefile-waiting-routine";
    Nrm__V1__Reply *reply = s_list_allocations(STRANGER, &l);
    assert_int_equal(reply->status, DENIED);
    nrm__v1__reply__free_unpacked(reply, NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(
            test_a_providers_inbox_shows_exactly_its_referrals_in_pages_stable_while_new_ones_are_created),
        cmocka_unit_test(test_a_stranger_asking_for_the_referrals_of_a_case_is_denied),
        cmocka_unit_test(test_a_stranger_listing_referrals_without_a_case_gets_an_empty_list),
        cmocka_unit_test(
            test_the_case_manager_and_a_linked_reporter_see_every_referral_of_the_case),
        cmocka_unit_test(test_a_provider_sees_only_its_own_referrals_of_a_case),
        cmocka_unit_test(
            test_a_reassigned_case_is_listed_to_its_new_case_manager_and_still_to_its_reporter),
        cmocka_unit_test(
            test_a_replay_of_intakes_stream_fills_in_the_parties_of_a_case_and_routes_nothing_again),
        cmocka_unit_test(test_overdue_only_lists_the_pending_referrals_past_their_deadline),
        cmocka_unit_test(test_a_state_filter_keeps_only_referrals_in_those_states),
        cmocka_unit_test(test_an_unknown_state_is_refused_naming_its_place_in_the_list),
        cmocka_unit_test(test_a_page_token_not_from_a_page_is_refused),
        cmocka_unit_test(
            test_the_shelter_operator_and_the_coordinator_list_the_bed_held_for_a_case),
        cmocka_unit_test(
            test_a_stranger_or_a_reporter_asking_for_the_allocations_of_a_case_is_denied),
        cmocka_unit_test(test_an_agency_is_denied_the_allocations_of_a_shelter_it_does_not_operate),
        cmocka_unit_test(test_a_case_managers_list_without_a_case_holds_its_cases_beds_only),
        cmocka_unit_test(test_a_released_bed_is_listed_released_with_its_reason),
        cmocka_unit_test(
            test_a_waitlisted_case_is_listed_waiting_with_its_place_to_the_coordinator_and_its_manager),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
