/* Intake against real PostgreSQL and a real nrm-intake process: reports open cases, repeats
 * change nothing, a second agency's report of the same person links, identifying data never
 * leaves the service. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "harness.h"
#include "nrm_crypto.h"
#include "nrm_validate.h"
#include "scenario.h"

#include <signal.h>
#include <string.h>
#include <sys/wait.h>

#define NAME "Amina Okonkwo-Benali"
#define DOB "1996-04-17"
#define WAIT_MS 5000

static harness_t *h;

static int setup(void **state)
{
    h = harness_new("intake");
    return harness_start(h, "intake", 0);
}

static int teardown(void **state)
{
    harness_destroy(&h);
    return 0;
}

/* Submits a report as agency, asserts OK, returns the reply (caller frees). */
static Nrm__V1__Reply *s_submit_ok(scenario_report_t *s, const char *agency)
{
    Nrm__V1__Reply *reply = harness_call(h, "intake", agency, &s->request);
    assert_non_null(reply);
    assert_string_equal(reply->error_message, "");
    assert_int_equal(reply->status, NRM__V1__STATUS__STATUS_OK);
    assert_int_equal(reply->result_case, NRM__V1__REPLY__RESULT_CASE_REF);
    return reply;
}

static void test_report_opens_case_and_publishes_no_identifying_data(void **state)
{
    harness_sub_t *sub = harness_subscribe(h, "intake", 0);
    scenario_report_t s;
    scenario_adult_woman(&s, "MA-06", NAME, DOB);
    char request_id[37];
    nrm_uuid_v4(request_id);
    s.request.request_id = request_id;
    Nrm__V1__Reply *reply = s_submit_ok(&s, "labour-ma-06");
    assert_false(reply->case_ref->linked);
    assert_true(strlen(reply->case_ref->case_id) > 0);

    Nrm__V1__Event *ev = harness_sub_next(sub, "case.opened", WAIT_MS);
    assert_non_null(ev);
    assert_string_equal(ev->case_id, reply->case_ref->case_id);
    assert_string_equal(ev->stream, "intake");
    assert_true(ev->seq >= 1);
    assert_string_equal(ev->causation_id, request_id);
    assert_string_equal(ev->case_opened->region, "MA-06");
    assert_string_equal(ev->case_opened->reporting_agency_id, "labour-ma-06");
    assert_false(ev->case_opened->is_minor);
    assert_int_equal(ev->case_opened->n_needs, 2);
    /* the published age comes from the sealed date of birth, not the date itself */
    assert_int_equal(ev->case_opened->profile->age_years,
                     nrm_age_on(1996, 4, 17, s.report.identified_at_ms));
    assert_false(ev->case_opened->profile->age_estimated);
    nrm__v1__event__free_unpacked(ev, NULL);

    /* nothing identifying on the wire or in the log */
    const char *secrets[] = {NAME, "Okonkwo", DOB, "600 000 111", "PASS-A1234567", "farm gate"};
    for (size_t i = 0; i < sizeof secrets / sizeof *secrets; i++) {
        assert_false(harness_sub_saw_bytes(sub, secrets[i]));
        assert_false(harness_log_contains(h, "intake", 0, secrets[i]));
    }
    /* and nothing in clear in the database */
    char sql[256];
    snprintf(
        sql, sizeof sql,
        "SELECT count(*) FROM intake.reports WHERE position('Okonkwo'::bytea in person_sealed) > 0"
        " OR position('farm'::bytea in notes_sealed) > 0");
    assert_int_equal(harness_sql_int(h, sql), 0);
    nrm__v1__reply__free_unpacked(reply, NULL);
    harness_sub_destroy(&sub);
}

static void test_same_request_id_twice_gets_same_reply_and_one_case(void **state)
{
    scenario_report_t s;
    scenario_adult_woman(&s, "MA-04", "Fatima Zahra Idrissi", "1988-11-02");
    char request_id[37];
    nrm_uuid_v4(request_id);
    s.request.request_id = request_id;
    Nrm__V1__Reply *first = s_submit_ok(&s, "police-ma-04");
    Nrm__V1__Reply *second = s_submit_ok(&s, "police-ma-04");
    assert_string_equal(first->case_ref->case_id, second->case_ref->case_id);
    assert_int_equal(first->case_ref->linked, second->case_ref->linked);
    char sql[256];
    snprintf(sql, sizeof sql, "SELECT count(*) FROM intake.reports WHERE case_id = '%s'",
             first->case_ref->case_id);
    assert_int_equal(harness_sql_int(h, sql), 1);
    snprintf(
        sql, sizeof sql,
        "SELECT count(*) FROM intake.outbox WHERE topic = 'case.opened' AND payload::text LIKE '%%'"
        " AND position('%s'::bytea in payload) > 0",
        first->case_ref->case_id);
    assert_int_equal(harness_sql_int(h, sql), 1);
    /* the same request_id with a different body is a conflict */
    s.report.region = "MA-01";
    Nrm__V1__Reply *third = harness_call(h, "intake", "police-ma-04", &s.request);
    assert_non_null(third);
    assert_int_equal(third->status, NRM__V1__STATUS__STATUS_CONFLICT);
    assert_string_equal(third->error_field, "request_id");
    nrm__v1__reply__free_unpacked(first, NULL);
    nrm__v1__reply__free_unpacked(second, NULL);
    nrm__v1__reply__free_unpacked(third, NULL);
}

