/* 200 women reported at once, 50 beds, two nrm-shelter instances on one database: exactly 50
 * beds are allocated, 150 women wait in a queue numbered 1..150, no shelter is over capacity,
 * and the database itself refuses an overbooking whoever attempts it. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "harness.h"
#include "nrm_client.h"
#include "nrm_time.h"
#include "scenario.h"
#include "shelter_fixture.h"

#include <czmq.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define REQUESTS 200
#define BEDS 50
#define WAITING (REQUESTS - BEDS)
#define HOLD_S 86400
#define CHECK_MS 1000
#define OUTCOME_TIMEOUT_MS 120000
#define NAME_MAX_LEN 64
#define REGIONS 7
#define SQL_MAX 512
#define POLL_MS 50
#define WOMEN NRM__V1__SHELTER_POPULATION__SHELTER_POPULATION_WOMEN
#define MIXED NRM__V1__SHELTER_POPULATION__SHELTER_POPULATION_MIXED

/* Five shelters of ten beds, each able to take any adult woman. */
static const shelter_fixture_t s_network[] = {
    {"c01-mixed", "op-c-north", "MA-01", 10, MIXED, 18, 120, false, false, "ar,fr"},
    {"c02-women", "op-c-east", "MA-02", 10, WOMEN, 18, 120, false, false, "ar,fr"},
    {"c04-women", "op-c-rabat", "MA-04", 10, WOMEN, 18, 120, false, false, "ar,fr,en"},
    {"c06-women", "op-c-casa", "MA-06", 10, WOMEN, 18, 120, false, false, "ar,fr,en"},
    {"c07-mixed", "op-c-south", "MA-07", 10, MIXED, 18, 120, false, false, "ar,fr"},
};

static harness_t *h;

static int setup(void **state)
{
    h = harness_new("shelter_concurrency");
    shelter_fixture_use(h, s_network, sizeof s_network / sizeof *s_network, HOLD_S, CHECK_MS);
    if (harness_start(h, "intake", 0) != 0 || harness_start(h, "routing", 0) != 0 ||
        harness_start(h, "shelter", 0) != 0)
        return -1;
    return harness_start(h, "shelter", 1);
}

static int teardown(void **state)
{
    harness_destroy(&h);
    return 0;
}

/* The last routing sequence applied by a shelter instance, from its Pong. */
static long long s_checkpoint(int instance)
{
    Nrm__V1__Ping ping = NRM__V1__PING__INIT;
    Nrm__V1__Request req = NRM__V1__REQUEST__INIT;
    scenario_request(&req, NRM__V1__REQUEST__BODY_PING, &ping);
    req.request_id = "";
    Nrm__V1__Reply *reply = harness_call_at(h, "shelter", instance, "coordinator", &req);
    assert_non_null(reply);
    long long seq = -1;
    for (size_t i = 0; i < reply->pong->n_consumers; i++)
        if (strcmp(reply->pong->consumers[i]->stream, "routing") == 0)
            seq = reply->pong->consumers[i]->checkpoint;
    nrm__v1__reply__free_unpacked(reply, NULL);
    return seq;
}

