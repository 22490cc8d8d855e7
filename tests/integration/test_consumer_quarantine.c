/* An event that a consumer cannot apply does not stall the stream behind it: a trigger the
 * test adds to routing.cases refuses one case, routing's consumer tries consumer.max_attempts
 * times (with backoff), then sets the event aside (routing.consumer_quarantine), publishes
 * consumer.quarantined, moves its checkpoint on and applies the next report. Ping shows the
 * count, ListQuarantine the event (coordinator only); RetryQuarantined fails while the cause is
 * there (the event stays), and once the trigger is gone applies it: the case gets its
 * referrals, the quarantine is empty. A consumer that writes a batch's effects at its end (stats)
 * does the same when that write fails: it applies the batch again one event at a time, so that
 * the failure has an owner, sets that one aside and goes on; a retry writes its effects. A
 * directory event that routing's directory consumer set aside is retried by that consumer. A
 * failure that no event owns is retried after a growing wait, not at once in a loop. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "harness.h"
#include "routing_scenario.h"
#include "scenario.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define OK NRM__V1__STATUS__STATUS_OK
#define MAX_ATTEMPTS 3
#define WAIT_MS 30000
#define SQL_MAX 512
#define STALL_WATCH_MS 3000 /* waits of 50, 100, 200 ... 2000 ms: about 7 tries in this time */
#define STALL_MAX_TRIES 15
#define B(name) NRM__V1__REQUEST__BODY_##name

static harness_t *h;

static int setup(void **state)
{
    h = harness_new("consumer_quarantine");
    harness_config_set(h, "consumer.max_attempts", json_integer(MAX_ATTEMPTS));
    harness_config_set(h, "consumer.retry_backoff_ms", json_integer(50));
    if (harness_start(h, "intake", 0) != 0 || harness_start(h, "routing", 0) != 0)
        return -1;
    return harness_start(h, "stats", 0);
}

static int teardown(void **state)
{
    harness_destroy(&h);
    return 0;
}

static long long s_sql_int(const char *fmt, const char *arg)
{
    char sql[SQL_MAX];
    snprintf(sql, sizeof sql, fmt, arg);
    return harness_sql_int(h, sql);
}

/* routing's Pong.quarantined (-1 without an answer). */
static long long s_pong_quarantined(void)
{
    Nrm__V1__Ping ping = NRM__V1__PING__INIT;
    Nrm__V1__Request req = NRM__V1__REQUEST__INIT;
    scenario_request(&req, B(PING), &ping);
    Nrm__V1__Reply *reply = harness_call(h, "routing", "coordinator", &req);
    long long n = reply && reply->pong ? reply->pong->quarantined : -1;
    if (reply)
        nrm__v1__reply__free_unpacked(reply, NULL);
    return n;
}

static long long s_wait_pong_quarantined(long long want)
{
    long long n = -1;
    for (int i = 0; i < WAIT_MS / 100 && (n = s_pong_quarantined()) != want; i++)
        usleep(100 * 1000);
    return n;
}

/* Waits until the case has at least one referral in routing; returns how many. */
static long long s_wait_some_referrals(const char *case_id)
{
    long long n = 0;
    for (int i = 0; i < WAIT_MS / 100; i++) {
        n = s_sql_int("SELECT count(*) FROM routing.referrals WHERE case_id = '%s'", case_id);
        if (n > 0)
            break;
        usleep(100 * 1000);
    }
    return n;
}

/* Sends RetryQuarantined id as agency; returns the reply (caller frees). */
static Nrm__V1__Reply *s_retry(const char *agency, long long id)
{
    Nrm__V1__RetryQuarantined r = NRM__V1__RETRY_QUARANTINED__INIT;
    r.id = id;
    Nrm__V1__Request req = NRM__V1__REQUEST__INIT;
    scenario_request(&req, B(RETRY_QUARANTINED), &r);
    Nrm__V1__Reply *reply = harness_call(h, "routing", agency, &req);
    assert_non_null(reply);
    return reply;
}