static void test_same_person_from_second_agency_is_linked(void **state)
{
    harness_sub_t *sub = harness_subscribe(h, "intake", 0);
    scenario_report_t a, b;
    scenario_adult_woman(&a, "MA-01", "Grace Adeyemi", "1999-01-20");
    Nrm__V1__Reply *first = s_submit_ok(&a, "border-ma-01");
    /* a hospital reports her again, the name written differently, with a new need */
    scenario_adult_woman(&b, "MA-04", "  ADEYEMI   grace ", "1999-01-20");
    b.needs[2] = NRM__V1__SERVICE_TYPE__SERVICE_TYPE_PSYCHOSOCIAL;
    b.report.n_needs = 3;
    Nrm__V1__Reply *second = s_submit_ok(&b, "hospital-ma-04");
    assert_true(second->case_ref->linked);
    assert_string_equal(first->case_ref->case_id, second->case_ref->case_id);

    Nrm__V1__Event *linked = harness_sub_next(sub, "case.linked", WAIT_MS);
    assert_non_null(linked);
    assert_string_equal(linked->case_id, first->case_ref->case_id);
    assert_string_equal(linked->case_linked->reporting_agency_id, "hospital-ma-04");
    Nrm__V1__Event *updated = harness_sub_next(sub, "case.updated", WAIT_MS);
    assert_non_null(updated);
    assert_int_equal(updated->case_updated->n_needs, 3);
    nrm__v1__event__free_unpacked(linked, NULL);
    nrm__v1__event__free_unpacked(updated, NULL);

    /* the hospital is now a reporter of the case, which gives it no power over it; a stranger
     * has none either; the border police opened the case and manages it */
    Nrm__V1__UpdateCase update = NRM__V1__UPDATE_CASE__INIT;
    update.case_id = first->case_ref->case_id;
    update.urgency = NRM__V1__URGENCY__URGENCY_EMERGENCY;
    Nrm__V1__Request req = NRM__V1__REQUEST__INIT;
    scenario_request(&req, NRM__V1__REQUEST__BODY_UPDATE_CASE, &update);
    Nrm__V1__Reply *stranger = harness_call(h, "intake", "consulate-ng", &req);
    assert_int_equal(stranger->status, NRM__V1__STATUS__STATUS_PERMISSION_DENIED);
    Nrm__V1__Reply *reporter = harness_call(h, "intake", "hospital-ma-04", &req);
    assert_int_equal(reporter->status, NRM__V1__STATUS__STATUS_PERMISSION_DENIED);
    assert_string_equal(reporter->error_field, "update_case.case_id");
    Nrm__V1__Reply *ok = harness_call(h, "intake", "border-ma-01", &req);
    assert_int_equal(ok->status, NRM__V1__STATUS__STATUS_OK);
    nrm__v1__reply__free_unpacked(stranger, NULL);
    nrm__v1__reply__free_unpacked(reporter, NULL);
    nrm__v1__reply__free_unpacked(ok, NULL);
    nrm__v1__reply__free_unpacked(first, NULL);
    nrm__v1__reply__free_unpacked(second, NULL);
    harness_sub_destroy(&sub);
}

static void test_minor_of_unknown_age_is_presumed_minor(void **state)
{
    harness_sub_t *sub = harness_subscribe(h, "intake", 0);
    scenario_report_t s;
    scenario_adult_woman(&s, "MA-04", "Unknown Girl", "");
    s.person.date_of_birth = "";
    s.profile.age_unknown = 1;
    Nrm__V1__Reply *reply = s_submit_ok(&s, "hotline-national");
    Nrm__V1__Event *ev = harness_sub_next(sub, "case.opened", WAIT_MS);
    assert_non_null(ev);
    assert_string_equal(ev->case_id, reply->case_ref->case_id);
    assert_true(ev->case_opened->is_minor);
    assert_true(ev->case_opened->profile->age_unknown);
    nrm__v1__event__free_unpacked(ev, NULL);
    nrm__v1__reply__free_unpacked(reply, NULL);
    harness_sub_destroy(&sub);
}

