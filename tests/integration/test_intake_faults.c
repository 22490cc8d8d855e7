/* Faults: intake killed right after acknowledging, PostgreSQL restarted under a running
 * intake, many concurrent submitters, two instances sharing one stream. Nothing acknowledged
 * is lost, nothing is published twice, sequences stay dense. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "harness.h"
#include "nrm_client.h"
#include "nrm_time.h"
#include "scenario.h"

#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SUBMITTERS 8
#define REPORTS_EACH 40
#define WAIT_MS 10000
#define OUTAGE_CALL_MS 3000

static harness_t *h;

static int setup(void **state)
{
    h = harness_new("intake_faults");
    return harness_start(h, "intake", 0);
}

static int teardown(void **state)
{
    harness_destroy(&h);
    return 0;
}

/* Submits a report with a unique name; returns the reply (caller frees) or NULL. */
static Nrm__V1__Reply *s_submit(nrm_client_t *client, int n, int timeout_ms)
{
    char name[64];
    snprintf(name, sizeof name, "Fault Test Person %d", n);
    scenario_report_t s;
    scenario_adult_woman(&s, "MA-06", name, "1991-03-03");
    nrm_error_t err;
    return nrm_client_call(client, &s.request, timeout_ms, &err);
}

/* Reads the whole intake stream; asserts seqs are exactly 1..n; returns n and the events. */
static size_t s_dense_stream(Nrm__V1__Event ***events)
{
    size_t n = harness_fetch_all(h, "intake", events);
    for (size_t i = 0; i < n; i++)
        assert_int_equal((*events)[i]->seq, (int64_t)i + 1);
    return n;
}

static void s_free_events(Nrm__V1__Event **events, size_t n)
{
    for (size_t i = 0; i < n; i++)
        nrm__v1__event__free_unpacked(events[i], NULL);
    free(events);
}

/* How many events of the stream concern case_id with the given topic. */
static int s_count(Nrm__V1__Event **events, size_t n, const char *case_id, const char *topic)
{
    int count = 0;
    for (size_t i = 0; i < n; i++)
        count += strcmp(events[i]->case_id, case_id) == 0 && strcmp(events[i]->topic, topic) == 0;
    return count;
}

static void test_kill_just_after_ack_loses_nothing(void **state)
{
    /* a subscriber reads what exists, then goes away */
    Nrm__V1__Event **before;
    size_t seen = s_dense_stream(&before);
    s_free_events(before, seen);

    nrm_client_t *client = harness_client_new(h, "intake", 0, "police-ma-06");
    Nrm__V1__Reply *reply = s_submit(client, 1, WAIT_MS);
    assert_non_null(reply);
    assert_int_equal(reply->status, NRM__V1__STATUS__STATUS_OK);
    harness_signal(h, "intake", 0, SIGKILL); /* right after the acknowledgement */
    nrm_client_destroy(&client);
    assert_int_equal(harness_start(h, "intake", 0), 0);

    /* the acknowledged report is in the stream exactly once; the subscriber catches up from
     * where it stopped with no gap and no duplicate */
    Nrm__V1__Event **events;
    size_t n = s_dense_stream(&events);
    assert_true(n > seen);
    assert_int_equal(s_count(events, n, reply->case_ref->case_id, "case.opened"), 1);
    harness_sub_t *sub = harness_subscribe(h, "intake", 0);
    client = harness_client_new(h, "intake", 0, "police-ma-06");
    Nrm__V1__Reply *later = s_submit(client, 2, WAIT_MS);
    assert_int_equal(later->status, NRM__V1__STATUS__STATUS_OK);
    Nrm__V1__Event *live = harness_sub_next(sub, "case.opened", WAIT_MS);
    assert_non_null(live);
    assert_string_equal(live->case_id, later->case_ref->case_id);
    assert_int_equal(live->seq, (int64_t)n + 1);
    nrm__v1__event__free_unpacked(live, NULL);
    s_free_events(events, n);
    nrm__v1__reply__free_unpacked(reply, NULL);
    nrm__v1__reply__free_unpacked(later, NULL);
    nrm_client_destroy(&client);
    harness_sub_destroy(&sub);
}

static void test_database_restart_gives_unavailable_then_recovers(void **state)
{
    nrm_client_t *client = harness_client_new(h, "intake", 0, "police-ma-06");
    long long cases_before = harness_sql_int(h, "SELECT count(*) FROM intake.cases");
    harness_pg_stop(h);
    /* an idle service notices the outage by itself: its health says so within seconds */
    bool database_ok = true;
    int64_t until = nrm_mono_ms() + WAIT_MS;
    while (database_ok && nrm_mono_ms() < until) {
        Nrm__V1__Ping ping = NRM__V1__PING__INIT;
        Nrm__V1__Request preq = NRM__V1__REQUEST__INIT;
        scenario_request(&preq, NRM__V1__REQUEST__BODY_PING, &ping);
        Nrm__V1__Reply *pong = harness_call(h, "intake", "coordinator", &preq);
        assert_non_null(pong);
        database_ok = pong->pong->database_ok;
        nrm__v1__reply__free_unpacked(pong, NULL);
        if (database_ok)
            zclock_sleep(200);
    }
    assert_false(database_ok);
    for (int i = 0; i < 3; i++) {
        Nrm__V1__Reply *reply = s_submit(client, 100 + i, OUTAGE_CALL_MS);
        assert_non_null(reply); /* the service answers, it does not hang or crash */
        assert_int_equal(reply->status, NRM__V1__STATUS__STATUS_UNAVAILABLE);
        nrm__v1__reply__free_unpacked(reply, NULL);
    }
    harness_pg_start(h);
    /* no restart of intake: it reconnects by itself */
    Nrm__V1__Reply *reply = NULL;
    int64_t deadline = nrm_mono_ms() + WAIT_MS;
    while (nrm_mono_ms() < deadline) {
        reply = s_submit(client, 200, OUTAGE_CALL_MS);
        if (reply && reply->status == NRM__V1__STATUS__STATUS_OK)
            break;
        if (reply)
            nrm__v1__reply__free_unpacked(reply, NULL);
        reply = NULL;
        zclock_sleep(200);
    }
    assert_non_null(reply);
    /* nothing from the outage was stored; the new report was, and is published */
    assert_int_equal(harness_sql_int(h, "SELECT count(*) FROM intake.cases"), cases_before + 1);
    char sql[256];
    snprintf(sql, sizeof sql,
             "SELECT count(*) FROM intake.outbox WHERE seq IS NOT NULL AND"
             " position('%s'::bytea in payload) > 0",
             reply->case_ref->case_id);
    assert_int_equal(harness_wait_sql(h, sql, 1, WAIT_MS), 1);
    nrm__v1__reply__free_unpacked(reply, NULL);
    nrm_client_destroy(&client);
}

