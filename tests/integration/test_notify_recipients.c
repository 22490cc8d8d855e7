/* Who hears what, against real nrm-intake, nrm-routing, nrm-shelter and nrm-notify processes and
 * a real HTTP receiver: referral outcomes reach the provider, the reporting agencies and the
 * coordinator as services/notify/DASHBOARDS.md says; shelter allocations and releases reach the
 * operator (and the reporter for allocations); an agency whose report is linked later hears only
 * what follows its report; a notify killed while routing keeps producing catches up and delivers
 * every event once; an agency concerned without a subscription is recorded undeliverable; a case,
 * its linked report, a new case manager and their outcomes consumed by notify in one batch give
 * each agency what it would hear one event at a time.
 * Deadlines are shortened through routing.deadlines_s; nothing stands in for a service. */
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
#include <sys/wait.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define OK NRM__V1__STATUS__STATUS_OK
#define FEMALE NRM__V1__GENDER__GENDER_FEMALE
#define MALE NRM__V1__GENDER__GENDER_MALE
#define LEGAL_AID NRM__V1__SERVICE_TYPE__SERVICE_TYPE_LEGAL_AID
#define PSYCHOSOCIAL NRM__V1__SERVICE_TYPE__SERVICE_TYPE_PSYCHOSOCIAL
#define SHELTER NRM__V1__SERVICE_TYPE__SERVICE_TYPE_SHELTER
#define ROUTINE NRM__V1__URGENCY__URGENCY_ROUTINE
#define ACCEPT NRM__V1__REFERRAL_DECISION__REFERRAL_DECISION_ACCEPT
#define DECLINE NRM__V1__REFERRAL_DECISION__REFERRAL_DECISION_DECLINE
#define NOT_ELIGIBLE NRM__V1__DECLINE_REASON__DECLINE_REASON_NOT_ELIGIBLE
#define REPORTER "police-ma-04"
#define LATE_REPORTER "hotline-national"
#define OPERATOR "shelter-op-rabat"
#define FOLLOWER "iom-ma" /* follows every referral.* topic */
#define NEW_MANAGER "ngo-ma-07"
#define UNSUBSCRIBED_REPORTER "police-ma-06"
#define UNSUBSCRIBED_PROVIDER "psy-ngo-ma-06"
#define SECRET "recipients-test-secret-0123456789"
#define SQL_MAX 1024
#define ID_MAX 64

static harness_t *h;
static notify_receiver_t *receiver;

static int setup(void **state)
{
    h = harness_new("notify_recipients");
    receiver = notify_receiver_new();
    notify_fixture_settings_t settings = {
        .max_attempts = 10, .backoff_ms = 100, .max_backoff_ms = 500, .timeout_ms = 1000};
    notify_fixture_config(h, &settings, NULL);
    harness_config_set(h, "routing.deadlines_s.URGENT", json_integer(2));
    harness_config_set(h, "routing.deadlines_s.EMERGENCY", json_integer(1));
    harness_config_set(h, "routing.expiry_check_ms", json_integer(200));
    const char *services[] = {"intake", "routing", "shelter", "notify"};
    for (size_t i = 0; i < sizeof services / sizeof *services; i++)
        if (harness_start(h, services[i], 0) != 0)
            return -1;
    const char *agencies[] = {REPORTER,
                              LATE_REPORTER,
                              OPERATOR,
                              "coordinator",
                              "legal-aid-ma-04",
                              "legal-clinic-national",
                              "women-legal-network-national"};
    char url[256], id[65];
    for (size_t i = 0; i < sizeof agencies / sizeof *agencies; i++)
        notify_fixture_subscribe_ok(h, agencies[i], "webhook",
                                    notify_fixture_url(receiver, agencies[i], url), NULL, SECRET,
                                    id);
    const char *referrals[] = {"referral.", NULL};
    notify_fixture_subscribe_ok(h, FOLLOWER, "webhook", notify_fixture_url(receiver, FOLLOWER, url),
                                referrals, SECRET, id);
    return 0;
}

static int teardown(void **state)
{
    harness_destroy(&h);
    notify_receiver_destroy(&receiver);
    return 0;
}

