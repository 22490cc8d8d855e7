/* nrm-shelter places a consumer batch at once, against real intake, routing and shelter
 * processes. With nrm-shelter stopped, twelve women are reported in MA-04 (five beds) at three
 * urgencies, and in MA-06 (one bed for men) a man is reported, withdraws his consent, and a second
 * man is reported; then nrm-shelter starts and applies the whole backlog in one batch (one
 * transaction). In MA-04 exactly the five beds are allocated, to the first five requests, the
 * seven others wait with the positions one request at a time would have given them and in queue
 * order (urgency, then time), nothing is overbooked and the shelters' counters equal a recount. In
 * MA-06 the request and its withdrawal keep their order: the first man's hold is allocated, then
 * released and his request cancelled, and the freed bed goes to the second man. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "harness.h"
#include "nrm_crypto.h"
#include "nrm_event.h"
#include "scenario.h"
#include "shelter_fixture.h"

#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <signal.h>

#define WAIT_MS 60000
#define HOLD_S 86400
#define CHECK_MS 1000
#define SQL_MAX 768
#define WOMEN_N 12
#define BEDS 5
#define STATUS(name) NRM__V1__STATUS__STATUS_##name
#define MANAGER "police-ma-04"

static const shelter_fixture_t s_network[] = {
    {"b04-women", "op-batch-rabat", "MA-04", BEDS,
     NRM__V1__SHELTER_POPULATION__SHELTER_POPULATION_WOMEN, 18, 120, false, false, "ar,fr,en"},
    {"b06-men", "op-batch-casa", "MA-06", 1, NRM__V1__SHELTER_POPULATION__SHELTER_POPULATION_MEN,
     18, 120, false, false, "ar,fr,en"},
};

static harness_t *h;
static char s_women[WOMEN_N][SHELTER_FIXTURE_ID];
static char s_man1[SHELTER_FIXTURE_ID], s_man2[SHELTER_FIXTURE_ID];

/* How many events of topic routing has sequenced. */
static const char s_sql_requested[] = "SELECT count(*) FROM routing.outbox"
                                      " WHERE topic = 'shelter.requested' AND seq IS NOT NULL";
static const char s_sql_withdrawn[] = "SELECT count(*) FROM routing.outbox"
                                      " WHERE topic = 'shelter.request_withdrawn'"
                                      " AND seq IS NOT NULL";

/* Reports a person in region (a man when male) as the case manager; case_id receives the case. */
static int s_report(const char *region, bool male, int urgency, char case_id[SHELTER_FIXTURE_ID])
{
    static int n;
    char name[64];
    snprintf(name, sizeof name, "Batch Person %d", ++n);
    scenario_report_t s;
    shelter_fixture_person(&s, region, name, "fr");
    if (male)
        s.profile.gender = NRM__V1__GENDER__GENDER_MALE;
    s.report.urgency = (Nrm__V1__Urgency)urgency;
    return shelter_fixture_submit(h, &s, MANAGER, case_id);
}

/* The case manager withdraws the person's consent to referral; 0 when intake said OK. */
static int s_withdraw_consent(const char *case_id)
{
    Nrm__V1__WithdrawConsent w = NRM__V1__WITHDRAW_CONSENT__INIT;
    w.case_id = (char *)case_id;
    Nrm__V1__Request req = NRM__V1__REQUEST__INIT;
    scenario_request(&req, NRM__V1__REQUEST__BODY_WITHDRAW_CONSENT, &w);
    req.request_id = "";
    Nrm__V1__Reply *reply = harness_call(h, "intake", MANAGER, &req);
    int ok = reply && reply->status == STATUS(OK) ? 0 : -1;
    if (reply)
        nrm__v1__reply__free_unpacked(reply, NULL);
    return ok;
}

