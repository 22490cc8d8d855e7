/* Two notify instances consuming intake with consumer.partitions = 4 (checkpoint_partitions):
 * every event is applied exactly once (one delivery per event and subscription, each received
 * under one delivery id), the events of a case are applied in their order (a delivery's
 * started_ms is its batch transaction's time, taken once the partition's row is held), every
 * partition row and the stream's row reach the head (also across barriers: events without a
 * case_id, which hold every partition), and an instance killed while the stream
 * comes leaves its partitions to the survivor, which finishes; an event that keeps failing in
 * its partition is set aside (consumer_quarantine) and every other event is applied, also when
 * its failure arrives with the partition row's move. */
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

#define PARTITIONS 4
#define CASES 40
#define UPDATES 2  /* case.updated per case after its case.opened */
#define STREAM 200 /* cases, of 1 + UPDATES events each */
#define SECRET "partitions-test-secret-0123456789"
#define DRAIN_MS 90000
#define ID_MAX 37
#define REPORTER "police-ma-04"
#define MAX_ATTEMPTS 3
#define OTHERS 20 /* cases after the one refused */

static harness_t *h;
static notify_receiver_t *receiver;
static char subscription[65];

static int setup(void **state)
{
    h = harness_new("notify_partitions");
    receiver = notify_receiver_new();
    notify_fixture_settings_t settings = {
        .max_attempts = 5, .backoff_ms = 100, .max_backoff_ms = 500, .timeout_ms = 5000};
    notify_fixture_config(h, &settings, NULL);
    harness_config_set(h, "consumer.partitions", json_integer(PARTITIONS));
    harness_config_set(h, "consumer.max_attempts", json_integer(MAX_ATTEMPTS));
    harness_config_set(h, "consumer.retry_backoff_ms", json_integer(50));
    if (harness_start(h, "intake", 0) != 0 || harness_start(h, "notify", 0) != 0 ||
        harness_start(h, "notify", 1) != 0)
        return -1;
    char url[256];
    const char *topics[] = {"case.opened", "case.updated", NULL};
    notify_fixture_subscribe_ok(h, REPORTER, "webhook", notify_fixture_url(receiver, "p", url),
                                topics, SECRET, subscription);
    return 0;
}

static int teardown(void **state)
{
    harness_destroy(&h);
    notify_receiver_destroy(&receiver);
    return 0;
}

/* Stops notify instance i cleanly. */
static void s_stop(int i)
{
    int status = harness_signal(h, "notify", i, SIGTERM);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
}

/* Submits a report (urgency URGENT), then `updates` updates of its case that each change its
 * urgency: 1 + updates events of one case. */
static void s_case_id(int i, const char *tag, int updates, char case_id[ID_MAX])
{
    /* a date of birth of its own: intake would propose "Partition a 5" and "Partition b 5",
     * born the same day, as possible duplicates (deliveries this test does not expect) */
    static int people;
    char name[64], dob[16];
    snprintf(name, sizeof name, "Partition %s %d", tag, i);
    int n = people++;
    snprintf(dob, sizeof dob, "%d-%02d-%02d", 1960 + n / 336, 1 + n / 28 % 12, 1 + n % 28);
    scenario_report_t s;
    scenario_adult_woman(&s, "MA-04", name, dob);
    Nrm__V1__Reply *reply = harness_call(h, "intake", REPORTER, &s.request);
    assert_non_null(reply);
    assert_int_equal(reply->status, NRM__V1__STATUS__STATUS_OK);
    snprintf(case_id, ID_MAX, "%s", reply->case_ref->case_id);
    nrm__v1__reply__free_unpacked(reply, NULL);
    for (int u = 0; u < updates; u++) {
        Nrm__V1__UpdateCase up = NRM__V1__UPDATE_CASE__INIT;
        up.case_id = case_id;
        up.urgency =
            u % 2 ? NRM__V1__URGENCY__URGENCY_EMERGENCY : NRM__V1__URGENCY__URGENCY_ROUTINE;
        Nrm__V1__Request req = NRM__V1__REQUEST__INIT;
        scenario_request(&req, NRM__V1__REQUEST__BODY_UPDATE_CASE, &up);
        reply = harness_call(h, "intake", REPORTER, &req);
        assert_non_null(reply);
        assert_int_equal(reply->status, NRM__V1__STATUS__STATUS_OK);
        nrm__v1__reply__free_unpacked(reply, NULL);
    }
}

