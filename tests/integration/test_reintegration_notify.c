/* Who hears reintegration's follow-ups, against real nrm-reintegration and nrm-notify processes:
 * a follow-up that falls due reaches the plan's manager, one that becomes overdue the
 * coordinator (services/notify/DASHBOARDS.md). Offsets of one second (configuration). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "harness.h"
#include "notify_fixture.h"
#include "reint_fixture.h"

#include <stdio.h>

#define OK NRM__V1__STATUS__STATUS_OK
#define MANAGER_ID "ilo-partner-national"
#define CASE_ID "notify-case-1"
#define SQL_MAX 512

static harness_t *h;

static int setup(void **state)
{
    h = harness_new("reintegration_notify");
    notify_fixture_settings_t settings = {
        .max_attempts = 2, .backoff_ms = 100, .max_backoff_ms = 200, .timeout_ms = 1000};
    notify_fixture_config(h, &settings, NULL);
    harness_config_set(h, "reintegration.followup_offsets_s", json_loads("[1]", 0, NULL));
    harness_config_set(h, "reintegration.followup_window_s", json_integer(1));
    harness_config_set(h, "reintegration.check_ms", json_integer(200));
    if (harness_start(h, "intake", 0) != 0 || harness_start(h, "routing", 0) != 0 ||
        harness_start(h, "reintegration", 0) != 0)
        return -1;
    return harness_start(h, "notify", 0);
}

static int teardown(void **state)
{
    harness_destroy(&h);
    return 0;
}

/* How many deliveries of topic notify made for agency. */
static long long s_deliveries(const char *topic, const char *agency)
{
    char sql[SQL_MAX];
    snprintf(sql, sizeof sql,
             "SELECT count(*) FROM notify.deliveries WHERE topic = '%s' AND agency_id = '%s'"
             " AND case_id = '" CASE_ID "'",
             topic, agency);
    return notify_fixture_wait(h, sql, 1);
}

static void the_manager_hears_a_due_followup_and_the_coordinator_an_overdue_one(void **state)
{
    harness_sql_int(h, "INSERT INTO reintegration.cases (case_id, manager_agency_id, nationality)"
                       " VALUES ('" CASE_ID "', 'police-ma-06', 'NG') RETURNING 0");
    Nrm__V1__OpenPlan o = NRM__V1__OPEN_PLAN__INIT;
    o.case_id = CASE_ID;
    o.kind = NRM__V1__PLAN_KIND__PLAN_KIND_LOCAL_REINTEGRATION;
    o.manager_agency_id = MANAGER_ID;
    assert_int_equal(reint_status(h, "coordinator", NRM__V1__REQUEST__BODY_OPEN_PLAN, &o), OK);
    assert_int_equal(s_deliveries("reintegration.followup_due", MANAGER_ID), 1);
    assert_int_equal(s_deliveries("reintegration.followup_overdue", "coordinator"), 1);
    assert_int_equal(harness_sql_int(h, "SELECT count(*) FROM notify.deliveries WHERE"
                                        " topic = 'reintegration.followup_overdue'"
                                        " AND agency_id = '" MANAGER_ID "'"),
                     0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(the_manager_hears_a_due_followup_and_the_coordinator_an_overdue_one),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
