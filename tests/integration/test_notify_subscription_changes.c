/* A delivery keeps the agency and channel it was made for, against real PostgreSQL, real
 * nrm-intake and nrm-notify processes, real HTTP receivers and an SMTP sink on loopback. Each
 * test makes one delivery whose first attempt is answered 503, changes its subscription while
 * the retry waits (the backoff is a minute), then makes the retry due at once: a new address on
 * the same channel gets it; a subscription switched to email, moved to another agency, retired
 * or no longer following the topic it had the delivery for sends nothing and the delivery is
 * dead-lettered at once with the reason, and so is one owed by a grant a reload withdrew (what
 * concerns the agency is still sent); an operator's retry of such a dead letter is refused
 * until the cause is undone. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <czmq.h>

#include "harness.h"
#include "notify_fixture.h"
#include "notify_sinks.h"
#include "routing_scenario.h"
#include "scenario.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define OK NRM__V1__STATUS__STATUS_OK
#define SECRET "changing-subscription-secret-0123456789"
#define BACKOFF_MS 60000 /* a retry waits 30-60 s: the test makes it due itself */
#define GAUGE_REFRESH_MS 100
#define SQL_MAX 1024
#define ID_MAX 65
#define TOPIC "case.opened"
#define REASON_CHANNEL "not sent: the subscription now uses another channel"
#define REASON_MOVED "not sent: the subscription now belongs to another agency"
#define REASON_RETIRED "not sent: the subscription was retired"
#define REASON_TOPIC "not sent: the subscription no longer follows this topic"
#define REASON_UNGRANTED "not sent: no grant of the agency covers this event any more"
#define RELOADED "configuration reloaded"

static harness_t *h;
static notify_smtp_t *smtp;

static int setup(void **state)
{
    h = harness_new("notify_subscription_changes");
    smtp = notify_smtp_new();
    notify_fixture_settings_t settings = {.max_attempts = 5,
                                          .backoff_ms = BACKOFF_MS,
                                          .max_backoff_ms = BACKOFF_MS,
                                          .timeout_ms = 2000,
                                          .smtp_url = notify_smtp_url(smtp)};
    notify_fixture_config(h, &settings, NULL);
    harness_config_set(h, "metrics_refresh_ms", json_integer(GAUGE_REFRESH_MS));
    if (harness_start(h, "intake", 0) != 0 || harness_start(h, "notify", 0) != 0)
        return -1;
    return 0;
}

static int teardown(void **state)
{
    harness_destroy(&h);
    notify_smtp_destroy(&smtp);
    return 0;
}

/* Upserts subscription id as sender (for agency, following topic), asserting OK. */
static void s_upsert_following(const char *sender, const char *id, const char *agency,
                               const char *channel, const char *address, const char *topic)
{
    Nrm__V1__UpsertSubscription u = NRM__V1__UPSERT_SUBSCRIPTION__INIT;
    char *topics[] = {(char *)topic};
    u.subscription_id = (char *)id;
    u.agency_id = (char *)agency;
    u.channel = (char *)channel;
    u.address = (char *)address;
    u.secret = "";
    u.topics = topics;
    u.n_topics = 1;
    Nrm__V1__Request req = NRM__V1__REQUEST__INIT;
    scenario_request(&req, NRM__V1__REQUEST__BODY_UPSERT_SUBSCRIPTION, &u);
    Nrm__V1__Reply *reply = harness_call(h, "notify", sender, &req);
    assert_non_null(reply);
    assert_int_equal(reply->status, OK);
    nrm__v1__reply__free_unpacked(reply, NULL);
}

/* Upserts subscription id as sender (for agency, following TOPIC), asserting OK. */
static void s_upsert(const char *sender, const char *id, const char *agency, const char *channel,
                     const char *address)
{
    s_upsert_following(sender, id, agency, channel, address, TOPIC);
}

/* Waits until the one delivery of subscription about the case's event topic has had its first
 * attempt answered 503 and waits for its retry. Its id into delivery (37 bytes). */
