/* Two notify instances sharing the streams' work (consumer.partitions), against real
 * PostgreSQL, nrm-intake, nrm-routing and two nrm-notify processes and a real HTTP receiver. A
 * reporting agency learnt late (a report linked to the case) must hear the outcomes of the case
 * that followed its report, even when notify applies them in an order of its own: here the
 * provider accepts the referral after the link, and notify applies routing's referral.accepted
 * before intake's case.linked. The interleavings are made by the test, never by timing: intake's
 * partition rows held from a session of the test keep case.linked back, and a trigger makes
 * every insert of deliveries wait for an advisory lock the test holds, which stops a batch in
 * the middle of its transaction.
 *
 * - A retention run while the batch giving the late reporter the kept referral.accepted is in
 *   progress does not delete that body: the delivery sends it.
 * - The batch of referral.accepted, stopped before its commit, and the batch of case.linked
 *   applied meanwhile by the other instance: the late reporter is told all the same. */
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
#define FEMALE NRM__V1__GENDER__GENDER_FEMALE
#define LEGAL_AID NRM__V1__SERVICE_TYPE__SERVICE_TYPE_LEGAL_AID
#define ACCEPT NRM__V1__REFERRAL_DECISION__REFERRAL_DECISION_ACCEPT
#define REPORTER "police-ma-04"
#define LATE_REPORTER "hotline-national"
#define PROVIDER "legal-aid-ma-04"
#define SECRET "concurrency-test-secret-0123456789"
#define PARTITIONS 2
#define KEPT_S 86400   /* notify.delivered_retention_s until a test shortens it */
#define EXPIRED_S 1    /* ... to this */
#define AGED_MS 1500   /* a body older than EXPIRED_S by a margin */
#define PAUSE_KEY 7351 /* the test's advisory lock inserts of deliveries wait for */
#define SQL_MAX 1024
#define DBNAME_MAX 64

static harness_t *h;
static notify_receiver_t *receiver;
static char dbname[DBNAME_MAX];
static PGconn *held;   /* holds intake's partition rows (s_hold_intake) */
static PGconn *paused; /* holds PAUSE_KEY (s_pause_deliveries) */

/* intake, routing and two notify instances with PARTITIONS partitions and bodies kept a day;
 * webhook subscriptions (no topics) of the reporter, the late reporter and the provider. */
static int s_setup(const char *name)
{
    h = harness_new(name);
    snprintf(dbname, sizeof dbname, "t_%s", name);
    receiver = notify_receiver_new();
    notify_fixture_settings_t settings = {
        .max_attempts = 10, .backoff_ms = 100, .max_backoff_ms = 500, .timeout_ms = 1000};
    notify_fixture_config(h, &settings, NULL);
    harness_config_set(h, "consumer.partitions", json_integer(PARTITIONS));
    harness_config_set(h, "notify.delivered_retention_s", json_integer(KEPT_S));
    if (harness_start(h, "intake", 0) != 0 || harness_start(h, "routing", 0) != 0 ||
        harness_start(h, "notify", 0) != 0 || harness_start(h, "notify", 1) != 0)
        return -1;
    const char *agencies[] = {REPORTER, LATE_REPORTER, PROVIDER};
    char url[256], id[65];
    for (size_t i = 0; i < sizeof agencies / sizeof *agencies; i++)
        notify_fixture_subscribe_ok(h, agencies[i], "webhook",
                                    notify_fixture_url(receiver, agencies[i], url), NULL, SECRET,
                                    id);
    return 0;
}

static int setup_retention(void **state)
{
    return s_setup("notify_concurrency_retention");
}

static int setup_link(void **state)
{
    return s_setup("notify_concurrency_link");
}

static int teardown(void **state)
{
    PQfinish(held); /* a test that failed half-way left them */
    PQfinish(paused);
    held = paused = NULL;
    harness_destroy(&h);
    notify_receiver_destroy(&receiver);
    return 0;
}

/* A session of the test's own on the test database (caller PQfinishes). */
static PGconn *s_session(void)
{
    const char *attrs = getenv("NRM_TEST_PGATTRS");
    char conninfo[SQL_MAX];
    snprintf(conninfo, sizeof conninfo, "host=%s port=%s dbname=%s user=postgres %s",
             getenv("NRM_TEST_PGHOST"), getenv("NRM_TEST_PGPORT"), dbname, attrs ? attrs : "");
    PGconn *c = PQconnectdb(conninfo);
    assert_int_equal(PQstatus(c), CONNECTION_OK);
    return c;
}

/* Runs sql on session c; returns the number of rows it gave. */
static int s_exec(PGconn *c, const char *sql)
{
    PGresult *res = PQexec(c, sql);
    ExecStatusType status = PQresultStatus(res);
    if (status != PGRES_TUPLES_OK && status != PGRES_COMMAND_OK)
        fprintf(stderr, "%s: %s\n", sql, PQresultErrorMessage(res));
    assert_true(status == PGRES_TUPLES_OK || status == PGRES_COMMAND_OK);
    int rows = PQntuples(res);
    PQclear(res);
    return rows;
}