static void test_200_requests_for_50_beds_on_two_instances(void **state)
{
    static scenario_report_t reports[REQUESTS];
    static char names[REQUESTS][NAME_MAX_LEN];
    static char case_ids[REQUESTS][SHELTER_FIXTURE_ID];
    static const char *const regions[REGIONS] = {"MA-01", "MA-02", "MA-03", "MA-04",
                                                 "MA-05", "MA-06", "MA-07"};
    for (int i = 0; i < REQUESTS; i++) {
        snprintf(names[i], NAME_MAX_LEN, "Concurrent Woman %03d", i);
        shelter_fixture_person(&reports[i], regions[i % REGIONS], names[i], "fr");
    }
    int64_t started = nrm_mono_ms();
    assert_int_equal(
        shelter_fixture_submit_many(h, reports, REQUESTS, "hotline-national", case_ids), REQUESTS);
    int64_t submitted = nrm_mono_ms();
    assert_int_equal(harness_wait_sql(h,
                                      "SELECT count(*) FROM shelter.outbox WHERE topic IN"
                                      " ('shelter.allocated', 'shelter.waitlisted')",
                                      REQUESTS, OUTCOME_TIMEOUT_MS),
                     REQUESTS);
    int64_t decided = nrm_mono_ms();

    /* the published outcomes: 50 beds, and a queue numbered 1..150 without a gap */
    Nrm__V1__Event **allocated = NULL, **waitlisted = NULL;
    size_t n_allocated = shelter_fixture_events(h, "shelter.allocated", &allocated);
    size_t n_waitlisted = shelter_fixture_events(h, "shelter.waitlisted", &waitlisted);
    assert_int_equal(n_allocated, BEDS);
    assert_int_equal(n_waitlisted, WAITING);
    static bool position_seen[WAITING + 1];
    for (size_t i = 0; i < n_waitlisted; i++) {
        int position = waitlisted[i]->shelter_waitlisted->position;
        assert_true(position >= 1 && position <= WAITING);
        assert_false(position_seen[position]);
        position_seen[position] = true;
    }
    shelter_fixture_events_free(allocated, n_allocated);
    shelter_fixture_events_free(waitlisted, n_waitlisted);

    /* the database: every case has exactly one outcome, every shelter full and not beyond */
    assert_int_equal(harness_sql_int(h, "SELECT count(DISTINCT case_id) FROM shelter.allocations"
                                        " WHERE state = 'held'"),
                     BEDS);
    assert_int_equal(harness_sql_int(h, "SELECT count(DISTINCT case_id) FROM shelter.waitlist"
                                        " WHERE state = 'waiting'"),
                     WAITING);
    assert_int_equal(harness_sql_int(h, "SELECT count(*) FROM shelter.allocations a JOIN"
                                        " shelter.waitlist w USING (case_id)"),
                     0);
    assert_int_equal(harness_sql_int(h, "SELECT count(*) FROM shelter.shelters"
                                        " WHERE occupied + held > capacity"),
                     0);
    assert_int_equal(harness_sql_int(h, "SELECT sum(held) FROM shelter.shelters"), BEDS);
    assert_int_equal(harness_sql_int(h, "SELECT count(*) FROM shelter.shelters s WHERE held <>"
                                        " (SELECT coalesce(sum(beds), 0) FROM shelter.allocations"
                                        " a WHERE a.shelter_id = s.shelter_id"
                                        " AND a.state = 'held')"),
                     0);
    for (int i = 0; i < REQUESTS; i++) {
        char sql[SQL_MAX];
        snprintf(sql, sizeof sql,
                 "SELECT (SELECT count(*) FROM shelter.allocations WHERE case_id = '%s')"
                 " + (SELECT count(*) FROM shelter.waitlist WHERE case_id = '%s')",
                 case_ids[i], case_ids[i]);
        assert_int_equal(harness_sql_int(h, sql), 1);
    }

    /* both instances are at routing's head */
    long long head = harness_sql_int(h, "SELECT head FROM routing.stream_head");
    assert_int_equal(harness_wait_sql(h,
                                      "SELECT seq FROM shelter.checkpoints"
                                      " WHERE stream = 'routing'",
                                      head, OUTCOME_TIMEOUT_MS),
                     head);
    int64_t deadline = nrm_mono_ms() + OUTCOME_TIMEOUT_MS;
    while ((s_checkpoint(0) != head || s_checkpoint(1) != head) && nrm_mono_ms() < deadline)
        zclock_sleep(POLL_MS);
    assert_int_equal(s_checkpoint(0), head);
    assert_int_equal(s_checkpoint(1), head);

    /* the database, not the service, is what refuses an overbooking */
    char state_code[6];
    shelter_fixture_sqlstate("shelter_concurrency",
                             "UPDATE shelter.shelters SET held = held + 1"
                             " WHERE shelter_id = 'c04-women'",
                             state_code);
    assert_string_equal(state_code, "23514"); /* check_violation */

    print_message("figure: %d requests for %d beds on two shelter instances: submitted in %lld ms,"
                  " all %d decided %lld ms after the first report\n",
                  REQUESTS, BEDS, (long long)(submitted - started), REQUESTS,
                  (long long)(decided - started));
}

/* Sends ReleaseBed for every allocation id, alternating between the two instances, all in
 * flight at once; returns how many were answered OK. */
