/* The formal status decision through a real nrm-intake: competent agency types (judiciary, law
 * enforcement, coordinator by default) decide, others are refused through the authorization
 * matrix even when they manage the case, the configured list of types is the one consulted,
 * a decision is revised by a new one with the history kept and never erased, and each is
 * audited and published with the deciding agency's type. No recovery period here
 * (test_identification_recovery.c has one). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "harness.h"
#include "ident_fixture.h"
#include "routing_scenario.h"
#include "scenario.h"

#include <stdio.h>
#include <string.h>

#define OK NRM__V1__STATUS__STATUS_OK
#define DENIED NRM__V1__STATUS__STATUS_PERMISSION_DENIED
#define INVALID NRM__V1__STATUS__STATUS_INVALID_ARGUMENT
#define PRESUMED NRM__V1__TRAFFICKING_STATUS__TRAFFICKING_STATUS_PRESUMED_VICTIM
#define IDENTIFIED NRM__V1__TRAFFICKING_STATUS__TRAFFICKING_STATUS_IDENTIFIED_VICTIM
#define NOT_A_VICTIM NRM__V1__TRAFFICKING_STATUS__TRAFFICKING_STATUS_NOT_A_VICTIM
#define PROSECUTOR "prosecutor-ma-04"
#define POLICE "police-ma-01"
#define NGO_MANAGER "ngo-ma-07"
#define FIELD 72
#define SQL 320

static harness_t *h;
static harness_sub_t *sub;

static int setup(void **state)
{
    h = harness_new("identification_status");
    if (harness_start(h, "intake", 0) != 0)
        return -1;
    sub = harness_subscribe(h, "intake", 0);
    return 0;
}

static int teardown(void **state)
{
    harness_sub_destroy(&sub);
    harness_destroy(&h);
    return 0;
}

/* Opens the case of an adult, managed by manager. */
static void s_case(harness_t *in, const char *manager, char case_id[ROUTING_ID_TEXT])
{
    scenario_report_t s;
    routing_person(&s, "MA-04", 33, NRM__V1__GENDER__GENDER_MALE, "SN", true);
    assert_int_equal(routing_submit(in, &s, manager, case_id), OK);
}

/* A count about the case: fmt holds one %s, the case id. */
static long long s_count(harness_t *in, const char *fmt, const char *case_id)
{
    char sql[SQL];
    snprintf(sql, sizeof sql, fmt, case_id);
    return harness_sql_int(in, sql);
}

static void test_a_judiciary_agency_decides_and_the_decision_is_published_with_its_type(void **st)
{
    char case_id[ROUTING_ID_TEXT];
    s_case(h, NGO_MANAGER, case_id);
    assert_int_equal(ident_decide(h, PROSECUTOR, case_id, IDENTIFIED, "judicial_decision", NULL),
                     OK);
    Nrm__V1__Event *ev = ident_next(sub, "case.status_decided", case_id, IDENT_WAIT_MS);
    assert_non_null(ev);
    assert_string_equal(ev->topic, "case.status_decided");
    const Nrm__V1__StatusDecided *d = ev->status_decided;
    assert_int_equal(d->status, IDENTIFIED);
    assert_int_equal(d->previous_status, PRESUMED);
    assert_string_equal(d->basis, "judicial_decision");
    assert_int_equal(d->decided_by_agency_type, NRM__V1__AGENCY_TYPE__AGENCY_TYPE_JUDICIARY);
    assert_int_equal(d->decision, 1);
    nrm__v1__event__free_unpacked(ev, NULL);
    assert_int_equal(
        s_count(h, "SELECT trafficking_status FROM intake.cases WHERE case_id = '%s'", case_id),
        IDENTIFIED);
    assert_int_equal(s_count(h,
                             "SELECT count(*) FROM intake.audit_log WHERE kind = 'decide_status'"
                             " AND status = 'OK' AND subject_id = '%s'",
                             case_id),
                     1);
}

static void test_law_enforcement_and_the_coordinator_are_competent_too(void **st)
{
    char case_id[ROUTING_ID_TEXT];
    s_case(h, NGO_MANAGER, case_id);
    assert_int_equal(ident_decide(h, POLICE, case_id, IDENTIFIED, "interview", NULL), OK);
    assert_int_equal(
        ident_decide(h, "coordinator", case_id, IDENTIFIED, "multidisciplinary_assessment", NULL),
        OK);
    assert_int_equal(
        s_count(h, "SELECT count(*) FROM intake.status_decisions WHERE case_id = '%s'", case_id),
        2);
}

static void test_an_incompetent_agency_type_is_refused_even_as_case_manager(void **st)
{
    char case_id[ROUTING_ID_TEXT];
    s_case(h, NGO_MANAGER, case_id);
    const char *incompetent[] = {NGO_MANAGER,    "hotline-national", "hospital-ma-04",
                                 "labour-ma-06", "iom-ma",           "service:routing"};
    long long denials =
        harness_sql_int(h, "SELECT count(*) FROM intake.audit_log WHERE kind = 'decide_status'"
                           " AND status = 'PERMISSION_DENIED'");
    for (size_t i = 0; i < sizeof incompetent / sizeof *incompetent; i++) {
        char field[FIELD];
        assert_int_equal(ident_decide(h, incompetent[i], case_id, IDENTIFIED, "interview", field),
                         DENIED);
        assert_string_equal(field, "decide_status");
    }
    assert_int_equal(harness_sql_int(h, "SELECT count(*) FROM intake.audit_log WHERE kind ="
                                        " 'decide_status' AND status = 'PERMISSION_DENIED'"),
                     denials + (long long)(sizeof incompetent / sizeof *incompetent));
    assert_int_equal(
        s_count(h, "SELECT count(*) FROM intake.status_decisions WHERE case_id = '%s'", case_id),
        0);
    assert_int_equal(
        s_count(h, "SELECT trafficking_status FROM intake.cases WHERE case_id = '%s'", case_id),
        PRESUMED);
}

