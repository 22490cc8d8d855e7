/* Case roles against real nrm-intake, nrm-routing, nrm-shelter and nrm-notify processes: a case
 * has one case manager (the agency whose report opened it, until the coordinator reassigns it);
 * an agency whose report links to the case becomes a reporter, which lets it hear the outcomes
 * and gives it no power over the case; every link is audited, and an agency that links more
 * often than intake.link_alert allows raises one case.link_alert for the coordinator. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "authz_fixture.h"
#include "harness.h"
#include "notify_fixture.h"
#include "notify_sinks.h"
#include "routing_scenario.h"
#include "scenario.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define OK NRM__V1__STATUS__STATUS_OK
#define DENIED NRM__V1__STATUS__STATUS_PERMISSION_DENIED
#define INVALID NRM__V1__STATUS__STATUS_INVALID_ARGUMENT
#define B(name) NRM__V1__REQUEST__BODY_##name
#define MAX_LINKS 2
#define WINDOW_S 3600
#define SECRET "case-roles-secret-0123456789abcdef"
#define SQL_MAX 512

static harness_t *h;
static notify_receiver_t *receiver;

static int setup(void **state)
{
    h = harness_new("case_roles");
    receiver = notify_receiver_new();
    notify_fixture_settings_t settings = {
        .max_attempts = 3, .backoff_ms = 100, .max_backoff_ms = 200, .timeout_ms = 1000};
    notify_fixture_config(h, &settings, NULL);
    harness_config_set(h, "intake.link_alert.max_links", json_integer(MAX_LINKS));
    harness_config_set(h, "intake.link_alert.window_s", json_integer(WINDOW_S));
    const char *services[] = {"intake", "routing", "shelter", "notify"};
    for (size_t i = 0; i < sizeof services / sizeof *services; i++)
        if (harness_start(h, services[i], 0) != 0)
            return -1;
    const char *subscribers[] = {"coordinator", "hotline-national"};
    char url[256], id[65];
    for (size_t i = 0; i < sizeof subscribers / sizeof *subscribers; i++)
        notify_fixture_subscribe_ok(h, subscribers[i], "webhook",
                                    notify_fixture_url(receiver, subscribers[i], url), NULL, SECRET,
                                    id);
    return 0;
}

static int teardown(void **state)
{
    harness_destroy(&h);
    notify_receiver_destroy(&receiver);
    return 0;
}

/* Sends UpdateCase, WithdrawConsent or CloseCase about case_id as agency; returns the status
 * and the error field. */
static Nrm__V1__Status s_change(Nrm__V1__Request__BodyCase body, const char *agency,
                                const char *case_id, char field[AUTHZ_FIXTURE_ID])
{
    Nrm__V1__UpdateCase u = NRM__V1__UPDATE_CASE__INIT;
    Nrm__V1__WithdrawConsent w = NRM__V1__WITHDRAW_CONSENT__INIT;
    Nrm__V1__CloseCase c = NRM__V1__CLOSE_CASE__INIT;
    u.case_id = w.case_id = c.case_id = (char *)case_id;
    u.urgency = NRM__V1__URGENCY__URGENCY_EMERGENCY;
    c.reason = "not_a_victim";
    void *message = body == B(UPDATE_CASE) ? (void *)&u : body == B(CLOSE_CASE) ? (void *)&c : &w;
    return authz_fixture_call(h, "intake", agency, body, message, field);
}

/* Sends ReassignCase as agency; returns the status and the error field. */
static Nrm__V1__Status s_reassign(const char *agency, const char *case_id, const char *manager,
                                  char field[AUTHZ_FIXTURE_ID])
{
    Nrm__V1__ReassignCase r = NRM__V1__REASSIGN_CASE__INIT;
    r.case_id = (char *)case_id;
    r.case_manager_agency_id = (char *)manager;
    return authz_fixture_call(h, "intake", agency, B(REASSIGN_CASE), &r, field);
}

/* The value of a one-value SQL query about case_id (a %s in sql). */
static long long s_sql_about(const char *sql, const char *case_id)
{
    char text[SQL_MAX];
    snprintf(text, sizeof text, sql, case_id);
    return harness_sql_int(h, text);
}

static void test_a_linked_report_grants_no_power_over_the_case(void **state)
{
    authz_fixture_case_t c;
    authz_fixture_case(h, "police-ma-04", "hospital-ma-04", 0, &c);
    static const Nrm__V1__Request__BodyCase changes[] = {B(UPDATE_CASE), B(WITHDRAW_CONSENT),
                                                         B(CLOSE_CASE)};
    static const char *const fields[] = {"update_case.case_id", "withdraw_consent.case_id",
                                         "close_case.case_id"};
    for (size_t i = 0; i < sizeof changes / sizeof *changes; i++) {
        char field[AUTHZ_FIXTURE_ID];
        assert_int_equal(s_change(changes[i], "hospital-ma-04", c.case_id, field), DENIED);
        assert_string_equal(field, fields[i]);
    }
    char sql[SQL_MAX];
    snprintf(sql, sizeof sql,
             "SELECT count(*) FROM intake.cases WHERE case_id = '%s' AND status = 'open'"
             " AND consent_to_referral AND urgency <> %d",
             c.case_id, (int)NRM__V1__URGENCY__URGENCY_EMERGENCY);
    assert_int_equal(harness_sql_int(h, sql), 1);
    assert_int_equal(s_sql_about("SELECT count(*) FROM intake.outbox WHERE topic IN"
                                 " ('case.updated', 'case.consent_withdrawn', 'case.closed')"
                                 " AND position('%s'::bytea in payload) > 0",
                                 c.case_id),
                     0);
}

