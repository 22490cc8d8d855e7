/* The database-backed mechanisms of nrm_common against the test cluster, without services:
 * migrations under concurrency and an upgrade's, nrm_db reconnection and error mapping, dense
 * sequencing when transactions commit out of order or publishers compete, and nrm_server's group
 * commit. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "harness.h"
#include "nrm_crypto.h"
#include "nrm_migrate.h"
#include "nrm_publisher.h"
#include "nrm_server.h"
#include "nrm_time.h"

#include <czmq.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define NAME "common_bus"
#define SCHEMA "intake"
#define WAIT_MS 5000
#define BACKOFF_MS 600   /* longer than nrm_db's reconnect backoff */
#define POLL_DUE_MS 1200 /* longer than the publisher's poll period */
#define HEARTBEAT_MS 100
#define TICK_MS 10
#define WRITERS 4
#define WRITES 20 /* transactions per writer, two events each */
#define BATCH 8
/* advisory locks in this test's database (other tests may run on the cluster meanwhile) */
#define ADVISORY_LOCKS                                                                             \
    "FROM pg_locks WHERE locktype = 'advisory' AND database = (SELECT oid FROM pg_database"        \
    " WHERE datname = 't_" NAME "')"

#define ASSERT_SQL(want, ...) assert_int_equal(harness_sql_intf(h, __VA_ARGS__), (want))

static harness_t *h;
static char s_conninfo[512];

static int setup(void **state)
{
    h = harness_new(NAME);
    snprintf(s_conninfo, sizeof s_conninfo, "host=%s port=%s dbname=t_%s user=nrm_intake",
             getenv("NRM_TEST_PGHOST"), getenv("NRM_TEST_PGPORT"), NAME);
    return 0;
}

static int teardown(void **state)
{
    harness_destroy(&h);
    return 0;
}

/* A new handle on the intake schema, bus tables migrated and a scratch table in place. */
static nrm_db_t *s_db(void)
{
    nrm_db_t *db = nrm_db_new(s_conninfo, SCHEMA);
    nrm_error_t err;
    assert_int_equal(nrm_migrate(db, bus_migrations, bus_migrations_count, &err), NRM_OK);
    assert_int_equal(
        nrm_db_sql(db, "CREATE TABLE IF NOT EXISTS things (id text PRIMARY KEY)", &err), NRM_OK);
    nrm_db_statement(db, "thing", "INSERT INTO things (id) VALUES ($1)");
    nrm_db_statement(db, "pid", "SELECT pg_backend_pid()");
    return db;
}

/* The backend pid of db's connection (connecting if needed). */
static long long s_pid(nrm_db_t *db)
{
    PGresult *res = NULL;
    nrm_error_t err;
    assert_int_equal(nrm_db_exec(db, "pid", NULL, &res, &err), NRM_OK);
    long long pid = nrm_db_int(res, 0, 0);
    PQclear(res);
    return pid;
}

/* Terminates backend pid of nrm_intake from the superuser connection; waits until it is gone. */
static void s_terminate(long long pid)
{
    ASSERT_SQL(1,
               "SELECT pg_terminate_backend(pid)::int FROM pg_stat_activity WHERE pid = %lld"
               " AND usename = 'nrm_intake'",
               pid);
    char sql[128];
    snprintf(sql, sizeof sql, "SELECT count(*) FROM pg_stat_activity WHERE pid = %lld", pid);
    assert_int_equal(harness_wait_sql(h, sql, 0, WAIT_MS), 0);
}

/* Emits, in db's open transaction, case.closed (case.consent_withdrawn when withdrawn). */
static nrm_status_t s_emit(nrm_db_t *db, const char *case_id, bool withdrawn)
{
    nrm_error_t err;
    nrm_tx_t tx = {db, "intake", "", nrm_now_ms(), &err, 0};
    Nrm__V1__CaseClosed closed = NRM__V1__CASE_CLOSED__INIT;
    Nrm__V1__ConsentWithdrawn gone = NRM__V1__CONSENT_WITHDRAWN__INIT;
    Nrm__V1__Event ev = NRM__V1__EVENT__INIT;
    ev.case_id = (char *)case_id;
    ev.body_case =
        withdrawn ? NRM__V1__EVENT__BODY_CONSENT_WITHDRAWN : NRM__V1__EVENT__BODY_CASE_CLOSED;
    if (withdrawn)
        ev.consent_withdrawn = &gone; /* a oneof: one member of a union */
    else
        ev.case_closed = &closed;
    return nrm_tx_emit(&tx, &ev);
}

/* The committed seq of the event of case_id: 0 while unnumbered, -1 when not visible. */
static long long s_seq_of(const char *case_id)
{
    return harness_sql_intf(h,
                            "SELECT coalesce((SELECT coalesce(seq, 0) FROM intake.outbox WHERE"
                            " position('%s'::bytea in payload) > 0), -1)",
                            case_id);
}

/* Asserts the outbox is numbered 1..n without gaps, duplicates or unnumbered rows; returns n. */
static long long s_assert_dense(void)
{
    ASSERT_SQL(1, "SELECT (count(DISTINCT seq) = count(*) AND coalesce(max(seq), 0) = count(*)"
                  " AND coalesce(min(seq), 1) = 1 AND (SELECT head FROM intake.stream_head) ="
                  " count(*))::int FROM intake.outbox");
    return harness_sql_intf(h, "SELECT count(*) FROM intake.outbox");
}

/* --- publication: a publisher, its PUB socket, a SUB checking what arrives ------------------ */

typedef struct {
    zsock_t *pub, *sub;
    nrm_publisher_t *publisher;
    int heads;      /* stream.head frames received */
    long long last; /* seq of the last event received */
    long long want; /* s_drain is done when both publisher and SUB reached it */
} s_bus_t;

static void s_bus_new(s_bus_t *bus, const char *endpoint, zloop_t *loop, long long head)
{
    *bus = (s_bus_t){zsock_new_pub(endpoint), zsock_new_sub(endpoint, ""), NULL, 0, head, head};
    assert_true(bus->pub && bus->sub);
    zsock_set_rcvtimeo(bus->sub, 0);
    bus->publisher = nrm_publisher_new(s_conninfo, SCHEMA, "intake", bus->pub, HEARTBEAT_MS);
    assert_int_equal(nrm_publisher_attach(bus->publisher, loop), 0);
}

static void s_bus_destroy(s_bus_t *bus)
{
    nrm_publisher_destroy(&bus->publisher);
    zsock_destroy(&bus->sub);
    zsock_destroy(&bus->pub);
}

/* Reads what the SUB received: every event must be the next seq, with the topic frame, topic
 * and event_id stored for it. True when a heartbeat came and bus->want is reached. */
static bool s_drain(void *arg)
{
    s_bus_t *bus = arg;
    zmsg_t *msg;
    while ((msg = zmsg_recv(bus->sub))) {
        char *topic = zmsg_popstr(msg);
        zframe_t *body = zmsg_first(msg);
        Nrm__V1__Event *ev = nrm_event_unpack(zframe_data(body), zframe_size(body));
        assert_non_null(ev);
        assert_string_equal(ev->topic, topic);
        if (strcmp(topic, NRM_TOPIC_STREAM_HEAD) == 0) {
            bus->heads++;
        } else {
            assert_int_equal(ev->seq, ++bus->last);
            ASSERT_SQL(1,
                       "SELECT count(*) FROM intake.outbox WHERE seq = %lld AND topic = '%s'"
                       " AND event_id = '%s'",
                       bus->last, topic, ev->event_id);
        }
        nrm__v1__event__free_unpacked(ev, NULL);
        free(topic);
        zmsg_destroy(&msg);
    }
    return bus->heads > 0 && bus->last >= bus->want &&
           nrm_publisher_head(bus->publisher) >= bus->want;
}

