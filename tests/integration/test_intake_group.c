/* Intake groups the requests waiting on its socket into one transaction, a savepoint each, and
 * opens a new case in one statement. A group where a new report opens a case, a second report
 * of the same person links to that still uncommitted case, a third is refused by validation, a
 * fourth reuses the first's request_id for another report (it runs, writes, and is rolled back
 * when its reply cannot be stored) and a fifth repeats the first: the good ones are kept whole,
 * the refused ones wrote nothing, the repeat gets the first's stored reply. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "harness.h"
#include "nrm_client.h"
#include "nrm_crypto.h"
#include "nrm_time.h"
#include "scenario.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define WAIT_MS 10000
#define GROUP 5
#define ATTEMPTS 10
#define AGENCY "police-ma-06"

static harness_t *h;

static int setup(void **state)
{
    h = harness_new("intake_group");
    return harness_start(h, "intake", 0);
}

static int teardown(void **state)
{
    harness_destroy(&h);
    return 0;
}

/* Counts rows with one SQL statement formatted with one case id. */
static long long s_count_for(const char *fmt, const char *case_id)
{
    char sql[512];
    snprintf(sql, sizeof sql, fmt, case_id);
    return harness_sql_int(h, sql);
}

/* The replies to the n (at most GROUP) requests sent at once on one socket, in the order sent. */
static void s_send_group(nrm_client_t *client, Nrm__V1__Request **reqs, int n,
                         Nrm__V1__Reply **replies)
{
    char ids[GROUP][37];
    for (int i = 0; i < n; i++)
        assert_int_equal(nrm_client_send(client, reqs[i], ids[i]), 0);
    memset(replies, 0, (size_t)n * sizeof *replies);
    int got = 0;
    int64_t until = nrm_mono_ms() + WAIT_MS;
    bool used[GROUP] = {false};
    while (got < n && nrm_mono_ms() < until) {
        Nrm__V1__Reply *reply = nrm_client_receive(client);
        if (!reply) {
            zclock_sleep(2);
            continue;
        }
        /* requests sharing a request_id are answered in the order sent */
        int slot = -1;
        for (int i = 0; i < n && slot < 0; i++)
            if (!used[i] && strcmp(ids[i], reply->request_id) == 0)
                slot = i;
        assert_true(slot >= 0);
        used[slot] = true;
        replies[slot] = reply;
        got++;
    }
    assert_int_equal(got, n);
}

