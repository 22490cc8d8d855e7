/* Recovery from a backlog: with nrm-shelter stopped, a thousand people are reported and routing
 * asks for their beds. A clean run of nrm-shelter works the backlog off (and says how fast);
 * then the shelter schema is wiped, the same backlog is worked again, and nrm-shelter is killed
 * with SIGKILL in the middle of a batch. After a restart its outcome - every allocation, every
 * place in the queue, every event published - is exactly the clean run's. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "harness.h"
#include "nrm_time.h"
#include "scenario.h"
#include "shelter_fixture.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DEFAULT_BACKLOG 1000
#define HOLD_S 86400
#define CHECK_MS 1000
#define TIMEOUT_MS 180000
#define NAME_MAX_LEN 64
#define LINE_MAX_LEN 512
#define SQL_MAX 512
#define REGIONS 6
#define KINDS 8
#define URGENCIES 3
#define MS_PER_S 1000.0
#define WOMEN NRM__V1__SHELTER_POPULATION__SHELTER_POPULATION_WOMEN
#define MEN NRM__V1__SHELTER_POPULATION__SHELTER_POPULATION_MEN
#define MINORS NRM__V1__SHELTER_POPULATION__SHELTER_POPULATION_MINORS
#define FAMILIES NRM__V1__SHELTER_POPULATION__SHELTER_POPULATION_FAMILIES
#define MIXED NRM__V1__SHELTER_POPULATION__SHELTER_POPULATION_MIXED

/* A varied network of 123 beds in MA-01..MA-07. */
static const shelter_fixture_t s_network[] = {
    {"r01-women", "op-r-north", "MA-01", 12, WOMEN, 18, 120, true, false, "ar,fr,es"},
    {"r01-men", "op-r-north", "MA-01", 8, MEN, 18, 120, false, false, "ar,fr,en"},
    {"r02-mixed", "op-r-east", "MA-02", 10, MIXED, 18, 120, false, true, "ar,fr,en"},
    {"r03-families", "op-r-fes", "MA-03", 15, FAMILIES, 18, 120, true, true, "ar,fr"},
    {"r04-women", "op-r-rabat", "MA-04", 12, WOMEN, 18, 120, false, false, "ar,fr,en"},
    {"r04-minors", "op-r-rabat", "MA-04", 10, MINORS, 0, 17, true, false, "ar,fr,en"},
    {"r04-men", "op-r-rabat", "MA-04", 8, MEN, 18, 120, false, false, "ar,fr"},
    {"r05-mixed", "op-r-centre", "MA-05", 6, MIXED, 18, 120, false, false, "ar,fr"},
    {"r06-women", "op-r-casa", "MA-06", 14, WOMEN, 18, 120, true, false, "ar,fr,en"},
    {"r06-minors", "op-r-casa", "MA-06", 8, MINORS, 6, 17, false, false, "ar,fr"},
    {"r06-families", "op-r-casa", "MA-06", 12, FAMILIES, 18, 120, true, true, "ar,fr,en"},
    {"r07-women", "op-r-south", "MA-07", 8, WOMEN, 18, 120, false, false, "ar,fr,en"},
};

/* A consumer batch of nrm-shelter is open and has written: it has inserted allocations or
 * waitlist entries and not yet reached the routing checkpoint row (no lock on checkpoints: a
 * batch moves the row at its end, in the round trip of its COMMIT). */
static const char s_sql_mid_batch[] =
    "SELECT count(*) FROM pg_locks w"
    " WHERE w.relation IN ('shelter.allocations'::regclass, 'shelter.waitlist'::regclass)"
    " AND w.mode = 'RowExclusiveLock' AND NOT EXISTS (SELECT 1 FROM pg_locks c"
    " WHERE c.pid = w.pid AND c.relation = 'shelter.checkpoints'::regclass)";
static const char s_sql_backends[] =
    "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'nrm-shelter'";
static const char s_sql_checkpoint[] =
    "SELECT coalesce((SELECT seq FROM shelter.checkpoints WHERE stream = 'routing'), 0)";

#define KILL_ATTEMPTS 5 /* runs of the backlog until one is killed mid-batch */

static harness_t *h;
static size_t backlog;

static int setup(void **state)
{
    const char *env = getenv("NRM_SHELTER_BACKLOG");
    backlog = env && atoi(env) > 0 ? (size_t)atoi(env) : DEFAULT_BACKLOG;
    h = harness_new("shelter_recovery");
    shelter_fixture_use(h, s_network, sizeof s_network / sizeof *s_network, HOLD_S, CHECK_MS);
    if (harness_start(h, "intake", 0) != 0)
        return -1;
    return harness_start(h, "routing", 0);
}

static int teardown(void **state)
{
    harness_destroy(&h);
    return 0;
}

/* Person i of the backlog: women, men, girls and boys, mothers with children, wheelchair users
 * and people at high risk, from six regions, at three urgencies. */
