/* nrm_consumer's batches with nothing for the consumer, over a real intake (its PUB socket and
 * Fetch, CURVE on) and PostgreSQL: the consumer runs here on its own loop and connection,
 * applies case.consent_withdrawn (a row in skip_applied, with its transaction's id) and sees
 * case.closed as nothing for it. A trigger on its checkpoint row logs every transaction that
 * takes or moves the row (skip_moves), so that the transactions the consumer opens are counted
 * exactly. Such batches open no transaction; the next batch with work stores the skipped seqs
 * with its own; at rest the stored checkpoint reaches the head by itself; a restart reads the
 * unstored seqs again and doubles nothing; a checkpoint another instance moved meanwhile is not
 * taken for the seqs skipped. A batch with work writes its checkpoint row once, at its move (it
 * guesses the stored value instead of locking the row first); when another instance applied the
 * batch and moved the row meanwhile, the move fails and the batch is rolled back. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "harness.h"
#include "nrm_consumer.h"
#include "nrm_migrate.h"
#include "nrm_time.h"

#include <czmq.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NAME "consumer_skip"
#define SCHEMA "intake"
#define CHECKPOINT "skip-test"
#define WAIT_MS 10000
#define TICK_MS 5
#define IRRELEVANT 20      /* events that concern the consumer not, one batch each */
#define NEVER_MS 600000    /* a store delay the tests never reach */
#define SLOW_STORE_MS 1500 /* a store delay long enough to break the connection before it */
#define LOCK_WAIT "500ms"  /* how long the other instance waits for the checkpoint row */

#define ASSERT_SQL(want, ...) assert_int_equal(harness_sql_intf(h, __VA_ARGS__), (want))

static harness_t *h;
static char s_conninfo[512];
static const char *const s_prefixes[] = {"case.consent_withdrawn", NULL};

static int setup(void **state)
{
    h = harness_new(NAME);
    snprintf(s_conninfo, sizeof s_conninfo, "host=%s port=%s dbname=t_%s user=nrm_intake",
             getenv("NRM_TEST_PGHOST"), getenv("NRM_TEST_PGPORT"), NAME);
    if (harness_start(h, "intake", 0) != 0)
        return -1;
    nrm_db_t *db = nrm_db_new(s_conninfo, SCHEMA);
    nrm_error_t err;
    const char *ddl[] = {
        "CREATE TABLE IF NOT EXISTS skip_applied (seq bigint NOT NULL, xid bigint NOT NULL)",
        "CREATE TABLE IF NOT EXISTS skip_moves (seq bigint NOT NULL, xid bigint NOT NULL)",
        "CREATE OR REPLACE FUNCTION skip_moved() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN"
        " INSERT INTO intake.skip_moves (seq, xid) VALUES (NEW.seq, txid_current());"
        " RETURN NEW; END $$",
        "CREATE OR REPLACE TRIGGER skip_moved AFTER INSERT OR UPDATE ON checkpoints FOR EACH ROW"
        " WHEN (NEW.stream = '" CHECKPOINT "') EXECUTE FUNCTION skip_moved()",
    };
    int rc = 0;
    for (size_t i = 0; i < sizeof ddl / sizeof *ddl && rc == 0; i++)
        rc = nrm_db_sql(db, ddl[i], &err) == NRM_OK ? 0 : -1;
    nrm_db_destroy(&db);
    return rc;
}

static int teardown(void **state)
{
    harness_destroy(&h);
    return 0;
}

/* The stored checkpoint, and the transactions that took or moved its row so far. */
static long long s_stored(void)
{
    return harness_sql_intf(h, "SELECT coalesce(max(seq), -1) FROM intake.checkpoints"
                               " WHERE stream = '" CHECKPOINT "'");
}

static long long s_transactions(void)
{
    return harness_sql_intf(h, "SELECT count(DISTINCT xid) FROM intake.skip_moves");
}

/* The consumer under test with its loop and connection; a writer connection for the events. */
typedef struct {
    zloop_t *loop;
    nrm_db_t *db;
    nrm_db_t *writer;
    nrm_curve_t curve;
    nrm_consumer_t *consumer;
    long long want; /* what s_run waits for: the consumer's position, or the stored value */
    bool stored;
    long long race_seq; /* while applying it, another instance applies it first (s_race) */
    bool raced;         /* that instance committed */
} s_fix_t;

/* Another instance applies event seq and moves the checkpoint past it, and commits, while the
 * consumer's own transaction is applying it (waiting at most LOCK_WAIT for the row). */