typedef struct {
    int index;
    int first_person; /* people are numbered from here: new people, new cases */
    const char *endpoint;
    nrm_curve_t curve; /* the hotline's keys, made before the threads start */
    char case_ids[REPORTS_EACH][40];
    int acknowledged;
} s_submitter_t;

static void *s_submitter(void *arg)
{
    s_submitter_t *self = arg;
    nrm_client_t *client = nrm_client_new(self->endpoint, "", &self->curve);
    for (int i = 0; i < REPORTS_EACH; i++) {
        Nrm__V1__Reply *reply =
            s_submit(client, self->first_person + self->index * REPORTS_EACH + i, WAIT_MS);
        if (reply && reply->status == NRM__V1__STATUS__STATUS_OK)
            snprintf(self->case_ids[self->acknowledged++], 40, "%s", reply->case_ref->case_id);
        if (reply)
            nrm__v1__reply__free_unpacked(reply, NULL);
    }
    nrm_client_destroy(&client);
    return NULL;
}

/* Runs SUBMITTERS threads against the endpoints (alternating) and checks the stream. */
static void s_concurrent_submitters(const char *const *endpoints, int endpoint_count,
                                    int first_person)
{
    s_submitter_t subs[SUBMITTERS];
    pthread_t threads[SUBMITTERS];
    for (int i = 0; i < SUBMITTERS; i++) {
        memset(&subs[i], 0, sizeof subs[i]);
        subs[i].index = i;
        subs[i].first_person = first_person;
        subs[i].endpoint = endpoints[i % endpoint_count];
        harness_curve(h, "intake", "hotline-national", &subs[i].curve);
        pthread_create(&threads[i], NULL, s_submitter, &subs[i]);
    }
    for (int i = 0; i < SUBMITTERS; i++)
        pthread_join(threads[i], NULL);
    harness_wait_sql(h, "SELECT count(*) FROM intake.outbox WHERE seq IS NULL", 0, WAIT_MS);
    Nrm__V1__Event **events;
    size_t n = s_dense_stream(&events);
    for (int i = 0; i < SUBMITTERS; i++) {
        assert_int_equal(subs[i].acknowledged, REPORTS_EACH);
        for (int j = 0; j < subs[i].acknowledged; j++)
            assert_int_equal(s_count(events, n, subs[i].case_ids[j], "case.opened"), 1);
    }
    s_free_events(events, n);
}

static void test_many_concurrent_submitters_each_case_once_dense(void **state)
{
    const char *endpoints[] = {harness_api(h, "intake", 0)};
    s_concurrent_submitters(endpoints, 1, 1000);
}

static void test_two_instances_share_one_dense_stream_and_take_over(void **state)
{
    assert_int_equal(harness_start(h, "intake", 1), 0);
    const char *endpoints[] = {harness_api(h, "intake", 0), harness_api(h, "intake", 1)};
    harness_sub_t *sub1 = harness_subscribe(h, "intake", 1);
    s_concurrent_submitters(endpoints, 2, 2000);
    /* instance 1 publishes the whole stream too, not only what it sequenced */
    Nrm__V1__Event *ev = harness_sub_next(sub1, "case.opened", WAIT_MS);
    assert_non_null(ev);
    nrm__v1__event__free_unpacked(ev, NULL);
    harness_sub_destroy(&sub1);

    /* kill instance 0 (the sequencer): instance 1 takes the lock over */
    harness_signal(h, "intake", 0, SIGKILL);
    nrm_client_t *client = harness_client_new(h, "intake", 1, "police-ma-06");
    Nrm__V1__Reply *reply = s_submit(client, 5000, WAIT_MS);
    assert_int_equal(reply->status, NRM__V1__STATUS__STATUS_OK);
    assert_int_equal(
        harness_wait_sql(h, "SELECT count(*) FROM intake.outbox WHERE seq IS NULL", 0, WAIT_MS), 0);
    Nrm__V1__Event **events;
    size_t n = harness_fetch_all(h, "intake", &events); /* instance 0 is gone: ask instance 1 */
    (void)n;
    s_free_events(events, n);
    assert_int_equal(harness_start(h, "intake", 0), 0);
    n = s_dense_stream(&events);
    assert_int_equal(s_count(events, n, reply->case_ref->case_id, "case.opened"), 1);
    s_free_events(events, n);
    nrm__v1__reply__free_unpacked(reply, NULL);
    nrm_client_destroy(&client);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_kill_just_after_ack_loses_nothing),
        cmocka_unit_test(test_database_restart_gives_unavailable_then_recovers),
        cmocka_unit_test(test_many_concurrent_submitters_each_case_once_dense),
        cmocka_unit_test(test_two_instances_share_one_dense_stream_and_take_over),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
