/* Routing's guarantees under replay, crash and reconfiguration, against real processes: the
 * intake stream replayed from sequence 1 creates nothing new; SIGKILL in the middle of a batch
 * and a restart leave exactly the referrals a clean run makes, and so do two instances working
 * at once; SIGHUP reloads the directory, and a broken one is refused. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "harness.h"
#include "routing_scenario.h"

#include <czmq.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/wait.h>

#define OK NRM__V1__STATUS__STATUS_OK
#define FEMALE NRM__V1__GENDER__GENDER_FEMALE
#define MALE NRM__V1__GENDER__GENDER_MALE
#define SHELTER NRM__V1__SERVICE_TYPE__SERVICE_TYPE_SHELTER
#define MEDICAL NRM__V1__SERVICE_TYPE__SERVICE_TYPE_MEDICAL
#define LEGAL_AID NRM__V1__SERVICE_TYPE__SERVICE_TYPE_LEGAL_AID
#define PSYCHOSOCIAL NRM__V1__SERVICE_TYPE__SERVICE_TYPE_PSYCHOSOCIAL
#define BACKLOG 3000 /* six consumer batches of intake events: time to catch one in progress */
#define CATCH_UP_MS 60000
#define KILL_POLL_LIMIT 200000 /* polls of pg_stat_activity before giving up */
#define PATH_MAX_LEN 512
/* a fraction of a batch's time, killed after, not at its start (batches are shorter since
 * routing does a batch's work in a few statements) */
#define MID_BATCH_MS 15

static harness_t *h;

static int setup(void **state)
{
    h = harness_new("routing_recovery");
    if (harness_start(h, "intake", 0) != 0)
        return -1;
    return harness_start(h, "routing", 0);
}

static int teardown(void **state)
{
    harness_destroy(&h);
    return 0;
}

/* The checkpoint routing committed on intake's stream. */
static long long routing_checkpoint_in_db(void)
{
    return harness_sql_int(h, "SELECT coalesce(max(seq), 0) FROM routing.checkpoints"
                              " WHERE stream = 'intake'");
}

/* Stops routing with SIGTERM and asserts it finished cleanly. */
static void s_stop_routing(void)
{
    int status = harness_signal(h, "routing", 0, SIGTERM);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
}

/* Every referral.created routing published matches one stored referral, and none is stored
 * twice for a case, service and attempt. */
static void s_assert_each_referral_published_once(void)
{
    long long referrals = harness_sql_int(h, "SELECT count(*) FROM routing.referrals");
    assert_int_equal(harness_sql_int(h, "SELECT count(*) FROM routing.outbox"
                                        " WHERE topic = 'referral.created'"),
                     referrals);
    assert_int_equal(harness_sql_int(h, "SELECT count(DISTINCT (case_id, service, attempt))"
                                        " FROM routing.referrals"),
                     referrals);
}

static void test_intake_stream_replayed_from_sequence_1_creates_no_second_referral(void **state)
{
    /* a few lives in every kind of event: opened, linked, updated, withdrawn, closed */
    scenario_report_t a, b, c;
    char first[ROUTING_ID_TEXT], linked[ROUTING_ID_TEXT], child[ROUTING_ID_TEXT];
    routing_person(&a, "MA-06", 33, FEMALE, "NG", false);
    routing_person_named(&a, "Chiamaka Eze", "1992-06-01");
    routing_person_speaks(&a, "en");
    routing_person_needs(&a, SHELTER);
    routing_person_needs(&a, LEGAL_AID);
    assert_int_equal(routing_submit(h, &a, "police-ma-06", first), OK);
    routing_person(&b, "MA-04", 33, FEMALE, "NG", false);
    routing_person_named(&b, "Chiamaka Eze", "1992-06-01");
    routing_person_speaks(&b, "en");
    routing_person_needs(&b, MEDICAL);
    assert_int_equal(routing_submit(h, &b, "hospital-ma-04", linked), OK);
    assert_string_equal(first, linked);
    assert_int_equal(routing_give_consent(h, "police-ma-06", first), OK);
    routing_person(&c, "MA-11", -1, MALE, "", true);
    routing_person_needs(&c, PSYCHOSOCIAL);
    assert_int_equal(routing_submit(h, &c, "coordinator", child), OK);
    assert_int_equal(routing_withdraw_consent(h, "coordinator", child), OK);
    assert_int_equal(routing_close_case(h, "coordinator", child, "transferred"), OK);
    assert_true(routing_wait_caught_up(h, CATCH_UP_MS));
    char *before = routing_fingerprint(h);
    long long events = harness_sql_int(h, "SELECT count(*) FROM routing.outbox");
    assert_int_equal(routing_count_referrals(h, first, 0), 2); /* legal aid, medical */
    assert_int_equal(routing_count_referrals(h, child, 0), 2); /* child protection, support */

    /* routing forgets how far it read and reads intake's whole stream again */
    s_stop_routing();
    harness_sql_int(h, "UPDATE routing.checkpoints SET seq = 0 WHERE stream = 'intake'"
                       " RETURNING 0");
    assert_int_equal(harness_start(h, "routing", 0), 0);
    assert_true(routing_wait_caught_up(h, CATCH_UP_MS));
    char *after = routing_fingerprint(h);
    assert_string_equal(after, before);
    assert_int_equal(harness_sql_int(h, "SELECT count(*) FROM routing.outbox"), events);
    s_assert_each_referral_published_once();
    free(before);
    free(after);
}