/* The seq of the case.opened event of case_id on intake's stream (0 if none). */
static long long s_opened_seq(const char *case_id)
{
    Nrm__V1__Event **events = NULL;
    size_t n = harness_fetch_all(h, "intake", &events);
    long long seq = 0;
    for (size_t i = 0; i < n; i++) {
        if (events[i]->body_case == NRM__V1__EVENT__BODY_CASE_OPENED &&
            strcmp(events[i]->case_id, case_id) == 0)
            seq = events[i]->seq;
        nrm__v1__event__free_unpacked(events[i], NULL);
    }
    free(events);
    return seq;
}

static void test_an_event_that_cannot_be_applied_is_set_aside_and_retried_later(void **state)
{
    PQclear(harness_sql(h, "CREATE FUNCTION routing.test_refuse() RETURNS trigger"
                           " LANGUAGE plpgsql AS $$ BEGIN IF NEW.region = 'MA-01' THEN"
                           " RAISE EXCEPTION 'refused by the test'; END IF; RETURN NEW; END $$"));
    PQclear(harness_sql(h, "CREATE TRIGGER test_refuse BEFORE INSERT ON routing.cases"
                           " FOR EACH ROW EXECUTE FUNCTION routing.test_refuse()"));
    scenario_report_t a, b;
    char refused[ROUTING_ID_TEXT], next[ROUTING_ID_TEXT];
    scenario_adult_woman(&a, "MA-01", "Test Person One", "1991-02-03");
    assert_int_equal(routing_submit(h, &a, "labour-ma-06", refused), OK);
    scenario_adult_woman(&b, "MA-04", "Test Person Two", "1992-03-04");
    assert_int_equal(routing_submit(h, &b, "labour-ma-06", next), OK);

    /* set aside after MAX_ATTEMPTS, and the report behind it is applied */
    assert_int_equal(
        harness_wait_sql(h, "SELECT count(*) FROM routing.consumer_quarantine", 1, WAIT_MS), 1);
    char sql[SQL_MAX];
    snprintf(sql, sizeof sql, "SELECT count(*) FROM routing.cases WHERE case_id = '%s'", next);
    assert_int_equal(harness_wait_sql(h, sql, 1, WAIT_MS), 1);
    assert_true(routing_wait_caught_up(h, WAIT_MS));
    assert_int_equal(s_sql_int("SELECT count(*) FROM routing.cases WHERE case_id = '%s'", refused),
                     0);
    assert_true(s_wait_some_referrals(next) >= 1);
    long long seq = s_opened_seq(refused);
    assert_true(seq > 0);
    char seq_text[32];
    snprintf(seq_text, sizeof seq_text, "%lld", seq);
    assert_int_equal(s_sql_int("SELECT count(*) FROM routing.consumer_quarantine WHERE seq = %s"
                               " AND stream = 'intake' AND topic = 'case.opened'"
                               " AND consumer = 'intake' AND attempts = 3"
                               " AND last_error LIKE 'INTERNAL%%'",
                               seq_text),
                     1);
    /* no identifying data in what is kept */
    assert_int_equal(harness_sql_int(h, "SELECT count(*) FROM routing.consumer_quarantine"
                                        " WHERE last_error LIKE '%Test Person%'"),
                     0);
    long long id = harness_sql_int(h, "SELECT id FROM routing.consumer_quarantine");

    /* the alert on routing's own stream */
    Nrm__V1__Event **events = NULL;
    size_t n = 0;
    bool alerted = false;
    for (int i = 0; i < WAIT_MS / 200 && !alerted; i++) {
        n = harness_fetch_all(h, "routing", &events);
        for (size_t e = 0; e < n; e++) {
            Nrm__V1__ConsumerQuarantined *q = events[e]->consumer_quarantined;
            if (events[e]->body_case == NRM__V1__EVENT__BODY_CONSUMER_QUARANTINED &&
                strcmp(events[e]->topic, "consumer.quarantined") == 0 && q->seq == seq &&
                q->quarantine_id == id && strcmp(q->stream, "intake") == 0 &&
                strcmp(q->consumer, "intake") == 0 && q->attempts == MAX_ATTEMPTS)
                alerted = true;
            nrm__v1__event__free_unpacked(events[e], NULL);
        }
        free(events);
        if (!alerted)
            usleep(200 * 1000);
    }
    assert_true(alerted);
    assert_int_equal(s_wait_pong_quarantined(1), 1);

    /* ListQuarantine: the coordinator sees it; an agency is refused */
    Nrm__V1__ListQuarantine l = NRM__V1__LIST_QUARANTINE__INIT;
    Nrm__V1__Request req = NRM__V1__REQUEST__INIT;
    scenario_request(&req, B(LIST_QUARANTINE), &l);
    Nrm__V1__Reply *reply = harness_call(h, "routing", "coordinator", &req);
    assert_non_null(reply);
    assert_int_equal(reply->status, OK);
    assert_int_equal(reply->quarantine_list->n_events, 1);
    assert_int_equal(reply->quarantine_list->total, 1);
    Nrm__V1__QuarantinedEvent *q = reply->quarantine_list->events[0];
    assert_int_equal(q->id, id);
    assert_int_equal(q->seq, seq);
    assert_string_equal(q->stream, "intake");
    assert_string_equal(q->topic, "case.opened");
    assert_string_equal(q->consumer, "intake");
    assert_int_equal(q->attempts, MAX_ATTEMPTS);
    assert_true(q->quarantined_at_ms > 0);
    nrm__v1__reply__free_unpacked(reply, NULL);
    reply = harness_call(h, "routing", "labour-ma-06", &req);
    assert_non_null(reply);
    assert_int_equal(reply->status, NRM__V1__STATUS__STATUS_PERMISSION_DENIED);
    nrm__v1__reply__free_unpacked(reply, NULL);

    /* the cause is still there: the retry fails and the event stays */
    reply = s_retry("coordinator", id);
    assert_int_equal(reply->status, NRM__V1__STATUS__STATUS_INTERNAL);
    nrm__v1__reply__free_unpacked(reply, NULL);
    assert_int_equal(harness_sql_int(h, "SELECT count(*) FROM routing.consumer_quarantine"), 1);

    /* fixed: the retry applies it, once */
    PQclear(harness_sql(h, "DROP TRIGGER test_refuse ON routing.cases"));
    reply = s_retry("coordinator", id);
    assert_int_equal(reply->status, OK);
    assert_int_equal(reply->quarantine_retried->seq, seq);
    assert_string_equal(reply->quarantine_retried->stream, "intake");
    nrm__v1__reply__free_unpacked(reply, NULL);
    assert_int_equal(s_sql_int("SELECT count(*) FROM routing.cases WHERE case_id = '%s'", refused),
                     1);
    assert_true(s_wait_some_referrals(refused) >= 1);
    assert_int_equal(harness_sql_int(h, "SELECT count(*) FROM routing.consumer_quarantine"), 0);
    reply = s_retry("coordinator", id);
    assert_int_equal(reply->status, NRM__V1__STATUS__STATUS_NOT_FOUND);
    assert_string_equal(reply->error_field, "retry_quarantined.id");
    nrm__v1__reply__free_unpacked(reply, NULL);
    assert_int_equal(s_wait_pong_quarantined(0), 0);
}