/* The same, without the case id. */
static void s_case(int i, const char *tag, int updates)
{
    char case_id[ID_MAX];
    s_case_id(i, tag, updates, case_id);
}

/* Updates the case's urgency to EMERGENCY: one case.updated. */
static void s_update(const char *case_id)
{
    Nrm__V1__UpdateCase up = NRM__V1__UPDATE_CASE__INIT;
    up.case_id = (char *)case_id;
    up.urgency = NRM__V1__URGENCY__URGENCY_EMERGENCY;
    Nrm__V1__Request req = NRM__V1__REQUEST__INIT;
    scenario_request(&req, NRM__V1__REQUEST__BODY_UPDATE_CASE, &up);
    Nrm__V1__Reply *reply = harness_call(h, "intake", REPORTER, &req);
    assert_non_null(reply);
    assert_int_equal(reply->status, NRM__V1__STATUS__STATUS_OK);
    nrm__v1__reply__free_unpacked(reply, NULL);
}

/* The coordinator registers agency i (inactive, no keys) on intake: directory.agency_upserted,
 * an event without a case_id, a barrier across the partitions. */
static void s_barrier(int i)
{
    char id[32];
    snprintf(id, sizeof id, "partition-ngo-%d", i);
    Nrm__V1__UpsertAgency u = NRM__V1__UPSERT_AGENCY__INIT;
    u.agency_id = id;
    u.type = NRM__V1__AGENCY_TYPE__AGENCY_TYPE_NGO;
    u.name = "Partner organisation";
    Nrm__V1__Request req = NRM__V1__REQUEST__INIT;
    scenario_request(&req, NRM__V1__REQUEST__BODY_UPSERT_AGENCY, &u);
    Nrm__V1__Reply *reply = harness_call(h, "intake", "coordinator", &req);
    assert_non_null(reply);
    assert_int_equal(reply->status, NRM__V1__STATUS__STATUS_OK);
    nrm__v1__reply__free_unpacked(reply, NULL);
}

/* The subscription's deliveries (all states). */
static long long s_deliveries(void)
{
    char sql[256];
    snprintf(sql, sizeof sql, "SELECT count(*) FROM notify.deliveries WHERE subscription_id = '%s'",
             subscription);
    return harness_sql_int(h, sql);
}

/* Waits until want deliveries are delivered, then asserts what every test of this file
 * asserts: one delivery per event, case order, every checkpoint row at intake's head, and the
 * receiver got each event under one delivery id. */
