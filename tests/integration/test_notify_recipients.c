/* Who hears what, against a real nrm-notify fed by stand-in intake, routing and shelter streams
 * (the contract's events, crafted): the provider hears its referrals, the operator its
 * shelter's allocations, the reporting agencies the outcomes of their case (a linked agency
 * from the link on, an agency learnt late the outcomes it missed), the coordinator what nobody
 * else can act on; an agency without subscription is undeliverable; an event lost on the bus
 * is fetched and delivered all the same. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <czmq.h>

#include "harness.h"
#include "notify_fixture.h"
#include "notify_sinks.h"
#include "notify_stream.h"
#include "nrm_time.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SECRET "recipients-test-secret-0123456789"
#define OPERATOR "shelter-operator-test"
#define C1 "case-one"
#define C2 "case-two"
#define STEP_MS 1000

static harness_t *h;
static notify_receiver_t *receiver;
static notify_stream_t *intake, *routing, *shelter;
static int64_t t0;

static int setup(void **state)
{
    h = harness_new("notify_recipients");
    receiver = notify_receiver_new();
    notify_fixture_settings_t settings = {
        .max_attempts = 3, .backoff_ms = 100, .max_backoff_ms = 200, .timeout_ms = 1000};
    notify_fixture_config(h, &settings,
                          json_pack("[{s:s, s:s, s:s, s:s}]", "id", OPERATOR, "name",
                                    "Shelter operator (test)", "type", "SHELTER_OPERATOR", "region",
                                    "MA-04"));
    intake =
        notify_stream_new("intake", harness_api(h, "intake", 0), harness_events(h, "intake", 0));
    routing =
        notify_stream_new("routing", harness_api(h, "routing", 0), harness_events(h, "routing", 0));
    shelter =
        notify_stream_new("shelter", harness_api(h, "shelter", 0), harness_events(h, "shelter", 0));
    if (harness_start(h, "notify", 0) != 0)
        return -1;
    struct {
        const char *agency;
        const char *topic;
    } subscribers[] = {{"police-ma-04", NULL}, {"ngo-ma-07", NULL}, {OPERATOR, NULL},
                       {"coordinator", NULL},  {"iom-ma", NULL},    {"labour-ma-06", "shelter."}};
    for (size_t i = 0; i < sizeof subscribers / sizeof subscribers[0]; i++) {
        char url[256], id[65];
        const char *topics[] = {subscribers[i].topic, NULL};
        notify_fixture_subscribe_ok(h, subscribers[i].agency, "webhook",
                                    notify_fixture_url(receiver, subscribers[i].agency, url),
                                    topics, SECRET, id);
    }
    t0 = nrm_now_ms();
    return 0;
}

static int teardown(void **state)
{
    harness_destroy(&h);
    notify_stream_destroy(&intake);
    notify_stream_destroy(&routing);
    notify_stream_destroy(&shelter);
    notify_receiver_destroy(&receiver);
    return 0;
}

/* An event about case_id occurring step seconds after the start. */
static Nrm__V1__Event s_event(const char *case_id, int step)
{
    Nrm__V1__Event ev = NRM__V1__EVENT__INIT;
    ev.case_id = (char *)case_id;
    ev.occurred_at_ms = t0 + (int64_t)step * STEP_MS;
    return ev;
}

/* Delivery rows for agency about topic and case in a state ("" for any). */
static long long s_rows(const char *agency, const char *topic, const char *case_id,
                        const char *state)
{
    char sql[512];
    snprintf(sql, sizeof sql,
             "SELECT count(*) FROM notify.deliveries WHERE agency_id = '%s' AND topic = '%s'"
             " AND case_id = '%s' AND ('%s' = '' OR state = '%s')",
             agency, topic, case_id, state, state);
    return harness_sql_int(h, sql);
}

/* Waits until nothing is pending and every row of the test exists. */
static void s_settle(long long rows)
{
    assert_int_equal(notify_fixture_wait(h, "SELECT count(*) FROM notify.deliveries", rows), rows);
    assert_int_equal(notify_fixture_wait(h,
                                         "SELECT count(*) FROM notify.deliveries"
                                         " WHERE state = 'pending'",
                                         0),
                     0);
}

