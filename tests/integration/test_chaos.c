/* Chaos: about a thousand reports flow through intake, routing, shelter and notify (webhooks to
 * a local receiver) while each service in turn is killed with SIGKILL and restarted, and then
 * PostgreSQL itself is restarted. The test runs on a cluster of its own (it restarts it).
 * Afterwards: no acknowledged report is lost, no effect is applied twice (one case.opened per
 * case, one referral per need and attempt, one shelter outcome per request and at most one
 * allocation per case), no shelter holds more beds than it has, every stream is dense
 * (1..head), and every case.opened reached the receiver under one stable delivery id
 * (duplicates allowed only under the same id). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <czmq.h>

#include "harness.h"
#include "notify_fixture.h"
#include "notify_sinks.h"
#include "nrm_client.h"
#include "nrm_crypto.h"
#include "nrm_time.h"
#include "private_pg.h"
#include "routing_scenario.h"
#include "scenario.h"

#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SUBMITTERS 4
#define REPORTS_EACH 250 /* 1000 reports */
#define PACE_MS 50       /* between a submitter's reports: the load spans every fault */
#define CALL_MS 3000
#define MAX_TRIES 40 /* one report, the same request_id, until it is acknowledged */
#define FAULT_GAP_MS 1500
#define PG_DOWN_MS 1000
#define SETTLE_MS 120000
#define SECRET "chaos-test-secret-0123456789abcdef"
#define ID_MAX 40
#define SQL_MAX 1024

static const char *const s_services[] = {"intake", "routing", "shelter", "notify"};
#define S_SERVICES (sizeof s_services / sizeof s_services[0])

static harness_t *h;
static private_pg_t pg;
static notify_receiver_t *receiver;
static char subscription[65];

typedef struct {
    int index;
    const char *endpoint;
    nrm_curve_t curve;
    char case_ids[REPORTS_EACH][ID_MAX];
    int acknowledged;
    int retries;
} s_submitter_t;

static int setup(void **state)
{
    private_pg_start(&pg, "chaos", false);
    h = harness_new("chaos");
    receiver = notify_receiver_new();
    notify_fixture_settings_t settings = {
        .max_attempts = 50, .backoff_ms = 100, .max_backoff_ms = 500, .timeout_ms = 2000};
    notify_fixture_config(h, &settings, NULL);
    for (size_t s = 0; s < S_SERVICES; s++)
        if (harness_start(h, s_services[s], 0) != 0)
            return -1;
    char url[256];
    const char *opened[] = {"case.opened", NULL};
    notify_fixture_subscribe_ok(h, "iom-ma", "webhook", notify_fixture_url(receiver, "iom", url),
                                opened, SECRET, subscription);
    return 0;
}

static int teardown(void **state)
{
    harness_destroy(&h);
    notify_receiver_destroy(&receiver);
    private_pg_destroy(&pg);
    return 0;
}

/* Submits this submitter's reports, each under one request_id until it is acknowledged (a
 * repeat after a crash gets the stored reply, never a second case). */
static void *s_submit(void *arg)
{
    s_submitter_t *self = arg;
    nrm_client_t *client = nrm_client_new(self->endpoint, "", &self->curve);
    for (int i = 0; i < REPORTS_EACH; i++) {
        char name[64], request_id[37];
        /* one number per person: intake sorts a name's words, so "1-2" and "2-1" would be
         * one person written in two orders */
        snprintf(name, sizeof name, "Chaos Person %d", self->index * REPORTS_EACH + i);
        nrm_uuid_v4(request_id);
        scenario_report_t s;
        scenario_adult_woman(&s, "MA-04", name, "1992-05-05");
        s.request.request_id = request_id;
        for (int attempt = 0; attempt < MAX_TRIES; attempt++) {
            nrm_error_t err;
            Nrm__V1__Reply *reply = nrm_client_call(client, &s.request, CALL_MS, &err);
            bool ok = reply && reply->status == NRM__V1__STATUS__STATUS_OK;
            if (ok)
                snprintf(self->case_ids[self->acknowledged++], ID_MAX, "%s",
                         reply->case_ref->case_id);
            if (reply)
                nrm__v1__reply__free_unpacked(reply, NULL);
            if (ok)
                break;
            self->retries++;
            if (!reply) { /* no answer: a fresh connection, the same request */
                nrm_client_destroy(&client);
                client = nrm_client_new(self->endpoint, "", &self->curve);
            }
            zclock_sleep(200);
        }
        zclock_sleep(PACE_MS);
    }
    nrm_client_destroy(&client);
    return NULL;
}

/* SIGKILL of each service in turn (restarted at once), then a PostgreSQL restart. */
static void s_faults(void)
{
    for (size_t s = 0; s < S_SERVICES; s++) {
        zclock_sleep(FAULT_GAP_MS);
        int status = harness_signal(h, s_services[s], 0, SIGKILL);
        assert_true(WIFSIGNALED(status));
        assert_int_equal(harness_start(h, s_services[s], 0), 0);
        print_message("killed and restarted %s\n", s_services[s]);
    }
    zclock_sleep(FAULT_GAP_MS);
    harness_pg_stop(h);
    zclock_sleep(PG_DOWN_MS);
    harness_pg_start(h);
    print_message("restarted PostgreSQL\n");
}

