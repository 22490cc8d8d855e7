/* The far end of the waitlist, against real processes: a free bed goes to the first waiting
 * person it fits however many wait ahead whom it does not fit (more than a serving pass reads at
 * first), and a free bed that fits no one waiting is not offered to the whole queue again at
 * every check while no bed changes, nor when someone it does not fit joins the queue. The ones
 * ahead are men written into the queue directly; the one shelter (shelter_fixture_one_bed)
 * takes women. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "harness.h"
#include "scenario.h"
#include "shelter_fixture.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define WAIT_MS SHELTER_FIXTURE_WAIT_MS
#define AHEAD 1200   /* men waiting ahead: more than a serving pass reads at first (1000) */
#define HOLD_S 600   /* no hold ends during the test */
#define CHECK_MS 100 /* the periodic sweep */
#define QUIET_MS 2500
#define STATS_FLUSH_MS 2000 /* a backend's table statistics reach the views within a second */
#define METRICS_MS 3600000  /* the waitlist gauge, which reads every waiting entry, stays out */
#define SQL_MAX 768
#define EMERGENCY NRM__V1__URGENCY__URGENCY_EMERGENCY
#define ROUTINE NRM__V1__URGENCY__URGENCY_ROUTINE

static harness_t *h;

static int setup(void **state)
{
    h = harness_new("shelter_waitlist_depth");
    shelter_fixture_use(h, &shelter_fixture_one_bed, 1, HOLD_S, CHECK_MS);
    harness_config_set(h, "metrics_refresh_ms", json_integer(METRICS_MS));
    return shelter_fixture_start(h);
}

static int teardown(void **state)
{
    harness_destroy(&h);
    return 0;
}

/* Reports a person of the given gender and urgency and waits for the shelter outcome: a bed
 * (position 0) or that place in the queue. The case id into case_id. */
static void s_person(const char *name, int gender, int urgency, int position,
                     char case_id[SHELTER_FIXTURE_ID])
{
    scenario_report_t s;
    shelter_fixture_person(&s, "MA-04", name, "fr");
    s.profile.gender = (Nrm__V1__Gender)gender;
    s.report.urgency = (Nrm__V1__Urgency)urgency;
    assert_int_equal(shelter_fixture_submit(h, &s, "police-ma-04", case_id), 0);
    Nrm__V1__Event *ev = shelter_fixture_outcome(h, case_id,
                                                 position ? NRM__V1__EVENT__BODY_SHELTER_WAITLISTED
                                                          : NRM__V1__EVENT__BODY_SHELTER_ALLOCATED,
                                                 WAIT_MS);
    assert_non_null(ev);
    if (position)
        assert_int_equal(ev->shelter_waitlisted->position, position);
    else
        assert_int_equal(ev->body_case, NRM__V1__EVENT__BODY_SHELTER_ALLOCATED);
    nrm__v1__event__free_unpacked(ev, NULL);
}

static void s_woman(const char *name, int urgency, int position, char case_id[SHELTER_FIXTURE_ID])
{
    s_person(name, NRM__V1__GENDER__GENDER_FEMALE, urgency, position, case_id);
}

/* Sets the women's shelter's capacity (its operator's UpsertShelter); asserts OK. */
static void s_capacity(int capacity)
{
    shelter_fixture_upsert_t up;
    shelter_fixture_upsert(&up, &shelter_fixture_one_bed);
    up.upsert.capacity = capacity;
    up.request.request_id = "";
    Nrm__V1__Reply *reply =
        harness_call(h, "shelter", shelter_fixture_one_bed.operator_id, &up.request);
    assert_non_null(reply);
    assert_int_equal(reply->status, NRM__V1__STATUS__STATUS_OK);
    nrm__v1__reply__free_unpacked(reply, NULL);
}

/* Rows of the waitlist read so far, by any scan of any session. This test's own reads (it
 * counts the queue after measuring) are reported first: a session reports its counts at most
 * once a second unless told to. */