static void s_attempt_failed(const char *subscription, const char *case_id, const char *topic,
                             char delivery[37])
{
    char sql[SQL_MAX];
    snprintf(sql, sizeof sql,
             "SELECT count(*) FROM notify.deliveries WHERE subscription_id = '%s'"
             " AND case_id = '%s' AND topic = '%s' AND state = 'pending' AND attempts = 1"
             " AND claim_id IS NULL AND last_error = 'HTTP 503'",
             subscription, case_id, topic);
    assert_int_equal(notify_fixture_wait(h, sql, 1), 1);
    snprintf(sql, sizeof sql,
             "SELECT delivery_id FROM notify.deliveries WHERE subscription_id = '%s'"
             " AND case_id = '%s' AND topic = '%s'",
             subscription, case_id, topic);
    PGresult *res = harness_sql(h, sql);
    assert_int_equal(PQntuples(res), 1);
    snprintf(delivery, 37, "%s", PQgetvalue(res, 0, 0));
    PQclear(res);
}

/* A report of a new case (heard by subscriptions following TOPIC); waits until the one delivery
 * of subscription has had its first attempt answered 503 and waits for its retry. Its id into
 * delivery (37 bytes). */
static void s_first_attempt_failed(const char *subscription, const char *name, char delivery[37])
{
    char *case_id = notify_fixture_report(h, "police-ma-04", "MA-04", name, "1992-03-14");
    s_attempt_failed(subscription, case_id, TOPIC, delivery);
    free(case_id);
}

/* Waits until delivery is delivered at its second attempt. */
static void s_delivered_at_second_attempt(const char *delivery)
{
    char sql[SQL_MAX];
    snprintf(sql, sizeof sql,
             "SELECT count(*) FROM notify.deliveries WHERE delivery_id = '%s'"
             " AND state = 'delivered' AND attempts = 2",
             delivery);
    assert_int_equal(notify_fixture_wait(h, sql, 1), 1);
}

/* The retry of delivery falls due now instead of in half a minute or more. */
static void s_retry_due_now(const char *delivery)
{
    assert_int_equal(harness_sql_intf(h,
                                      "WITH d AS (UPDATE notify.deliveries SET next_attempt_ms = 0"
                                      " WHERE delivery_id = '%s' AND state = 'pending'"
                                      " AND claim_id IS NULL RETURNING 1) SELECT count(*) FROM d",
                                      delivery),
                     1);
}

/* Waits until delivery is dead-lettered with reason, having had its one (refused) attempt. */
static void s_dead_lettered(const char *delivery, const char *reason)
{
    char sql[SQL_MAX];
    snprintf(sql, sizeof sql,
             "SELECT count(*) FROM notify.deliveries WHERE delivery_id = '%s' AND state = 'failed'"
             " AND last_error = '%s' AND attempts = 1 AND finished_ms > 0 AND claim_id IS NULL",
             delivery, reason);
    assert_int_equal(notify_fixture_wait(h, sql, 1), 1);
}

/* The notification.failed events of notify's stream about delivery, each with reason. */
static int s_failed_events(const char *delivery, const char *reason)
{
    Nrm__V1__Event **events = NULL;
    size_t n = harness_fetch_all(h, "notify", &events);
    int count = 0;
    for (size_t i = 0; i < n; i++) {
        const Nrm__V1__NotificationFailed *f =
            events[i]->body_case == NRM__V1__EVENT__BODY_NOTIFICATION_FAILED
                ? events[i]->notification_failed
                : NULL;
        if (f && strcmp(f->delivery_id, delivery) == 0) {
            assert_string_equal(f->last_error, reason);
            assert_int_equal(f->attempts, 1);
            count++;
        }
        nrm__v1__event__free_unpacked(events[i], NULL);
    }
    free(events);
    return count;
}

/* RetryDelivery of delivery as sender; returns the reply (caller frees). */
static Nrm__V1__Reply *s_retry(const char *sender, const char *delivery)
{
    Nrm__V1__RetryDelivery retry = NRM__V1__RETRY_DELIVERY__INIT;
    retry.delivery_id = (char *)delivery;
    Nrm__V1__Request req = NRM__V1__REQUEST__INIT;
    scenario_request(&req, NRM__V1__REQUEST__BODY_RETRY_DELIVERY, &retry);
    Nrm__V1__Reply *reply = harness_call(h, "notify", sender, &req);
    assert_non_null(reply);
    return reply;
}

