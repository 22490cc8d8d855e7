/* The provider directory managed at run time, against real processes: a provider added by the
 * coordinator is routed to at once (by every routing instance), a deactivated one no longer;
 * a need nobody can take waits and is routed exactly once when a place frees, with two routing
 * instances racing, and a pass whose first page takes the last place reads no page behind it;
 * the configuration's providers are in the table, listed. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "directory_fixture.h"
#include "harness.h"
#include "routing_scenario.h"

#include <czmq.h>
#include <stdio.h>
#include <signal.h>
#include <string.h>
#include <sys/wait.h>

#define OK NRM__V1__STATUS__STATUS_OK
#define ROUTINE NRM__V1__URGENCY__URGENCY_ROUTINE
#define URGENT NRM__V1__URGENCY__URGENCY_URGENT
#define EMERGENCY NRM__V1__URGENCY__URGENCY_EMERGENCY
#define FEMALE NRM__V1__GENDER__GENDER_FEMALE
#define MALE NRM__V1__GENDER__GENDER_MALE
#define ACCEPT NRM__V1__REFERRAL_DECISION__REFERRAL_DECISION_ACCEPT
#define NO_REASON NRM__V1__DECLINE_REASON__DECLINE_REASON_UNSPECIFIED
#define WAITERS 6
#define SQL_MAX 512
#define RACE_WAIT_MS 10000

static harness_t *h;

/* iom-ma as configured (national return assistance), but inactive: the only other provider of
 * return assistance is then the one a test adds. */
static const directory_provider_t s_iom_off = {"iom-ma", NULL, 60, false};

static int setup(void **state)
{
    h = harness_new("routing_directory");
    if (harness_start(h, "intake", 0) != 0 || harness_start(h, "routing", 0) != 0)
        return -1;
    return harness_start(h, "routing", 1);
}

static int teardown(void **state)
{
    harness_destroy(&h);
    return 0;
}

/* Counts referral.created events routing published for the case. */
static size_t s_created(const char *case_id)
{
    Nrm__V1__Event **ev = NULL;
    size_t n = routing_case_events(h, case_id, "referral.created", &ev);
    routing_events_free(ev, n);
    return n;
}

static void test_configured_providers_are_seeded_and_listed(void **s)
{
    Nrm__V1__ListProviders l = NRM__V1__LIST_PROVIDERS__INIT;
    Nrm__V1__Request req = NRM__V1__REQUEST__INIT;
    scenario_request(&req, NRM__V1__REQUEST__BODY_LIST_PROVIDERS, &l);
    Nrm__V1__Reply *reply = harness_call(h, "routing", "coordinator", &req);
    assert_non_null(reply);
    assert_int_equal(reply->status, OK);
    assert_true(reply->provider_list->n_providers >= 40);
    bool found = false;
    for (size_t i = 0; i < reply->provider_list->n_providers; i++) {
        Nrm__V1__ProviderRow *r = reply->provider_list->providers[i];
        if (strcmp(r->provider->id, "iom-ma") == 0) {
            found = true;
            assert_true(r->from_configuration);
            assert_true(r->provider->active);
            assert_int_equal(r->provider->max_open_referrals, 60);
        }
    }
    assert_true(found);
    nrm__v1__reply__free_unpacked(reply, NULL);
    /* not a coordinator: refused */
    scenario_request(&req, NRM__V1__REQUEST__BODY_LIST_PROVIDERS, &l);
    reply = harness_call(h, "routing", "police-ma-01", &req);
    assert_non_null(reply);
    assert_int_equal(reply->status, NRM__V1__STATUS__STATUS_PERMISSION_DENIED);
    nrm__v1__reply__free_unpacked(reply, NULL);
    /* a bad provider: the field is named, nothing written */
    directory_provider_t bad = {"no-such-agency", "MA-03", 5, true};
    assert_int_equal(directory_upsert_provider(h, 0, &bad),
                     NRM__V1__STATUS__STATUS_INVALID_ARGUMENT);
    assert_int_equal(harness_sql_int(h, "SELECT count(*) FROM routing.providers WHERE provider_id ="
                                        " 'no-such-agency'"),
                     0);
}