static void test_a_batch_write_that_fails_is_narrowed_to_its_event_and_set_aside(void **state)
{
    PQclear(harness_sql(h, "CREATE FUNCTION stats.test_refuse() RETURNS trigger"
                           " LANGUAGE plpgsql AS $$ BEGIN IF NEW.region = 'MA-02' THEN"
                           " RAISE EXCEPTION 'refused by the test'; END IF; RETURN NEW; END $$"));
    PQclear(harness_sql(h, "CREATE TRIGGER test_refuse BEFORE INSERT ON stats.cases"
                           " FOR EACH ROW EXECUTE FUNCTION stats.test_refuse()"));
    scenario_report_t a, b;
    char refused[ROUTING_ID_TEXT], next[ROUTING_ID_TEXT];
    scenario_adult_woman(&a, "MA-02", "Test Person Three", "1993-04-05");
    assert_int_equal(routing_submit(h, &a, "labour-ma-06", refused), OK);
    scenario_adult_woman(&b, "MA-03", "Test Person Four", "1994-05-06");
    assert_int_equal(routing_submit(h, &b, "labour-ma-06", next), OK);

    /* the refused case's event is set aside; the report behind it is counted */
    char sql[SQL_MAX];
    snprintf(sql, sizeof sql, "SELECT count(*) FROM stats.cases WHERE case_id = '%s'", next);
    assert_int_equal(harness_wait_sql(h, sql, 1, WAIT_MS), 1);
    long long seq = s_opened_seq(refused);
    assert_true(seq > 0);
    char seq_text[32];
    snprintf(seq_text, sizeof seq_text, "%lld", seq);
    assert_int_equal(s_sql_int("SELECT count(*) FROM stats.consumer_quarantine WHERE seq = %s"
                               " AND stream = 'intake' AND topic = 'case.opened'"
                               " AND consumer = 'intake'",
                               seq_text),
                     1);
    assert_int_equal(s_sql_int("SELECT count(*) FROM stats.cases WHERE case_id = '%s'", refused),
                     0);

    /* fixed: the retry writes what the event gathers, once */
    PQclear(harness_sql(h, "DROP TRIGGER test_refuse ON stats.cases"));
    long long id = harness_sql_int(h, "SELECT id FROM stats.consumer_quarantine");
    Nrm__V1__RetryQuarantined r = NRM__V1__RETRY_QUARANTINED__INIT;
    r.id = id;
    Nrm__V1__Request req = NRM__V1__REQUEST__INIT;
    scenario_request(&req, B(RETRY_QUARANTINED), &r);
    Nrm__V1__Reply *reply = harness_call(h, "stats", "coordinator", &req);
    assert_non_null(reply);
    assert_int_equal(reply->status, OK);
    nrm__v1__reply__free_unpacked(reply, NULL);
    assert_int_equal(s_sql_int("SELECT count(*) FROM stats.cases WHERE case_id = '%s'", refused),
                     1);
    assert_int_equal(harness_sql_int(h, "SELECT count(*) FROM stats.consumer_quarantine"), 0);
}