/* Drains both buses of an array. */
static bool s_drain_both(void *arg)
{
    s_bus_t *buses = arg;
    bool first = s_drain(&buses[0]);
    return s_drain(&buses[1]) && first;
}

static bool (*s_done)(void *arg); /* what s_run waits for, until s_deadline */
static int64_t s_deadline;
static bool s_met;

static int s_check(zloop_t *loop, int timer_id, void *arg)
{
    s_met = s_done(arg);
    return s_met || nrm_mono_ms() >= s_deadline ? -1 : 0;
}

/* Runs loop until done(arg) or timeout_ms pass. Returns whether done. */
static bool s_run(zloop_t *loop, bool (*done)(void *arg), void *arg, int timeout_ms)
{
    s_done = done;
    s_deadline = nrm_mono_ms() + timeout_ms;
    s_met = false;
    int id = zloop_timer(loop, TICK_MS, 0, s_check, arg);
    zloop_start(loop);
    zloop_timer_end(loop, id);
    return s_met;
}

/* --- migrations and nrm_db ----------------------------------------------------------------- */

static void test_concurrent_migrations_apply_each_migration_once(void **state)
{
    /* hold the migration lock so that both processes are waiting before either starts */
    PQclear(harness_sql(h, "BEGIN"));
    PQclear(harness_sql(h, "SELECT pg_advisory_xact_lock(hashtext('nrm.migrate.intake'))"));
    pid_t pids[2];
    for (int i = 0; i < 2; i++) {
        fflush(NULL);
        pids[i] = fork();
        assert_true(pids[i] >= 0);
        if (pids[i] == 0) {
            nrm_db_t *db = nrm_db_new(s_conninfo, SCHEMA);
            nrm_error_t err;
            nrm_status_t st = nrm_migrate(db, bus_migrations, bus_migrations_count, &err);
            nrm_db_destroy(&db);
            _exit(st == NRM_OK ? 0 : 1);
        }
    }
    assert_int_equal(
        harness_wait_sql(h, "SELECT count(*) " ADVISORY_LOCKS " AND NOT granted", 2, WAIT_MS), 2);
    PQclear(harness_sql(h, "COMMIT"));
    for (int i = 0; i < 2; i++) {
        int status = 0;
        assert_int_equal(waitpid(pids[i], &status, 0), pids[i]);
        assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    }
    /* and twice more on one handle: nothing left to do */
    nrm_db_t *db = nrm_db_new(s_conninfo, SCHEMA);
    nrm_error_t err;
    assert_int_equal(nrm_migrate(db, bus_migrations, bus_migrations_count, &err), NRM_OK);
    assert_int_equal(nrm_migrate(db, bus_migrations, bus_migrations_count, &err), NRM_OK);
    for (size_t i = 0; i < bus_migrations_count; i++)
        ASSERT_SQL(1, "SELECT count(*) FROM intake.schema_migrations WHERE name = '%s'",
                   bus_migrations[i].name);
    ASSERT_SQL((long long)bus_migrations_count, "SELECT count(*) FROM intake.schema_migrations");
    ASSERT_SQL(1, "SELECT count(*) FROM intake.stream_head");
    nrm_db_destroy(&db);
}

/* Rows set aside before bus migration 008 named the service (both of its consumers of intake's
 * stream shared it): the upgrade names each by its consumer's checkpoint, the directory's for a
 * directory event, so that RetryQuarantined finds the consumer that failed. */
static void test_upgrade_names_each_quarantined_event_by_its_consumer(void **state)
{
    const char *m008 = NULL;
    for (size_t i = 0; i < bus_migrations_count && !m008; i++)
        if (strstr(bus_migrations[i].name, "008_quarantine_per_consumer"))
            m008 = bus_migrations[i].name;
    assert_non_null(m008);
    nrm_db_t *db = s_db();
    /* back to the layout before 008, with a case event and a directory event set aside */
    PQclear(harness_sql(h, "ALTER TABLE intake.consumer_quarantine DROP CONSTRAINT"
                           " consumer_quarantine_consumer_stream_seq_key"));
    PQclear(harness_sql(h, "ALTER TABLE intake.consumer_quarantine ADD UNIQUE (stream, seq)"));
    PQclear(harness_sql(h, "INSERT INTO intake.consumer_quarantine (consumer, stream, seq, topic,"
                           " event_id, attempts, last_error, payload) VALUES"
                           " ('routing', 'intake', 7, 'case.opened', 'e7', 3, 'INTERNAL', ''),"
                           " ('routing', 'intake', 8, 'directory.agency', 'e8', 3, 'INTERNAL', ''),"
                           " ('routing', 'shelter', 8, 'shelter.bed_allocated', 'e9', 3,"
                           " 'INTERNAL', '')"));
    ASSERT_SQL(1,
               "WITH d AS (DELETE FROM intake.schema_migrations WHERE name = '%s'"
               " RETURNING 1) SELECT count(*) FROM d",
               m008);

    nrm_error_t err;
    assert_int_equal(nrm_migrate(db, bus_migrations, bus_migrations_count, &err), NRM_OK);
    ASSERT_SQL(1, "SELECT count(*) FROM intake.consumer_quarantine WHERE seq = 7"
                  " AND consumer = 'intake'");
    ASSERT_SQL(1, "SELECT count(*) FROM intake.consumer_quarantine WHERE seq = 8"
                  " AND stream = 'intake' AND consumer = 'intake/directory'");
    ASSERT_SQL(1, "SELECT count(*) FROM intake.consumer_quarantine WHERE stream = 'shelter'"
                  " AND consumer = 'shelter'");
    /* each consumer keeps its own row of one event */
    PQclear(harness_sql(h, "INSERT INTO intake.consumer_quarantine (consumer, stream, seq, topic,"
                           " event_id, attempts, last_error, payload) VALUES ('intake', 'intake',"
                           " 8, 'directory.agency', 'e8', 3, 'INTERNAL', '')"));
    ASSERT_SQL(2, "SELECT count(*) FROM intake.consumer_quarantine WHERE stream = 'intake'"
                  " AND seq = 8");
    PQclear(harness_sql(h, "DELETE FROM intake.consumer_quarantine"));
    nrm_db_destroy(&db);
}

static void test_db_reconnects_but_never_commits_a_lost_transaction(void **state)
{
    nrm_db_t *db = s_db();
    nrm_error_t err;
    nrm_params_t p = {0};
    nrm_params_text(&p, "tx-lost");
    assert_int_equal(nrm_db_begin(db, &err), NRM_OK);
    assert_int_equal(nrm_db_exec(db, "thing", &p, NULL, &err), NRM_OK);
    long long pid = s_pid(db);
    zclock_sleep(BACKOFF_MS);
    s_terminate(pid);
    PGresult *res = NULL;
    assert_int_equal(nrm_db_exec(db, "pid", NULL, &res, &err), NRM_UNAVAILABLE);
    assert_null(res);
    assert_string_equal(err.message, "database unavailable");
    assert_false(nrm_db_connected(db));
    /* the next call connects again and prepares the named statement on the new connection */
    assert_true(s_pid(db) != pid);
    assert_true(nrm_db_connected(db));
    /* the transaction went with the old connection: committing now must not report success */
    assert_int_equal(nrm_db_commit(db, &err), NRM_UNAVAILABLE);
    ASSERT_SQL(0, "SELECT count(*) FROM intake.things WHERE id = 'tx-lost'");
    nrm_db_destroy(&db);
}

