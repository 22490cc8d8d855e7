#include "nrm_alloc.h"
#include "nrm_db.h"
#include "nrm_log.h"
#include "nrm_time.h"

#include <arpa/inet.h>
#include <endian.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NRM_DB_BACKOFF_MS 500
#define NRM_DB_CONNECT_STEP_MS 20  /* the longest one call waits for the server's answer */
#define NRM_DB_CONNECT_TIMEOUT_S 3 /* an attempt's deadline when conninfo names none */
#define NRM_DB_MAX_STATEMENTS 128
#define NRM_DB_BINARY 1

/* PostgreSQL type oids (pg_type.h) read by nrm_db_int. */
#define NRM_OID_BOOL 16
#define NRM_OID_INT8 20
#define NRM_OID_INT2 21
#define NRM_OID_INT4 23
#define NRM_OID_OID 26

#define S_MAX_DEFERRED 8

typedef struct {
    const char *name;
    const char *sql;
    uint64_t prepared_on; /* connection generation it was prepared on, 0 for none */
} s_statement_t;

/* What a counter gets when the transaction commits, or (counter NULL) who is told how it
 * ended. */
typedef struct {
    int64_t *counter; /* borrowed: the caller's, outliving the transaction */
    int64_t n;
    nrm_db_end_fn fn; /* with counter NULL: called once, with arg */
    void *arg;
} s_count_t;

/* A command or statement not sent yet. */
typedef struct {
    const char *sql;     /* a utility command (a literal), or NULL for a statement */
    const char *name;    /* the registered statement's name */
    nrm_params_t params; /* its parameters, their values in copy */
    char *copy;          /* owned */
} s_deferred_t;

struct nrm_db_t {
    char *conninfo;
    char *schema;
    PGconn *conn;
    uint64_t generation; /* incremented on every new connection */
    int64_t next_attempt_ms;
    bool connecting;                 /* conn is an attempt in progress (PQconnectStart) */
    PostgresPollingStatusType phase; /* what the attempt waits for */
    int64_t connect_deadline_ms;     /* when the attempt is given up */
    int connect_timeout_ms;          /* conninfo's connect_timeout */
    int connect_wait_ms;             /* the longest nrm_db_connect waits */
    s_statement_t statements[NRM_DB_MAX_STATEMENTS];
    int statement_count;
    /* utility commands (BEGIN, SAVEPOINT) and statements whose result nobody reads, not sent
     * yet: they go with the next statement, in one round trip (nrm_db_defer,
     * nrm_db_exec_later) */
    s_deferred_t deferred[S_MAX_DEFERRED];
    int deferred_count;
    uint64_t deferred_generation; /* the connection they were deferred on */
    /* counts added when the open transaction commits (nrm_db_count_on_commit), and the
     * callers told how it ended (nrm_db_on_end), in the order they came */
    bool in_transaction; /* from nrm_db_begin to its commit or rollback */
    s_count_t *counts;   /* owned */
    size_t counts_n, counts_cap;
    size_t counts_floor; /* entries before it belong to a part that may still be undone alone */
};

/* True (and marks p) when p has no room for another parameter. */
static bool s_params_full(nrm_params_t *p)
{
    if (p->count < NRM_DB_MAX_PARAMS)
        return false;
    p->overflow = true;
    return true;
}

void nrm_params_text(nrm_params_t *p, const char *s)
{
    if (s_params_full(p))
        return;
    p->values[p->count] = s;
    p->lengths[p->count] = 0;
    p->formats[p->count] = 0;
    p->count++;
}

void nrm_params_int(nrm_params_t *p, int64_t v)
{
    if (s_params_full(p))
        return;
    snprintf(p->numbers[p->count], NRM_DB_NUMBER_MAX, "%lld", (long long)v);
    nrm_params_text(p, p->numbers[p->count]);
}

void nrm_params_bool(nrm_params_t *p, bool v)
{
    nrm_params_text(p, v ? "true" : "false");
}

void nrm_params_bytes(nrm_params_t *p, const void *data, size_t len)
{
    if (s_params_full(p))
        return;
    p->values[p->count] = data ? (const char *)data : "";
    p->lengths[p->count] = (int)len;
    p->formats[p->count] = NRM_DB_BINARY;
    p->count++;
}