/* The SQL counting agency's deliveries of topic about the case in state ("": any), into sql. */
static const char *s_sql(char sql[SQL_MAX], const char *agency, const char *topic,
                         const char *case_id, const char *state)
{
    snprintf(sql, SQL_MAX,
             "SELECT count(*) FROM notify.deliveries WHERE agency_id = '%s' AND topic = '%s'"
             " AND case_id = '%s' AND ('%s' = '' OR state = '%s')",
             agency, topic, case_id, state, state);
    return sql;
}

static long long s_rows(const char *agency, const char *topic, const char *case_id,
                        const char *state)
{
    char sql[SQL_MAX];
    return harness_sql_int(h, s_sql(sql, agency, topic, case_id, state));
}

/* Requests the receiver got at agency's path for topic about the case, each signed. */
static size_t s_heard(const char *agency, const char *topic, const char *case_id)
{
    bool all_signed = false;
    size_t n = notify_fixture_heard(receiver, agency, topic, case_id, SECRET, &all_signed);
    assert_true(all_signed);
    return n;
}

/* Asserts agency heard topic about the case exactly once: one delivered row, one request. */
static void s_hears(const char *agency, const char *topic, const char *case_id)
{
    char sql[SQL_MAX];
    assert_int_equal(notify_fixture_wait(h, s_sql(sql, agency, topic, case_id, "delivered"), 1), 1);
    assert_int_equal(s_rows(agency, topic, case_id, ""), 1);
    assert_int_equal(s_heard(agency, topic, case_id), 1);
}

/* Asserts agency has no delivery of topic about the case (call once the event was processed). */
static void s_not_told(const char *agency, const char *topic, const char *case_id)
{
    assert_int_equal(s_rows(agency, topic, case_id, ""), 0);
    assert_int_equal(s_heard(agency, topic, case_id), 0);
}

/* A Nigerian woman in Rabat speaking English and French who needs legal aid. */
static void s_woman_needing_legal_aid(scenario_report_t *s, Nrm__V1__Urgency urgency)
{
    routing_person(s, "MA-04", 27, FEMALE, "NG", true);
    routing_person_speaks(s, "en");
    routing_person_speaks(s, "fr");
    routing_person_needs(s, LEGAL_AID);
    s->report.urgency = urgency;
}

/* Waits for attempt of service for the case; asserts its provider; fills referral_id. */
static void s_attempt(const char *case_id, Nrm__V1__ServiceType service, int attempt,
                      const char *provider, char referral_id[ROUTING_ID_TEXT])
{
    char chosen[ROUTING_ID_TEXT];
    assert_true(routing_wait_referrals(h, case_id, attempt) >= attempt);
    assert_true(routing_referral(h, case_id, service, attempt, referral_id, chosen));
    assert_string_equal(chosen, provider);
}

/* Asserts a reply came and is OK, and frees it. */
static void s_ok(Nrm__V1__Reply *reply)
{
    assert_non_null(reply);
    assert_int_equal(reply->status, OK);
    nrm__v1__reply__free_unpacked(reply, NULL);
}

static void test_created_reaches_provider_accepted_and_completed_also_reporter(void **s)
{
    scenario_report_t r;
    s_woman_needing_legal_aid(&r, ROUTINE);
    char case_id[ROUTING_ID_TEXT], referral[ROUTING_ID_TEXT];
    assert_int_equal(routing_submit(h, &r, REPORTER, case_id), OK);
    s_attempt(case_id, LEGAL_AID, 1, "legal-aid-ma-04", referral);
    s_hears("legal-aid-ma-04", "referral.created", case_id);
    s_not_told(REPORTER, "referral.created", case_id);
    s_ok(routing_provider_respond(h, "legal-aid-ma-04", referral, ACCEPT, 0, ""));
    s_hears("legal-aid-ma-04", "referral.accepted", case_id);
    s_hears(REPORTER, "referral.accepted", case_id);
    s_ok(routing_provider_complete(h, "legal-aid-ma-04", referral, true, ""));
    s_hears("legal-aid-ma-04", "referral.completed", case_id);
    s_hears(REPORTER, "referral.completed", case_id);
    /* the coordinator is told of none of it */
    const char *topics[] = {"referral.created", "referral.accepted", "referral.completed"};
    for (size_t i = 0; i < sizeof topics / sizeof *topics; i++)
        s_not_told("coordinator", topics[i], case_id);
}

