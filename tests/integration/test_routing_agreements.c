/* Partnership agreements against real processes, with routing.require_agreement: a provider is
 * routed to for a service only under an agreement valid today that covers it and has room; a
 * need without one waits and is routed as soon as an agreement is added; an expired agreement
 * stops routing; routing.agreement_ending is published once, 30 days before the end. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "directory_fixture.h"
#include "harness.h"
#include "routing_scenario.h"

#include <czmq.h>
#include <stdio.h>
#include <string.h>

#define OK NRM__V1__STATUS__STATUS_OK
#define ROUTINE NRM__V1__URGENCY__URGENCY_ROUTINE
#define CHECK_MS 200
#define TICKS_WAIT_MS 1500
#define SQL_MAX 512

static harness_t *h;

static int setup(void **state)
{
    h = harness_new("routing_agreements");
    harness_config_set(h, "routing.require_agreement", json_true());
    harness_config_set(h, "routing.directory_check_ms", json_integer(CHECK_MS));
    if (harness_start(h, "intake", 0) != 0)
        return -1;
    return harness_start(h, "routing", 0);
}

static int teardown(void **state)
{
    harness_destroy(&h);
    return 0;
}

/* The agreement the case's return-assistance referral was made under ("" for none). */
static long long s_under(const char *case_id, const char *agreement_id)
{
    char sql[SQL_MAX];
    snprintf(sql, sizeof sql,
             "SELECT count(*) FROM routing.referrals WHERE case_id = '%s' AND agreement_id = '%s'",
             case_id, agreement_id);
    return harness_sql_int(h, sql);
}

/* How many routing.agreement_ending routing published for the agreement. */
static size_t s_warnings(const char *agreement_id)
{
    Nrm__V1__Event **ev = NULL;
    size_t n = harness_fetch_all(h, "routing", &ev), count = 0;
    for (size_t i = 0; i < n; i++) {
        if (ev[i]->body_case == NRM__V1__EVENT__BODY_AGREEMENT_ENDING &&
            strcmp(ev[i]->agreement_ending->agreement_id, agreement_id) == 0) {
            count++;
            assert_string_equal(ev[i]->topic, "routing.agreement_ending");
            assert_string_equal(ev[i]->agreement_ending->provider_agency_id, "iom-ma");
            assert_int_equal(ev[i]->agreement_ending->days_left, 10);
        }
        nrm__v1__event__free_unpacked(ev[i], NULL);
    }
    free(ev);
    return count;
}

static void test_a_need_waits_for_an_agreement_and_is_routed_when_one_is_added(void **s)
{
    char case_id[ROUTING_ID_TEXT], provider[ROUTING_ID_TEXT], start[16], end[16];
    directory_case(h, "MA-07", ROUTINE, case_id);
    assert_true(directory_need_is(h, case_id, "waiting")); /* iom-ma has no agreement */
    directory_day(-10, start);
    directory_day(100, end);
    assert_int_equal(directory_upsert_agreement(h, "agr-iom-1", "iom-ma", NULL, 10, start, end),
                     OK);
    directory_provider_of(h, case_id, ROUTING_WAIT_MS, provider);
    assert_string_equal(provider, "iom-ma");
    assert_int_equal(s_under(case_id, "agr-iom-1"), 1);
    directory_case(h, "MA-07", ROUTINE, case_id); /* and the next at once */
    directory_provider_of(h, case_id, ROUTING_WAIT_MS, provider);
    assert_string_equal(provider, "iom-ma");
    /* an agreement for a provider the directory does not have: refused, field named */
    assert_int_equal(directory_upsert_agreement(h, "agr-x", "nobody", NULL, 1, start, end),
                     NRM__V1__STATUS__STATUS_NOT_FOUND);
    assert_int_equal(directory_upsert_agreement(h, "agr-x", "iom-ma", NULL, 1, end, start),
                     NRM__V1__STATUS__STATUS_INVALID_ARGUMENT);
}