static long long s_waitlist_reads(void)
{
    PQclear(harness_sql(h, "SELECT pg_stat_force_next_flush()"));
    return harness_sql_int(h, "SELECT seq_tup_read + coalesce(idx_tup_fetch, 0)"
                              " FROM pg_stat_user_tables"
                              " WHERE schemaname = 'shelter' AND relname = 'waitlist'");
}

static void test_a_free_bed_reaches_the_first_who_fits_however_far_down_the_queue(void **state)
{
    char a[SHELTER_FIXTURE_ID], w[SHELTER_FIXTURE_ID], sql[SQL_MAX];
    s_woman("Depth Woman A", ROUTINE, 0, a); /* takes the one bed */
    /* AHEAD men, emergencies requested before anyone, at the head of the queue */
    snprintf(sql, sizeof sql,
             "WITH ins AS (INSERT INTO shelter.waitlist (case_id, request_event_id, region,"
             " urgency, safety_risk, is_minor, age_years, gender, languages, disability,"
             " children, beds, requested_at_ms, reason)"
             " SELECT 'depth-man-' || i, gen_random_uuid(), 'MA-04', %d, 2, false, 30, %d,"
             " '{fr}', false, 0, 1, i, 'no_free_bed' FROM generate_series(1, %d) i RETURNING 1)"
             " SELECT count(*) FROM ins",
             EMERGENCY, NRM__V1__GENDER__GENDER_MALE, AHEAD);
    assert_int_equal(harness_sql_int(h, sql), AHEAD);
    s_woman("Depth Woman W", EMERGENCY, AHEAD + 1, w); /* behind all of them */
    /* a second bed: the serving pass of the capacity change reads past the men to W */
    s_capacity(2);
    snprintf(sql, sizeof sql,
             "SELECT count(*) FROM shelter.allocations WHERE case_id = '%s' AND state = 'held'", w);
    assert_int_equal(harness_sql_int(h, sql), 1);
}

static void test_a_bed_no_one_fits_is_not_offered_to_the_queue_at_every_check(void **state)
{
    s_capacity(3); /* a free bed, and only men waiting: one pass reads the queue, finds no one */
    usleep(STATS_FLUSH_MS * 1000);
    long long before = s_waitlist_reads();
    usleep(QUIET_MS * 1000); /* about 25 checks of the sweep */
    long long read = s_waitlist_reads() - before;
    /* a pass over the queue reads every waiting entry; the checks' probes read a row or two */
    assert_true(read < AHEAD);
    assert_int_equal(harness_sql_int(h, "SELECT count(*) FROM shelter.waitlist"
                                        " WHERE state = 'waiting'"),
                     AHEAD);
}

static void test_a_newcomer_the_free_bed_does_not_fit_is_not_offered_the_whole_queue(void **state)
{
    char m[SHELTER_FIXTURE_ID];
    usleep(STATS_FLUSH_MS * 1000); /* the bed that fits no man is free since the last test */
    long long before = s_waitlist_reads();
    /* a man joins the end of the queue: refused by the same beds that refused the others */
    s_person("Depth Man M", NRM__V1__GENDER__GENDER_MALE, ROUTINE, AHEAD + 1, m);
    usleep(QUIET_MS * 1000); /* about 25 checks of the sweep */
    usleep(STATS_FLUSH_MS * 1000);
    long long read = s_waitlist_reads() - before;
    /* his place was counted with a probe or two; no pass read the queue past the free bed */
    assert_true(read < AHEAD);
    assert_int_equal(harness_sql_int(h, "SELECT count(*) FROM shelter.waitlist"
                                        " WHERE state = 'waiting'"),
                     AHEAD + 1);
}