static void test_a_decision_is_revised_by_a_new_one_and_the_history_is_kept(void **st)
{
    char case_id[ROUTING_ID_TEXT];
    s_case(h, POLICE, case_id);
    assert_int_equal(ident_decide(h, POLICE, case_id, IDENTIFIED, "interview", NULL), OK);
    assert_int_equal(
        ident_decide(h, PROSECUTOR, case_id, NOT_A_VICTIM, "prosecution_decision", NULL), OK);
    assert_int_equal(ident_decide(h, PROSECUTOR, case_id, IDENTIFIED, "new_information", NULL), OK);
    Nrm__V1__Event *ev = NULL;
    for (int i = 0; i < 3; i++) {
        if (ev)
            nrm__v1__event__free_unpacked(ev, NULL);
        ev = ident_next(sub, "case.status_decided", case_id, IDENT_WAIT_MS);
        assert_non_null(ev);
    }
    assert_int_equal(ev->status_decided->decision, 3);
    assert_int_equal(ev->status_decided->previous_status, NOT_A_VICTIM);
    assert_int_equal(ev->status_decided->status, IDENTIFIED);
    nrm__v1__event__free_unpacked(ev, NULL);
    assert_int_equal(s_count(h,
                             "SELECT count(*) FROM intake.status_decisions WHERE case_id = '%s'"
                             " AND ((decision = 1 AND status = 2 AND agency_type = "
                             "'LAW_ENFORCEMENT') OR (decision = 2 AND status = 3 AND "
                             "previous_status = 2) OR (decision = 3 AND status = 2 AND "
                             "previous_status = 3 AND agency_type = 'JUDICIARY'))",
                             case_id),
                     3);
    assert_int_equal(
        s_count(h, "SELECT trafficking_status FROM intake.cases WHERE case_id = '%s'", case_id),
        IDENTIFIED);
}

static void test_a_decision_is_never_erased(void **st)
{
    char case_id[ROUTING_ID_TEXT];
    s_case(h, POLICE, case_id);
    assert_int_equal(ident_decide(h, POLICE, case_id, IDENTIFIED, "interview", NULL), OK);
    char sql[SQL];
    snprintf(sql, sizeof sql,
             "DO $$ BEGIN DELETE FROM intake.status_decisions WHERE case_id = '%s';"
             " EXCEPTION WHEN raise_exception THEN NULL; END $$",
             case_id);
    PQclear(harness_sql(h, sql));
    snprintf(sql, sizeof sql,
             "DO $$ BEGIN UPDATE intake.status_decisions SET status = 3 WHERE case_id = '%s';"
             " EXCEPTION WHEN raise_exception THEN NULL; END $$",
             case_id);
    PQclear(harness_sql(h, sql));
    assert_int_equal(s_count(h,
                             "SELECT count(*) FROM intake.status_decisions WHERE case_id = '%s'"
                             " AND status = 2",
                             case_id),
                     1);
}

static void test_a_decision_needs_a_status_and_a_basis_code(void **st)
{
    char case_id[ROUTING_ID_TEXT], field[FIELD];
    s_case(h, POLICE, case_id);
    assert_int_equal(ident_decide(h, POLICE, case_id, 0, "interview", field), INVALID);
    assert_string_equal(field, "decide_status.status");
    assert_int_equal(ident_decide(h, POLICE, case_id, 7, "interview", field), INVALID);
    assert_string_equal(field, "decide_status.status");
    assert_int_equal(ident_decide(h, POLICE, case_id, IDENTIFIED, "he told me so", field), INVALID);
    assert_string_equal(field, "decide_status.basis");
    assert_int_equal(ident_decide(h, POLICE, "no-such-case", IDENTIFIED, "interview", field),
                     NRM__V1__STATUS__STATUS_NOT_FOUND);
    assert_string_equal(field, "decide_status.case_id");
}

static void test_the_competent_types_are_those_intake_status_deciders_names(void **st)
{
    harness_t *other = harness_new("identification_deciders");
    harness_config_set(other, "intake.status_deciders", json_pack("[s]", "JUDICIARY"));
    assert_int_equal(harness_start(other, "intake", 0), 0);
    char case_id[ROUTING_ID_TEXT];
    s_case(other, POLICE, case_id);
    assert_int_equal(ident_decide(other, POLICE, case_id, IDENTIFIED, "interview", NULL), DENIED);
    assert_int_equal(ident_decide(other, "coordinator", case_id, IDENTIFIED, "interview", NULL),
                     DENIED);
    assert_int_equal(
        ident_decide(other, PROSECUTOR, case_id, IDENTIFIED, "judicial_decision", NULL), OK);
    harness_destroy(&other);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(
            test_a_judiciary_agency_decides_and_the_decision_is_published_with_its_type),
        cmocka_unit_test(test_law_enforcement_and_the_coordinator_are_competent_too),
        cmocka_unit_test(test_an_incompetent_agency_type_is_refused_even_as_case_manager),
        cmocka_unit_test(test_a_decision_is_revised_by_a_new_one_and_the_history_is_kept),
        cmocka_unit_test(test_a_decision_is_never_erased),
        cmocka_unit_test(test_a_decision_needs_a_status_and_a_basis_code),
        cmocka_unit_test(test_the_competent_types_are_those_intake_status_deciders_names),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
