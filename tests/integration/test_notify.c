/* Notify against real PostgreSQL, real nrm-intake and nrm-notify processes, a real HTTP receiver
 * and SMTP sink on loopback: subscriptions are checked and authorised, a report's case.opened
 * reaches a subscriber as a signed CloudEvent, a reporting agency hears its case closed, an
 * agency without subscription is visibly undeliverable (and logged once, not per event), an email
 * reaches the sink, and the submitted name appears in no body, header or log line. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <czmq.h>

#include "harness.h"
#include "notify_fixture.h"
#include "notify_sinks.h"
#include "nrm_crypto.h"
#include "nrm_event.h"
#include "nrm_time.h"
#include "scenario.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define NAME "Blessing Chukwuemeka-Alaoui"
#define DOB "1994-02-11"
#define SECRET "webhook-secret-of-the-hotline-0123456789"
#define SECRET_NGO "webhook-secret-of-the-ngo-marrakech-42"
#define SECRET_ENV "NRM_TEST_IOM_WEBHOOK_SECRET"
#define SECRET_FROM_ENV "secret-given-by-the-environment-42"
#define MAX_REQUESTS 64
#define WAIT_MS NOTIFY_FIXTURE_WAIT_MS

static harness_t *h;
static notify_receiver_t *receiver;
static notify_smtp_t *smtp;

static int setup(void **state)
{
    h = harness_new("notify");
    receiver = notify_receiver_new();
    smtp = notify_smtp_new();
    notify_fixture_settings_t settings = {.max_attempts = 5,
                                          .backoff_ms = 200,
                                          .max_backoff_ms = 1000,
                                          .timeout_ms = 2000,
                                          .smtp_url = notify_smtp_url(smtp)};
    notify_fixture_config(h, &settings, NULL);
    /* the coordinator's mailbox comes from the configuration, its secret-less email needs none */
    harness_config_set(h, "subscriptions",
                       json_pack("[{s:s, s:s, s:s, s:s, s:[]}]", "subscription_id",
                                 "cfg-coordinator-email", "agency_id", "coordinator", "channel",
                                 "email", "address", "duty-officer@coordination.example.invalid",
                                 "topics"));
    setenv(SECRET_ENV, SECRET_FROM_ENV, 1); /* inherited by nrm-notify */
    if (harness_start(h, "intake", 0) != 0 || harness_start(h, "notify", 0) != 0)
        return -1;
    return 0;
}

static int teardown(void **state)
{
    harness_destroy(&h);
    notify_receiver_destroy(&receiver);
    notify_smtp_destroy(&smtp);
    return 0;
}

/* Closes a case as the coordinator. */
static void s_close(const char *case_id)
{
    Nrm__V1__CloseCase c = NRM__V1__CLOSE_CASE__INIT;
    c.case_id = (char *)case_id;
    c.reason = "reintegrated";
    Nrm__V1__Request req = NRM__V1__REQUEST__INIT;
    scenario_request(&req, NRM__V1__REQUEST__BODY_CLOSE_CASE, &c);
    Nrm__V1__Reply *reply = harness_call(h, "intake", "coordinator", &req);
    assert_non_null(reply);
    assert_int_equal(reply->status, NRM__V1__STATUS__STATUS_OK);
    nrm__v1__reply__free_unpacked(reply, NULL);
}

/* The event of service's stream with this topic and case (caller frees), waiting for it. */
static Nrm__V1__Event *s_event(const char *service, const char *topic, const char *case_id,
                               const char *delivery_id)
{
    int64_t deadline = nrm_mono_ms() + WAIT_MS;
    while (nrm_mono_ms() < deadline) {
        Nrm__V1__Event **events = NULL, *found = NULL;
        size_t n = harness_fetch_all(h, service, &events);
        for (size_t i = 0; i < n; i++) {
            Nrm__V1__Event *ev = events[i];
            const char *id = ev->body_case == NRM__V1__EVENT__BODY_NOTIFICATION_DELIVERED
                                 ? ev->notification_delivered->delivery_id
                             : ev->body_case == NRM__V1__EVENT__BODY_NOTIFICATION_FAILED
                                 ? ev->notification_failed->delivery_id
                                 : NULL;
            bool match = !found && strcmp(ev->topic, topic) == 0 &&
                         (!case_id || strcmp(ev->case_id, case_id) == 0) &&
                         (!delivery_id || (id && strcmp(id, delivery_id) == 0));
            if (match)
                found = ev;
            else
                nrm__v1__event__free_unpacked(ev, NULL);
        }
        free(events);
        if (found)
            return found;
        zclock_sleep(50);
    }
    return NULL;
}

