/* The case file's categorical reads (GetCase, ListCases) and consent to data sharing, against a
 * real nrm-intake speaking CURVE. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "harness.h"
#include "routing_scenario.h"
#include "scenario.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MANAGER "police-ma-06"
#define REPORTER "hotline-national"
#define LISTER "labour-ma-06" /* manages the cases of the paging test only */
#define STRANGER "consulate-ng"
#define OK NRM__V1__STATUS__STATUS_OK
#define DENIED NRM__V1__STATUS__STATUS_PERMISSION_DENIED
#define INVALID NRM__V1__STATUS__STATUS_INVALID_ARGUMENT
#define WAIT_MS 10000
#define NAME_TEXT 64
#define PAGED_CASES 7
#define PAGE 3
#define MAX_SEEN 64

static harness_t *h;

static int setup(void **state)
{
    h = harness_new("case_file");
    return harness_start(h, "intake", 0);
}

static int teardown(void **state)
{
    harness_destroy(&h);
    return 0;
}

/* Reports a new named person as agency in region (age: adult 30 or minor 16); returns the
 * case id in case_id. When link_by is not NULL the same person is reported again by it. */
static void s_case(const char *agency, const char *link_by, const char *region, bool minor,
                   char case_id[ROUTING_ID_TEXT])
{
    static int people;
    char name[NAME_TEXT];
    snprintf(name, sizeof name, "Case File Person %d", ++people);
    scenario_report_t s;
    routing_person(&s, region, minor ? 16 : 30, NRM__V1__GENDER__GENDER_MALE, "SN", true);
    routing_person_named(&s, name, minor ? "2010-01-02" : "1996-01-02");
    routing_person_needs(&s, NRM__V1__SERVICE_TYPE__SERVICE_TYPE_MEDICAL);
    s.report.consent_to_data_sharing = 0;
    assert_int_equal(routing_submit(h, &s, agency, case_id), OK);
    if (link_by) {
        char linked[ROUTING_ID_TEXT];
        assert_int_equal(routing_submit(h, &s, link_by, linked), OK);
        assert_string_equal(linked, case_id);
    }
}

/* Sends an intake request as agency; returns the reply (caller frees). */
static Nrm__V1__Reply *s_call(const char *agency, Nrm__V1__Request__BodyCase body, void *msg)
{
    Nrm__V1__Request req = NRM__V1__REQUEST__INIT;
    scenario_request(&req, body, msg);
    Nrm__V1__Reply *r = harness_call(h, "intake", agency, &req);
    assert_non_null(r);
    return r;
}

/* GetCase as agency. */
static Nrm__V1__Reply *s_get(const char *agency, const char *case_id)
{
    Nrm__V1__GetCase g = NRM__V1__GET_CASE__INIT;
    g.case_id = (char *)case_id;
    return s_call(agency, NRM__V1__REQUEST__BODY_GET_CASE, &g);
}

/* The status of a request, the reply freed. */
static Nrm__V1__Status s_status(Nrm__V1__Reply *r)
{
    Nrm__V1__Status st = r->status;
    nrm__v1__reply__free_unpacked(r, NULL);
    return st;
}

static void test_the_case_manager_reads_the_categorical_record_of_its_case(void **state)
{
    char case_id[ROUTING_ID_TEXT];
    s_case(MANAGER, REPORTER, "MA-06", false, case_id);
    Nrm__V1__Reply *r = s_get(MANAGER, case_id);
    assert_int_equal(r->status, OK);
    const Nrm__V1__CaseView *v = r->case_view;
    assert_non_null(v);
    assert_string_equal(v->case_id, case_id);
    assert_string_equal(v->region, "MA-06");
    assert_false(v->is_minor);
    assert_int_equal(v->profile->age_years, 30);
    assert_string_equal(v->profile->nationality, "SN");
    assert_int_equal(v->n_needs, 1);
    assert_int_equal(v->needs[0], NRM__V1__SERVICE_TYPE__SERVICE_TYPE_MEDICAL);
    assert_string_equal(v->state, "open");
    assert_string_equal(v->case_manager_agency_id, MANAGER);
    assert_int_equal(v->n_reporter_agency_ids, 2);
    assert_int_equal(v->report_count, 2);
    assert_true(v->consent_to_referral);
    assert_false(v->consent_to_data_sharing);
    assert_false(v->identity_erased);
    assert_true(v->opened_at_ms > 0 && v->updated_at_ms >= v->opened_at_ms);
    assert_int_equal(v->closed_at_ms, 0);
    nrm__v1__reply__free_unpacked(r, NULL);
}