/* The only quarantined event of routing's directory consumer (0 if none). */
static long long s_directory_quarantine_id(void)
{
    return harness_sql_int(h, "SELECT coalesce(max(id), 0) FROM routing.consumer_quarantine"
                              " WHERE consumer = 'intake/directory'");
}

/* routing consumes intake's stream twice: its own consumer (case events) and the directory's
 * (directory events). An event the directory's consumer set aside is replayed through it, not
 * through the other one, which would skip it and drop it from the quarantine unapplied. */
static void test_a_directory_event_set_aside_is_retried_by_the_directory_consumer(void **state)
{
    PQclear(harness_sql(h, "CREATE FUNCTION routing.test_refuse_agency() RETURNS trigger"
                           " LANGUAGE plpgsql AS $$ BEGIN IF NEW.agency_id = 'ngo-refused' THEN"
                           " RAISE EXCEPTION 'refused by the test'; END IF; RETURN NEW; END $$"));
    PQclear(harness_sql(h, "CREATE TRIGGER test_refuse_agency BEFORE INSERT"
                           " ON routing.directory_agencies FOR EACH ROW"
                           " EXECUTE FUNCTION routing.test_refuse_agency()"));
    Nrm__V1__UpsertAgency u = NRM__V1__UPSERT_AGENCY__INIT;
    const char *key = harness_public_key(h, "ngo-refused");
    u.agency_id = "ngo-refused";
    u.type = NRM__V1__AGENCY_TYPE__AGENCY_TYPE_NGO;
    u.public_keys = (char **)&key;
    u.n_public_keys = 1;
    u.active = true;
    u.name = "Partner organisation";
    Nrm__V1__Request req = NRM__V1__REQUEST__INIT;
    scenario_request(&req, B(UPSERT_AGENCY), &u);
    Nrm__V1__Reply *reply = harness_call(h, "intake", "coordinator", &req);
    assert_non_null(reply);
    assert_int_equal(reply->status, OK);
    nrm__v1__reply__free_unpacked(reply, NULL);

    /* set aside by the directory's consumer, under its name */
    assert_int_equal(harness_wait_sql(h,
                                      "SELECT count(*) FROM routing.consumer_quarantine"
                                      " WHERE consumer = 'intake/directory' AND stream = 'intake'"
                                      " AND topic LIKE 'directory.%'",
                                      1, WAIT_MS),
                     1);
    long long id = s_directory_quarantine_id();
    Nrm__V1__ListQuarantine l = NRM__V1__LIST_QUARANTINE__INIT;
    scenario_request(&req, B(LIST_QUARANTINE), &l);
    reply = harness_call(h, "routing", "coordinator", &req);
    assert_non_null(reply);
    assert_int_equal(reply->status, OK);
    assert_int_equal(reply->quarantine_list->n_events, 1);
    assert_int_equal(reply->quarantine_list->events[0]->id, id);
    assert_string_equal(reply->quarantine_list->events[0]->consumer, "intake/directory");
    nrm__v1__reply__free_unpacked(reply, NULL);

    /* the cause is still there: the directory's consumer fails again and the event stays */
    reply = s_retry("coordinator", id);
    assert_int_equal(reply->status, NRM__V1__STATUS__STATUS_INTERNAL);
    nrm__v1__reply__free_unpacked(reply, NULL);
    assert_int_equal(s_directory_quarantine_id(), id);

    /* fixed: the retry applies it to routing's copy of the directory */
    PQclear(harness_sql(h, "DROP TRIGGER test_refuse_agency ON routing.directory_agencies"));
    reply = s_retry("coordinator", id);
    assert_int_equal(reply->status, OK);
    nrm__v1__reply__free_unpacked(reply, NULL);
    assert_int_equal(harness_sql_int(h, "SELECT count(*) FROM routing.directory_agencies"
                                        " WHERE agency_id = 'ngo-refused' AND active"),
                     1);
    assert_int_equal(harness_sql_int(h, "SELECT count(*) FROM routing.consumer_quarantine"), 0);
}