static void test_db_errors_map_to_statuses_without_database_text(void **state)
{
    static const char *const leaks[] = {"Zainab",   "duplicate", "things_pkey", "Key",
                                        "relation", "syntax",    "SELEC",       "nowhere"};
    nrm_db_t *db = s_db();
    nrm_params_t p = {0};
    nrm_params_text(&p, "Zainab Secret-Value");
    nrm_error_t err;
    nrm_status_t got[4];
    assert_int_equal(nrm_db_exec(db, "thing", &p, NULL, &err), NRM_OK);
    nrm_db_statement(db, "broken", "SELECT * FROM nowhere");
    for (int i = 0; i < 4; i++) {
        got[i] = i == 0   ? nrm_db_exec(db, "thing", &p, NULL, &err)
                 : i == 1 ? nrm_db_exec(db, "broken", NULL, NULL, &err)
                 : i == 2 ? nrm_db_sql(db, "SELEC 1", &err)
                          : nrm_db_exec(db, "unregistered", NULL, NULL, &err);
        assert_string_equal(err.field, "");
        for (size_t k = 0; k < sizeof leaks / sizeof *leaks; k++)
            assert_null(strstr(err.message, leaks[k]));
    }
    assert_int_equal(got[0], NRM_CONFLICT);
    assert_int_equal(got[1], NRM_INTERNAL);
    assert_int_equal(got[2], NRM_INTERNAL);
    assert_int_equal(got[3], NRM_INTERNAL);
    nrm_db_destroy(&db);
}

static void test_db_commit_of_an_aborted_transaction_fails(void **state)
{
    nrm_db_t *db = s_db();
    nrm_error_t err;
    nrm_params_t p = {0};
    nrm_params_text(&p, "tx-aborted");
    assert_int_equal(nrm_db_begin(db, &err), NRM_OK);
    assert_int_equal(nrm_db_exec(db, "thing", &p, NULL, &err), NRM_OK);
    assert_int_equal(nrm_db_exec(db, "thing", &p, NULL, &err), NRM_CONFLICT);
    assert_int_not_equal(nrm_db_commit(db, &err), NRM_OK);
    nrm_db_rollback(db);
    ASSERT_SQL(0, "SELECT count(*) FROM intake.things WHERE id = 'tx-aborted'");
    nrm_db_destroy(&db);
}

/* The state of db's backend as the server sees it ('idle', 'idle in transaction', ...). */
static void s_assert_backend_state(long long pid, const char *state)
{
    char sql[256];
    snprintf(sql, sizeof sql,
             "SELECT count(*) FROM pg_stat_activity WHERE pid = %lld AND state = '%s'", pid, state);
    assert_int_equal(harness_sql_int(h, sql), 1);
}

static void test_db_begin_costs_no_round_trip_of_its_own(void **state)
{
    nrm_db_t *db = s_db();
    long long pid = s_pid(db);
    nrm_error_t err;
    nrm_params_t p = {0};
    nrm_params_text(&p, "tx-deferred");
    assert_int_equal(nrm_db_begin(db, &err), NRM_OK);
    s_assert_backend_state(pid, "idle"); /* BEGIN waits for the first statement */
    assert_int_equal(nrm_db_exec(db, "thing", &p, NULL, &err), NRM_OK);
    s_assert_backend_state(pid, "idle in transaction"); /* it went with it */
    ASSERT_SQL(0, "SELECT count(*) FROM intake.things WHERE id = 'tx-deferred'");
    assert_int_equal(nrm_db_commit(db, &err), NRM_OK);
    ASSERT_SQL(1, "SELECT count(*) FROM intake.things WHERE id = 'tx-deferred'");
    /* a transaction in which nothing ran commits without sending anything */
    assert_int_equal(nrm_db_begin(db, &err), NRM_OK);
    assert_int_equal(nrm_db_commit(db, &err), NRM_OK);
    s_assert_backend_state(pid, "idle");
    nrm_db_destroy(&db);
}

static void test_db_exec_commit_commits_with_its_statement_or_not_at_all(void **state)
{
    nrm_db_t *db = s_db();
    long long pid = s_pid(db);
    nrm_error_t err;
    nrm_params_t a = {0}, b = {0};
    nrm_params_text(&a, "ec-a");
    nrm_params_text(&b, "ec-b");
    assert_int_equal(nrm_db_begin(db, &err), NRM_OK);
    assert_int_equal(nrm_db_exec(db, "thing", &a, NULL, &err), NRM_OK);
    assert_int_equal(nrm_db_exec_commit(db, "thing", &b, &err), NRM_OK);
    s_assert_backend_state(pid, "idle");
    ASSERT_SQL(2, "SELECT count(*) FROM intake.things WHERE id IN ('ec-a', 'ec-b')");
    /* BEGIN, the statement and COMMIT in one pipeline */
    nrm_params_t c = {0};
    nrm_params_text(&c, "ec-c");
    assert_int_equal(nrm_db_begin(db, &err), NRM_OK);
    assert_int_equal(nrm_db_exec_commit(db, "thing", &c, &err), NRM_OK);
    ASSERT_SQL(1, "SELECT count(*) FROM intake.things WHERE id = 'ec-c'");
    /* the statement fails: nothing of the transaction stays, and the handle works on */
    nrm_params_t d = {0};
    nrm_params_text(&d, "ec-d");
    assert_int_equal(nrm_db_begin(db, &err), NRM_OK);
    assert_int_equal(nrm_db_exec(db, "thing", &d, NULL, &err), NRM_OK);
    assert_int_equal(nrm_db_exec_commit(db, "thing", &a, &err), NRM_CONFLICT);
    nrm_db_rollback(db);
    s_assert_backend_state(pid, "idle");
    ASSERT_SQL(0, "SELECT count(*) FROM intake.things WHERE id = 'ec-d'");
    /* an aborted transaction is not committed by the pipeline either */
    nrm_params_t e = {0};
    nrm_params_text(&e, "ec-e");
    assert_int_equal(nrm_db_begin(db, &err), NRM_OK);
    assert_int_equal(nrm_db_exec(db, "thing", &a, NULL, &err), NRM_CONFLICT);
    assert_int_not_equal(nrm_db_exec_commit(db, "thing", &e, &err), NRM_OK);
    nrm_db_rollback(db);
    ASSERT_SQL(0, "SELECT count(*) FROM intake.things WHERE id = 'ec-e'");
    assert_int_equal(s_pid(db), pid); /* the same connection throughout */
    nrm_db_destroy(&db);
}

/* A count made in a transaction reaches its counter when the transaction commits, and never
 * when it rolls back, fails to commit, or loses the part (savepoint) that made it. */