static void test_withdraw_consent_and_close(void **state)
{
    harness_sub_t *sub = harness_subscribe(h, "intake", 0);
    scenario_report_t s;
    scenario_adult_woman(&s, "MA-07", "Khadija Ait Ouahmane", "1979-08-30");
    Nrm__V1__Reply *opened = s_submit_ok(&s, "ngo-ma-07");
    Nrm__V1__WithdrawConsent w = NRM__V1__WITHDRAW_CONSENT__INIT;
    w.case_id = opened->case_ref->case_id;
    Nrm__V1__Request req = NRM__V1__REQUEST__INIT;
    scenario_request(&req, NRM__V1__REQUEST__BODY_WITHDRAW_CONSENT, &w);
    Nrm__V1__Reply *r1 = harness_call(h, "intake", "ngo-ma-07", &req);
    assert_int_equal(r1->status, NRM__V1__STATUS__STATUS_OK);
    Nrm__V1__Event *ev = harness_sub_next(sub, "case.consent_withdrawn", WAIT_MS);
    assert_non_null(ev);
    assert_string_equal(ev->case_id, w.case_id);
    nrm__v1__event__free_unpacked(ev, NULL);

    Nrm__V1__CloseCase c = NRM__V1__CLOSE_CASE__INIT;
    c.case_id = opened->case_ref->case_id;
    c.reason = "she told us her name is Khadija"; /* free text is refused */
    Nrm__V1__Request creq = NRM__V1__REQUEST__INIT;
    scenario_request(&creq, NRM__V1__REQUEST__BODY_CLOSE_CASE, &c);
    Nrm__V1__Reply *bad = harness_call(h, "intake", "coordinator", &creq);
    assert_int_equal(bad->status, NRM__V1__STATUS__STATUS_INVALID_ARGUMENT);
    assert_string_equal(bad->error_field, "close_case.reason");
    c.reason = "reintegrated";
    Nrm__V1__Reply *closed = harness_call(h, "intake", "coordinator", &creq);
    assert_int_equal(closed->status, NRM__V1__STATUS__STATUS_OK);
    ev = harness_sub_next(sub, "case.closed", WAIT_MS);
    assert_non_null(ev);
    assert_string_equal(ev->case_closed->reason, "reintegrated");
    nrm__v1__event__free_unpacked(ev, NULL);
    /* a closed case cannot be changed */
    Nrm__V1__Reply *again = harness_call(h, "intake", "ngo-ma-07", &req);
    assert_int_equal(again->status, NRM__V1__STATUS__STATUS_FAILED_PRECONDITION);
    assert_false(harness_log_contains(h, "intake", 0, "Khadija"));
    nrm__v1__reply__free_unpacked(opened, NULL);
    nrm__v1__reply__free_unpacked(r1, NULL);
    nrm__v1__reply__free_unpacked(bad, NULL);
    nrm__v1__reply__free_unpacked(closed, NULL);
    nrm__v1__reply__free_unpacked(again, NULL);
    harness_sub_destroy(&sub);
}

static void test_every_request_is_audited(void **state)
{
    long long audited = harness_sql_int(h, "SELECT count(*) FROM intake.audit_log");
    long long reports = harness_sql_int(h, "SELECT count(*) FROM intake.reports");
    assert_true(audited >= reports);
    assert_int_equal(harness_sql_int(h, "SELECT count(*) FROM intake.audit_log WHERE status = "
                                        "'PERMISSION_DENIED' AND agency_id = 'consulate-ng'"),
                     1);
}

static void test_sigterm_stops_cleanly_with_exit_0(void **state)
{
    int status = harness_signal(h, "intake", 0, SIGTERM);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
    assert_true(harness_log_contains(h, "intake", 0, "service stopped"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_report_opens_case_and_publishes_no_identifying_data),
        cmocka_unit_test(test_same_request_id_twice_gets_same_reply_and_one_case),
        cmocka_unit_test(test_same_person_from_second_agency_is_linked),
        cmocka_unit_test(test_minor_of_unknown_age_is_presumed_minor),
        cmocka_unit_test(test_withdraw_consent_and_close),
        cmocka_unit_test(test_every_request_is_audited),
        cmocka_unit_test(test_sigterm_stops_cleanly_with_exit_0),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
