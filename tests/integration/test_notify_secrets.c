/* Webhook secrets at rest, against real nrm-intake and nrm-notify processes, a real HTTP
 * receiver and the harness's keyring (crypto.keys_file): a secret given to UpsertSubscription
 * appears nowhere in notify's schema in clear (every table scanned, as text and as hex) and the
 * receiver still verifies the signature; a secret stored in clear before sealing existed is
 * sealed by the start job and still signs; the database refuses a clear secret from then on. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <czmq.h>

#include "harness.h"
#include "notify_fixture.h"
#include "notify_sinks.h"
#include "scenario.h"

#include <signal.h>
#include <sys/wait.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define OK NRM__V1__STATUS__STATUS_OK
#define SECRET "sealed-secret-of-the-hotline-7a1c2e"
#define LEGACY_SECRET "legacy-secret-stored-in-clear-93b4"
#define MAX_REQUESTS 64
#define SQL_MAX 2048

static harness_t *h;
static notify_receiver_t *receiver;

static int setup(void **state)
{
    h = harness_new("notify_secrets");
    receiver = notify_receiver_new();
    notify_fixture_settings_t settings = {
        .max_attempts = 5, .backoff_ms = 100, .max_backoff_ms = 400, .timeout_ms = 1000};
    notify_fixture_config(h, &settings, NULL);
    if (harness_start(h, "intake", 0) != 0 || harness_start(h, "notify", 0) != 0)
        return -1;
    return 0;
}

static int teardown(void **state)
{
    harness_destroy(&h);
    notify_receiver_destroy(&receiver);
    return 0;
}

/* Rows of every table of the notify schema that hold text, as text or as hex (bytea). */
static long long s_rows_holding(const char *text)
{
    char sql[SQL_MAX];
    snprintf(sql, sizeof sql,
             "CREATE OR REPLACE FUNCTION pg_temp.rows_holding(needle text) RETURNS bigint"
             " LANGUAGE plpgsql AS $f$ DECLARE t text; n bigint; total bigint := 0; BEGIN"
             " FOR t IN SELECT table_name FROM information_schema.tables"
             "  WHERE table_schema = 'notify' AND table_type = 'BASE TABLE' LOOP"
             "  EXECUTE format('SELECT count(*) FROM notify.%%I x WHERE strpos(x::text, $1) > 0"
             "   OR strpos(x::text, encode(convert_to($1, ''UTF8''), ''hex'')) > 0', t)"
             "   INTO n USING needle;"
             "  total := total + n; END LOOP; RETURN total; END $f$;"
             " SELECT pg_temp.rows_holding('%s')",
             text);
    return harness_sql_int(h, sql);
}

/* Waits for the subscription's delivery of the case; asserts the receiver got it at path,
 * signed with secret. */
static void s_delivered_signed(const char *subscription, const char *case_id, const char *path,
                               const char *secret)
{
    char sql[SQL_MAX];
    snprintf(sql, sizeof sql,
             "SELECT count(*) FROM notify.deliveries WHERE subscription_id = '%s'"
             " AND case_id = '%s' AND state = 'delivered'",
             subscription, case_id);
    assert_int_equal(notify_fixture_wait(h, sql, 1), 1);
    size_t at[MAX_REQUESTS];
    assert_int_equal(notify_fixture_requests_at(receiver, path, at, MAX_REQUESTS), 1);
    notify_request_t *r = notify_receiver_request(receiver, at[0]);
    assert_true(notify_fixture_signature_ok(r, secret));
    notify_request_free(&r);
}

static void test_a_secret_is_not_in_the_database_in_clear_and_still_signs(void **state)
{
    char url[256], id[65], sql[SQL_MAX];
    const char *opened[] = {"case.opened", NULL};
    notify_fixture_subscribe_ok(h, "hotline-national", "webhook",
                                notify_fixture_url(receiver, "sealed", url), opened, SECRET, id);
    snprintf(sql, sizeof sql,
             "SELECT count(*) FROM notify.subscriptions WHERE subscription_id = '%s'"
             " AND secret = '' AND secret_sealed IS NOT NULL AND secret_key_id = 1",
             id);
    assert_int_equal(harness_sql_int(h, sql), 1);
    char *case_id = notify_fixture_report(h, "police-ma-04", "MA-06", "Nkechi Umeh", "1989-09-23");
    s_delivered_signed(id, case_id, "/hook/sealed", SECRET);
    assert_int_equal(s_rows_holding(SECRET), 0);
    assert_false(harness_log_contains(h, "notify", 0, SECRET));
    free(case_id);
}

static void test_a_secret_stored_in_clear_is_sealed_at_start_and_still_signs(void **state)
{
    /* a row as notify wrote them before sealing existed */
    assert_true(WIFEXITED(harness_signal(h, "notify", 0, SIGTERM)));
    char url[256], sql[SQL_MAX];
    snprintf(sql, sizeof sql,
             "ALTER TABLE notify.subscriptions DROP CONSTRAINT subscriptions_secret_not_in_clear;"
             " INSERT INTO notify.subscriptions (subscription_id, agency_id, channel, address,"
             " topics, secret, origin) VALUES ('legacy-hook', 'iom-ma', 'webhook', '%s',"
             " '{case.opened}', '%s', 'api');"
             " ALTER TABLE notify.subscriptions ADD CONSTRAINT subscriptions_secret_not_in_clear"
             " CHECK (secret = '') NOT VALID",
             notify_fixture_url(receiver, "legacy", url), LEGACY_SECRET);
    PQclear(harness_sql(h, sql));
    assert_int_equal(s_rows_holding(LEGACY_SECRET), 1);
    assert_int_equal(harness_start(h, "notify", 0), 0);
    assert_int_equal(harness_sql_int(h, "SELECT count(*) FROM notify.subscriptions WHERE"
                                        " subscription_id = 'legacy-hook' AND secret = ''"
                                        " AND secret_sealed IS NOT NULL"),
                     1);
    assert_int_equal(s_rows_holding(LEGACY_SECRET), 0);
    char *case_id =
        notify_fixture_report(h, "police-ma-04", "MA-06", "Ifeoma Chukwu", "1989-09-23");
    s_delivered_signed("legacy-hook", case_id, "/hook/legacy", LEGACY_SECRET);
    assert_false(harness_log_contains(h, "notify", 0, LEGACY_SECRET));
    free(case_id);
}

static void test_the_database_refuses_a_secret_in_clear(void **state)
{
    long long refused =
        harness_sql_int(h, "CREATE OR REPLACE FUNCTION pg_temp.try_clear() RETURNS int"
                           " LANGUAGE plpgsql AS $f$ BEGIN"
                           " UPDATE notify.subscriptions SET secret = 'written-in-clear-0123456';"
                           " RETURN 0; EXCEPTION WHEN check_violation THEN RETURN 1; END $f$;"
                           " SELECT pg_temp.try_clear()");
    assert_int_equal(refused, 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_a_secret_is_not_in_the_database_in_clear_and_still_signs),
        cmocka_unit_test(test_a_secret_stored_in_clear_is_sealed_at_start_and_still_signs),
        cmocka_unit_test(test_the_database_refuses_a_secret_in_clear),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