static void test_db_counts_only_what_commits(void **state)
{
    nrm_db_t *db = s_db();
    nrm_error_t err;
    int64_t counter = 0;
    nrm_params_t p = {0};
    nrm_params_text(&p, "count-1");
    nrm_db_count_on_commit(db, &counter, 1); /* outside a transaction: at once */
    assert_int_equal(counter, 1);
    assert_int_equal(nrm_db_begin(db, &err), NRM_OK);
    nrm_db_count_on_commit(db, &counter, 2);
    assert_int_equal(nrm_db_exec(db, "thing", &p, NULL, &err), NRM_OK);
    nrm_db_count_on_commit(db, &counter, 3);
    assert_int_equal(counter, 1); /* not before the commit */
    assert_int_equal(nrm_db_commit(db, &err), NRM_OK);
    assert_int_equal(counter, 6);
    /* rolled back */
    assert_int_equal(nrm_db_begin(db, &err), NRM_OK);
    nrm_db_count_on_commit(db, &counter, 10);
    nrm_db_rollback(db);
    assert_int_equal(counter, 6);
    /* a commit that fails (its statement collides): nothing counted, nor by the next commit */
    assert_int_equal(nrm_db_begin(db, &err), NRM_OK);
    nrm_db_count_on_commit(db, &counter, 100);
    assert_int_equal(nrm_db_exec_commit(db, "thing", &p, &err), NRM_CONFLICT);
    nrm_db_rollback(db);
    assert_int_equal(nrm_db_begin(db, &err), NRM_OK);
    assert_int_equal(nrm_db_commit(db, &err), NRM_OK);
    assert_int_equal(counter, 6);
    /* a part undone alone drops its own counts, not those made before it */
    nrm_params_t q = {0};
    nrm_params_text(&q, "count-2");
    assert_int_equal(nrm_db_begin(db, &err), NRM_OK);
    nrm_db_count_on_commit(db, &counter, 1000);
    assert_int_equal(nrm_db_defer(db, "SAVEPOINT request", &err), NRM_OK);
    size_t mark = nrm_db_counts_mark(db);
    nrm_db_count_on_commit(db, &counter, 20000);
    nrm_db_counts_undo(db, mark);
    assert_int_equal(nrm_db_sql(db, "ROLLBACK TO SAVEPOINT request", &err), NRM_OK);
    nrm_db_count_on_commit(db, &counter, 300000);
    assert_int_equal(nrm_db_exec_commit(db, "thing", &q, &err), NRM_OK);
    assert_int_equal(counter, 301006);
    nrm_db_destroy(&db);
}

/* What the end callbacks were told, in order: 'c' (committed) or 'r' (not), then the tag. */
static struct {
    char seen[32];
    size_t n;
} s_ends;

/* nrm_db_end_fn: records how the transaction ended for the call tagged arg (one character). */
static void s_on_end(void *arg, bool committed)
{
    if (s_ends.n + 2 < sizeof s_ends.seen) {
        s_ends.seen[s_ends.n++] = committed ? 'c' : 'r';
        s_ends.seen[s_ends.n++] = *(const char *)arg;
    }
}

/* Work left for a transaction's end is told once how it ended, in the order it was left:
 * committed, rolled back, failed to commit, undone with its part, left for the next begin, or
 * lost with the handle; outside a transaction at once, as not committed. */
static void test_db_end_callbacks_learn_how_the_transaction_ended(void **state)
{
    nrm_db_t *db = s_db();
    nrm_error_t err;
    memset(&s_ends, 0, sizeof s_ends);
    nrm_params_t p = {0}, q = {0};
    nrm_params_text(&p, "end-1");
    nrm_params_text(&q, "end-2");
    nrm_db_on_end(db, s_on_end, "a"); /* outside a transaction */
    assert_string_equal(s_ends.seen, "ra");
    assert_int_equal(nrm_db_begin(db, &err), NRM_OK);
    nrm_db_on_end(db, s_on_end, "b");
    assert_int_equal(nrm_db_exec(db, "thing", &p, NULL, &err), NRM_OK);
    nrm_db_on_end(db, s_on_end, "c");
    assert_string_equal(s_ends.seen, "ra"); /* not before the end */
    assert_int_equal(nrm_db_commit(db, &err), NRM_OK);
    assert_string_equal(s_ends.seen, "racbcc");
    assert_int_equal(nrm_db_begin(db, &err), NRM_OK); /* rolled back */
    nrm_db_on_end(db, s_on_end, "d");
    nrm_db_rollback(db);
    assert_string_equal(s_ends.seen, "racbccrd");
    assert_int_equal(nrm_db_begin(db, &err), NRM_OK); /* its commit fails: a collision */
    nrm_db_on_end(db, s_on_end, "e");
    assert_int_equal(nrm_db_exec_commit(db, "thing", &p, &err), NRM_CONFLICT);
    assert_string_equal(s_ends.seen, "racbccrdre");
    nrm_db_rollback(db);
    /* a part undone alone: its own, not what came before it */
    assert_int_equal(nrm_db_begin(db, &err), NRM_OK);
    nrm_db_on_end(db, s_on_end, "f");
    assert_int_equal(nrm_db_defer(db, "SAVEPOINT request", &err), NRM_OK);
    size_t mark = nrm_db_counts_mark(db);
    nrm_db_on_end(db, s_on_end, "g");
    nrm_db_counts_undo(db, mark);
    assert_string_equal(s_ends.seen, "racbccrdrerg");
    assert_int_equal(nrm_db_sql(db, "ROLLBACK TO SAVEPOINT request", &err), NRM_OK);
    assert_int_equal(nrm_db_exec_commit(db, "thing", &q, &err), NRM_OK);
    assert_string_equal(s_ends.seen, "racbccrdrergcf");
    memset(&s_ends, 0, sizeof s_ends);
    assert_int_equal(nrm_db_begin(db, &err), NRM_OK); /* never ended: the next begin ends it */
    nrm_db_on_end(db, s_on_end, "h");
    assert_int_equal(nrm_db_begin(db, &err), NRM_OK);
    assert_string_equal(s_ends.seen, "rh");
    nrm_db_on_end(db, s_on_end, "i"); /* lost with the handle */
    nrm_db_destroy(&db);
    assert_string_equal(s_ends.seen, "rhri");
    ASSERT_SQL(2, "SELECT count(*) FROM intake.things WHERE id IN ('end-1', 'end-2')");
}

static void test_db_deferred_savepoint_undoes_only_what_follows_it(void **state)
{
    nrm_db_t *db = s_db();
    nrm_error_t err;
    nrm_params_t kept = {0}, undone = {0};
    nrm_params_text(&kept, "sp-kept");
    nrm_params_text(&undone, "sp-undone");
    assert_int_equal(nrm_db_begin(db, &err), NRM_OK);
    assert_int_equal(nrm_db_exec(db, "thing", &kept, NULL, &err), NRM_OK);
    assert_int_equal(nrm_db_defer(db, "SAVEPOINT request", &err), NRM_OK);
    assert_int_equal(nrm_db_exec(db, "thing", &undone, NULL, &err), NRM_OK);
    assert_int_equal(nrm_db_sql(db, "ROLLBACK TO SAVEPOINT request", &err), NRM_OK);
    /* a savepoint deferred and undone before any statement ran after it */
    assert_int_equal(nrm_db_defer(db, "SAVEPOINT request", &err), NRM_OK);
    assert_int_equal(nrm_db_sql(db, "ROLLBACK TO SAVEPOINT request", &err), NRM_OK);
    assert_int_equal(nrm_db_commit(db, &err), NRM_OK);
    ASSERT_SQL(1, "SELECT count(*) FROM intake.things WHERE id = 'sp-kept'");
    ASSERT_SQL(0, "SELECT count(*) FROM intake.things WHERE id = 'sp-undone'");
    nrm_db_destroy(&db);
}

static void test_db_statement_after_a_deferred_savepoint_of_a_lost_transaction_fails(void **state)
{
    nrm_db_t *db = s_db();
    nrm_error_t err;
    nrm_params_t p = {0}, q = {0};
    nrm_params_text(&p, "sp-lost-1");
    nrm_params_text(&q, "sp-lost-2");
    assert_int_equal(nrm_db_begin(db, &err), NRM_OK);
    assert_int_equal(nrm_db_exec(db, "thing", &p, NULL, &err), NRM_OK);
    long long pid = s_pid(db);
    assert_int_equal(nrm_db_defer(db, "SAVEPOINT request", &err), NRM_OK);
    zclock_sleep(BACKOFF_MS);
    s_terminate(pid);
    /* the savepoint and the statement after it find the connection gone: they fail, and
     * nothing of the transaction is committed */
    nrm_status_t first = nrm_db_exec(db, "thing", &q, NULL, &err);
    if (first == NRM_OK) /* the loss was not seen yet by the call: the next one sees it */
        first = nrm_db_exec(db, "thing", &q, NULL, &err);
    assert_int_equal(first, NRM_UNAVAILABLE);
    assert_int_equal(nrm_db_commit(db, &err), NRM_UNAVAILABLE);
    ASSERT_SQL(0, "SELECT count(*) FROM intake.things WHERE id IN ('sp-lost-1', 'sp-lost-2')");
    nrm_db_destroy(&db);
}

