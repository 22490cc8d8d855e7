/* Follow-ups against two real nrm-reintegration instances on one schema: with second-scale
 * offsets each follow-up falls due and becomes overdue on time, once each, and a SIGKILL in the
 * middle of the due-scan loses and doubles nothing. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "harness.h"
#include "reint_fixture.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define OK NRM__V1__STATUS__STATUS_OK
#define LOCAL NRM__V1__PLAN_KIND__PLAN_KIND_LOCAL_REINTEGRATION
#define OFFSETS "[2, 4]"
#define WINDOW_S 2
#define CHECK_MS 200
#define SCAN_BATCH 50
#define PLANS 10
#define BULK_PLANS 2000
#define OFFSETS_CASE 9999 /* a case number no other test uses */
#define LATE_MS 2500      /* how late a timer may publish under sanitizers on shared cores */
#define MS_PER_S 1000
#define SQL_MAX 1024

static harness_t *h;

static int setup(void **state)
{
    h = harness_new("reintegration_followups");
    harness_config_set(h, "reintegration.followup_offsets_s", json_loads(OFFSETS, 0, NULL));
    harness_config_set(h, "reintegration.followup_window_s", json_integer(WINDOW_S));
    harness_config_set(h, "reintegration.check_ms", json_integer(CHECK_MS));
    harness_config_set(h, "reintegration.scan_batch", json_integer(SCAN_BATCH));
    if (harness_start(h, "intake", 0) != 0 || harness_start(h, "routing", 0) != 0 ||
        harness_start(h, "reintegration", 0) != 0)
        return -1;
    return harness_start(h, "reintegration", 1);
}

static int teardown(void **state)
{
    harness_destroy(&h);
    return 0;
}

/* Makes a case known to reintegration (as intake's case.opened would) and opens a plan for it
 * through instance `instance`. */
static void s_case_with_plan(int i, int instance)
{
    char sql[SQL_MAX];
    snprintf(sql, sizeof sql,
             "INSERT INTO reintegration.cases (case_id, manager_agency_id, nationality)"
             " VALUES ('fu-case-%d', '%s', 'NG') RETURNING 0",
             i, REINT_REPORTER);
    harness_sql_int(h, sql);
    char case_id[ROUTING_ID_TEXT];
    snprintf(case_id, sizeof case_id, "fu-case-%d", i);
    Nrm__V1__OpenPlan o = NRM__V1__OPEN_PLAN__INIT;
    o.case_id = case_id;
    o.kind = LOCAL;
    Nrm__V1__Request req = NRM__V1__REQUEST__INIT;
    scenario_request(&req, NRM__V1__REQUEST__BODY_OPEN_PLAN, &o);
    req.agency_id = REINT_REPORTER;
    Nrm__V1__Reply *r = harness_call_at(h, "reintegration", instance, REINT_REPORTER, &req);
    assert_non_null(r);
    assert_string_equal(r->error_message, "");
    assert_int_equal(r->status, OK);
    nrm__v1__reply__free_unpacked(r, NULL);
}

/* Checks that an event was published no earlier than at_ms and at most LATE_MS after. */
static void s_assert_on_time(const Nrm__V1__Event *ev, int64_t at_ms)
{
    if (ev->occurred_at_ms < at_ms || ev->occurred_at_ms > at_ms + LATE_MS)
        fail_msg("%s of follow-up at %lld published at %lld", ev->topic, (long long)at_ms,
                 (long long)ev->occurred_at_ms);
}

static void followups_fall_due_and_become_overdue_on_time_once_each_with_two_instances(void **state)
{
    for (int i = 0; i < PLANS; i++)
        s_case_with_plan(i, i % 2);
    /* 2 follow-ups per plan: due at 2 s and 4 s, overdue 2 s later */
    assert_int_equal(harness_wait_sql(h,
                                      "SELECT count(*) FROM reintegration.followups f JOIN"
                                      " reintegration.plans p USING (plan_id)"
                                      " WHERE p.case_id LIKE 'fu-case-%' AND f.state = 'overdue'",
                                      2 * PLANS, 20000),
                     2 * PLANS);
    /* nothing more comes, however long the timers of both instances run */
    zclock_sleep(4 * CHECK_MS);
    Nrm__V1__Event **events = NULL;
    size_t n = harness_fetch_all(h, "reintegration", &events);
    int due = 0, overdue = 0;
    char seen[4 * PLANS][ROUTING_ID_TEXT + 8];
    int n_seen = 0;
    for (size_t i = 0; i < n; i++) {
        const Nrm__V1__Event *ev = events[i];
        const char *plan_id = NULL;
        int number = 0;
        if (ev->body_case == NRM__V1__EVENT__BODY_FOLLOWUP_DUE) {
            s_assert_on_time(ev, ev->followup_due->due_ms);
            plan_id = ev->followup_due->plan_id;
            number = ev->followup_due->number;
            due++;
        } else if (ev->body_case == NRM__V1__EVENT__BODY_FOLLOWUP_OVERDUE) {
            s_assert_on_time(ev, ev->followup_overdue->window_end_ms);
            assert_int_equal(ev->followup_overdue->window_end_ms - ev->followup_overdue->due_ms,
                             WINDOW_S * MS_PER_S);
            plan_id = ev->followup_overdue->plan_id;
            number = -ev->followup_overdue->number;
            overdue++;
        }
        if (plan_id) {
            char key[ROUTING_ID_TEXT + 8];
            snprintf(key, sizeof key, "%s/%d", plan_id, number);
            for (int k = 0; k < n_seen; k++)
                if (strcmp(seen[k], key) == 0)
                    fail_msg("%s published twice for %s", ev->topic, key);
            if (n_seen < 4 * PLANS)
                snprintf(seen[n_seen++], sizeof seen[0], "%s", key);
        }
    }
    assert_int_equal(due, 2 * PLANS);
    assert_int_equal(overdue, 2 * PLANS);
    for (size_t i = 0; i < n; i++)
        nrm__v1__event__free_unpacked(events[i], NULL);
    free(events);
}

