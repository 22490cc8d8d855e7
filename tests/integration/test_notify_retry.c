/* Notify's retries against real processes and a real HTTP receiver: a receiver that fails and
 * then is down for a while gets the event once it is back, every attempt under the same
 * delivery id; a receiver that never answers dead-letters the delivery after the configured
 * attempts (notification.failed), and a coordinator's retry then delivers it; a delivery that
 * outlives the configured age is dead-lettered however many attempts are left. */
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

#define MAX_ATTEMPTS 5
#define TIMEOUT_MS 500
#define SECRET "retry-test-secret-0123456789abcdef"
#define MAX_REQUESTS 64
#define GAUGE_REFRESH_MS 100 /* metrics_refresh_ms */

static harness_t *h;

static int setup(void **state)
{
    h = harness_new("notify_retry");
    notify_fixture_settings_t settings = {.max_attempts = MAX_ATTEMPTS,
                                          .backoff_ms = 100,
                                          .max_backoff_ms = 400,
                                          .timeout_ms = TIMEOUT_MS};
    notify_fixture_config(h, &settings, NULL);
    harness_config_set(h, "metrics_refresh_ms", json_integer(GAUGE_REFRESH_MS));
    if (harness_start(h, "intake", 0) != 0 || harness_start(h, "notify", 0) != 0)
        return -1;
    return 0;
}

static int teardown(void **state)
{
    harness_destroy(&h);
    return 0;
}

/* The one delivery of a subscription: its id into out (37 bytes). */
static void s_delivery_of(const char *subscription, char out[37])
{
    char sql[256];
    snprintf(sql, sizeof sql,
             "SELECT delivery_id FROM notify.deliveries WHERE subscription_id = '%s'",
             subscription);
    PGresult *res = harness_sql(h, sql);
    assert_int_equal(PQntuples(res), 1);
    snprintf(out, 37, "%s", PQgetvalue(res, 0, 0));
    PQclear(res);
}

/* Counts the events of notify's stream of topic about delivery_id; *attempts gets the last's. */
static int s_outcomes(const char *topic, const char *delivery_id, int *attempts)
{
    Nrm__V1__Event **events = NULL;
    size_t n = harness_fetch_all(h, "notify", &events);
    int count = 0;
    for (size_t i = 0; i < n; i++) {
        Nrm__V1__Event *ev = events[i];
        if (strcmp(ev->topic, topic) == 0) {
            bool delivered = ev->body_case == NRM__V1__EVENT__BODY_NOTIFICATION_DELIVERED;
            const char *id = delivered ? ev->notification_delivered->delivery_id
                                       : ev->notification_failed->delivery_id;
            if (strcmp(id, delivery_id) == 0) {
                count++;
                *attempts = delivered ? ev->notification_delivered->attempts
                                      : ev->notification_failed->attempts;
            }
        }
        nrm__v1__event__free_unpacked(ev, NULL);
    }
    free(events);
    return count;
}

/* Asserts every request of r carries delivery_id and attempt numbers 1, 2, ...; returns how
 * many were answered 2xx. */
static int s_same_delivery_everywhere(notify_receiver_t *r, const char *delivery_id)
{
    int accepted = 0;
    for (size_t i = 0; i < notify_receiver_count(r); i++) {
        notify_request_t *req = notify_receiver_request(r, i);
        char *id = notify_request_header(req, "X-NRM-Delivery");
        char *attempt = notify_request_header(req, "X-NRM-Attempt");
        assert_non_null(id);
        assert_string_equal(id, delivery_id);
        assert_non_null(attempt);
        assert_true(notify_fixture_signature_ok(req, SECRET));
        accepted += req->status >= 200 && req->status < 300;
        free(id);
        free(attempt);
        notify_request_free(&req);
    }
    return accepted;
}