static void s_person(scenario_report_t *s, size_t i, char *name)
{
    static const char *const regions[REGIONS] = {"MA-01", "MA-02", "MA-03",
                                                 "MA-04", "MA-05", "MA-06"};
    static const char *const languages[] = {"ar", "fr", "ar", "fr", "en", "en", "ar", "fr"};
    snprintf(name, NAME_MAX_LEN, "Backlog Person %04zu", i);
    size_t kind = i % KINDS;
    shelter_fixture_person(s, regions[i % REGIONS], name, languages[kind]);
    s->report.urgency = (Nrm__V1__Urgency)(1 + (i / KINDS) % URGENCIES);
    switch (kind) {
    case 1:
        s->profile.gender = NRM__V1__GENDER__GENDER_MALE;
        break;
    case 2:
        s->profile.age_years = 15;
        break;
    case 3:
        s->profile.accompanying_children = 1;
        break;
    case 4:
        s->profile.disability = 1;
        break;
    case 5:
        s->report.safety_risk = NRM__V1__SAFETY_RISK__SAFETY_RISK_HIGH;
        break;
    case 6:
        s->profile.gender = NRM__V1__GENDER__GENDER_MALE;
        s->profile.age_years = 9;
        break;
    case 7:
        s->profile.accompanying_children = 2;
        s->report.safety_risk = NRM__V1__SAFETY_RISK__SAFETY_RISK_HIGH;
        break;
    default:
        break;
    }
}

/* Waits until nrm-shelter has applied routing's stream up to head; returns the time it took
 * from `since` in ms, or -1. */
static long long s_wait_caught_up(long long head, int64_t since)
{
    if (harness_wait_sql(h, s_sql_checkpoint, head, TIMEOUT_MS) != head)
        return -1;
    return (long long)(nrm_mono_ms() - since);
}

/* The published outcome of a run, one line per event without the fields that differ by nature
 * (ids, clocks): topic, case, and what was decided. Returns a malloc'd string. */
static char *s_story(void)
{
    shelter_fixture_settle(h);
    Nrm__V1__Event **events = NULL;
    size_t n = harness_fetch_all(h, "shelter", &events);
    size_t size = (n + 1) * LINE_MAX_LEN, used = 0;
    char *story = calloc(1, size);
    for (size_t i = 0; i < n; i++) {
        const Nrm__V1__Event *ev = events[i];
        used += (size_t)snprintf(story + used, size - used, "%lld %s %s ", (long long)ev->seq,
                                 ev->topic, ev->case_id);
        if (ev->body_case == NRM__V1__EVENT__BODY_SHELTER_ALLOCATED)
            used += (size_t)snprintf(story + used, size - used, "%s %d %s",
                                     ev->shelter_allocated->shelter_id, ev->shelter_allocated->beds,
                                     ev->shelter_allocated->reason);
        else if (ev->body_case == NRM__V1__EVENT__BODY_SHELTER_WAITLISTED)
            used +=
                (size_t)snprintf(story + used, size - used, "%d %s",
                                 ev->shelter_waitlisted->position, ev->shelter_waitlisted->reason);
        else if (ev->body_case == NRM__V1__EVENT__BODY_SHELTER_CAPACITY_CHANGED)
            used += (size_t)snprintf(
                story + used, size - used, "%s %d %d", ev->shelter_capacity_changed->shelter_id,
                ev->shelter_capacity_changed->capacity, ev->shelter_capacity_changed->occupied);
        used += (size_t)snprintf(story + used, size - used, "\n");
        nrm__v1__event__free_unpacked(events[i], NULL);
    }
    free(events);
    return story;
}

/* The stored outcome of a run: allocations and the queue, ordered by case. */
static char *s_tables(void)
{
    PGresult *res = harness_sql(
        h, "SELECT (SELECT string_agg(case_id || ' ' || shelter_id || ' ' || beds || ' ' || state"
           " || ' ' || reason, E'\\n' ORDER BY case_id) FROM shelter.allocations) || E'\\n--\\n' ||"
           " (SELECT string_agg(case_id || ' ' || urgency || ' ' || beds || ' ' || state || ' ' ||"
           " reason, E'\\n' ORDER BY case_id) FROM shelter.waitlist)");
    char *tables = strdup(PQgetvalue(res, 0, 0));
    PQclear(res);
    return tables;
}

/* Removes every trace of nrm-shelter's work, as if it had never run: the schema is dropped and
 * prepared again by deploy/db-init.sh (owner, grants, audit_log). */
static void s_wipe_shelter_schema(void)
{
    PQclear(harness_sql(h, "DROP SCHEMA shelter CASCADE"));
    char cmd[2048];
    snprintf(cmd, sizeof cmd,
             "PGHOST=%s PGPORT=%s PGUSER=postgres bash %s/deploy/db-init.sh t_shelter_recovery"
             " >/dev/null",
             getenv("NRM_TEST_PGHOST"), getenv("NRM_TEST_PGPORT"), getenv("NRM_SOURCE_DIR"));
    assert_int_equal(system(cmd), 0);
}

