/* Nobody lost between services, against real nrm-intake, nrm-routing, nrm-shelter and
 * nrm-notify processes: a bed hold that expires without an arrival (no_show) reaches routing and
 * the coordinator's stream (shelter.no_show, which notify has for the coordinator and the case
 * manager) and the case manager gets a bed again with RequestBed; a consent withdrawal cancels a
 * waitlist place and an unconfirmed hold (the freed bed goes to the next in the queue) but not a
 * confirmed stay; a raised urgency brings the deadlines of pending referrals forward and expiry
 * follows them, a lowered one pushes none back; RequestBed's bad input is refused with its Status
 * and field and changes nothing.
 *
 * One shelter per population, one bed each (two in the family shelter), so that the tests'
 * people never compete: women (no_show, bad input), men (consent), families (confirmed stay).
 * Holds last ten minutes; a hold's expiry is brought forward by setting its hold_until_ms in the
 * past, and the service's own timer then releases it as a no_show. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "harness.h"
#include "nrm_event.h"
#include "nrm_time.h"
#include "routing_scenario.h"
#include "scenario.h"
#include "shelter_fixture.h"

#include <czmq.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define WAIT_MS SHELTER_FIXTURE_WAIT_MS
#define HOLD_S 600
#define CHECK_MS 200
#define SQL_MAX 640
#define MS_PER_S 1000
#define ROUTINE_DEADLINE_S 3600
#define URGENT_DEADLINE_S 1800
#define EMERGENCY_DEADLINE_S 2
#define SLACK_MS 5000 /* between the update's clock and the test's */
#define STATUS(name) NRM__V1__STATUS__STATUS_##name
#define ROUTINE NRM__V1__URGENCY__URGENCY_ROUTINE
#define URGENT NRM__V1__URGENCY__URGENCY_URGENT
#define EMERGENCY NRM__V1__URGENCY__URGENCY_EMERGENCY
#define SHELTER NRM__V1__SERVICE_TYPE__SERVICE_TYPE_SHELTER
#define MEDICAL NRM__V1__SERVICE_TYPE__SERVICE_TYPE_MEDICAL
#define BODY(name) NRM__V1__EVENT__BODY_##name
#define MANAGER "police-ma-04"
#define COORDINATOR "coordinator"
#define STRANGER "consulate-ng"
#define FIELD "request_bed.case_id"

static const shelter_fixture_t s_shelters[] = {
    {"flow-women", "op-flow-women", "MA-04", 1,
     NRM__V1__SHELTER_POPULATION__SHELTER_POPULATION_WOMEN, 18, 120, false, false, "ar,fr,en"},
    {"flow-men", "op-flow-men", "MA-06", 1, NRM__V1__SHELTER_POPULATION__SHELTER_POPULATION_MEN, 18,
     120, false, false, "ar,fr,en"},
    {"flow-families", "op-flow-families", "MA-01", 2,
     NRM__V1__SHELTER_POPULATION__SHELTER_POPULATION_FAMILIES, 18, 120, true, false, "ar,fr,en"},
};

static harness_t *h;

static int setup(void **state)
{
    h = harness_new("shelter_flow");
    shelter_fixture_use(h, s_shelters, sizeof s_shelters / sizeof *s_shelters, HOLD_S, CHECK_MS);
    harness_config_set(h, "routing.deadlines_s.ROUTINE", json_integer(ROUTINE_DEADLINE_S));
    harness_config_set(h, "routing.deadlines_s.URGENT", json_integer(URGENT_DEADLINE_S));
    harness_config_set(h, "routing.deadlines_s.EMERGENCY", json_integer(EMERGENCY_DEADLINE_S));
    harness_config_set(h, "routing.expiry_check_ms", json_integer(CHECK_MS));
    if (harness_start(h, "intake", 0) != 0 || harness_start(h, "routing", 0) != 0 ||
        harness_start(h, "shelter", 0) != 0)
        return -1;
    return harness_start(h, "notify", 0); /* who hears shelter.no_show */
}

static int teardown(void **state)
{
    harness_destroy(&h);
    return 0;
}

/* ---- helpers ---- */

