/* Referral deadlines against real processes: declined and expired referrals move on to the next
 * eligible provider, and when nobody is left the coordinator hears it at once. Deadlines are set
 * to seconds through the configuration (routing.deadlines_s), the production clock unchanged. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "harness.h"
#include "routing_scenario.h"

#include <czmq.h>
#include <stdio.h>
#include <string.h>

#define OK NRM__V1__STATUS__STATUS_OK
#define FEMALE NRM__V1__GENDER__GENDER_FEMALE
#define MALE NRM__V1__GENDER__GENDER_MALE
#define MEDICAL NRM__V1__SERVICE_TYPE__SERVICE_TYPE_MEDICAL
#define LEGAL_AID NRM__V1__SERVICE_TYPE__SERVICE_TYPE_LEGAL_AID
#define INTERPRETATION NRM__V1__SERVICE_TYPE__SERVICE_TYPE_INTERPRETATION
#define ACCEPT NRM__V1__REFERRAL_DECISION__REFERRAL_DECISION_ACCEPT
#define DECLINE NRM__V1__REFERRAL_DECISION__REFERRAL_DECISION_DECLINE
#define NO_REASON NRM__V1__DECLINE_REASON__DECLINE_REASON_UNSPECIFIED
#define URGENT_DEADLINE_S 2
#define EMERGENCY_DEADLINE_S 1
#define EXPIRY_CHECK_MS 200
#define MS_PER_S 1000
#define SQL_MAX 512

static harness_t *h;

static int setup(void **state)
{
    h = harness_new("routing_deadlines");
    harness_config_set(h, "routing.deadlines_s.URGENT", json_integer(URGENT_DEADLINE_S));
    harness_config_set(h, "routing.deadlines_s.EMERGENCY", json_integer(EMERGENCY_DEADLINE_S));
    harness_config_set(h, "routing.expiry_check_ms", json_integer(EXPIRY_CHECK_MS));
    if (harness_start(h, "intake", 0) != 0)
        return -1;
    return harness_start(h, "routing", 0);
}

static int teardown(void **state)
{
    harness_destroy(&h);
    return 0;
}

/* Sends a provider's answer and asserts it is accepted with the given new state. */
static void s_answer(const char *provider, const char *referral_id,
                     Nrm__V1__ReferralDecision decision, Nrm__V1__DeclineReason why,
                     const char *new_state)
{
    Nrm__V1__Reply *reply = routing_provider_respond(h, provider, referral_id, decision, why, "");
    assert_non_null(reply);
    assert_string_equal(reply->error_message, "");
    assert_int_equal(reply->status, OK);
    assert_string_equal(reply->referral_ref->state, new_state);
    nrm__v1__reply__free_unpacked(reply, NULL);
}

/* Waits for attempt of service for the case and asserts its provider; fills referral_id. */
static void s_expect_attempt(const char *case_id, Nrm__V1__ServiceType service, int attempt,
                             const char *provider, char referral_id[ROUTING_ID_TEXT])
{
    char chosen[ROUTING_ID_TEXT];
    assert_int_equal(routing_wait_referrals(h, case_id, attempt), attempt);
    assert_true(routing_referral(h, case_id, service, attempt, referral_id, chosen));
    assert_string_equal(chosen, provider);
}

static void test_decline_decline_expiry_then_unroutable(void **state)
{
    /* a Nigerian woman in Rabat needs legal aid; exactly three providers can serve her */
    scenario_report_t s;
    routing_person(&s, "MA-04", 27, FEMALE, "NG", true);
    routing_person_speaks(&s, "en");
    routing_person_speaks(&s, "fr");
    routing_person_needs(&s, LEGAL_AID);
    char case_id[ROUTING_ID_TEXT], first[ROUTING_ID_TEXT], second[ROUTING_ID_TEXT];
    char third[ROUTING_ID_TEXT];
    assert_int_equal(routing_submit(h, &s, "police-ma-04", case_id), OK);

    s_expect_attempt(case_id, LEGAL_AID, 1, "legal-aid-ma-04", first);
    s_answer("legal-aid-ma-04", first, DECLINE, NRM__V1__DECLINE_REASON__DECLINE_REASON_NO_CAPACITY,
             "declined");
    s_expect_attempt(case_id, LEGAL_AID, 2, "legal-clinic-national", second);
    s_answer("legal-clinic-national", second, DECLINE,
             NRM__V1__DECLINE_REASON__DECLINE_REASON_NOT_ELIGIBLE, "declined");
    s_expect_attempt(case_id, LEGAL_AID, 3, "women-legal-network-national", third);

    /* nobody answers the third in time */
    char sql[SQL_MAX];
    snprintf(sql, sizeof sql,
             "SELECT count(*) FROM routing.case_services WHERE case_id = '%s' AND service = %d"
             " AND state = 'waiting'", /* unroutable: it waits for a place */
             case_id, (int)LEGAL_AID);
    assert_int_equal(harness_wait_sql(h, sql, 1, ROUTING_WAIT_MS), 1);
    char st[ROUTING_ID_TEXT];
    routing_referral_state(h, third, st);
    assert_string_equal(st, "expired");
    assert_int_equal(routing_count_referrals(h, case_id, 0), 3);

    Nrm__V1__Event **ev = NULL;
    size_t n = routing_case_events(h, case_id, "referral.", &ev);
    const char *expected[] = {"referral.created",   "referral.declined", "referral.created",
                              "referral.declined",  "referral.created",  "referral.expired",
                              "referral.unroutable"};
    assert_int_equal(n, sizeof expected / sizeof *expected);
    for (size_t i = 0; i < n; i++)
        assert_string_equal(ev[i]->topic, expected[i]);
    assert_int_equal(ev[1]->referral_declined->decline_reason,
                     NRM__V1__DECLINE_REASON__DECLINE_REASON_NO_CAPACITY);
    assert_int_equal(ev[4]->referral_created->attempt, 3);
    assert_int_equal(ev[4]->referral_created->due_ms - ev[4]->occurred_at_ms,
                     URGENT_DEADLINE_S * MS_PER_S);
    assert_string_equal(ev[5]->referral_expired->referral_id, third);
    assert_string_equal(ev[5]->referral_expired->provider_agency_id,
                        "women-legal-network-national");
    assert_true(ev[5]->occurred_at_ms >= ev[4]->referral_created->due_ms);
    assert_int_equal(ev[6]->referral_unroutable->service, LEGAL_AID);
    assert_non_null(strstr(ev[6]->referral_unroutable->reason, "3 already tried"));
    routing_events_free(ev, n);
}