/* Keeps intake's events from notify: a session of the test holds intake's partition rows
 * (notify's instances pass a held row by) until s_release_intake. */
static void s_hold_intake(void)
{
    held = s_session();
    s_exec(held, "BEGIN");
    assert_int_equal(s_exec(held, "SELECT 1 FROM notify.checkpoint_partitions"
                                  " WHERE stream = 'intake' FOR UPDATE"),
                     PARTITIONS);
}

static void s_release_intake(void)
{
    s_exec(held, "COMMIT");
    PQfinish(held);
    held = NULL;
}

/* From now on every insert of deliveries, of either instance, waits (inside its batch's
 * transaction) while a session of the test holds PAUSE_KEY; s_resume lets them go on. */
static void s_pause_deliveries(void)
{
    paused = s_session();
    char sql[SQL_MAX];
    snprintf(sql, sizeof sql, "SELECT pg_advisory_lock(%d)", PAUSE_KEY);
    s_exec(paused, sql);
    snprintf(sql, sizeof sql,
             "CREATE FUNCTION notify.test_pause() RETURNS trigger LANGUAGE plpgsql AS"
             " $$ BEGIN PERFORM pg_advisory_xact_lock_shared(%d); RETURN NULL; END $$",
             PAUSE_KEY);
    PQclear(harness_sql(h, sql));
    PQclear(harness_sql(h, "CREATE TRIGGER test_pause BEFORE INSERT ON notify.deliveries"
                           " FOR EACH STATEMENT EXECUTE FUNCTION notify.test_pause()"));
}

static void s_resume(void)
{
    PQfinish(paused); /* its advisory lock ends with the session */
    paused = NULL;
}

/* The sessions waiting for an advisory lock in mode ("ShareLock": a paused insert of
 * deliveries; "ExclusiveLock": notify's lock of a case). */
static const char *s_waiting_sql(char sql[SQL_MAX], const char *mode)
{
    snprintf(sql, SQL_MAX,
             "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
             " AND mode = '%s'",
             mode);
    return sql;
}

/* A woman of MA-04 who needs legal aid, named (her second report joins her case). */
static void s_woman(scenario_report_t *r)
{
    routing_person(r, "MA-04", 29, FEMALE, "NG", true);
    routing_person_named(r, "Chiamaka Obi-Tazi", "1995-08-21");
    routing_person_speaks(r, "en");
    routing_person_speaks(r, "fr");
    routing_person_needs(r, LEGAL_AID);
}

/* Deliveries to agency of topic about case_id in state. */
static long long s_deliveries(const char *agency, const char *topic, const char *case_id,
                              const char *state)
{
    return harness_sql_intf(h,
                            "SELECT count(*) FROM notify.deliveries WHERE agency_id = '%s'"
                            " AND topic = '%s' AND case_id = '%s' AND state = '%s'",
                            agency, topic, case_id, state);
}

/* Waits until agency's delivery of topic about case_id is delivered. */
static void s_wait_delivered(const char *agency, const char *topic, const char *case_id)
{
    char sql[SQL_MAX];
    snprintf(sql, sizeof sql,
             "SELECT count(*) FROM notify.deliveries WHERE agency_id = '%s' AND topic = '%s'"
             " AND case_id = '%s' AND state = 'delivered'",
             agency, topic, case_id);
    assert_int_equal(notify_fixture_wait(h, sql, 1), 1);
}

/* Requests the receiver got at agency's path for topic about case_id. */
static size_t s_heard(const char *agency, const char *topic, const char *case_id)
{
    return notify_fixture_heard(receiver, agency, topic, case_id, NULL, NULL);
}

/* Kept bodies of notify of topic about case_id. */
static long long s_bodies(const char *topic, const char *case_id)
{
    return harness_sql_intf(h,
                            "SELECT count(*) FROM notify.events WHERE topic = '%s'"
                            " AND case_id = '%s'",
                            topic, case_id);
}

/* The reporter's case, its referral to the provider (delivered to the provider), then the late
 * reporter's report of the same woman, linked to the case in intake and kept from notify
 * (s_hold_intake). case_id and referral: ROUTING_ID_TEXT bytes. */
static void s_case_then_held_link(char *case_id, char *referral)
{
    scenario_report_t r;
    s_woman(&r);
    assert_int_equal(routing_submit(h, &r, REPORTER, case_id), OK);
    char provider[ROUTING_ID_TEXT], linked[ROUTING_ID_TEXT];
    assert_true(routing_wait_referrals(h, case_id, 1) >= 1);
    assert_true(routing_referral(h, case_id, LEGAL_AID, 1, referral, provider));
    assert_string_equal(provider, PROVIDER);
    s_wait_delivered(PROVIDER, "referral.created", case_id);
    s_hold_intake();
    s_woman(&r);
    assert_int_equal(routing_submit(h, &r, LATE_REPORTER, linked), OK);
    assert_string_equal(linked, case_id);
}

