/* Routing's set-based work per consumer batch, against real processes: intake's events are
 * made while routing is stopped, so that routing applies them as one batch (one transaction:
 * every referral and waiting need of it carries the same clock reading). In one batch, several
 * needs of several cases compete for one provider's last places (nobody above the cap, the
 * counter equal to a recount, the freed place for the most urgent waiting need), and a case is
 * opened and withdrawn (its referral made, then revoked, in that order); an agreement filled by
 * one referral of the batch is not used for the next. The batch writes its referrals in one
 * statement: an attempt that exists already (a replay the batch could not see) is found, the
 * batch made again with each referral written at once, and no referral.created is published
 * for a referral that was not made. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "directory_fixture.h"
#include "harness.h"
#include "routing_scenario.h"

#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>

#define OK NRM__V1__STATUS__STATUS_OK
#define ROUTINE NRM__V1__URGENCY__URGENCY_ROUTINE
#define URGENT NRM__V1__URGENCY__URGENCY_URGENT
#define EMERGENCY NRM__V1__URGENCY__URGENCY_EMERGENCY
#define SQL_MAX 512
#define CATCH_UP_MS 20000
#define EMERGENCY_DEADLINE_MS (7200 * 1000) /* routing.policy.deadlines_s (deploy/demo) */

static harness_t *h;

/* iom-ma (national return assistance) inactive: the consulate is the only provider left. */
static const directory_provider_t s_iom_off = {"iom-ma", NULL, 60, false};

static int setup(void **state)
{
    h = harness_new("routing_batch");
    if (harness_start(h, "intake", 0) != 0 || harness_start(h, "routing", 0) != 0)
        return -1;
    return 0;
}

static int teardown(void **state)
{
    harness_destroy(&h);
    return 0;
}

/* Stops routing with SIGTERM and asserts it finished cleanly. */
static void s_stop_routing(void)
{
    int status = harness_signal(h, "routing", 0, SIGTERM);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
}

/* Starts routing again and waits until it applied intake's whole stream. */
static void s_start_routing(void)
{
    assert_int_equal(harness_start(h, "routing", 0), 0);
    assert_true(routing_wait_caught_up(h, CATCH_UP_MS));
}

/* Where the case's return-assistance need stands (into state, ROUTING_ID_TEXT bytes). */
static void s_need_state(const char *case_id, char state[ROUTING_ID_TEXT])
{
    char sql[SQL_MAX];
    snprintf(sql, sizeof sql,
             "SELECT state FROM routing.case_services WHERE case_id = '%s' AND service = %d",
             case_id, (int)DIRECTORY_RETURN);
    PGresult *res = harness_sql(h, sql);
    snprintf(state, ROUTING_ID_TEXT, "%s", PQntuples(res) == 1 ? PQgetvalue(res, 0, 0) : "");
    PQclear(res);
}

/* Counts the events routing published about the case whose topic starts with prefix. */
static size_t s_events(const char *case_id, const char *prefix)
{
    Nrm__V1__Event **ev = NULL;
    size_t n = routing_case_events(h, case_id, prefix, &ev);
    routing_events_free(ev, n);
    return n;
}

/* The consulate's counter of open referrals agrees with a recount, and is within its cap. */
static void s_assert_counter(int cap)
{
    long long counter = harness_sql_int(
        h, "SELECT open_count FROM routing.providers WHERE provider_id = 'consulate-ng'");
    assert_int_equal(counter,
                     harness_sql_int(h, "SELECT count(*) FROM routing.referrals WHERE provider_id"
                                        " = 'consulate-ng' AND state IN ('pending', 'accepted')"));
    assert_true(counter <= cap);
}