/* A statement whose result nobody reads waits for the next call: it costs no round trip of its
 * own, its parameters are its own copy, and the next statement sees what it wrote. */
static void test_db_later_statement_goes_with_the_next_call(void **state)
{
    nrm_db_t *db = s_db();
    long long pid = s_pid(db);
    nrm_error_t err;
    char id[32];
    snprintf(id, sizeof id, "later-1");
    nrm_params_t p = {0};
    nrm_params_text(&p, id);
    assert_int_equal(nrm_db_begin(db, &err), NRM_OK);
    assert_int_equal(nrm_db_exec_later(db, "thing", &p, &err), NRM_OK);
    snprintf(id, sizeof id, "overwritten");             /* the caller's buffer is free */
    s_assert_backend_state(pid, "idle");                /* neither BEGIN nor it was sent */
    assert_int_equal(s_pid(db), pid);                   /* BEGIN, it and this one */
    s_assert_backend_state(pid, "idle in transaction"); /* went together */
    nrm_params_t q = {0};
    nrm_params_text(&q, "later-2");
    assert_int_equal(nrm_db_exec_later(db, "thing", &q, &err), NRM_OK);
    assert_int_equal(nrm_db_commit(db, &err), NRM_OK); /* the commit carries the second */
    s_assert_backend_state(pid, "idle");
    ASSERT_SQL(2, "SELECT count(*) FROM intake.things WHERE id IN ('later-1', 'later-2')");
    ASSERT_SQL(0, "SELECT count(*) FROM intake.things WHERE id = 'overwritten'");
    /* a transaction of later statements alone: BEGIN, them and COMMIT in one pipeline */
    nrm_params_t r = {0};
    nrm_params_text(&r, "later-3");
    assert_int_equal(nrm_db_begin(db, &err), NRM_OK);
    assert_int_equal(nrm_db_exec_later(db, "thing", &r, &err), NRM_OK);
    assert_int_equal(nrm_db_commit(db, &err), NRM_OK);
    ASSERT_SQL(1, "SELECT count(*) FROM intake.things WHERE id = 'later-3'");
    nrm_db_destroy(&db);
}

/* A later statement that fails fails the call that sends it, named after it; nothing of the
 * transaction is committed, and a rollback drops what was not sent. */
static void test_db_later_statement_that_fails_fails_the_next_call(void **state)
{
    nrm_db_t *db = s_db();
    nrm_error_t err;
    nrm_params_t dup = {0}, after = {0}, dropped = {0};
    nrm_params_text(&dup, "later-1"); /* committed by the test before */
    nrm_params_text(&after, "later-after");
    nrm_params_text(&dropped, "later-dropped");
    assert_int_equal(nrm_db_begin(db, &err), NRM_OK);
    assert_int_equal(nrm_db_exec_later(db, "thing", &after, &err), NRM_OK);
    assert_int_equal(nrm_db_exec_later(db, "thing", &dup, &err), NRM_OK);
    assert_int_equal(nrm_db_exec(db, "pid", NULL, NULL, &err), NRM_CONFLICT);
    nrm_db_rollback(db);
    ASSERT_SQL(0, "SELECT count(*) FROM intake.things WHERE id = 'later-after'");
    /* at the commit: the commit fails and nothing stays */
    assert_int_equal(nrm_db_begin(db, &err), NRM_OK);
    assert_int_equal(nrm_db_exec_later(db, "thing", &after, &err), NRM_OK);
    assert_int_equal(nrm_db_exec_later(db, "thing", &dup, &err), NRM_OK);
    assert_int_not_equal(nrm_db_commit(db, &err), NRM_OK);
    nrm_db_rollback(db);
    ASSERT_SQL(0, "SELECT count(*) FROM intake.things WHERE id = 'later-after'");
    /* a request's later statement fails where its savepoint is undone: the undo still runs,
     * and what was written before the savepoint is kept */
    nrm_params_t kept = {0};
    nrm_params_text(&kept, "later-kept");
    assert_int_equal(nrm_db_begin(db, &err), NRM_OK);
    assert_int_equal(nrm_db_exec(db, "thing", &kept, NULL, &err), NRM_OK);
    assert_int_equal(nrm_db_defer(db, "SAVEPOINT request", &err), NRM_OK);
    assert_int_equal(nrm_db_exec_later(db, "thing", &dup, &err), NRM_OK);
    assert_int_equal(nrm_db_sql(db, "ROLLBACK TO SAVEPOINT request", &err), NRM_OK);
    assert_int_equal(nrm_db_commit(db, &err), NRM_OK);
    ASSERT_SQL(1, "SELECT count(*) FROM intake.things WHERE id = 'later-kept'");
    /* rolled back before anything sent it */
    assert_int_equal(nrm_db_begin(db, &err), NRM_OK);
    assert_int_equal(nrm_db_exec_later(db, "thing", &dropped, &err), NRM_OK);
    nrm_db_rollback(db);
    assert_int_equal(nrm_db_begin(db, &err), NRM_OK);
    assert_int_equal(nrm_db_exec(db, "pid", NULL, NULL, &err), NRM_OK);
    assert_int_equal(nrm_db_commit(db, &err), NRM_OK);
    ASSERT_SQL(0, "SELECT count(*) FROM intake.things WHERE id = 'later-dropped'");
    nrm_db_destroy(&db);
}

/* --- sequencing and publication ------------------------------------------------------------ */

static void test_late_commit_gets_the_next_seq_and_is_not_skipped(void **state)
{
    nrm_db_t *a = s_db(), *b = s_db();
    long long base = harness_sql_intf(h, "SELECT head FROM intake.stream_head");
    nrm_error_t err;
    /* A writes first (the lower id) but commits after B */
    assert_int_equal(nrm_db_begin(a, &err), NRM_OK);
    assert_int_equal(s_emit(a, "ooo-case-A", false), NRM_OK);
    assert_true(s_pid(a) > 0); /* the insert goes with A's next statement: now */
    assert_int_equal(nrm_db_begin(b, &err), NRM_OK);
    assert_int_equal(s_emit(b, "ooo-case-B", true), NRM_OK);
    assert_int_equal(nrm_db_commit(b, &err), NRM_OK);
    zloop_t *loop = zloop_new();
    s_bus_t bus;
    s_bus_new(&bus, "inproc://common-bus-ooo", loop, base);
    assert_true(nrm_publisher_is_sequencer(bus.publisher));
    bus.want = base + 1;
    assert_true(s_run(loop, s_drain, &bus, WAIT_MS));
    assert_int_equal(s_seq_of("ooo-case-B"), base + 1);
    assert_int_equal(s_seq_of("ooo-case-A"), -1); /* not committed: invisible */
    assert_int_equal(nrm_db_commit(a, &err), NRM_OK);
    assert_int_equal(s_seq_of("ooo-case-A"), 0); /* committed, not yet numbered */
    bus.want = base + 2;
    assert_true(s_run(loop, s_drain, &bus, WAIT_MS));
    assert_int_equal(s_seq_of("ooo-case-A"), base + 2);
    ASSERT_SQL(1, "SELECT (a.id < b.id)::int FROM intake.outbox a, intake.outbox b WHERE"
                  " position('ooo-case-A'::bytea in a.payload) > 0 AND"
                  " position('ooo-case-B'::bytea in b.payload) > 0");
    /* a reader that had B resumes after it and finds A */
    ASSERT_SQL(1, "SELECT count(*) FROM intake.outbox WHERE seq > %lld", base + 1);
    ASSERT_SQL(base + 2,
               "SELECT seq FROM intake.outbox WHERE seq > %lld AND"
               " position('ooo-case-A'::bytea in payload) > 0",
               base + 1);
    assert_int_equal(s_assert_dense(), base + 2);
    s_bus_destroy(&bus);
    zloop_destroy(&loop);
    nrm_db_destroy(&a);
    nrm_db_destroy(&b);
}