nrm_db_t *nrm_db_new(const char *conninfo, const char *schema)
{
    nrm_db_t *self = nrm_xcalloc(1, sizeof *self);
    self->conninfo = nrm_xstrdup(conninfo);
    self->schema = nrm_xstrdup(schema);
    self->connect_timeout_ms = NRM_DB_CONNECT_TIMEOUT_S * 1000;
    PQconninfoOption *options = PQconninfoParse(conninfo, NULL);
    for (PQconninfoOption *o = options; o && o->keyword; o++)
        if (strcmp(o->keyword, "connect_timeout") == 0 && o->val && atoi(o->val) > 0)
            self->connect_timeout_ms = atoi(o->val) * 1000;
    PQconninfoFree(options);
    self->connect_wait_ms = self->connect_timeout_ms;
    return self;
}

static void s_deferred_clear(nrm_db_t *self);
static bool s_begin_pending(const nrm_db_t *self);
static void s_counts_end(nrm_db_t *self, bool committed);

void nrm_db_destroy(nrm_db_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    nrm_db_t *self = *self_p;
    s_deferred_clear(self);
    s_counts_end(self, false); /* an open transaction is lost with the connection */
    free(self->counts);
    if (self->conn)
        PQfinish(self->conn);
    free(self->conninfo);
    free(self->schema);
    free(self);
    *self_p = NULL;
}

/* Drops what was deferred. */
static void s_deferred_clear(nrm_db_t *self)
{
    for (int i = 0; i < self->deferred_count; i++) {
        free(self->deferred[i].copy);
        self->deferred[i].copy = NULL;
    }
    self->deferred_count = 0;
}

/* True when a statement (not only commands) is deferred. */
static bool s_deferred_statements(const nrm_db_t *self)
{
    for (int i = 0; i < self->deferred_count; i++)
        if (!self->deferred[i].sql)
            return true;
    return false;
}

void nrm_db_disconnect(nrm_db_t *self)
{
    s_deferred_clear(self);
    if (self->conn) {
        PQfinish(self->conn);
        self->conn = NULL;
        if (!self->connecting)
            nrm_log_warn("database connection dropped", "{s:s}", "schema", self->schema);
        self->connecting = false;
    }
}

bool nrm_db_connected(const nrm_db_t *self)
{
    return self->conn && !self->connecting && PQstatus(self->conn) == CONNECTION_OK;
}

bool nrm_db_connecting(const nrm_db_t *self)
{
    return self->connecting;
}

PGconn *nrm_db_conn(nrm_db_t *self)
{
    return nrm_db_connected(self) ? self->conn : NULL;
}

const char *nrm_db_schema(const nrm_db_t *self)
{
    return self->schema;
}

/* Sets the search_path of a fresh connection. Returns 0, or -1 on failure. */
static int s_set_search_path(nrm_db_t *self)
{
    char *ident = PQescapeIdentifier(self->conn, self->schema, strlen(self->schema));
    if (!ident)
        return -1;
    char sql[256];
    snprintf(sql, sizeof sql, "SET search_path TO %s", ident);
    PQfreemem(ident);
    PGresult *res = PQexec(self->conn, sql);
    int rc = PQresultStatus(res) == PGRES_COMMAND_OK ? 0 : -1;
    PQclear(res);
    return rc;
}

/* Server notices (such as "already exists, skipping") are not errors; they are dropped rather
 * than written unstructured to stderr. */
static void s_ignore_notice(void *arg, const char *message)
{
    (void)arg;
    (void)message;
}

/* Gives up the attempt in progress: logged, backoff from now. Returns UNAVAILABLE. */
static nrm_status_t s_connect_failed(nrm_db_t *self, const char *why, nrm_error_t *err)
{
    nrm_log_warn("database connection failed", "{s:s, s:s}", "schema", self->schema, "reason", why);
    PQfinish(self->conn);
    self->conn = NULL;
    self->connecting = false;
    self->next_attempt_ms = nrm_mono_ms() + NRM_DB_BACKOFF_MS;
    return nrm_fail(err, NRM_UNAVAILABLE, NULL, "database unavailable");
}