static void test_group_keeps_the_good_and_nothing_of_the_refused(void **state)
{
    nrm_client_t *client = harness_client_new(h, "intake", 0, AGENCY);
    bool grouped = false;
    int attempt = 0;
    for (; attempt < ATTEMPTS && !grouped; attempt++) {
        char name[64], other[64], request_id[37];
        snprintf(name, sizeof name, "Group Test Person %d", attempt);
        snprintf(other, sizeof other, "Group Other Person %d", attempt);
        nrm_uuid_v4(request_id);
        scenario_report_t first, linked, invalid, reused, repeat;
        scenario_adult_woman(&first, "MA-06", name, "1990-02-02");
        scenario_adult_woman(&linked, "MA-06", name, "1990-02-02");
        scenario_adult_woman(&invalid, "MA-06", other, "1991-03-03");
        scenario_adult_woman(&reused, "MA-06", other, "1992-04-04");
        scenario_adult_woman(&repeat, "MA-06", name, "1990-02-02");
        repeat.report.identified_at_ms = first.report.identified_at_ms;
        first.request.request_id = request_id;
        reused.request.request_id = request_id;
        repeat.request.request_id = request_id;
        invalid.report.region = ""; /* refused before anything is written */
        Nrm__V1__Request *reqs[GROUP] = {&first.request, &linked.request, &invalid.request,
                                         &reused.request, &repeat.request};
        long long cases = harness_sql_int(h, "SELECT count(*) FROM intake.cases");
        long long reports = harness_sql_int(h, "SELECT count(*) FROM intake.reports");
        long long keys = harness_sql_int(h, "SELECT count(*) FROM intake.case_keys");
        long long opened_before =
            harness_sql_int(h, "SELECT count(*) FROM intake.outbox WHERE topic = 'case.opened'");
        long long stored = harness_sql_int(h, "SELECT count(*) FROM intake.requests");

        Nrm__V1__Reply *replies[GROUP];
        s_send_group(client, reqs, GROUP, replies);
        assert_int_equal(replies[0]->status, NRM__V1__STATUS__STATUS_OK);
        const char *case_id = replies[0]->case_ref->case_id;
        assert_false(replies[0]->case_ref->linked);
        assert_int_equal(replies[1]->status, NRM__V1__STATUS__STATUS_OK);
        assert_true(replies[1]->case_ref->linked);
        assert_string_equal(replies[1]->case_ref->case_id, case_id);
        assert_int_equal(replies[2]->status, NRM__V1__STATUS__STATUS_INVALID_ARGUMENT);
        assert_string_equal(replies[2]->error_field, "submit_report.region");
        assert_int_equal(replies[3]->status, NRM__V1__STATUS__STATUS_CONFLICT);
        assert_string_equal(replies[3]->error_field, "request_id");
        assert_int_equal(replies[4]->status, NRM__V1__STATUS__STATUS_OK);
        assert_string_equal(replies[4]->case_ref->case_id, case_id);
        assert_false(replies[4]->case_ref->linked);

        /* one case with its key, two reports, case.opened and case.linked; the reused id's
         * case (written, then rolled back) and the invalid report left nothing */
        assert_int_equal(harness_sql_int(h, "SELECT count(*) FROM intake.cases"), cases + 1);
        assert_int_equal(harness_sql_int(h, "SELECT count(*) FROM intake.reports"), reports + 2);
        assert_int_equal(harness_sql_int(h, "SELECT count(*) FROM intake.case_keys"), keys + 1);
        assert_int_equal(harness_sql_int(h, "SELECT count(*) FROM intake.requests"), stored + 2);
        assert_int_equal(
            s_count_for("SELECT count(*) FROM intake.reports WHERE case_id = '%s'", case_id), 2);
        assert_int_equal(s_count_for("SELECT count(*) FROM intake.reports WHERE case_id = '%s'"
                                     " AND linked",
                                     case_id),
                         1);
        assert_int_equal(
            s_count_for("SELECT count(*) FROM intake.case_keys WHERE case_id = '%s'", case_id), 1);
        assert_int_equal(s_count_for("SELECT count(*) FROM intake.case_agencies"
                                     " WHERE case_id = '%s'",
                                     case_id),
                         1);
        assert_int_equal(s_count_for("SELECT count(*) FROM intake.cases WHERE case_id = '%s'"
                                     " AND facts IS NOT NULL AND identified_at < now()",
                                     case_id),
                         1);
        /* one case.opened: the reused id's case.opened went with its case */
        assert_int_equal(harness_sql_int(h, "SELECT count(*) FROM intake.outbox"
                                            " WHERE topic = 'case.opened'"),
                         opened_before + 1);
        assert_int_equal(s_count_for("SELECT count(*) FROM intake.audit_log WHERE subject_id = '%s'"
                                     " AND kind = 'case_link'",
                                     case_id),
                         1);

        /* the stream has the case's case.opened once and its case.linked once */
        harness_wait_sql(h, "SELECT count(*) FROM intake.outbox WHERE seq IS NULL", 0, WAIT_MS);
        Nrm__V1__Event **all;
        size_t n = harness_fetch_all(h, "intake", &all);
        int opened = 0, linked_events = 0;
        for (size_t i = 0; i < n; i++) {
            opened +=
                strcmp(all[i]->case_id, case_id) == 0 && strcmp(all[i]->topic, "case.opened") == 0;
            linked_events +=
                strcmp(all[i]->case_id, case_id) == 0 && strcmp(all[i]->topic, "case.linked") == 0;
            nrm__v1__event__free_unpacked(all[i], NULL);
        }
        free(all);
        assert_int_equal(opened, 1);
        assert_int_equal(linked_events, 1);

        /* one transaction (its now() is each stored reply's created_at): then the test is the
         * one it names; otherwise, the same again until the service took them together */
        char sql[512];
        snprintf(sql, sizeof sql,
                 "SELECT count(DISTINCT created_at) FROM intake.requests r"
                 " JOIN intake.reports p ON p.request_id = r.request_id WHERE p.case_id = '%s'",
                 case_id);
        grouped = harness_sql_int(h, sql) == 1;
        for (int i = 0; i < GROUP; i++)
            nrm__v1__reply__free_unpacked(replies[i], NULL);
    }
    fprintf(stderr, "the group was taken in one transaction at attempt %d of %d\n", attempt,
            ATTEMPTS);
    assert_true(grouped);
    nrm_client_destroy(&client);
}

/* The first request of a transaction takes no savepoint: when it fails after writing, the
 * transaction is rolled back and another begins for the rest of the group. */