static void test_expired_and_unroutable_reach_the_coordinator(void **s)
{
    scenario_report_t r;
    s_woman_needing_legal_aid(&r, NRM__V1__URGENCY__URGENCY_URGENT); /* 2 s to answer */
    char case_id[ROUTING_ID_TEXT], first[ROUTING_ID_TEXT], second[ROUTING_ID_TEXT];
    char third[ROUTING_ID_TEXT];
    assert_int_equal(routing_submit(h, &r, REPORTER, case_id), OK);
    s_attempt(case_id, LEGAL_AID, 1, "legal-aid-ma-04", first);
    s_ok(routing_provider_respond(h, "legal-aid-ma-04", first, DECLINE, NOT_ELIGIBLE, ""));
    s_attempt(case_id, LEGAL_AID, 2, "legal-clinic-national", second);
    s_ok(routing_provider_respond(h, "legal-clinic-national", second, DECLINE, NOT_ELIGIBLE, ""));
    s_attempt(case_id, LEGAL_AID, 3, "women-legal-network-national", third);
    /* nobody answers the third: it expires, and nobody is left */
    s_hears("women-legal-network-national", "referral.expired", case_id);
    s_hears("coordinator", "referral.expired", case_id);
    s_not_told(REPORTER, "referral.expired", case_id);
    s_hears("coordinator", "referral.unroutable", case_id);
    s_hears(REPORTER, "referral.unroutable", case_id);
    s_not_told("women-legal-network-national", "referral.unroutable", case_id);
    /* declines concern the provider only */
    s_hears("legal-aid-ma-04", "referral.declined", case_id);
    s_not_told("coordinator", "referral.declined", case_id);
    s_not_told(REPORTER, "referral.declined", case_id);
}

/* A second report of a person whose name is spelt differently (same date of birth and
 * nationality) is proposed as a duplicate of the open case: the coordinator, who decides, hears
 * it; the reporting agency does not. */
static void test_possible_duplicate_reaches_the_coordinator(void **s)
{
    scenario_report_t first, second;
    scenario_adult_woman(&first, "MA-04", "Fatima Zahra Idrissi", "1991-02-03");
    scenario_adult_woman(&second, "MA-04", "Fatma Zahra Idrissi", "1991-02-03");
    first.report.urgency = second.report.urgency = ROUTINE; /* no referral expires meanwhile */
    char older[ROUTING_ID_TEXT], newer[ROUTING_ID_TEXT];
    assert_int_equal(routing_submit(h, &first, REPORTER, older), OK);
    assert_int_equal(routing_submit(h, &second, REPORTER, newer), OK);
    assert_string_not_equal(older, newer);
    s_hears("coordinator", "case.possible_duplicate", newer);
    s_not_told(REPORTER, "case.possible_duplicate", newer);
}

static void test_allocation_reaches_operator_and_reporter_release_only_operator(void **s)
{
    scenario_report_t r;
    routing_person(&r, "MA-04", 31, FEMALE, "NG", true);
    routing_person_speaks(&r, "en");
    routing_person_needs(&r, SHELTER);
    char case_id[ROUTING_ID_TEXT];
    assert_int_equal(routing_submit(h, &r, REPORTER, case_id), OK);
    s_hears(OPERATOR, "shelter.allocated", case_id);
    s_hears(REPORTER, "shelter.allocated", case_id);
    char sql[SQL_MAX];
    snprintf(sql, sizeof sql,
             "SELECT a.allocation_id, s.operator_agency_id FROM shelter.allocations a JOIN"
             " shelter.shelters s USING (shelter_id) WHERE a.case_id = '%s'",
             case_id);
    PGresult *res = harness_sql(h, sql);
    assert_int_equal(PQntuples(res), 1);
    assert_string_equal(PQgetvalue(res, 0, 1), OPERATOR);
    Nrm__V1__ReleaseBed release = NRM__V1__RELEASE_BED__INIT;
    release.allocation_id = PQgetvalue(res, 0, 0);
    release.reason = "departed";
    Nrm__V1__Request req = NRM__V1__REQUEST__INIT;
    scenario_request(&req, NRM__V1__REQUEST__BODY_RELEASE_BED, &release);
    s_ok(harness_call(h, "shelter", OPERATOR, &req));
    PQclear(res);
    s_hears(OPERATOR, "shelter.released", case_id);
    s_not_told(REPORTER, "shelter.released", case_id);
}