/* The backlog, built while nrm-shelter is stopped, then applied by it from its start. */
static int setup(void **state)
{
    h = harness_new("shelter_batch");
    shelter_fixture_use(h, s_network, sizeof s_network / sizeof *s_network, HOLD_S, CHECK_MS);
    if (harness_start(h, "intake", 0) != 0 || harness_start(h, "routing", 0) != 0)
        return -1;
    /* MA-06: a request, its withdrawal, then another man's request */
    if (s_report("MA-06", true, NRM__V1__URGENCY__URGENCY_URGENT, s_man1) != 0 ||
        harness_wait_sql(h, s_sql_requested, 1, WAIT_MS) != 1 || s_withdraw_consent(s_man1) != 0 ||
        harness_wait_sql(h, s_sql_withdrawn, 1, WAIT_MS) != 1 ||
        s_report("MA-06", true, NRM__V1__URGENCY__URGENCY_ROUTINE, s_man2) != 0)
        return -1;
    /* MA-04: twelve women for five beds, urgencies routine, urgent, emergency in turn */
    for (int i = 0; i < WOMEN_N; i++)
        if (s_report("MA-04", false, NRM__V1__URGENCY__URGENCY_ROUTINE + i % 3, s_women[i]) != 0)
            return -1;
    if (harness_wait_sql(h, s_sql_requested, WOMEN_N + 2, WAIT_MS) != WOMEN_N + 2)
        return -1;
    long long head = harness_sql_int(h, "SELECT head FROM routing.stream_head");
    if (harness_start(h, "shelter", 0) != 0)
        return -1;
    char sql[SQL_MAX];
    snprintf(sql, sizeof sql,
             "SELECT (coalesce((SELECT seq FROM shelter.checkpoints WHERE stream = 'routing'), 0)"
             " >= %lld)::int",
             head);
    if (harness_wait_sql(h, sql, 1, WAIT_MS) != 1)
        return -1;
    shelter_fixture_settle(h);
    return 0;
}

static int teardown(void **state)
{
    harness_destroy(&h);
    return 0;
}

/* A number a query returns, the query formatted with one string. */
static long long s_int(const char *fmt, const char *arg)
{
    char sql[SQL_MAX];
    snprintf(sql, sizeof sql, fmt, arg);
    return harness_sql_int(h, sql);
}

/* One woman's request as routing published it, with its place in routing's stream. */
typedef struct {
    const char *case_id;
    int urgency;
    int64_t at_ms;
    int64_t seq;
} s_request_t;

/* True when a (earlier in the stream) waits ahead of b: higher urgency, or the same and not later.
 */
static bool s_ahead(const s_request_t *a, const s_request_t *b)
{
    return a->urgency > b->urgency || (a->urgency == b->urgency && a->at_ms <= b->at_ms);
}

/* Index of case_id among the women, or -1. */
static int s_woman(const char *case_id)
{
    for (int i = 0; i < WOMEN_N; i++)
        if (strcmp(s_women[i], case_id) == 0)
            return i;
    return -1;
}