/* Reports an adult (a woman, or a man when male) in region with children accompanying her,
 * needing a shelter and medical care; case_id receives the case. */
static void s_report(const char *region, bool male, int children, char case_id[SHELTER_FIXTURE_ID])
{
    static int n;
    char name[64];
    snprintf(name, sizeof name, "Flow Person %d", ++n);
    scenario_report_t s;
    shelter_fixture_person(&s, region, name, "fr");
    if (male)
        s.profile.gender = NRM__V1__GENDER__GENDER_MALE;
    s.profile.accompanying_children = children;
    assert_int_equal(shelter_fixture_submit(h, &s, MANAGER, case_id), 0);
}

/* Events about case_id with this topic on service's stream (everything committed sequenced
 * first). Returns the count; *last (may be NULL) receives the latest (caller frees). */
static size_t s_events(const char *service, const char *case_id, const char *topic,
                       Nrm__V1__Event **last)
{
    char sql[SQL_MAX];
    snprintf(sql, sizeof sql, "SELECT count(*) FROM %s.outbox WHERE seq IS NULL", service);
    harness_wait_sql(h, sql, 0, WAIT_MS);
    Nrm__V1__Event **all = NULL;
    size_t n = harness_fetch_all(h, service, &all), count = 0;
    if (last)
        *last = NULL;
    for (size_t i = 0; i < n; i++) {
        const char *t = nrm_event_topic_of(all[i]->body_case);
        if (strcmp(all[i]->case_id, case_id) == 0 && t && strcmp(t, topic) == 0) {
            count++;
            if (last) {
                if (*last)
                    nrm__v1__event__free_unpacked(*last, NULL);
                *last = all[i];
                continue;
            }
        }
        nrm__v1__event__free_unpacked(all[i], NULL);
    }
    free(all);
    return count;
}

/* Waits until the stream has want such events; returns the latest (caller frees). */
static Nrm__V1__Event *s_wait_event(const char *service, const char *case_id, const char *topic,
                                    size_t want)
{
    for (int waited = 0; waited < WAIT_MS; waited += CHECK_MS) {
        Nrm__V1__Event *last = NULL;
        if (s_events(service, case_id, topic, &last) >= want)
            return last;
        if (last)
            nrm__v1__event__free_unpacked(last, NULL);
        zclock_sleep(CHECK_MS);
    }
    fail_msg("no %zu %s event(s) on the %s stream", want, topic, service);
    return NULL;
}

/* One text value of a query ("" when no row), into out. */
static void s_text(const char *sql, char *out, size_t size)
{
    PGresult *res = harness_sql(h, sql);
    snprintf(out, size, "%s", PQntuples(res) ? PQgetvalue(res, 0, 0) : "");
    PQclear(res);
}

/* Waits until the query's single text value equals want. */
static void s_wait_text(const char *sql, const char *want)
{
    char got[SQL_MAX] = "";
    for (int waited = 0; waited < WAIT_MS; waited += CHECK_MS) {
        s_text(sql, got, sizeof got);
        if (strcmp(got, want) == 0)
            return;
        zclock_sleep(CHECK_MS);
    }
    fail_msg("%s: '%s', not '%s'", sql, got, want);
}

/* The case's live allocation (held or occupied) into out ("" when none). */
static void s_live_allocation(const char *case_id, char out[SHELTER_FIXTURE_ID])
{
    char sql[SQL_MAX];
    snprintf(sql, sizeof sql,
             "SELECT allocation_id FROM shelter.allocations WHERE case_id = '%s'"
             " AND state <> 'released'",
             case_id);
    s_text(sql, out, SHELTER_FIXTURE_ID);
}

/* Where routing says the case's bed stands: waits for want. */
static void s_wait_bed_status(const char *case_id, const char *want)
{
    char sql[SQL_MAX];
    snprintf(sql, sizeof sql,
             "SELECT coalesce(bed_status, '') FROM routing.case_services"
             " WHERE case_id = '%s' AND service = %d",
             case_id, SHELTER);
    s_wait_text(sql, want);
}