/* Asserts that sender's RetryDelivery of dead letter delivery is FAILED_PRECONDITION naming it,
 * and that the delivery stayed failed and was not retried. */
static void s_retry_refused(const char *sender, const char *delivery)
{
    Nrm__V1__Reply *reply = s_retry(sender, delivery);
    assert_int_equal(reply->status, NRM__V1__STATUS__STATUS_FAILED_PRECONDITION);
    assert_string_equal(reply->error_field, "retry_delivery.delivery_id");
    nrm__v1__reply__free_unpacked(reply, NULL);
    assert_int_equal(harness_sql_intf(h,
                                      "SELECT count(*) FROM notify.deliveries WHERE delivery_id"
                                      " = '%s' AND state = 'failed' AND retries = 0",
                                      delivery),
                     1);
}

/* A failing receiver and hotline-national's new webhook subscription to it (id into
 * subscription). */
static notify_receiver_t *s_failing_hook(const char *suffix, char subscription[ID_MAX])
{
    return notify_fixture_hook(h, "hotline-national", NOTIFY_RECEIVER_FAIL, 0, suffix, TOPIC,
                               SECRET, subscription);
}

/* hotline-national's delivery, dead-lettered once the coordinator moved its subscription to
 * iom-ma (at receiver moved_to); its id into delivery. Returns the first receiver (caller
 * destroys). */
static notify_receiver_t *s_dead_after_move(notify_receiver_t *moved_to, const char *name,
                                            char delivery[37])
{
    char subscription[ID_MAX], url[256];
    notify_receiver_t *first = s_failing_hook("moved", subscription);
    s_first_attempt_failed(subscription, name, delivery);
    s_upsert("coordinator", subscription, "iom-ma", "webhook",
             notify_fixture_url(moved_to, "iom", url));
    s_retry_due_now(delivery);
    s_dead_lettered(delivery, REASON_MOVED);
    return first;
}

static void test_a_pending_delivery_follows_its_subscription_to_a_new_address(void **state)
{
    char subscription[ID_MAX], delivery[37], url[256];
    notify_receiver_t *old = s_failing_hook("old", subscription);
    notify_receiver_t *fresh = notify_receiver_new();
    s_first_attempt_failed(subscription, "Ngozi Adeyemi", delivery);
    s_upsert("hotline-national", subscription, "hotline-national", "webhook",
             notify_fixture_url(fresh, "new", url));
    s_retry_due_now(delivery);

    s_delivered_at_second_attempt(delivery);
    assert_int_equal(notify_receiver_count(fresh), 1);
    notify_request_t *r = notify_receiver_request(fresh, 0);
    char *id = notify_request_header(r, "X-NRM-Delivery");
    assert_string_equal(id, delivery);
    assert_true(notify_fixture_signature_ok(r, SECRET)); /* the stored secret still signs */
    assert_int_equal(notify_receiver_count(old), 1);
    free(id);
    notify_request_free(&r);
    notify_receiver_destroy(&fresh);
    notify_receiver_destroy(&old);
}

static void
test_a_pending_webhook_whose_subscription_became_email_is_dead_lettered_unsent(void **state)
{
    static const char mailbox[] = "duty@hotline.example.invalid";
    char subscription[ID_MAX], delivery[37];
    notify_receiver_t *receiver = s_failing_hook("to-email", subscription);
    s_first_attempt_failed(subscription, "Fatima Zahra Bennani", delivery);
    s_upsert("hotline-national", subscription, "hotline-national", "email", mailbox);
    s_retry_due_now(delivery);

    s_dead_lettered(delivery, REASON_CHANNEL);
    assert_false(notify_smtp_saw(smtp, mailbox));
    assert_int_equal(notify_smtp_count(smtp), 0);
    assert_int_equal(notify_receiver_count(receiver), 1); /* the first attempt only */
    assert_int_equal(s_failed_events(delivery, REASON_CHANNEL), 1);
    notify_receiver_destroy(&receiver);
}