/* The times A's and B's events were first seen numbered (ms, monotonic; 0: not yet). */
typedef struct {
    s_bus_t *bus;
    int64_t a_at, b_at;
} s_held_t;

static bool s_held_numbered(void *arg)
{
    s_held_t *w = arg;
    zmsg_t *msg;
    while ((msg = zmsg_recv(w->bus->sub))) /* what the SUB got is not looked at here */
        zmsg_destroy(&msg);
    if (!w->a_at && s_seq_of("held-case-A") > 0)
        w->a_at = nrm_mono_ms();
    if (!w->b_at && s_seq_of("held-case-B") > 0)
        w->b_at = nrm_mono_ms();
    return w->a_at && w->b_at;
}

/* A commit whose notification reaches the sequencer while its numbering statement runs (here:
 * waiting for the stream's head, locked by another session) is read by libpq with that
 * statement's result, and the socket does not tell of it again: the sequencer still numbers
 * it at once, not at its next poll (1 s). */
static void test_commit_announced_during_a_numbering_is_numbered_at_once(void **state)
{
    nrm_db_t *a = s_db();
    long long base = harness_sql_intf(h, "SELECT head FROM intake.stream_head");
    zloop_t *loop = zloop_new();
    s_bus_t bus;
    s_bus_new(&bus, "inproc://common-bus-held", loop, base);
    assert_true(nrm_publisher_is_sequencer(bus.publisher));
    fflush(NULL);
    pid_t child = fork();
    assert_true(child >= 0);
    if (child == 0) { /* holds the head 600 ms, commits B's event 300 ms into it */
        PGconn *lock = PQconnectdb(s_conninfo);
        PQclear(PQexec(lock, "BEGIN"));
        PQclear(PQexec(lock, "SELECT head FROM intake.stream_head FOR UPDATE"));
        usleep(300 * 1000);
        nrm_db_t *b = s_db();
        nrm_error_t err;
        bool ok = nrm_db_begin(b, &err) == NRM_OK && s_emit(b, "held-case-B", false) == NRM_OK &&
                  nrm_db_commit(b, &err) == NRM_OK;
        usleep(300 * 1000);
        PQclear(PQexec(lock, "COMMIT"));
        PQfinish(lock);
        nrm_db_destroy(&b);
        _exit(ok ? 0 : 1);
    }
    assert_int_equal(harness_wait_sql(h,
                                      "SELECT count(*) FROM pg_locks l JOIN pg_class c ON"
                                      " c.oid = l.relation WHERE c.relname = 'stream_head'"
                                      " AND l.mode = 'RowShareLock' AND l.granted",
                                      1, WAIT_MS),
                     1);
    nrm_error_t err;
    assert_int_equal(nrm_db_begin(a, &err), NRM_OK);
    assert_int_equal(s_emit(a, "held-case-A", false), NRM_OK);
    assert_int_equal(nrm_db_commit(a, &err), NRM_OK); /* the sequencer waits on the head */
    s_held_t w = {&bus, 0, 0};
    assert_true(s_run(loop, s_held_numbered, &w, WAIT_MS));
    int status = 0;
    assert_int_equal(waitpid(child, &status, 0), child);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    assert_int_equal(s_seq_of("held-case-A"), base + 1);
    assert_int_equal(s_seq_of("held-case-B"), base + 2);
    printf("common_bus: B numbered %lld ms after A\n", (long long)(w.b_at - w.a_at));
    assert_true(w.b_at - w.a_at < 200); /* the next poll would come about 300 ms after A */
    s_bus_destroy(&bus);
    zloop_destroy(&loop);
    nrm_db_destroy(&a);
}

/* nrm_tx_emit_many: several events in one statement, in their order, each stored as
 * nrm_tx_emit stores it (topic, stream, a fresh event id), numbered densely by the publisher. */
static void test_emit_many_appends_events_in_order_in_one_statement(void **state)
{
    nrm_db_t *db = s_db();
    long long base = harness_sql_intf(h, "SELECT head FROM intake.stream_head");
    nrm_error_t err;
    nrm_tx_t tx = {db, "intake", "", nrm_now_ms(), &err, 0};
    Nrm__V1__CaseClosed closed = NRM__V1__CASE_CLOSED__INIT;
    Nrm__V1__ConsentWithdrawn gone = NRM__V1__CONSENT_WITHDRAWN__INIT;
    Nrm__V1__Event evs[3];
    Nrm__V1__Event *ptrs[3];
    const char *cases[] = {"many-case-1", "many-case-2", "many-case-3"};
    for (int i = 0; i < 3; i++) {
        evs[i] = (Nrm__V1__Event)NRM__V1__EVENT__INIT;
        evs[i].case_id = (char *)cases[i];
        if (i == 1) {
            evs[i].body_case = NRM__V1__EVENT__BODY_CONSENT_WITHDRAWN;
            evs[i].consent_withdrawn = &gone;
        } else {
            evs[i].body_case = NRM__V1__EVENT__BODY_CASE_CLOSED;
            evs[i].case_closed = &closed;
        }
        ptrs[i] = &evs[i];
    }
    assert_int_equal(nrm_db_begin(db, &err), NRM_OK);
    assert_int_equal(nrm_tx_emit_many(&tx, ptrs, 0), NRM_OK);
    assert_int_equal(nrm_tx_emit_many(&tx, ptrs, 3), NRM_OK);
    assert_int_equal(tx.emitted, 3);
    assert_int_equal(nrm_db_commit(db, &err), NRM_OK);
    ASSERT_SQL(1, "SELECT (a.id < b.id AND b.id < c.id)::int FROM intake.outbox a,"
                  " intake.outbox b, intake.outbox c WHERE"
                  " position('many-case-1'::bytea in a.payload) > 0 AND"
                  " position('many-case-2'::bytea in b.payload) > 0 AND"
                  " position('many-case-3'::bytea in c.payload) > 0");
    ASSERT_SQL(1, "SELECT count(*) FROM intake.outbox WHERE topic = 'case.consent_withdrawn'"
                  " AND position('many-case-2'::bytea in payload) > 0");
    ASSERT_SQL(2, "SELECT count(*) FROM intake.outbox WHERE topic = 'case.closed'"
                  " AND position('many-case-'::bytea in payload) > 0");
    ASSERT_SQL(3, "SELECT count(DISTINCT event_id) FROM intake.outbox"
                  " WHERE position('many-case-'::bytea in payload) > 0");
    /* the stored payload is the event, with its id, stream and topic filled in */
    PGconn *conn = PQconnectdb(s_conninfo);
    PGresult *res = PQexec(conn, "SELECT payload, event_id::text FROM intake.outbox WHERE"
                                 " position('many-case-3'::bytea in payload) > 0");
    assert_int_equal(PQntuples(res), 1);
    size_t len = 0;
    unsigned char *raw = PQunescapeBytea((const unsigned char *)PQgetvalue(res, 0, 0), &len);
    Nrm__V1__Event *stored = nrm_event_unpack(raw, len);
    assert_non_null(stored);
    assert_string_equal(stored->case_id, "many-case-3");
    assert_string_equal(stored->topic, "case.closed");
    assert_string_equal(stored->stream, "intake");
    assert_string_equal(stored->event_id, PQgetvalue(res, 0, 1));
    nrm__v1__event__free_unpacked(stored, NULL);
    PQfreemem(raw);
    PQclear(res);
    PQfinish(conn);
    zloop_t *loop = zloop_new();
    s_bus_t bus;
    s_bus_new(&bus, "inproc://common-bus-many", loop, base);
    bus.want = base + 3;
    assert_true(s_run(loop, s_drain, &bus, WAIT_MS));
    assert_int_equal(s_seq_of("many-case-1"), base + 1);
    assert_int_equal(s_seq_of("many-case-3"), base + 3);
    assert_int_equal(s_assert_dense(), base + 3);
    s_bus_destroy(&bus);
    zloop_destroy(&loop);
    nrm_db_destroy(&db);
}