static void test_receiver_down_for_a_while_gets_it_once_back_with_same_delivery_id(void **s)
{
    char subscription[65], delivery[37], sql[512];
    notify_receiver_t *receiver =
        notify_fixture_hook(h, "hotline-national", NOTIFY_RECEIVER_FAIL, 0, "down", "case.opened",
                            SECRET, subscription);
    char *case_id = notify_fixture_report(h, "police-ma-04", "MA-04", "Esther Nwosu", "1990-01-01");
    /* two attempts answered 503 ... */
    assert_true(notify_receiver_wait_count(receiver, 2, NOTIFY_FIXTURE_WAIT_MS));
    /* ... then nobody listens: the next attempt is refused */
    notify_receiver_down(receiver);
    snprintf(sql, sizeof sql,
             "SELECT count(*) FROM notify.deliveries WHERE subscription_id = '%s'"
             " AND state = 'pending' AND attempts >= 3 AND claim_id IS NULL",
             subscription);
    assert_int_equal(notify_fixture_wait(h, sql, 1), 1);
    snprintf(sql, sizeof sql,
             "SELECT count(*) FROM notify.deliveries WHERE subscription_id = '%s'"
             " AND last_error = 'connection failed'",
             subscription);
    assert_int_equal(harness_sql_int(h, sql), 1);
    size_t refused_at = notify_receiver_count(receiver);
    notify_receiver_set_mode(receiver, NOTIFY_RECEIVER_ACCEPT, 0);
    notify_receiver_up(receiver);

    assert_true(notify_receiver_wait(receiver, 1, NOTIFY_FIXTURE_WAIT_MS));
    snprintf(sql, sizeof sql,
             "SELECT count(*) FROM notify.deliveries WHERE subscription_id = '%s'"
             " AND state = 'delivered'",
             subscription);
    assert_int_equal(notify_fixture_wait(h, sql, 1), 1);
    s_delivery_of(subscription, delivery);
    assert_int_equal(refused_at, 2); /* the refused attempt never reached it */
    assert_int_equal(s_same_delivery_everywhere(receiver, delivery), 1);
    assert_int_equal(notify_receiver_count(receiver), 3);
    int attempts = 0;
    snprintf(sql, sizeof sql, "SELECT attempts FROM notify.deliveries WHERE delivery_id = '%s'",
             delivery);
    long long stored = harness_sql_int(h, sql);
    assert_true(stored >= 4);
    zclock_sleep(300); /* the event is published after the commit */
    assert_int_equal(s_outcomes("notification.delivered", delivery, &attempts), 1);
    assert_int_equal(attempts, stored);
    assert_int_equal(s_outcomes("notification.failed", delivery, &attempts), 0);
    /* the same X-NRM-Attempt numbers went up one by one */
    for (size_t i = 0; i < notify_receiver_count(receiver); i++) {
        notify_request_t *req = notify_receiver_request(receiver, i);
        char *attempt = notify_request_header(req, "X-NRM-Attempt");
        if (i < 2)
            assert_int_equal(atoi(attempt), (int)i + 1);
        free(attempt);
        notify_request_free(&req);
    }
    free(case_id);
    notify_receiver_destroy(&receiver);
}