static void test_provider_added_at_run_time_is_routed_to_at_once(void **s)
{
    /* a consulate takes return assistance in MA-03: local, so preferred to national iom-ma;
     * added through instance 1, the case may be routed by either instance */
    directory_provider_t consulate = {"consulate-ng", "MA-03", 10, true};
    assert_int_equal(directory_upsert_provider(h, 1, &consulate), OK);
    char case_id[ROUTING_ID_TEXT], provider[ROUTING_ID_TEXT];
    for (int i = 0; i < 4; i++) { /* several cases: both instances route some */
        directory_case(h, "MA-03", ROUTINE, case_id);
        directory_provider_of(h, case_id, ROUTING_WAIT_MS, provider);
        assert_string_equal(provider, "consulate-ng");
    }
    /* deactivated (through instance 0): no longer routed to */
    consulate.active = false;
    assert_int_equal(directory_upsert_provider(h, 0, &consulate), OK);
    for (int i = 0; i < 4; i++) {
        directory_case(h, "MA-03", ROUTINE, case_id);
        directory_provider_of(h, case_id, ROUTING_WAIT_MS, provider);
        assert_string_equal(provider, "iom-ma");
    }
}

/* Sends UpsertProvider for p to both instances at the same moment and waits for both replies. */
static void s_race(const directory_provider_t *p0, const directory_provider_t *p1)
{
    const directory_provider_t *p[2] = {p0, p1};
    nrm_client_t *client[2];
    static Nrm__V1__ServiceType services[] = {DIRECTORY_RETURN};
    static char *languages[] = {"fr", "en"};
    for (int i = 0; i < 2; i++) {
        client[i] = harness_client_new(h, "routing", i, "coordinator");
        assert_non_null(client[i]);
    }
    for (int i = 0; i < 2; i++) {
        Nrm__V1__UpsertProvider u = NRM__V1__UPSERT_PROVIDER__INIT;
        char *regions[] = {(char *)p[i]->region};
        u.id = (char *)p[i]->id;
        u.n_services = 1;
        u.services = services;
        u.n_regions = 1;
        u.regions = regions;
        u.n_languages = 2;
        u.languages = languages;
        u.max_open_referrals = p[i]->cap;
        u.active = p[i]->active;
        Nrm__V1__Request req = NRM__V1__REQUEST__INIT;
        scenario_request(&req, NRM__V1__REQUEST__BODY_UPSERT_PROVIDER, &u);
        char request_id[37];
        assert_int_equal(nrm_client_send(client[i], &req, request_id), 0);
    }
    int answered = 0;
    for (int64_t until = zclock_mono() + RACE_WAIT_MS; answered < 2 && zclock_mono() < until;) {
        for (int i = 0; i < 2; i++) {
            Nrm__V1__Reply *reply = nrm_client_receive(client[i]);
            if (reply) {
                assert_int_equal(reply->status, OK);
                answered++;
                nrm__v1__reply__free_unpacked(reply, NULL);
            }
        }
        zclock_sleep(10);
    }
    assert_int_equal(answered, 2);
    for (int i = 0; i < 2; i++)
        nrm_client_destroy(&client[i]);
}

static void test_waiting_needs_are_routed_once_when_places_free(void **s)
{
    assert_int_equal(directory_upsert_provider(h, 0, &s_iom_off), OK);
    /* the consulate keeps the referrals of the test before: one place more than those */
    int open = (int)harness_sql_int(
        h, "SELECT open_count FROM routing.providers WHERE provider_id = 'consulate-ng'");
    assert_true(open > 0);
    directory_provider_t consulate = {"consulate-ng", "MA-05", open + 1, true};
    assert_int_equal(directory_upsert_provider(h, 0, &consulate), OK);
    char first[ROUTING_ID_TEXT], provider[ROUTING_ID_TEXT];
    directory_case(h, "MA-05", ROUTINE, first);
    directory_provider_of(h, first, ROUTING_WAIT_MS, provider);
    assert_string_equal(provider, "consulate-ng");

    /* at its cap: the others wait (the coordinator told each time) */
    char waiting[WAITERS][ROUTING_ID_TEXT];
    for (int i = 0; i < WAITERS; i++) {
        directory_case(h, "MA-05", i == WAITERS - 1 ? EMERGENCY : ROUTINE, waiting[i]);
        assert_true(directory_need_is(h, waiting[i], "waiting"));
        Nrm__V1__Event **ev = NULL;
        size_t n = routing_case_events(h, waiting[i], "referral.unroutable", &ev);
        assert_int_equal(n, 1);
        routing_events_free(ev, n);
    }

    /* the first referral ends: one place, for the most urgent (the last, EMERGENCY) */
    char referral_id[ROUTING_ID_TEXT];
    assert_true(routing_referral(h, first, DIRECTORY_RETURN, 1, referral_id, NULL));
    Nrm__V1__Reply *reply =
        routing_provider_respond(h, "consulate-ng", referral_id, ACCEPT, NO_REASON, "");
    assert_non_null(reply);
    assert_int_equal(reply->status, OK);
    nrm__v1__reply__free_unpacked(reply, NULL);
    reply = routing_provider_complete(h, "consulate-ng", referral_id, true, "");
    assert_non_null(reply);
    assert_int_equal(reply->status, OK);
    nrm__v1__reply__free_unpacked(reply, NULL);
    directory_provider_of(h, waiting[WAITERS - 1], ROUTING_WAIT_MS, provider);
    assert_string_equal(provider, "consulate-ng");
    for (int i = 0; i < WAITERS - 1; i++)
        assert_true(directory_need_is(h, waiting[i], "waiting"));

    /* the cap rises on both instances at once: every other waiting need is routed, once */
    directory_provider_t wide0 = {"consulate-ng", "MA-05", open + WAITERS + 2, true};
    directory_provider_t wide1 = {"consulate-ng", "MA-05", open + WAITERS + 3, true};
    s_race(&wide0, &wide1);
    for (int i = 0; i < WAITERS; i++) {
        directory_provider_of(h, waiting[i], ROUTING_WAIT_MS, provider);
        assert_string_equal(provider, "consulate-ng");
    }
    assert_true(routing_wait_caught_up(h, ROUTING_WAIT_MS));
    for (int i = 0; i < WAITERS; i++) {
        assert_int_equal(routing_count_referrals(h, waiting[i], DIRECTORY_RETURN), 1);
        assert_int_equal(s_created(waiting[i]), 1);
        assert_true(directory_need_is(h, waiting[i], "referred"));
    }
    /* the counter agrees with a recount */
    assert_int_equal(harness_sql_int(h,
                                     "SELECT open_count FROM routing.providers WHERE provider_id ="
                                     " 'consulate-ng'"),
                     harness_sql_int(h, "SELECT count(*) FROM routing.referrals WHERE provider_id ="
                                        " 'consulate-ng' AND state IN ('pending', 'accepted')"));
}