static void test_referral_outcomes_reach_provider_reporters_and_coordinator(void **s)
{
    Nrm__V1__Event ev = s_event(C1, 0);
    Nrm__V1__CaseOpened opened = NRM__V1__CASE_OPENED__INIT;
    opened.reporting_agency_id = "police-ma-04";
    opened.region = "MA-04";
    ev.body_case = NRM__V1__EVENT__BODY_CASE_OPENED;
    ev.case_opened = &opened;
    notify_stream_emit(intake, &ev);

    ev = s_event(C1, 2);
    Nrm__V1__ReferralCreated created = NRM__V1__REFERRAL_CREATED__INIT;
    created.referral_id = "R1";
    created.provider_agency_id = "ngo-ma-07";
    created.service = NRM__V1__SERVICE_TYPE__SERVICE_TYPE_PSYCHOSOCIAL;
    ev.body_case = NRM__V1__EVENT__BODY_REFERRAL_CREATED;
    ev.referral_created = &created;
    notify_stream_emit(routing, &ev);

    ev = s_event(C1, 3);
    Nrm__V1__ReferralAccepted accepted = NRM__V1__REFERRAL_ACCEPTED__INIT;
    accepted.referral_id = "R1";
    accepted.provider_agency_id = "ngo-ma-07";
    ev.body_case = NRM__V1__EVENT__BODY_REFERRAL_ACCEPTED;
    ev.referral_accepted = &accepted;
    notify_stream_emit(routing, &ev);
    s_settle(3); /* ngo: created, accepted; police: accepted */

    /* IOM reports the same person: it hears the case's outcomes from now on */
    ev = s_event(C1, 4);
    Nrm__V1__CaseLinked linked = NRM__V1__CASE_LINKED__INIT;
    linked.reporting_agency_id = "iom-ma";
    linked.region = "MA-04";
    ev.body_case = NRM__V1__EVENT__BODY_CASE_LINKED;
    ev.case_linked = &linked;
    notify_stream_emit(intake, &ev);

    ev = s_event(C1, 5);
    Nrm__V1__ReferralCompleted completed = NRM__V1__REFERRAL_COMPLETED__INIT;
    completed.referral_id = "R1"; /* names no provider: notify remembers it */
    completed.service_delivered = 1;
    ev.body_case = NRM__V1__EVENT__BODY_REFERRAL_COMPLETED;
    ev.referral_completed = &completed;
    notify_stream_emit(routing, &ev);

    ev = s_event(C1, 6);
    Nrm__V1__ReferralExpired expired = NRM__V1__REFERRAL_EXPIRED__INIT;
    expired.referral_id = "R2";
    expired.provider_agency_id = "hospital-ma-04"; /* has no subscription */
    ev.body_case = NRM__V1__EVENT__BODY_REFERRAL_EXPIRED;
    ev.referral_expired = &expired;
    notify_stream_emit(routing, &ev);

    ev = s_event(C1, 7);
    Nrm__V1__ReferralUnroutable unroutable = NRM__V1__REFERRAL_UNROUTABLE__INIT;
    unroutable.service = NRM__V1__SERVICE_TYPE__SERVICE_TYPE_MEDICAL;
    unroutable.reason = "no provider left";
    ev.body_case = NRM__V1__EVENT__BODY_REFERRAL_UNROUTABLE;
    ev.referral_unroutable = &unroutable;
    notify_stream_emit(routing, &ev);
    s_settle(3 + 3 + 2 + 3);

    assert_int_equal(s_rows("ngo-ma-07", "referral.created", C1, "delivered"), 1);
    assert_int_equal(s_rows("ngo-ma-07", "referral.accepted", C1, "delivered"), 1);
    assert_int_equal(s_rows("ngo-ma-07", "referral.completed", C1, "delivered"), 1);
    assert_int_equal(s_rows("police-ma-04", "referral.created", C1, ""), 0);
    assert_int_equal(s_rows("police-ma-04", "referral.accepted", C1, "delivered"), 1);
    assert_int_equal(s_rows("police-ma-04", "referral.completed", C1, "delivered"), 1);
    assert_int_equal(s_rows("police-ma-04", "referral.unroutable", C1, "delivered"), 1);
    assert_int_equal(s_rows("iom-ma", "referral.accepted", C1, ""), 0); /* before the link */
    assert_int_equal(s_rows("iom-ma", "referral.completed", C1, "delivered"), 1);
    assert_int_equal(s_rows("iom-ma", "referral.unroutable", C1, "delivered"), 1);
    assert_int_equal(s_rows("coordinator", "referral.expired", C1, "delivered"), 1);
    assert_int_equal(s_rows("coordinator", "referral.unroutable", C1, "delivered"), 1);
    assert_int_equal(s_rows("coordinator", "referral.created", C1, ""), 0);
    assert_int_equal(s_rows("hospital-ma-04", "referral.expired", C1, "undeliverable"), 1);
    assert_int_equal(s_rows("ngo-ma-07", "referral.expired", C1, ""), 0);
}