/* Starts an attempt (PQconnectStart: no waiting). Returns OK when one is in progress. */
static nrm_status_t s_connect_start(nrm_db_t *self, nrm_error_t *err)
{
    self->conn = PQconnectStart(self->conninfo);
    if (!self->conn)
        nrm_oom("PQconnectStart");
    self->connecting = true;
    self->phase = PGRES_POLLING_WRITING;
    self->connect_deadline_ms = nrm_mono_ms() + self->connect_timeout_ms;
    if (PQstatus(self->conn) == CONNECTION_BAD)
        return s_connect_failed(self, "refused", err);
    return NRM_OK;
}

/* Moves the attempt in progress on, waiting at most wait_ms in all for the server. Returns OK
 * once connected, UNAVAILABLE while still connecting (or when the attempt failed). */
static nrm_status_t s_connect_step(nrm_db_t *self, int wait_ms, nrm_error_t *err)
{
    int64_t until = nrm_mono_ms() + wait_ms;
    while (self->phase != PGRES_POLLING_OK) {
        if (self->phase == PGRES_POLLING_FAILED)
            return s_connect_failed(self, "refused", err);
        int64_t now = nrm_mono_ms();
        if (now >= self->connect_deadline_ms)
            return s_connect_failed(self, "timeout", err);
        int64_t left = until - now;
        struct pollfd pfd = {PQsocket(self->conn),
                             self->phase == PGRES_POLLING_READING ? POLLIN : POLLOUT, 0};
        int ready = pfd.fd < 0 ? 1 : poll(&pfd, 1, left > 0 ? (int)left : 0);
        if (ready == 0)
            return nrm_fail(err, NRM_UNAVAILABLE, NULL, "database connecting");
        self->phase = PQconnectPoll(self->conn);
    }
    self->connecting = false;
    if (PQstatus(self->conn) != CONNECTION_OK || s_set_search_path(self) != 0)
        return s_connect_failed(self, "setup", err);
    PQsetNoticeProcessor(self->conn, s_ignore_notice, NULL);
    self->generation++;
    nrm_log_info("database connected", "{s:s}", "schema", self->schema);
    return NRM_OK;
}

/* Connects, waiting at most wait_ms for the server (0: not at all). */
static nrm_status_t s_connect(nrm_db_t *self, int wait_ms, bool *reconnected, nrm_error_t *err)
{
    if (reconnected)
        *reconnected = false;
    if (nrm_db_connected(self))
        return NRM_OK;
    if (!self->connecting) {
        nrm_db_disconnect(self);
        if (nrm_mono_ms() < self->next_attempt_ms)
            return nrm_fail(err, NRM_UNAVAILABLE, NULL, "database unavailable");
        self->next_attempt_ms = nrm_mono_ms() + NRM_DB_BACKOFF_MS;
        if (s_connect_start(self, err) != NRM_OK)
            return NRM_UNAVAILABLE;
    }
    nrm_status_t st = s_connect_step(self, wait_ms, err);
    if (st == NRM_OK && reconnected)
        *reconnected = true;
    return st;
}

nrm_status_t nrm_db_connect(nrm_db_t *self, bool *reconnected, nrm_error_t *err)
{
    return s_connect(self, self->connect_wait_ms, reconnected, err);
}

void nrm_db_set_reactor(nrm_db_t *self)
{
    self->connect_wait_ms = NRM_DB_CONNECT_STEP_MS;
}

nrm_status_t nrm_db_connect_wait(nrm_db_t *self, int wait_ms, nrm_error_t *err)
{
    int64_t until = nrm_mono_ms() + wait_ms;
    nrm_status_t st;
    do {
        int64_t left = until - nrm_mono_ms();
        st = s_connect(self, left > 0 ? (int)left : 0, NULL, err);
        if (st != NRM_OK && !self->connecting && nrm_mono_ms() < until)
            poll(NULL, 0, NRM_DB_CONNECT_STEP_MS); /* backoff after a refusal */
    } while (st != NRM_OK && nrm_mono_ms() < until);
    return st;
}

void nrm_db_statement(nrm_db_t *self, const char *name, const char *sql)
{
    for (int i = 0; i < self->statement_count; i++)
        if (strcmp(self->statements[i].name, name) == 0)
            return;
    if (self->statement_count >= NRM_DB_MAX_STATEMENTS) {
        /* a service registers its statements at start: more than the table holds is a
         * programming error, found on the first start of any build */
        nrm_log_error("too many prepared statements", "{s:i}", "max", NRM_DB_MAX_STATEMENTS);
        abort();
    }
    self->statements[self->statement_count++] = (s_statement_t){name, sql, 0};
}