static void test_a_pending_delivery_never_reaches_the_agency_its_subscription_moved_to(void **state)
{
    char delivery[37];
    notify_receiver_t *iom = notify_receiver_new(); /* iom-ma's receiver, answering 204 */
    notify_receiver_t *hotline = s_dead_after_move(iom, "Aicha Ouedraogo", delivery);

    assert_int_equal(notify_receiver_count(iom), 0);
    assert_int_equal(notify_receiver_count(hotline), 1);
    assert_int_equal(s_failed_events(delivery, REASON_MOVED), 1);
    assert_int_equal(
        harness_sql_intf(h,
                         "SELECT count(*) FROM notify.deliveries"
                         " WHERE delivery_id = '%s' AND agency_id = 'hotline-national'",
                         delivery),
        1);
    notify_receiver_destroy(&hotline);
    notify_receiver_destroy(&iom);
}

static void test_a_pending_delivery_of_a_retired_subscription_is_not_sent(void **state)
{
    static const char id[] = "cfg-police-ma-06-hook";
    char url[256], delivery[37], sql[SQL_MAX];
    notify_receiver_t *receiver = notify_receiver_new();
    notify_receiver_set_mode(receiver, NOTIFY_RECEIVER_FAIL, 0);
    harness_config_set(h, "subscriptions",
                       json_pack("[{s:s, s:s, s:s, s:s, s:[s], s:s}]", "subscription_id", id,
                                 "agency_id", "police-ma-06", "channel", "webhook", "address",
                                 notify_fixture_url(receiver, "retired", url), "topics", TOPIC,
                                 "secret", SECRET));
    harness_reload(h, "notify", 0);
    snprintf(sql, sizeof sql,
             "SELECT count(*) FROM notify.subscriptions WHERE subscription_id = '%s' AND active",
             id);
    assert_int_equal(notify_fixture_wait(h, sql, 1), 1);
    s_first_attempt_failed(id, "Mariam Traore", delivery);
    /* the configuration no longer has it: the reload retires it */
    harness_config_set(h, "subscriptions", json_array());
    harness_reload(h, "notify", 0);
    assert_int_equal(notify_fixture_wait(h, sql, 0), 0);
    s_retry_due_now(delivery);

    s_dead_lettered(delivery, REASON_RETIRED);
    assert_int_equal(notify_receiver_count(receiver), 1);
    assert_int_equal(s_failed_events(delivery, REASON_RETIRED), 1);
    notify_receiver_destroy(&receiver);
}

static void
test_retrying_a_dead_letter_whose_subscription_moved_is_a_failed_precondition(void **state)
{
    char delivery[37];
    notify_receiver_t *iom = notify_receiver_new();
    notify_receiver_t *hotline = s_dead_after_move(iom, "Zainab Kamara", delivery);

    s_retry_refused("coordinator", delivery);
    assert_int_equal(notify_receiver_count(iom), 0);
    notify_receiver_destroy(&hotline);
    notify_receiver_destroy(&iom);
}

/* police-ma-06 reports a case its subscription hears by topic (case.opened) and closes it: the
 * case.closed concerns it as the reporting agency. Both first attempts fail; then its
 * subscription is made to follow case.updated only and its receiver answers again. */
static void test_a_subscription_no_longer_following_a_topic_is_not_sent_what_it_followed(void **s)
{
    char subscription[ID_MAX], opened[37], closed[37], url[256];
    notify_receiver_t *receiver = notify_fixture_hook(h, "police-ma-06", NOTIFY_RECEIVER_FAIL, 0,
                                                      "topic", TOPIC, SECRET, subscription);
    char *case_id =
        notify_fixture_report(h, "police-ma-06", "MA-06", "Esther Mensah", "1990-07-02");
    s_attempt_failed(subscription, case_id, TOPIC, opened);
    assert_int_equal(routing_close_case(h, "coordinator", case_id, "reintegrated"), OK);
    s_attempt_failed(subscription, case_id, "case.closed", closed);
    notify_receiver_set_mode(receiver, NOTIFY_RECEIVER_ACCEPT, 0);
    s_upsert_following("police-ma-06", subscription, "police-ma-06", "webhook",
                       notify_fixture_url(receiver, "topic", url), "case.updated");
    s_retry_due_now(opened);
    s_retry_due_now(closed);

    s_dead_lettered(opened, REASON_TOPIC);
    s_delivered_at_second_attempt(closed); /* what concerns the agency does not need a topic */
    assert_int_equal(s_failed_events(opened, REASON_TOPIC), 1);
    assert_int_equal(notify_receiver_count(receiver), 3); /* two refused attempts, case.closed */
    free(case_id);
    notify_receiver_destroy(&receiver);
}

