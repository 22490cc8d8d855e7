/* Notify killed with SIGKILL while it is sending: after a restart nothing is lost, every event
 * reaches the receiver under exactly one delivery id, and a duplicate, if any, repeats that id.
 * A clean stop (SIGTERM) and restart creates nothing twice either, and a SIGTERM while sending
 * lets the transfers in hand finish and records them, so that none is sent again. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <czmq.h>

#include "harness.h"
#include "notify_fixture.h"
#include "notify_sinks.h"
#include "nrm_time.h"
#include "scenario.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define REPORTS 40
#define SLOW_MS 300
#define IN_FLIGHT 8 /* so that some are recorded, some in flight, some waiting */
#define SECRET "crash-test-secret-0123456789abcdef"
#define ID_MAX 37

static harness_t *h;
static notify_receiver_t *receiver;
static char subscription[65];
static size_t s_duplicates_so_far; /* requests repeated after the SIGKILL, same delivery id */

static int setup(void **state)
{
    h = harness_new("notify_crash");
    receiver = notify_receiver_new();
    notify_fixture_settings_t settings = {.max_attempts = 10,
                                          .backoff_ms = 100,
                                          .max_backoff_ms = 500,
                                          .timeout_ms = 1000,
                                          .max_in_flight = IN_FLIGHT};
    notify_fixture_config(h, &settings, NULL);
    if (harness_start(h, "intake", 0) != 0 || harness_start(h, "notify", 0) != 0)
        return -1;
    char url[256];
    const char *opened[] = {"case.opened", NULL};
    notify_fixture_subscribe_ok(h, "iom-ma", "webhook", notify_fixture_url(receiver, "iom", url),
                                opened, SECRET, subscription);
    return 0;
}

static int teardown(void **state)
{
    harness_destroy(&h);
    notify_receiver_destroy(&receiver);
    return 0;
}

/* Submits n reports of distinct people. */
static void s_reports(int n, const char *tag)
{
    for (int i = 0; i < n; i++) {
        char name[64];
        snprintf(name, sizeof name, "Person %s %d", tag, i);
        scenario_report_t s;
        scenario_adult_woman(&s, "MA-04", name, "1993-03-03");
        Nrm__V1__Reply *reply = harness_call(h, "intake", "police-ma-04", &s.request);
        assert_non_null(reply);
        assert_int_equal(reply->status, NRM__V1__STATUS__STATUS_OK);
        nrm__v1__reply__free_unpacked(reply, NULL);
    }
}

/* The CloudEvents id (the source event id) of a request body into out. */
static void s_event_id(const notify_request_t *r, char out[ID_MAX])
{
    json_error_t jerr;
    json_t *body = json_loadb(r->body, r->body_len, 0, &jerr);
    assert_non_null(body);
    snprintf(out, ID_MAX, "%s", json_string_value(json_object_get(body, "id")));
    json_decref(body);
}

/* Asserts that every request received maps an event to one delivery id and back, and that the
 * distinct delivery ids are exactly the subscription's delivered rows. Returns the number of
 * duplicate requests. */
static size_t s_check_one_delivery_id_per_event(size_t expected)
{
    size_t n = notify_receiver_count(receiver);
    zhash_t *by_delivery = zhash_new(), *by_event = zhash_new();
    zhash_autofree(by_delivery);
    zhash_autofree(by_event);
    size_t duplicates = 0;
    for (size_t i = 0; i < n; i++) {
        notify_request_t *r = notify_receiver_request(receiver, i);
        char *delivery = notify_request_header(r, "X-NRM-Delivery");
        char event[ID_MAX];
        s_event_id(r, event);
        assert_true(notify_fixture_signature_ok(r, SECRET));
        const char *seen_event = zhash_lookup(by_delivery, delivery);
        const char *seen_delivery = zhash_lookup(by_event, event);
        if (seen_event) {
            duplicates++;
            assert_string_equal(seen_event, event);
            assert_string_equal(seen_delivery, delivery);
        } else {
            assert_null(seen_delivery); /* an event never comes under a second id */
            zhash_insert(by_delivery, delivery, event);
            zhash_insert(by_event, event, delivery);
        }
        free(delivery);
        notify_request_free(&r);
    }
    assert_int_equal(zhash_size(by_delivery), expected);
    char sql[512];
    for (char *event = zhash_first(by_delivery); event; event = zhash_next(by_delivery)) {
        snprintf(sql, sizeof sql,
                 "SELECT count(*) FROM notify.deliveries WHERE delivery_id = '%s'"
                 " AND subscription_id = '%s' AND state = 'delivered'",
                 zhash_cursor(by_delivery), subscription);
        assert_int_equal(harness_sql_int(h, sql), 1);
    }
    zhash_destroy(&by_delivery);
    zhash_destroy(&by_event);
    return duplicates;
}

