/* Upgrading a database prepared before the audit had its own owner: there the service's role
 * owned its schema and audit_log, and could have disabled the append-only trigger. The new
 * intake waits, saying to run deploy/db-init.sh; once the operator has, it starts, the old rows
 * are kept and are out of the role's reach. */
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
#include <sys/wait.h>
#include <unistd.h>

#define NAME "audit_upgrade"
#define WAIT_FOR_LOG_S 15

static harness_t *h;
static int s_db_init_status = -1; /* of the operator's db-init.sh run during intake's start */

/* The layout an earlier db-init.sh and bus migration left: the role owns everything. */
static void s_make_old_layout(void)
{
    PQclear(harness_sql(h, "ALTER SCHEMA intake OWNER TO nrm_intake"));
    PQclear(harness_sql(h, "ALTER TABLE intake.audit_log OWNER TO nrm_intake"));
    PQclear(harness_sql(h, "ALTER FUNCTION intake.audit_log_refuse_change() OWNER TO nrm_intake"));
    PQclear(harness_sql(h, "ALTER TABLE intake.audit_log DISABLE TRIGGER audit_log_append_only"));
    PQclear(harness_sql(h, "INSERT INTO intake.audit_log (request_id, agency_id, kind, status)"
                           " VALUES ('before-upgrade', 'coordinator', 'close_case', 'OK')"));
}

/* Starts the operator's run of db-init.sh, once intake's log asks for it. Returns its pid. */
static pid_t s_operator_runs_db_init_when_asked(void)
{
    char cmd[2048];
    snprintf(cmd, sizeof cmd,
             "for i in $(seq %d); do grep -q 'run deploy/db-init.sh' %s/intake-0.log 2>/dev/null"
             " && break; sleep 0.1; done; PGHOST=%s PGPORT=%s PGUSER=postgres"
             " bash %s/deploy/db-init.sh t_" NAME " >/dev/null",
             WAIT_FOR_LOG_S * 10, harness_dir(h), getenv("NRM_TEST_PGHOST"),
             getenv("NRM_TEST_PGPORT"), getenv("NRM_SOURCE_DIR"));
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
        _exit(127);
    }
    return pid;
}

static int setup(void **state)
{
    h = harness_new(NAME);
    s_make_old_layout();
    pid_t operator= s_operator_runs_db_init_when_asked();
    int started = harness_start(h, "intake", 0);
    waitpid(operator, & s_db_init_status, 0);
    return started;
}

static int teardown(void **state)
{
    harness_destroy(&h);
    return 0;
}

static void test_intake_waited_for_db_init_then_started(void **state)
{
    assert_true(harness_log_contains(h, "intake", 0, "run deploy/db-init.sh"));
    assert_true(WIFEXITED(s_db_init_status));
    assert_int_equal(WEXITSTATUS(s_db_init_status), 0);
}

static void test_rows_written_before_the_upgrade_are_kept(void **state)
{
    assert_int_equal(harness_sql_int(h, "SELECT count(*) FROM intake.audit_log"
                                        " WHERE request_id = 'before-upgrade'"),
                     1);
}

static void test_audit_belongs_to_its_owner_with_the_trigger_on_again(void **state)
{
    assert_int_equal(harness_sql_int(h, "SELECT count(*) FROM pg_class"
                                        " WHERE oid = 'intake.audit_log'::regclass"
                                        " AND relowner = 'nrm_audit_owner'::regrole"),
                     1);
    assert_int_equal(harness_sql_int(h, "SELECT count(*) FROM pg_namespace"
                                        " WHERE nspname = 'intake'"
                                        " AND nspowner = 'nrm_audit_owner'::regrole"),
                     1);
    assert_int_equal(harness_sql_int(h, "SELECT count(*) FROM pg_proc"
                                        " WHERE oid = 'intake.audit_log_refuse_change()'"
                                        "::regprocedure"
                                        " AND proowner = 'nrm_audit_owner'::regrole"),
                     1);
    assert_int_equal(harness_sql_int(h, "SELECT count(*) FROM pg_trigger"
                                        " WHERE tgrelid = 'intake.audit_log'::regclass"
                                        " AND tgname = 'audit_log_append_only'"
                                        " AND tgenabled = 'O'"),
                     1);
}

static void test_service_role_can_no_longer_change_old_rows(void **state)
{
    assert_false(harness_sql_int(h, "SELECT has_table_privilege('nrm_intake', 'intake.audit_log',"
                                    " 'SELECT, UPDATE, DELETE, TRUNCATE, TRIGGER')"));
    assert_false(harness_sql_int(h, "SELECT has_column_privilege('nrm_intake', 'intake.audit_log',"
                                    " 'at', 'INSERT')"));
}

static void test_requests_after_the_upgrade_are_audited(void **state)
{
    scenario_report_t s;
    scenario_adult_woman(&s, "MA-06", "Upgraded Person", "1988-08-08");
    char request_id[37];
    nrm_uuid_v4(request_id);
    s.request.request_id = request_id;
    Nrm__V1__Reply *reply = harness_call(h, "intake", "police-ma-06", &s.request);
    assert_non_null(reply);
    assert_int_equal(reply->status, NRM__V1__STATUS__STATUS_OK);
    nrm__v1__reply__free_unpacked(reply, NULL);
    char sql[256];
    snprintf(sql, sizeof sql,
             "SELECT count(*) FROM intake.audit_log WHERE request_id = '%s' AND status = 'OK'",
             request_id);
    assert_int_equal(harness_sql_int(h, sql), 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_intake_waited_for_db_init_then_started),
        cmocka_unit_test(test_rows_written_before_the_upgrade_are_kept),
        cmocka_unit_test(test_audit_belongs_to_its_owner_with_the_trigger_on_again),
        cmocka_unit_test(test_service_role_can_no_longer_change_old_rows),
        cmocka_unit_test(test_requests_after_the_upgrade_are_audited),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