/* Maps a failed result (or a NULL one) to a status, logging SQLSTATE and constraint only.
 * Drops the connection when it is no longer usable. */
static nrm_status_t s_result_error(nrm_db_t *self, PGresult *res, const char *what,
                                   nrm_error_t *err)
{
    const char *state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
    const char *constraint = res ? PQresultErrorField(res, PG_DIAG_CONSTRAINT_NAME) : NULL;
    bool lost = !self->conn || PQstatus(self->conn) != CONNECTION_OK;
    nrm_status_t status = NRM_INTERNAL;
    if (lost || !state || strncmp(state, "08", 2) == 0 || strncmp(state, "57P", 3) == 0)
        status = NRM_UNAVAILABLE;
    else if (strcmp(state, "23505") == 0)
        status = NRM_CONFLICT;
    else if (strcmp(state, "40001") == 0 || strcmp(state, "40P01") == 0)
        status = NRM_UNAVAILABLE;
    nrm_log(status == NRM_CONFLICT ? NRM_LOG_INFO : NRM_LOG_WARN, "database error",
            "{s:s, s:s, s:s, s:s}", "schema", self->schema, "what", what, "sqlstate",
            state ? state : "connection", "constraint", constraint ? constraint : "");
    if (lost)
        nrm_db_disconnect(self);
    return nrm_fail(err, status, NULL,
                    status == NRM_UNAVAILABLE ? "database unavailable"
                    : status == NRM_CONFLICT  ? "conflicting change"
                                              : "database error");
}

/* Returns the registered statement called name, preparing it on this connection if needed. */
static s_statement_t *s_prepared(nrm_db_t *self, const char *name, nrm_error_t *err)
{
    for (int i = 0; i < self->statement_count; i++) {
        s_statement_t *st = &self->statements[i];
        if (strcmp(st->name, name) != 0)
            continue;
        if (st->prepared_on == self->generation)
            return st;
        PGresult *res = PQprepare(self->conn, st->name, st->sql, 0, NULL);
        if (PQresultStatus(res) != PGRES_COMMAND_OK) {
            s_result_error(self, res, name, err);
            PQclear(res);
            return NULL;
        }
        PQclear(res);
        st->prepared_on = self->generation;
        return st;
    }
    nrm_fail(err, NRM_INTERNAL, NULL, "unknown statement %s", name);
    return NULL;
}

/* Whether the deferred commands may run on the current connection. Those deferred on a
 * connection lost since (none of them ran) may go on a new one only when they begin a
 * transaction, which had done nothing yet; a savepoint of a lost transaction may not. */
static nrm_status_t s_deferred_usable(nrm_db_t *self, nrm_error_t *err)
{
    if (self->deferred_count == 0 || self->deferred_generation == self->generation ||
        (self->deferred[0].sql && strcmp(self->deferred[0].sql, "BEGIN") == 0))
        return NRM_OK;
    s_deferred_clear(self);
    return nrm_fail(err, NRM_UNAVAILABLE, NULL, "database unavailable");
}

/* Reads the results of a pipeline of count queries (each query's first result into results[],
 * NULL when none came) and its sync, and leaves pipeline mode. Returns false, with the
 * connection dropped, when the pipeline did not end as it should. */
static bool s_pipeline_read(nrm_db_t *self, int count, PGresult **results)
{
    bool ended = true;
    for (int i = 0; i < count; i++) {
        results[i] = ended ? PQgetResult(self->conn) : NULL;
        if (!results[i]) {
            ended = false;
            continue;
        }
        PGresult *more;
        while ((more = PQgetResult(self->conn)) != NULL) /* up to the query's end */
            PQclear(more);
    }
    PGresult *sync = ended ? PQgetResult(self->conn) : NULL;
    ended = ended && PQresultStatus(sync) == PGRES_PIPELINE_SYNC;
    PQclear(sync);
    if (ended && PQexitPipelineMode(self->conn) == 1)
        return true;
    nrm_db_disconnect(self); /* the session's state is unknown */
    return false;
}

/* Runs the deferred commands and statements, st with p (none when st is NULL), and COMMIT when
 * commit is set, in one round trip (libpq's pipeline mode). On OK, *res_out (if not NULL)
 * receives st's result as nrm_db_exec gives it. A failure of any of them fails the call, named
 * after the one that failed; the transaction is then left aborted (or gone with the
 * connection) for the caller's nrm_db_rollback. What was deferred is sent or dropped. */