/* A failure that no event owns (here routing's checkpoint row refuses every change, as a grant
 * taken away would) is not retried at once in a loop: the consumer waits, longer each time up to
 * two seconds, and applies the report once the cause is gone. */
static void test_a_failure_no_event_owns_is_retried_after_a_wait(void **state)
{
    PQclear(harness_sql(h, "CREATE FUNCTION routing.test_refuse_checkpoint() RETURNS trigger"
                           " LANGUAGE plpgsql AS $$ BEGIN IF NEW.stream = 'intake' THEN"
                           " RAISE EXCEPTION 'refused by the test'; END IF; RETURN NEW; END $$"));
    PQclear(harness_sql(h, "CREATE TRIGGER test_refuse_checkpoint BEFORE INSERT OR UPDATE"
                           " ON routing.checkpoints FOR EACH ROW"
                           " EXECUTE FUNCTION routing.test_refuse_checkpoint()"));
    int before = harness_log_lines(h, "routing", 0, "batch not applied", NULL);
    scenario_report_t a;
    char held[ROUTING_ID_TEXT];
    scenario_adult_woman(&a, "MA-04", "Test Person Five", "1995-06-07");
    assert_int_equal(routing_submit(h, &a, "labour-ma-06", held), OK);
    usleep(STALL_WATCH_MS * 1000);
    int failed = harness_log_lines(h, "routing", 0, "batch not applied", NULL) - before;
    /* tried again (50, 100, 200 ... ms after each failure), not thousands of times at once */
    assert_in_range(failed, 2, STALL_MAX_TRIES);
    assert_int_equal(s_sql_int("SELECT count(*) FROM routing.cases WHERE case_id = '%s'", held), 0);

    PQclear(harness_sql(h, "DROP TRIGGER test_refuse_checkpoint ON routing.checkpoints"));
    char sql[SQL_MAX];
    snprintf(sql, sizeof sql, "SELECT count(*) FROM routing.cases WHERE case_id = '%s'", held);
    assert_int_equal(harness_wait_sql(h, sql, 1, WAIT_MS), 1);
    assert_int_equal(harness_sql_int(h, "SELECT count(*) FROM routing.consumer_quarantine"), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_an_event_that_cannot_be_applied_is_set_aside_and_retried_later),
        cmocka_unit_test(test_a_batch_write_that_fails_is_narrowed_to_its_event_and_set_aside),
        cmocka_unit_test(test_a_directory_event_set_aside_is_retried_by_the_directory_consumer),
        cmocka_unit_test(test_a_failure_no_event_owns_is_retried_after_a_wait),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
