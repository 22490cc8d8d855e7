/* The recovery and reflection period through real processes, in seconds (6 s, reminder 4 s
 * before the end), with two nrm-intake instances on one schema: during the period a
 * NOT_A_VICTIM decision and a closure other than by the person's own choice are refused naming
 * the field, the person's own choice is not; after it both are accepted; every case is
 * reminded once, on time, by one instance or the other, and notify delivers the reminder to
 * the case manager and the coordinator; and nothing identifying reaches any stream or log. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "harness.h"
#include "ident_fixture.h"
#include "nrm_time.h"
#include "routing_scenario.h"
#include "scenario.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define OK NRM__V1__STATUS__STATUS_OK
#define PRECONDITION NRM__V1__STATUS__STATUS_FAILED_PRECONDITION
#define IDENTIFIED NRM__V1__TRAFFICKING_STATUS__TRAFFICKING_STATUS_IDENTIFIED_VICTIM
#define NOT_A_VICTIM NRM__V1__TRAFFICKING_STATUS__TRAFFICKING_STATUS_NOT_A_VICTIM
#define MANAGER "police-ma-04"
#define PERIOD_S 6
#define REMINDER_S 4
#define CHECK_MS 200
#define MS 1000
#define REMINDED_CASES 4
#define FIELD 72
#define SQL 320
#define WAIT_MS 20000
#define FULL_NAME "Zainab Recovery-Okafor"
#define BIRTH_DATE "1996-07-08"
#define PHONE "+212 611 222 333"
#define DOCUMENT "PASS-Z7654321"
#define NOTES "Said the recruiter kept her passport at the cafe"

static harness_t *h;

static int setup(void **state)
{
    h = harness_new("identification_recovery");
    harness_config_set(h, "intake.recovery_period_s", json_integer(PERIOD_S));
    harness_config_set(h, "intake.recovery_reminder_s", json_integer(REMINDER_S));
    harness_config_set(h, "intake.recovery_check_ms", json_integer(CHECK_MS));
    const char *services[] = {"intake", "routing", "shelter", "notify"};
    for (size_t i = 0; i < sizeof services / sizeof *services; i++)
        if (harness_start(h, services[i], 0) != 0)
            return -1;
    return harness_start(h, "intake", 1);
}

static int teardown(void **state)
{
    harness_destroy(&h);
    return 0;
}

/* Opens the case of a person identified now; returns the time of identification. */
static int64_t s_case(char case_id[ROUTING_ID_TEXT])
{
    scenario_report_t s;
    routing_person(&s, "MA-04", 27, NRM__V1__GENDER__GENDER_FEMALE, "NG", true);
    s.report.identified_at_ms = nrm_now_ms();
    assert_int_equal(routing_submit(h, &s, MANAGER, case_id), OK);
    return s.report.identified_at_ms;
}

/* Waits until the period of a case identified at identified_ms has ended. */
static void s_wait_period_over(int64_t identified_ms)
{
    while (nrm_now_ms() < identified_ms + PERIOD_S * MS + CHECK_MS)
        usleep(CHECK_MS * MS);
}

static void test_not_a_victim_is_refused_during_the_recovery_period_naming_the_status(void **st)
{
    char case_id[ROUTING_ID_TEXT], field[FIELD];
    s_case(case_id);
    assert_int_equal(ident_decide(h, MANAGER, case_id, NOT_A_VICTIM, "interview", field),
                     PRECONDITION);
    assert_string_equal(field, "decide_status.status");
    char sql[SQL];
    snprintf(sql, sizeof sql, "SELECT count(*) FROM intake.status_decisions WHERE case_id = '%s'",
             case_id);
    assert_int_equal(harness_sql_int(h, sql), 0);
    /* a decision that removes no protection is not held back */
    assert_int_equal(ident_decide(h, MANAGER, case_id, IDENTIFIED, "interview", NULL), OK);
}

static void test_a_closure_not_chosen_by_the_person_is_refused_during_the_period(void **st)
{
    char case_id[ROUTING_ID_TEXT], field[FIELD];
    s_case(case_id);
    const char *reasons[] = {"transferred",  "not_a_victim", "reintegrated",
                             "lost_contact", "returned",     "other"};
    for (size_t i = 0; i < sizeof reasons / sizeof *reasons; i++) {
        assert_int_equal(ident_close(h, "coordinator", case_id, reasons[i], field), PRECONDITION);
        assert_string_equal(field, "close_case.reason");
    }
    char sql[SQL];
    snprintf(sql, sizeof sql,
             "SELECT count(*) FROM intake.cases WHERE case_id = '%s' AND status = 'open'", case_id);
    assert_int_equal(harness_sql_int(h, sql), 1);
}

static void test_a_person_who_declines_assistance_may_close_the_case_during_the_period(void **st)
{
    char case_id[ROUTING_ID_TEXT];
    s_case(case_id);
    assert_int_equal(ident_close(h, MANAGER, case_id, "declined_assistance", NULL), OK);
}

static void test_after_the_period_not_a_victim_and_any_closure_are_accepted(void **st)
{
    char case_id[ROUTING_ID_TEXT];
    int64_t identified = s_case(case_id);
    s_wait_period_over(identified);
    assert_int_equal(ident_decide(h, MANAGER, case_id, NOT_A_VICTIM, "interview", NULL), OK);
    assert_int_equal(ident_close(h, MANAGER, case_id, "not_a_victim", NULL), OK);
}