static void test_an_expired_or_future_agreement_does_not_route(void **s)
{
    char case_id[ROUTING_ID_TEXT], start[16], end[16];
    directory_day(-10, start);
    directory_day(-1, end);
    assert_int_equal(directory_upsert_agreement(h, "agr-iom-1", "iom-ma", NULL, 10, start, end),
                     OK);
    directory_day(1, start);
    directory_day(60, end);
    assert_int_equal(directory_upsert_agreement(h, "agr-iom-next", "iom-ma", NULL, 10, start, end),
                     OK);
    directory_case(h, "MA-07", ROUTINE, case_id);
    assert_true(directory_need_is(h, case_id, "waiting"));
    zclock_sleep(TICKS_WAIT_MS);
    assert_int_equal(routing_count_referrals(h, case_id, DIRECTORY_RETURN), 0);
}

static void test_the_capacity_committed_is_honoured(void **s)
{
    /* one need waits from the test before; an agreement for two takes it and one more */
    char start[16], end[16], first[ROUTING_ID_TEXT], second[ROUTING_ID_TEXT],
        provider[ROUTING_ID_TEXT];
    long long waiting =
        harness_sql_int(h, "SELECT count(*) FROM routing.case_services WHERE state = 'waiting'");
    assert_int_equal(waiting, 1);
    directory_day(0, start);
    directory_day(200, end);
    assert_int_equal(directory_upsert_agreement(h, "agr-iom-2", "iom-ma", "MA-07", 2, start, end),
                     OK);
    assert_int_equal(harness_wait_sql(h,
                                      "SELECT count(*) FROM routing.case_services WHERE state ="
                                      " 'waiting'",
                                      0, ROUTING_WAIT_MS),
                     0);
    directory_case(h, "MA-07", ROUTINE, first);
    directory_provider_of(h, first, ROUTING_WAIT_MS, provider);
    assert_string_equal(provider, "iom-ma");
    assert_int_equal(s_under(first, "agr-iom-2"), 1);
    directory_case(h, "MA-07", ROUTINE, second); /* the agreement is full: iom-ma's cap is not */
    assert_true(directory_need_is(h, second, "waiting"));
    /* another region: the agreement does not cover it */
    directory_case(h, "MA-08", ROUTINE, second);
    assert_true(directory_need_is(h, second, "waiting"));
}

static void test_the_end_of_an_agreement_is_warned_of_once(void **s)
{
    char start[16], end[16], far[16];
    directory_day(-100, start);
    directory_day(10, end);
    directory_day(40, far);
    assert_int_equal(directory_upsert_agreement(h, "agr-soon", "iom-ma", "MA-12", 1, start, end),
                     OK);
    assert_int_equal(directory_upsert_agreement(h, "agr-later", "iom-ma", "MA-12", 1, start, far),
                     OK);
    assert_int_equal(harness_wait_sql(h,
                                      "SELECT count(*) FROM routing.agreements WHERE agreement_id"
                                      " = 'agr-soon' AND warned_end IS NOT NULL",
                                      1, ROUTING_WAIT_MS),
                     1);
    zclock_sleep(TICKS_WAIT_MS); /* several more timer runs */
    assert_int_equal(directory_upsert_agreement(h, "agr-soon", "iom-ma", "MA-12", 1, start, end),
                     OK); /* the same again: no new warning */
    zclock_sleep(TICKS_WAIT_MS);
    assert_int_equal(s_warnings("agr-soon"), 1);
    assert_int_equal(s_warnings("agr-later"), 0);
    assert_int_equal(s_warnings("agr-iom-2"), 0);
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
        cmocka_unit_test(test_a_need_waits_for_an_agreement_and_is_routed_when_one_is_added),
        cmocka_unit_test(test_an_expired_or_future_agreement_does_not_route),
        cmocka_unit_test(test_the_capacity_committed_is_honoured),
        cmocka_unit_test(test_the_end_of_an_agreement_is_warned_of_once),
        cmocka_unit_test(test_open_counters_agree_with_a_recount),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