static void test_needs_of_one_batch_compete_for_the_last_places(void **s)
{
    assert_int_equal(directory_upsert_provider(h, 0, &s_iom_off), OK);
    directory_provider_t consulate = {"consulate-ng", "MA-07", 2, true};
    assert_int_equal(directory_upsert_provider(h, 0, &consulate), OK);

    /* while routing is down: five cases for two places, then the first is closed */
    s_stop_routing();
    enum { A, B, C, D, E, CASES };
    static const Nrm__V1__Urgency urgency[CASES] = {ROUTINE, ROUTINE, ROUTINE, EMERGENCY, URGENT};
    char id[CASES][ROUTING_ID_TEXT];
    for (int i = 0; i < CASES; i++) {
        directory_case(h, "MA-07", urgency[i], id[i]);
        assert_true(id[i][0] != '\0');
    }
    assert_int_equal(routing_close_case(h, "coordinator", id[A], "transferred"), OK);
    s_start_routing();

    /* one batch: one transaction, one clock reading for every referral and waiting need */
    assert_int_equal(harness_sql_int(h, "SELECT count(DISTINCT created_ms) FROM routing.referrals"
                                        " WHERE provider_id = 'consulate-ng'"),
                     1);
    /* A and B took the two places in the order of the events; A's closing freed one, which
     * went to the most urgent waiting need (D, EMERGENCY), not to the oldest (C) */
    char state[ROUTING_ID_TEXT], provider[ROUTING_ID_TEXT], referral_id[ROUTING_ID_TEXT];
    assert_true(routing_referral(h, id[A], DIRECTORY_RETURN, 1, referral_id, provider));
    assert_string_equal(provider, "consulate-ng");
    routing_referral_state(h, referral_id, state);
    assert_string_equal(state, "revoked");
    static const char *const want[CASES] = {"closed", "referred", "waiting", "referred", "waiting"};
    static const size_t created[CASES] = {1, 1, 0, 1, 0}, unroutable[CASES] = {0, 0, 1, 1, 1};
    for (int i = 0; i < CASES; i++) {
        s_need_state(id[i], state);
        assert_string_equal(state, want[i]);
        assert_int_equal(routing_count_referrals(h, id[i], DIRECTORY_RETURN),
                         (long long)created[i]);
        assert_int_equal(s_events(id[i], "referral.created"), created[i]);
        assert_int_equal(s_events(id[i], "referral.unroutable"), unroutable[i]);
    }
    s_assert_counter(consulate.cap);
    /* A's referral: created, then revoked, in that order */
    Nrm__V1__Event **ev = NULL;
    size_t n = routing_case_events(h, id[A], "referral.", &ev);
    assert_int_equal(n, 2);
    assert_int_equal(ev[0]->body_case, NRM__V1__EVENT__BODY_REFERRAL_CREATED);
    assert_int_equal(ev[1]->body_case, NRM__V1__EVENT__BODY_REFERRAL_REVOKED);
    routing_events_free(ev, n);
    /* the waiting ones share the batch's clock reading as the time they started waiting */
    assert_int_equal(harness_sql_int(h, "SELECT count(DISTINCT waiting_since_ms) FROM"
                                        " routing.case_services WHERE state = 'waiting'"),
                     1);
}

/* Gives the consulate room for one more referral, stops routing and opens a ROUTINE case in
 * MA-08 (its return need: the consulate's), so that what the test adds lands in the same batch.
 * Returns the consulate's cap. */
static int s_case_in_a_backlog(char case_id[ROUTING_ID_TEXT])
{
    int open = (int)harness_sql_int(
        h, "SELECT open_count FROM routing.providers WHERE provider_id = 'consulate-ng'");
    directory_provider_t consulate = {"consulate-ng", "MA-08", open + 1, true};
    assert_int_equal(directory_upsert_provider(h, 0, &consulate), OK);
    s_stop_routing();
    directory_case(h, "MA-08", ROUTINE, case_id);
    assert_true(case_id[0] != '\0');
    return consulate.cap;
}

