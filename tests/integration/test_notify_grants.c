/* Need to know, against real nrm-intake, nrm-routing, nrm-shelter and nrm-notify processes and
 * a real HTTP receiver. Notify starts with no notify.grants (the default: coordinators may
 * follow every topic, nobody else any): an NGO asking for case.* is PERMISSION_DENIED naming
 * the topics, also when a coordinator asks on its behalf; a coordinator may follow everything;
 * an agency manages its own subscriptions only; a provider's subscription without topics hears
 * its own referral's events and nothing else; a subscription with topics stored without a grant
 * hears only what concerns its agency; and after a reload granting IOM case.opened in MA-06
 * only, IOM hears the cases opened there and not elsewhere. */
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

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define OK NRM__V1__STATUS__STATUS_OK
#define DENIED NRM__V1__STATUS__STATUS_PERMISSION_DENIED
#define FEMALE NRM__V1__GENDER__GENDER_FEMALE
#define LEGAL_AID NRM__V1__SERVICE_TYPE__SERVICE_TYPE_LEGAL_AID
#define PROVIDER "legal-aid-ma-04"       /* legal aid in MA-04 */
#define OTHER_PROVIDER "legal-aid-ma-06" /* legal aid in MA-06 */
#define NGO "ngo-ma-07"
#define FOLLOWER "iom-ma"
#define SECRET "grants-test-secret-0123456789abcdef"
#define SQL_MAX 1024
#define URL_MAX 256

static harness_t *h;
static notify_receiver_t *receiver;

static int setup(void **state)
{
    h = harness_new("notify_grants");
    receiver = notify_receiver_new();
    notify_fixture_settings_t settings = {
        .max_attempts = 5, .backoff_ms = 100, .max_backoff_ms = 400, .timeout_ms = 1000};
    notify_fixture_config(h, &settings, NULL);
    harness_config_set(h, "notify.grants", json_null()); /* the default */
    const char *services[] = {"intake", "routing", "shelter", "notify"};
    for (size_t i = 0; i < sizeof services / sizeof *services; i++)
        if (harness_start(h, services[i], 0) != 0)
            return -1;
    return 0;
}

static int teardown(void **state)
{
    harness_destroy(&h);
    notify_receiver_destroy(&receiver);
    return 0;
}

/* Asserts that sender's subscription for agency (NULL: itself) to topics is refused with
 * PERMISSION_DENIED on field, and that nothing was stored for the agency. */
static void s_denied(const char *sender, const char *agency, const char *const *topics,
                     const char *field)
{
    char url[URL_MAX], sql[SQL_MAX];
    Nrm__V1__Reply *reply =
        notify_fixture_subscribe(h, sender, agency, "webhook",
                                 notify_fixture_url(receiver, "denied", url), topics, SECRET, NULL);
    assert_non_null(reply);
    assert_int_equal(reply->status, DENIED);
    assert_string_equal(reply->error_field, field);
    nrm__v1__reply__free_unpacked(reply, NULL);
    snprintf(sql, sizeof sql, "SELECT count(*) FROM notify.subscriptions WHERE agency_id = '%s'",
             agency ? agency : sender);
    assert_int_equal(harness_sql_int(h, sql), 0);
}

/* A woman in region who needs legal aid (routed to that region's legal aid office). */
static void s_report_legal_aid(const char *region, char case_id[ROUTING_ID_TEXT])
{
    scenario_report_t r;
    routing_person(&r, region, 31, FEMALE, "NG", true);
    routing_person_speaks(&r, "en");
    routing_person_speaks(&r, "fr");
    routing_person_needs(&r, LEGAL_AID);
    assert_int_equal(routing_submit(h, &r, "police-ma-04", case_id), OK);
}

/* A person reported in region with no needs (a case.opened and nothing routed). */
static void s_report_plain(const char *region, char case_id[ROUTING_ID_TEXT])
{
    scenario_report_t r;
    routing_person(&r, region, 40, FEMALE, "NG", true);
    assert_int_equal(routing_submit(h, &r, "police-ma-04", case_id), OK);
}

/* How many deliveries agency has matching the SQL condition cond (on notify.deliveries). */
static long long s_deliveries(const char *agency, const char *cond)
{
    char sql[SQL_MAX];
    snprintf(sql, sizeof sql,
             "SELECT count(*) FROM notify.deliveries WHERE agency_id = '%s' AND (%s)", agency,
             cond);
    return harness_sql_int(h, sql);
}