static void
test_one_batch_with_more_requests_than_beds_allocates_exactly_the_beds_in_order(void **state)
{
    /* the whole backlog was one transaction */
    assert_int_equal(harness_sql_int(h, "SELECT count(DISTINCT created_at) FROM"
                                        " (SELECT created_at FROM shelter.allocations UNION ALL"
                                        " SELECT created_at FROM shelter.waitlist) t"),
                     1);
    /* the expected queue, from routing's stream */
    Nrm__V1__Event **events = NULL;
    size_t n = harness_fetch_all(h, "routing", &events), nq = 0;
    s_request_t queue[WOMEN_N];
    for (size_t i = 0; i < n; i++) {
        const Nrm__V1__Event *ev = events[i];
        int w = s_woman(ev->case_id);
        if (ev->body_case == NRM__V1__EVENT__BODY_SHELTER_REQUESTED && w >= 0 && nq < WOMEN_N)
            queue[nq++] = (s_request_t){s_women[w], ev->shelter_requested->urgency,
                                        ev->occurred_at_ms, ev->seq};
    }
    for (size_t i = 0; i < n; i++)
        nrm__v1__event__free_unpacked(events[i], NULL);
    free(events);
    assert_int_equal(nq, WOMEN_N);

    /* the first five (routing's order) hold the five beds; the others wait, each told the place
     * it took: behind the earlier ones ahead of it in the queue */
    for (size_t i = 0; i < nq; i++) {
        Nrm__V1__Event *ev =
            shelter_fixture_outcome(h, queue[i].case_id, NRM__V1__EVENT__BODY__NOT_SET, WAIT_MS);
        assert_non_null(ev);
        if (i < BEDS) {
            assert_int_equal(ev->body_case, NRM__V1__EVENT__BODY_SHELTER_ALLOCATED);
            assert_string_equal(ev->shelter_allocated->shelter_id, "b04-women");
            assert_int_equal(s_int("SELECT count(*) FROM shelter.allocations WHERE case_id = '%s'"
                                   " AND state = 'held' AND shelter_id = 'b04-women'",
                                   queue[i].case_id),
                             1);
        } else {
            int position = 1;
            for (size_t j = BEDS; j < i; j++)
                position += s_ahead(&queue[j], &queue[i]);
            assert_int_equal(ev->body_case, NRM__V1__EVENT__BODY_SHELTER_WAITLISTED);
            assert_int_equal(ev->shelter_waitlisted->position, position);
            assert_non_null(strstr(ev->shelter_waitlisted->reason, "no_free_bed"));
        }
        nrm__v1__event__free_unpacked(ev, NULL);
    }
    /* the stored queue is in queue order: urgency, then time, then routing's order */
    s_request_t waiting[WOMEN_N];
    size_t nw = 0;
    for (size_t i = BEDS; i < nq; i++) {
        size_t at = nw++;
        while (at > 0 && (waiting[at - 1].urgency < queue[i].urgency ||
                          (waiting[at - 1].urgency == queue[i].urgency &&
                           waiting[at - 1].at_ms > queue[i].at_ms))) {
            waiting[at] = waiting[at - 1];
            at--;
        }
        waiting[at] = queue[i];
    }
    char expected[SQL_MAX] = "", sql[SQL_MAX];
    size_t used = 0;
    for (size_t i = 0; i < nw; i++)
        used += (size_t)snprintf(expected + used, sizeof expected - used, "%s%s", i ? "," : "",
                                 waiting[i].case_id);
    snprintf(sql, sizeof sql,
             "SELECT string_agg(case_id, ',' ORDER BY urgency DESC, requested_at_ms, entry_id)"
             " FROM shelter.waitlist WHERE state = 'waiting' AND region = 'MA-04'");
    PGresult *res = harness_sql(h, sql);
    assert_string_equal(PQgetvalue(res, 0, 0), expected);
    PQclear(res);
    assert_int_equal(harness_sql_int(h, "SELECT count(*) FROM shelter.allocations a JOIN"
                                        " shelter.shelters s USING (shelter_id)"
                                        " WHERE s.region = 'MA-04'"),
                     BEDS);
    assert_int_equal(harness_sql_int(h, "SELECT count(*) FROM shelter.waitlist"
                                        " WHERE region = 'MA-04' AND state = 'waiting'"),
                     WOMEN_N - BEDS);
    /* never overbooked, and the counters are what the allocations say */
    assert_int_equal(harness_sql_int(h, "SELECT held FROM shelter.shelters"
                                        " WHERE shelter_id = 'b04-women'"),
                     BEDS);
    assert_int_equal(harness_sql_int(h, "SELECT count(*) FROM shelter.shelters"
                                        " WHERE occupied + held > capacity"),
                     0);
    assert_int_equal(harness_sql_int(h, "SELECT count(*) FROM shelter.shelters s WHERE s.held <>"
                                        " (SELECT coalesce(sum(beds), 0) FROM shelter.allocations a"
                                        " WHERE a.shelter_id = s.shelter_id AND a.state = 'held')"
                                        " OR s.occupied <> (SELECT coalesce(sum(beds), 0) FROM"
                                        " shelter.allocations a WHERE a.shelter_id = s.shelter_id"
                                        " AND a.state = 'occupied')"),
                     0);
    /* every request is remembered for RequestBed */
    assert_int_equal(harness_sql_int(h, "SELECT count(*) FROM shelter.bed_requests"
                                        " WHERE region = 'MA-04' AND NOT withdrawn"),
                     WOMEN_N);
}

/* The topics of the shelter stream's events about case_id, in order, joined by spaces. */
static void s_story(const char *case_id, char *out, size_t size)
{
    Nrm__V1__Event **events = NULL;
    size_t n = harness_fetch_all(h, "shelter", &events), used = 0;
    out[0] = '\0';
    for (size_t i = 0; i < n; i++) {
        const char *topic = nrm_event_topic_of(events[i]->body_case);
        if (strcmp(events[i]->case_id, case_id) == 0 && topic && used < size)
            used += (size_t)snprintf(out + used, size - used, "%s%s", used ? " " : "", topic);
        nrm__v1__event__free_unpacked(events[i], NULL);
    }
    free(events);
}