static void test_sigkill_while_sending_loses_nothing_and_duplicates_keep_their_id(void **s)
{
    notify_receiver_set_mode(receiver, NOTIFY_RECEIVER_SLOW, SLOW_MS);
    s_reports(REPORTS, "a");
    /* some were answered, the next ones are held SLOW_MS by the receiver: kill notify now */
    assert_true(notify_receiver_wait(receiver, IN_FLIGHT + 2, NOTIFY_FIXTURE_WAIT_MS));
    assert_true(notify_receiver_wait_count(receiver, 2 * IN_FLIGHT + 1, NOTIFY_FIXTURE_WAIT_MS));
    int status = harness_signal(h, "notify", 0, SIGKILL);
    assert_true(WIFSIGNALED(status));
    size_t at_kill = notify_receiver_count(receiver);
    char sql[512];
    snprintf(sql, sizeof sql,
             "SELECT count(*) FROM notify.deliveries WHERE subscription_id = '%s'"
             " AND state = 'delivered'",
             subscription);
    long long delivered_at_kill = harness_sql_int(h, sql);
    assert_true(delivered_at_kill < REPORTS);
    assert_int_equal(harness_start(h, "notify", 0), 0);

    assert_int_equal(notify_fixture_wait(h, sql, REPORTS), REPORTS);
    snprintf(sql, sizeof sql, "SELECT count(*) FROM notify.deliveries WHERE subscription_id = '%s'",
             subscription);
    assert_int_equal(harness_sql_int(h, sql), REPORTS); /* one row per event, none twice */
    size_t duplicates = s_check_one_delivery_id_per_event(REPORTS);
    s_duplicates_so_far = duplicates;
    print_message("killed with %zu requests received, %lld recorded delivered; %zu duplicate "
                  "requests after the restart, all under their first delivery id\n",
                  at_kill, delivered_at_kill, duplicates);
}

static void test_sigterm_and_restart_create_nothing_twice(void **s)
{
    notify_receiver_set_mode(receiver, NOTIFY_RECEIVER_ACCEPT, 0);
    char sql[512];
    snprintf(sql, sizeof sql, "SELECT count(*) FROM notify.deliveries WHERE subscription_id = '%s'",
             subscription);
    long long before = harness_sql_int(h, sql);
    int status = harness_signal(h, "notify", 0, SIGTERM);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
    s_reports(5, "b"); /* reported while notify is away */
    assert_int_equal(harness_start(h, "notify", 0), 0);
    snprintf(sql, sizeof sql,
             "SELECT count(*) FROM notify.deliveries WHERE subscription_id = '%s'"
             " AND state = 'delivered'",
             subscription);
    assert_int_equal(notify_fixture_wait(h, sql, before + 5), before + 5);
    zclock_sleep(500);
    snprintf(sql, sizeof sql, "SELECT count(*) FROM notify.deliveries WHERE subscription_id = '%s'",
             subscription);
    assert_int_equal(harness_sql_int(h, sql), before + 5);
    assert_int_equal(s_check_one_delivery_id_per_event((size_t)before + 5), s_duplicates_so_far);
}

static void test_sigterm_while_sending_finishes_the_transfers_in_hand(void **s)
{
    notify_receiver_set_mode(receiver, NOTIFY_RECEIVER_SLOW, SLOW_MS);
    char sql[512];
    snprintf(sql, sizeof sql, "SELECT count(*) FROM notify.deliveries WHERE subscription_id = '%s'",
             subscription);
    long long before = harness_sql_int(h, sql);
    size_t received = notify_receiver_count(receiver);
    s_reports(IN_FLIGHT / 2, "c");
    assert_true(notify_receiver_wait_count(receiver, received + 1, NOTIFY_FIXTURE_WAIT_MS));
    int status = harness_signal(h, "notify", 0, SIGTERM); /* transfers are held by the receiver */
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
    /* every request that reached the receiver was answered and recorded before the exit */
    size_t answered = notify_receiver_accepted(receiver);
    snprintf(sql, sizeof sql,
             "SELECT count(*) FROM notify.deliveries WHERE subscription_id = '%s'"
             " AND state = 'delivered'",
             subscription);
    assert_int_equal(harness_sql_int(h, sql), (long long)answered - s_duplicates_so_far);
    assert_int_equal(notify_receiver_count(receiver), answered);
    notify_receiver_set_mode(receiver, NOTIFY_RECEIVER_ACCEPT, 0);
    assert_int_equal(harness_start(h, "notify", 0), 0);
    assert_int_equal(notify_fixture_wait(h, sql, before + IN_FLIGHT / 2), before + IN_FLIGHT / 2);
    assert_int_equal(s_check_one_delivery_id_per_event((size_t)before + IN_FLIGHT / 2),
                     s_duplicates_so_far);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sigkill_while_sending_loses_nothing_and_duplicates_keep_their_id),
        cmocka_unit_test(test_sigterm_and_restart_create_nothing_twice),
        cmocka_unit_test(test_sigterm_while_sending_finishes_the_transfers_in_hand),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