/* The transaction id of routing's consumer batch in progress (a transaction of nrm-routing that
 * has written and not yet reached the checkpoint row, which a batch moves at its end in the
 * round trip of its COMMIT), into xid; "" when there is none. */
static void s_batch_in_progress(char xid[ROUTING_ID_TEXT])
{
    PGresult *res = harness_sql(
        h, "SELECT a.backend_xid::text FROM pg_stat_activity a"
           " WHERE a.datname = current_database() AND a.application_name = 'nrm-routing'"
           " AND a.backend_xid IS NOT NULL AND NOT EXISTS (SELECT 1 FROM pg_locks l"
           " WHERE l.pid = a.pid AND l.relation = 'routing.checkpoints'::regclass)"
           " LIMIT 1");
    snprintf(xid, ROUTING_ID_TEXT, "%s", PQntuples(res) == 1 ? PQgetvalue(res, 0, 0) : "");
    PQclear(res);
}

/* Waits until routing is in the middle of a consumer batch (the same batch transaction still
 * open a while after it was first seen) while behind intake's head, then kills it with SIGKILL.
 * Returns true when it was killed so. */
static bool s_kill_in_the_middle_of_a_batch(long long head)
{
    for (int i = 0; i < KILL_POLL_LIMIT; i++) {
        char xid[ROUTING_ID_TEXT], still[ROUTING_ID_TEXT];
        s_batch_in_progress(xid);
        if (!xid[0]) {
            if (routing_checkpoint_in_db() >= head)
                return false;
            continue;
        }
        zclock_sleep(MID_BATCH_MS);
        s_batch_in_progress(still);
        if (strcmp(xid, still) == 0 && routing_checkpoint_in_db() < head) {
            harness_signal(h, "routing", 0, SIGKILL);
            return true;
        }
    }
    return false;
}

/* Intake's stream head once it reaches want (its numbering follows the acknowledgements a
 * moment later), or as it stands after CATCH_UP_MS. */
static long long s_intake_head_reaching(long long want)
{
    long long head = routing_intake_head(h);
    for (int waited = 0; head < want && waited < CATCH_UP_MS; waited += 50) {
        usleep(50 * 1000);
        head = routing_intake_head(h);
    }
    return head;
}

/* Forgets everything routing did (as if it never ran over intake's stream). */
static void s_wipe_routing(void)
{
    PQclear(harness_sql(h, "TRUNCATE routing.referrals, routing.case_services,"
                           " routing.case_reporters, routing.cases, routing.outbox"));
    PQclear(harness_sql(h, "UPDATE routing.stream_head SET head = 0"));
    PQclear(harness_sql(h, "UPDATE routing.checkpoints SET seq = 0"));
}

static void
test_sigkill_in_the_middle_of_a_batch_then_restart_makes_the_clean_run_referrals(void **state)
{
    /* a backlog waits in intake while routing is down */
    s_stop_routing();
    s_wipe_routing();
    assert_int_equal(routing_submit_backlog(h, BACKLOG), BACKLOG);
    long long head = s_intake_head_reaching(BACKLOG);
    assert_true(head >= BACKLOG);

    assert_int_equal(harness_start(h, "routing", 0), 0);
    assert_true(s_kill_in_the_middle_of_a_batch(head));
    assert_true(routing_checkpoint_in_db() < head);
    s_assert_each_referral_published_once(); /* nothing of the killed batch survived */

    assert_int_equal(harness_start(h, "routing", 0), 0);
    assert_true(routing_wait_caught_up(h, CATCH_UP_MS));
    s_assert_each_referral_published_once();
    assert_int_equal(harness_sql_int(h, "SELECT count(*) FROM routing.cases"),
                     harness_sql_int(h, "SELECT count(*) FROM intake.cases"));
    assert_true(harness_sql_int(h, "SELECT count(*) FROM routing.referrals") > 0);
    char *recovered = routing_fingerprint(h);

    /* the same backlog, routed by a run nobody interrupted */
    s_stop_routing();
    s_wipe_routing();
    assert_int_equal(harness_start(h, "routing", 0), 0);
    assert_true(routing_wait_caught_up(h, CATCH_UP_MS));
    char *clean = routing_fingerprint(h);
    assert_string_equal(recovered, clean);
    free(recovered);
    free(clean);
}

/* Waits until routing's committed checkpoint reaches head. Returns true when it did. */
static bool s_wait_checkpoint(long long head)
{
    return harness_wait_sql(h,
                            "SELECT coalesce(max(seq), 0) FROM routing.checkpoints"
                            " WHERE stream = 'intake'",
                            head, CATCH_UP_MS) == head;
}

