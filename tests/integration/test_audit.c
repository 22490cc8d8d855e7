/* The audit holds: intake's own database role, the one a compromised service would hold, can
 * neither change, hide, forge nor read audit rows, while every request the service handles,
 * Fetch included, is still written to the audit. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "harness.h"
#include "nrm_crypto.h"
#include "scenario.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NAME "audit"
#define AUDIT_DIGEST                                                                               \
    "SELECT count(*) || ':' || coalesce(md5(string_agg(a::text, ',' ORDER BY id)), '')"            \
    " FROM intake.audit_log a"

static harness_t *h;
static PGconn *s_service_role; /* logged in as nrm_intake, the service's role */
static PGconn *s_audit_reader; /* the superuser become nrm_audit_reader (SET ROLE) */

/* A connection to the test database as user, first running sql; NULL on failure. */
static PGconn *s_connect(const char *user, const char *sql)
{
    char conninfo[512];
    snprintf(conninfo, sizeof conninfo, "host=%s port=%s dbname=t_" NAME " user=%s",
             getenv("NRM_TEST_PGHOST"), getenv("NRM_TEST_PGPORT"), user);
    PGconn *conn = PQconnectdb(conninfo);
    PGresult *res = PQstatus(conn) == CONNECTION_OK ? PQexec(conn, sql) : NULL;
    bool ok = res && PQresultStatus(res) == PGRES_COMMAND_OK;
    PQclear(res);
    if (!ok)
        PQfinish(conn);
    return ok ? conn : NULL;
}

static int setup(void **state)
{
    h = harness_new(NAME);
    if (harness_start(h, "intake", 0) != 0)
        return -1;
    s_service_role = s_connect("nrm_intake", "SET search_path TO intake");
    s_audit_reader = s_connect("postgres", "SET ROLE nrm_audit_reader");
    return s_service_role && s_audit_reader ? 0 : -1;
}

static int teardown(void **state)
{
    PQfinish(s_service_role);
    PQfinish(s_audit_reader);
    harness_destroy(&h);
    return 0;
}

/* Runs sql on conn; returns true when PostgreSQL refused it. */
static bool s_refused(PGconn *conn, const char *sql)
{
    PGresult *res = PQexec(conn, sql);
    bool refused = PQresultStatus(res) == PGRES_FATAL_ERROR;
    if (!refused)
        fprintf(stderr, "allowed: %s\n", sql);
    PQclear(res);
    return refused;
}

/* Runs sql as the service's role; returns true when PostgreSQL refused it. */
static bool s_refused_to_service_role(const char *sql)
{
    return s_refused(s_service_role, sql);
}

/* The first column of the first row of sql run as the superuser (caller frees). */
static char *s_sql_text(const char *sql)
{
    PGresult *res = harness_sql(h, sql);
    char *text = strdup(PQgetvalue(res, 0, 0));
    PQclear(res);
    return text;
}

/* Submits a report with request_id (a fresh UUID written there); asserts OK. */
static void s_submit_report(char request_id[37])
{
    scenario_report_t s;
    scenario_adult_woman(&s, "MA-06", "Audited Person", "1991-03-02");
    nrm_uuid_v4(request_id);
    s.request.request_id = request_id;
    Nrm__V1__Reply *reply = harness_call(h, "intake", "police-ma-06", &s.request);
    assert_non_null(reply);
    assert_int_equal(reply->status, NRM__V1__STATUS__STATUS_OK);
    nrm__v1__reply__free_unpacked(reply, NULL);
}

/* Sends Fetch { stream, from_seq } as agency with request_id (a fresh UUID written there);
 * returns the reply (caller frees). */
static Nrm__V1__Reply *s_fetch(const char *agency, const char *stream, int64_t from_seq,
                               char request_id[37])
{
    Nrm__V1__Fetch fetch = NRM__V1__FETCH__INIT;
    fetch.stream = (char *)stream;
    fetch.from_seq = from_seq;
    Nrm__V1__Request req = NRM__V1__REQUEST__INIT;
    scenario_request(&req, NRM__V1__REQUEST__BODY_FETCH, &fetch);
    nrm_uuid_v4(request_id);
    req.request_id = request_id;
    Nrm__V1__Reply *reply = harness_call(h, "intake", agency, &req);
    assert_non_null(reply);
    return reply;
}