/* Asserts a subscription is refused with status on field. */
static void s_refused(const char *sender, const char *agency, const char *channel,
                      const char *address, const char *const *topics, const char *secret,
                      int status, const char *field)
{
    Nrm__V1__Reply *reply =
        notify_fixture_subscribe(h, sender, agency, channel, address, topics, secret, NULL);
    assert_non_null(reply);
    assert_int_equal(reply->status, status);
    assert_string_equal(reply->error_field, field);
    nrm__v1__reply__free_unpacked(reply, NULL);
}

static void test_subscriptions_are_checked_and_authorised(void **state)
{
    char url[256], id[65];
    const char *cases[] = {"case.", NULL};
    notify_fixture_url(receiver, "police", url);
    Nrm__V1__Reply *ok = notify_fixture_subscribe(h, "police-ma-04", NULL, "webhook", url, cases,
                                                  "police-secret-0123456789abcdef", id);
    assert_int_equal(ok->status, NRM__V1__STATUS__STATUS_OK);
    assert_true(nrm_uuid_valid(id));
    nrm__v1__reply__free_unpacked(ok, NULL);

    const int invalid = NRM__V1__STATUS__STATUS_INVALID_ARGUMENT;
    const char *secret = "a-long-enough-secret-000";
    /* someone else's subscription: only the agency itself or a coordinator */
    s_refused("police-ma-04", "police-ma-06", "webhook", url, cases, secret,
              NRM__V1__STATUS__STATUS_PERMISSION_DENIED, "upsert_subscription.agency_id");
    s_refused("coordinator", "nobody-at-all", "webhook", url, cases, secret, invalid,
              "upsert_subscription.agency_id");
    s_refused("police-ma-04", NULL, "sms", url, cases, secret, invalid,
              "upsert_subscription.channel");
    s_refused("police-ma-04", NULL, "webhook", "ftp://127.0.0.1/x", cases, secret, invalid,
              "upsert_subscription.address");
    s_refused("police-ma-04", NULL, "email", "not an address", cases, NULL, invalid,
              "upsert_subscription.address");
    s_refused("police-ma-04", NULL, "email", "a@b.example\r\nBcc: x@y.example", cases, NULL,
              invalid, "upsert_subscription.address");
    const char *own[] = {"case.", "notification.", NULL};
    s_refused("police-ma-04", NULL, "webhook", url, own, secret, invalid,
              "upsert_subscription.topics[1]");
    const char *shouting[] = {"Case.", NULL};
    s_refused("police-ma-04", NULL, "webhook", url, shouting, secret, invalid,
              "upsert_subscription.topics[0]");
    s_refused("police-ma-04", NULL, "webhook", url, cases, NULL, invalid,
              "upsert_subscription.secret");
    s_refused("police-ma-04", NULL, "webhook", url, cases, "short", invalid,
              "upsert_subscription.secret");

    /* a coordinator may subscribe for an agency; nobody else may take its subscription over */
    char other[65];
    notify_fixture_url(receiver, "police-06", url);
    Nrm__V1__Reply *for_other = notify_fixture_subscribe(h, "coordinator", "police-ma-06",
                                                         "webhook", url, cases, secret, other);
    assert_int_equal(for_other->status, NRM__V1__STATUS__STATUS_OK);
    nrm__v1__reply__free_unpacked(for_other, NULL);
    Nrm__V1__UpsertSubscription u = NRM__V1__UPSERT_SUBSCRIPTION__INIT;
    u.subscription_id = other;
    u.channel = "webhook";
    u.address = url;
    u.secret = (char *)secret;
    Nrm__V1__Request req = NRM__V1__REQUEST__INIT;
    scenario_request(&req, NRM__V1__REQUEST__BODY_UPSERT_SUBSCRIPTION, &u);
    Nrm__V1__Reply *taken = harness_call(h, "notify", "police-ma-04", &req);
    assert_int_equal(taken->status, NRM__V1__STATUS__STATUS_PERMISSION_DENIED);
    assert_string_equal(taken->error_field, "upsert_subscription.subscription_id");
    nrm__v1__reply__free_unpacked(taken, NULL);
    /* the configured subscription belongs to the configuration */
    u.subscription_id = "cfg-coordinator-email";
    u.channel = "email";
    u.address = "someone@example.invalid";
    u.secret = "";
    Nrm__V1__Reply *configured = harness_call(h, "notify", "coordinator", &req);
    assert_int_equal(configured->status, NRM__V1__STATUS__STATUS_FAILED_PRECONDITION);
    nrm__v1__reply__free_unpacked(configured, NULL);
    assert_int_equal(harness_sql_int(h, "SELECT count(*) FROM notify.subscriptions WHERE"
                                        " subscription_id = 'cfg-coordinator-email' AND"
                                        " origin = 'config' AND active"),
                     1);
    /* secrets stay in the database only */
    assert_false(harness_log_contains(h, "notify", 0, "police-secret-0123456789abcdef"));
}