static void test_case_opened_and_withdrawn_in_one_batch(void **s)
{
    char case_id[ROUTING_ID_TEXT];
    int cap = s_case_in_a_backlog(case_id);
    assert_int_equal(routing_withdraw_consent(h, "police-ma-01", case_id), OK);
    s_start_routing();

    /* the referral was made, then revoked with the consent; the need waits for consent again */
    char referral_id[ROUTING_ID_TEXT], provider[ROUTING_ID_TEXT], state[ROUTING_ID_TEXT];
    assert_true(routing_referral(h, case_id, DIRECTORY_RETURN, 1, referral_id, provider));
    assert_string_equal(provider, "consulate-ng");
    routing_referral_state(h, referral_id, state);
    assert_string_equal(state, "revoked");
    s_need_state(case_id, state);
    assert_string_equal(state, "awaiting_consent");
    Nrm__V1__Event **ev = NULL;
    size_t n = routing_case_events(h, case_id, "referral.", &ev);
    assert_int_equal(n, 2);
    assert_int_equal(ev[0]->body_case, NRM__V1__EVENT__BODY_REFERRAL_CREATED);
    assert_int_equal(ev[1]->body_case, NRM__V1__EVENT__BODY_REFERRAL_REVOKED);
    assert_string_equal(ev[1]->referral_revoked->referral_id, referral_id);
    assert_string_equal(ev[1]->referral_revoked->reason, "consent_withdrawn");
    routing_events_free(ev, n);
    s_assert_counter(cap);
    /* the cases of the batch, their parties and each event applied once */
    char sql[SQL_MAX];
    snprintf(sql, sizeof sql,
             "SELECT count(*) FROM routing.cases WHERE case_id = '%s' AND NOT consent_to_referral"
             " AND case_manager = 'police-ma-01'",
             case_id);
    assert_int_equal(harness_sql_int(h, sql), 1);
    snprintf(sql, sizeof sql,
             "SELECT count(*) FROM routing.case_reporters WHERE case_id = '%s'"
             " AND agency_id = 'police-ma-01'",
             case_id);
    assert_int_equal(harness_sql_int(h, sql), 1);
}

static void test_case_opened_and_made_more_urgent_in_one_batch(void **s)
{
    char case_id[ROUTING_ID_TEXT];
    s_case_in_a_backlog(case_id);
    Nrm__V1__UpdateCase u = NRM__V1__UPDATE_CASE__INIT;
    u.case_id = case_id;
    u.urgency = EMERGENCY;
    Nrm__V1__Request req = NRM__V1__REQUEST__INIT;
    scenario_request(&req, NRM__V1__REQUEST__BODY_UPDATE_CASE, &u);
    Nrm__V1__Reply *r = harness_call(h, "intake", "police-ma-01", &req);
    assert_non_null(r);
    assert_int_equal(r->status, OK);
    nrm__v1__reply__free_unpacked(r, NULL);
    s_start_routing();

    /* the referral the batch made is shortened by the update after it, as one at a time */
    char referral_id[ROUTING_ID_TEXT], provider[ROUTING_ID_TEXT], sql[SQL_MAX];
    assert_true(routing_referral(h, case_id, DIRECTORY_RETURN, 1, referral_id, provider));
    snprintf(sql, sizeof sql,
             "SELECT count(*) FROM routing.referrals WHERE referral_id = '%s' AND urgency = %d"
             " AND due_ms - created_ms <= %d",
             referral_id, (int)EMERGENCY, EMERGENCY_DEADLINE_MS);
    assert_int_equal(harness_sql_int(h, sql), 1);
    assert_int_equal(s_events(case_id, "referral.deadline_changed"), 1);
}

static void test_agreement_filled_in_the_batch_is_not_used_again(void **s)
{
    /* room at the consulate for both, but under its agreement for one only */
    int open = (int)harness_sql_int(
        h, "SELECT open_count FROM routing.providers WHERE provider_id = 'consulate-ng'");
    directory_provider_t consulate = {"consulate-ng", "MA-09", open + 5, true};
    assert_int_equal(directory_upsert_provider(h, 0, &consulate), OK);
    char start[16], end[16];
    directory_day(-1, start);
    directory_day(60, end);
    assert_int_equal(
        directory_upsert_agreement(h, "agr-consulate-1", "consulate-ng", "MA-09", 1, start, end),
        OK);
    s_stop_routing();
    char first[ROUTING_ID_TEXT], second[ROUTING_ID_TEXT];
    directory_case(h, "MA-09", ROUTINE, first);
    directory_case(h, "MA-09", ROUTINE, second);
    assert_true(first[0] != '\0' && second[0] != '\0');
    s_start_routing();

    /* one batch; both referred to the consulate, only the first under the agreement it filled */
    char sql[SQL_MAX];
    snprintf(
        sql, sizeof sql,
        "SELECT count(DISTINCT created_ms) FROM routing.referrals WHERE case_id IN ('%s', '%s')",
        first, second);
    assert_int_equal(harness_sql_int(h, sql), 1);
    snprintf(sql, sizeof sql,
             "SELECT count(*) FROM routing.referrals WHERE case_id = '%s'"
             " AND provider_id = 'consulate-ng' AND agreement_id = 'agr-consulate-1'",
             first);
    assert_int_equal(harness_sql_int(h, sql), 1);
    snprintf(sql, sizeof sql,
             "SELECT count(*) FROM routing.referrals WHERE case_id = '%s'"
             " AND provider_id = 'consulate-ng' AND agreement_id IS NULL",
             second);
    assert_int_equal(harness_sql_int(h, sql), 1);
    assert_int_equal(harness_sql_int(h, "SELECT open_count FROM routing.agreements"
                                        " WHERE agreement_id = 'agr-consulate-1'"),
                     1);
    assert_int_equal(harness_sql_int(h,
                                     "SELECT count(*) FROM routing.referrals WHERE agreement_id"
                                     " = 'agr-consulate-1' AND state IN ('pending', 'accepted')"),
                     1);
    s_assert_counter(consulate.cap);
}