static int s_release_all(char (*ids)[SHELTER_FIXTURE_ID], int n)
{
    nrm_client_t *clients[2] = {harness_client_new(h, "shelter", 0, "coordinator"),
                                harness_client_new(h, "shelter", 1, "coordinator")};
    Nrm__V1__ReleaseBed rel = NRM__V1__RELEASE_BED__INIT;
    rel.reason = "departed";
    Nrm__V1__Request req = NRM__V1__REQUEST__INIT;
    scenario_request(&req, NRM__V1__REQUEST__BODY_RELEASE_BED, &rel);
    char request_id[37];
    for (int i = 0; i < n; i++) {
        rel.allocation_id = ids[i];
        req.request_id = "";
        assert_int_equal(nrm_client_send(clients[i % 2], &req, request_id), 0);
    }
    int answered = 0, ok = 0;
    int64_t deadline = nrm_mono_ms() + OUTCOME_TIMEOUT_MS;
    while (answered < n && nrm_mono_ms() < deadline) {
        for (int c = 0; c < 2; c++) {
            Nrm__V1__Reply *reply;
            while ((reply = nrm_client_receive(clients[c])) != NULL) {
                answered++;
                ok += reply->status == NRM__V1__STATUS__STATUS_OK;
                nrm__v1__reply__free_unpacked(reply, NULL);
            }
        }
        zclock_sleep(POLL_MS / 5);
    }
    nrm_client_destroy(&clients[0]);
    nrm_client_destroy(&clients[1]);
    return ok;
}

static void test_50_releases_on_both_instances_promote_50_in_queue_order(void **state)
{
    static char ids[BEDS][SHELTER_FIXTURE_ID];
    PGresult *res = harness_sql(h, "SELECT allocation_id FROM shelter.allocations"
                                   " WHERE state = 'held' ORDER BY allocation_id");
    assert_int_equal(PQntuples(res), BEDS);
    for (int i = 0; i < BEDS; i++)
        snprintf(ids[i], SHELTER_FIXTURE_ID, "%s", PQgetvalue(res, i, 0));
    PQclear(res);
    int64_t started = nrm_mono_ms();
    assert_int_equal(s_release_all(ids, BEDS), BEDS);
    int64_t released = nrm_mono_ms();
    /* each release served the queue in its own transaction, on whichever instance it reached */
    assert_int_equal(harness_sql_int(h,
                                     "SELECT count(*) FROM shelter.allocations"
                                     " WHERE state = 'released' AND release_reason = 'departed'"),
                     BEDS);
    assert_int_equal(harness_sql_int(h, "SELECT count(*) FROM shelter.allocations"
                                        " WHERE state = 'held' AND reason LIKE 'from_waitlist%'"),
                     BEDS);
    assert_int_equal(harness_sql_int(h, "SELECT count(*) FROM shelter.waitlist"
                                        " WHERE state = 'waiting'"),
                     WAITING - BEDS);
    /* the two instances served the queue in its exact order: its first 50 got the beds */
    assert_int_equal(harness_sql_int(h, "SELECT count(*) FROM (SELECT state, row_number() OVER"
                                        " (ORDER BY urgency DESC, requested_at_ms, entry_id) AS"
                                        " place FROM shelter.waitlist) q"
                                        " WHERE (place <= 50) <> (state = 'allocated')"),
                     0);
    assert_int_equal(harness_sql_int(h, "SELECT count(*) FROM shelter.shelters"
                                        " WHERE occupied + held > capacity"),
                     0);
    assert_int_equal(harness_sql_int(h, "SELECT sum(held) FROM shelter.shelters"), BEDS);
    assert_int_equal(harness_sql_int(h, "SELECT count(*) FROM shelter.shelters s WHERE held <>"
                                        " (SELECT coalesce(sum(beds), 0) FROM shelter.allocations"
                                        " a WHERE a.shelter_id = s.shelter_id"
                                        " AND a.state = 'held')"),
                     0);
    assert_int_equal(harness_sql_int(h, "SELECT count(*) FROM shelter.outbox"
                                        " WHERE topic = 'shelter.allocated'"),
                     2 * BEDS);
    print_message("figure: %d releases through two instances at once, each promoting from the"
                  " queue, answered in %lld ms\n",
                  BEDS, (long long)(released - started));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_200_requests_for_50_beds_on_two_instances),
        cmocka_unit_test(test_50_releases_on_both_instances_promote_50_in_queue_order),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