static void s_race(s_fix_t *f, long long seq)
{
    char sql[512];
    snprintf(sql, sizeof sql,
             "SET lock_timeout = '" LOCK_WAIT "'; INSERT INTO skip_applied (seq, xid)"
             " VALUES (%lld, txid_current()); UPDATE checkpoints SET seq = %lld"
             " WHERE stream = '" CHECKPOINT "'",
             seq, seq);
    nrm_error_t err;
    f->raced = nrm_db_sql(f->writer, sql, &err) == NRM_OK;
    f->race_seq = 0;
}

/* Applies a matching event: one row per application, with the transaction's id. */
static nrm_status_t s_apply(void *ctx, nrm_tx_t *tx, const Nrm__V1__Event *ev)
{
    s_fix_t *f = ctx;
    if (ev->seq == f->race_seq)
        s_race(f, ev->seq);
    nrm_params_t p = {0};
    nrm_params_int(&p, ev->seq);
    return nrm_db_exec(tx->db, "skip_apply", &p, NULL, tx->err);
}

static int s_check(zloop_t *loop, int timer_id, void *arg)
{
    s_fix_t *f = arg;
    long long at = f->stored ? s_stored() : nrm_consumer_checkpoint(f->consumer);
    return at >= f->want ? -1 : 0;
}

static int s_timeout(zloop_t *loop, int timer_id, void *arg)
{
    return -1;
}

/* Runs the loop until the consumer's position (stored: the stored checkpoint) reaches want;
 * returns whether it did within WAIT_MS. */
static bool s_run(s_fix_t *f, long long want, bool stored)
{
    f->want = want;
    f->stored = stored;
    int tick = zloop_timer(f->loop, TICK_MS, 0, s_check, f);
    int limit = zloop_timer(f->loop, WAIT_MS, 1, s_timeout, f);
    zloop_start(f->loop);
    zloop_timer_end(f->loop, tick);
    zloop_timer_end(f->loop, limit);
    return (stored ? s_stored() : nrm_consumer_checkpoint(f->consumer)) >= want;
}

/* Runs the loop for ms, whatever happens. */
static void s_idle(s_fix_t *f, int ms)
{
    zloop_timer(f->loop, (size_t)ms, 1, s_timeout, f);
    zloop_start(f->loop);
}

/* A new consumer of intake's stream (store delay store_ms, 0: the default), caught up. */
static void s_consumer_start(s_fix_t *f, int store_ms)
{
    harness_curve(h, "intake", "coordinator", &f->curve);
    nrm_consumer_spec_t spec = {0};
    spec.own_stream = "intake";
    spec.source_stream = "intake";
    spec.events_endpoint = harness_events(h, "intake", 0);
    spec.api_endpoint = harness_api(h, "intake", 0);
    spec.agency_id = "coordinator";
    spec.curve = &f->curve;
    spec.prefixes = s_prefixes;
    spec.apply = s_apply;
    spec.ctx = f;
    spec.checkpoint = CHECKPOINT;
    f->consumer = nrm_consumer_new(f->db, &spec);
    assert_non_null(f->consumer);
    nrm_consumer_set_store_ms(f->consumer, store_ms);
    assert_int_equal(nrm_consumer_attach(f->consumer, f->loop), 0);
    assert_true(s_run(f, harness_sql_intf(h, "SELECT head FROM intake.stream_head"), false));
}

static void s_consumer_stop(s_fix_t *f)
{
    nrm_consumer_destroy(&f->consumer);
    zloop_destroy(&f->loop);
    f->loop = zloop_new();
}

static void s_fix_new(s_fix_t *f, int store_ms)
{
    memset(f, 0, sizeof *f);
    f->loop = zloop_new();
    f->db = nrm_db_new(s_conninfo, SCHEMA);
    nrm_error_t err;
    assert_int_equal(nrm_migrate(f->db, bus_migrations, bus_migrations_count, &err), NRM_OK);
    nrm_db_statement(f->db, "skip_apply",
                     "INSERT INTO skip_applied (seq, xid) VALUES ($1, txid_current())");
    nrm_db_statement(f->db, "skip_pid", "SELECT pg_backend_pid()");
    f->writer = nrm_db_new(s_conninfo, SCHEMA);
    s_consumer_start(f, store_ms);
    /* what an earlier test left unstored is stored before this one counts */
    if (s_stored() < nrm_consumer_checkpoint(f->consumer)) {
        s_consumer_stop(f);
        s_consumer_start(f, 1);
        assert_true(s_run(f, nrm_consumer_checkpoint(f->consumer), true));
        s_consumer_stop(f);
        s_consumer_start(f, store_ms);
    }
}

static void s_fix_destroy(s_fix_t *f)
{
    nrm_consumer_destroy(&f->consumer);
    zloop_destroy(&f->loop);
    nrm_db_destroy(&f->db);
    nrm_db_destroy(&f->writer);
}

/* Commits one event on intake's stream (case.consent_withdrawn when relevant, else
 * case.closed) and waits until the consumer's position reaches it; returns its seq. */
