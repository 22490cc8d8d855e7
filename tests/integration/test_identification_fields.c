/* The data standard's case fields (issue 15) through a real nrm-intake: every field is checked
 * (a bad value is refused naming its path, and nothing is stored), a valid report publishes
 * them on case.opened, an update or a linked report adds to them on case.updated, and nothing
 * identifying reaches the stream or the log. */
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
#include <time.h>

#define MANAGER "police-ma-04"
#define OK NRM__V1__STATUS__STATUS_OK
#define INVALID NRM__V1__STATUS__STATUS_INVALID_ARGUMENT
#define FULL_NAME "Amara Okonkwo-Fields"
#define PHONE "+212 600 000 111"
#define DOCUMENT "PASS-A1234567"
#define NOTES "Met at the farm gate"

static harness_t *h;
static harness_sub_t *sub;

static int setup(void **state)
{
    h = harness_new("identification_fields");
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

/* The current year (UTC). */
static int s_this_year(void)
{
    time_t t = time(NULL);
    struct tm tm;
    gmtime_r(&t, &tm);
    return tm.tm_year + 1900;
}

/* What intake has stored: cases, reports, events, stored replies. */
static long long s_stored(void)
{
    return harness_sql_int(h, "SELECT (SELECT count(*) FROM intake.cases)"
                              " + (SELECT count(*) FROM intake.reports)"
                              " + (SELECT count(*) FROM intake.outbox)"
                              " + (SELECT count(*) FROM intake.requests)"
                              " + (SELECT count(*) FROM intake.screening_answers)");
}

/* A bad value: how to make it, and the path the refusal names. */
typedef struct {
    const char *what;
    void (*spoil)(ident_facts_t *f);
    const char *field;
} s_bad_t;

static void s_means_unknown(ident_facts_t *f)
{
    f->means[1] = 99;
}
static void s_means_zero(ident_facts_t *f)
{
    f->means[0] = 0;
}
static void s_recruitment_unknown(ident_facts_t *f)
{
    f->facts.recruitment_type = 42;
}
static void s_sector_negative(ident_facts_t *f)
{
    f->facts.labour_sector = -1;
}
static void s_relation_unknown(ident_facts_t *f)
{
    f->facts.recruiter_relation = 9;
}
static void s_month_13(ident_facts_t *f)
{
    f->period.start_month = 13;
}
static void s_month_without_year(ident_facts_t *f)
{
    f->period.start_year = 0;
    f->period.start_month = 5;
}
static void s_year_1850(ident_facts_t *f)
{
    f->period.start_year = 1850;
}
static void s_end_next_year(ident_facts_t *f)
{
    f->period.end_year = s_this_year() + 1;
}
static void s_ends_before_start(ident_facts_t *f)
{
    f->period.start_year = 2024;
    f->period.end_year = 2023;
}
static void s_transit_lower_case(ident_facts_t *f)
{
    f->transit[0] = "ne";
}
static void s_transit_twice(ident_facts_t *f)
{
    f->transit[1] = "NE";
}
static void s_unknown_indicator(ident_facts_t *f)
{
    ident_answer(f, "not_an_indicator", true);
}
static void s_indicator_twice(ident_facts_t *f)
{
    ident_answer(f, "debt_bondage", true);
    ident_answer(f, "debt_bondage", false);
}

static const s_bad_t s_bad[] = {
    {"an unknown means of control", s_means_unknown, "submit_report.facts.means_of_control[1]"},
    {"an unspecified means of control", s_means_zero, "submit_report.facts.means_of_control[0]"},
    {"an unknown recruitment type", s_recruitment_unknown, "submit_report.facts.recruitment_type"},
    {"a negative labour sector", s_sector_negative, "submit_report.facts.labour_sector"},
    {"an unknown relation to the recruiter", s_relation_unknown,
     "submit_report.facts.recruiter_relation"},
    {"month 13", s_month_13, "submit_report.facts.exploitation_period.start_month"},
    {"a month without its year", s_month_without_year,
     "submit_report.facts.exploitation_period.start_month"},
    {"a year before 1900", s_year_1850, "submit_report.facts.exploitation_period.start_year"},
    {"an end in the future", s_end_next_year, "submit_report.facts.exploitation_period.end_year"},
    {"an end before the start", s_ends_before_start,
     "submit_report.facts.exploitation_period.end_year"},
    {"a country of transit in lower case", s_transit_lower_case,
     "submit_report.facts.countries_of_transit[0]"},
    {"a country of transit listed twice", s_transit_twice,
     "submit_report.facts.countries_of_transit[1]"},
    {"an indicator not in the checklist", s_unknown_indicator,
     "submit_report.screening_answers[0].indicator_id"},
    {"an indicator answered twice", s_indicator_twice,
     "submit_report.screening_answers[1].indicator_id"},
};

/* A named adult woman with every case field set. */
static void s_report(scenario_report_t *s, ident_facts_t *f, const char *name)
{
    scenario_adult_woman(s, "MA-04", name, "1994-05-06");
    ident_facts_full(f);
    ident_attach(s, f);
}

static void test_each_bad_case_field_is_refused_naming_its_path_and_nothing_is_stored(void **st)
{
    long long before = s_stored();
    for (size_t i = 0; i < sizeof s_bad / sizeof s_bad[0]; i++) {
        scenario_report_t s;
        ident_facts_t f;
        s_report(&s, &f, FULL_NAME);
        s_bad[i].spoil(&f);
        ident_attach(&s, &f);
        Nrm__V1__Reply *reply = harness_call(h, "intake", MANAGER, &s.request);
        assert_non_null(reply);
        if (reply->status != INVALID || strcmp(reply->error_field, s_bad[i].field) != 0)
            fail_msg("%s: status %d field '%s', expected %s", s_bad[i].what, reply->status,
                     reply->error_field, s_bad[i].field);
        nrm__v1__reply__free_unpacked(reply, NULL);
    }
    assert_int_equal(s_stored(), before);
}

static void test_a_report_publishes_its_case_fields_on_case_opened(void **st)
{
    scenario_report_t s;
    ident_facts_t f;
    s_report(&s, &f, "Published Fields Person");
    char case_id[ROUTING_ID_TEXT];
    assert_int_equal(routing_submit(h, &s, MANAGER, case_id), OK);
    Nrm__V1__Event *ev = ident_next(sub, "case.opened", case_id, IDENT_WAIT_MS);
    assert_non_null(ev);
    const Nrm__V1__TraffickingFacts *got = ev->case_opened->facts;
    assert_non_null(got);
    assert_int_equal(got->n_means_of_control, 2);
    assert_int_equal(got->means_of_control[0], f.means[0]);
    assert_int_equal(got->means_of_control[1], f.means[1]);
    assert_int_equal(got->recruitment_type, f.facts.recruitment_type);
    assert_int_equal(got->labour_sector, f.facts.labour_sector);
    assert_int_equal(got->recruiter_relation, f.facts.recruiter_relation);
    assert_non_null(got->exploitation_period);
    assert_int_equal(got->exploitation_period->start_year, 2024);
    assert_int_equal(got->exploitation_period->start_month, 3);
    assert_int_equal(got->exploitation_period->end_year, 2025);
    assert_int_equal(got->exploitation_period->end_month, 0);
    assert_int_equal(got->n_countries_of_transit, 2);
    assert_string_equal(got->countries_of_transit[0], "NE");
    assert_string_equal(got->countries_of_transit[1], "DZ");
    assert_int_equal(ev->case_opened->status,
                     NRM__V1__TRAFFICKING_STATUS__TRAFFICKING_STATUS_PRESUMED_VICTIM);
    nrm__v1__event__free_unpacked(ev, NULL);
}

static void test_an_update_adds_to_the_case_fields_and_publishes_them_on_case_updated(void **st)
{
    scenario_report_t s;
    ident_facts_t f;
    s_report(&s, &f, "Updated Fields Person");
    char case_id[ROUTING_ID_TEXT];
    assert_int_equal(routing_submit(h, &s, MANAGER, case_id), OK);
    ident_facts_t add;
    ident_facts_init(&add);
    add.means[0] = NRM__V1__MEANS_OF_CONTROL__MEANS_OF_CONTROL_THREATS;
    add.means[1] = NRM__V1__MEANS_OF_CONTROL__MEANS_OF_CONTROL_DEBT_BONDAGE; /* known already */
    add.facts.n_means_of_control = 2;
    add.transit[0] = "ES";
    add.facts.n_countries_of_transit = 1;
    add.facts.labour_sector = NRM__V1__LABOUR_SECTOR__LABOUR_SECTOR_CONSTRUCTION;
    Nrm__V1__UpdateCase u = NRM__V1__UPDATE_CASE__INIT;
    u.case_id = case_id;
    u.facts = &add.facts;
    Nrm__V1__Request req = NRM__V1__REQUEST__INIT;
    scenario_request(&req, NRM__V1__REQUEST__BODY_UPDATE_CASE, &u);
    Nrm__V1__Reply *reply = harness_call(h, "intake", MANAGER, &req);
    assert_non_null(reply);
    assert_int_equal(reply->status, OK);
    nrm__v1__reply__free_unpacked(reply, NULL);
    Nrm__V1__Event *ev = ident_next(sub, "case.updated", case_id, IDENT_WAIT_MS);
    assert_non_null(ev);
    const Nrm__V1__TraffickingFacts *got = ev->case_updated->facts;
    assert_non_null(got);
    assert_int_equal(got->n_means_of_control, 3);
    assert_int_equal(got->means_of_control[2], NRM__V1__MEANS_OF_CONTROL__MEANS_OF_CONTROL_THREATS);
    assert_int_equal(got->labour_sector, NRM__V1__LABOUR_SECTOR__LABOUR_SECTOR_CONSTRUCTION);
    assert_int_equal(got->recruitment_type, f.facts.recruitment_type); /* unset: unchanged */
    assert_int_equal(got->n_countries_of_transit, 3);
    assert_string_equal(got->countries_of_transit[2], "ES");
    nrm__v1__event__free_unpacked(ev, NULL);
}

static void test_a_bad_field_of_an_update_is_refused_naming_its_path_and_changes_nothing(void **st)
{
    scenario_report_t s;
    ident_facts_t f;
    s_report(&s, &f, "Refused Update Person");
    char case_id[ROUTING_ID_TEXT];
    assert_int_equal(routing_submit(h, &s, MANAGER, case_id), OK);
    char sql[256];
    snprintf(sql, sizeof sql, "SELECT md5(facts) FROM intake.cases WHERE case_id = '%s'", case_id);
    PGresult *res = harness_sql(h, sql);
    char before[64];
    snprintf(before, sizeof before, "%s", PQgetvalue(res, 0, 0));
    PQclear(res);
    long long events = harness_sql_int(h, "SELECT count(*) FROM intake.outbox");
    ident_facts_t add;
    ident_facts_init(&add);
    add.facts.labour_sector = 77;
    add.transit[0] = "ES";
    add.facts.n_countries_of_transit = 1;
    Nrm__V1__UpdateCase u = NRM__V1__UPDATE_CASE__INIT;
    u.case_id = case_id;
    u.facts = &add.facts;
    Nrm__V1__Request req = NRM__V1__REQUEST__INIT;
    scenario_request(&req, NRM__V1__REQUEST__BODY_UPDATE_CASE, &u);
    Nrm__V1__Reply *reply = harness_call(h, "intake", MANAGER, &req);
    assert_non_null(reply);
    assert_int_equal(reply->status, INVALID);
    assert_string_equal(reply->error_field, "update_case.facts.labour_sector");
    nrm__v1__reply__free_unpacked(reply, NULL);
    res = harness_sql(h, sql);
    assert_string_equal(PQgetvalue(res, 0, 0), before);
    PQclear(res);
    assert_int_equal(harness_sql_int(h, "SELECT count(*) FROM intake.outbox"), events);
}

static void test_a_linked_report_adds_its_case_fields_to_the_case(void **st)
{
    scenario_report_t s;
    ident_facts_t f;
    s_report(&s, &f, "Linked Fields Person");
    char case_id[ROUTING_ID_TEXT], linked[ROUTING_ID_TEXT];
    assert_int_equal(routing_submit(h, &s, MANAGER, case_id), OK);
    scenario_report_t again;
    ident_facts_t more;
    scenario_adult_woman(&again, "MA-04", "Linked Fields Person", "1994-05-06");
    ident_facts_init(&more);
    more.transit[0] = "ML";
    more.facts.n_countries_of_transit = 1;
    ident_attach(&again, &more);
    assert_int_equal(routing_submit(h, &again, "hotline-national", linked), OK);
    assert_string_equal(linked, case_id);
    Nrm__V1__Event *ev = ident_next(sub, "case.updated", case_id, IDENT_WAIT_MS);
    assert_non_null(ev);
    assert_int_equal(ev->case_updated->facts->n_countries_of_transit, 3);
    assert_string_equal(ev->case_updated->facts->countries_of_transit[2], "ML");
    nrm__v1__event__free_unpacked(ev, NULL);
}

static void test_nothing_identifying_reaches_the_stream_or_the_log(void **st)
{
    scenario_report_t s;
    ident_facts_t f;
    s_report(&s, &f, FULL_NAME);
    ident_answer(&f, "debt_bondage", true);
    ident_attach(&s, &f);
    s.report.notes = NOTES;
    char case_id[ROUTING_ID_TEXT];
    assert_int_equal(routing_submit(h, &s, MANAGER, case_id), OK);
    Nrm__V1__Event *ev = ident_next(sub, "case.opened", case_id, IDENT_WAIT_MS);
    assert_non_null(ev);
    nrm__v1__event__free_unpacked(ev, NULL);
    const char *secrets[] = {FULL_NAME, "Okonkwo", PHONE, DOCUMENT, NOTES, "1994-05-06"};
    for (size_t i = 0; i < sizeof secrets / sizeof *secrets; i++) {
        assert_false(harness_sub_saw_bytes(sub, secrets[i]));
        assert_false(harness_log_contains(h, "intake", 0, secrets[i]));
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_each_bad_case_field_is_refused_naming_its_path_and_nothing_is_stored),
        cmocka_unit_test(test_a_report_publishes_its_case_fields_on_case_opened),
        cmocka_unit_test(test_an_update_adds_to_the_case_fields_and_publishes_them_on_case_updated),
        cmocka_unit_test(
            test_a_bad_field_of_an_update_is_refused_naming_its_path_and_changes_nothing),
        cmocka_unit_test(test_a_linked_report_adds_its_case_fields_to_the_case),
        cmocka_unit_test(test_nothing_identifying_reaches_the_stream_or_the_log),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