/* Formats ms as the CloudEvents time notify writes. */
static void s_time_text(int64_t ms, char out[40])
{
    time_t seconds = (time_t)(ms / 1000);
    struct tm tm;
    gmtime_r(&seconds, &tm);
    char date[32];
    strftime(date, sizeof date, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(out, 40, "%s.%03dZ", date, (int)(ms % 1000));
}

static void test_case_opened_reaches_subscriber_as_signed_cloudevent(void **state)
{
    char url[256], subscription[65];
    const char *opened[] = {"case.opened", NULL};
    notify_fixture_url(receiver, "hotline", url);
    notify_fixture_subscribe_ok(h, "hotline-national", "webhook", url, opened, SECRET,
                                subscription);
    char *case_id = notify_fixture_report(h, "labour-ma-06", "MA-06", "Aisha Bello", "1991-07-03");
    Nrm__V1__Event *source = s_event("intake", "case.opened", case_id, NULL);
    assert_non_null(source);

    char sql[512];
    snprintf(sql, sizeof sql,
             "SELECT count(*) FROM notify.deliveries WHERE subscription_id = '%s'"
             " AND case_id = '%s' AND state = 'delivered' AND attempts = 1",
             subscription, case_id);
    assert_int_equal(notify_fixture_wait(h, sql, 1), 1);
    size_t at[MAX_REQUESTS];
    assert_int_equal(notify_fixture_requests_at(receiver, "/hook/hotline", at, MAX_REQUESTS), 1);
    notify_request_t *r = notify_receiver_request(receiver, at[0]);
    assert_string_equal(r->method, "POST");
    assert_int_equal(r->status, 204);
    char *type = notify_request_header(r, "Content-Type");
    assert_non_null(strstr(type, "application/cloudevents+json"));
    assert_true(notify_fixture_signature_ok(r, SECRET));
    assert_false(notify_fixture_signature_ok(r, "another-secret-altogether-0000"));
    char *delivery = notify_request_header(r, "X-NRM-Delivery");
    snprintf(sql, sizeof sql,
             "SELECT count(*) FROM notify.deliveries WHERE delivery_id = '%s'"
             " AND subscription_id = '%s' AND source_stream = 'intake' AND source_seq = %lld",
             delivery, subscription, (long long)source->seq);
    assert_int_equal(harness_sql_int(h, sql), 1);

    json_error_t jerr;
    json_t *body = json_loadb(r->body, r->body_len, 0, &jerr);
    assert_non_null(body);
    char time_text[40];
    s_time_text(source->occurred_at_ms, time_text);
    assert_string_equal(json_string_value(json_object_get(body, "specversion")), "1.0");
    assert_string_equal(json_string_value(json_object_get(body, "id")), source->event_id);
    assert_string_equal(json_string_value(json_object_get(body, "source")), "/nrm/intake");
    assert_string_equal(json_string_value(json_object_get(body, "type")), "case.opened");
    assert_string_equal(json_string_value(json_object_get(body, "subject")), case_id);
    assert_string_equal(json_string_value(json_object_get(body, "time")), time_text);
    json_t *data = json_object_get(body, "data");
    assert_string_equal(json_string_value(json_object_get(data, "reportingAgencyId")),
                        "labour-ma-06");
    assert_string_equal(json_string_value(json_object_get(data, "region")), "MA-06");
    assert_string_equal(json_string_value(json_object_get(data, "urgency")), "URGENCY_URGENT");

    /* the outcome is an event of notify's own stream, caused by the source event */
    Nrm__V1__Event *delivered = s_event("notify", "notification.delivered", case_id, delivery);
    assert_non_null(delivered);
    Nrm__V1__NotificationDelivered *d = delivered->notification_delivered;
    assert_string_equal(d->subscription_id, subscription);
    assert_string_equal(d->agency_id, "hotline-national");
    assert_string_equal(d->topic, "case.opened");
    assert_string_equal(d->source_stream, "intake");
    assert_int_equal(d->source_seq, source->seq);
    assert_int_equal(d->attempts, 1);
    assert_string_equal(delivered->causation_id, source->event_id);

    nrm__v1__event__free_unpacked(delivered, NULL);
    json_decref(body);
    free(delivery);
    free(type);
    notify_request_free(&r);
    nrm__v1__event__free_unpacked(source, NULL);
    free(case_id);
}

static void test_reporting_agency_hears_its_case_closed(void **state)
{
    char url[256], subscription[65];
    notify_fixture_url(receiver, "ngo", url);
    /* no topics: only what concerns the NGO */
    notify_fixture_subscribe_ok(h, "ngo-ma-07", "webhook", url, NULL, SECRET_NGO, subscription);
    char *case_id = notify_fixture_report(h, "ngo-ma-07", "MA-07", "Zainab Ouchen", "1987-12-24");
    s_close(case_id);
    char sql[512];
    snprintf(sql, sizeof sql,
             "SELECT count(*) FROM notify.deliveries WHERE subscription_id = '%s'"
             " AND case_id = '%s' AND topic = 'case.closed' AND state = 'delivered'",
             subscription, case_id);
    assert_int_equal(notify_fixture_wait(h, sql, 1), 1);
    /* and nothing else: case.opened does not concern it as such */
    snprintf(sql, sizeof sql, "SELECT count(*) FROM notify.deliveries WHERE subscription_id = '%s'",
             subscription);
    assert_int_equal(harness_sql_int(h, sql), 1);
    size_t at[MAX_REQUESTS];
    assert_int_equal(notify_fixture_requests_at(receiver, "/hook/ngo", at, MAX_REQUESTS), 1);
    notify_request_t *r = notify_receiver_request(receiver, at[0]);
    assert_true(notify_fixture_signature_ok(r, SECRET_NGO));
    assert_non_null(strstr(r->body, "\"type\":\"case.closed\""));
    notify_request_free(&r);
    free(case_id);
}

static void test_agency_without_subscription_is_visibly_undeliverable(void **state)
{
    char *case_id =
        notify_fixture_report(h, "police-ma-01", "MA-01", "Mariam Diallo", "1999-05-30");
    s_close(case_id);
    char sql[512];
    snprintf(sql, sizeof sql,
             "SELECT count(*) FROM notify.deliveries WHERE agency_id = 'police-ma-01'"
             " AND case_id = '%s' AND topic = 'case.closed' AND state = 'undeliverable'"
             " AND channel = '' AND subscription_id = ''",
             case_id);
    assert_int_equal(notify_fixture_wait(h, sql, 1), 1);
    Nrm__V1__Event *failed = s_event("notify", "notification.failed", case_id, NULL);
    assert_non_null(failed);
    assert_string_equal(failed->notification_failed->agency_id, "police-ma-01");
    assert_string_equal(failed->notification_failed->topic, "case.closed");
    assert_int_equal(failed->notification_failed->attempts, 0);
    assert_non_null(strstr(failed->notification_failed->last_error, "no subscription"));

    /* the coordinator sees it listed; an agency lists its own deliveries only */
    Nrm__V1__ListDeliveries list = NRM__V1__LIST_DELIVERIES__INIT;
    list.state = "undeliverable";
    Nrm__V1__Request req = NRM__V1__REQUEST__INIT;
    scenario_request(&req, NRM__V1__REQUEST__BODY_LIST_DELIVERIES, &list);
    Nrm__V1__Reply *reply = harness_call(h, "notify", "coordinator", &req);
    assert_int_equal(reply->status, NRM__V1__STATUS__STATUS_OK);
    bool listed = false;
    for (size_t i = 0; i < reply->delivery_list->n_deliveries; i++) {
        Nrm__V1__Delivery *d = reply->delivery_list->deliveries[i];
        assert_string_equal(d->state, "undeliverable");
        listed |= strcmp(d->delivery_id, failed->notification_failed->delivery_id) == 0 &&
                  strcmp(d->case_id, case_id) == 0;
    }
    assert_true(listed);
    Nrm__V1__Reply *own = harness_call(h, "notify", "police-ma-01", &req);
    assert_int_equal(own->status, NRM__V1__STATUS__STATUS_OK);
    bool own_listed = false;
    for (size_t i = 0; i < own->delivery_list->n_deliveries; i++) {
        Nrm__V1__Delivery *d = own->delivery_list->deliveries[i];
        assert_string_equal(d->agency_id, "police-ma-01");
        own_listed |= strcmp(d->delivery_id, failed->notification_failed->delivery_id) == 0;
    }
    assert_true(own_listed);
    list.state = "lost";
    Nrm__V1__Reply *bad = harness_call(h, "notify", "coordinator", &req);
    assert_int_equal(bad->status, NRM__V1__STATUS__STATUS_INVALID_ARGUMENT);
    assert_string_equal(bad->error_field, "list_deliveries.state");
    /* and counted in notify's Pong */
    assert_true(harness_counter(h, "notify", "deliveries_undeliverable") >= 1);
    assert_true(harness_counter(h, "notify", "deliveries_delivered") >= 1);
    nrm__v1__reply__free_unpacked(reply, NULL);
    nrm__v1__reply__free_unpacked(own, NULL);
    nrm__v1__reply__free_unpacked(bad, NULL);
    nrm__v1__event__free_unpacked(failed, NULL);
    free(case_id);
}

/* Each undeliverable delivery is recorded (row, notification.failed, counter), but an agency's
 * are logged once an hour, not once per event: after the first test's, two more log nothing. */
static void test_an_agencys_undeliverable_deliveries_are_logged_once_not_per_event(void **state)
{
    const char *line = "undeliverable: the agency has no subscription";
    assert_int_equal(harness_log_lines(h, "notify", 0, line, "police-ma-01"), 1);
    char *first = notify_fixture_report(h, "police-ma-01", "MA-01", "Awa Traore", "1997-02-11");
    char *second = notify_fixture_report(h, "police-ma-01", "MA-01", "Nadia Benali", "1995-08-23");
    s_close(first);
    s_close(second);
    char sql[512];
    snprintf(sql, sizeof sql,
             "SELECT count(*) FROM notify.deliveries WHERE agency_id = 'police-ma-01'"
             " AND case_id IN ('%s', '%s') AND topic = 'case.closed' AND state = 'undeliverable'",
             first, second);
    assert_int_equal(notify_fixture_wait(h, sql, 2), 2);
    Nrm__V1__Event *failed = s_event("notify", "notification.failed", second, NULL);
    assert_non_null(failed);
    nrm__v1__event__free_unpacked(failed, NULL);
    assert_int_equal(harness_log_lines(h, "notify", 0, line, "police-ma-01"), 1);
    free(first);
    free(second);
}

static void test_email_reaches_the_sink_without_identifying_data(void **state)
{
    char subscription[65];
    const char *opened[] = {"case.opened", NULL};
    notify_fixture_subscribe_ok(h, "iom-ma", "email", "protection@iom.example.invalid", opened,
                                NULL, subscription);
    size_t before = notify_smtp_count(smtp);
    char *case_id = notify_fixture_report(h, "hospital-ma-04", "MA-04", NAME, DOB);
    char sql[512];
    snprintf(sql, sizeof sql,
             "SELECT count(*) FROM notify.deliveries WHERE subscription_id = '%s'"
             " AND case_id = '%s' AND state = 'delivered'",
             subscription, case_id);
    assert_int_equal(notify_fixture_wait(h, sql, 1), 1);
    assert_true(notify_smtp_wait(smtp, before + 1, WAIT_MS));
    char *data = NULL;
    for (size_t i = 0; i < notify_smtp_count(smtp) && !data; i++) {
        char *rcpt = notify_smtp_recipients(smtp, i);
        if (strstr(rcpt, "protection@iom.example.invalid"))
            data = notify_smtp_data(smtp, i);
        free(rcpt);
    }
    assert_non_null(data);
    char subject[256];
    snprintf(subject, sizeof subject, "Subject: [NRM] case.opened - case %s", case_id);
    assert_non_null(strstr(data, subject));
    assert_non_null(strstr(data, "X-NRM-Delivery: "));
    assert_non_null(strstr(data, "Reporting agency: hospital-ma-04"));
    const char *identifying[] = {NAME,          "Chukwuemeka",   DOB,
                                 "600 000 111", "PASS-A1234567", "farm gate"};
    for (size_t i = 0; i < sizeof identifying / sizeof *identifying; i++)
        assert_null(strstr(data, identifying[i]));
    free(data);
    free(case_id);
}

static void test_submitted_name_appears_in_no_body_header_or_log_line(void **state)
{
    /* the report of test_email_... carried NAME: wait until everything it caused is settled */
    assert_int_equal(notify_fixture_wait(h,
                                         "SELECT count(*) FROM notify.deliveries"
                                         " WHERE state = 'pending'",
                                         0),
                     0);
    const char *identifying[] = {NAME,          "Chukwuemeka",   DOB,
                                 "600 000 111", "PASS-A1234567", "farm gate"};
    for (size_t i = 0; i < sizeof identifying / sizeof *identifying; i++) {
        assert_false(notify_receiver_saw(receiver, identifying[i]));
        assert_false(notify_smtp_saw(smtp, identifying[i]));
        assert_false(harness_log_contains(h, "notify", 0, identifying[i]));
        assert_false(harness_log_contains(h, "intake", 0, identifying[i]));
    }
    assert_true(notify_receiver_count(receiver) > 0);
    assert_true(notify_smtp_count(smtp) > 0);
    assert_int_equal(harness_sql_int(h, "SELECT count(*) FROM notify.events WHERE"
                                        " position('Chukwuemeka'::bytea in payload) > 0"),
                     0);
}

static void test_retry_is_for_coordinators_and_failed_deliveries_only(void **state)
{
    Nrm__V1__RetryDelivery retry = NRM__V1__RETRY_DELIVERY__INIT;
    Nrm__V1__Request req = NRM__V1__REQUEST__INIT;
    scenario_request(&req, NRM__V1__REQUEST__BODY_RETRY_DELIVERY, &retry);
    retry.delivery_id = "not-a-uuid";
    Nrm__V1__Reply *bad = harness_call(h, "notify", "coordinator", &req);
    assert_int_equal(bad->status, NRM__V1__STATUS__STATUS_INVALID_ARGUMENT);
    assert_string_equal(bad->error_field, "retry_delivery.delivery_id");
    char unknown[37];
    nrm_uuid_v4(unknown);
    retry.delivery_id = unknown;
    Nrm__V1__Reply *missing = harness_call(h, "notify", "coordinator", &req);
    assert_int_equal(missing->status, NRM__V1__STATUS__STATUS_NOT_FOUND);
    /* another agency's delivery: the hotline may retry its own, not this one */
    PGresult *res = harness_sql(h, "SELECT delivery_id FROM notify.deliveries"
                                   " WHERE state = 'delivered' AND agency_id <> 'hotline-national'"
                                   " ORDER BY delivery_id LIMIT 1");
    assert_int_equal(PQntuples(res), 1);
    retry.delivery_id = PQgetvalue(res, 0, 0);
    Nrm__V1__Reply *denied = harness_call(h, "notify", "hotline-national", &req);
    assert_int_equal(denied->status, NRM__V1__STATUS__STATUS_PERMISSION_DENIED);
    Nrm__V1__Reply *done = harness_call(h, "notify", "coordinator", &req);
    assert_int_equal(done->status, NRM__V1__STATUS__STATUS_FAILED_PRECONDITION);
    assert_string_equal(done->error_field, "retry_delivery.delivery_id");
    PQclear(res);
    nrm__v1__reply__free_unpacked(bad, NULL);
    nrm__v1__reply__free_unpacked(missing, NULL);
    nrm__v1__reply__free_unpacked(denied, NULL);
    nrm__v1__reply__free_unpacked(done, NULL);
}

static void test_reload_seeds_configured_subscriptions_with_secret_from_environment(void **state)
{
    /* the operator edits the configuration: the coordinator's mailbox goes, IOM's webhook comes */
    char path[512], url[256];
    snprintf(path, sizeof path, "%s/config.json", harness_dir(h));
    json_error_t jerr;
    json_t *config = json_load_file(path, 0, &jerr);
    assert_non_null(config);
    json_object_set_new(config, "subscriptions",
                        json_pack("[{s:s, s:s, s:s, s:s, s:[s], s:s}]", "subscription_id",
                                  "cfg-iom-webhook", "agency_id", "iom-ma", "channel", "webhook",
                                  "address", notify_fixture_url(receiver, "iom-cfg", url), "topics",
                                  "case.closed", "secret_env", SECRET_ENV));
    assert_int_equal(json_dump_file(config, path, JSON_INDENT(1)), 0);
    json_decref(config);
    harness_signal(h, "notify", 0, SIGHUP);
    assert_int_equal(notify_fixture_wait(h,
                                         "SELECT count(*) FROM notify.subscriptions WHERE"
                                         " subscription_id = 'cfg-iom-webhook' AND active",
                                         1),
                     1);
    assert_int_equal(notify_fixture_wait(h,
                                         "SELECT count(*) FROM notify.subscriptions WHERE"
                                         " subscription_id = 'cfg-coordinator-email'"
                                         " AND NOT active",
                                         1),
                     1);
    char *case_id =
        notify_fixture_report(h, "police-ma-06", "MA-06", "Halima Tahiri", "1983-03-09");
    s_close(case_id);
    char sql[512];
    snprintf(sql, sizeof sql,
             "SELECT count(*) FROM notify.deliveries WHERE subscription_id = 'cfg-iom-webhook'"
             " AND case_id = '%s' AND state = 'delivered'",
             case_id);
    assert_int_equal(notify_fixture_wait(h, sql, 1), 1);
    size_t at[MAX_REQUESTS];
    assert_int_equal(notify_fixture_requests_at(receiver, "/hook/iom-cfg", at, MAX_REQUESTS), 1);
    notify_request_t *r = notify_receiver_request(receiver, at[0]);
    assert_true(notify_fixture_signature_ok(r, SECRET_FROM_ENV));
    notify_request_free(&r);
    assert_false(harness_log_contains(h, "notify", 0, SECRET_FROM_ENV));
    free(case_id);
}

/* A new delivery's first attempt is claimed by the consumer's transaction that made it: the
 * transfer starts at its commit, with no transaction of the sender's own in between. A receiver
 * that never answers keeps the row as that transaction left it (claimed, attempt 1), written by
 * the same transaction as the stored source event. Last: its subscription stays. */
static void test_a_new_delivery_is_claimed_by_the_transaction_that_made_it(void **state)
{
    char subscription[65], sql[768];
    notify_receiver_t *silent =
        notify_fixture_hook(h, "hotline-national", NOTIFY_RECEIVER_SILENT, 0, "claimed",
                            "case.opened", SECRET, subscription);
    char *case_id = notify_fixture_report(h, "labour-ma-06", "MA-06", "Amina Yusuf", "1992-05-14");
    assert_true(notify_receiver_wait_count(silent, 1, WAIT_MS));
    snprintf(sql, sizeof sql,
             "SELECT count(*) FROM notify.deliveries d JOIN notify.events e"
             " ON e.source_stream = d.source_stream AND e.source_seq = d.source_seq"
             " WHERE d.subscription_id = '%s' AND d.case_id = '%s' AND d.state = 'pending'"
             " AND d.attempts = 1 AND d.last_attempt_ms = d.started_ms AND d.xmin = e.xmin",
             subscription, case_id);
    assert_int_equal(harness_sql_int(h, sql), 1);
    free(case_id);
    notify_receiver_destroy(&silent);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_subscriptions_are_checked_and_authorised),
        cmocka_unit_test(test_case_opened_reaches_subscriber_as_signed_cloudevent),
        cmocka_unit_test(test_reporting_agency_hears_its_case_closed),
        cmocka_unit_test(test_agency_without_subscription_is_visibly_undeliverable),
        cmocka_unit_test(test_an_agencys_undeliverable_deliveries_are_logged_once_not_per_event),
        cmocka_unit_test(test_email_reaches_the_sink_without_identifying_data),
        cmocka_unit_test(test_retry_is_for_coordinators_and_failed_deliveries_only),
        cmocka_unit_test(test_reload_seeds_configured_subscriptions_with_secret_from_environment),
        cmocka_unit_test(test_submitted_name_appears_in_no_body_header_or_log_line),
        cmocka_unit_test(test_a_new_delivery_is_claimed_by_the_transaction_that_made_it),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