/* The provider accepts the referral (after the link: the late reporter is to hear it). */
static void s_accept(const char *referral)
{
    Nrm__V1__Reply *reply = routing_provider_respond(h, PROVIDER, referral, ACCEPT, 0, "");
    assert_non_null(reply);
    assert_int_equal(reply->status, OK);
    nrm__v1__reply__free_unpacked(reply, NULL);
}

static void
test_a_kept_outcome_given_to_a_late_reporter_outlives_a_retention_run_meanwhile(void **state)
{
    char case_id[ROUTING_ID_TEXT], referral[ROUTING_ID_TEXT], sql[SQL_MAX];
    s_case_then_held_link(case_id, referral);
    s_accept(referral);
    /* notify applies referral.accepted first: the reporter and the provider are told, the late
     * reporter not yet known; the body is kept (an outcome of the case) */
    s_wait_delivered(REPORTER, "referral.accepted", case_id);
    s_wait_delivered(PROVIDER, "referral.accepted", case_id);
    snprintf(sql, sizeof sql,
             "SELECT count(*) FROM notify.events WHERE topic = 'referral.accepted'"
             " AND case_id = '%s' AND occurred_at_ms"
             " < (extract(epoch FROM clock_timestamp()) * 1000)::bigint - %d",
             case_id, AGED_MS);
    assert_int_equal(notify_fixture_wait(h, sql, 1), 1);

    /* case.linked: its batch reads the kept body for the late reporter, then stops before
     * writing the delivery that sends it */
    s_pause_deliveries();
    s_release_intake();
    assert_int_equal(notify_fixture_wait(h, s_waiting_sql(sql, "ShareLock"), 1), 1);
    /* meanwhile the bodies expire: the other instance's retention deletes referral.created's
     * (delivered, older than a second) and passes the one the batch is sending by */
    harness_config_set(h, "notify.delivered_retention_s", json_integer(EXPIRED_S));
    harness_reload(h, "notify", 0);
    harness_reload(h, "notify", 1);
    snprintf(sql, sizeof sql,
             "SELECT count(*) FROM notify.events WHERE topic = 'referral.created'"
             " AND case_id = '%s'",
             case_id);
    assert_int_equal(notify_fixture_wait(h, sql, 0), 0);
    assert_int_equal(s_bodies("referral.accepted", case_id), 1);

    s_resume();
    s_wait_delivered(LATE_REPORTER, "referral.accepted", case_id);
    assert_int_equal(s_heard(LATE_REPORTER, "referral.accepted", case_id), 1);
    assert_int_equal(s_deliveries(LATE_REPORTER, "referral.accepted", case_id, "failed"), 0);
}

static void
test_an_outcome_and_the_link_applied_at_once_by_two_instances_reach_the_late_reporter(void **state)
{
    char case_id[ROUTING_ID_TEXT], referral[ROUTING_ID_TEXT], sql[SQL_MAX];
    s_case_then_held_link(case_id, referral);
    /* referral.accepted's batch reads the case's reporters (the late one not known yet), then
     * stops before writing its deliveries, uncommitted */
    s_pause_deliveries();
    s_accept(referral);
    assert_int_equal(notify_fixture_wait(h, s_waiting_sql(sql, "ShareLock"), 1), 1);
    /* the other instance takes case.linked: it writes the late reporter and reads the kept
     * outcomes (the accepted one not committed yet), then stops at its own insert of
     * deliveries; or it waits for the case until the outcome's batch is done */
    s_release_intake();
    snprintf(sql, sizeof sql,
             "SELECT (count(*) FILTER (WHERE mode = 'ShareLock') = 2"
             " OR count(*) FILTER (WHERE mode = 'ExclusiveLock') = 1)::int"
             " FROM pg_locks WHERE locktype = 'advisory' AND NOT granted");
    assert_int_equal(notify_fixture_wait(h, sql, 1), 1);

    s_resume();
    s_wait_delivered(REPORTER, "referral.accepted", case_id);
    s_wait_delivered(LATE_REPORTER, "referral.accepted", case_id);
    assert_int_equal(s_heard(LATE_REPORTER, "referral.accepted", case_id), 1);
    assert_int_equal(s_heard(REPORTER, "referral.accepted", case_id), 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(
            test_a_kept_outcome_given_to_a_late_reporter_outlives_a_retention_run_meanwhile,
            setup_retention, teardown),
        cmocka_unit_test_setup_teardown(
            test_an_outcome_and_the_link_applied_at_once_by_two_instances_reach_the_late_reporter,
            setup_link, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