static void test_linked_reporter_hears_only_outcomes_after_its_report(void **s)
{
    scenario_report_t r;
    s_woman_needing_legal_aid(&r, ROUTINE);
    routing_person_named(&r, "Grace Adeyemi-Benali", "1996-04-17");
    char case_id[ROUTING_ID_TEXT], linked[ROUTING_ID_TEXT], referral[ROUTING_ID_TEXT];
    assert_int_equal(routing_submit(h, &r, REPORTER, case_id), OK);
    s_attempt(case_id, LEGAL_AID, 1, "legal-aid-ma-04", referral);
    s_ok(routing_provider_respond(h, "legal-aid-ma-04", referral, ACCEPT, 0, ""));
    s_hears(REPORTER, "referral.accepted", case_id);
    /* the hotline reports the same woman: her report joins the case */
    s_woman_needing_legal_aid(&r, ROUTINE);
    routing_person_named(&r, "Grace Adeyemi-Benali", "1996-04-17");
    assert_int_equal(routing_submit(h, &r, LATE_REPORTER, linked), OK);
    assert_string_equal(linked, case_id);
    s_ok(routing_provider_complete(h, "legal-aid-ma-04", referral, true, ""));
    s_hears(REPORTER, "referral.completed", case_id);
    s_hears(LATE_REPORTER, "referral.completed", case_id);
    s_not_told(LATE_REPORTER, "referral.accepted", case_id);
    s_not_told(LATE_REPORTER, "referral.created", case_id);
}

/* Reassigns the case to manager as the coordinator. */
static void s_reassign(const char *case_id, const char *manager)
{
    Nrm__V1__ReassignCase a = NRM__V1__REASSIGN_CASE__INIT;
    a.case_id = (char *)case_id;
    a.case_manager_agency_id = (char *)manager;
    Nrm__V1__Request req = NRM__V1__REQUEST__INIT;
    scenario_request(&req, NRM__V1__REQUEST__BODY_REASSIGN_CASE, &a);
    s_ok(harness_call(h, "intake", "coordinator", &req));
}

/* Closes the case as the coordinator. */
static void s_close(const char *case_id)
{
    Nrm__V1__CloseCase c = NRM__V1__CLOSE_CASE__INIT;
    c.case_id = (char *)case_id;
    c.reason = "reintegrated";
    Nrm__V1__Request req = NRM__V1__REQUEST__INIT;
    scenario_request(&req, NRM__V1__REQUEST__BODY_CLOSE_CASE, &c);
    s_ok(harness_call(h, "intake", "coordinator", &req));
}