/* Waits until agency has a delivery of topic about the case (any state). Streams are applied
 * in order, so every earlier event of the same stream has been applied by then. */
static void s_wait_delivery(const char *agency, const char *topic, const char *case_id)
{
    char sql[SQL_MAX];
    snprintf(sql, sizeof sql,
             "SELECT count(*) FROM notify.deliveries WHERE agency_id = '%s' AND topic = '%s'"
             " AND case_id = '%s'",
             agency, topic, case_id);
    assert_int_equal(notify_fixture_wait(h, sql, 1), 1);
}

static void test_an_ngo_asking_for_case_topics_is_denied_naming_topics(void **state)
{
    const char *cases[] = {"case.", NULL};
    s_denied(NGO, NULL, cases, "upsert_subscription.topics");
    const char *opened[] = {"case.opened", NULL};
    s_denied(NGO, NULL, opened, "upsert_subscription.topics");
    /* the grant is the subscribing agency's: a coordinator asking for it changes nothing */
    s_denied("coordinator", NGO, cases, "upsert_subscription.topics");
}

static void test_a_coordinator_may_follow_every_topic(void **state)
{
    char url[URL_MAX], id[65];
    const char *everything[] = {"case.", "referral.", "shelter.", NULL};
    notify_fixture_subscribe_ok(h, "coordinator", "webhook",
                                notify_fixture_url(receiver, "coordinator", url), everything,
                                SECRET, id);
}

static void test_an_agency_manages_its_own_subscriptions_only(void **state)
{
    s_denied("police-ma-04", NGO, NULL, "upsert_subscription.agency_id");
    char url[URL_MAX], id[65];
    /* a coordinator may, within the agency's grants (none: no topics) */
    Nrm__V1__Reply *reply = notify_fixture_subscribe(
        h, "coordinator", NGO, "webhook", notify_fixture_url(receiver, NGO, url), NULL, SECRET, id);
    assert_int_equal(reply->status, OK);
    nrm__v1__reply__free_unpacked(reply, NULL);
}

static void test_a_providers_channel_hears_its_own_referral_and_nothing_else(void **state)
{
    char url[URL_MAX], id[65], sql[SQL_MAX];
    notify_fixture_subscribe_ok(h, PROVIDER, "webhook", notify_fixture_url(receiver, PROVIDER, url),
                                NULL, SECRET, id);
    char own[ROUTING_ID_TEXT], other[ROUTING_ID_TEXT], referral[ROUTING_ID_TEXT];
    char provider[ROUTING_ID_TEXT];
    s_report_legal_aid("MA-06", other);
    s_report_legal_aid("MA-04", own);
    assert_true(routing_wait_referrals(h, own, 1) >= 1);
    assert_true(routing_referral(h, own, LEGAL_AID, 1, referral, provider));
    assert_string_equal(provider, PROVIDER);
    snprintf(sql, sizeof sql,
             "SELECT count(*) FROM notify.deliveries WHERE subscription_id = '%s'"
             " AND case_id = '%s' AND topic = 'referral.created' AND state = 'delivered'",
             id, own);
    assert_int_equal(notify_fixture_wait(h, sql, 1), 1);
    /* both cases' events are applied: the other referral (earlier on routing's stream) and
     * both case.opened (intake's, the coordinator hears them) */
    s_wait_delivery(OTHER_PROVIDER, "referral.created", other);
    s_wait_delivery("coordinator", "case.opened", own);
    /* nothing about the other case, nothing but its referral about its own */
    snprintf(sql, sizeof sql, "case_id <> '%s' OR topic <> 'referral.created'", own);
    assert_int_equal(s_deliveries(PROVIDER, sql), 0);
    assert_int_equal(s_deliveries(OTHER_PROVIDER, "topic = 'referral.created'"), 1);
}