static void a_sigkill_during_the_due_scan_loses_and_doubles_nothing(void **state)
{
    char sql[SQL_MAX];
    /* many plans, all due now, their windows far away: the scan takes many batches */
    snprintf(sql, sizeof sql,
             "WITH now AS (SELECT (extract(epoch FROM now()) * 1000)::bigint AS ms),"
             " p AS (INSERT INTO reintegration.plans (plan_id, case_id, kind, manager_agency_id,"
             "       opened_ms) SELECT 'bulk-' || g, 'bulk-case-' || g, 1, '%s', ms"
             "       FROM generate_series(1, %d) g, now RETURNING plan_id)"
             " SELECT count(*) FROM p",
             REINT_REPORTER, BULK_PLANS);
    assert_int_equal(harness_sql_int(h, sql), BULK_PLANS);
    snprintf(sql, sizeof sql,
             "INSERT INTO reintegration.followups (plan_id, number, due_ms, window_end_ms)"
             " SELECT 'bulk-' || g, 1, ms, ms + 3600000 FROM generate_series(1, %d) g,"
             " (SELECT (extract(epoch FROM now()) * 1000)::bigint AS ms) now RETURNING 0",
             BULK_PLANS);
    PQclear(harness_sql(h, sql));
    const char *moved = "SELECT count(*) FROM reintegration.followups"
                        " WHERE plan_id LIKE 'bulk-%' AND state = 'due'";
    /* kill one instance as soon as the scan is under way */
    harness_wait_sql(h,
                     "SELECT least(count(*), 1) FROM reintegration.followups"
                     " WHERE plan_id LIKE 'bulk-%' AND state = 'due'",
                     1, 10000);
    assert_true(harness_sql_int(h, moved) < BULK_PLANS);
    harness_signal(h, "reintegration", 0, SIGKILL);
    assert_int_equal(harness_start(h, "reintegration", 0), 0);
    assert_int_equal(harness_wait_sql(h, moved, BULK_PLANS, 60000), BULK_PLANS);

    /* every move has its event, once, in the published stream */
    assert_int_equal(harness_sql_int(h, "SELECT count(*) FROM reintegration.outbox"
                                        " WHERE topic = 'reintegration.followup_due'"
                                        " AND position('bulk-'::bytea in payload) > 0"),
                     BULK_PLANS);
    Nrm__V1__Event **events = NULL;
    size_t n = harness_fetch_all(h, "reintegration", &events);
    char *hit = calloc(BULK_PLANS + 1, 1);
    int bulk_due = 0;
    for (size_t i = 0; i < n; i++) {
        const Nrm__V1__Event *ev = events[i];
        if (ev->body_case == NRM__V1__EVENT__BODY_FOLLOWUP_DUE &&
            strncmp(ev->followup_due->plan_id, "bulk-", 5) == 0) {
            int k = atoi(ev->followup_due->plan_id + 5);
            assert_true(k >= 1 && k <= BULK_PLANS);
            assert_int_equal(hit[k], 0);
            hit[k] = 1;
            bulk_due++;
        }
        nrm__v1__event__free_unpacked(events[i], NULL);
    }
    free(events);
    free(hit);
    assert_int_equal(bulk_due, BULK_PLANS);
}

/* Follow-ups are recorded in order (the first not yet recorded), so offsets that do not rise
 * would record the wrong one: refused at a reload, naming the field; the ones in force stay. */
static void offsets_that_do_not_rise_are_refused_and_the_ones_in_force_stay(void **state)
{
    const char *const refused[] = {"[4, 2]", "[2, 2]"};
    for (size_t i = 0; i < sizeof refused / sizeof *refused; i++) {
        int before = harness_log_lines(h, "reintegration", 0, "reintegration configuration refused",
                                       "reintegration.followup_offsets_s");
        harness_config_set(h, "reintegration.followup_offsets_s", json_loads(refused[i], 0, NULL));
        harness_reload(h, "reintegration", 0);
        int after = before;
        for (int k = 0; k < 50 && after == before; k++) {
            usleep(100 * 1000);
            after = harness_log_lines(h, "reintegration", 0, "reintegration configuration refused",
                                      "reintegration.followup_offsets_s");
        }
        assert_int_equal(after, before + 1);
    }
    harness_config_set(h, "reintegration.followup_offsets_s", json_loads(OFFSETS, 0, NULL));
    /* the offsets in force are still [2, 4]: a plan opened now has its follow-ups 2 s apart */
    s_case_with_plan(OFFSETS_CASE, 0);
    char sql[SQL_MAX];
    snprintf(sql, sizeof sql,
             "SELECT count(*) FROM reintegration.followups f JOIN reintegration.plans p"
             " USING (plan_id) WHERE p.case_id = 'fu-case-%d'"
             " AND f.due_ms - p.opened_ms IN (2000, 4000)",
             OFFSETS_CASE);
    assert_int_equal(harness_sql_int(h, sql), 2);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(
            followups_fall_due_and_become_overdue_on_time_once_each_with_two_instances),
        cmocka_unit_test(a_sigkill_during_the_due_scan_loses_and_doubles_nothing),
        cmocka_unit_test(offsets_that_do_not_rise_are_refused_and_the_ones_in_force_stay),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