static nrm_status_t s_exec_pipelined(nrm_db_t *self, const s_statement_t *st, const nrm_params_t *p,
                                     bool commit, PGresult **res_out, nrm_error_t *err)
{
    PGresult *results[S_MAX_DEFERRED + 2] = {0};
    const char *names[S_MAX_DEFERRED + 2] = {0};
    bool statement[S_MAX_DEFERRED + 2] = {0}; /* a statement (rows allowed), not a command */
    int deferred = self->deferred_count, count = 0;
    for (int i = 0; i < deferred; i++) /* prepared before the pipeline: PQprepare waits */
        if (!self->deferred[i].sql && !s_prepared(self, self->deferred[i].name, err)) {
            s_deferred_clear(self);
            return err ? err->status : NRM_INTERNAL;
        }
    bool sent = PQenterPipelineMode(self->conn) == 1;
    for (int i = 0; sent && i < deferred; i++, count++) {
        const s_deferred_t *d = &self->deferred[i];
        names[count] = d->sql ? "sql" : d->name;
        statement[count] = !d->sql;
        sent = d->sql
                   ? PQsendQueryParams(self->conn, d->sql, 0, NULL, NULL, NULL, NULL, 0) == 1
                   : PQsendQueryPrepared(self->conn, d->name, d->params.count, d->params.values,
                                         d->params.lengths, d->params.formats, NRM_DB_BINARY) == 1;
    }
    s_deferred_clear(self);
    int main_at = st ? count : -1;
    if (sent && st) {
        names[count] = st->name;
        statement[count] = true;
        sent = PQsendQueryPrepared(self->conn, st->name, p->count, p->values, p->lengths,
                                   p->formats, NRM_DB_BINARY) == 1;
        count += sent;
    }
    int commit_at = commit ? count : -1;
    if (sent && commit) {
        names[count] = "commit";
        sent = PQsendQueryParams(self->conn, "COMMIT", 0, NULL, NULL, NULL, NULL, 0) == 1;
        count += sent;
    }
    const char *what = st ? st->name : "sql";
    if (!sent || PQpipelineSync(self->conn) != 1) {
        nrm_db_disconnect(self); /* part of a pipeline sent: the session's state is unknown */
        return s_result_error(self, NULL, what, err);
    }
    bool ended = s_pipeline_read(self, count, results);
    nrm_status_t status = NRM_OK;
    for (int i = 0; i < count && status == NRM_OK; i++) {
        ExecStatusType rs = PQresultStatus(results[i]);
        bool ok = rs == PGRES_COMMAND_OK || (statement[i] && rs == PGRES_TUPLES_OK);
        if (!ok)
            status = s_result_error(self, results[i], names[i], err);
        else if (i == commit_at && strcmp(PQcmdStatus(results[i]), "COMMIT") != 0)
            status = nrm_fail(err, NRM_INTERNAL, NULL, "transaction aborted"); /* rolled back */
    }
    if (status == NRM_OK && !ended)
        status = s_result_error(self, NULL, what, err);
    for (int i = 0; i < count; i++) {
        if (status == NRM_OK && i == main_at && res_out)
            *res_out = results[i];
        else
            PQclear(results[i]);
    }
    return status;
}

/* nrm_db_exec, and COMMIT in the same round trip when commit is set. */
static nrm_status_t s_exec(nrm_db_t *self, const char *name, const nrm_params_t *params,
                           bool commit, PGresult **res_out, nrm_error_t *err)
{
    if (res_out)
        *res_out = NULL;
    if (nrm_db_connect(self, NULL, err) != NRM_OK)
        return err ? err->status : NRM_UNAVAILABLE;
    if (s_deferred_usable(self, err) != NRM_OK)
        return err ? err->status : NRM_UNAVAILABLE;
    s_statement_t *st = s_prepared(self, name, err);
    if (!st)
        return err ? err->status : NRM_INTERNAL;
    static const nrm_params_t s_none;
    const nrm_params_t *p = params ? params : &s_none;
    if (p->overflow) {
        nrm_log_error("too many statement parameters", "{s:s}", "statement", name);
        return nrm_fail(err, NRM_INTERNAL, NULL, "internal error");
    }
    if (self->deferred_count > 0 || commit)
        return s_exec_pipelined(self, st, p, commit, res_out, err);
    PGresult *res = PQexecPrepared(self->conn, st->name, p->count, p->values, p->lengths,
                                   p->formats, NRM_DB_BINARY);
    ExecStatusType rs = PQresultStatus(res);
    if (rs != PGRES_COMMAND_OK && rs != PGRES_TUPLES_OK) {
        nrm_status_t status = s_result_error(self, res, name, err);
        PQclear(res);
        return status;
    }
    if (res_out)
        *res_out = res;
    else
        PQclear(res);
    return NRM_OK;
}