static void s_check_all_applied_once(long long want)
{
    char sql[512];
    snprintf(sql, sizeof sql,
             "SELECT count(*) FROM notify.deliveries WHERE subscription_id = '%s'"
             " AND state = 'delivered'",
             subscription);
    assert_int_equal(notify_fixture_wait(h, sql, want), want);
    zclock_sleep(500); /* nothing more comes */
    assert_int_equal(s_deliveries(), want);
    snprintf(sql, sizeof sql,
             "SELECT count(DISTINCT event_id) FROM notify.deliveries WHERE subscription_id = '%s'",
             subscription);
    assert_int_equal(harness_sql_int(h, sql), want);
    /* within a case, a later event was applied no earlier than the one before it */
    snprintf(sql, sizeof sql,
             "SELECT count(*) FROM (SELECT started_ms, lag(started_ms) OVER (PARTITION BY case_id"
             " ORDER BY source_seq) AS prev FROM notify.deliveries WHERE subscription_id = '%s')"
             " AS d WHERE started_ms < prev",
             subscription);
    assert_int_equal(harness_sql_int(h, sql), 0);
    long long head = harness_sql_int(h, "SELECT head FROM intake.stream_head");
    snprintf(sql, sizeof sql,
             "SELECT count(*) FROM notify.checkpoint_partitions WHERE stream = 'intake'"
             " AND partitions = %d AND seq = %lld",
             PARTITIONS, head);
    assert_int_equal(harness_wait_sql(h, sql, PARTITIONS, NOTIFY_FIXTURE_WAIT_MS), PARTITIONS);
    snprintf(sql, sizeof sql, "SELECT seq FROM notify.checkpoints WHERE stream = 'intake'");
    assert_int_equal(harness_wait_sql(h, sql, head, NOTIFY_FIXTURE_WAIT_MS), head);
    /* each event reached the receiver, a repeat (after a kill) under the same delivery id */
    assert_true(notify_receiver_wait(receiver, (size_t)want, NOTIFY_FIXTURE_WAIT_MS));
    zhash_t *by_event = zhash_new();
    zhash_autofree(by_event);
    for (size_t i = 0; i < notify_receiver_count(receiver); i++) {
        notify_request_t *r = notify_receiver_request(receiver, i);
        assert_true(notify_fixture_signature_ok(r, SECRET));
        json_error_t jerr;
        json_t *body = json_loadb(r->body, r->body_len, 0, &jerr);
        assert_non_null(body);
        const char *event = json_string_value(json_object_get(body, "id"));
        char *delivery = notify_request_header(r, "X-NRM-Delivery");
        const char *seen = zhash_lookup(by_event, event);
        if (seen)
            assert_string_equal(seen, delivery);
        else
            zhash_insert(by_event, event, delivery);
        free(delivery);
        json_decref(body);
        notify_request_free(&r);
    }
    assert_int_equal(zhash_size(by_event), want);
    zhash_destroy(&by_event);
}

static void test_two_instances_apply_each_event_once_in_case_order(void **state)
{
    s_stop(0);
    s_stop(1);
    for (int i = 0; i < CASES; i++) {
        s_case(i, "a", UPDATES);
        if (i % 10 == 5)
            s_barrier(i);
    }
    assert_int_equal(harness_start(h, "notify", 0), 0);
    assert_int_equal(harness_start(h, "notify", 1), 0);
    s_check_all_applied_once(CASES * (1 + UPDATES));
}

static void test_an_instance_killed_mid_stream_leaves_its_partitions_to_the_survivor(void **state)
{
    /* both instances apply the stream as it comes (a backlog of this size is drained by the
     * first instance before the second has started): kill one halfway, with no warning */
    long long before = s_deliveries();
    for (int i = 0; i < STREAM / 2; i++)
        s_case(i, "b", UPDATES);
    int status = harness_signal(h, "notify", 1, SIGKILL);
    assert_true(WIFSIGNALED(status));
    long long at_kill = s_deliveries();
    print_message("instance 1 killed with %lld of %d deliveries applied\n", at_kill - before,
                  STREAM * (1 + UPDATES));
    assert_true(at_kill > before);
    for (int i = STREAM / 2; i < STREAM; i++)
        s_case(i, "b", UPDATES);
    s_check_all_applied_once(before + STREAM * (1 + UPDATES));
}