static void test_a_pending_delivery_follows_a_subscription_that_widened_its_topic(void **state)
{
    char subscription[ID_MAX], delivery[37], url[256];
    notify_receiver_t *receiver = s_failing_hook("widened", subscription);
    s_first_attempt_failed(subscription, "Grace Owusu", delivery);
    notify_receiver_set_mode(receiver, NOTIFY_RECEIVER_ACCEPT, 0);
    s_upsert_following("hotline-national", subscription, "hotline-national", "webhook",
                       notify_fixture_url(receiver, "widened", url), "case.");
    s_retry_due_now(delivery);

    s_delivered_at_second_attempt(delivery);
    assert_int_equal(notify_receiver_count(receiver), 2);
    notify_receiver_destroy(&receiver);
}

static void
test_retrying_a_dead_letter_of_a_topic_no_longer_followed_is_a_failed_precondition(void **state)
{
    char subscription[ID_MAX], delivery[37], url[256];
    notify_receiver_t *receiver = s_failing_hook("narrowed", subscription);
    s_first_attempt_failed(subscription, "Halima Sesay", delivery);
    s_upsert_following("hotline-national", subscription, "hotline-national", "webhook",
                       notify_fixture_url(receiver, "narrowed", url), "case.closed");
    s_retry_due_now(delivery);
    s_dead_lettered(delivery, REASON_TOPIC);

    s_retry_refused("hotline-national", delivery);
    assert_int_equal(notify_receiver_count(receiver), 1);
    notify_receiver_destroy(&receiver);
}

/* Sets notify.grants to grants (stolen) and reloads notify, waiting until it has taken them. */
static void s_reload_grants(json_t *grants)
{
    int before = harness_log_lines(h, "notify", 0, RELOADED, NULL);
    harness_config_set(h, "notify.grants", grants);
    harness_reload(h, "notify", 0);
    for (int i = 0; i < 200 && harness_log_lines(h, "notify", 0, RELOADED, NULL) == before; i++)
        zclock_sleep(25);
    assert_int_equal(harness_log_lines(h, "notify", 0, RELOADED, NULL), before + 1);
}

/* The test grants without hotline-national's (case.): it may follow no topic any more. */
static json_t *s_grants_without_the_hotline(void)
{
    json_t *grants = notify_fixture_grants();
    size_t i;
    json_t *g;
    json_array_foreach(grants, i, g)
    {
        const char *agency = json_string_value(json_object_get(g, "agency_id"));
        if (agency && strcmp(agency, "hotline-national") == 0) {
            json_array_remove(grants, i);
            break;
        }
    }
    return grants;
}

/* After a test that withdrew hotline-national's grant, pass or fail: the test grants again. */
static int s_restore_grants(void **state)
{
    s_reload_grants(notify_fixture_grants());
    return 0;
}

/* hotline-national reports a case its subscription hears by topic (case.opened, under its grant
 * of case.) and the coordinator closes it: the case.closed concerns it as the reporting agency.
 * Both first attempts fail; then a reload withdraws its grant and its receiver answers again. */
static void test_a_delivery_owed_by_a_grant_a_reload_withdrew_is_not_sent(void **state)
{
    char subscription[ID_MAX], opened[37], closed[37];
    notify_receiver_t *receiver = s_failing_hook("ungranted", subscription);
    char *case_id =
        notify_fixture_report(h, "hotline-national", "MA-04", "Adwoa Boateng", "1994-11-20");
    s_attempt_failed(subscription, case_id, TOPIC, opened);
    assert_int_equal(routing_close_case(h, "coordinator", case_id, "reintegrated"), OK);
    s_attempt_failed(subscription, case_id, "case.closed", closed);
    s_reload_grants(s_grants_without_the_hotline());
    notify_receiver_set_mode(receiver, NOTIFY_RECEIVER_ACCEPT, 0);
    s_retry_due_now(opened);
    s_retry_due_now(closed);

    s_dead_lettered(opened, REASON_UNGRANTED);
    s_delivered_at_second_attempt(closed); /* what concerns the agency needs no grant */
    assert_int_equal(s_failed_events(opened, REASON_UNGRANTED), 1);
    assert_int_equal(notify_receiver_count(receiver), 3); /* two refused attempts, case.closed */
    free(case_id);
    notify_receiver_destroy(&receiver);
}

