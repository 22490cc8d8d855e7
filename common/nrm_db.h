/* nrm_db: one PostgreSQL connection of a service, confined to the service's schema.
 *
 * The connection is made lazily and remade after any loss (at most one attempt per backoff
 * period); named statements are registered once and prepared again on every new connection.
 * Results are always in binary format (read them with nrm_db_int / nrm_db_text / nrm_db_bytes).
 * Errors are mapped onto the project's statuses: a lost or refused connection is UNAVAILABLE, a
 * unique violation CONFLICT, a serialization failure or deadlock UNAVAILABLE (retry), anything
 * else INTERNAL. Database messages are logged by SQLSTATE and constraint only: they can quote
 * values, which may be identifying. */
#ifndef NRM_DB_H
#define NRM_DB_H

#include <libpq-fe.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "nrm_error.h"

#define NRM_DB_MAX_PARAMS 32
#define NRM_DB_NUMBER_MAX 24

typedef struct nrm_db_t nrm_db_t;

/* Parameters of one statement. Zero-initialise, then add in order. Text and bytes are
 * borrowed: they must outlive the call that uses the parameters. */
typedef struct {
    int count;
    bool overflow; /* more than NRM_DB_MAX_PARAMS were added: nrm_db_exec refuses to run */
    const char *values[NRM_DB_MAX_PARAMS];
    int lengths[NRM_DB_MAX_PARAMS];
    int formats[NRM_DB_MAX_PARAMS];
    char numbers[NRM_DB_MAX_PARAMS][NRM_DB_NUMBER_MAX];
} nrm_params_t;

void nrm_params_text(nrm_params_t *p, const char *s); /* NULL is SQL NULL */
void nrm_params_int(nrm_params_t *p, int64_t v);
void nrm_params_bool(nrm_params_t *p, bool v);
void nrm_params_bytes(nrm_params_t *p, const void *data, size_t len);

/* Returns a new, not yet connected handle. conninfo is a libpq connection string; schema becomes
 * the search_path. Both are copied. */
nrm_db_t *nrm_db_new(const char *conninfo, const char *schema);

/* Closes the connection, frees the handle and sets *self to NULL. Safe on NULL. */
void nrm_db_destroy(nrm_db_t **self);

/* Connects if not connected (respecting the reconnect backoff). An attempt is started with
 * PQconnectStart and moved on with PQconnectPoll; it is given up after conninfo's
 * connect_timeout (default 3 s). A handle waits for the attempt's end, unless it serves a
 * reactor (nrm_db_set_reactor): then each call waits at most a few milliseconds for the server
 * and returns UNAVAILABLE while the attempt is still in progress (call again, e.g. from a
 * timer). Returns OK when connected, UNAVAILABLE otherwise. *reconnected (may be NULL) is set
 * when a new connection was made. */
nrm_status_t nrm_db_connect(nrm_db_t *self, bool *reconnected, nrm_error_t *err);

/* nrm_db_connect for code that may wait (start-up, before the reactor): keeps trying for up to
 * wait_ms. Returns OK when connected, UNAVAILABLE otherwise. */
nrm_status_t nrm_db_connect_wait(nrm_db_t *self, int wait_ms, nrm_error_t *err);

/* The handle serves a reactor: nrm_db_connect never waits more than a few milliseconds. */
void nrm_db_set_reactor(nrm_db_t *self);

/* True while a connection attempt is in progress (nrm_db_connect moves it on). */
bool nrm_db_connecting(const nrm_db_t *self);

/* True while a connection is believed good. */
bool nrm_db_connected(const nrm_db_t *self);

/* The live connection (for PQsocket, LISTEN and notifications), or NULL. Borrowed. */
PGconn *nrm_db_conn(nrm_db_t *self);

/* Drops the connection (it will be remade on next use). */
void nrm_db_disconnect(nrm_db_t *self);

/* Registers a named statement, prepared on each connection before first use. name and sql must
 * be string literals or otherwise outlive self. */
void nrm_db_statement(nrm_db_t *self, const char *name, const char *sql);

/* Runs a registered statement. On OK, *res (if res is not NULL) receives the result, which the
 * caller PQclear()s; on failure nothing is returned and err says why. */