static void test_an_event_failing_in_a_partition_is_set_aside_and_the_rest_goes_on(void **state)
{
    assert_int_equal(harness_start(h, "notify", 1), 0); /* the one killed before */
    long long before = s_deliveries();
    char refused[ID_MAX], sql[512];
    s_case_id(0, "c", 0, refused); /* its case.opened is delivered */
    assert_int_equal(notify_fixture_wait(h, "SELECT count(*) FROM notify.deliveries", before + 1),
                     before + 1);
    snprintf(sql, sizeof sql,
             "CREATE FUNCTION notify.test_refuse() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN"
             " IF NEW.case_id = '%s' AND NEW.topic = 'case.updated' THEN"
             " RAISE EXCEPTION 'refused by the test'; END IF; RETURN NEW; END $$",
             refused);
    PQclear(harness_sql(h, sql));
    PQclear(harness_sql(h, "CREATE TRIGGER test_refuse BEFORE INSERT ON notify.deliveries"
                           " FOR EACH ROW EXECUTE FUNCTION notify.test_refuse()"));
    s_update(refused); /* cannot be applied: set aside after MAX_ATTEMPTS */
    for (int i = 1; i <= OTHERS; i++)
        s_case(i, "c", UPDATES);
    assert_int_equal(harness_wait_sql(h,
                                      "SELECT count(*) FROM notify.consumer_quarantine WHERE"
                                      " stream = 'intake' AND topic = 'case.updated' AND"
                                      " consumer = 'intake' AND last_error LIKE 'INTERNAL%'",
                                      1, DRAIN_MS),
                     1);
    snprintf(sql, sizeof sql, "SELECT max(attempts) FROM notify.consumer_quarantine");
    assert_int_equal(harness_sql_int(h, sql), MAX_ATTEMPTS);
    /* every other event, of every partition, applied once; the rows pass the set-aside one */
    s_check_all_applied_once(before + 1 + OTHERS * (1 + UPDATES));
    PQclear(harness_sql(h, "DROP TRIGGER test_refuse ON notify.deliveries"));
}

/* The kept row of an event (notify.events) is written with the statement after the flush, the
 * partition row's move (nrm_db_exec_later): its failure arrives there and is the event's. */
static void
test_an_event_failing_at_its_partitions_move_is_set_aside_and_the_rest_goes_on(void **state)
{
    long long before = s_deliveries();
    char refused[ID_MAX], sql[512];
    s_case_id(0, "k", 0, refused);
    assert_int_equal(notify_fixture_wait(h, "SELECT count(*) FROM notify.deliveries", before + 1),
                     before + 1);
    snprintf(sql, sizeof sql,
             "CREATE FUNCTION notify.test_refuse_kept() RETURNS trigger LANGUAGE plpgsql AS $$"
             " BEGIN IF NEW.case_id = '%s' AND NEW.topic = 'case.updated' THEN"
             " RAISE EXCEPTION 'kept row refused by the test'; END IF; RETURN NEW; END $$",
             refused);
    PQclear(harness_sql(h, sql));
    PQclear(harness_sql(h, "CREATE TRIGGER test_refuse_kept BEFORE INSERT ON notify.events"
                           " FOR EACH ROW EXECUTE FUNCTION notify.test_refuse_kept()"));
    long long head = harness_sql_int(h, "SELECT head FROM intake.stream_head");
    s_update(refused); /* its kept row cannot be written: set aside after MAX_ATTEMPTS */
    for (int i = 1; i <= OTHERS; i++)
        s_case(i, "k", UPDATES);
    snprintf(sql, sizeof sql,
             "SELECT count(*) FROM notify.consumer_quarantine WHERE stream = 'intake'"
             " AND seq = %lld AND topic = 'case.updated' AND consumer = 'intake'"
             " AND attempts = %d",
             head + 1, MAX_ATTEMPTS);
    assert_int_equal(harness_wait_sql(h, sql, 1, DRAIN_MS), 1);
    s_check_all_applied_once(before + 1 + OTHERS * (1 + UPDATES));
    PQclear(harness_sql(h, "DROP TRIGGER test_refuse_kept ON notify.events"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_two_instances_apply_each_event_once_in_case_order),
        cmocka_unit_test(test_an_instance_killed_mid_stream_leaves_its_partitions_to_the_survivor),
        cmocka_unit_test(test_an_event_failing_in_a_partition_is_set_aside_and_the_rest_goes_on),
        cmocka_unit_test(
            test_an_event_failing_at_its_partitions_move_is_set_aside_and_the_rest_goes_on),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