static void test_the_linking_reporter_still_hears_the_outcome_of_the_case(void **state)
{
    authz_fixture_case_t c;
    authz_fixture_case(h, "police-ma-06", "hotline-national", 0, &c);
    char field[AUTHZ_FIXTURE_ID];
    assert_int_equal(s_change(B(CLOSE_CASE), "police-ma-06", c.case_id, field), OK);
    char sql[SQL_MAX];
    snprintf(sql, sizeof sql,
             "SELECT count(*) FROM notify.deliveries WHERE agency_id = 'hotline-national'"
             " AND case_id = '%s' AND topic = 'case.closed'",
             c.case_id);
    assert_int_equal(notify_fixture_wait(h, sql, 1), 1);
}

static void test_the_new_case_manager_may_close_the_case_and_the_old_one_may_not(void **state)
{
    harness_sub_t *sub = harness_subscribe(h, "intake", 0);
    authz_fixture_case_t c;
    authz_fixture_case(h, "gendarmerie-ma-02", NULL, 0, &c);
    char field[AUTHZ_FIXTURE_ID];
    assert_int_equal(s_reassign("coordinator", c.case_id, "ngo-ma-07", field), OK);
    Nrm__V1__Event *ev = harness_sub_next(sub, "case.manager_changed", HARNESS_TIMEOUT_MS);
    assert_non_null(ev);
    assert_string_equal(ev->case_id, c.case_id);
    assert_string_equal(ev->case_manager_changed->case_manager_agency_id, "ngo-ma-07");
    nrm__v1__event__free_unpacked(ev, NULL);
    assert_int_equal(s_change(B(CLOSE_CASE), "gendarmerie-ma-02", c.case_id, field), DENIED);
    assert_int_equal(s_change(B(CLOSE_CASE), "ngo-ma-07", c.case_id, field), OK);
    harness_sub_destroy(&sub);
}

static void test_only_a_coordinator_reassigns_and_only_to_a_configured_agency(void **state)
{
    authz_fixture_case_t c;
    authz_fixture_case(h, "labour-ma-06", NULL, 0, &c);
    char field[AUTHZ_FIXTURE_ID];
    assert_int_equal(s_reassign("labour-ma-06", c.case_id, "ngo-ma-07", field), DENIED);
    assert_string_equal(field, "reassign_case");
    assert_int_equal(s_reassign("coordinator", c.case_id, "no-such-agency", field), INVALID);
    assert_string_equal(field, "reassign_case.case_manager_agency_id");
    assert_int_equal(s_sql_about("SELECT count(*) FROM intake.cases WHERE case_id = '%s'"
                                 " AND case_manager_agency_id = 'labour-ma-06'",
                                 c.case_id),
                     1);
}

static void test_every_link_is_audited_with_the_case_as_subject(void **state)
{
    authz_fixture_case_t c;
    authz_fixture_case(h, "hospital-ma-06", "border-ma-01", 0, &c);
    assert_int_equal(s_sql_about("SELECT count(*) FROM intake.audit_log WHERE kind = 'case_link'"
                                 " AND status = 'OK' AND agency_id = 'border-ma-01'"
                                 " AND subject_id = '%s'",
                                 c.case_id),
                     1);
    /* the report that opened the case is no link */
    assert_int_equal(s_sql_about("SELECT count(*) FROM intake.audit_log WHERE kind = 'case_link'"
                                 " AND agency_id = 'hospital-ma-06' AND subject_id = '%s'",
                                 c.case_id),
                     0);
}

static void test_crossing_the_link_rate_raises_one_case_link_alert(void **state)
{
    const int links = MAX_LINKS + 3;
    for (int i = 0; i < links; i++) {
        authz_fixture_case_t c;
        authz_fixture_case(h, "police-ma-01", "labour-ma-09", 0, &c);
    }
    harness_wait_sql(h, "SELECT count(*) FROM intake.outbox WHERE seq IS NULL", 0,
                     HARNESS_TIMEOUT_MS);
    Nrm__V1__Event **events = NULL;
    size_t n = harness_fetch_all(h, "intake", &events), alerts = 0;
    for (size_t i = 0; i < n; i++) {
        if (events[i]->body_case == NRM__V1__EVENT__BODY_CASE_LINK_ALERT) {
            alerts++;
            assert_string_equal(events[i]->case_id, "");
            assert_string_equal(events[i]->case_link_alert->agency_id, "labour-ma-09");
            assert_int_equal(events[i]->case_link_alert->links, MAX_LINKS + 1);
            assert_int_equal(events[i]->case_link_alert->window_s, WINDOW_S);
        }
        nrm__v1__event__free_unpacked(events[i], NULL);
    }
    free(events);
    assert_int_equal(alerts, 1);
    assert_int_equal(notify_fixture_wait(h,
                                         "SELECT count(*) FROM notify.deliveries WHERE"
                                         " agency_id = 'coordinator' AND topic = 'case.link_alert'",
                                         1),
                     1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_a_linked_report_grants_no_power_over_the_case),
        cmocka_unit_test(test_the_linking_reporter_still_hears_the_outcome_of_the_case),
        cmocka_unit_test(test_the_new_case_manager_may_close_the_case_and_the_old_one_may_not),
        cmocka_unit_test(test_only_a_coordinator_reassigns_and_only_to_a_configured_agency),
        cmocka_unit_test(test_every_link_is_audited_with_the_case_as_subject),
        cmocka_unit_test(test_crossing_the_link_rate_raises_one_case_link_alert),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