nrm_status_t nrm_db_exec(nrm_db_t *self, const char *name, const nrm_params_t *params,
                         PGresult **res_out, nrm_error_t *err)
{
    return s_exec(self, name, params, false, res_out, err);
}

/* Runs the deferred commands and sql (one or more commands) as one simple query. */
nrm_status_t nrm_db_sql(nrm_db_t *self, const char *sql, nrm_error_t *err)
{
    if (nrm_db_connect(self, NULL, err) != NRM_OK)
        return err ? err->status : NRM_UNAVAILABLE;
    if (s_deferred_usable(self, err) != NRM_OK)
        return err ? err->status : NRM_UNAVAILABLE;
    /* a simple query cannot carry parameters: deferred statements go first, in a pipeline.
     * When one fails, the transaction is aborted: a ROLLBACK (TO SAVEPOINT) still runs, since it
     * undoes just that, but nothing else does (a COMMIT would roll back and seem to succeed). */
    if (s_deferred_statements(self) &&
        s_exec_pipelined(self, NULL, NULL, false, NULL, err) != NRM_OK &&
        (strncmp(sql, "ROLLBACK", 8) != 0 || !nrm_db_connected(self)))
        return err ? err->status : NRM_INTERNAL;
    nrm_error_clear(err); /* what decides now is the rollback's own result */
    char *joined = NULL;
    if (self->deferred_count > 0) {
        size_t len = strlen(sql) + 1;
        for (int i = 0; i < self->deferred_count; i++)
            len += strlen(self->deferred[i].sql) + 2;
        joined = nrm_xmalloc(len);
        joined[0] = '\0';
        for (int i = 0; i < self->deferred_count; i++) {
            strcat(joined, self->deferred[i].sql);
            strcat(joined, "; ");
        }
        strcat(joined, sql);
        s_deferred_clear(self);
    }
    PGresult *res = PQexec(self->conn, joined ? joined : sql);
    free(joined);
    ExecStatusType rs = PQresultStatus(res);
    nrm_status_t status = NRM_OK;
    if (rs != PGRES_COMMAND_OK && rs != PGRES_TUPLES_OK)
        status = s_result_error(self, res, "sql", err);
    PQclear(res);
    return status;
}

nrm_status_t nrm_db_defer(nrm_db_t *self, const char *sql, nrm_error_t *err)
{
    if (!nrm_db_connected(self))
        return nrm_fail(err, NRM_UNAVAILABLE, NULL, "database unavailable");
    if (self->deferred_count == S_MAX_DEFERRED) /* more than a transaction's frame: run all */
        return nrm_db_sql(self, sql, err);
    if (self->deferred_count == 0)
        self->deferred_generation = self->generation;
    self->deferred[self->deferred_count++] = (s_deferred_t){.sql = sql};
    return NRM_OK;
}