/* Waits until shelter knows the case's manager (from intake's case.opened). */
static void s_wait_manager_known(const char *case_id)
{
    char sql[SQL_MAX];
    snprintf(sql, sizeof sql, "SELECT count(*) FROM shelter.case_managers WHERE case_id = '%s'",
             case_id);
    assert_int_equal(harness_wait_sql(h, sql, 1, WAIT_MS), 1);
}

/* Sends RequestBed {case_id} to shelter as agency; returns the Reply (caller frees). */
static Nrm__V1__Reply *s_request_bed(const char *agency, const char *case_id)
{
    Nrm__V1__RequestBed r = NRM__V1__REQUEST_BED__INIT;
    r.case_id = (char *)case_id;
    Nrm__V1__Request req = NRM__V1__REQUEST__INIT;
    scenario_request(&req, NRM__V1__REQUEST__BODY_REQUEST_BED, &r);
    Nrm__V1__Reply *reply = harness_call(h, "shelter", agency, &req);
    assert_non_null(reply);
    return reply;
}

/* RequestBed is refused with status, naming the case id field. */
static void s_request_bed_refused(const char *agency, const char *case_id, Nrm__V1__Status status)
{
    Nrm__V1__Reply *reply = s_request_bed(agency, case_id);
    if (reply->status != status)
        fprintf(stderr, "RequestBed as %s: %d %s: %s\n", agency, reply->status, reply->error_field,
                reply->error_message);
    assert_int_equal(reply->status, status);
    assert_string_equal(reply->error_field, FIELD);
    nrm__v1__reply__free_unpacked(reply, NULL);
}

/* Sends a request to service as agency and asserts OK. */
static void s_ok(const char *service, const char *agency, Nrm__V1__Request__BodyCase body,
                 void *message)
{
    Nrm__V1__Request req = NRM__V1__REQUEST__INIT;
    scenario_request(&req, body, message);
    Nrm__V1__Reply *reply = harness_call(h, service, agency, &req);
    assert_non_null(reply);
    assert_string_equal(reply->error_message, "");
    assert_int_equal(reply->status, STATUS(OK));
    nrm__v1__reply__free_unpacked(reply, NULL);
}

/* The case manager withdraws the person's consent to referral. */
static void s_withdraw_consent(const char *case_id)
{
    Nrm__V1__WithdrawConsent w = NRM__V1__WITHDRAW_CONSENT__INIT;
    w.case_id = (char *)case_id;
    s_ok("intake", MANAGER, NRM__V1__REQUEST__BODY_WITHDRAW_CONSENT, &w);
}

/* The case manager sets the case's urgency. */
static void s_set_urgency(const char *case_id, Nrm__V1__Urgency urgency)
{
    Nrm__V1__UpdateCase u = NRM__V1__UPDATE_CASE__INIT;
    u.case_id = (char *)case_id;
    u.urgency = urgency;
    s_ok("intake", MANAGER, NRM__V1__REQUEST__BODY_UPDATE_CASE, &u);
}

/* A number a query returns. */
static long long s_int(const char *fmt, const char *arg)
{
    char sql[SQL_MAX];
    snprintf(sql, sizeof sql, fmt, arg);
    return harness_sql_int(h, sql);
}

/* ---- no_show, and asking again ---- */