nrm_status_t nrm_db_exec(nrm_db_t *self, const char *name, const nrm_params_t *params,
                         PGresult **res, nrm_error_t *err);

/* Runs one or more SQL commands without parameters (DDL, LISTEN, SET ...), after the deferred
 * commands, in one round trip (two when statements are deferred: they go first). */
nrm_status_t nrm_db_sql(nrm_db_t *self, const char *sql, nrm_error_t *err);

/* Defers a utility command that returns nothing (BEGIN, SAVEPOINT name): it is sent with the
 * next statement, nrm_db_exec's in one pipeline, nrm_db_sql's in one simple query, so that it
 * costs no round trip of its own. sql must outlive the call that sends it (a string literal).
 * Its failure, unlikely for these commands, fails that next call. Requires a connection. */
nrm_status_t nrm_db_defer(nrm_db_t *self, const char *sql, nrm_error_t *err);

/* Defers a registered statement whose result nobody reads (an INSERT or UPDATE of a batch):
 * it is sent with the next statement or the commit, in one pipeline, after what was deferred
 * before it, so that it costs no round trip of its own (parameters copied). Its failure fails
 * that next call (named after it), and the transaction is then to be rolled back, as after any
 * failed statement; a rollback drops it unsent. Outside a transaction it runs at once (no
 * commit would carry it). Requires a connection. */
nrm_status_t nrm_db_exec_later(nrm_db_t *self, const char *name, const nrm_params_t *params,
                               nrm_error_t *err);

/* Transactions. begin connects if needed (UNAVAILABLE when it cannot) and defers BEGIN; a
 * commit of a transaction in which nothing ran sends nothing. rollback is safe to call in any
 * state; it also drops what was deferred. */
nrm_status_t nrm_db_begin(nrm_db_t *self, nrm_error_t *err);
nrm_status_t nrm_db_commit(nrm_db_t *self, nrm_error_t *err);
void nrm_db_rollback(nrm_db_t *self);

/* Counts that only a commit makes true (a service's Pong counters): n is added to *counter
 * when the open transaction commits, and dropped when it rolls back, fails to commit, or is
 * left for the next begin; a batch applied again after a failure thus counts once. Outside a
 * transaction n is added at once. counter must outlive the transaction. A part of a
 * transaction undone alone (ROLLBACK TO SAVEPOINT) drops its counts with nrm_db_counts_undo,
 * given the mark nrm_db_counts_mark returned before it began. */
void nrm_db_count_on_commit(nrm_db_t *self, int64_t *counter, int64_t n);
size_t nrm_db_counts_mark(nrm_db_t *self);
void nrm_db_counts_undo(nrm_db_t *self, size_t mark);

/* Work that must wait for the open transaction's end: fn(arg, true) once it committed,
 * fn(arg, false) once it rolled back, failed to commit, was left for the next begin, was
 * undone with the part it belongs to (nrm_db_counts_undo) or the handle was destroyed; outside
 * a transaction fn(arg, false) at once. Called exactly once, after the transaction ended and
 * in the order registered; fn must not use the handle. arg is fn's to free. */
typedef void (*nrm_db_end_fn)(void *arg, bool committed);
void nrm_db_on_end(nrm_db_t *self, nrm_db_end_fn fn, void *arg);

/* Runs a registered statement and commits, in one round trip (pipeline mode, with what was
 * deferred). OK only when the statement succeeded and the transaction committed; on failure
 * the transaction is aborted or gone, and the caller rolls back as after a failed commit. */
nrm_status_t nrm_db_exec_commit(nrm_db_t *self, const char *name, const nrm_params_t *params,
                                nrm_error_t *err);

/* Readers for binary results. nrm_db_int reads int2/int4/int8/bool/oid columns (0 for NULL);
 * nrm_db_text returns the value (borrowed from res; "" for NULL); nrm_db_bytes returns the raw
 * bytes and their length (borrowed from res). */
int64_t nrm_db_int(const PGresult *res, int row, int col);
const char *nrm_db_text(const PGresult *res, int row, int col);
const uint8_t *nrm_db_bytes(const PGresult *res, int row, int col, size_t *len);
bool nrm_db_is_null(const PGresult *res, int row, int col);

/* The schema this handle works in. */
const char *nrm_db_schema(const nrm_db_t *self);

#endif