static void test_retrying_a_dead_letter_no_grant_covers_waits_for_the_grant(void **state)
{
    char subscription[ID_MAX], delivery[37], sql[SQL_MAX];
    notify_receiver_t *receiver = s_failing_hook("regranted", subscription);
    s_first_attempt_failed(subscription, "Efua Asante", delivery);
    s_reload_grants(s_grants_without_the_hotline());
    s_retry_due_now(delivery);
    s_dead_lettered(delivery, REASON_UNGRANTED);

    s_retry_refused("coordinator", delivery);
    /* granted again, the same retry is taken and sent */
    s_reload_grants(notify_fixture_grants());
    notify_receiver_set_mode(receiver, NOTIFY_RECEIVER_ACCEPT, 0);
    Nrm__V1__Reply *reply = s_retry("coordinator", delivery);
    assert_int_equal(reply->status, OK);
    nrm__v1__reply__free_unpacked(reply, NULL);
    snprintf(sql, sizeof sql,
             "SELECT count(*) FROM notify.deliveries WHERE delivery_id = '%s'"
             " AND state = 'delivered' AND retries = 1 AND attempts = 1",
             delivery);
    assert_int_equal(notify_fixture_wait(h, sql, 1), 1);
    assert_int_equal(notify_receiver_count(receiver), 2);
    notify_receiver_destroy(&receiver);
}

/* The dead letters above were made by the claim's own statement: the deliveries gauge (kept
 * counts, notify/003) still agrees with a recount in every state. */
static void test_the_deliveries_gauge_agrees_with_a_recount_after_unsent_dead_letters(void **s)
{
    static const char *const states[] = {"pending", "delivered", "failed", "undeliverable"};
    assert_true(harness_sql_int(h, "SELECT count(*) FROM notify.deliveries"
                                   " WHERE last_error LIKE 'not sent: %'") > 0);
    for (size_t i = 0; i < sizeof states / sizeof states[0]; i++) {
        long long want = -1, got = -2;
        for (int k = 0; k < 50 && got != want; k++) {
            want = harness_sql_intf(h, "SELECT count(*) FROM notify.deliveries WHERE state = '%s'",
                                    states[i]);
            got = harness_gauge(h, "notify", "deliveries", "state", states[i]);
            if (got != want)
                zclock_sleep(GAUGE_REFRESH_MS);
        }
        assert_int_equal(got, want);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_a_pending_delivery_follows_its_subscription_to_a_new_address),
        cmocka_unit_test(
            test_a_pending_webhook_whose_subscription_became_email_is_dead_lettered_unsent),
        cmocka_unit_test(
            test_a_pending_delivery_never_reaches_the_agency_its_subscription_moved_to),
        cmocka_unit_test(test_a_pending_delivery_of_a_retired_subscription_is_not_sent),
        cmocka_unit_test(
            test_retrying_a_dead_letter_whose_subscription_moved_is_a_failed_precondition),
        cmocka_unit_test(
            test_a_subscription_no_longer_following_a_topic_is_not_sent_what_it_followed),
        cmocka_unit_test(test_a_pending_delivery_follows_a_subscription_that_widened_its_topic),
        cmocka_unit_test(
            test_retrying_a_dead_letter_of_a_topic_no_longer_followed_is_a_failed_precondition),
        cmocka_unit_test_teardown(test_a_delivery_owed_by_a_grant_a_reload_withdrew_is_not_sent,
                                  s_restore_grants),
        cmocka_unit_test_teardown(test_retrying_a_dead_letter_no_grant_covers_waits_for_the_grant,
                                  s_restore_grants),
        cmocka_unit_test(test_the_deliveries_gauge_agrees_with_a_recount_after_unsent_dead_letters),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