static void test_a_bed_given_back_reaches_who_joined_while_it_was_taken(void **state)
{
    char x[SHELTER_FIXTURE_ID], y[SHELTER_FIXTURE_ID], allocation[SHELTER_FIXTURE_ID], sql[SQL_MAX];
    /* X takes the bed no man fits; Y, refused while X holds it, joins the queue after the man */
    s_woman("Depth Woman X", ROUTINE, 0, x);
    s_woman("Depth Woman Y", ROUTINE, AHEAD + 2, y);
    /* X's bed is given back: the beds count as they did at the last pass that placed no one,
     * yet the pass of the release must not be skipped, since Y came in between */
    assert_int_equal(shelter_fixture_allocation_of(h, x, allocation), 0);
    Nrm__V1__ReleaseBed rel = NRM__V1__RELEASE_BED__INIT;
    rel.allocation_id = allocation;
    rel.reason = "declined";
    Nrm__V1__Request req = NRM__V1__REQUEST__INIT;
    scenario_request(&req, NRM__V1__REQUEST__BODY_RELEASE_BED, &rel);
    req.request_id = "";
    Nrm__V1__Reply *reply = harness_call(h, "shelter", shelter_fixture_one_bed.operator_id, &req);
    assert_non_null(reply);
    assert_int_equal(reply->status, NRM__V1__STATUS__STATUS_OK);
    nrm__v1__reply__free_unpacked(reply, NULL);
    snprintf(sql, sizeof sql,
             "SELECT count(*) FROM shelter.allocations WHERE case_id = '%s' AND state = 'held'", y);
    assert_int_equal(harness_sql_int(h, sql), 1);
}

/* A waiting woman written into the queue at requested_at_ms among the men (their requested_at_ms
 * is their number), an emergency like them. */
static void s_queued_woman(const char *case_id, int requested_at_ms)
{
    char sql[SQL_MAX];
    snprintf(sql, sizeof sql,
             "WITH ins AS (INSERT INTO shelter.waitlist (case_id, request_event_id, region,"
             " urgency, safety_risk, is_minor, age_years, gender, languages, disability,"
             " children, beds, requested_at_ms, reason) VALUES ('%s', gen_random_uuid(), 'MA-04',"
             " %d, 2, false, 30, %d, '{fr}', false, 0, 1, %d, 'no_free_bed') RETURNING 1)"
             " SELECT count(*) FROM ins",
             case_id, EMERGENCY, NRM__V1__GENDER__GENDER_FEMALE, requested_at_ms);
    assert_int_equal(harness_sql_int(h, sql), 1);
}

static const char *s_state_of(const char *case_id)
{
    char sql[SQL_MAX];
    snprintf(sql, sizeof sql,
             "SELECT CASE WHEN EXISTS (SELECT 1 FROM shelter.allocations WHERE case_id = '%s'"
             " AND state = 'held') THEN 1 ELSE 0 END",
             case_id);
    return harness_sql_int(h, sql) ? "held" : "waiting";
}

static void test_two_free_beds_go_to_the_first_two_who_fit_past_the_first_read(void **state)
{
    /* W1 in the first 1000 read, W2 just after them, W3 behind her */
    s_queued_woman("depth-w1", 500);
    s_queued_woman("depth-w2", 999);
    s_queued_woman("depth-w3", 1100);
    char sql[SQL_MAX];
    snprintf(sql, sizeof sql,
             "SELECT occupied + held FROM shelter.shelters WHERE shelter_id = '%s'",
             shelter_fixture_one_bed.id);
    s_capacity((int)harness_sql_int(h, sql) + 2);
    /* the second read starts after the first one's entries still waiting, W2 first */
    assert_string_equal(s_state_of("depth-w1"), "held");
    assert_string_equal(s_state_of("depth-w2"), "held");
    assert_string_equal(s_state_of("depth-w3"), "waiting");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_a_free_bed_reaches_the_first_who_fits_however_far_down_the_queue),
        cmocka_unit_test(test_a_bed_no_one_fits_is_not_offered_to_the_queue_at_every_check),
        cmocka_unit_test(test_a_newcomer_the_free_bed_does_not_fit_is_not_offered_the_whole_queue),
        cmocka_unit_test(test_a_bed_given_back_reaches_who_joined_while_it_was_taken),
        cmocka_unit_test(test_two_free_beds_go_to_the_first_two_who_fit_past_the_first_read),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