nrm_status_t nrm_db_exec_later(nrm_db_t *self, const char *name, const nrm_params_t *params,
                               nrm_error_t *err)
{
    if (!nrm_db_connected(self))
        return nrm_fail(err, NRM_UNAVAILABLE, NULL, "database unavailable");
    static const nrm_params_t s_none;
    const nrm_params_t *p = params ? params : &s_none;
    if (p->overflow) {
        nrm_log_error("too many statement parameters", "{s:s}", "statement", name);
        return nrm_fail(err, NRM_INTERNAL, NULL, "internal error");
    }
    if (s_deferred_usable(self, err) != NRM_OK)
        return err ? err->status : NRM_UNAVAILABLE;
    if (!s_begin_pending(self) && PQtransactionStatus(self->conn) != PQTRANS_INTRANS)
        return s_exec(self, name, p, false, NULL, err); /* no transaction to carry it: now */
    if (self->deferred_count == S_MAX_DEFERRED &&
        s_exec_pipelined(self, NULL, NULL, false, NULL, err) != NRM_OK) /* full: send them */
        return err ? err->status : NRM_INTERNAL;
    if (self->deferred_count == 0)
        self->deferred_generation = self->generation;
    s_deferred_t *d = &self->deferred[self->deferred_count++];
    *d = (s_deferred_t){.name = name, .params = *p};
    size_t total = 0, lens[NRM_DB_MAX_PARAMS];
    for (int i = 0; i < p->count; i++) {
        lens[i] = !p->values[i]   ? 0
                  : p->formats[i] ? (size_t)p->lengths[i]
                                  : strlen(p->values[i]) + 1;
        total += lens[i];
    }
    d->copy = nrm_xmalloc(total ? total : 1);
    for (int i = 0, at = 0; i < p->count; at += (int)lens[i], i++) {
        if (!p->values[i])
            continue;
        memcpy(d->copy + at, p->values[i], lens[i]);
        d->params.values[i] = d->copy + at;
    }
    return NRM_OK;
}

/* Ends the entries from index from on: counts added to their counters when committed, else
 * dropped; callbacks told which. The entries are gone (and the floor no higher than from)
 * before any callback runs. */
static void s_counts_end_from(nrm_db_t *self, size_t from, bool committed)
{
    size_t n = self->counts_n;
    self->counts_n = from;
    if (self->counts_floor > from)
        self->counts_floor = from;
    for (size_t i = from; i < n; i++) {
        s_count_t c = self->counts[i];
        if (c.counter && committed)
            *c.counter += c.n;
        else if (!c.counter)
            c.fn(c.arg, committed);
    }
}

/* Ends the transaction's counts and callbacks (committed: it did). */
static void s_counts_end(nrm_db_t *self, bool committed)
{
    self->in_transaction = false;
    s_counts_end_from(self, 0, committed);
}

/* Appends an entry (growing the array). */
static void s_counts_add(nrm_db_t *self, s_count_t entry)
{
    if (self->counts_n == self->counts_cap) {
        self->counts_cap = self->counts_cap ? 2 * self->counts_cap : 8;
        self->counts = nrm_xreallocarray(self->counts, self->counts_cap, sizeof *self->counts);
    }
    self->counts[self->counts_n++] = entry;
}

void nrm_db_count_on_commit(nrm_db_t *self, int64_t *counter, int64_t n)
{
    if (!self->in_transaction) {
        *counter += n;
        return;
    }
    for (size_t i = self->counts_floor; i < self->counts_n; i++)
        if (self->counts[i].counter == counter) {
            self->counts[i].n += n;
            return;
        }
    s_counts_add(self, (s_count_t){counter, n, NULL, NULL});
}

void nrm_db_on_end(nrm_db_t *self, nrm_db_end_fn fn, void *arg)
{
    if (!self->in_transaction) {
        fn(arg, false);
        return;
    }
    s_counts_add(self, (s_count_t){NULL, 0, fn, arg});
}

size_t nrm_db_counts_mark(nrm_db_t *self)
{
    self->counts_floor = self->counts_n;
    return self->counts_n;
}

void nrm_db_counts_undo(nrm_db_t *self, size_t mark)
{
    if (mark < self->counts_n)
        s_counts_end_from(self, mark, false);
}

nrm_status_t nrm_db_begin(nrm_db_t *self, nrm_error_t *err)
{
    s_counts_end(self, false); /* a transaction never ended counts nothing */
    if (nrm_db_connect(self, NULL, err) != NRM_OK)
        return err ? err->status : NRM_UNAVAILABLE;
    s_deferred_clear(self);
    nrm_status_t st = nrm_db_defer(self, "BEGIN", err);
    self->in_transaction = st == NRM_OK;
    return st;
}

/* True when a transaction was begun (deferred) and nothing has been sent in it yet. */
static bool s_begin_pending(const nrm_db_t *self)
{
    return self->deferred_count > 0 && self->deferred[0].sql &&
           strcmp(self->deferred[0].sql, "BEGIN") == 0;
}