/* A writer process: WRITES transactions of two events each, committed as fast as it can. */
static void s_writer(int index)
{
    nrm_db_t *db = nrm_db_new(s_conninfo, SCHEMA);
    nrm_error_t err;
    int failures = 0;
    for (int k = 0; k < WRITES; k++) {
        char a[32], b[32];
        snprintf(a, sizeof a, "race-%d-%d-a", index, k);
        snprintf(b, sizeof b, "race-%d-%d-b", index, k);
        bool ok = nrm_db_begin(db, &err) == NRM_OK && s_emit(db, a, false) == NRM_OK &&
                  s_emit(db, b, true) == NRM_OK && nrm_db_commit(db, &err) == NRM_OK;
        if (!ok) {
            nrm_db_rollback(db);
            failures++;
        }
        usleep((useconds_t)((index * 7 + k * 13) % 4) * 1000);
    }
    nrm_db_destroy(&db);
    _exit(failures == 0 ? 0 : 1);
}

static void test_two_publishers_keep_seqs_dense_under_writers_and_failover(void **state)
{
    long long base = harness_sql_intf(h, "SELECT head FROM intake.stream_head");
    zloop_t *loop = zloop_new();
    s_bus_t buses[2];
    s_bus_new(&buses[0], "inproc://common-bus-race-0", loop, base);
    s_bus_new(&buses[1], "inproc://common-bus-race-1", loop, base);
    assert_true(nrm_publisher_is_sequencer(buses[0].publisher));
    assert_false(nrm_publisher_is_sequencer(buses[1].publisher));
    assert_true(s_run(loop, s_drain_both, buses, WAIT_MS)); /* both SUBs are subscribed */
    pid_t writers[WRITERS];
    for (int i = 0; i < WRITERS; i++) {
        fflush(NULL);
        writers[i] = fork();
        assert_true(writers[i] >= 0);
        if (writers[i] == 0)
            s_writer(i);
    }
    long long total = base + WRITERS * WRITES * 2;
    buses[0].want = buses[1].want = total;
    assert_true(s_run(loop, s_drain_both, buses, 4 * WAIT_MS));
    for (int i = 0; i < WRITERS; i++) {
        int status = 0;
        assert_int_equal(waitpid(writers[i], &status, 0), writers[i]);
        assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    }
    assert_int_equal(s_assert_dense(), total);
    assert_true(nrm_publisher_is_sequencer(buses[0].publisher));
    assert_false(nrm_publisher_is_sequencer(buses[1].publisher));
    /* the sequencer's session ends while its periodic work is due: exactly one takes over */
    zclock_sleep(POLL_DUE_MS);
    s_terminate(harness_sql_intf(h, "SELECT pid " ADVISORY_LOCKS " AND granted"));
    nrm_db_t *db = s_db();
    nrm_error_t err;
    assert_int_equal(nrm_db_begin(db, &err), NRM_OK);
    assert_int_equal(s_emit(db, "failover-case", false), NRM_OK);
    assert_int_equal(nrm_db_commit(db, &err), NRM_OK);
    buses[0].want = buses[1].want = total + 1;
    assert_true(s_run(loop, s_drain_both, buses, 2 * WAIT_MS));
    assert_int_equal(nrm_publisher_is_sequencer(buses[0].publisher) +
                         nrm_publisher_is_sequencer(buses[1].publisher),
                     1);
    ASSERT_SQL(1, "SELECT count(*) " ADVISORY_LOCKS " AND granted");
    assert_int_equal(s_assert_dense(), total + 1);
    for (int i = 0; i < 2; i++)
        s_bus_destroy(&buses[i]);
    zloop_destroy(&loop);
    nrm_db_destroy(&db);
}

/* --- nrm_server ---------------------------------------------------------------------------- */

/* WRITE handler: records the request, emits case.opened and answers with a CaseRef. */
static nrm_status_t s_handle_submit(void *ctx, nrm_call_t *call)
{
    nrm_params_t p = {0};
    nrm_params_text(&p, call->request->request_id);
    nrm_status_t st = nrm_db_exec(call->tx.db, "thing", &p, NULL, call->tx.err);
    if (st == NRM_OK && ctx) /* ctx: a counter of things made */
        nrm_db_count_on_commit(call->tx.db, ctx, 1);
    Nrm__V1__CaseOpened opened = NRM__V1__CASE_OPENED__INIT;
    Nrm__V1__Event ev = NRM__V1__EVENT__INIT;
    ev.case_id = call->request->request_id;
    ev.body_case = NRM__V1__EVENT__BODY_CASE_OPENED;
    ev.case_opened = &opened;
    if (st == NRM_OK)
        st = nrm_tx_emit(&call->tx, &ev);
    Nrm__V1__CaseRef *ref = nrm_call_alloc(call, sizeof *ref);
    nrm__v1__case_ref__init(ref);
    ref->case_id = nrm_call_strdup(call, call->request->request_id);
    call->reply->result_case = NRM__V1__REPLY__RESULT_CASE_REF;
    call->reply->case_ref = ref;
    call->subject_id = ref->case_id;
    return st;
}

/* A handler that changes things like the one above, then refuses: nothing of it may remain. */
static nrm_status_t s_handle_close(void *ctx, nrm_call_t *call)
{
    assert_int_equal(s_handle_submit(ctx, call), NRM_OK);
    return nrm_fail(call->tx.err, NRM_INVALID_ARGUMENT, "close_case.reason",
                    "close_case.reason is required");
}

/* A packed Request of body CLOSE_CASE (close) or SUBMIT_REPORT. */
static zframe_t *s_request(const char *request_id, const char *agency, bool close)
{
    Nrm__V1__SubmitReport submit = NRM__V1__SUBMIT_REPORT__INIT;
    Nrm__V1__CloseCase close_case = NRM__V1__CLOSE_CASE__INIT;
    Nrm__V1__Request req = NRM__V1__REQUEST__INIT;
    req.request_id = (char *)request_id;
    req.agency_id = (char *)agency;
    req.body_case =
        close ? NRM__V1__REQUEST__BODY_CLOSE_CASE : NRM__V1__REQUEST__BODY_SUBMIT_REPORT;
    if (close)
        req.close_case = &close_case; /* a oneof: one member of a union */
    else
        req.submit_report = &submit;
    zframe_t *frame = zframe_new(NULL, nrm__v1__request__get_packed_size(&req));
    nrm__v1__request__pack(&req, zframe_data(frame));
    return frame;
}