static void test_a_reporter_and_the_coordinator_read_the_case_and_nobody_else(void **state)
{
    char case_id[ROUTING_ID_TEXT];
    s_case(MANAGER, REPORTER, "MA-06", false, case_id);
    assert_int_equal(s_status(s_get(REPORTER, case_id)), OK);
    assert_int_equal(s_status(s_get("coordinator", case_id)), OK);
    Nrm__V1__Reply *r = s_get(STRANGER, case_id);
    assert_int_equal(r->status, DENIED);
    assert_string_equal(r->error_field, "get_case.case_id");
    assert_null(r->case_view);
    nrm__v1__reply__free_unpacked(r, NULL);
}

static void test_a_stranger_is_refused_every_read_of_the_case_file(void **state)
{
    char case_id[ROUTING_ID_TEXT], sql[256];
    snprintf(sql, sizeof sql,
             "SELECT count(*) FROM intake.audit_log WHERE agency_id = '%s'"
             " AND status = 'PERMISSION_DENIED'",
             STRANGER);
    long long denials = harness_sql_int(h, sql);
    s_case(MANAGER, NULL, "MA-06", false, case_id);
    assert_int_equal(s_status(s_get(STRANGER, case_id)), DENIED);
    Nrm__V1__ListCases l = NRM__V1__LIST_CASES__INIT;
    Nrm__V1__Reply *r = s_call(STRANGER, NRM__V1__REQUEST__BODY_LIST_CASES, &l);
    assert_int_equal(r->status, DENIED);
    assert_string_equal(r->error_field, "list_cases");
    nrm__v1__reply__free_unpacked(r, NULL);
    Nrm__V1__GetIdentity g = NRM__V1__GET_IDENTITY__INIT;
    g.case_id = case_id;
    g.purpose = "contact";
    assert_int_equal(s_status(s_call(STRANGER, NRM__V1__REQUEST__BODY_GET_IDENTITY, &g)), DENIED);
    assert_int_equal(harness_sql_int(h, sql) - denials, 3);
}

/* Lists as agency with the filters of l, following every page (at most MAX_SEEN cases) into
 * ids; returns the count. Each page holds at most page_size cases. */
static size_t s_list_all(const char *agency, Nrm__V1__ListCases *l,
                         char ids[MAX_SEEN][ROUTING_ID_TEXT], void (*between_pages)(void))
{
    size_t n = 0;
    char token[256] = "";
    do {
        l->page_token = token;
        Nrm__V1__Reply *r = s_call(agency, NRM__V1__REQUEST__BODY_LIST_CASES, l);
        assert_int_equal(r->status, OK);
        assert_true(l->page_size == 0 || r->case_list->n_cases <= (size_t)l->page_size);
        for (size_t i = 0; i < r->case_list->n_cases && n < MAX_SEEN; i++)
            snprintf(ids[n++], ROUTING_ID_TEXT, "%s", r->case_list->cases[i]->case_id);
        snprintf(token, sizeof token, "%s", r->case_list->next_page_token);
        nrm__v1__reply__free_unpacked(r, NULL);
        if (token[0] && between_pages)
            between_pages();
    } while (token[0]);
    return n;
}

/* Opens another case of LISTER (written while it pages). */
static void s_open_one_more(void)
{
    char case_id[ROUTING_ID_TEXT];
    s_case(LISTER, NULL, "MA-06", false, case_id);
}

static void test_paging_neither_repeats_nor_skips_a_case_while_cases_are_opened(void **state)
{
    char before[PAGED_CASES][ROUTING_ID_TEXT];
    for (int i = 0; i < PAGED_CASES; i++)
        s_case(LISTER, NULL, "MA-06", false, before[i]);
    Nrm__V1__ListCases l = NRM__V1__LIST_CASES__INIT;
    l.page_size = PAGE;
    static char seen[MAX_SEEN][ROUTING_ID_TEXT];
    size_t n = s_list_all(LISTER, &l, seen, s_open_one_more);
    /* every case that existed when paging began, once; none of those opened meanwhile (they
     * are newer than the first page) */
    assert_int_equal(n, PAGED_CASES);
    for (int i = 0; i < PAGED_CASES; i++) {
        int found = 0;
        for (size_t k = 0; k < n; k++)
            found += strcmp(seen[k], before[i]) == 0;
        assert_int_equal(found, 1);
    }
}