static long long s_event(s_fix_t *f, bool relevant)
{
    long long seq = harness_sql_intf(h, "SELECT head FROM intake.stream_head") + 1;
    nrm_error_t err;
    nrm_tx_t tx = {f->writer, "intake", "", nrm_now_ms(), &err, 0};
    Nrm__V1__CaseClosed closed = NRM__V1__CASE_CLOSED__INIT;
    Nrm__V1__ConsentWithdrawn gone = NRM__V1__CONSENT_WITHDRAWN__INIT;
    Nrm__V1__Event ev = NRM__V1__EVENT__INIT;
    ev.case_id = (char *)"skip-case";
    ev.body_case =
        relevant ? NRM__V1__EVENT__BODY_CONSENT_WITHDRAWN : NRM__V1__EVENT__BODY_CASE_CLOSED;
    if (relevant)
        ev.consent_withdrawn = &gone;
    else
        ev.case_closed = &closed;
    assert_int_equal(nrm_db_begin(f->writer, &err), NRM_OK);
    assert_int_equal(nrm_tx_emit(&tx, &ev), NRM_OK);
    assert_int_equal(nrm_db_commit(f->writer, &err), NRM_OK);
    assert_true(s_run(f, seq, false));
    assert_int_equal(nrm_consumer_checkpoint(f->consumer), seq);
    return seq;
}

/* IRRELEVANT events, each alone in its batch; returns the last seq. */
static long long s_irrelevant(s_fix_t *f)
{
    long long last = 0;
    for (int i = 0; i < IRRELEVANT; i++)
        last = s_event(f, false);
    return last;
}

static void test_events_that_concern_the_consumer_not_open_no_transaction(void **state)
{
    s_fix_t f;
    s_fix_new(&f, NEVER_MS);
    long long base = s_stored(), before = s_transactions();
    long long last = s_irrelevant(&f);
    assert_int_equal(last, base + IRRELEVANT);
    s_idle(&f, 300); /* longer than the default store delay: this consumer's is not reached */
    assert_int_equal(s_transactions(), before);
    assert_int_equal(s_stored(), base);
    ASSERT_SQL(0, "SELECT count(*) FROM intake.skip_applied WHERE seq > %lld", base);
    s_fix_destroy(&f);
}

static void test_skipped_seqs_are_stored_by_themselves_at_rest(void **state)
{
    s_fix_t f;
    s_fix_new(&f, 0); /* the default delay */
    long long before = s_transactions();
    int64_t start = nrm_mono_ms();
    long long last = s_irrelevant(&f);
    assert_true(s_run(&f, last, true));
    int64_t took = nrm_mono_ms() - start;
    assert_int_equal(s_stored(), last);
    /* one transaction per store delay at most, not one per batch */
    long long moves = s_transactions() - before;
    assert_true(moves >= 1);
    assert_true(moves <= 1 + took / NRM_CONSUMER_STORE_MS);
    assert_true(moves < IRRELEVANT);
    s_fix_destroy(&f);
}

static void
test_a_relevant_event_after_irrelevant_ones_is_applied_once_with_the_checkpoint(void **state)
{
    s_fix_t f;
    s_fix_new(&f, NEVER_MS);
    long long before = s_transactions();
    s_irrelevant(&f);
    long long seq = s_event(&f, true);
    assert_int_equal(s_stored(), seq);
    ASSERT_SQL(1, "SELECT count(*) FROM intake.skip_applied WHERE seq = %lld", seq);
    /* one transaction: the event applied and the checkpoint moved to it, past the skipped */
    assert_int_equal(s_transactions() - before, 1);
    ASSERT_SQL(seq,
               "SELECT max(seq) FROM intake.skip_moves WHERE xid = (SELECT xid FROM"
               " intake.skip_applied WHERE seq = %lld)",
               seq);
    s_fix_destroy(&f);
}

static void test_a_restart_reads_the_unstored_skips_again_and_doubles_nothing(void **state)
{
    s_fix_t f;
    s_fix_new(&f, NEVER_MS);
    long long first = s_event(&f, true);
    long long last = s_irrelevant(&f);
    assert_int_equal(s_stored(), first);
    s_consumer_stop(&f); /* the skips are not stored: the next start reads them again */
    s_consumer_start(&f, NEVER_MS);
    assert_int_equal(nrm_consumer_checkpoint(f.consumer), last);
    assert_int_equal(s_stored(), first);
    long long before = s_transactions();
    long long second = s_event(&f, true);
    assert_int_equal(s_stored(), second);
    ASSERT_SQL(1, "SELECT count(*) FROM intake.skip_applied WHERE seq = %lld", first);
    ASSERT_SQL(1, "SELECT count(*) FROM intake.skip_applied WHERE seq = %lld", second);
    ASSERT_SQL(2, "SELECT count(*) FROM intake.skip_applied WHERE seq >= %lld", first);
    assert_int_equal(s_transactions() - before, 1); /* the batch that applied the second */
    s_fix_destroy(&f);
}

