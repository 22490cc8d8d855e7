/* The waitlist against real processes: with one bed in town, a hold nobody confirms expires
 * (no_show) and the bed goes to whoever waits first by urgency, then by time; a release and a
 * capacity increase serve the queue in the same transaction. */
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
#define HOLD_S 3 /* long enough for B, C and D to queue while A holds the bed */
#define CHECK_MS 200
#define GAUGE_REFRESH_MS 100 /* metrics_refresh_ms: well within the hold that keeps 3 waiting */
#define SQL_MAX 512
#define STATUS(name) NRM__V1__STATUS__STATUS_##name
#define ROUTINE NRM__V1__URGENCY__URGENCY_ROUTINE
#define URGENT NRM__V1__URGENCY__URGENCY_URGENT
#define EMERGENCY NRM__V1__URGENCY__URGENCY_EMERGENCY

static harness_t *h;

static int setup(void **state)
{
    h = harness_new("shelter_waitlist");
    shelter_fixture_use(h, &shelter_fixture_one_bed, 1, HOLD_S, CHECK_MS);
    harness_config_set(h, "metrics_refresh_ms", json_integer(GAUGE_REFRESH_MS));
    return shelter_fixture_start(h);
}

static int teardown(void **state)
{
    harness_destroy(&h);
    return 0;
}

/* Reports a woman of the given urgency; returns her case id in case_id. */
static void s_report(const char *name, int urgency, char case_id[SHELTER_FIXTURE_ID])
{
    scenario_report_t s;
    shelter_fixture_person(&s, "MA-04", name, "fr");
    s.report.urgency = (Nrm__V1__Urgency)urgency;
    assert_int_equal(shelter_fixture_submit(h, &s, "police-ma-04", case_id), 0);
}

/* Waits for the case's outcome and checks it: a bed (position 0) or a place in the queue. */
static void s_expect(const char *case_id, int position)
{
    Nrm__V1__Event *ev = shelter_fixture_outcome(h, case_id,
                                                 position ? NRM__V1__EVENT__BODY_SHELTER_WAITLISTED
                                                          : NRM__V1__EVENT__BODY_SHELTER_ALLOCATED,
                                                 WAIT_MS);
    assert_non_null(ev);
    if (position == 0) {
        assert_int_equal(ev->body_case, NRM__V1__EVENT__BODY_SHELTER_ALLOCATED);
        assert_string_equal(ev->shelter_allocated->shelter_id, "w04-women");
    } else {
        assert_int_equal(ev->body_case, NRM__V1__EVENT__BODY_SHELTER_WAITLISTED);
        assert_int_equal(ev->shelter_waitlisted->position, position);
        assert_non_null(strstr(ev->shelter_waitlisted->reason, "no_free_bed"));
    }
    nrm__v1__event__free_unpacked(ev, NULL);
}

/* The state of the case's latest allocation right now ("" for none), without waiting. */
static void s_state(const char *case_id, char *out, size_t size)
{
    char sql[SQL_MAX];
    snprintf(sql, sizeof sql,
             "SELECT state FROM shelter.allocations WHERE case_id = '%s'"
             " ORDER BY created_at DESC LIMIT 1",
             case_id);
    PGresult *res = harness_sql(h, sql);
    snprintf(out, size, "%s", PQntuples(res) ? PQgetvalue(res, 0, 0) : "");
    PQclear(res);
}

/* Sends a request to the shelter service as agency; asserts OK. */
static void s_ok(const char *agency, Nrm__V1__Request *req)
{
    req->request_id = "";
    Nrm__V1__Reply *reply = harness_call(h, "shelter", agency, req);
    assert_non_null(reply);
    assert_int_equal(reply->status, STATUS(OK));
    nrm__v1__reply__free_unpacked(reply, NULL);
}

/* The allocation id of the case's live allocation; asserts there is one. */
static void s_allocation_of(const char *case_id, char out[SHELTER_FIXTURE_ID])
{
    assert_int_equal(shelter_fixture_allocation_of(h, case_id, out), 0);
}

/* Waits (a few refreshes) until shelter's Pong reports want waiting in region; asserts it. */
static void s_expect_pong_waitlist(const char *region, int64_t want)
{
    int64_t got = -1;
    for (int i = 0; i < 20 && got != want; i++) {
        got = harness_gauge(h, "shelter", "waitlist_length", "region", region);
        if (got != want)
            usleep(GAUGE_REFRESH_MS * 1000 / 2);
    }
    assert_int_equal(got, want);
}

/* One expected allocation-related event: its topic, whose case, and a detail (the position of a
 * waitlisting, the reason of a release, NULL otherwise). */
typedef struct {
    const char *topic;
    const char *case_id;
    const char *detail;
} s_step_t;