static void
test_a_no_show_reaches_routing_and_the_coordinator_and_a_new_request_gets_a_bed(void **state)
{
    char a[SHELTER_FIXTURE_ID], hold[SHELTER_FIXTURE_ID], again[SHELTER_FIXTURE_ID];
    s_report("MA-04", false, 0, a);
    Nrm__V1__Event *ev = shelter_fixture_outcome(h, a, BODY(SHELTER_ALLOCATED), WAIT_MS);
    assert_non_null(ev);
    nrm__v1__event__free_unpacked(ev, NULL);
    s_live_allocation(a, hold);
    assert_string_not_equal(hold, "");
    s_wait_bed_status(a, "held");

    /* nobody arrives: the hold's time passes and the service's timer releases it */
    char sql[SQL_MAX];
    snprintf(sql, sizeof sql,
             "UPDATE shelter.allocations SET hold_until_ms = 1 WHERE allocation_id = '%s'", hold);
    PQclear(harness_sql(h, sql));
    ev = s_wait_event("routing", a, "shelter.no_show", 1); /* fetched as the coordinator */
    assert_int_equal(ev->body_case, BODY(SHELTER_NO_SHOW));
    assert_string_equal(ev->shelter_no_show->allocation_id, hold);
    assert_string_equal(ev->shelter_no_show->shelter_id, "flow-women");
    assert_string_equal(ev->shelter_no_show->reason, "no_show");
    nrm__v1__event__free_unpacked(ev, NULL);
    s_wait_bed_status(a, "no_show");
    s_live_allocation(a, again);
    assert_string_equal(again, "");
    /* notify has it for the coordinator and for the case manager (delivered or not: the demo
     * subscriptions point nowhere) */
    snprintf(sql, sizeof sql,
             "SELECT count(DISTINCT agency_id) FROM notify.deliveries WHERE case_id = '%s'"
             " AND topic = 'shelter.no_show' AND agency_id IN ('%s', '%s')",
             a, COORDINATOR, MANAGER);
    assert_int_equal(harness_wait_sql(h, sql, 2, WAIT_MS), 2);

    /* the case manager asks again: the freed bed is hers once more */
    s_wait_manager_known(a);
    Nrm__V1__Reply *reply = s_request_bed(MANAGER, a);
    assert_string_equal(reply->error_message, "");
    assert_int_equal(reply->status, STATUS(OK));
    assert_string_equal(reply->allocation_ref->state, "held");
    s_live_allocation(a, again);
    assert_string_equal(reply->allocation_ref->allocation_id, again);
    assert_string_not_equal(again, hold);
    nrm__v1__reply__free_unpacked(reply, NULL);
    ev = s_wait_event("shelter", a, "shelter.allocated", 2);
    assert_string_equal(ev->shelter_allocated->allocation_id, again);
    assert_string_equal(ev->shelter_allocated->shelter_id, "flow-women");
    nrm__v1__event__free_unpacked(ev, NULL);
    s_wait_bed_status(a, "held");
}

static void test_request_bed_refuses_bad_input_with_its_field_and_changes_nothing(void **state)
{
    /* the first test's woman holds the only women's bed; a second one waits for it */
    char a[SHELTER_FIXTURE_ID], b[SHELTER_FIXTURE_ID], sql[SQL_MAX];
    snprintf(sql, sizeof sql,
             "SELECT case_id FROM shelter.allocations WHERE shelter_id = 'flow-women'"
             " AND state = 'held'");
    s_text(sql, a, sizeof a);
    assert_string_not_equal(a, "");
    s_report("MA-04", false, 0, b);
    Nrm__V1__Event *ev = shelter_fixture_outcome(h, b, BODY(SHELTER_WAITLISTED), WAIT_MS);
    assert_non_null(ev);
    nrm__v1__event__free_unpacked(ev, NULL);
    s_wait_manager_known(b);
    shelter_fixture_settle(h);
    long long head = harness_sql_int(h, "SELECT count(*) FROM shelter.outbox");
    const char *state_sql =
        "SELECT (SELECT count(*) FROM shelter.allocations) * 1000000"
        " + (SELECT count(*) FROM shelter.waitlist) * 1000"
        " + (SELECT count(*) FROM shelter.bed_requests WHERE request_event_id IS NOT NULL)";
    long long before = harness_sql_int(h, state_sql);

    char long_id[SHELTER_FIXTURE_ID + 8];
    memset(long_id, 'c', sizeof long_id - 1);
    long_id[sizeof long_id - 1] = '\0';
    s_request_bed_refused(MANAGER, "", STATUS(INVALID_ARGUMENT));
    s_request_bed_refused(MANAGER, long_id, STATUS(INVALID_ARGUMENT));
    s_request_bed_refused(MANAGER, "case-\xff\xfe", STATUS(INVALID_ARGUMENT)); /* not UTF-8 */
    s_request_bed_refused(COORDINATOR, "no-such-case", STATUS(NOT_FOUND));
    s_request_bed_refused(STRANGER, "no-such-case", STATUS(PERMISSION_DENIED)); /* as for a */
    s_request_bed_refused(STRANGER, a, STATUS(PERMISSION_DENIED));
    s_request_bed_refused(MANAGER, a, STATUS(FAILED_PRECONDITION));     /* holds the bed */
    s_request_bed_refused(COORDINATOR, b, STATUS(FAILED_PRECONDITION)); /* waits for one */

    assert_int_equal(harness_sql_int(h, state_sql), before);
    assert_int_equal(harness_sql_int(h, "SELECT count(*) FROM shelter.outbox"), head);
    assert_int_equal(s_int("SELECT count(*) FROM shelter.waitlist WHERE case_id = '%s'"
                           " AND state = 'waiting'",
                           b),
                     1);
}