static void test_a_case_manager_lists_only_the_cases_it_manages(void **state)
{
    char mine[ROUTING_ID_TEXT], other[ROUTING_ID_TEXT];
    s_case(MANAGER, NULL, "MA-06", false, mine);
    s_case("hospital-ma-06", NULL, "MA-06", false, other);
    Nrm__V1__ListCases l = NRM__V1__LIST_CASES__INIT;
    static char seen[MAX_SEEN][ROUTING_ID_TEXT];
    size_t n = s_list_all(MANAGER, &l, seen, NULL);
    bool found_mine = false;
    for (size_t i = 0; i < n; i++) {
        assert_string_not_equal(seen[i], other);
        found_mine |= strcmp(seen[i], mine) == 0;
    }
    assert_true(found_mine);
}

static void test_the_coordinator_lists_by_region_minority_openness_and_urgency(void **state)
{
    char minor[ROUTING_ID_TEXT], adult[ROUTING_ID_TEXT], closed[ROUTING_ID_TEXT];
    s_case(MANAGER, NULL, "MA-09", true, minor);
    s_case(MANAGER, NULL, "MA-09", false, adult);
    s_case(MANAGER, NULL, "MA-09", true, closed);
    assert_int_equal(routing_close_case(h, MANAGER, closed, "duplicate"), OK);
    static char seen[MAX_SEEN][ROUTING_ID_TEXT];
    Nrm__V1__ListCases l = NRM__V1__LIST_CASES__INIT;
    l.region = "MA-09";
    assert_int_equal(s_list_all("coordinator", &l, seen, NULL), 3);
    l.minor_only = 1;
    assert_int_equal(s_list_all("coordinator", &l, seen, NULL), 2);
    l.open_only = 1;
    assert_int_equal(s_list_all("coordinator", &l, seen, NULL), 1);
    assert_string_equal(seen[0], minor);
    l.minor_only = 0;
    l.open_only = 0;
    l.urgency = NRM__V1__URGENCY__URGENCY_ROUTINE; /* the reports were urgent */
    assert_int_equal(s_list_all("coordinator", &l, seen, NULL), 0);
}

static void test_a_page_token_is_valid_only_with_the_filters_it_was_made_for(void **state)
{
    char a[ROUTING_ID_TEXT], b[ROUTING_ID_TEXT];
    s_case(MANAGER, NULL, "MA-11", false, a);
    s_case(MANAGER, NULL, "MA-11", false, b);
    Nrm__V1__ListCases l = NRM__V1__LIST_CASES__INIT;
    l.region = "MA-11";
    l.page_size = 1;
    Nrm__V1__Reply *r = s_call("coordinator", NRM__V1__REQUEST__BODY_LIST_CASES, &l);
    assert_int_equal(r->status, OK);
    char token[256];
    snprintf(token, sizeof token, "%s", r->case_list->next_page_token);
    nrm__v1__reply__free_unpacked(r, NULL);
    assert_true(token[0] != '\0');
    l.page_token = token;
    l.region = "MA-12";
    r = s_call("coordinator", NRM__V1__REQUEST__BODY_LIST_CASES, &l);
    assert_int_equal(r->status, INVALID);
    assert_string_equal(r->error_field, "list_cases.page_token");
    nrm__v1__reply__free_unpacked(r, NULL);
    l.page_token = "not-a-token";
    l.region = "MA-11";
    r = s_call("coordinator", NRM__V1__REQUEST__BODY_LIST_CASES, &l);
    assert_int_equal(r->status, INVALID);
    assert_string_equal(r->error_field, "list_cases.page_token");
    nrm__v1__reply__free_unpacked(r, NULL);
}

static void test_consent_to_data_sharing_given_later_shows_in_the_case_and_its_event(void **s)
{
    char case_id[ROUTING_ID_TEXT];
    s_case(MANAGER, NULL, "MA-06", false, case_id);
    harness_sub_t *sub = harness_subscribe(h, "intake", 0);
    Nrm__V1__UpdateCase u = NRM__V1__UPDATE_CASE__INIT;
    u.case_id = case_id;
    u.consent_to_data_sharing = 1;
    assert_int_equal(s_status(s_call(MANAGER, NRM__V1__REQUEST__BODY_UPDATE_CASE, &u)), OK);
    Nrm__V1__Event *ev = harness_sub_next(sub, "case.updated", WAIT_MS);
    assert_non_null(ev);
    assert_string_equal(ev->case_id, case_id);
    assert_true(ev->case_updated->consent_to_data_sharing);
    nrm__v1__event__free_unpacked(ev, NULL);
    harness_sub_destroy(&sub);
    Nrm__V1__Reply *r = s_get(MANAGER, case_id);
    assert_true(r->case_view->consent_to_data_sharing);
    nrm__v1__reply__free_unpacked(r, NULL);
}

