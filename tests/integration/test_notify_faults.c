/* Notify across a PostgreSQL outage (the shared cluster is stopped and started again, so this
 * program runs alone): pending retries are delivered once the database is back, and a transfer
 * that succeeds while the database is away is recorded afterwards, without a second send. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <czmq.h>

#include "harness.h"
#include "notify_fixture.h"
#include "notify_sinks.h"
#include "nrm_crypto.h"
#include "nrm_time.h"
#include "scenario.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SECRET "faults-test-secret-0123456789abcdef"
#define REPORTS 5
#define OUTAGE_MS 2000
#define SLOW_MS 1500
#define RETRIES 20
#define RETRY_MS 250

static harness_t *h;

static int setup(void **state)
{
    h = harness_new("notify_faults");
    notify_fixture_settings_t settings = {
        .max_attempts = 50, .backoff_ms = 100, .max_backoff_ms = 300, .timeout_ms = 3000};
    notify_fixture_config(h, &settings, NULL);
    if (harness_start(h, "intake", 0) != 0 || harness_start(h, "notify", 0) != 0)
        return -1;
    return 0;
}

static int teardown(void **state)
{
    harness_destroy(&h);
    return 0;
}

/* Submits a report of a new person; returns its case id (caller frees). Like any client after an
 * outage, it repeats the request (same request_id) while intake answers UNAVAILABLE. */
static char *s_report(const char *name)
{
    scenario_report_t s;
    scenario_adult_woman(&s, "MA-04", name, "1985-10-10");
    char request_id[37];
    nrm_uuid_v4(request_id);
    s.request.request_id = request_id;
    Nrm__V1__Reply *reply = harness_call(h, "intake", "police-ma-04", &s.request);
    for (int i = 0; i < RETRIES && reply && reply->status == NRM__V1__STATUS__STATUS_UNAVAILABLE;
         i++) {
        nrm__v1__reply__free_unpacked(reply, NULL);
        zclock_sleep(RETRY_MS);
        reply = harness_call(h, "intake", "police-ma-04", &s.request);
    }
    assert_non_null(reply);
    assert_int_equal(reply->status, NRM__V1__STATUS__STATUS_OK);
    char *case_id = strdup(reply->case_ref->case_id);
    nrm__v1__reply__free_unpacked(reply, NULL);
    return case_id;
}

/* True when notify answers Ping with its database. */
static bool s_notify_healthy(void)
{
    Nrm__V1__Ping ping = NRM__V1__PING__INIT;
    Nrm__V1__Request req = NRM__V1__REQUEST__INIT;
    scenario_request(&req, NRM__V1__REQUEST__BODY_PING, &ping);
    Nrm__V1__Reply *reply = harness_call(h, "notify", "coordinator", &req);
    bool ok = reply && reply->pong && reply->pong->database_ok;
    if (reply)
        nrm__v1__reply__free_unpacked(reply, NULL);
    return ok;
}

static void test_retries_pending_during_an_outage_are_delivered_after_it(void **s)
{
    char subscription[65], sql[512];
    notify_receiver_t *receiver =
        notify_fixture_hook(h, "hotline-national", NOTIFY_RECEIVER_FAIL, 0, "outage", "case.opened",
                            SECRET, subscription);
    for (int i = 0; i < REPORTS; i++) {
        char name[64];
        snprintf(name, sizeof name, "Outage person %d", i);
        free(s_report(name));
    }
    assert_true(notify_receiver_wait_count(receiver, 2 * REPORTS, NOTIFY_FIXTURE_WAIT_MS));
    harness_pg_stop(h);
    notify_receiver_set_mode(receiver, NOTIFY_RECEIVER_ACCEPT, 0);
    zclock_sleep(OUTAGE_MS);
    harness_pg_start(h);

    snprintf(sql, sizeof sql,
             "SELECT count(*) FROM notify.deliveries WHERE subscription_id = '%s'"
             " AND state = 'delivered'",
             subscription);
    assert_int_equal(notify_fixture_wait(h, sql, REPORTS), REPORTS);
    assert_int_equal(notify_receiver_accepted(receiver), REPORTS);
    assert_true(s_notify_healthy());
    snprintf(sql, sizeof sql,
             "SELECT count(DISTINCT delivery_id) FROM notify.deliveries WHERE"
             " subscription_id = '%s'",
             subscription);
    assert_int_equal(harness_sql_int(h, sql), REPORTS);
    /* the outage was logged once, not once per turn */
    assert_true(harness_log_contains(h, "notify", 0, "neither recorded nor claimed"));
    notify_receiver_destroy(&receiver);
}

static void test_success_during_an_outage_is_recorded_after_it_without_resending(void **s)
{
    char subscription[65], sql[512];
    notify_receiver_t *receiver =
        notify_fixture_hook(h, "coordinator", NOTIFY_RECEIVER_SLOW, SLOW_MS, "slow", "case.closed",
                            SECRET, subscription);
    char *case_id = s_report("Outage person closing");
    Nrm__V1__CloseCase c = NRM__V1__CLOSE_CASE__INIT;
    c.case_id = case_id;
    c.reason = "transferred";
    Nrm__V1__Request req = NRM__V1__REQUEST__INIT;
    scenario_request(&req, NRM__V1__REQUEST__BODY_CLOSE_CASE, &c);
    Nrm__V1__Reply *reply = harness_call(h, "intake", "coordinator", &req);
    assert_int_equal(reply->status, NRM__V1__STATUS__STATUS_OK);
    nrm__v1__reply__free_unpacked(reply, NULL);
    /* the request is held by the receiver; the database goes away meanwhile */
    assert_true(notify_receiver_wait_count(receiver, 1, NOTIFY_FIXTURE_WAIT_MS));
    harness_pg_stop(h);
    assert_true(notify_receiver_wait(receiver, 1, 2 * SLOW_MS));
    zclock_sleep(OUTAGE_MS / 2);
    harness_pg_start(h);
    snprintf(sql, sizeof sql,
             "SELECT count(*) FROM notify.deliveries WHERE subscription_id = '%s'"
             " AND state = 'delivered' AND attempts = 1",
             subscription);
    assert_int_equal(notify_fixture_wait(h, sql, 1), 1);
    assert_int_equal(notify_receiver_count(receiver), 1);
    free(case_id);
    notify_receiver_destroy(&receiver);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_retries_pending_during_an_outage_are_delivered_after_it),
        cmocka_unit_test(test_success_during_an_outage_is_recorded_after_it_without_resending),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