static void test_two_instances_over_one_backlog_make_the_referrals_of_one(void **state)
{
    s_stop_routing();
    if (routing_intake_head(h) < BACKLOG)
        assert_int_equal(routing_submit_backlog(h, BACKLOG), BACKLOG);
    long long head = s_intake_head_reaching(BACKLOG);

    /* two instances compete for intake's events and share the providers' caps */
    s_wipe_routing();
    assert_int_equal(harness_start(h, "routing", 0), 0);
    assert_int_equal(harness_start(h, "routing", 1), 0);
    assert_true(s_wait_checkpoint(head));
    assert_int_equal(harness_sql_int(h, "SELECT count(*) FROM routing.cases"),
                     harness_sql_int(h, "SELECT count(*) FROM intake.cases"));
    s_assert_each_referral_published_once();
    char *two = routing_fingerprint(h);
    int status = harness_signal(h, "routing", 1, SIGTERM);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    s_stop_routing();

    s_wipe_routing();
    assert_int_equal(harness_start(h, "routing", 0), 0);
    assert_true(s_wait_checkpoint(head));
    char *one = routing_fingerprint(h);
    assert_string_equal(two, one);
    free(two);
    free(one);
}

/* Writes the running configuration with extra agencies and providers (JSON text of two
 * arrays) and sends SIGHUP to routing; waits until its log mentions `expect`. */
static void s_reload_with(const char *agencies, const char *providers, const char *expect)
{
    char path[PATH_MAX_LEN];
    snprintf(path, sizeof path, "%s/config.json", harness_dir(h));
    json_error_t jerr;
    json_t *config = json_load_file(path, 0, &jerr);
    assert_non_null(config);
    json_t *more = json_loads(agencies, 0, &jerr);
    assert_non_null(more);
    json_array_extend(json_object_get(config, "agencies"), more);
    json_decref(more);
    json_object_set_new(config, "providers", json_loads(providers, 0, &jerr));
    assert_int_equal(json_dump_file(config, path, JSON_INDENT(1)), 0);
    json_decref(config);
    harness_signal(h, "routing", 0, SIGHUP);
    for (int i = 0; i < ROUTING_WAIT_MS / 50 && !harness_log_contains(h, "routing", 0, expect); i++)
        zclock_sleep(50);
    assert_true(harness_log_contains(h, "routing", 0, expect));
}

/* Reports a man in Beni Mellal who needs legal aid; returns the provider he is referred to. */
static void s_legal_aid_in_ma05(char provider[ROUTING_ID_TEXT])
{
    scenario_report_t s;
    char case_id[ROUTING_ID_TEXT];
    routing_person(&s, "MA-05", 45, MALE, "MA", true);
    routing_person_speaks(&s, "ar");
    routing_person_needs(&s, LEGAL_AID);
    assert_int_equal(routing_submit(h, &s, "coordinator", case_id), OK);
    assert_int_equal(routing_wait_referrals(h, case_id, 1), 1);
    assert_true(routing_referral(h, case_id, LEGAL_AID, 1, NULL, provider));
}

static void test_sighup_reloads_the_directory_and_refuses_a_broken_one(void **state)
{
    char provider[ROUTING_ID_TEXT];
    s_legal_aid_in_ma05(provider);
    assert_string_equal(provider, "legal-clinic-national");

    /* a legal aid office opens in Beni Mellal */
    s_reload_with("[{\"id\": \"legal-aid-ma-05\", \"name\": \"Legal aid office, Beni Mellal"
                  " (demo)\", \"type\": \"LEGAL_SERVICE\", \"region\": \"MA-05\"}]",
                  "[{\"id\": \"legal-aid-ma-05\", \"services\": [\"LEGAL_AID\"],"
                  " \"regions\": [\"MA-05\"], \"languages\": [\"ar\", \"fr\"],"
                  " \"max_open_referrals\": 5}]",
                  "configuration reloaded");
    s_legal_aid_in_ma05(provider);
    assert_string_equal(provider, "legal-aid-ma-05");

    /* a provider that is no agency: the reload is refused, the directory stays as it was */
    s_reload_with("[]",
                  "[{\"id\": \"nobody-we-know\", \"services\": [\"LEGAL_AID\"],"
                  " \"regions\": [\"MA-05\"], \"languages\": [\"ar\"], \"max_open_referrals\": 5}]",
                  "routing configuration refused");
    s_legal_aid_in_ma05(provider);
    assert_string_equal(provider, "legal-aid-ma-05");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_intake_stream_replayed_from_sequence_1_creates_no_second_referral),
        cmocka_unit_test(test_sighup_reloads_the_directory_and_refuses_a_broken_one),
        cmocka_unit_test(
            test_sigkill_in_the_middle_of_a_batch_then_restart_makes_the_clean_run_referrals),
        cmocka_unit_test(test_two_instances_over_one_backlog_make_the_referrals_of_one),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