static void test_a_request_is_still_audited_by_the_service(void **state)
{
    char request_id[37];
    s_submit_report(request_id);
    assert_int_equal(
        harness_sql_intf(h,
                         "SELECT count(*) FROM intake.audit_log WHERE request_id = '%s'"
                         " AND agency_id = 'police-ma-06' AND kind = 'submit_report'"
                         " AND status = 'OK' AND subject_id <> ''",
                         request_id),
        1);
}

static void test_service_role_cannot_change_hide_or_drop_audit_rows(void **state)
{
    char request_id[37];
    s_submit_report(request_id);
    char *before = s_sql_text(AUDIT_DIGEST);
    const char *attempts[] = {
        "ALTER TABLE audit_log DISABLE TRIGGER ALL",
        "ALTER TABLE audit_log DISABLE TRIGGER audit_log_append_only",
        "DROP TRIGGER audit_log_append_only ON audit_log",
        "CREATE OR REPLACE FUNCTION audit_log_refuse_change() RETURNS trigger"
        " LANGUAGE plpgsql AS $$ BEGIN RETURN NULL; END $$",
        "DROP FUNCTION audit_log_refuse_change() CASCADE",
        "UPDATE audit_log SET status = 'OK'",
        "DELETE FROM audit_log",
        "TRUNCATE audit_log",
        "ALTER TABLE audit_log OWNER TO nrm_intake",
        "ALTER TABLE audit_log RENAME TO audit_log_old",
        "ALTER TABLE audit_log ADD COLUMN hidden boolean",
        "DROP TABLE audit_log",
        "DROP TABLE audit_log CASCADE",
        "DROP SCHEMA intake CASCADE",
        "ALTER SCHEMA intake RENAME TO intake_old",
        "CREATE TRIGGER audit_log_mute BEFORE INSERT ON audit_log"
        " FOR EACH ROW EXECUTE FUNCTION audit_log_refuse_change()",
        "CREATE RULE audit_log_mute AS ON INSERT TO audit_log DO INSTEAD NOTHING",
        "SELECT setval('audit_log_id_seq', 1)",
    };
    for (size_t i = 0; i < sizeof attempts / sizeof *attempts; i++)
        assert_true(s_refused_to_service_role(attempts[i]));
    char *after = s_sql_text(AUDIT_DIGEST);
    assert_string_equal(after, before);
    assert_int_equal(harness_sql_int(h, "SELECT count(*) FROM pg_trigger"
                                        " WHERE tgrelid = 'intake.audit_log'::regclass"
                                        " AND tgname = 'audit_log_append_only'"
                                        " AND tgenabled = 'O'"),
                     1);
    free(before);
    free(after);
}

static void test_service_role_cannot_forge_the_time_or_id_of_a_row(void **state)
{
    char *before = s_sql_text(AUDIT_DIGEST);
    assert_true(s_refused_to_service_role(
        "INSERT INTO audit_log (at, request_id, agency_id, kind, status)"
        " VALUES ('2001-01-01', 'forged', 'coordinator', 'close_case', 'OK')"));
    assert_true(s_refused_to_service_role(
        "INSERT INTO audit_log (id, request_id, agency_id, kind, status)"
        " VALUES (1000000, 'forged', 'coordinator', 'close_case', 'OK')"));
    char *after = s_sql_text(AUDIT_DIGEST);
    assert_string_equal(after, before);
    free(before);
    free(after);
}

static void test_service_role_cannot_read_the_audit(void **state)
{
    assert_true(s_refused_to_service_role("SELECT count(*) FROM audit_log"));
}