/* What is still to do: unsequenced outbox rows, consumers behind their source's head, webhooks
 * of the test's subscription not yet delivered. */
static const char *const s_backlog[] = {
    "SELECT count(*) FROM intake.outbox WHERE seq IS NULL",
    "SELECT count(*) FROM routing.outbox WHERE seq IS NULL",
    "SELECT count(*) FROM shelter.outbox WHERE seq IS NULL",
    "SELECT count(*) FROM notify.outbox WHERE seq IS NULL",
    "SELECT count(*) FROM routing.checkpoints c, intake.stream_head h"
    " WHERE c.stream = 'intake' AND c.seq <> h.head",
    "SELECT count(*) FROM shelter.checkpoints c, routing.stream_head h"
    " WHERE c.stream = 'routing' AND c.seq <> h.head",
    "SELECT count(*) FROM notify.checkpoints c, intake.stream_head h"
    " WHERE c.stream = 'intake' AND c.seq <> h.head",
    "SELECT count(*) FROM notify.deliveries WHERE channel = 'webhook' AND state <> 'delivered'",
};
#define S_BACKLOG (sizeof s_backlog / sizeof s_backlog[0])

static long long s_backlog_total(bool show)
{
    long long total = 0;
    for (size_t i = 0; i < S_BACKLOG; i++) {
        long long n = harness_sql_int(h, s_backlog[i]);
        if (show && n)
            print_message("still to do: %lld for %s\n", n, s_backlog[i]);
        total += n;
    }
    return total;
}

/* Waits until every outbox is sequenced, every consumer has applied its source's head and every
 * webhook is delivered. */
static void s_settle(void)
{
    int64_t deadline = nrm_mono_ms() + SETTLE_MS;
    while (s_backlog_total(false) != 0 && nrm_mono_ms() < deadline)
        zclock_sleep(200);
    assert_int_equal(s_backlog_total(true), 0);
}

static void s_assert_dense(const char *schema)
{
    assert_int_equal(harness_sql_intf(h,
                                      "SELECT (count(*) = max(seq) AND min(seq) = 1"
                                      " AND max(seq) = (SELECT head FROM %s.stream_head))::int"
                                      " FROM %s.outbox WHERE seq IS NOT NULL",
                                      schema, schema),
                     1);
}

/* The CloudEvents id (the source event's id) of a webhook request. */
static void s_event_id(const notify_request_t *r, char out[ID_MAX])
{
    json_error_t jerr;
    json_t *body = json_loadb(r->body, r->body_len, 0, &jerr);
    assert_non_null(body);
    snprintf(out, ID_MAX, "%s", json_string_value(json_object_get(body, "id")));
    json_decref(body);
}

/* Every request the receiver got maps one event to one delivery id and back; returns the number
 * of distinct delivery ids, *duplicates the repeated requests. */
static size_t s_distinct_deliveries(size_t *duplicates)
{
    size_t n = notify_receiver_count(receiver);
    zhash_t *by_delivery = zhash_new(), *by_event = zhash_new();
    zhash_autofree(by_delivery);
    zhash_autofree(by_event);
    *duplicates = 0;
    for (size_t i = 0; i < n; i++) {
        notify_request_t *r = notify_receiver_request(receiver, i);
        char *delivery = notify_request_header(r, "X-NRM-Delivery");
        assert_non_null(delivery);
        char event[ID_MAX];
        s_event_id(r, event);
        const char *seen_event = zhash_lookup(by_delivery, delivery);
        const char *seen_delivery = zhash_lookup(by_event, event);
        if (seen_event) {
            (*duplicates)++;
            assert_string_equal(seen_event, event);
            assert_string_equal(seen_delivery, delivery);
        } else {
            assert_null(seen_delivery); /* an event never comes under a second id */
            zhash_insert(by_delivery, delivery, event);
            zhash_insert(by_event, event, delivery);
        }
        free(delivery);
        notify_request_free(&r);
    }
    size_t distinct = zhash_size(by_delivery);
    zhash_destroy(&by_delivery);
    zhash_destroy(&by_event);
    return distinct;
}