static void
test_a_case_its_late_reporters_and_outcomes_in_one_batch_reach_whom_they_concern(void **s)
{
    char url[256], id[65];
    notify_fixture_subscribe_ok(h, NEW_MANAGER, "webhook",
                                notify_fixture_url(receiver, NEW_MANAGER, url), NULL, SECRET, id);
    /* notify is away while the case lives: it consumes all of it at once when it comes back */
    assert_true(WIFSIGNALED(harness_signal(h, "notify", 0, SIGKILL)));
    scenario_report_t r;
    s_woman_needing_legal_aid(&r, ROUTINE);
    routing_person_named(&r, "Amina Okafor-Idrissi", "1994-09-02");
    char case_id[ROUTING_ID_TEXT], linked[ROUTING_ID_TEXT], referral[ROUTING_ID_TEXT];
    assert_int_equal(routing_submit(h, &r, REPORTER, case_id), OK);
    s_attempt(case_id, LEGAL_AID, 1, "legal-aid-ma-04", referral);
    s_ok(routing_provider_respond(h, "legal-aid-ma-04", referral, ACCEPT, 0, ""));

    /* the hotline reports the same woman after the acceptance, then the case changes hands
     * and is closed (which revokes the referral): intake's stream holds the case's whole life in a
     * row */
    s_woman_needing_legal_aid(&r, ROUTINE);
    routing_person_named(&r, "Amina Okafor-Idrissi", "1994-09-02");
    assert_int_equal(routing_submit(h, &r, LATE_REPORTER, linked), OK);
    assert_string_equal(linked, case_id);
    s_reassign(case_id, NEW_MANAGER);
    s_close(case_id);
    assert_int_equal(harness_start(h, "notify", 0), 0);

    /* the first reporter hears every outcome; the late one and the new manager what followed
     * their arrival; the provider its referral only */
    const char *after[] = {"case.manager_changed", "case.closed"};
    for (size_t i = 0; i < sizeof after / sizeof *after; i++) {
        s_hears(REPORTER, after[i], case_id);
        s_hears(LATE_REPORTER, after[i], case_id);
        s_hears(NEW_MANAGER, after[i], case_id);
        s_not_told("legal-aid-ma-04", after[i], case_id);
    }
    s_hears(REPORTER, "referral.accepted", case_id);
    s_hears("legal-aid-ma-04", "referral.accepted", case_id);
    s_hears("legal-aid-ma-04", "referral.created", case_id);
    /* closing the case revokes the referral: its provider (from the referral's creation) and
     * every reporting agency of the case by then hear it */
    s_hears("legal-aid-ma-04", "referral.revoked", case_id);
    s_hears(REPORTER, "referral.revoked", case_id);
    s_hears(LATE_REPORTER, "referral.revoked", case_id);
    s_hears(NEW_MANAGER, "referral.revoked", case_id);
    s_not_told(LATE_REPORTER, "referral.accepted", case_id);
    s_not_told(NEW_MANAGER, "referral.accepted", case_id);
    s_not_told(REPORTER, "referral.created", case_id);
    /* nothing else about the case for them, and nothing left to send */
    const char *agencies[] = {REPORTER, LATE_REPORTER, NEW_MANAGER, "legal-aid-ma-04"};
    const long long expected[] = {4, 3, 3, 3};
    char sql[SQL_MAX];
    for (size_t i = 0; i < sizeof agencies / sizeof *agencies; i++) {
        snprintf(sql, sizeof sql,
                 "SELECT count(*) FROM notify.deliveries WHERE agency_id = '%s'"
                 " AND case_id = '%s'",
                 agencies[i], case_id);
        assert_int_equal(harness_sql_int(h, sql), expected[i]);
    }
    snprintf(sql, sizeof sql,
             "SELECT count(*) FROM notify.deliveries WHERE case_id = '%s' AND state = 'pending'",
             case_id);
    assert_int_equal(notify_fixture_wait(h, sql, 0), 0);
}

static void test_concerned_agency_without_subscription_is_undeliverable(void **s)
{
    scenario_report_t r;
    routing_person(&r, "MA-06", 35, MALE, "MA", true);
    routing_person_speaks(&r, "ar");
    routing_person_needs(&r, PSYCHOSOCIAL);
    r.report.urgency = ROUTINE;
    char case_id[ROUTING_ID_TEXT], referral[ROUTING_ID_TEXT];
    assert_int_equal(routing_submit(h, &r, UNSUBSCRIBED_REPORTER, case_id), OK);
    s_attempt(case_id, PSYCHOSOCIAL, 1, UNSUBSCRIBED_PROVIDER, referral);
    s_ok(routing_provider_respond(h, UNSUBSCRIBED_PROVIDER, referral, ACCEPT, 0, ""));
    char sql[SQL_MAX];
    const char *rows[][2] = {{UNSUBSCRIBED_PROVIDER, "referral.created"},
                             {UNSUBSCRIBED_PROVIDER, "referral.accepted"},
                             {UNSUBSCRIBED_REPORTER, "referral.accepted"}};
    for (size_t i = 0; i < sizeof rows / sizeof *rows; i++) {
        snprintf(sql, sizeof sql,
                 "SELECT count(*) FROM notify.deliveries WHERE agency_id = '%s' AND topic = '%s'"
                 " AND case_id = '%s' AND state = 'undeliverable' AND channel = ''"
                 " AND subscription_id = '' AND attempts = 0",
                 rows[i][0], rows[i][1], case_id);
        assert_int_equal(notify_fixture_wait(h, sql, 1), 1);
        assert_int_equal(s_rows(rows[i][0], rows[i][1], case_id, ""), 1);
    }
    /* each one is a notification.failed with attempts 0 on notify's stream */
    Nrm__V1__Event **events = NULL;
    size_t n = harness_fetch_all(h, "notify", &events), failed = 0;
    for (size_t i = 0; i < n; i++) {
        if (events[i]->body_case == NRM__V1__EVENT__BODY_NOTIFICATION_FAILED &&
            strcmp(events[i]->case_id, case_id) == 0) {
            assert_int_equal(events[i]->notification_failed->attempts, 0);
            assert_non_null(strstr(events[i]->notification_failed->last_error, "no subscription"));
            failed++;
        }
        nrm__v1__event__free_unpacked(events[i], NULL);
    }
    free(events);
    assert_int_equal(failed, 3);
    /* and a subscription following the topic is served all the same */
    s_hears(FOLLOWER, "referral.created", case_id);
    s_hears(FOLLOWER, "referral.accepted", case_id);
}

