/* The whole mechanism with real nrm-intake, nrm-routing, nrm-shelter and nrm-notify processes:
 * a woman reported in MA-04 needing shelter and medical care; the provider routing chooses
 * hears its referral (undeliverable until it subscribes, visibly), then its acceptance and
 * completion; the reporting police unit hears the outcomes; the shelter's operator hears the
 * allocation. Every delivered request is signed and names nobody. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <czmq.h>

#include "harness.h"
#include "notify_fixture.h"
#include "notify_sinks.h"
#include "nrm_time.h"
#include "routing_scenario.h"
#include "scenario.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NAME "Precious Ogunleye-Mansouri"
#define DOB "1995-09-21"
#define REPORTER "police-ma-04"
#define OPERATOR "shelter-op-rabat" /* operates the demonstration women's shelter of MA-04 */
#define SECRET "end-to-end-secret-0123456789abcdef"
#define MAX_REQUESTS 64

static harness_t *h;
static notify_receiver_t *receiver;
static char case_id[ROUTING_ID_TEXT];

static int setup(void **state)
{
    h = harness_new("notify_e2e");
    receiver = notify_receiver_new();
    notify_fixture_settings_t settings = {
        .max_attempts = 5, .backoff_ms = 100, .max_backoff_ms = 500, .timeout_ms = 2000};
    notify_fixture_config(h, &settings, NULL);
    const char *services[] = {"intake", "routing", "shelter", "notify"};
    for (size_t i = 0; i < sizeof services / sizeof services[0]; i++)
        if (harness_start(h, services[i], 0) != 0)
            return -1;
    const char *subscribers[] = {REPORTER, OPERATOR, "coordinator"};
    for (size_t i = 0; i < sizeof subscribers / sizeof subscribers[0]; i++) {
        char url[256], id[65];
        notify_fixture_subscribe_ok(h, subscribers[i], "webhook",
                                    notify_fixture_url(receiver, subscribers[i], url), NULL, SECRET,
                                    id);
    }
    return 0;
}

static int teardown(void **state)
{
    harness_destroy(&h);
    notify_receiver_destroy(&receiver);
    return 0;
}

/* Waits until agency has a delivery of topic about the case in state; returns the rows seen. */
static long long s_wait_row(const char *agency, const char *topic, const char *state)
{
    char sql[512];
    snprintf(sql, sizeof sql,
             "SELECT count(*) FROM notify.deliveries WHERE agency_id = '%s' AND topic = '%s'"
             " AND case_id = '%s' AND state = '%s'",
             agency, topic, case_id, state);
    return notify_fixture_wait(h, sql, 1);
}

/* The requests at the agency's path carrying topic, each signed with SECRET. */
static size_t s_received(const char *agency, const char *topic)
{
    char path[128], type[128];
    snprintf(path, sizeof path, "/hook/%s", agency);
    snprintf(type, sizeof type, "\"type\":\"%s\"", topic);
    size_t at[MAX_REQUESTS], n = notify_fixture_requests_at(receiver, path, at, MAX_REQUESTS);
    size_t found = 0;
    for (size_t i = 0; i < n; i++) {
        notify_request_t *r = notify_receiver_request(receiver, at[i]);
        if (strstr(r->body, type) && strstr(r->body, case_id)) {
            assert_true(notify_fixture_signature_ok(r, SECRET));
            found++;
        }
        notify_request_free(&r);
    }
    return found;
}

