/* PostgreSQL failover: intake and routing run against a primary and a synchronous streaming
 * standby through one multi-host connection string (host=primary,standby
 * target_session_attrs=read-write). Under a steady load of reports the primary is killed and
 * the standby promoted; without a restart the services find the new primary, every report
 * they acknowledged is there, and both streams stay dense (1..head, no gap, no repeat). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "harness.h"
#include "nrm_client.h"
#include "nrm_time.h"
#include "private_pg.h"
#include "scenario.h"

#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SUBMITTERS 4
#define MAX_EACH 4000
#define CALL_MS 3000
#define WAIT_MS 30000
#define LOAD_BEFORE_MS 2000     /* load on the primary before it dies */
#define PROMOTE_AFTER_MS 1000   /* the primary is gone this long before the standby takes over */
#define ACKS_AFTER_PROMOTION 50 /* acknowledgements from the new primary before the load stops */
#define ID_MAX 40

static harness_t *h;
static private_pg_t pg;
static atomic_bool s_stop;
static atomic_int s_acknowledged;

typedef struct {
    int index;
    const char *endpoint;
    nrm_curve_t curve;
    char (*case_ids)[ID_MAX];
    int acknowledged;
    int failed; /* UNAVAILABLE or no answer: not acknowledged, may or may not exist */
} s_submitter_t;

static int setup(void **state)
{
    private_pg_start(&pg, "failover", true);
    h = harness_new("failover");
    if (harness_start(h, "intake", 0) != 0 || harness_start(h, "routing", 0) != 0)
        return -1;
    return 0;
}

static int teardown(void **state)
{
    harness_destroy(&h);
    private_pg_destroy(&pg);
    return 0;
}

static void *s_submit_loop(void *arg)
{
    s_submitter_t *self = arg;
    nrm_client_t *client = nrm_client_new(self->endpoint, "", &self->curve);
    for (int i = 0; i < MAX_EACH && !atomic_load(&s_stop); i++) {
        char name[64];
        /* one number per person: intake sorts a name's words, so "1-2" and "2-1" would be
         * one person written in two orders */
        snprintf(name, sizeof name, "Failover Person %d", self->index * MAX_EACH + i);
        scenario_report_t s;
        scenario_adult_woman(&s, "MA-06", name, "1990-04-04");
        nrm_error_t err;
        Nrm__V1__Reply *reply = nrm_client_call(client, &s.request, CALL_MS, &err);
        if (reply && reply->status == NRM__V1__STATUS__STATUS_OK) {
            snprintf(self->case_ids[self->acknowledged++], ID_MAX, "%s", reply->case_ref->case_id);
            atomic_fetch_add(&s_acknowledged, 1);
        } else {
            self->failed++;
            if (!reply) { /* a lost answer: start over on a fresh connection */
                nrm_client_destroy(&client);
                client = nrm_client_new(self->endpoint, "", &self->curve);
            }
            zclock_sleep(50);
        }
        if (reply)
            nrm__v1__reply__free_unpacked(reply, NULL);
    }
    nrm_client_destroy(&client);
    return NULL;
}

/* Waits until at least want reports are acknowledged; false after timeout_ms. */
static bool s_wait_acks(int want, int timeout_ms)
{
    int64_t deadline = nrm_mono_ms() + timeout_ms;
    while (atomic_load(&s_acknowledged) < want && nrm_mono_ms() < deadline)
        zclock_sleep(50);
    return atomic_load(&s_acknowledged) >= want;
}

/* Asserts the stream of the service's outbox is exactly 1..head once everything is sequenced;
 * returns head. */
static long long s_assert_dense(const char *schema)
{
    char sql[256];
    snprintf(sql, sizeof sql, "SELECT count(*) FROM %s.outbox WHERE seq IS NULL", schema);
    assert_int_equal(harness_wait_sql(h, sql, 0, WAIT_MS), 0);
    snprintf(sql, sizeof sql,
             "SELECT count(*) = max(seq) AND min(seq) = 1 AND count(DISTINCT seq) = count(*)"
             " AND max(seq) = (SELECT head FROM %s.stream_head) FROM %s.outbox",
             schema, schema);
    PGresult *res = harness_sql(h, sql);
    assert_string_equal(PQgetvalue(res, 0, 0), "t");
    PQclear(res);
    snprintf(sql, sizeof sql, "SELECT head FROM %s.stream_head", schema);
    return harness_sql_int(h, sql);
}