/* Audit rows of request_id with this status, agency_id, error_field and subject_id. */
static long long s_audited(const char *request_id, const char *status, const char *agency,
                           const char *field, const char *subject)
{
    return harness_sql_intf(
        h,
        "SELECT count(*) FROM intake.audit_log WHERE request_id = '%s' AND status = '%s'"
        " AND agency_id = '%s' AND error_field = '%s' AND subject_id = '%s'",
        request_id, status, agency, field, subject);
}

static void test_server_group_commit_of_a_mixed_batch(void **state)
{
    char path[512], a[37], b[37], u[37], v[37], c[37];
    snprintf(path, sizeof path, "%s/server.json", harness_dir(h));
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs("{\"regions\": [{\"code\": \"MA-04\"}], \"agencies\": [{\"id\": \"police-ma-04\","
          " \"type\": \"POLICE\"}, {\"id\": \"ngo-ma-07\", \"type\": \"NGO\"}]}",
          f);
    assert_int_equal(fclose(f), 0);
    nrm_error_t err;
    nrm_config_t *config = nrm_config_load(path, &err);
    assert_non_null(config);
    nrm_db_t *db = s_db();
    nrm_server_t *server = nrm_server_new("intake", db, config, 64 * 1024);
    int64_t made = 0; /* things counted by the handlers: only those of requests that committed */
    nrm_server_handle(server, NRM__V1__REQUEST__BODY_SUBMIT_REPORT, NRM_HANDLER_WRITE,
                      s_handle_submit, &made);
    nrm_server_handle(server, NRM__V1__REQUEST__BODY_CLOSE_CASE, NRM_HANDLER_WRITE, s_handle_close,
                      &made);
    nrm_uuid_v4(a), nrm_uuid_v4(b), nrm_uuid_v4(u), nrm_uuid_v4(v), nrm_uuid_v4(c);
    /* A, B failing, A again, malformed, no UUID, unknown agency, unknown agency that is not even
     * text (it must not spoil the batch), then C */
    struct {
        zframe_t *frame;
        const char *id;
        nrm_status_t status;
        const char *field;
    } batch[BATCH] = {
        {s_request(a, "police-ma-04", false), a, NRM_OK, ""},
        {s_request(b, "ngo-ma-07", true), b, NRM_INVALID_ARGUMENT, "close_case.reason"},
        {s_request(a, "police-ma-04", false), a, NRM_OK, ""},
        {zframe_new("\xFF\xFF\xFF\xFF", 4), "", NRM_INVALID_ARGUMENT, ""},
        {s_request("not-a-uuid", "police-ma-04", false), "not-a-uuid", NRM_INVALID_ARGUMENT,
         "request_id"},
        {s_request(u, "no-such-agency", false), u, NRM_UNAUTHENTICATED, "agency_id"},
        {s_request(v, "\xFF\xFE agency", false), v, NRM_UNAUTHENTICATED, "agency_id"},
        {s_request(c, "ngo-ma-07", false), c, NRM_OK, ""}};
    zframe_t *requests[BATCH], *replies[BATCH] = {0};
    for (int i = 0; i < BATCH; i++)
        requests[i] = batch[i].frame;
    nrm_server_process(server, requests, NULL, BATCH, replies); /* plain: agency_id as sent */
    for (int i = 0; i < BATCH; i++) {
        Nrm__V1__Reply *reply =
            nrm__v1__reply__unpack(NULL, zframe_size(replies[i]), zframe_data(replies[i]));
        assert_non_null(reply);
        assert_int_equal(reply->status, batch[i].status);
        assert_string_equal(reply->error_field, batch[i].field);
        assert_string_equal(reply->request_id, batch[i].id);
        if (batch[i].status == NRM_OK)
            assert_string_equal(reply->case_ref->case_id, batch[i].id);
        nrm__v1__reply__free_unpacked(reply, NULL);
    }
    assert_true(zframe_eq(replies[0], replies[2])); /* the stored reply, byte for byte */
    assert_int_equal(made, 2);                      /* A and C; B's count went with its savepoint */
    assert_int_equal(nrm_server_requests(server), BATCH);
    assert_int_equal(nrm_server_failures(server), 5);
    /* the effects of A and C exist once, B's not at all */
    const char *effects[] = {a, b, c};
    const long long want[] = {1, 0, 1};
    for (int i = 0; i < 3; i++) {
        ASSERT_SQL(want[i], "SELECT count(*) FROM intake.things WHERE id = '%s'", effects[i]);
        ASSERT_SQL(want[i],
                   "SELECT count(*) FROM intake.outbox WHERE position('%s'::bytea in"
                   " payload) > 0",
                   effects[i]);
        ASSERT_SQL(want[i], "SELECT count(*) FROM intake.requests WHERE request_id = '%s'",
                   effects[i]);
    }
    /* one audit row per request with a UUID; an unknown sender's id is not stored */
    assert_int_equal(s_audited(a, "OK", "police-ma-04", "", a), 1);
    assert_int_equal(s_audited(b, "INVALID_ARGUMENT", "ngo-ma-07", "close_case.reason", ""), 1);
    assert_int_equal(s_audited(u, "UNAUTHENTICATED", "unlisted", "agency_id", ""), 1);
    assert_int_equal(s_audited(v, "UNAUTHENTICATED", "unlisted", "agency_id", ""), 1);
    assert_int_equal(s_audited(c, "OK", "ngo-ma-07", "", c), 1);
    ASSERT_SQL(5, "SELECT count(*) FROM intake.audit_log");
    /* a later repeat of A gets the stored reply bytes and changes nothing */
    zframe_t *again = s_request(a, "police-ma-04", false), *reply = NULL;
    nrm_server_process(server, &again, NULL, 1, &reply);
    assert_true(zframe_eq(reply, replies[0]));
    ASSERT_SQL(1, "SELECT count(*) FROM intake.things WHERE id = '%s'", a);
    zframe_destroy(&again);
    zframe_destroy(&reply);
    for (int i = 0; i < BATCH; i++) {
        zframe_destroy(&requests[i]);
        zframe_destroy(&replies[i]);
    }
    nrm_server_destroy(&server);
    nrm_db_destroy(&db);
    nrm_config_destroy(&config);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_concurrent_migrations_apply_each_migration_once),
        cmocka_unit_test(test_upgrade_names_each_quarantined_event_by_its_consumer),
        cmocka_unit_test(test_db_reconnects_but_never_commits_a_lost_transaction),
        cmocka_unit_test(test_db_errors_map_to_statuses_without_database_text),
        cmocka_unit_test(test_db_commit_of_an_aborted_transaction_fails),
        cmocka_unit_test(test_db_begin_costs_no_round_trip_of_its_own),
        cmocka_unit_test(test_db_exec_commit_commits_with_its_statement_or_not_at_all),
        cmocka_unit_test(test_db_counts_only_what_commits),
        cmocka_unit_test(test_db_end_callbacks_learn_how_the_transaction_ended),
        cmocka_unit_test(test_db_deferred_savepoint_undoes_only_what_follows_it),
        cmocka_unit_test(test_db_statement_after_a_deferred_savepoint_of_a_lost_transaction_fails),
        cmocka_unit_test(test_db_later_statement_goes_with_the_next_call),
        cmocka_unit_test(test_db_later_statement_that_fails_fails_the_next_call),
        cmocka_unit_test(test_late_commit_gets_the_next_seq_and_is_not_skipped),
        cmocka_unit_test(test_commit_announced_during_a_numbering_is_numbered_at_once),
        cmocka_unit_test(test_emit_many_appends_events_in_order_in_one_statement),
        cmocka_unit_test(test_two_publishers_keep_seqs_dense_under_writers_and_failover),
        cmocka_unit_test(test_server_group_commit_of_a_mixed_batch),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