static void test_a_request_and_its_withdrawal_in_one_batch_keep_their_order(void **state)
{
    char story[SQL_MAX];
    s_story(s_man1, story, sizeof story);
    assert_string_equal(story, "shelter.allocated shelter.released shelter.request_cancelled");
    s_story(s_man2, story, sizeof story);
    assert_string_equal(story, "shelter.allocated");
    assert_int_equal(s_int("SELECT count(*) FROM shelter.allocations WHERE case_id = '%s'"
                           " AND state = 'released'",
                           s_man1),
                     1);
    assert_int_equal(s_int("SELECT count(*) FROM shelter.allocations WHERE case_id = '%s'"
                           " AND state = 'held' AND shelter_id = 'b06-men'",
                           s_man2),
                     1);
    assert_int_equal(s_int("SELECT count(*) FROM shelter.bed_requests WHERE case_id = '%s'"
                           " AND withdrawn",
                           s_man1),
                     1);
    assert_int_equal(harness_sql_int(h, "SELECT held FROM shelter.shelters"
                                        " WHERE shelter_id = 'b06-men'"),
                     1);
    /* the kept counts of the queue equal a recount, after inserts and cancellations */
    assert_int_equal(harness_sql_int(h,
                                     "SELECT count(*) FROM (SELECT urgency, region, count(*)"
                                     " AS n FROM shelter.waitlist WHERE state = 'waiting'"
                                     " GROUP BY urgency, region) c"
                                     " FULL JOIN shelter.waitlist_ranks r USING (urgency, region)"
                                     " WHERE coalesce(c.n, 0) <> coalesce(r.waiting, 0)"),
                     0);
}

/* Writes into routing's outbox, as a second routing instance could commit it, a shelter request
 * for a new woman in MA-04 made at requested_ms, so that routing publishes it after requests made
 * later; case_id receives her case id. (Events are numbered in commit order, but carry the time
 * their transaction began.) */
static void s_request_made_at(int64_t requested_ms, int urgency, char case_id[SHELTER_FIXTURE_ID])
{
    char event_id[37];
    nrm_uuid_v4(event_id);
    nrm_uuid_v4(case_id);
    char *languages[] = {"fr"};
    Nrm__V1__Profile profile = NRM__V1__PROFILE__INIT;
    profile.age_years = 30;
    profile.gender = NRM__V1__GENDER__GENDER_FEMALE;
    profile.nationality = "MA";
    profile.n_languages = 1;
    profile.languages = languages;
    Nrm__V1__ShelterRequested body = NRM__V1__SHELTER_REQUESTED__INIT;
    body.profile = &profile;
    body.region = "MA-04";
    body.urgency = (Nrm__V1__Urgency)urgency;
    body.beds = 1;
    Nrm__V1__Event ev = NRM__V1__EVENT__INIT;
    ev.event_id = event_id;
    ev.stream = "routing";
    ev.topic = "shelter.requested";
    ev.case_id = case_id;
    ev.occurred_at_ms = requested_ms;
    ev.body_case = NRM__V1__EVENT__BODY_SHELTER_REQUESTED;
    ev.shelter_requested = &body;
    size_t len = 0;
    uint8_t *payload = nrm_event_pack(&ev, &len);
    char hex[1024];
    assert_true(len * 2 < sizeof hex);
    sodium_bin2hex(hex, sizeof hex, payload, len);
    free(payload);
    assert_int_equal(harness_sql_intf(h,
                                      "WITH ins AS (INSERT INTO routing.outbox (event_id, topic,"
                                      " payload) VALUES ('%s', 'shelter.requested',"
                                      " decode('%s', 'hex')) RETURNING 1)"
                                      " SELECT count(*) FROM ins, pg_notify('routing_outbox', '')",
                                      event_id, hex),
                     1);
}

/* A request applied after routine ones that wait, but made before them, waits ahead of them:
 * it is told the place behind the more urgent ones only, and the stored queue puts it first
 * among its urgency. */