static void test_chaos_loses_nothing_doubles_nothing(void **state)
{
    int64_t started = nrm_mono_ms();
    static s_submitter_t subs[SUBMITTERS];
    pthread_t threads[SUBMITTERS];
    for (int i = 0; i < SUBMITTERS; i++) {
        memset(&subs[i], 0, sizeof subs[i]);
        subs[i].index = i;
        subs[i].endpoint = harness_api(h, "intake", 0);
        harness_curve(h, "intake", "police-ma-04", &subs[i].curve);
        pthread_create(&threads[i], NULL, s_submit, &subs[i]);
    }
    s_faults();
    int acknowledged = 0, retries = 0;
    for (int i = 0; i < SUBMITTERS; i++) {
        pthread_join(threads[i], NULL);
        acknowledged += subs[i].acknowledged;
        retries += subs[i].retries;
    }
    int64_t load_ms = nrm_mono_ms() - started;
    /* every report was eventually acknowledged, each once */
    assert_int_equal(acknowledged, SUBMITTERS * REPORTS_EACH);
    s_settle();
    print_message("%d reports acknowledged (%d retried calls) in %lld ms; settled after %lld ms\n",
                  acknowledged, retries, (long long)load_ms, (long long)(nrm_mono_ms() - started));

    /* 0 acknowledged lost: each acknowledged case exists, and there is no other */
    long long cases = harness_sql_intf(h, "SELECT count(*) FROM intake.cases");
    assert_int_equal(cases, acknowledged);
    for (int i = 0; i < SUBMITTERS; i++)
        for (int j = 0; j < subs[i].acknowledged; j++)
            assert_int_equal(
                harness_sql_intf(h, "SELECT count(*) FROM intake.cases WHERE case_id = '%s'",
                                 subs[i].case_ids[j]),
                1);

    /* 0 effects doubled */
    assert_int_equal(
        harness_sql_intf(h, "SELECT count(*) FROM intake.outbox WHERE topic = 'case.opened'"),
        cases);
    assert_int_equal(harness_sql_intf(h, "SELECT count(*) FROM routing.cases"), cases);
    assert_int_equal(harness_sql_intf(h,
                                      "SELECT count(*) FROM (SELECT 1 FROM routing.referrals"
                                      " GROUP BY case_id, service, attempt HAVING count(*) > 1) d"),
                     0);
    assert_true(harness_sql_intf(h, "SELECT count(*) FROM routing.referrals") > 0);
    /* each referred service of a case has exactly one open referral, each shelter request
     * exactly one outcome (a bed or a place in the queue) */
    assert_int_equal(
        harness_sql_intf(h,
                         "SELECT count(*) FROM routing.case_services cs WHERE cs.state = 'referred'"
                         " AND (SELECT count(*) FROM routing.referrals r WHERE r.case_id ="
                         " cs.case_id AND r.service = cs.service AND r.state IN ('pending',"
                         " 'accepted')) <> 1"),
        0);
    assert_true(
        harness_sql_intf(
            h, "SELECT count(*) FROM routing.case_services WHERE state = 'shelter_requested'") > 0);
    assert_int_equal(
        harness_sql_intf(h,
                         "SELECT count(*) FROM routing.case_services cs"
                         " WHERE cs.state = 'shelter_requested' AND (SELECT count(*) FROM"
                         " shelter.allocations a WHERE a.case_id = cs.case_id) + (SELECT count(*)"
                         " FROM shelter.waitlist w WHERE w.case_id = cs.case_id) <> 1"),
        0);
    long long requested = harness_sql_intf(
        h, "SELECT count(*) FROM routing.outbox WHERE topic = 'shelter.requested'");
    assert_true(requested > 0);
    assert_int_equal(harness_sql_intf(h, "SELECT (SELECT count(*) FROM shelter.allocations)"
                                         " + (SELECT count(*) FROM shelter.waitlist)"),
                     requested);
    assert_int_equal(
        harness_sql_intf(h, "SELECT count(*) FROM (SELECT case_id FROM shelter.allocations"
                            " GROUP BY case_id HAVING count(*) > 1) d"),
        0);
    assert_int_equal(
        harness_sql_intf(h, "SELECT count(*) FROM shelter.allocations a JOIN shelter.waitlist w"
                            " USING (case_id) WHERE w.state = 'waiting'"),
        0);

    /* 0 beds overbooked: live allocations fit the capacity and match the counters */
    assert_int_equal(
        harness_sql_intf(h, "SELECT count(*) FROM shelter.shelters s WHERE s.occupied + s.held >"
                            " s.capacity OR s.occupied + s.held <> (SELECT coalesce(sum(beds), 0)"
                            " FROM shelter.allocations a WHERE a.shelter_id = s.shelter_id"
                            " AND a.state <> 'released')"),
        0);

    /* routing's open counters agree with a recount of the referrals */
    assert_int_equal(routing_counters_off(h), 0);

    /* dense streams */
    for (size_t s = 0; s < S_SERVICES; s++)
        s_assert_dense(s_services[s]);

    /* every case.opened delivered under one stable delivery id */
    char sql[SQL_MAX];
    snprintf(sql, sizeof sql,
             "SELECT count(*) FROM notify.deliveries WHERE subscription_id = '%s'"
             " AND state = 'delivered'",
             subscription);
    assert_int_equal(notify_fixture_wait(h, sql, cases), cases);
    assert_int_equal(
        harness_sql_intf(h, "SELECT count(*) FROM notify.deliveries WHERE subscription_id = '%s'",
                         subscription),
        cases);
    size_t duplicates = 0;
    assert_int_equal(s_distinct_deliveries(&duplicates), (size_t)cases);
    print_message("%lld webhooks delivered, %zu repeated under their own delivery id\n", cases,
                  duplicates);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_chaos_loses_nothing_doubles_nothing),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