static void test_a_checkpoint_another_instance_moved_is_not_taken_for_the_skips(void **state)
{
    s_fix_t f;
    s_fix_new(&f, NEVER_MS);
    long long base = s_stored();
    long long last = s_irrelevant(&f);
    /* another instance stored part of the skipped range meanwhile */
    ASSERT_SQL(1,
               "WITH u AS (UPDATE intake.checkpoints SET seq = %lld WHERE stream = '" CHECKPOINT
               "' RETURNING 1) SELECT count(*) FROM u",
               base + IRRELEVANT / 2);
    long long seq = s_event(&f, true);
    assert_true(seq > last);
    assert_int_equal(s_stored(), seq);
    ASSERT_SQL(1, "SELECT count(*) FROM intake.skip_applied WHERE seq = %lld", seq);
    ASSERT_SQL(1, "SELECT count(*) FROM intake.skip_applied WHERE seq > %lld", base);
    s_fix_destroy(&f);
}

static void test_a_batch_with_work_writes_its_checkpoint_row_once(void **state)
{
    s_fix_t f;
    s_fix_new(&f, NEVER_MS);
    long long seq = s_event(&f, true);
    /* the move, not a lock taken before the work as well */
    ASSERT_SQL(1,
               "SELECT count(*) FROM intake.skip_moves WHERE xid = (SELECT xid FROM"
               " intake.skip_applied WHERE seq = %lld)",
               seq);
    assert_int_equal(s_stored(), seq);
    s_fix_destroy(&f);
}

static void test_a_batch_another_instance_applied_meanwhile_is_rolled_back(void **state)
{
    s_fix_t f;
    s_fix_new(&f, NEVER_MS);
    f.race_seq = harness_sql_intf(h, "SELECT head FROM intake.stream_head") + 1;
    long long seq = s_event(&f, true);
    assert_true(f.raced); /* the row was not locked while the consumer applied the batch */
    /* the other instance's application only: the consumer's was rolled back */
    ASSERT_SQL(1, "SELECT count(*) FROM intake.skip_applied WHERE seq = %lld", seq);
    assert_int_equal(s_stored(), seq);
    /* and the consumer goes on: the next event applied once, nothing set aside */
    long long next = s_event(&f, true);
    ASSERT_SQL(1, "SELECT count(*) FROM intake.skip_applied WHERE seq = %lld", next);
    assert_int_equal(s_stored(), next);
    assert_int_equal(nrm_consumer_quarantined(f.consumer), 0);
    s_fix_destroy(&f);
}

/* The backend of db's connection (connecting if needed). */
static long long s_backend(nrm_db_t *db)
{
    PGresult *res = NULL;
    nrm_error_t err;
    assert_int_equal(nrm_db_exec(db, "skip_pid", NULL, &res, &err), NRM_OK);
    long long pid = nrm_db_int(res, 0, 0);
    PQclear(res);
    return pid;
}

static void test_a_deferred_store_that_fails_is_tried_again(void **state)
{
    s_fix_t f;
    s_fix_new(&f, SLOW_STORE_MS);
    long long pid = s_backend(f.db);
    long long last = s_event(&f, false);
    /* the consumer's connection is lost before its store delay is over */
    ASSERT_SQL(1, "SELECT pg_terminate_backend(%lld)::int", pid);
    char gone[128];
    snprintf(gone, sizeof gone, "SELECT count(*) FROM pg_stat_activity WHERE pid = %lld", pid);
    assert_int_equal(harness_wait_sql(h, gone, 0, WAIT_MS), 0);
    assert_true(s_stored() < last);
    assert_true(s_run(&f, last, true));
    assert_int_equal(s_stored(), last);
    assert_true(s_backend(f.db) != pid);
    s_fix_destroy(&f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_events_that_concern_the_consumer_not_open_no_transaction),
        cmocka_unit_test(test_skipped_seqs_are_stored_by_themselves_at_rest),
        cmocka_unit_test(
            test_a_relevant_event_after_irrelevant_ones_is_applied_once_with_the_checkpoint),
        cmocka_unit_test(test_a_restart_reads_the_unstored_skips_again_and_doubles_nothing),
        cmocka_unit_test(test_a_checkpoint_another_instance_moved_is_not_taken_for_the_skips),
        cmocka_unit_test(test_a_deferred_store_that_fails_is_tried_again),
        cmocka_unit_test(test_a_batch_with_work_writes_its_checkpoint_row_once),
        cmocka_unit_test(test_a_batch_another_instance_applied_meanwhile_is_rolled_back),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