static void test_a_request_made_before_those_waiting_but_applied_after_them_goes_ahead(void **s)
{
    const int routine = NRM__V1__URGENCY__URGENCY_ROUTINE;
    long long waiting_routine =
        harness_sql_intf(h,
                         "SELECT count(*) FROM shelter.waitlist WHERE state = 'waiting'"
                         " AND urgency = %d",
                         routine);
    long long ahead =
        harness_sql_intf(h,
                         "SELECT count(*) FROM shelter.waitlist WHERE state = 'waiting'"
                         " AND urgency > %d",
                         routine);
    assert_true(waiting_routine >= 1); /* the ones it goes ahead of */
    long long first = harness_sql_intf(h,
                                       "SELECT min(requested_at_ms) FROM shelter.waitlist"
                                       " WHERE state = 'waiting' AND urgency = %d",
                                       routine);
    char early[SHELTER_FIXTURE_ID];
    s_request_made_at(first - 1000, routine, early);
    Nrm__V1__Event *ev =
        shelter_fixture_outcome(h, early, NRM__V1__EVENT__BODY_SHELTER_WAITLISTED, WAIT_MS);
    assert_non_null(ev);
    assert_int_equal(ev->body_case, NRM__V1__EVENT__BODY_SHELTER_WAITLISTED);
    assert_int_equal(ev->shelter_waitlisted->position, ahead + 1);
    nrm__v1__event__free_unpacked(ev, NULL);
    char sql[SQL_MAX];
    snprintf(sql, sizeof sql,
             "SELECT ((SELECT case_id FROM shelter.waitlist WHERE state = 'waiting'"
             " AND urgency = %d ORDER BY requested_at_ms, entry_id LIMIT 1) = '%s')::int",
             routine, early);
    assert_int_equal(harness_sql_int(h, sql), 1);
}

/* In one batch: the men's bed given back (nobody waiting fits it: the pass finds no one), taken
 * by X, X's request withdrawn: the bed, given back again, goes to Y, who was waitlisted while X
 * held it, as one event at a time gives. Within one transaction the shelter row's version does
 * not move, so the pass must not be skipped as one that changed nothing. */
static void test_a_bed_taken_and_given_back_in_one_batch_reaches_who_waited_meanwhile(void **s)
{
    char x[SHELTER_FIXTURE_ID], y[SHELTER_FIXTURE_ID], sql[SQL_MAX];
    long long requested = harness_sql_int(h, s_sql_requested),
              withdrawn = harness_sql_int(h, s_sql_withdrawn);
    assert_true(WIFEXITED(harness_signal(h, "shelter", 0, SIGTERM)));
    assert_int_equal(s_withdraw_consent(s_man2), 0); /* he held the men's bed */
    assert_int_equal(harness_wait_sql(h, s_sql_withdrawn, withdrawn + 1, WAIT_MS), withdrawn + 1);
    assert_int_equal(s_report("MA-06", true, NRM__V1__URGENCY__URGENCY_ROUTINE, x), 0);
    assert_int_equal(harness_wait_sql(h, s_sql_requested, requested + 1, WAIT_MS), requested + 1);
    assert_int_equal(s_report("MA-06", true, NRM__V1__URGENCY__URGENCY_ROUTINE, y), 0);
    assert_int_equal(harness_wait_sql(h, s_sql_requested, requested + 2, WAIT_MS), requested + 2);
    assert_int_equal(s_withdraw_consent(x), 0);
    assert_int_equal(harness_wait_sql(h, s_sql_withdrawn, withdrawn + 2, WAIT_MS), withdrawn + 2);
    long long head = harness_sql_int(h, "SELECT head FROM routing.stream_head");
    assert_int_equal(harness_start(h, "shelter", 0), 0);
    snprintf(sql, sizeof sql,
             "SELECT (coalesce((SELECT seq FROM shelter.checkpoints WHERE stream = 'routing'), 0)"
             " >= %lld)::int",
             head);
    assert_int_equal(harness_wait_sql(h, sql, 1, WAIT_MS), 1);
    snprintf(sql, sizeof sql,
             "SELECT count(*) FROM shelter.allocations WHERE case_id = '%s' AND state = 'held'"
             " AND shelter_id = 'b06-men'",
             y);
    assert_int_equal(harness_wait_sql(h, sql, 1, 4 * CHECK_MS), 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(
            test_one_batch_with_more_requests_than_beds_allocates_exactly_the_beds_in_order),
        cmocka_unit_test(test_a_request_and_its_withdrawal_in_one_batch_keep_their_order),
        cmocka_unit_test(
            test_a_request_made_before_those_waiting_but_applied_after_them_goes_ahead),
        cmocka_unit_test(test_a_bed_taken_and_given_back_in_one_batch_reaches_who_waited_meanwhile),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
