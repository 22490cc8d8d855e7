/* Where webhooks may go, against real nrm-intake and nrm-notify processes and a real HTTP
 * receiver on 127.0.0.1: every spelling of an internal address (and user-info) is refused when
 * subscribing, naming the address without quoting it; an address that is not UTF-8 is
 * INVALID_ARGUMENT; a host name the allow-list lets through ("localhost") still cannot reach
 * 127.0.0.1 at connect time, and its delivery fails as "destination refused" with nothing
 * received; once the operator allow-lists the receiver's address (SIGHUP), the same delivery
 * retried reaches it. Notify runs with notify.webhook_allow = ["localhost"]. */
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
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define INVALID NRM__V1__STATUS__STATUS_INVALID_ARGUMENT
#define OK NRM__V1__STATUS__STATUS_OK
#define SECRET "destinations-test-secret-0123456789"
#define ADDRESS_FIELD "upsert_subscription.address"
#define MAX_REQUESTS 64
#define SQL_MAX 1024
#define URL_MAX 256

static harness_t *h;
static notify_receiver_t *receiver;

static int setup(void **state)
{
    h = harness_new("notify_destinations");
    receiver = notify_receiver_new();
    notify_fixture_settings_t settings = {
        .max_attempts = 2, .backoff_ms = 100, .max_backoff_ms = 200, .timeout_ms = 1000};
    notify_fixture_config(h, &settings, NULL);
    /* the name localhost passes the subscription check; no address is allowed yet */
    harness_config_set(h, "notify.webhook_allow", json_pack("[s]", "localhost"));
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

/* The receiver's port, from its URL ("http://127.0.0.1:PORT/hook"). */
static int s_port(void)
{
    const char *url = notify_receiver_url(receiver);
    const char *colon = strrchr(url, ':');
    assert_non_null(colon);
    return atoi(colon + 1);
}

/* Subscribes the coordinator's webhook at address to case.opened; returns the Reply. */
static Nrm__V1__Reply *s_subscribe(const char *address, char id[65])
{
    const char *opened[] = {"case.opened", NULL};
    return notify_fixture_subscribe(h, "coordinator", NULL, "webhook", address, opened, SECRET, id);
}

static void test_every_internal_spelling_is_refused_naming_the_address(void **state)
{
    int port = s_port();
    /* hosts; each becomes http://HOST:PORT/hook/ssrf */
    const char *const hosts[] = {
        "127.0.0.1",
        "0x7f000001",
        "2130706433",
        "0177.0.0.1",
        "127.1",
        "127.0.0.1.",
        "[::1]",
        "[::ffff:127.0.0.1]",
        "[::ffff:7f00:1]",
        "api.localhost",
        "169.254.169.254",
        "[::ffff:169.254.169.254]",
        "[fe80::1]",
        "10.0.0.1",
        "172.16.0.1",
        "192.168.1.1",
        "100.64.0.1",
        "[fc00::1]",
        "[fd00::1]",
        "224.0.0.1",
        "[ff02::1]",
        "0.0.0.0",
        "[::]",
        "user:pass@receiver.example.org",
        "user@localhost",
    };
    for (size_t i = 0; i < sizeof hosts / sizeof *hosts; i++) {
        char url[URL_MAX];
        snprintf(url, sizeof url, "http://%s:%d/hook/ssrf", hosts[i], port);
        Nrm__V1__Reply *reply = s_subscribe(url, NULL);
        assert_non_null(reply);
        if (reply->status != INVALID || strcmp(reply->error_field, ADDRESS_FIELD) != 0)
            fail_msg("%s: status %d field %s", url, reply->status, reply->error_field);
        assert_null(strstr(reply->error_message, hosts[i]));
        nrm__v1__reply__free_unpacked(reply, NULL);
    }
    /* nothing stored, nothing logged */
    assert_int_equal(harness_sql_int(h, "SELECT count(*) FROM notify.subscriptions"
                                        " WHERE address LIKE '%/hook/ssrf'"),
                     0);
    assert_false(harness_log_contains(h, "notify", 0, "/hook/ssrf"));
}

static void test_an_address_that_is_not_utf8_is_invalid_naming_the_address(void **state)
{
    Nrm__V1__Reply *reply = s_subscribe("https://receiver.example.org/hook/\xff\xfe", NULL);
    assert_non_null(reply);
    assert_int_equal(reply->status, INVALID);
    assert_string_equal(reply->error_field, ADDRESS_FIELD);
    nrm__v1__reply__free_unpacked(reply, NULL);
    reply = notify_fixture_subscribe(h, "coordinator", NULL, "email", "duty\xc3@example.org", NULL,
                                     NULL, NULL);
    assert_non_null(reply);
    assert_int_equal(reply->status, INVALID);
    assert_string_equal(reply->error_field, ADDRESS_FIELD);
    nrm__v1__reply__free_unpacked(reply, NULL);
    assert_int_equal(harness_sql_int(h, "SELECT count(*) FROM notify.subscriptions"), 0);
}

static void test_a_name_allowed_at_subscription_is_refused_at_connect_time(void **state)
{
    char url[URL_MAX], id[65], sql[SQL_MAX];
    snprintf(url, sizeof url, "http://localhost:%d/hook/local", s_port());
    Nrm__V1__Reply *reply = s_subscribe(url, id);
    assert_int_equal(reply->status, OK);
    nrm__v1__reply__free_unpacked(reply, NULL);
    char *case_id =
        notify_fixture_report(h, "police-ma-04", "MA-04", "Adaeze Okonjo", "1992-04-17");
    snprintf(sql, sizeof sql,
             "SELECT count(*) FROM notify.deliveries WHERE subscription_id = '%s'"
             " AND case_id = '%s' AND state = 'failed' AND last_error = 'destination refused'",
             id, case_id);
    assert_int_equal(notify_fixture_wait(h, sql, 1), 1);
    size_t at[MAX_REQUESTS];
    assert_int_equal(notify_fixture_requests_at(receiver, "/hook/local", at, MAX_REQUESTS), 0);
    assert_int_equal(notify_receiver_count(receiver), 0);
    /* the dead letter says no more than that */
    Nrm__V1__Event **events = NULL;
    size_t n = harness_fetch_all(h, "notify", &events), failed = 0;
    for (size_t i = 0; i < n; i++) {
        if (events[i]->body_case == NRM__V1__EVENT__BODY_NOTIFICATION_FAILED &&
            strcmp(events[i]->case_id, case_id) == 0) {
            assert_string_equal(events[i]->notification_failed->last_error, "destination refused");
            failed++;
        }
        nrm__v1__event__free_unpacked(events[i], NULL);
    }
    free(events);
    assert_int_equal(failed, 1);
    assert_false(harness_log_contains(h, "notify", 0, "/hook/local"));
    free(case_id);
}

/* Rewrites the configuration's notify.webhook_allow to list and reloads notify (SIGHUP), then
 * waits until a numeric loopback subscription is accepted (the reload took effect). */
static void s_allow_and_reload(json_t *list)
{
    char path[512], url[URL_MAX];
    snprintf(path, sizeof path, "%s/config.json", harness_dir(h));
    json_error_t jerr;
    json_t *config = json_load_file(path, 0, &jerr);
    assert_non_null(config);
    json_object_set_new(json_object_get(config, "notify"), "webhook_allow", list);
    assert_int_equal(json_dump_file(config, path, JSON_INDENT(1)), 0);
    json_decref(config);
    harness_signal(h, "notify", 0, SIGHUP);
    snprintf(url, sizeof url, "http://127.0.0.1:%d/hook/probe", s_port());
    bool accepted = false;
    for (int i = 0; i < 100 && !accepted; i++) {
        Nrm__V1__Reply *reply = s_subscribe(url, NULL);
        accepted = reply && reply->status == OK;
        if (reply)
            nrm__v1__reply__free_unpacked(reply, NULL);
        if (!accepted)
            zclock_sleep(50);
    }
    assert_true(accepted);
}

static void test_the_allow_list_admits_the_receiver_by_its_address(void **state)
{
    s_allow_and_reload(json_pack("[s, s, s]", "localhost", "127.0.0.1/32", "::1/128"));
    /* the delivery refused above, retried by the coordinator, now reaches the receiver */
    PGresult *res =
        harness_sql(h, "SELECT delivery_id FROM notify.deliveries"
                       " WHERE last_error = 'destination refused' AND state = 'failed'");
    assert_int_equal(PQntuples(res), 1);
    Nrm__V1__RetryDelivery retry = NRM__V1__RETRY_DELIVERY__INIT;
    retry.delivery_id = PQgetvalue(res, 0, 0);
    Nrm__V1__Request req = NRM__V1__REQUEST__INIT;
    scenario_request(&req, NRM__V1__REQUEST__BODY_RETRY_DELIVERY, &retry);
    Nrm__V1__Reply *reply = harness_call(h, "notify", "coordinator", &req);
    assert_int_equal(reply->status, OK);
    nrm__v1__reply__free_unpacked(reply, NULL);
    char sql[SQL_MAX];
    snprintf(sql, sizeof sql,
             "SELECT count(*) FROM notify.deliveries WHERE delivery_id = '%s'"
             " AND state = 'delivered'",
             retry.delivery_id);
    assert_int_equal(notify_fixture_wait(h, sql, 1), 1);
    size_t at[MAX_REQUESTS];
    assert_int_equal(notify_fixture_requests_at(receiver, "/hook/local", at, MAX_REQUESTS), 1);
    notify_request_t *r = notify_receiver_request(receiver, at[0]);
    assert_true(notify_fixture_signature_ok(r, SECRET));
    notify_request_free(&r);
    PQclear(res);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_internal_spelling_is_refused_naming_the_address),
        cmocka_unit_test(test_an_address_that_is_not_utf8_is_invalid_naming_the_address),
        cmocka_unit_test(test_a_name_allowed_at_subscription_is_refused_at_connect_time),
        cmocka_unit_test(test_the_allow_list_admits_the_receiver_by_its_address),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
