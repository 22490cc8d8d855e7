/* Notify's figures against real processes and a real local receiver: the end-to-end latency from
 * a report acknowledged by intake to its webhook arriving (p50/p99), and deliveries per second
 * when notify drains a backlog. Every delivery is checked to arrive exactly once. Sizes come from
 * NRM_NOTIFY_BENCH_LATENCY (reports one by one, default 100) and NRM_NOTIFY_BENCH_REPORTS
 * (backlog, default 500). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <czmq.h>

#include "harness.h"
#include "notify_fixture.h"
#include "notify_sinks.h"
#include "nrm_time.h"
#include "scenario.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DEFAULT_LATENCY_REPORTS 100
#define DEFAULT_BACKLOG_REPORTS 500
#define PACE_MS 5
#define SECRET "throughput-test-secret-0123456789"
#define DRAIN_TIMEOUT_MS 120000
#define US_PER_MS 1000.0
#define US_PER_S 1000000.0

static harness_t *h;
static notify_receiver_t *receiver;
static char subscription[65];

static int setup(void **state)
{
    h = harness_new("notify_throughput");
    receiver = notify_receiver_new();
    notify_fixture_settings_t settings = {
        .max_attempts = 5, .backoff_ms = 200, .max_backoff_ms = 1000, .timeout_ms = 5000};
    notify_fixture_config(h, &settings, NULL);
    if (harness_start(h, "intake", 0) != 0 || harness_start(h, "notify", 0) != 0)
        return -1;
    char url[256];
    const char *opened[] = {"case.opened", NULL};
    notify_fixture_subscribe_ok(h, "hotline-national", "webhook",
                                notify_fixture_url(receiver, "bench", url), opened, SECRET,
                                subscription);
    return 0;
}

static int teardown(void **state)
{
    harness_destroy(&h);
    notify_receiver_destroy(&receiver);
    return 0;
}

/* An integer from the environment, or dflt. */
static int s_env_int(const char *name, int dflt)
{
    const char *v = getenv(name);
    return v && atoi(v) > 0 ? atoi(v) : dflt;
}

/* Submits one report; returns its case id (caller frees). */
static char *s_report(int i, const char *tag)
{
    char name[64];
    snprintf(name, sizeof name, "Bench %s %d", tag, i);
    scenario_report_t s;
    scenario_adult_woman(&s, "MA-06", name, "1992-06-06");
    Nrm__V1__Reply *reply = harness_call(h, "intake", "labour-ma-06", &s.request);
    assert_non_null(reply);
    assert_int_equal(reply->status, NRM__V1__STATUS__STATUS_OK);
    char *case_id = strdup(reply->case_ref->case_id);
    nrm__v1__reply__free_unpacked(reply, NULL);
    return case_id;
}

/* The CloudEvents subject (the case id) of a request, malloc'd. */
static char *s_subject(const notify_request_t *r)
{
    json_error_t jerr;
    json_t *body = json_loadb(r->body, r->body_len, 0, &jerr);
    assert_non_null(body);
    char *subject = strdup(json_string_value(json_object_get(body, "subject")));
    json_decref(body);
    return subject;
}

/* qsort order of int64_t. */
static int s_compare_us(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

static void test_latency_from_acknowledged_report_to_webhook(void **s)
{
    int n = s_env_int("NRM_NOTIFY_BENCH_LATENCY", DEFAULT_LATENCY_REPORTS);
    zhash_t *acked = zhash_new(); /* case id -> acknowledgement time (us, boxed) */
    zhash_autofree(acked);
    for (int i = 0; i < n; i++) {
        char *case_id = s_report(i, "latency");
        char at[32];
        snprintf(at, sizeof at, "%lld", (long long)nrm_mono_us());
        zhash_insert(acked, case_id, at);
        free(case_id);
        zclock_sleep(PACE_MS);
    }
    assert_true(notify_receiver_wait(receiver, (size_t)n, DRAIN_TIMEOUT_MS));
    int64_t *latency = calloc((size_t)n, sizeof *latency);
    size_t matched = 0;
    for (size_t i = 0; i < notify_receiver_count(receiver); i++) {
        notify_request_t *r = notify_receiver_request(receiver, i);
        char *subject = s_subject(r);
        const char *at = zhash_lookup(acked, subject);
        assert_non_null(at);
        assert_true(matched < (size_t)n);
        latency[matched++] = r->at_us - atoll(at);
        free(subject);
        notify_request_free(&r);
    }
    assert_int_equal(matched, n); /* each report arrived exactly once */
    qsort(latency, matched, sizeof *latency, s_compare_us);
    print_message("latency acknowledged report -> webhook over %zu reports: p50 %.1f ms, "
                  "p99 %.1f ms, max %.1f ms\n",
                  matched, latency[matched / 2] / US_PER_MS,
                  latency[matched * 99 / 100] / US_PER_MS, latency[matched - 1] / US_PER_MS);
    free(latency);
    zhash_destroy(&acked);
}

static void test_deliveries_per_second_draining_a_backlog(void **s)
{
    int n = s_env_int("NRM_NOTIFY_BENCH_REPORTS", DEFAULT_BACKLOG_REPORTS);
    size_t before = notify_receiver_count(receiver);
    assert_int_equal(WEXITSTATUS(harness_signal(h, "notify", 0, SIGTERM)), 0);
    for (int i = 0; i < n; i++)
        free(s_report(i, "backlog"));
    int64_t started_us = nrm_mono_us();
    assert_int_equal(harness_start(h, "notify", 0), 0);
    assert_true(notify_receiver_wait(receiver, before + (size_t)n, DRAIN_TIMEOUT_MS));
    int64_t first = INT64_MAX, last = 0;
    for (size_t i = before; i < notify_receiver_count(receiver); i++) {
        notify_request_t *r = notify_receiver_request(receiver, i);
        first = r->at_us < first ? r->at_us : first;
        last = r->at_us > last ? r->at_us : last;
        notify_request_free(&r);
    }
    assert_int_equal(notify_receiver_count(receiver), before + (size_t)n);
    char sql[256];
    snprintf(sql, sizeof sql,
             "SELECT count(*) FROM notify.deliveries WHERE subscription_id = '%s'"
             " AND state = 'delivered'",
             subscription);
    assert_int_equal(notify_fixture_wait(h, sql, (long long)before + n), (long long)before + n);
    double span_s = (double)(last - first) / US_PER_S;
    print_message("backlog of %d deliveries: first to last arrival %.2f s = %.0f deliveries/s; "
                  "%.2f s from notify's start to the last\n",
                  n, span_s, span_s > 0 ? n / span_s : 0.0, (last - started_us) / US_PER_S);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_latency_from_acknowledged_report_to_webhook),
        cmocka_unit_test(test_deliveries_per_second_draining_a_backlog),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