/* A need waiting for consent whose referral exists already (made before, as a replay finds
 * it), and another case, in one batch: the existing referral stays the only one, no
 * referral.created is published for the one not made, the other case is referred once, and
 * nothing is set aside. */
static void test_referral_that_exists_already_is_not_made_again(void **s)
{
    int open = (int)harness_sql_int(
        h, "SELECT open_count FROM routing.providers WHERE provider_id = 'consulate-ng'");
    directory_provider_t consulate = {"consulate-ng", "MA-10", open + 5, true};
    assert_int_equal(directory_upsert_provider(h, 0, &consulate), OK);
    scenario_report_t r;
    routing_person(&r, "MA-10", 30, NRM__V1__GENDER__GENDER_MALE, "NG", false);
    routing_person_needs(&r, DIRECTORY_RETURN);
    char waiting[ROUTING_ID_TEXT], other[ROUTING_ID_TEXT], state[ROUTING_ID_TEXT];
    assert_int_equal(routing_submit(h, &r, "police-ma-01", waiting), OK);
    assert_true(routing_wait_caught_up(h, CATCH_UP_MS));
    s_need_state(waiting, state);
    assert_string_equal(state, "awaiting_consent");

    s_stop_routing();
    char sql[SQL_MAX];
    snprintf(sql, sizeof sql,
             "INSERT INTO routing.referrals (referral_id, case_id, service, attempt, provider_id,"
             " urgency, rule_id, reason, causation_id, created_ms, due_ms) VALUES"
             " ('made-before-0001', '%s', %d, 1, 'consulate-ng', %d, 'test', 'made before',"
             " 'test', 1, 4102444800000)",
             waiting, (int)DIRECTORY_RETURN, (int)ROUTINE);
    PGresult *res = harness_sql(h, sql);
    assert_non_null(res);
    assert_int_equal(PQresultStatus(res), PGRES_COMMAND_OK);
    PQclear(res);
    directory_case(h, "MA-10", ROUTINE, other);
    assert_true(other[0] != '\0');
    assert_int_equal(routing_give_consent(h, "police-ma-01", waiting), OK);
    s_start_routing();

    assert_int_equal(routing_count_referrals(h, waiting, DIRECTORY_RETURN), 1);
    char referral_id[ROUTING_ID_TEXT], provider[ROUTING_ID_TEXT];
    assert_true(routing_referral(h, waiting, DIRECTORY_RETURN, 1, referral_id, provider));
    assert_string_equal(referral_id, "made-before-0001");
    assert_int_equal(s_events(waiting, "referral.created"), 0);
    s_need_state(waiting, state);
    assert_string_equal(state, "referred");
    assert_int_equal(routing_count_referrals(h, other, DIRECTORY_RETURN), 1);
    assert_int_equal(s_events(other, "referral.created"), 1);
    assert_int_equal(harness_sql_int(h, "SELECT count(*) FROM routing.consumer_quarantine"), 0);
    s_assert_counter(consulate.cap);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_needs_of_one_batch_compete_for_the_last_places),
        cmocka_unit_test(test_case_opened_and_withdrawn_in_one_batch),
        cmocka_unit_test(test_case_opened_and_made_more_urgent_in_one_batch),
        cmocka_unit_test(test_agreement_filled_in_the_batch_is_not_used_again),
        cmocka_unit_test(test_referral_that_exists_already_is_not_made_again),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