/* Restarts both routing instances with the configuration as set now. */
static void s_restart_routing(void)
{
    for (int i = 0; i < 2; i++) {
        assert_true(WIFEXITED(harness_signal(h, "routing", i, SIGTERM)));
        assert_int_equal(harness_start(h, "routing", i), 0);
    }
}

static void test_a_need_nobody_can_take_does_not_keep_a_free_place_from_another(void **s)
{
    /* a pass examines one waiting need; reintegration has no provider left */
    harness_config_set(h, "routing.waiting_batch", json_integer(1));
    s_restart_routing();
    static const directory_provider_t ilo_off = {"ilo-partner-national", NULL, 40, false};
    assert_int_equal(directory_upsert_provider(h, 0, &ilo_off), OK);
    /* an emergency needing reintegration waits at the head of the queue, for ever */
    scenario_report_t r;
    routing_person(&r, "MA-05", 31, NRM__V1__GENDER__GENDER_FEMALE, "NG", true);
    routing_person_needs(&r, NRM__V1__SERVICE_TYPE__SERVICE_TYPE_REINTEGRATION);
    r.report.urgency = EMERGENCY;
    char head[ROUTING_ID_TEXT], sql[SQL_MAX];
    assert_int_equal(routing_submit(h, &r, "police-ma-01", head), OK);
    snprintf(sql, sizeof sql,
             "SELECT count(*) FROM routing.case_services WHERE case_id = '%s' AND service = %d"
             " AND state = 'waiting'",
             head, NRM__V1__SERVICE_TYPE__SERVICE_TYPE_REINTEGRATION);
    assert_int_equal(harness_wait_sql(h, sql, 1, ROUTING_WAIT_MS), 1);
    /* a routine return need waits behind it for the consulate, at its cap */
    int open = (int)harness_sql_int(
        h, "SELECT open_count FROM routing.providers WHERE provider_id = 'consulate-ng'");
    directory_provider_t full = {"consulate-ng", "MA-05", open, true};
    assert_int_equal(directory_upsert_provider(h, 0, &full), OK);
    char behind[ROUTING_ID_TEXT], provider[ROUTING_ID_TEXT];
    directory_case(h, "MA-05", ROUTINE, behind);
    assert_true(directory_need_is(h, behind, "waiting"));
    /* the consulate gets a place: it goes to the need it can take */
    directory_provider_t room = {"consulate-ng", "MA-05", open + 1, true};
    assert_int_equal(directory_upsert_provider(h, 0, &room), OK);
    directory_provider_of(h, behind, ROUTING_WAIT_MS, provider);
    assert_string_equal(provider, "consulate-ng");
    assert_int_equal(harness_sql_int(h, sql), 1); /* and the head still waits */
}