/* Submits n reports of men in Casablanca needing psychosocial support; case ids into ids. */
static void s_psychosocial_reports(int n, char ids[][ROUTING_ID_TEXT])
{
    for (int i = 0; i < n; i++) {
        scenario_report_t r;
        routing_person(&r, "MA-06", 30 + i, MALE, "MA", true);
        routing_person_speaks(&r, "ar");
        routing_person_needs(&r, PSYCHOSOCIAL);
        r.report.urgency = ROUTINE;
        assert_int_equal(routing_submit(h, &r, UNSUBSCRIBED_REPORTER, ids[i]), OK);
    }
}

static void test_notify_killed_while_routing_produces_delivers_every_event_once(void **s)
{
    enum { BEFORE = 4, DURING = 6 };
    char before[BEFORE][ROUTING_ID_TEXT], during[DURING][ROUTING_ID_TEXT];
    notify_receiver_set_mode(receiver, NOTIFY_RECEIVER_SLOW, 300);
    size_t received = notify_receiver_count(receiver);
    s_psychosocial_reports(BEFORE, before);
    assert_true(notify_receiver_wait_count(receiver, received + 1, NOTIFY_FIXTURE_WAIT_MS));
    assert_true(WIFSIGNALED(harness_signal(h, "notify", 0, SIGKILL)));
    /* routing goes on while notify is away: new referrals, declines and their follow-ups */
    s_psychosocial_reports(DURING, during);
    for (int i = 0; i < BEFORE; i++) {
        char referral[ROUTING_ID_TEXT], provider[ROUTING_ID_TEXT];
        assert_int_equal(routing_wait_referrals(h, before[i], 1), 1);
        assert_true(routing_referral(h, before[i], PSYCHOSOCIAL, 1, referral, provider));
        s_ok(routing_provider_respond(h, provider, referral, DECLINE, NOT_ELIGIBLE, ""));
        assert_int_equal(routing_wait_referrals(h, before[i], 2), 2);
    }
    for (int i = 0; i < DURING; i++)
        assert_int_equal(routing_wait_referrals(h, during[i], 1), 1);
    /* every referral event routing committed, once its sequencer has numbered it */
    assert_int_equal(harness_wait_sql(h, "SELECT count(*) FROM routing.outbox WHERE seq IS NULL", 0,
                                      ROUTING_WAIT_MS),
                     0);
    Nrm__V1__Event **events = NULL;
    size_t n = harness_fetch_all(h, "routing", &events);
    long long referral_events = 0;
    for (size_t i = 0; i < n; i++) {
        referral_events += strncmp(events[i]->topic, "referral.", 9) == 0;
        nrm__v1__event__free_unpacked(events[i], NULL);
    }
    free(events);
    notify_receiver_set_mode(receiver, NOTIFY_RECEIVER_ACCEPT, 0);
    assert_int_equal(harness_start(h, "notify", 0), 0);

    /* the follower has exactly one delivered row per referral event of routing's stream */
    char sql[SQL_MAX];
    snprintf(sql, sizeof sql,
             "SELECT count(DISTINCT source_seq) FROM notify.deliveries WHERE agency_id = '%s'"
             " AND source_stream = 'routing' AND topic LIKE 'referral.%%' AND state = 'delivered'",
             FOLLOWER);
    assert_int_equal(notify_fixture_wait(h, sql, referral_events), referral_events);
    snprintf(sql, sizeof sql, "SELECT count(*) FROM notify.deliveries WHERE agency_id = '%s'",
             FOLLOWER);
    assert_int_equal(harness_sql_int(h, sql), referral_events);
    assert_int_equal(notify_fixture_wait(h,
                                         "SELECT count(*) FROM notify.deliveries"
                                         " WHERE state IN ('pending', 'failed')",
                                         0),
                     0);
    /* what routing did while notify was away reached the follower (a repeat keeps its id) */
    for (int i = 0; i < DURING; i++) {
        assert_int_equal(s_rows(FOLLOWER, "referral.created", during[i], "delivered"), 1);
        assert_true(s_heard(FOLLOWER, "referral.created", during[i]) >= 1);
    }
    for (int i = 0; i < BEFORE; i++) {
        assert_int_equal(s_rows(FOLLOWER, "referral.declined", before[i], "delivered"), 1);
        assert_true(s_heard(FOLLOWER, "referral.declined", before[i]) >= 1);
    }

    /* the receiver saw each delivery id, one per (path, event), repeats only under that id */
    zhash_t *by_delivery = zhash_new(), *by_event = zhash_new();
    zhash_autofree(by_delivery);
    zhash_autofree(by_event);
    size_t total = notify_receiver_count(receiver), duplicates = 0;
    for (size_t i = 0; i < total; i++) {
        notify_request_t *r = notify_receiver_request(receiver, i);
        char *delivery = notify_request_header(r, "X-NRM-Delivery");
        assert_non_null(delivery);
        json_error_t jerr;
        json_t *body = json_loadb(r->body, r->body_len, 0, &jerr);
        assert_non_null(body);
        char key[512];
        snprintf(key, sizeof key, "%s %s", r->path, json_string_value(json_object_get(body, "id")));
        const char *seen_key = zhash_lookup(by_delivery, delivery);
        const char *seen_delivery = zhash_lookup(by_event, key);
        if (seen_key) {
            duplicates++;
            assert_string_equal(seen_key, key);
        } else {
            assert_null(seen_delivery);
            zhash_insert(by_delivery, delivery, key);
            zhash_insert(by_event, key, delivery);
        }
        json_decref(body);
        free(delivery);
        notify_request_free(&r);
    }
    PGresult *res = harness_sql(h, "SELECT delivery_id::text FROM notify.deliveries"
                                   " WHERE state = 'delivered'");
    assert_int_equal((size_t)PQntuples(res), zhash_size(by_delivery));
    for (int i = 0; i < PQntuples(res); i++)
        assert_non_null(zhash_lookup(by_delivery, PQgetvalue(res, i, 0)));
    PQclear(res);
    print_message("%zu requests, %zu delivery ids, %zu repeated under their own id\n", total,
                  zhash_size(by_delivery), duplicates);
    zhash_destroy(&by_delivery);
    zhash_destroy(&by_event);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_created_reaches_provider_accepted_and_completed_also_reporter),
        cmocka_unit_test(test_expired_and_unroutable_reach_the_coordinator),
        cmocka_unit_test(test_possible_duplicate_reaches_the_coordinator),
        cmocka_unit_test(test_allocation_reaches_operator_and_reporter_release_only_operator),
        cmocka_unit_test(test_linked_reporter_hears_only_outcomes_after_its_report),
        cmocka_unit_test(
            test_a_case_its_late_reporters_and_outcomes_in_one_batch_reach_whom_they_concern),
        cmocka_unit_test(test_concerned_agency_without_subscription_is_undeliverable),
        cmocka_unit_test(test_notify_killed_while_routing_produces_delivers_every_event_once),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
