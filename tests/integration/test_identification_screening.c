/* Screening with the default checklist (deploy/demo/screening.json) through real nrm-intake
 * and nrm-routing processes: a table of checklists gets the outcome (likely, possible,
 * unlikely, not screened) and the dimensions the rule gives, for adults and minors; answers
 * given later are screened again; a minor gets child protection at once whatever the
 * screening; a routing rule may be conditioned on the screening; and a policy conditioned on
 * cooperation with law enforcement is refused at start and at reload. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "harness.h"
#include "ident_fixture.h"
#include "routing_scenario.h"
#include "scenario.h"

#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#define MANAGER "police-ma-04"
#define OK NRM__V1__STATUS__STATUS_OK
#define ADULT 30
#define MINOR 15
#define MAX_ANSWERS 8
#define MAX_DIMS 5
#define COOPERATION_MESSAGE "assistance is never conditional on cooperating with law enforcement"

#define NOT_SCREENED NRM__V1__SCREENING_OUTCOME__SCREENING_OUTCOME_NOT_SCREENED
#define UNLIKELY NRM__V1__SCREENING_OUTCOME__SCREENING_OUTCOME_UNLIKELY
#define POSSIBLE NRM__V1__SCREENING_OUTCOME__SCREENING_OUTCOME_POSSIBLE
#define LIKELY NRM__V1__SCREENING_OUTCOME__SCREENING_OUTCOME_LIKELY
#define DR NRM__V1__INDICATOR_DIMENSION__INDICATOR_DIMENSION_DECEPTIVE_RECRUITMENT
#define CR NRM__V1__INDICATOR_DIMENSION__INDICATOR_DIMENSION_COERCIVE_RECRUITMENT
#define AV NRM__V1__INDICATOR_DIMENSION__INDICATOR_DIMENSION_ABUSE_OF_VULNERABILITY
#define EC NRM__V1__INDICATOR_DIMENSION__INDICATOR_DIMENSION_EXPLOITATIVE_CONDITIONS
#define CD NRM__V1__INDICATOR_DIMENSION__INDICATOR_DIMENSION_COERCION_AT_DESTINATION
#define LEGAL_AID NRM__V1__SERVICE_TYPE__SERVICE_TYPE_LEGAL_AID
#define CHILD_PROTECTION NRM__V1__SERVICE_TYPE__SERVICE_TYPE_CHILD_PROTECTION

static harness_t *h;
static harness_sub_t *sub;

/* One checklist of the table: who, which indicators are present ("!id": answered absent), and
 * what the rule concludes. */
typedef struct {
    const char *what;
    int age;
    const char *answers[MAX_ANSWERS];
    Nrm__V1__ScreeningOutcome outcome;
    int dims[MAX_DIMS]; /* in enum order, 0-terminated */
} s_checklist_t;

static const s_checklist_t s_table[] = {
    {"an adult not screened", ADULT, {NULL}, NOT_SCREENED, {0}},
    {"a minor not screened", MINOR, {NULL}, NOT_SCREENED, {0}},
    {"an adult with every indicator answered absent",
     ADULT,
     {"!deceived_nature_of_job", "!excessive_working_hours", "!documents_confiscated"},
     UNLIKELY,
     {0}},
    {"an adult with medium and weak indicators only",
     ADULT,
     {"deceived_conditions_of_work", "no_respect_of_labour_law", "dependency_on_exploiters"},
     UNLIKELY,
     {0}},
    {"an adult whose vulnerability was used, weakly",
     ADULT,
     {"abuse_of_lack_of_information", "abuse_of_economic_situation", "!debt_bondage"},
     UNLIKELY,
     {0}},
    {"an adult with one strong indicator alone", ADULT, {"debt_bondage"}, POSSIBLE, {CD}},
    {"an adult with one positive dimension",
     ADULT,
     {"documents_confiscated", "wages_withheld"},
     POSSIBLE,
     {CD}},
    {"an adult deceived and exploited but not coerced",
     ADULT,
     {"deceived_nature_of_job", "deceived_conditions_of_work", "excessive_working_hours",
      "no_or_very_low_pay"},
     POSSIBLE,
     {DR, EC}},
    {"a minor deceived and exploited (no means needed for a child)",
     MINOR,
     {"deceived_nature_of_job", "deceived_conditions_of_work", "excessive_working_hours",
      "no_or_very_low_pay"},
     LIKELY,
     {DR, EC}},
    {"an adult deceived, exploited and coerced",
     ADULT,
     {"deceived_nature_of_job", "deceived_conditions_of_work", "excessive_working_hours",
      "no_or_very_low_pay", "documents_confiscated", "confinement_or_surveillance"},
     LIKELY,
     {DR, EC, CD}},
    {"an adult recruited by force, exploited and coerced",
     ADULT,
     {"abduction_or_sale", "violence_at_recruitment", "forced_tasks_or_clients", "hazardous_work",
      "violence_or_threats", "threat_of_denunciation"},
     LIKELY,
     {CR, EC, CD}},
    {"a minor exploited and coerced at destination",
     MINOR,
     {"forced_tasks_or_clients", "degrading_living_conditions", "debt_bondage", "wages_withheld"},
     LIKELY,
     {EC, CD}},
    {"a minor with weak indicators only",
     MINOR,
     {"abuse_of_economic_situation", "no_respect_of_labour_law"},
     UNLIKELY,
     {0}},
};