/* A return need of a person of gender in MA-05 at urgency; fills case_id. */
static void s_return_case(Nrm__V1__Gender gender, Nrm__V1__Urgency urgency,
                          char case_id[ROUTING_ID_TEXT])
{
    scenario_report_t r;
    routing_person(&r, "MA-05", 30, gender, "NG", true);
    routing_person_needs(&r, DIRECTORY_RETURN);
    r.report.urgency = urgency;
    assert_int_equal(routing_submit(h, &r, "police-ma-01", case_id), OK);
}

static void
test_needs_no_provider_with_room_takes_do_not_keep_a_free_place_from_one_behind(void **s)
{
    (void)s;
    /* still one waiting need a page (the test before); the consulate now takes women only, and
     * is at its cap */
    int open = (int)harness_sql_int(
        h, "SELECT open_count FROM routing.providers WHERE provider_id = 'consulate-ng'");
    directory_provider_t consulate = {"consulate-ng", "MA-05", open, true};
    assert_int_equal(directory_upsert_provider_for(h, 0, &consulate, FEMALE), OK);
    /* two men's emergencies wait ahead, whom the consulate will never take, then a woman */
    char men[2][ROUTING_ID_TEXT], woman[ROUTING_ID_TEXT], provider[ROUTING_ID_TEXT];
    for (int i = 0; i < 2; i++) {
        s_return_case(MALE, EMERGENCY, men[i]);
        assert_true(directory_need_is(h, men[i], "waiting"));
    }
    s_return_case(FEMALE, ROUTINE, woman);
    assert_true(directory_need_is(h, woman, "waiting"));
    /* a place frees: the pass examines the first man, then the page after him, the second; the
     * next pass goes on after the second and reaches the woman */
    consulate.cap = open + 1;
    assert_int_equal(directory_upsert_provider_for(h, 0, &consulate, FEMALE), OK);
    consulate.cap = open + 2;
    assert_int_equal(directory_upsert_provider_for(h, 0, &consulate, FEMALE), OK);
    directory_provider_of(h, woman, ROUTING_WAIT_MS, provider);
    assert_string_equal(provider, "consulate-ng");
    for (int i = 0; i < 2; i++)
        assert_true(directory_need_is(h, men[i], "waiting"));
}

/* Lines of the log of routing's instances that contain needle (and also, unless NULL). */
static int s_routing_log_lines(const char *needle, const char *also)
{
    return harness_log_lines(h, "routing", 0, needle, also) +
           harness_log_lines(h, "routing", 1, needle, also);
}

static void test_a_pass_whose_first_page_takes_the_last_place_reads_no_page_behind_it(void **s)
{
    (void)s;
    /* still one waiting need a page; the consulate takes everyone now, and is at its cap */
    int open = (int)harness_sql_int(
        h, "SELECT open_count FROM routing.providers WHERE provider_id = 'consulate-ng'");
    directory_provider_t consulate = {"consulate-ng", "MA-05", open, true};
    assert_int_equal(directory_upsert_provider(h, 0, &consulate), OK);
    char men[2][ROUTING_ID_TEXT];
    for (int i = 0; i < 2; i++) {
        s_return_case(MALE, ROUTINE, men[i]);
        assert_true(directory_need_is(h, men[i], "waiting"));
    }
    char sql[SQL_MAX];
    snprintf(sql, sizeof sql,
             "SELECT count(*) FROM routing.case_services WHERE service = %d AND state = 'waiting'",
             DIRECTORY_RETURN);
    long long waiting = harness_sql_int(h, sql);
    int passes = s_routing_log_lines("waiting needs routed", NULL);
    int one_page = s_routing_log_lines("waiting needs routed", "\"routed\":1,\"examined\":1}");
    /* one place: the need at the head takes it, and the pass reads no page behind it */
    consulate.cap = open + 1;
    assert_int_equal(directory_upsert_provider(h, 0, &consulate), OK);
    assert_int_equal(harness_wait_sql(h, sql, waiting - 1, ROUTING_WAIT_MS), waiting - 1);
    assert_true(routing_wait_caught_up(h, ROUTING_WAIT_MS));
    assert_int_equal(s_routing_log_lines("waiting needs routed", NULL), passes + 1);
    assert_int_equal(s_routing_log_lines("waiting needs routed", "\"routed\":1,\"examined\":1}"),
                     one_page + 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_configured_providers_are_seeded_and_listed),
        cmocka_unit_test(test_provider_added_at_run_time_is_routed_to_at_once),
        cmocka_unit_test(test_waiting_needs_are_routed_once_when_places_free),
        cmocka_unit_test(test_a_need_nobody_can_take_does_not_keep_a_free_place_from_another),
        cmocka_unit_test(
            test_needs_no_provider_with_room_takes_do_not_keep_a_free_place_from_one_behind),
        cmocka_unit_test(test_a_pass_whose_first_page_takes_the_last_place_reads_no_page_behind_it),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