/* ---- consent withdrawn ---- */

static void
test_a_consent_withdrawal_cancels_the_waitlist_place_and_the_unconfirmed_hold(void **state)
{
    /* one bed for men: A holds it, B and C wait behind him */
    char a[SHELTER_FIXTURE_ID], b[SHELTER_FIXTURE_ID], c[SHELTER_FIXTURE_ID],
        hold[SHELTER_FIXTURE_ID];
    s_report("MA-06", true, 0, a);
    Nrm__V1__Event *ev = shelter_fixture_outcome(h, a, BODY(SHELTER_ALLOCATED), WAIT_MS);
    assert_non_null(ev);
    nrm__v1__event__free_unpacked(ev, NULL);
    s_live_allocation(a, hold);
    s_report("MA-06", true, 0, b);
    s_report("MA-06", true, 0, c);
    /* (the queue is one for every shelter: the bad-input test's woman waits ahead of them) */
    ev = shelter_fixture_outcome(h, b, BODY(SHELTER_WAITLISTED), WAIT_MS);
    int position = ev->shelter_waitlisted->position;
    nrm__v1__event__free_unpacked(ev, NULL);
    ev = shelter_fixture_outcome(h, c, BODY(SHELTER_WAITLISTED), WAIT_MS);
    assert_int_equal(ev->shelter_waitlisted->position, position + 1);
    nrm__v1__event__free_unpacked(ev, NULL);

    /* B withdraws consent: routing withdraws his request, shelter takes him off the queue */
    s_withdraw_consent(b);
    ev = s_wait_event("routing", b, "shelter.request_withdrawn", 1);
    assert_string_equal(ev->shelter_request_withdrawn->reason, "consent_withdrawn");
    nrm__v1__event__free_unpacked(ev, NULL);
    ev = s_wait_event("shelter", b, "shelter.request_cancelled", 1);
    assert_string_equal(ev->shelter_request_cancelled->allocation_id, "");
    assert_string_equal(ev->shelter_request_cancelled->reason, "consent_withdrawn");
    nrm__v1__event__free_unpacked(ev, NULL);
    assert_int_equal(s_int("SELECT count(*) FROM shelter.waitlist WHERE case_id = '%s'"
                           " AND state = 'cancelled'",
                           b),
                     1);
    s_wait_bed_status(b, "cancelled");
    char sql[SQL_MAX];
    snprintf(sql, sizeof sql,
             "SELECT state FROM routing.case_services WHERE case_id = '%s' AND service = %d", b,
             SHELTER);
    s_wait_text(sql, "awaiting_consent");
    /* without consent, nobody asks again for him */
    s_wait_manager_known(b);
    s_request_bed_refused(MANAGER, b, STATUS(FAILED_PRECONDITION));

    /* A withdraws consent before arriving: his bed is freed and goes to C, next in the queue */
    s_withdraw_consent(a);
    ev = s_wait_event("shelter", a, "shelter.request_cancelled", 1);
    assert_string_equal(ev->shelter_request_cancelled->allocation_id, hold);
    assert_string_equal(ev->shelter_request_cancelled->shelter_id, "flow-men");
    nrm__v1__event__free_unpacked(ev, NULL);
    ev = s_wait_event("shelter", a, "shelter.released", 1);
    assert_string_equal(ev->shelter_released->reason, "consent_withdrawn");
    nrm__v1__event__free_unpacked(ev, NULL);
    ev = shelter_fixture_outcome(h, c, BODY(SHELTER_ALLOCATED), WAIT_MS);
    assert_int_equal(ev->body_case, BODY(SHELTER_ALLOCATED));
    assert_string_equal(ev->shelter_allocated->shelter_id, "flow-men");
    assert_non_null(strstr(ev->shelter_allocated->reason, "from_waitlist"));
    nrm__v1__event__free_unpacked(ev, NULL);
    assert_int_equal(harness_sql_int(h, "SELECT held + occupied FROM shelter.shelters"
                                        " WHERE shelter_id = 'flow-men'"),
                     1);
    /* B stays off the queue: the bed went to C, not back to him */
    assert_int_equal(s_int("SELECT count(*) FROM shelter.allocations WHERE case_id = '%s'", b), 0);
}