static void test_silent_receiver_dead_letters_then_a_coordinator_retries(void **s)
{
    char subscription[65], delivery[37], sql[512];
    notify_receiver_t *receiver = notify_fixture_hook(
        h, "coordinator", NOTIFY_RECEIVER_SILENT, 0, "silent", "case.closed", SECRET, subscription);
    char *case_id = notify_fixture_report(h, "hospital-ma-04", "MA-04", "Joy Okafor", "1990-01-01");
    Nrm__V1__CloseCase c = NRM__V1__CLOSE_CASE__INIT;
    c.case_id = case_id;
    c.reason = "returned";
    Nrm__V1__Request close_req = NRM__V1__REQUEST__INIT;
    scenario_request(&close_req, NRM__V1__REQUEST__BODY_CLOSE_CASE, &c);
    Nrm__V1__Reply *closed_reply = harness_call(h, "intake", "hospital-ma-04", &close_req);
    assert_int_equal(closed_reply->status, NRM__V1__STATUS__STATUS_OK);
    nrm__v1__reply__free_unpacked(closed_reply, NULL);

    snprintf(sql, sizeof sql,
             "SELECT count(*) FROM notify.deliveries WHERE subscription_id = '%s'"
             " AND state = 'failed' AND attempts = %d AND last_error = 'connection failed'",
             subscription, MAX_ATTEMPTS);
    assert_int_equal(notify_fixture_wait(h, sql, 1), 1);
    s_delivery_of(subscription, delivery);
    assert_int_equal(notify_receiver_count(receiver), MAX_ATTEMPTS);
    assert_int_equal(s_same_delivery_everywhere(receiver, delivery), 0);
    zclock_sleep(300);
    int attempts = 0;
    assert_int_equal(s_outcomes("notification.failed", delivery, &attempts), 1);
    assert_int_equal(attempts, MAX_ATTEMPTS);
    /* it stays a dead letter: no further attempt */
    zclock_sleep(4 * TIMEOUT_MS);
    assert_int_equal(notify_receiver_count(receiver), MAX_ATTEMPTS);

    /* the coordinator lists the dead letters and retries this one */
    Nrm__V1__ListDeliveries list = NRM__V1__LIST_DELIVERIES__INIT;
    list.state = "failed";
    Nrm__V1__Request list_req = NRM__V1__REQUEST__INIT;
    scenario_request(&list_req, NRM__V1__REQUEST__BODY_LIST_DELIVERIES, &list);
    Nrm__V1__Reply *listed = harness_call(h, "notify", "coordinator", &list_req);
    assert_int_equal(listed->status, NRM__V1__STATUS__STATUS_OK);
    bool found = false;
    for (size_t i = 0; i < listed->delivery_list->n_deliveries; i++) {
        Nrm__V1__Delivery *d = listed->delivery_list->deliveries[i];
        if (strcmp(d->delivery_id, delivery) == 0) {
            found = true;
            assert_int_equal(d->attempts, MAX_ATTEMPTS);
            assert_string_equal(d->channel, "webhook");
            assert_string_equal(d->topic, "case.closed");
            assert_string_equal(d->case_id, case_id);
            assert_string_equal(d->last_error, "connection failed"); /* a timeout, said no finer */
        }
    }
    assert_true(found);
    nrm__v1__reply__free_unpacked(listed, NULL);
    notify_receiver_set_mode(receiver, NOTIFY_RECEIVER_ACCEPT, 0);
    Nrm__V1__RetryDelivery retry = NRM__V1__RETRY_DELIVERY__INIT;
    retry.delivery_id = delivery;
    Nrm__V1__Request retry_req = NRM__V1__REQUEST__INIT;
    scenario_request(&retry_req, NRM__V1__REQUEST__BODY_RETRY_DELIVERY, &retry);
    Nrm__V1__Reply *denied = harness_call(h, "notify", "hospital-ma-04", &retry_req);
    assert_int_equal(denied->status, NRM__V1__STATUS__STATUS_PERMISSION_DENIED);
    nrm__v1__reply__free_unpacked(denied, NULL);
    Nrm__V1__Reply *retried = harness_call(h, "notify", "coordinator", &retry_req);
    assert_int_equal(retried->status, NRM__V1__STATUS__STATUS_OK);
    assert_int_equal(retried->delivery_list->n_deliveries, 1);
    assert_string_equal(retried->delivery_list->deliveries[0]->state, "pending");
    nrm__v1__reply__free_unpacked(retried, NULL);

    assert_true(notify_receiver_wait(receiver, 1, NOTIFY_FIXTURE_WAIT_MS));
    snprintf(sql, sizeof sql,
             "SELECT count(*) FROM notify.deliveries WHERE delivery_id = '%s'"
             " AND state = 'delivered' AND attempts = 1 AND retries = 1",
             delivery);
    assert_int_equal(notify_fixture_wait(h, sql, 1), 1);
    assert_int_equal(s_same_delivery_everywhere(receiver, delivery), 1);
    zclock_sleep(300);
    assert_int_equal(s_outcomes("notification.delivered", delivery, &attempts), 1);
    free(case_id);
    notify_receiver_destroy(&receiver);
}

static void test_delivery_older_than_max_age_is_dead_lettered(void **s)
{
    /* the same service restarted with a one-second age limit and attempts to spare */
    assert_int_equal(WEXITSTATUS(harness_signal(h, "notify", 0, SIGTERM)), 0);
    harness_config_set(h, "notify.max_age_s", json_integer(1));
    harness_config_set(h, "notify.max_attempts", json_integer(1000));
    assert_int_equal(harness_start(h, "notify", 0), 0);
    char subscription[65], sql[512];
    notify_receiver_t *receiver = notify_fixture_hook(h, "iom-ma", NOTIFY_RECEIVER_FAIL, 0, "old",
                                                      "case.opened", SECRET, subscription);
    char *case_id = notify_fixture_report(h, "labour-ma-09", "MA-04", "Grace Okoro", "1990-01-01");
    snprintf(sql, sizeof sql,
             "SELECT count(*) FROM notify.deliveries WHERE subscription_id = '%s'"
             " AND state = 'failed' AND finished_ms - started_ms BETWEEN 1000 AND 3000"
             " AND attempts BETWEEN 2 AND 100",
             subscription);
    assert_int_equal(notify_fixture_wait(h, sql, 1), 1);
    free(case_id);
    notify_receiver_destroy(&receiver);
}

/* After deliveries made, delivered, failed, dead-lettered and retried above, the deliveries
 * gauge of notify's Pong (kept counts, not a count of the table) agrees with a recount in every
 * state. */