/* Whether COMMIT may be sent: a live transaction on the connection it began on. */
static nrm_status_t s_commit_ready(nrm_db_t *self, nrm_error_t *err)
{
    if (!nrm_db_connected(self))
        return nrm_fail(err, NRM_UNAVAILABLE, NULL, "database unavailable");
    /* COMMIT "succeeds" on an aborted transaction (it rolls back) and on a connection made
     * after the transaction's own was lost (there is none): neither committed anything */
    PGTransactionStatusType ts = PQtransactionStatus(self->conn);
    if (ts == PQTRANS_INTRANS)
        return NRM_OK;
    nrm_db_rollback(self);
    nrm_log_warn("commit without a live transaction", "{s:s, s:s}", "schema", self->schema, "state",
                 ts == PQTRANS_INERROR ? "aborted" : "none");
    return ts == PQTRANS_INERROR ? nrm_fail(err, NRM_INTERNAL, NULL, "transaction aborted")
                                 : nrm_fail(err, NRM_UNAVAILABLE, NULL, "database unavailable");
}

/* nrm_db_commit's work; its counts are the caller's. */
static nrm_status_t s_commit(nrm_db_t *self, nrm_error_t *err)
{
    if (s_deferred_statements(self)) { /* they, and what they need deferred, go with COMMIT */
        if (!s_begin_pending(self) && s_commit_ready(self, err) != NRM_OK)
            return err ? err->status : NRM_UNAVAILABLE;
        if (nrm_db_connect(self, NULL, err) != NRM_OK || s_deferred_usable(self, err) != NRM_OK)
            return err ? err->status : NRM_UNAVAILABLE;
        return s_exec_pipelined(self, NULL, NULL, true, NULL, err);
    }
    if (s_begin_pending(self)) {
        s_deferred_clear(self); /* nothing ran in the transaction: nothing to commit */
        return NRM_OK;
    }
    s_deferred_clear(self); /* a savepoint not taken yet has nothing to keep */
    if (s_commit_ready(self, err) != NRM_OK)
        return err ? err->status : NRM_UNAVAILABLE;
    return nrm_db_sql(self, "COMMIT", err);
}

nrm_status_t nrm_db_commit(nrm_db_t *self, nrm_error_t *err)
{
    nrm_status_t st = s_commit(self, err);
    s_counts_end(self, st == NRM_OK);
    return st;
}

nrm_status_t nrm_db_exec_commit(nrm_db_t *self, const char *name, const nrm_params_t *params,
                                nrm_error_t *err)
{
    nrm_status_t st = !s_begin_pending(self) && s_commit_ready(self, err) != NRM_OK
                          ? (err ? err->status : NRM_UNAVAILABLE)
                          : s_exec(self, name, params, true, NULL, err);
    s_counts_end(self, st == NRM_OK);
    return st;
}

void nrm_db_rollback(nrm_db_t *self)
{
    s_counts_end(self, false);
    s_deferred_clear(self);
    if (!nrm_db_connected(self))
        return;
    if (PQtransactionStatus(self->conn) == PQTRANS_IDLE)
        return;
    PGresult *res = PQexec(self->conn, "ROLLBACK");
    PQclear(res);
}

int64_t nrm_db_int(const PGresult *res, int row, int col)
{
    if (PQgetisnull(res, row, col))
        return 0;
    const char *v = PQgetvalue(res, row, col);
    switch (PQftype(res, col)) {
    case NRM_OID_BOOL:
        return v[0] != 0;
    case NRM_OID_INT2: {
        uint16_t x;
        memcpy(&x, v, sizeof x);
        return (int16_t)ntohs(x);
    }
    case NRM_OID_INT4:
    case NRM_OID_OID: {
        uint32_t x;
        memcpy(&x, v, sizeof x);
        return (int32_t)ntohl(x);
    }
    case NRM_OID_INT8: {
        uint64_t x;
        memcpy(&x, v, sizeof x);
        return (int64_t)be64toh(x);
    }
    default:
        return strtoll(v, NULL, 10);
    }
}

const char *nrm_db_text(const PGresult *res, int row, int col)
{
    return PQgetisnull(res, row, col) ? "" : PQgetvalue(res, row, col);
}

const uint8_t *nrm_db_bytes(const PGresult *res, int row, int col, size_t *len)
{
    *len = PQgetisnull(res, row, col) ? 0 : (size_t)PQgetlength(res, row, col);
    return (const uint8_t *)PQgetvalue(res, row, col);
}

bool nrm_db_is_null(const PGresult *res, int row, int col)
{
    return PQgetisnull(res, row, col);
}