static void test_expiry_and_promotion_follow_urgency_then_time(void **state)
{
    char a[SHELTER_FIXTURE_ID], b[SHELTER_FIXTURE_ID], c[SHELTER_FIXTURE_ID], d[SHELTER_FIXTURE_ID],
        e[SHELTER_FIXTURE_ID], f[SHELTER_FIXTURE_ID], g[SHELTER_FIXTURE_ID], state_now[16],
        allocation[SHELTER_FIXTURE_ID];
    /* A takes the only bed; B (routine), C (emergency), D (urgent) queue behind her */
    s_report("Waiting Woman A", ROUTINE, a);
    s_expect(a, 0);
    s_report("Waiting Woman B", ROUTINE, b);
    s_report("Waiting Woman C", EMERGENCY, c);
    s_report("Waiting Woman D", URGENT, d);
    s_expect(b, 1);
    s_expect(c, 1);
    s_expect(d, 2);
    Nrm__V1__GetOccupancy g_req = NRM__V1__GET_OCCUPANCY__INIT;
    g_req.region = "MA-04";
    Nrm__V1__Request occ_req = NRM__V1__REQUEST__INIT;
    scenario_request(&occ_req, NRM__V1__REQUEST__BODY_GET_OCCUPANCY, &g_req);
    occ_req.request_id = "";
    Nrm__V1__Reply *occ = harness_call(h, "shelter", "coordinator", &occ_req);
    assert_non_null(occ);
    assert_int_equal(occ->occupancy->waitlist, 3);
    assert_int_equal(occ->occupancy->n_shelters, 1);
    assert_int_equal(occ->occupancy->shelters[0]->waitlist, 3);
    assert_int_equal(occ->occupancy->shelters[0]->held, 1);
    nrm__v1__reply__free_unpacked(occ, NULL);
    /* the Pong's gauge (what /metrics shows as nrm_waitlist_length) counts the same three */
    s_expect_pong_waitlist("MA-04", 3);

    /* A never arrives: her hold expires and the bed goes to C, the emergency */
    s_expect(c, 0);
    s_state(a, state_now, sizeof state_now);
    assert_string_equal(state_now, "released");

    /* C's shelter releases her bed (she declined): D gets it in the same transaction */
    s_allocation_of(c, allocation);
    Nrm__V1__ReleaseBed rel = NRM__V1__RELEASE_BED__INIT;
    rel.allocation_id = allocation;
    rel.reason = "declined";
    Nrm__V1__Request req = NRM__V1__REQUEST__INIT;
    scenario_request(&req, NRM__V1__REQUEST__BODY_RELEASE_BED, &rel);
    s_ok("op-wait-test", &req);
    s_state(d, state_now, sizeof state_now);
    assert_string_equal(state_now, "held");

    /* D does not come either: B, the last in the queue, gets the bed and arrives */
    s_expect(b, 0);
    s_allocation_of(b, allocation);
    Nrm__V1__ConfirmArrival conf = NRM__V1__CONFIRM_ARRIVAL__INIT;
    conf.allocation_id = allocation;
    scenario_request(&req, NRM__V1__REQUEST__BODY_CONFIRM_ARRIVAL, &conf);
    s_ok("op-wait-test", &req);

    /* E and F (routine, in that order) and G (urgent) wait; two more beds serve G then E */
    s_report("Waiting Woman E", ROUTINE, e);
    s_expect(e, 1);
    s_report("Waiting Woman F", ROUTINE, f);
    s_expect(f, 2);
    s_report("Waiting Woman G", URGENT, g);
    s_expect(g, 1);
    shelter_fixture_upsert_t up;
    shelter_fixture_upsert(&up, &shelter_fixture_one_bed);
    up.upsert.capacity = 3;
    s_ok("op-wait-test", &up.request);
    s_state(g, state_now, sizeof state_now);
    assert_string_equal(state_now, "held");
    s_state(e, state_now, sizeof state_now);
    assert_string_equal(state_now, "held");
    s_state(f, state_now, sizeof state_now);
    assert_string_equal(state_now, "");

    /* the stream tells the same story, in this order */
    const s_step_t story[] = {
        {"shelter.allocated", a, NULL},      {"shelter.waitlisted", b, "1"},
        {"shelter.waitlisted", c, "1"},      {"shelter.waitlisted", d, "2"},
        {"shelter.released", a, "no_show"},  {"shelter.allocated", c, NULL},
        {"shelter.released", c, "declined"}, {"shelter.allocated", d, NULL},
        {"shelter.released", d, "no_show"},  {"shelter.allocated", b, NULL},
        {"shelter.waitlisted", e, "1"},      {"shelter.waitlisted", f, "2"},
        {"shelter.waitlisted", g, "1"},      {"shelter.allocated", g, NULL},
        {"shelter.allocated", e, NULL},
    };
    shelter_fixture_settle(h);
    Nrm__V1__Event **events = NULL;
    size_t n = harness_fetch_all(h, "shelter", &events), k = 0;
    for (size_t i = 0; i < n; i++) {
        const Nrm__V1__Event *ev = events[i];
        if (strcmp(ev->topic, "shelter.capacity_changed") == 0)
            continue;
        assert_true(k < sizeof story / sizeof *story);
        assert_string_equal(ev->topic, story[k].topic);
        assert_string_equal(ev->case_id, story[k].case_id);
        if (ev->body_case == NRM__V1__EVENT__BODY_SHELTER_WAITLISTED) {
            char pos[8];
            snprintf(pos, sizeof pos, "%d", ev->shelter_waitlisted->position);
            assert_string_equal(pos, story[k].detail);
        } else if (ev->body_case == NRM__V1__EVENT__BODY_SHELTER_RELEASED) {
            assert_string_equal(ev->shelter_released->reason, story[k].detail);
        } else if (k > 0) {
            assert_non_null(strstr(ev->shelter_allocated->reason, "from_waitlist"));
        }
        k++;
    }
    assert_int_equal(k, sizeof story / sizeof *story);
    for (size_t i = 0; i < n; i++)
        nrm__v1__event__free_unpacked(events[i], NULL);
    free(events);
    assert_int_equal(harness_sql_int(h, "SELECT count(*) FROM shelter.shelters"
                                        " WHERE occupied + held > capacity"),
                     0);
    /* no hold ended before its time */
    assert_int_equal(harness_sql_int(h, "SELECT count(*) FROM shelter.allocations"
                                        " WHERE release_reason = 'no_show'"),
                     2);
    assert_int_equal(harness_sql_int(h, "SELECT count(*) FROM shelter.allocations"
                                        " WHERE release_reason = 'no_show'"
                                        " AND released_at < to_timestamp(hold_until_ms / 1000.0)"),
                     0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_expiry_and_promotion_follow_urgency_then_time),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