static void test_failover_loses_no_acknowledged_report(void **state)
{
    int intake_pid = harness_pid(h, "intake", 0), routing_pid = harness_pid(h, "routing", 0);
    s_submitter_t subs[SUBMITTERS];
    pthread_t threads[SUBMITTERS];
    for (int i = 0; i < SUBMITTERS; i++) {
        memset(&subs[i], 0, sizeof subs[i]);
        subs[i].index = i;
        subs[i].endpoint = harness_api(h, "intake", 0);
        subs[i].case_ids = calloc(MAX_EACH, ID_MAX);
        assert_non_null(subs[i].case_ids);
        harness_curve(h, "intake", "hotline-national", &subs[i].curve);
        pthread_create(&threads[i], NULL, s_submit_loop, &subs[i]);
    }
    zclock_sleep(LOAD_BEFORE_MS);
    int before = atomic_load(&s_acknowledged);
    assert_true(before > 0);
    int64_t killed_at = nrm_mono_ms();
    private_pg_kill_primary(&pg);
    zclock_sleep(PROMOTE_AFTER_MS);
    private_pg_promote(&pg);
    int at_promotion = atomic_load(&s_acknowledged);
    /* the same processes serve again, now on the promoted standby */
    bool served = s_wait_acks(at_promotion + ACKS_AFTER_PROMOTION, WAIT_MS);
    int64_t recovered_ms = nrm_mono_ms() - killed_at;
    atomic_store(&s_stop, true);
    for (int i = 0; i < SUBMITTERS; i++)
        pthread_join(threads[i], NULL);
    assert_true(served);
    int total = 0, failed = 0;
    for (int i = 0; i < SUBMITTERS; i++) {
        total += subs[i].acknowledged;
        failed += subs[i].failed;
    }
    printf("# %d acknowledged (%d before the kill), %d refused or unanswered during the failover;"
           " serving again %lld ms after the kill\n",
           total, before, failed, (long long)recovered_ms);
    assert_int_equal(harness_pid(h, "intake", 0), intake_pid);
    assert_int_equal(harness_pid(h, "routing", 0), routing_pid);
    assert_int_equal(kill(intake_pid, 0), 0);
    assert_int_equal(kill(routing_pid, 0), 0);

    /* every acknowledged case exists on the new primary */
    size_t cap = (size_t)total * (ID_MAX + 4) + 128, len = 0;
    char *sql = calloc(1, cap);
    assert_non_null(sql);
    len += (size_t)snprintf(sql + len, cap - len,
                            "SELECT count(*) FROM intake.cases WHERE case_id = ANY('{");
    const char *sep = "";
    for (int i = 0; i < SUBMITTERS; i++)
        for (int j = 0; j < subs[i].acknowledged; j++) {
            len += (size_t)snprintf(sql + len, cap - len, "%s%s", sep, subs[i].case_ids[j]);
            sep = ",";
        }
    snprintf(sql + len, cap - len, "}'::text[])");
    assert_int_equal(harness_sql_int(h, sql), total);
    free(sql);

    /* both streams are dense, each acknowledged case opened exactly once in intake's */
    long long intake_head = s_assert_dense("intake");
    Nrm__V1__Event **events;
    size_t n = harness_fetch_all(h, "intake", &events);
    assert_int_equal((long long)n, intake_head);
    int opened = 0;
    for (size_t i = 0; i < n; i++) {
        assert_int_equal(events[i]->seq, (int64_t)i + 1);
        opened += strcmp(events[i]->topic, "case.opened") == 0;
    }
    assert_int_equal(opened, harness_sql_int(h, "SELECT count(*) FROM intake.cases"));
    for (size_t i = 0; i < n; i++)
        nrm__v1__event__free_unpacked(events[i], NULL);
    free(events);

    /* routing, which lost its database too, applied the whole intake stream exactly once */
    char check[256];
    snprintf(check, sizeof check,
             "SELECT count(*) FROM routing.checkpoints WHERE stream = 'intake' AND seq = %lld",
             intake_head);
    assert_int_equal(harness_wait_sql(h, check, 1, WAIT_MS), 1);
    assert_int_equal(harness_sql_int(h, "SELECT count(*) FROM routing.cases"),
                     harness_sql_int(h, "SELECT count(*) FROM intake.cases"));
    s_assert_dense("routing");
    for (int i = 0; i < SUBMITTERS; i++)
        free(subs[i].case_ids);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_failover_loses_no_acknowledged_report),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