static void test_expired_referral_goes_to_next_provider_and_accepted_ones_stay(void **state)
{
    /* an emergency: a man injured on a farm near Tanger; the hospital does not answer within
     * the emergency deadline, the mobile clinics do */
    scenario_report_t s;
    routing_person(&s, "MA-01", 38, MALE, "MA", true);
    routing_person_speaks(&s, "ar");
    routing_person_needs(&s, MEDICAL);
    s.report.urgency = NRM__V1__URGENCY__URGENCY_EMERGENCY;
    char case_id[ROUTING_ID_TEXT], first[ROUTING_ID_TEXT], second[ROUTING_ID_TEXT];
    assert_int_equal(routing_submit(h, &s, "police-ma-01", case_id), OK);
    s_expect_attempt(case_id, MEDICAL, 1, "hospital-ma-01", first);
    s_expect_attempt(case_id, MEDICAL, 2, "migrant-health-ngo-national", second);
    char st[ROUTING_ID_TEXT];
    routing_referral_state(h, first, st);
    assert_string_equal(st, "expired");
    s_answer("migrant-health-ngo-national", second, ACCEPT, NO_REASON, "accepted");
    /* the hospital answers late: too late */
    Nrm__V1__Reply *late =
        routing_provider_respond(h, "hospital-ma-01", first, ACCEPT, NO_REASON, "");
    assert_int_equal(late->status, NRM__V1__STATUS__STATUS_FAILED_PRECONDITION);
    nrm__v1__reply__free_unpacked(late, NULL);
    /* an accepted referral has no deadline any more */
    zclock_sleep(2 * EMERGENCY_DEADLINE_S * MS_PER_S + EXPIRY_CHECK_MS);
    routing_referral_state(h, second, st);
    assert_string_equal(st, "accepted");
    assert_int_equal(routing_count_referrals(h, case_id, 0), 2);
}

static void test_nobody_eligible_tells_the_coordinator_at_once(void **state)
{
    /* a Vietnamese woman in Beni Mellal: the hospital speaks no Vietnamese and no interpreter
     * of the directory does either */
    scenario_report_t s;
    routing_person(&s, "MA-05", 24, FEMALE, "VN", true);
    routing_person_speaks(&s, "vi");
    routing_person_needs(&s, MEDICAL);
    char case_id[ROUTING_ID_TEXT], referral_id[ROUTING_ID_TEXT];
    assert_int_equal(routing_submit(h, &s, "coordinator", case_id), OK);
    s_expect_attempt(case_id, MEDICAL, 1, "hospital-ma-05", referral_id);
    Nrm__V1__Event **ev = NULL;
    size_t n = routing_case_events(h, case_id, "referral.unroutable", &ev);
    assert_int_equal(n, 1);
    assert_int_equal(ev[0]->referral_unroutable->service, INTERPRETATION);
    assert_non_null(strstr(ev[0]->referral_unroutable->reason, "0 eligible"));
    routing_events_free(ev, n);
    assert_int_equal(routing_count_referrals(h, case_id, INTERPRETATION), 0);
}

/* After every scenario above (referrals made, accepted, declined, expired, revoked, completed),
 * each provider's and agreement's open counter agrees with a recount. */
static void test_open_counters_agree_with_a_recount(void **state)
{
    assert_int_equal(routing_counters_off(h), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_decline_decline_expiry_then_unroutable),
        cmocka_unit_test(test_expired_referral_goes_to_next_provider_and_accepted_ones_stay),
        cmocka_unit_test(test_nobody_eligible_tells_the_coordinator_at_once),
        cmocka_unit_test(test_open_counters_agree_with_a_recount),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