static void test_request_bed_for_a_case_with_no_bed_request_tells_its_manager_only(void **state)
{
    /* a case whose person needs medical care only: shelter knows its manager, no bed request */
    char c[SHELTER_FIXTURE_ID];
    scenario_report_t s;
    shelter_fixture_person(&s, "MA-04", "Flow Person Without Bed", "fr");
    s.needs[0] = NRM__V1__SERVICE_TYPE__SERVICE_TYPE_MEDICAL;
    s.report.n_needs = 1;
    assert_int_equal(shelter_fixture_submit(h, &s, MANAGER, c), 0);
    s_wait_manager_known(c);
    assert_int_equal(s_int("SELECT count(*) FROM shelter.bed_requests WHERE case_id = '%s'", c), 0);
    s_request_bed_refused(MANAGER, c, STATUS(NOT_FOUND));
    s_request_bed_refused(COORDINATOR, c, STATUS(NOT_FOUND));
    s_request_bed_refused(STRANGER, c, STATUS(PERMISSION_DENIED)); /* as for an unknown case */
}
static void test_a_confirmed_stay_outlives_a_consent_withdrawal(void **state)
{
    char a[SHELTER_FIXTURE_ID], stay[SHELTER_FIXTURE_ID];
    s_report("MA-01", false, 1, a); /* a mother and her child: the family shelter */
    Nrm__V1__Event *ev = shelter_fixture_outcome(h, a, BODY(SHELTER_ALLOCATED), WAIT_MS);
    assert_non_null(ev);
    assert_string_equal(ev->shelter_allocated->shelter_id, "flow-families");
    nrm__v1__event__free_unpacked(ev, NULL);
    s_live_allocation(a, stay);
    Nrm__V1__ConfirmArrival c = NRM__V1__CONFIRM_ARRIVAL__INIT;
    c.allocation_id = stay;
    s_ok("shelter", "op-flow-families", NRM__V1__REQUEST__BODY_CONFIRM_ARRIVAL, &c);

    s_withdraw_consent(a);
    ev = s_wait_event("routing", a, "shelter.request_withdrawn", 1);
    nrm__v1__event__free_unpacked(ev, NULL);
    /* shelter has heard it (a later RequestBed would be refused) and left the stay as it is */
    assert_int_equal(harness_wait_sql(h,
                                      "SELECT count(*) FROM shelter.bed_requests WHERE withdrawn"
                                      " AND case_id IN (SELECT case_id FROM shelter.allocations"
                                      " WHERE shelter_id = 'flow-families')",
                                      1, WAIT_MS),
                     1);
    assert_int_equal(s_int("SELECT count(*) FROM shelter.allocations WHERE allocation_id = '%s'"
                           " AND state = 'occupied'",
                           stay),
                     1);
    assert_int_equal(s_events("shelter", a, "shelter.request_cancelled", NULL), 0);
    assert_int_equal(s_events("shelter", a, "shelter.released", NULL), 0);
}

/* ---- urgency and deadlines ---- */

/* Reports a man in MA-04 needing medical care only, at urgency; waits for the referral. */
static void s_medical_case(Nrm__V1__Urgency urgency, char case_id[ROUTING_ID_TEXT],
                           char referral_id[ROUTING_ID_TEXT])
{
    scenario_report_t s;
    routing_person(&s, "MA-04", 35, NRM__V1__GENDER__GENDER_MALE, "SN", true);
    routing_person_needs(&s, MEDICAL);
    s.report.urgency = urgency;
    assert_int_equal(routing_submit(h, &s, MANAGER, case_id), STATUS(OK));
    assert_int_equal(routing_wait_referrals(h, case_id, 1), 1);
    assert_true(routing_referral(h, case_id, MEDICAL, 1, referral_id, NULL));
}