static void test_provider_reporter_and_operator_hear_the_case_through(void **s)
{
    scenario_report_t report;
    scenario_adult_woman(&report, "MA-04", NAME, DOB);
    assert_int_equal(routing_submit(h, &report, REPORTER, case_id), NRM__V1__STATUS__STATUS_OK);
    char referral[ROUTING_ID_TEXT], provider[ROUTING_ID_TEXT];
    assert_true(routing_wait_referrals(h, case_id, 1) >= 1);
    int64_t deadline = nrm_mono_ms() + NOTIFY_FIXTURE_WAIT_MS;
    while (!routing_referral(h, case_id, NRM__V1__SERVICE_TYPE__SERVICE_TYPE_MEDICAL, 1, referral,
                             provider) &&
           nrm_mono_ms() < deadline)
        zclock_sleep(50);
    assert_true(provider[0] != '\0');

    /* the provider has no subscription yet: its referral is visibly undeliverable */
    assert_int_equal(s_wait_row(provider, "referral.created", "undeliverable"), 1);
    char url[256], id[65];
    notify_fixture_subscribe_ok(h, provider, "webhook", notify_fixture_url(receiver, provider, url),
                                NULL, SECRET, id);

    Nrm__V1__Reply *accepted = routing_provider_respond(
        h, provider, referral, NRM__V1__REFERRAL_DECISION__REFERRAL_DECISION_ACCEPT, 0, "");
    assert_int_equal(accepted->status, NRM__V1__STATUS__STATUS_OK);
    nrm__v1__reply__free_unpacked(accepted, NULL);
    assert_int_equal(s_wait_row(provider, "referral.accepted", "delivered"), 1);
    assert_int_equal(s_wait_row(REPORTER, "referral.accepted", "delivered"), 1);

    Nrm__V1__Reply *completed = routing_provider_complete(h, provider, referral, true, "");
    assert_int_equal(completed->status, NRM__V1__STATUS__STATUS_OK);
    nrm__v1__reply__free_unpacked(completed, NULL);
    assert_int_equal(s_wait_row(provider, "referral.completed", "delivered"), 1);
    assert_int_equal(s_wait_row(REPORTER, "referral.completed", "delivered"), 1);
    assert_int_equal(s_received(provider, "referral.accepted"), 1);
    assert_int_equal(s_received(provider, "referral.completed"), 1);
    assert_int_equal(s_received(REPORTER, "referral.completed"), 1);
}

static void test_shelter_operator_and_reporter_hear_the_allocation(void **s)
{
    assert_int_equal(s_wait_row(OPERATOR, "shelter.allocated", "delivered"), 1);
    assert_int_equal(s_wait_row(REPORTER, "shelter.allocated", "delivered"), 1);
    assert_int_equal(s_received(OPERATOR, "shelter.allocated"), 1);
    assert_int_equal(s_received(REPORTER, "shelter.allocated"), 1);
    /* the coordinator is told only what nobody else can act on: nothing here */
    char sql[256];
    snprintf(sql, sizeof sql,
             "SELECT count(*) FROM notify.deliveries WHERE agency_id = 'coordinator'"
             " AND case_id = '%s'",
             case_id);
    assert_int_equal(harness_sql_int(h, sql), 0);
}

static void test_a_disclosure_reaches_a_follower_without_the_identity(void **s)
{
    /* the case manager follows disclosures of its cases, then reads the identity itself */
    const char *const topics[] = {"case.identity_", NULL};
    char url[256], id[65];
    notify_fixture_subscribe_ok(h, REPORTER, "webhook",
                                notify_fixture_url(receiver, "police-ma-04-follows", url), topics,
                                SECRET, id);
    Nrm__V1__GetIdentity g = NRM__V1__GET_IDENTITY__INIT;
    g.case_id = case_id;
    g.purpose = "case_management";
    Nrm__V1__Request req = NRM__V1__REQUEST__INIT;
    scenario_request(&req, NRM__V1__REQUEST__BODY_GET_IDENTITY, &g);
    Nrm__V1__Reply *r = harness_call(h, "intake", REPORTER, &req);
    assert_non_null(r);
    assert_int_equal(r->status, NRM__V1__STATUS__STATUS_OK);
    assert_string_equal(r->identity->person->full_name, NAME);
    nrm__v1__reply__free_unpacked(r, NULL);
    assert_int_equal(s_wait_row(REPORTER, "case.identity_disclosed", "delivered"), 1);
    assert_int_equal(s_received("police-ma-04-follows", "case.identity_disclosed"), 1);
}

static void test_nobody_is_named_anywhere(void **s)
{
    const char *identifying[] = {NAME,          "Ogunleye",      DOB,
                                 "600 000 111", "PASS-A1234567", "farm gate"};
    const char *services[] = {"intake", "routing", "shelter", "notify"};
    for (size_t i = 0; i < sizeof identifying / sizeof *identifying; i++) {
        assert_false(notify_receiver_saw(receiver, identifying[i]));
        for (size_t k = 0; k < sizeof services / sizeof *services; k++)
            assert_false(harness_log_contains(h, services[k], 0, identifying[i]));
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_provider_reporter_and_operator_hear_the_case_through),
        cmocka_unit_test(test_shelter_operator_and_reporter_hear_the_allocation),
        cmocka_unit_test(test_a_disclosure_reaches_a_follower_without_the_identity),
        cmocka_unit_test(test_nobody_is_named_anywhere),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