static void test_audit_reader_reads_every_row_and_changes_none(void **state)
{
    char *before = s_sql_text(AUDIT_DIGEST);
    PGresult *res = PQexec(s_audit_reader, "SELECT count(*) FROM intake.audit_log");
    assert_int_equal(PQresultStatus(res), PGRES_TUPLES_OK);
    assert_int_equal(atoll(PQgetvalue(res, 0, 0)),
                     harness_sql_int(h, "SELECT count(*) FROM intake.audit_log"));
    PQclear(res);
    assert_true(s_refused(s_audit_reader, "UPDATE intake.audit_log SET status = 'OK'"));
    assert_true(s_refused(s_audit_reader, "INSERT INTO intake.audit_log"
                                          " (request_id, agency_id, kind, status)"
                                          " VALUES ('forged', 'coordinator', 'close_case', 'OK')"));
    assert_true(s_refused(s_audit_reader, "SELECT count(*) FROM intake.requests"));
    char *after = s_sql_text(AUDIT_DIGEST);
    assert_string_equal(after, before);
    free(before);
    free(after);
}

static void test_fetch_is_audited_naming_stream_and_sequence(void **state)
{
    char request_id[37];
    Nrm__V1__Reply *reply = s_fetch("service:routing", "intake", 1, request_id);
    assert_int_equal(reply->status, NRM__V1__STATUS__STATUS_OK);
    nrm__v1__reply__free_unpacked(reply, NULL);
    assert_int_equal(
        harness_sql_intf(h,
                         "SELECT count(*) FROM intake.audit_log WHERE request_id = '%s'"
                         " AND agency_id = 'service:routing' AND kind = 'fetch'"
                         " AND status = 'OK' AND subject_id = 'intake@1'",
                         request_id),
        1);
}

static void test_empty_fetch_at_the_head_is_audited(void **state)
{
    char request_id[37];
    Nrm__V1__Reply *first = s_fetch("coordinator", "intake", 1, request_id);
    int64_t past_head = first->fetch_result->head + 1;
    nrm__v1__reply__free_unpacked(first, NULL);
    Nrm__V1__Reply *reply = s_fetch("coordinator", "intake", past_head, request_id);
    assert_int_equal(reply->status, NRM__V1__STATUS__STATUS_OK);
    assert_int_equal(reply->fetch_result->n_events, 0);
    nrm__v1__reply__free_unpacked(reply, NULL);
    assert_int_equal(
        harness_sql_intf(h,
                         "SELECT count(*) FROM intake.audit_log WHERE request_id = '%s'"
                         " AND agency_id = 'coordinator' AND kind = 'fetch' AND status = 'OK'"
                         " AND subject_id = 'intake@%lld'",
                         request_id, (long long)past_head),
        1);
}

static void test_refused_fetch_of_another_stream_is_audited(void **state)
{
    char request_id[37];
    Nrm__V1__Reply *reply = s_fetch("coordinator", "routing", 1, request_id);
    assert_int_equal(reply->status, NRM__V1__STATUS__STATUS_INVALID_ARGUMENT);
    assert_string_equal(reply->error_field, "fetch.stream");
    nrm__v1__reply__free_unpacked(reply, NULL);
    assert_int_equal(
        harness_sql_intf(h,
                         "SELECT count(*) FROM intake.audit_log WHERE request_id = '%s'"
                         " AND agency_id = 'coordinator' AND kind = 'fetch'"
                         " AND status = 'INVALID_ARGUMENT' AND error_field = 'fetch.stream'",
                         request_id),
        1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_a_request_is_still_audited_by_the_service),
        cmocka_unit_test(test_service_role_cannot_change_hide_or_drop_audit_rows),
        cmocka_unit_test(test_service_role_cannot_forge_the_time_or_id_of_a_row),
        cmocka_unit_test(test_service_role_cannot_read_the_audit),
        cmocka_unit_test(test_audit_reader_reads_every_row_and_changes_none),
        cmocka_unit_test(test_fetch_is_audited_naming_stream_and_sequence),
        cmocka_unit_test(test_empty_fetch_at_the_head_is_audited),
        cmocka_unit_test(test_refused_fetch_of_another_stream_is_audited),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