static void test_a_raised_urgency_brings_the_deadline_forward_and_expiry_follows(void **state)
{
    char case_id[ROUTING_ID_TEXT], referral[ROUTING_ID_TEXT], st[ROUTING_ID_TEXT];
    s_medical_case(ROUTINE, case_id, referral);
    long long due =
        s_int("SELECT due_ms FROM routing.referrals WHERE referral_id = '%s'", referral);

    int64_t raised_at = nrm_now_ms();
    s_set_urgency(case_id, EMERGENCY);
    Nrm__V1__Event *ev = s_wait_event("routing", case_id, "referral.deadline_changed", 1);
    const Nrm__V1__ReferralDeadlineChanged *d = ev->referral_deadline_changed;
    assert_string_equal(d->referral_id, referral);
    assert_int_equal(d->urgency, EMERGENCY);
    assert_int_equal(d->previous_due_ms, due);
    assert_true(d->due_ms < due);
    assert_true(d->due_ms >= raised_at + EMERGENCY_DEADLINE_S * MS_PER_S - SLACK_MS);
    assert_true(d->due_ms <= nrm_now_ms() + EMERGENCY_DEADLINE_S * MS_PER_S);
    nrm__v1__event__free_unpacked(ev, NULL);

    /* escalation follows the new deadline: expired within seconds, the next provider asked */
    ev = s_wait_event("routing", case_id, "referral.expired", 1);
    assert_string_equal(ev->referral_expired->referral_id, referral);
    nrm__v1__event__free_unpacked(ev, NULL);
    routing_referral_state(h, referral, st);
    assert_string_equal(st, "expired");
}

static void test_a_lowered_urgency_pushes_no_deadline_back(void **state)
{
    char case_id[ROUTING_ID_TEXT], referral[ROUTING_ID_TEXT];
    s_medical_case(ROUTINE, case_id, referral);
    long long due =
        s_int("SELECT due_ms FROM routing.referrals WHERE referral_id = '%s'", referral);
    s_set_urgency(case_id, URGENT);
    Nrm__V1__Event *ev = s_wait_event("routing", case_id, "referral.deadline_changed", 1);
    long long shortened = ev->referral_deadline_changed->due_ms;
    assert_true(shortened < due - (ROUTINE_DEADLINE_S - URGENT_DEADLINE_S) * MS_PER_S + SLACK_MS);
    nrm__v1__event__free_unpacked(ev, NULL);
    assert_int_equal(
        s_int("SELECT due_ms FROM routing.referrals WHERE referral_id = '%s'", referral),
        shortened);

    /* back to routine: applied by routing, and the deadline stays where it was */
    s_set_urgency(case_id, ROUTINE);
    char sql[SQL_MAX];
    snprintf(sql, sizeof sql, "SELECT urgency::text FROM routing.cases WHERE case_id = '%s'",
             case_id);
    char want[8];
    snprintf(want, sizeof want, "%d", ROUTINE);
    s_wait_text(sql, want);
    assert_int_equal(
        s_int("SELECT due_ms FROM routing.referrals WHERE referral_id = '%s'", referral),
        shortened);
    assert_int_equal(s_events("routing", case_id, "referral.deadline_changed", NULL), 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(
            test_a_no_show_reaches_routing_and_the_coordinator_and_a_new_request_gets_a_bed),
        cmocka_unit_test(test_request_bed_refuses_bad_input_with_its_field_and_changes_nothing),
        cmocka_unit_test(test_request_bed_for_a_case_with_no_bed_request_tells_its_manager_only),
        cmocka_unit_test(
            test_a_consent_withdrawal_cancels_the_waitlist_place_and_the_unconfirmed_hold),
        cmocka_unit_test(test_a_confirmed_stay_outlives_a_consent_withdrawal),
        cmocka_unit_test(test_a_raised_urgency_brings_the_deadline_forward_and_expiry_follows),
        cmocka_unit_test(test_a_lowered_urgency_pushes_no_deadline_back),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