/* Stops nrm-shelter, wipes its schema, starts it on the backlog again and SIGKILLs it as soon as
 * a batch after the first commit is open and has written. Returns the committed checkpoint at
 * that moment, or -1 when the backlog was applied (or the time ran out) before the poll saw
 * such a batch: batches are short, and a poll can fall between them. */
static long long s_run_again_and_kill_mid_batch(long long head)
{
    harness_signal(h, "shelter", 0, SIGKILL);
    s_wipe_shelter_schema();
    assert_int_equal(harness_start(h, "shelter", 0), 0);
    char sql[2 * SQL_MAX];
    snprintf(sql, sizeof sql,
             "SELECT CASE WHEN c >= %lld THEN -2 WHEN c > 0 AND (%s) > 0 THEN c"
             " ELSE -1 END FROM (%s) AS s(c)",
             head, s_sql_mid_batch, s_sql_checkpoint);
    int64_t deadline = nrm_mono_ms() + TIMEOUT_MS;
    while (nrm_mono_ms() < deadline) {
        long long checkpoint = harness_sql_int(h, sql); /* one round trip per look */
        if (checkpoint == -2)
            return -1;
        if (checkpoint > 0) {
            harness_signal(h, "shelter", 0, SIGKILL);
            return checkpoint;
        }
    }
    return -1;
}

static void test_sigkill_mid_batch_then_restart_gives_the_clean_run_outcome(void **state)
{
    /* the backlog: reports while nrm-shelter is down, each routed to a shelter request */
    scenario_report_t *reports = calloc(backlog, sizeof *reports);
    char(*names)[NAME_MAX_LEN] = calloc(backlog, NAME_MAX_LEN);
    char(*case_ids)[SHELTER_FIXTURE_ID] = calloc(backlog, SHELTER_FIXTURE_ID);
    for (size_t i = 0; i < backlog; i++)
        s_person(&reports[i], i, names[i]);
    assert_int_equal(shelter_fixture_submit_many(h, reports, backlog, "hotline-national", case_ids),
                     backlog);
    char sql[SQL_MAX];
    snprintf(sql, sizeof sql,
             "SELECT count(*) FROM routing.outbox"
             " WHERE topic = 'shelter.requested' AND seq IS NOT NULL");
    assert_int_equal(harness_wait_sql(h, sql, (long long)backlog, TIMEOUT_MS), backlog);
    long long head = harness_sql_int(h, "SELECT head FROM routing.stream_head");

    /* the clean run, timed from the start of the process */
    int64_t started = nrm_mono_ms();
    assert_int_equal(harness_start(h, "shelter", 0), 0);
    long long clean_ms = s_wait_caught_up(head, started);
    assert_true(clean_ms > 0);
    char *clean_story = s_story(), *clean_tables = s_tables();
    assert_int_equal(harness_sql_int(h, "SELECT (SELECT count(*) FROM shelter.allocations)"
                                        " + (SELECT count(*) FROM shelter.waitlist)"),
                     backlog);
    print_message("figure: backlog of %zu shelter requests (routing head %lld) applied in"
                  " %lld ms from process start: %.0f requests/s\n",
                  backlog, head, clean_ms, backlog * MS_PER_S / (double)clean_ms);

    /* the same backlog again, killed while a batch is open and has written */
    long long seen = -1;
    int attempts = 0;
    while (attempts < KILL_ATTEMPTS && seen < 0) {
        attempts++;
        seen = s_run_again_and_kill_mid_batch(head);
    }
    assert_true(seen > 0);
    /* once its sessions are gone, the batch that was open is rolled back: nothing moved */
    assert_int_equal(harness_wait_sql(h, s_sql_backends, 0, TIMEOUT_MS), 0);
    long long at_kill = harness_sql_int(h, s_sql_checkpoint);
    assert_int_equal(at_kill, seen);
    assert_true(at_kill < head);
    /* exactly the requests up to the committed checkpoint have effects: the open batch left none */
    snprintf(sql, sizeof sql,
             "SELECT (SELECT count(*) FROM routing.outbox WHERE topic = 'shelter.requested'"
             " AND seq <= %lld) - (SELECT count(*) FROM shelter.allocations)"
             " - (SELECT count(*) FROM shelter.waitlist)",
             at_kill);
    assert_int_equal(harness_sql_int(h, sql), 0);
    print_message("killed with the checkpoint at %lld of %lld (run %d of the backlog)\n", at_kill,
                  head, attempts);

    int64_t restarted = nrm_mono_ms();
    assert_int_equal(harness_start(h, "shelter", 0), 0);
    assert_true(s_wait_caught_up(head, restarted) > 0);
    char *story = s_story(), *tables = s_tables();
    assert_string_equal(tables, clean_tables);
    assert_string_equal(story, clean_story);
    assert_int_equal(harness_sql_int(h, "SELECT count(*) FROM shelter.shelters"
                                        " WHERE occupied + held > capacity"),
                     0);
    free(story);
    free(tables);
    free(clean_story);
    free(clean_tables);
    free(reports);
    free(names);
    free(case_ids);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sigkill_mid_batch_then_restart_gives_the_clean_run_outcome),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