static void test_the_deliveries_gauge_agrees_with_a_recount_in_every_state(void **s)
{
    static const char *const states[] = {"pending", "delivered", "failed", "undeliverable"};
    assert_true(harness_sql_int(h, "SELECT count(*) FROM notify.deliveries"
                                   " WHERE state = 'delivered'") > 0);
    assert_true(harness_sql_int(h, "SELECT count(*) FROM notify.deliveries"
                                   " WHERE state = 'failed'") > 0);
    for (size_t i = 0; i < sizeof states / sizeof states[0]; i++) {
        long long want = -1, got = -2;
        for (int k = 0; k < 50 && got != want; k++) {
            want = harness_sql_intf(h, "SELECT count(*) FROM notify.deliveries WHERE state = '%s'",
                                    states[i]);
            got = harness_gauge(h, "notify", "deliveries", "state", states[i]);
            if (got != want)
                usleep(GAUGE_REFRESH_MS * 1000);
        }
        assert_int_equal(got, want);
    }
}

/* A batch whose commit fails is applied again: what it counted goes with the rolled-back
 * transaction, and its deliveries are counted once, when the batch commits. The first move of
 * intake's checkpoint past the report is refused (a trigger, once: a sequence is not rolled
 * back). */
static void test_a_batch_applied_again_counts_its_deliveries_once(void **s)
{
    static const char made[] =
        "SELECT count(*) FROM notify.deliveries WHERE state <> 'undeliverable'";
    static const char undeliverable[] =
        "SELECT count(*) FROM notify.deliveries WHERE state = 'undeliverable'";
    long long head = harness_sql_int(h, "SELECT head FROM intake.stream_head");
    long long rows = harness_sql_int(h, made),
              rows_undeliverable = harness_sql_int(h, undeliverable);
    int64_t created = harness_counter(h, "notify", "deliveries_created");
    int64_t counted_undeliverable = harness_counter(h, "notify", "deliveries_undeliverable");
    char sql[768];
    PQclear(harness_sql(h, "CREATE SEQUENCE notify.test_moves"));
    snprintf(sql, sizeof sql,
             "CREATE FUNCTION notify.test_refuse_once() RETURNS trigger LANGUAGE plpgsql"
             " SECURITY DEFINER AS $$ BEGIN IF NEW.stream = 'intake' AND NEW.seq > %lld THEN"
             " IF nextval('notify.test_moves') = 1 THEN"
             " RAISE EXCEPTION 'checkpoint move refused once by the test'; END IF; END IF;"
             " RETURN NEW; END $$",
             head);
    PQclear(harness_sql(h, sql));
    PQclear(harness_sql(h, "CREATE TRIGGER test_refuse_once BEFORE UPDATE ON notify.checkpoints"
                           " FOR EACH ROW EXECUTE FUNCTION notify.test_refuse_once()"));
    char subscription[65];
    notify_receiver_t *receiver = notify_fixture_hook(h, "iom-ma", NOTIFY_RECEIVER_ACCEPT, 0,
                                                      "once", "case.opened", SECRET, subscription);
    char *case_id = notify_fixture_report(h, "labour-ma-09", "MA-04", "Amara Diallo", "1991-02-03");
    snprintf(sql, sizeof sql,
             "SELECT count(*) FROM notify.checkpoints WHERE stream = 'intake' AND seq > %lld",
             head);
    assert_int_equal(notify_fixture_wait(h, sql, 1), 1);
    /* the move was refused once, and the batch made its deliveries when applied again */
    assert_int_equal(harness_sql_int(h, "SELECT last_value FROM notify.test_moves"), 2);
    assert_true(harness_sql_int(h, made) > rows);
    assert_int_equal(harness_counter(h, "notify", "deliveries_created") - created,
                     harness_sql_int(h, made) - rows);
    assert_int_equal(harness_counter(h, "notify", "deliveries_undeliverable") -
                         counted_undeliverable,
                     harness_sql_int(h, undeliverable) - rows_undeliverable);
    PQclear(harness_sql(h, "DROP TRIGGER test_refuse_once ON notify.checkpoints"));
    free(case_id);
    notify_receiver_destroy(&receiver);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_receiver_down_for_a_while_gets_it_once_back_with_same_delivery_id),
        cmocka_unit_test(test_silent_receiver_dead_letters_then_a_coordinator_retries),
        cmocka_unit_test(test_delivery_older_than_max_age_is_dead_lettered),
        cmocka_unit_test(test_the_deliveries_gauge_agrees_with_a_recount_in_every_state),
        cmocka_unit_test(test_a_batch_applied_again_counts_its_deliveries_once),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