/* The reminders of intake's stream for case_id: count, and the time of the first. */
static int s_reminders(Nrm__V1__Event **events, size_t n, const char *case_id, int64_t *at_ms)
{
    int count = 0;
    for (size_t i = 0; i < n; i++)
        if (strcmp(events[i]->topic, "case.recovery_period_ending") == 0 &&
            strcmp(events[i]->case_id, case_id) == 0) {
            if (!count++)
                *at_ms = events[i]->occurred_at_ms;
        }
    return count;
}

static void test_each_case_is_reminded_once_on_time_with_two_intake_instances(void **st)
{
    char cases[REMINDED_CASES][ROUTING_ID_TEXT];
    int64_t identified[REMINDED_CASES];
    for (int i = 0; i < REMINDED_CASES; i++)
        identified[i] = s_case(cases[i]);
    char sql[SQL];
    snprintf(sql, sizeof sql,
             "SELECT count(*) FROM intake.cases WHERE recovery_reminded_at IS NOT NULL"
             " AND case_id IN ('%s', '%s', '%s', '%s')",
             cases[0], cases[1], cases[2], cases[3]);
    assert_int_equal(harness_wait_sql(h, sql, REMINDED_CASES, WAIT_MS), REMINDED_CASES);
    s_wait_period_over(identified[REMINDED_CASES - 1]); /* time for a second reminder, if any */
    Nrm__V1__Event **events = NULL;
    size_t n = harness_fetch_all(h, "intake", &events);
    for (int i = 0; i < REMINDED_CASES; i++) {
        int64_t at = 0;
        assert_int_equal(s_reminders(events, n, cases[i], &at), 1);
        assert_true(at >= identified[i] + (PERIOD_S - REMINDER_S) * MS);
        assert_true(at < identified[i] + PERIOD_S * MS);
    }
    for (size_t i = 0; i < n; i++)
        nrm__v1__event__free_unpacked(events[i], NULL);
    free(events);
    /* both instances ran the timer (each logs what it reminded); together, once per case */
    assert_true(harness_log_contains(h, "intake", 0, "recovery period ending") ||
                harness_log_contains(h, "intake", 1, "recovery period ending"));
}

static void test_notify_delivers_the_reminder_to_the_case_manager_and_the_coordinator(void **st)
{
    char case_id[ROUTING_ID_TEXT];
    s_case(case_id);
    char sql[SQL];
    snprintf(sql, sizeof sql,
             "SELECT count(DISTINCT agency_id) FROM notify.deliveries WHERE case_id = '%s'"
             " AND topic = 'case.recovery_period_ending'"
             " AND agency_id IN ('" MANAGER "', 'coordinator')",
             case_id);
    assert_int_equal(harness_wait_sql(h, sql, 2, WAIT_MS), 2);
}

static void test_nothing_identifying_reaches_any_stream_or_log(void **st)
{
    const char *streams[] = {"intake", "routing", "notify"};
    harness_sub_t *subs[3];
    for (int i = 0; i < 3; i++)
        subs[i] = harness_subscribe(h, streams[i], 0);
    scenario_report_t s;
    scenario_adult_woman(&s, "MA-04", FULL_NAME, BIRTH_DATE);
    s.person.phone = PHONE;
    s.person.document_number = DOCUMENT;
    s.report.notes = NOTES;
    s.report.identified_at_ms = nrm_now_ms();
    ident_facts_t f;
    ident_facts_full(&f);
    ident_answer(&f, "documents_confiscated", true);
    ident_answer(&f, "debt_bondage", true);
    ident_attach(&s, &f);
    char case_id[ROUTING_ID_TEXT];
    assert_int_equal(routing_submit(h, &s, MANAGER, case_id), OK);
    assert_int_equal(ident_decide(h, MANAGER, case_id, IDENTIFIED, "interview", NULL), OK);
    char sql[SQL];
    snprintf(sql, sizeof sql,
             "SELECT count(*) FROM notify.deliveries WHERE case_id = '%s'"
             " AND topic = 'case.recovery_period_ending'",
             case_id);
    assert_true(harness_wait_sql(h, sql, 2, WAIT_MS) >= 2);
    Nrm__V1__Event *ev = ident_next(subs[0], "case.recovery_period_ending", case_id, WAIT_MS);
    assert_non_null(ev);
    nrm__v1__event__free_unpacked(ev, NULL);
    const char *secrets[] = {FULL_NAME, "Okafor", BIRTH_DATE, PHONE, DOCUMENT, NOTES};
    const char *logs[] = {"intake", "intake", "routing", "shelter", "notify"};
    const int instances[] = {0, 1, 0, 0, 0};
    for (size_t i = 0; i < sizeof secrets / sizeof *secrets; i++) {
        for (int j = 0; j < 3; j++)
            assert_false(harness_sub_saw_bytes(subs[j], secrets[i]));
        for (size_t j = 0; j < sizeof logs / sizeof *logs; j++)
            assert_false(harness_log_contains(h, logs[j], instances[j], secrets[i]));
    }
    for (int i = 0; i < 3; i++)
        harness_sub_destroy(&subs[i]);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_not_a_victim_is_refused_during_the_recovery_period_naming_the_status),
        cmocka_unit_test(test_a_closure_not_chosen_by_the_person_is_refused_during_the_period),
        cmocka_unit_test(
            test_a_person_who_declines_assistance_may_close_the_case_during_the_period),
        cmocka_unit_test(test_after_the_period_not_a_victim_and_any_closure_are_accepted),
        cmocka_unit_test(test_each_case_is_reminded_once_on_time_with_two_intake_instances),
        cmocka_unit_test(test_notify_delivers_the_reminder_to_the_case_manager_and_the_coordinator),
        cmocka_unit_test(test_nothing_identifying_reaches_any_stream_or_log),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