static void test_shelter_events_reach_operator_reporters_and_followers(void **s)
{
    long long before = harness_sql_int(h, "SELECT count(*) FROM notify.deliveries");
    Nrm__V1__Event ev = s_event(C1, 8);
    Nrm__V1__ShelterAllocated allocated = NRM__V1__SHELTER_ALLOCATED__INIT;
    allocated.allocation_id = "A1";
    allocated.shelter_id = "S1";
    allocated.operator_agency_id = OPERATOR;
    allocated.region = "MA-04";
    allocated.beds = 1;
    ev.body_case = NRM__V1__EVENT__BODY_SHELTER_ALLOCATED;
    ev.shelter_allocated = &allocated;
    notify_stream_emit(shelter, &ev);

    ev = s_event(C1, 9);
    Nrm__V1__ShelterReleased released = NRM__V1__SHELTER_RELEASED__INIT;
    released.allocation_id = "A1"; /* names no operator: notify remembers it */
    released.shelter_id = "S1";
    ev.body_case = NRM__V1__EVENT__BODY_SHELTER_RELEASED;
    ev.shelter_released = &released;
    notify_stream_emit(shelter, &ev);
    /* allocated: operator, police, iom, labour (follows shelter.*); released: operator, labour */
    s_settle(before + 6);
    assert_int_equal(s_rows(OPERATOR, "shelter.allocated", C1, "delivered"), 1);
    assert_int_equal(s_rows(OPERATOR, "shelter.released", C1, "delivered"), 1);
    assert_int_equal(s_rows("police-ma-04", "shelter.allocated", C1, "delivered"), 1);
    assert_int_equal(s_rows("iom-ma", "shelter.allocated", C1, "delivered"), 1);
    assert_int_equal(s_rows("police-ma-04", "shelter.released", C1, ""), 0);
    assert_int_equal(s_rows("labour-ma-06", "shelter.allocated", C1, "delivered"), 1);
    assert_int_equal(s_rows("labour-ma-06", "shelter.released", C1, "delivered"), 1);
}

static void test_reporting_agency_learnt_late_hears_the_outcome_it_missed(void **s)
{
    long long before = harness_sql_int(h, "SELECT count(*) FROM notify.deliveries");
    /* routing's event about a case whose report notify has not applied yet */
    Nrm__V1__Event ev = s_event(C2, 11);
    Nrm__V1__ReferralAccepted accepted = NRM__V1__REFERRAL_ACCEPTED__INIT;
    accepted.referral_id = "R3";
    accepted.provider_agency_id = "ngo-ma-07";
    ev.body_case = NRM__V1__EVENT__BODY_REFERRAL_ACCEPTED;
    ev.referral_accepted = &accepted;
    notify_stream_emit(routing, &ev);
    s_settle(before + 1);
    assert_int_equal(s_rows("police-ma-04", "referral.accepted", C2, ""), 0);

    ev = s_event(C2, 10);
    Nrm__V1__CaseOpened opened = NRM__V1__CASE_OPENED__INIT;
    opened.reporting_agency_id = "police-ma-04";
    opened.region = "MA-04";
    ev.body_case = NRM__V1__EVENT__BODY_CASE_OPENED;
    ev.case_opened = &opened;
    notify_stream_emit(intake, &ev);
    s_settle(before + 2);
    assert_int_equal(s_rows("police-ma-04", "referral.accepted", C2, "delivered"), 1);
    assert_int_equal(s_rows("ngo-ma-07", "referral.accepted", C2, "delivered"), 1);
    assert_true(harness_log_contains(h, "notify", 0, "learnt late"));
}

static void test_event_lost_on_the_bus_is_fetched_and_delivered(void **s)
{
    long long before = harness_sql_int(h, "SELECT count(*) FROM notify.deliveries");
    Nrm__V1__Event ev = s_event(C1, 12);
    Nrm__V1__CaseClosed closed = NRM__V1__CASE_CLOSED__INIT;
    closed.reason = "reintegrated";
    ev.body_case = NRM__V1__EVENT__BODY_CASE_CLOSED;
    ev.case_closed = &closed;
    notify_stream_store(intake, &ev); /* never published: only the heartbeat tells */
    s_settle(before + 2);
    assert_int_equal(s_rows("police-ma-04", "case.closed", C1, "delivered"), 1);
    assert_int_equal(s_rows("iom-ma", "case.closed", C1, "delivered"), 1);
}

static void test_receivers_got_every_delivered_row_once(void **s)
{
    PGresult *res = harness_sql(h, "SELECT agency_id, count(*) FROM notify.deliveries"
                                   " WHERE state = 'delivered' GROUP BY agency_id");
    for (int i = 0; i < PQntuples(res); i++) {
        char path[128];
        size_t at[64];
        snprintf(path, sizeof path, "/hook/%s", PQgetvalue(res, i, 0));
        assert_int_equal(notify_fixture_requests_at(receiver, path, at, 64),
                         atoll(PQgetvalue(res, i, 1)));
    }
    PQclear(res);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_referral_outcomes_reach_provider_reporters_and_coordinator),
        cmocka_unit_test(test_shelter_events_reach_operator_reporters_and_followers),
        cmocka_unit_test(test_reporting_agency_learnt_late_hears_the_outcome_it_missed),
        cmocka_unit_test(test_event_lost_on_the_bus_is_fetched_and_delivered),
        cmocka_unit_test(test_receivers_got_every_delivered_row_once),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
