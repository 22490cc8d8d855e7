/* Notify keeps the body of a notification only while it may still be sent: once every delivery
 * of an event is done and notify.delivered_retention_s has passed, the body is deleted and the
 * delivery rows (no content) stay; a failed delivery keeps its body for an operator's retry. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "harness.h"
#include "notify_fixture.h"
#include "notify_sinks.h"

#include <stdio.h>
#include <stdlib.h>

#define SECRET "retention-test-secret-0123456789abc"
#define RETENTION_S 2
#define KEPT_RETENTION_S 86400 /* a day: nothing in the scan test expires */
#define KEPT_BODIES 20000
#define WAIT_MS 15000
#define SQL_MAX 512

static harness_t *h;
static notify_receiver_t *receiver;

/* Starts intake and notify with notify.delivered_retention_s at retention_s. */
static int s_setup(const char *name, int retention_s)
{
    h = harness_new(name);
    receiver = notify_receiver_new();
    notify_fixture_settings_t settings = {
        .max_attempts = 1, .backoff_ms = 100, .max_backoff_ms = 200, .timeout_ms = 1000};
    notify_fixture_config(h, &settings, NULL);
    harness_config_set(h, "notify.delivered_retention_s", json_integer(retention_s));
    if (harness_start(h, "intake", 0) != 0 || harness_start(h, "notify", 0) != 0)
        return -1;
    return 0;
}

static int setup(void **state)
{
    return s_setup("notify_retention", RETENTION_S);
}

static int setup_kept(void **state)
{
    return s_setup("notify_retention_kept", KEPT_RETENTION_S);
}

static int teardown(void **state)
{
    harness_destroy(&h);
    notify_receiver_destroy(&receiver);
    return 0;
}

/* Events of case_id notify keeps a body of, and deliveries of it in state. */
static long long s_bodies(const char *case_id)
{
    char sql[SQL_MAX];
    snprintf(sql, sizeof sql, "SELECT count(*) FROM notify.events WHERE case_id = '%s'", case_id);
    return harness_sql_int(h, sql);
}

static long long s_deliveries(const char *case_id, const char *state_name)
{
    char sql[SQL_MAX];
    snprintf(sql, sizeof sql,
             "SELECT count(*) FROM notify.deliveries WHERE case_id = '%s' AND state = '%s'",
             case_id, state_name);
    return harness_sql_int(h, sql);
}

static void
test_a_delivered_body_is_deleted_after_the_retention_and_its_delivery_stays(void **state)
{
    char url[256], id[65], sql[SQL_MAX];
    const char *opened[] = {"case.opened", NULL};
    notify_fixture_subscribe_ok(h, "hotline-national", "webhook",
                                notify_fixture_url(receiver, "kept", url), opened, SECRET, id);
    char *case_id =
        notify_fixture_report(h, "police-ma-04", "MA-04", "Retention One", "1990-02-02");
    snprintf(sql, sizeof sql,
             "SELECT count(*) FROM notify.deliveries WHERE case_id = '%s' AND state = 'delivered'"
             " AND subscription_id = '%s'",
             case_id, id);
    assert_int_equal(notify_fixture_wait(h, sql, 1), 1);
    assert_true(s_bodies(case_id) >= 1); /* kept while young */
    snprintf(sql, sizeof sql, "SELECT count(*) FROM notify.events WHERE case_id = '%s'", case_id);
    assert_int_equal(harness_wait_sql(h, sql, 0, WAIT_MS), 0);
    assert_int_equal(s_deliveries(case_id, "delivered"), 1);
    free(case_id);
}

static void test_a_failed_delivery_keeps_its_body_for_a_retry(void **state)
{
    char url[256], id[65], sql[SQL_MAX];
    const char *opened[] = {"case.opened", NULL};
    notify_receiver_set_mode(receiver, NOTIFY_RECEIVER_FAIL, 0);
    notify_fixture_subscribe_ok(h, "hotline-national", "webhook",
                                notify_fixture_url(receiver, "failing", url), opened, SECRET, id);
    char *case_id =
        notify_fixture_report(h, "police-ma-04", "MA-04", "Retention Two", "1990-03-03");
    snprintf(sql, sizeof sql,
             "SELECT count(*) FROM notify.deliveries WHERE case_id = '%s' AND state = 'failed'"
             " AND subscription_id = '%s'",
             case_id, id);
    assert_int_equal(notify_fixture_wait(h, sql, 1), 1);
    zclock_sleep((RETENTION_S + 2) * 1000); /* well past the retention, several timer runs */
    assert_true(s_bodies(case_id) >= 1);
    notify_receiver_set_mode(receiver, NOTIFY_RECEIVER_ACCEPT, 0);
    free(case_id);
}

/* Sequential scans of notify.events counted by PostgreSQL so far. */
static long long s_event_scans(void)
{
    return harness_sql_int(h, "SELECT seq_scan FROM pg_stat_user_tables WHERE schemaname = 'notify'"
                              " AND relname = 'events'");
}

static void test_the_retention_check_does_not_read_every_kept_body(void **state)
{
    /* 20,000 bodies within the retention, none of them expired: a check that reads the whole
     * table to find nothing costs more every second as the table grows */
    long long made =
        harness_sql_intf(h,
                         "WITH ins AS (INSERT INTO notify.events (source_stream, source_seq,"
                         " event_id, topic, occurred_at_ms, payload)"
                         " SELECT 'kept', g, gen_random_uuid()::text, 'case.opened',"
                         " (extract(epoch FROM now()) * 1000)::bigint - g, '\\x00'::bytea"
                         " FROM generate_series(1, %d) g RETURNING 1) SELECT count(*) FROM ins",
                         KEPT_BODIES);
    assert_int_equal(made, KEPT_BODIES);
    PQclear(harness_sql(h, "ANALYZE notify.events"));
    /* PostgreSQL reports a backend's scans at its commits, at most once a second: what notify
     * read before the table grew is counted before the baseline */
    zclock_sleep(3000);
    long long before = s_event_scans();
    zclock_sleep(4000); /* four checks of the retention timer, and their reports */
    assert_int_equal(s_event_scans() - before, 0);
    assert_int_equal(harness_sql_int(h, "SELECT count(*) FROM notify.events"
                                        " WHERE source_stream = 'kept'"),
                     KEPT_BODIES);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(
            test_a_delivered_body_is_deleted_after_the_retention_and_its_delivery_stays),
        cmocka_unit_test(test_a_failed_delivery_keeps_its_body_for_a_retry),
    };
    const struct CMUnitTest kept[] = {
        cmocka_unit_test(test_the_retention_check_does_not_read_every_kept_body),
    };
    int failed = cmocka_run_group_tests(tests, setup, teardown);
    return failed + cmocka_run_group_tests(kept, setup_kept, teardown);
}