static void test_withdrawing_data_sharing_only_keeps_consent_to_referral(void **state)
{
    char case_id[ROUTING_ID_TEXT];
    s_case(MANAGER, NULL, "MA-06", false, case_id);
    Nrm__V1__UpdateCase u = NRM__V1__UPDATE_CASE__INIT;
    u.case_id = case_id;
    u.consent_to_data_sharing = 1;
    assert_int_equal(s_status(s_call(MANAGER, NRM__V1__REQUEST__BODY_UPDATE_CASE, &u)), OK);
    harness_sub_t *sub = harness_subscribe(h, "intake", 0);
    Nrm__V1__WithdrawConsent w = NRM__V1__WITHDRAW_CONSENT__INIT;
    w.case_id = case_id;
    w.data_sharing_only = 1;
    assert_int_equal(s_status(s_call(MANAGER, NRM__V1__REQUEST__BODY_WITHDRAW_CONSENT, &w)), OK);
    Nrm__V1__Event *ev = harness_sub_next(sub, "case.consent_withdrawn", WAIT_MS);
    assert_non_null(ev);
    assert_true(ev->consent_withdrawn->data_sharing_only);
    nrm__v1__event__free_unpacked(ev, NULL);
    harness_sub_destroy(&sub);
    Nrm__V1__Reply *r = s_get(MANAGER, case_id);
    assert_true(r->case_view->consent_to_referral);
    assert_false(r->case_view->consent_to_data_sharing);
    nrm__v1__reply__free_unpacked(r, NULL);
}

static void test_reads_are_audited_and_never_stored(void **state)
{
    char case_id[ROUTING_ID_TEXT];
    s_case(MANAGER, NULL, "MA-06", false, case_id);
    assert_int_equal(s_status(s_get(MANAGER, case_id)), OK);
    char sql[256];
    snprintf(sql, sizeof sql,
             "SELECT count(*) FROM intake.audit_log WHERE kind = 'get_case' AND subject_id = '%s'"
             " AND agency_id = '%s' AND status = 'OK'",
             case_id, MANAGER);
    assert_int_equal(harness_sql_int(h, sql), 1);
    assert_int_equal(harness_sql_int(h, "SELECT count(*) FROM intake.requests r"
                                        " JOIN intake.audit_log a ON a.request_id ="
                                        " r.request_id::text WHERE a.kind IN ('get_case',"
                                        " 'list_cases', 'get_identity')"),
                     0);
}

static void test_intake_serves_while_routing_whose_stream_it_consumes_is_absent(void **state)
{
    /* routing is never started in this program: intake answers, and waits for its stream */
    Nrm__V1__Ping ping = NRM__V1__PING__INIT;
    Nrm__V1__Reply *r = s_call("coordinator", NRM__V1__REQUEST__BODY_PING, &ping);
    assert_int_equal(r->status, OK);
    assert_int_equal(r->pong->n_consumers, 1);
    assert_string_equal(r->pong->consumers[0]->stream, "routing");
    assert_int_equal(r->pong->consumers[0]->checkpoint, 0);
    nrm__v1__reply__free_unpacked(r, NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_the_case_manager_reads_the_categorical_record_of_its_case),
        cmocka_unit_test(test_a_reporter_and_the_coordinator_read_the_case_and_nobody_else),
        cmocka_unit_test(test_a_stranger_is_refused_every_read_of_the_case_file),
        cmocka_unit_test(test_paging_neither_repeats_nor_skips_a_case_while_cases_are_opened),
        cmocka_unit_test(test_a_case_manager_lists_only_the_cases_it_manages),
        cmocka_unit_test(test_the_coordinator_lists_by_region_minority_openness_and_urgency),
        cmocka_unit_test(test_a_page_token_is_valid_only_with_the_filters_it_was_made_for),
        cmocka_unit_test(test_consent_to_data_sharing_given_later_shows_in_the_case_and_its_event),
        cmocka_unit_test(test_withdrawing_data_sharing_only_keeps_consent_to_referral),
        cmocka_unit_test(test_reads_are_audited_and_never_stored),
        cmocka_unit_test(test_intake_serves_while_routing_whose_stream_it_consumes_is_absent),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