static void test_first_of_a_group_failing_after_writing_leaves_the_rest(void **state)
{
    nrm_client_t *client = harness_client_new(h, "intake", 0, AGENCY);
    bool grouped = false;
    int attempt = 0;
    for (; attempt < ATTEMPTS && !grouped; attempt++) {
        char name[64], other[64], third[64], request_id[37];
        snprintf(name, sizeof name, "First Test Person %d", attempt);
        snprintf(other, sizeof other, "First Other Person %d", attempt);
        snprintf(third, sizeof third, "First Third Person %d", attempt);
        nrm_uuid_v4(request_id);
        scenario_report_t stored, reused, repeat, good, invalid;
        scenario_adult_woman(&stored, "MA-06", name, "1990-05-05");
        stored.request.request_id = request_id;
        Nrm__V1__Request *alone[] = {&stored.request};
        Nrm__V1__Reply *first = NULL;
        s_send_group(client, alone, 1, &first); /* the same client: the same bytes repeated */
        assert_int_equal(first->status, NRM__V1__STATUS__STATUS_OK);
        scenario_adult_woman(&reused, "MA-06", other, "1991-06-06");
        scenario_adult_woman(&repeat, "MA-06", name, "1990-05-05");
        scenario_adult_woman(&good, "MA-06", third, "1993-07-07");
        scenario_adult_woman(&invalid, "MA-06", third, "1993-07-07");
        repeat.report.identified_at_ms = stored.report.identified_at_ms;
        reused.request.request_id = request_id;
        repeat.request.request_id = request_id;
        invalid.report.region = "";
        Nrm__V1__Request *reqs[] = {&reused.request, &repeat.request, &good.request,
                                    &invalid.request};
        int n = (int)(sizeof reqs / sizeof *reqs);
        long long cases = harness_sql_int(h, "SELECT count(*) FROM intake.cases");
        long long reports = harness_sql_int(h, "SELECT count(*) FROM intake.reports");
        long long keys = harness_sql_int(h, "SELECT count(*) FROM intake.case_keys");
        long long stored_replies = harness_sql_int(h, "SELECT count(*) FROM intake.requests");
        long long opened_before =
            harness_sql_int(h, "SELECT count(*) FROM intake.outbox WHERE topic = 'case.opened'");

        Nrm__V1__Reply *replies[GROUP];
        s_send_group(client, reqs, n, replies);
        assert_int_equal(replies[0]->status, NRM__V1__STATUS__STATUS_CONFLICT);
        assert_string_equal(replies[0]->error_field, "request_id");
        assert_int_equal(replies[1]->status, NRM__V1__STATUS__STATUS_OK);
        assert_string_equal(replies[1]->case_ref->case_id, first->case_ref->case_id);
        assert_int_equal(replies[2]->status, NRM__V1__STATUS__STATUS_OK);
        assert_false(replies[2]->case_ref->linked);
        assert_int_equal(replies[3]->status, NRM__V1__STATUS__STATUS_INVALID_ARGUMENT);
        assert_string_equal(replies[3]->error_field, "submit_report.region");

        /* the good report's case, whole; nothing of the reused id's case */
        assert_int_equal(harness_sql_int(h, "SELECT count(*) FROM intake.cases"), cases + 1);
        assert_int_equal(harness_sql_int(h, "SELECT count(*) FROM intake.reports"), reports + 1);
        assert_int_equal(harness_sql_int(h, "SELECT count(*) FROM intake.case_keys"), keys + 1);
        assert_int_equal(harness_sql_int(h, "SELECT count(*) FROM intake.requests"),
                         stored_replies + 1);
        assert_int_equal(harness_sql_int(h, "SELECT count(*) FROM intake.outbox"
                                            " WHERE topic = 'case.opened'"),
                         opened_before + 1);
        const char *case_id = replies[2]->case_ref->case_id;
        assert_int_equal(s_count_for("SELECT count(*) FROM intake.reports WHERE case_id = '%s'"
                                     " AND NOT linked",
                                     case_id),
                         1);
        assert_int_equal(
            s_count_for("SELECT count(*) FROM intake.case_keys WHERE case_id = '%s'", case_id), 1);
        /* the refusals are audited: the conflict once, with the good report's transaction */
        char sql[512];
        snprintf(sql, sizeof sql,
                 "SELECT count(*) FROM intake.audit_log WHERE request_id = '%s'"
                 " AND status = 'CONFLICT'",
                 request_id);
        assert_int_equal(harness_sql_int(h, sql), 1);
        /* taken together: the conflict's audit row and the good report's share a transaction */
        snprintf(sql, sizeof sql,
                 "SELECT count(DISTINCT a.at) FROM intake.audit_log a WHERE (a.request_id = '%s'"
                 " AND a.status = 'CONFLICT') OR a.subject_id = '%s'",
                 request_id, case_id);
        grouped = harness_sql_int(h, sql) == 1;
        for (int i = 0; i < n; i++)
            nrm__v1__reply__free_unpacked(replies[i], NULL);
        nrm__v1__reply__free_unpacked(first, NULL);
    }
    fprintf(stderr, "the group was taken in one batch at attempt %d of %d\n", attempt, ATTEMPTS);
    assert_true(grouped);
    nrm_client_destroy(&client);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_group_keeps_the_good_and_nothing_of_the_refused),
        cmocka_unit_test(test_first_of_a_group_failing_after_writing_leaves_the_rest),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