static void test_topics_stored_without_a_grant_hear_only_what_concerns_the_agency(void **state)
{
    /* a row written before grants existed (or whose grant a reload withdrew) */
    char url[URL_MAX], sql[SQL_MAX];
    snprintf(sql, sizeof sql,
             "INSERT INTO notify.subscriptions (subscription_id, agency_id, channel, address,"
             " topics, origin) VALUES ('ungranted-hook', '%s', 'webhook', '%s',"
             " '{case.,referral.}', 'api')",
             OTHER_PROVIDER, notify_fixture_url(receiver, OTHER_PROVIDER, url));
    PQclear(harness_sql(h, sql));
    char plain[ROUTING_ID_TEXT], own[ROUTING_ID_TEXT];
    s_report_plain("MA-06", plain);
    s_report_legal_aid("MA-06", own);
    assert_true(routing_wait_referrals(h, own, 1) >= 1);
    snprintf(sql, sizeof sql,
             "SELECT count(*) FROM notify.deliveries WHERE subscription_id = 'ungranted-hook'"
             " AND case_id = '%s' AND topic = 'referral.created'",
             own);
    assert_int_equal(notify_fixture_wait(h, sql, 1), 1);
    s_wait_delivery("coordinator", "case.opened", own); /* after the plain one on intake's */
    snprintf(sql, sizeof sql,
             "subscription_id = 'ungranted-hook' AND (case_id <> '%s'"
             " OR topic <> 'referral.created')",
             own);
    assert_int_equal(s_deliveries(OTHER_PROVIDER, sql), 0);
    /* the coordinator's case.* subscription did hear both cases opened */
    snprintf(sql, sizeof sql, "topic = 'case.opened' AND case_id IN ('%s', '%s')", plain, own);
    assert_int_equal(s_deliveries("coordinator", sql), 2);
}

/* Rewrites the configuration's notify.grants to grants (stolen) and reloads notify (SIGHUP),
 * waiting until FOLLOWER's case.opened subscription is accepted (the reload took effect). */
static void s_grant_and_reload(json_t *grants, char id[65])
{
    char path[512], url[URL_MAX];
    snprintf(path, sizeof path, "%s/config.json", harness_dir(h));
    json_error_t jerr;
    json_t *config = json_load_file(path, 0, &jerr);
    assert_non_null(config);
    json_object_set_new(json_object_get(config, "notify"), "grants", grants);
    assert_int_equal(json_dump_file(config, path, JSON_INDENT(1)), 0);
    json_decref(config);
    harness_signal(h, "notify", 0, SIGHUP);
    const char *opened[] = {"case.opened", NULL};
    bool accepted = false;
    for (int i = 0; i < 100 && !accepted; i++) {
        Nrm__V1__Reply *reply = notify_fixture_subscribe(
            h, FOLLOWER, NULL, "webhook", notify_fixture_url(receiver, FOLLOWER, url), opened,
            SECRET, id);
        accepted = reply && reply->status == OK;
        if (reply)
            nrm__v1__reply__free_unpacked(reply, NULL);
        if (!accepted)
            zclock_sleep(50);
    }
    assert_true(accepted);
}

static void test_a_regional_grant_delivers_only_its_regions_events(void **state)
{
    char id[65], sql[SQL_MAX];
    s_grant_and_reload(json_pack("[{s:s, s:[s]}, {s:s, s:[s], s:[s]}]", "agency_type",
                                 "COORDINATOR", "topics", "", "agency_id", FOLLOWER, "topics",
                                 "case.opened", "regions", "MA-06"),
                       id);
    char elsewhere[ROUTING_ID_TEXT], inside[ROUTING_ID_TEXT];
    s_report_plain("MA-01", elsewhere);
    s_report_plain("MA-06", inside);
    snprintf(sql, sizeof sql,
             "SELECT count(*) FROM notify.deliveries WHERE subscription_id = '%s'"
             " AND case_id = '%s' AND topic = 'case.opened' AND state = 'delivered'",
             id, inside);
    assert_int_equal(notify_fixture_wait(h, sql, 1), 1);
    /* intake's stream is applied in order: the earlier report was seen and not delivered */
    snprintf(sql, sizeof sql, "case_id = '%s'", elsewhere);
    assert_int_equal(s_deliveries(FOLLOWER, sql), 0);
    assert_int_equal(s_deliveries("coordinator", sql), 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_an_ngo_asking_for_case_topics_is_denied_naming_topics),
        cmocka_unit_test(test_a_coordinator_may_follow_every_topic),
        cmocka_unit_test(test_an_agency_manages_its_own_subscriptions_only),
        cmocka_unit_test(test_a_providers_channel_hears_its_own_referral_and_nothing_else),
        cmocka_unit_test(test_topics_stored_without_a_grant_hear_only_what_concerns_the_agency),
        cmocka_unit_test(test_a_regional_grant_delivers_only_its_regions_events),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