/* The rule that conditions legal aid on the screening, for the routing tests. */
static json_t *s_screening_rule(void)
{
    return json_pack("{s:s, s:[s], s:{s:[s]}, s:s, s:s}", "id", "likely-legal-aid", "services",
                     "LEGAL_AID", "when", "screening", "LIKELY", "decision", "refer", "reason",
                     "Screening found trafficking likely: legal aid is offered");
}

/* A rule conditioned on cooperation with law enforcement, which no policy may hold. */
static json_t *s_cooperation_rule(void)
{
    return json_pack("{s:s, s:{s:b}, s:s, s:s}", "id", "shelter-if-cooperating", "when",
                     "cooperates_with_law_enforcement", 1, "decision", "refer", "reason",
                     "Refer only people who cooperate");
}

static int setup(void **state)
{
    h = harness_new("identification_screening");
    harness_config_set(h, "routing.policy.rules", json_pack("[o]", s_screening_rule()));
    if (harness_start(h, "intake", 0) != 0 || harness_start(h, "routing", 0) != 0)
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

/* Fills f with the answers of a row ("!id" answered absent). */
static void s_answers(ident_facts_t *f, const char *const *answers)
{
    ident_facts_init(f);
    for (size_t i = 0; i < MAX_ANSWERS && answers[i]; i++)
        ident_answer(f, answers[i] + (answers[i][0] == '!'), answers[i][0] != '!');
}

/* Submits a consenting person of that age with those answers; returns case.opened. */
static Nrm__V1__Event *s_open(int age, const char *const *answers, char case_id[ROUTING_ID_TEXT])
{
    scenario_report_t s;
    ident_facts_t f;
    routing_person(&s, "MA-04", age, NRM__V1__GENDER__GENDER_FEMALE, "NG", true);
    s_answers(&f, answers);
    ident_attach(&s, &f);
    s.report.facts = NULL;
    assert_int_equal(routing_submit(h, &s, MANAGER, case_id), OK);
    return ident_next(sub, "case.opened", case_id, IDENT_WAIT_MS);
}

/* Asserts a published screening against a row; returns false (with the reason on stderr). */
static bool s_screening_is(const Nrm__V1__Screening *got, const s_checklist_t *row)
{
    size_t n = 0;
    while (n < MAX_DIMS && row->dims[n])
        n++;
    bool same = got && got->outcome == row->outcome && got->n_dimensions == n;
    for (size_t i = 0; same && i < n; i++)
        same = (int)got->dimensions[i] == row->dims[i];
    if (!same)
        fprintf(stderr, "%s: outcome %d with %zu dimensions, expected %d with %zu\n", row->what,
                got ? (int)got->outcome : -1, got ? got->n_dimensions : 0, (int)row->outcome, n);
    return same;
}

static void test_each_checklist_of_the_table_gets_the_outcome_and_dimensions_of_the_rule(void **st)
{
    int wrong = 0;
    for (size_t i = 0; i < sizeof s_table / sizeof s_table[0]; i++) {
        char case_id[ROUTING_ID_TEXT];
        Nrm__V1__Event *ev = s_open(s_table[i].age, s_table[i].answers, case_id);
        assert_non_null(ev);
        wrong += !s_screening_is(ev->case_opened->screening, &s_table[i]);
        char sql[200];
        snprintf(sql, sizeof sql, "SELECT screening_outcome FROM intake.cases WHERE case_id = '%s'",
                 case_id);
        wrong += harness_sql_int(h, sql) != s_table[i].outcome;
        nrm__v1__event__free_unpacked(ev, NULL);
    }
    assert_int_equal(wrong, 0);
}

static void test_answers_given_later_are_screened_again_and_published_on_case_updated(void **st)
{
    static const char *const none[] = {NULL};
    char case_id[ROUTING_ID_TEXT];
    Nrm__V1__Event *ev = s_open(ADULT, none, case_id);
    assert_non_null(ev);
    assert_int_equal(ev->case_opened->screening->outcome, NOT_SCREENED);
    nrm__v1__event__free_unpacked(ev, NULL);
    const s_checklist_t *likely = &s_table[9];
    ident_facts_t f;
    s_answers(&f, likely->answers);
    Nrm__V1__UpdateCase u = NRM__V1__UPDATE_CASE__INIT;
    u.case_id = case_id;
    u.screening_answers = f.answer_ptrs;
    u.n_screening_answers = f.n_answers;
    Nrm__V1__Request req = NRM__V1__REQUEST__INIT;
    scenario_request(&req, NRM__V1__REQUEST__BODY_UPDATE_CASE, &u);
    Nrm__V1__Reply *reply = harness_call(h, "intake", MANAGER, &req);
    assert_non_null(reply);
    assert_int_equal(reply->status, OK);
    nrm__v1__reply__free_unpacked(reply, NULL);
    ev = ident_next(sub, "case.updated", case_id, IDENT_WAIT_MS);
    assert_non_null(ev);
    assert_true(s_screening_is(ev->case_updated->screening, likely));
    assert_string_equal(ev->case_updated->screening->checklist_version, "nrm-default-2026-1");
    nrm__v1__event__free_unpacked(ev, NULL);
}

static void test_a_minor_screened_unlikely_gets_child_protection_at_once(void **st)
{
    char case_id[ROUTING_ID_TEXT];
    Nrm__V1__Event *ev = s_open(MINOR, s_table[12].answers, case_id);
    assert_non_null(ev);
    assert_int_equal(ev->case_opened->screening->outcome, UNLIKELY);
    nrm__v1__event__free_unpacked(ev, NULL);
    assert_int_equal(routing_wait_referrals(h, case_id, 1), 1);
    assert_int_equal(routing_count_referrals(h, case_id, CHILD_PROTECTION), 1);
}

static void test_a_rule_conditioned_on_the_screening_refers_likely_cases_only(void **st)
{
    char likely[ROUTING_ID_TEXT], unlikely[ROUTING_ID_TEXT];
    Nrm__V1__Event *ev = s_open(ADULT, s_table[9].answers, likely);
    nrm__v1__event__free_unpacked(ev, NULL);
    ev = s_open(ADULT, s_table[3].answers, unlikely);
    nrm__v1__event__free_unpacked(ev, NULL);
    assert_int_equal(routing_wait_referrals(h, likely, 1), 1);
    assert_int_equal(routing_count_referrals(h, likely, LEGAL_AID), 1);
    assert_true(routing_wait_caught_up(h, IDENT_WAIT_MS));
    assert_int_equal(routing_count_referrals(h, unlikely, LEGAL_AID), 0);
}

static void test_routing_refuses_to_start_with_a_policy_conditioned_on_cooperation(void **st)
{
    harness_t *other = harness_new("identification_cooperation");
    harness_config_set(other, "routing.policy.rules", json_pack("[o]", s_cooperation_rule()));
    assert_int_equal(harness_start(other, "intake", 0), 0);
    assert_int_equal(harness_start(other, "routing", 0), -1);
    assert_true(harness_log_contains(other, "routing", 0, COOPERATION_MESSAGE));
    assert_true(harness_log_contains(other, "routing", 0, "cooperates_with_law_enforcement"));
    harness_destroy(&other);
}

static void test_routing_keeps_its_policy_when_a_reload_brings_a_cooperation_condition(void **st)
{
    harness_config_set(h, "routing.policy.rules",
                       json_pack("[o, o]", s_screening_rule(), s_cooperation_rule()));
    harness_reload(h, "routing", 0);
    for (int i = 0; i < 50 && !harness_log_contains(h, "routing", 0, COOPERATION_MESSAGE); i++)
        usleep(100 * 1000);
    assert_true(harness_log_contains(h, "routing", 0, COOPERATION_MESSAGE));
    assert_true(harness_pid(h, "routing", 0) > 0);
    /* the previous policy still routes */
    char likely[ROUTING_ID_TEXT];
    Nrm__V1__Event *ev = s_open(ADULT, s_table[9].answers, likely);
    nrm__v1__event__free_unpacked(ev, NULL);
    assert_int_equal(routing_wait_referrals(h, likely, 1), 1);
    assert_int_equal(routing_count_referrals(h, likely, LEGAL_AID), 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(
            test_each_checklist_of_the_table_gets_the_outcome_and_dimensions_of_the_rule),
        cmocka_unit_test(test_answers_given_later_are_screened_again_and_published_on_case_updated),
        cmocka_unit_test(test_a_minor_screened_unlikely_gets_child_protection_at_once),
        cmocka_unit_test(test_a_rule_conditioned_on_the_screening_refers_likely_cases_only),
        cmocka_unit_test(test_routing_refuses_to_start_with_a_policy_conditioned_on_cooperation),
        cmocka_unit_test(
            test_routing_keeps_its_policy_when_a_reload_brings_a_cooperation_condition),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
