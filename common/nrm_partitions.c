#include "nrm_partitions.h"
#include "nrm_log.h"
#include "nrm_pgarray.h"

/* The stream's row, made on first use and locked (the conflict's update takes the row lock and
 * reads its latest version): one statement. */
static const char s_sql_stream_take[] =
    "INSERT INTO checkpoints (stream) VALUES ($1)"
    " ON CONFLICT (stream) DO UPDATE SET seq = checkpoints.seq RETURNING seq";
static const char s_sql_stream_set[] =
    "UPDATE checkpoints SET seq = greatest(seq, $2), updated_at = now() WHERE stream = $1";
static const char s_sql_all[] = "SELECT part, partitions, seq FROM checkpoint_partitions"
                                " WHERE stream = $1 ORDER BY part FOR UPDATE";
static const char s_sql_drop[] = "DELETE FROM checkpoint_partitions WHERE stream = $1";
static const char s_sql_create[] =
    "INSERT INTO checkpoint_partitions (stream, part, partitions, seq)"
    " SELECT $1, g, $2, $3 FROM generate_series(0, $2 - 1) AS g";
static const char s_sql_take[] = "SELECT seq, partitions FROM checkpoint_partitions"
                                 " WHERE stream = $1 AND part = $2 FOR UPDATE SKIP LOCKED";
static const char s_sql_move[] = "UPDATE checkpoint_partitions SET seq = $3, updated_at = now()"
                                 " WHERE stream = $1 AND ($2 < 0 OR part = $2) AND seq < $3";
static const char s_sql_advance[] =
    "UPDATE checkpoint_partitions SET seq = $5, updated_at = now() WHERE stream = $1 AND part IN"
    " (SELECT part FROM checkpoint_partitions WHERE stream = $1 AND partitions = $2"
    " AND part = ANY ($3::int[]) AND seq >= $4 AND seq < $5 FOR UPDATE SKIP LOCKED)";
static const char s_sql_refresh[] =
    "WITH m AS (SELECT min(seq) AS s FROM checkpoint_partitions WHERE stream = $1),"
    " u AS (UPDATE checkpoints c SET seq = m.s, updated_at = now() FROM m"
    " WHERE c.stream = $1 AND m.s > c.seq RETURNING 1) SELECT s FROM m";

void nrm_partitions_prepare(nrm_db_t *db)
{
    nrm_db_statement(db, "partitions_stream_take", s_sql_stream_take);
    nrm_db_statement(db, "partitions_stream_set", s_sql_stream_set);
    nrm_db_statement(db, "partitions_all", s_sql_all);
    nrm_db_statement(db, "partitions_drop", s_sql_drop);
    nrm_db_statement(db, "partitions_create", s_sql_create);
    nrm_db_statement(db, "partitions_take", s_sql_take);
    nrm_db_statement(db, "partitions_move", s_sql_move);
    nrm_db_statement(db, "partitions_advance", s_sql_advance);
    nrm_db_statement(db, "partitions_refresh", s_sql_refresh);
}

/* In the open transaction: the layout, lowest and highest seq of the stream's rows (locked). */
static nrm_status_t s_rows(nrm_db_t *db, const char *stream, int *count, int *layout, int64_t *min,
                           int64_t *max, nrm_error_t *err)
{
    nrm_params_t p = {0};
    nrm_params_text(&p, stream);
    PGresult *res = NULL;
    nrm_status_t st = nrm_db_exec(db, "partitions_all", &p, &res, err);
    if (st != NRM_OK)
        return st;
    *count = PQntuples(res);
    *layout = *count ? (int)nrm_db_int(res, 0, 1) : 0;
    for (int i = 0; i < *count; i++) {
        int64_t seq = nrm_db_int(res, i, 2);
        if (i == 0 || seq < *min)
            *min = seq;
        if (i == 0 || seq > *max)
            *max = seq;
    }
    PQclear(res);
    return NRM_OK;
}

nrm_status_t nrm_partitions_stream_take(nrm_db_t *db, const char *stream, int64_t *seq,
                                        nrm_error_t *err)
{
    nrm_params_t p = {0};
    nrm_params_text(&p, stream);
    PGresult *res = NULL;
    nrm_status_t st = nrm_db_exec(db, "partitions_stream_take", &p, &res, err);
    if (st != NRM_OK)
        return st;
    *seq = PQntuples(res) >= 1 ? nrm_db_int(res, 0, 0) : 0;
    PQclear(res);
    return NRM_OK;
}

/* In the open transaction: layout's rows, every one at seq; the stream row at least at seq. */
static nrm_status_t s_create(nrm_db_t *db, const char *stream, int layout, int64_t seq,
                             nrm_error_t *err)
{
    nrm_params_t p = {0};
    nrm_params_text(&p, stream);
    nrm_params_int(&p, layout);
    nrm_params_int(&p, seq);
    nrm_params_t q = {0};
    nrm_params_text(&q, stream);
    nrm_params_int(&q, seq);
    nrm_params_t d = {0};
    nrm_params_text(&d, stream);
    nrm_status_t st = nrm_db_exec(db, "partitions_drop", &d, NULL, err);
    if (st == NRM_OK && layout > 1)
        st = nrm_db_exec(db, "partitions_create", &p, NULL, err);
    if (st == NRM_OK)
        st = nrm_db_exec(db, "partitions_stream_set", &q, NULL, err);
    return st;
}

nrm_status_t nrm_partitions_load(nrm_db_t *db, const char *stream, int configured, int *layout,
                                 int64_t *cursor, nrm_error_t *err)
{
    nrm_status_t st = nrm_db_begin(db, err);
    int64_t stream_seq = 0, min = 0, max = 0;
    int count = 0, stored = 0;
    if (st == NRM_OK)
        st = nrm_partitions_stream_take(db, stream, &stream_seq, err);
    if (st == NRM_OK)
        st = s_rows(db, stream, &count, &stored, &min, &max, err);
    if (st == NRM_OK) {
        if (count == 0 && configured <= 1) { /* unpartitioned, as ever */
            *layout = 1;
            *cursor = stream_seq;
        } else if (count == 0) {
            st = s_create(db, stream, configured, stream_seq, err);
            *layout = configured;
            *cursor = stream_seq;
        } else if (stored == configured && count == configured) {
            *layout = configured;
            *cursor = min;
        } else if (min == max) { /* caught up: the new layout starts where every row is */
            st = s_create(db, stream, configured, min, err);
            *layout = configured > 1 ? configured : 1;
            *cursor = min;
            nrm_log_info("consumer partitions changed", "{s:s, s:i, s:i}", "stream", stream, "from",
                         stored, "to", configured);
        } else { /* rows apart: keep their layout until they meet */
            *layout = stored;
            *cursor = min;
            nrm_log_warn("consumer partitions kept until the stream catches up", "{s:s, s:i, s:i}",
                         "stream", stream, "stored", stored, "configured", configured);
        }
    }
    if (st == NRM_OK)
        st = nrm_db_commit(db, err);
    if (st != NRM_OK)
        nrm_db_rollback(db);
    return st;
}

int nrm_partitions_take(nrm_db_t *db, const char *stream, int part, int layout, int64_t *stored,
                        nrm_error_t *err)
{
    nrm_params_t p = {0};
    nrm_params_text(&p, stream);
    nrm_params_int(&p, part);
    PGresult *res = NULL;
    if (nrm_db_exec(db, "partitions_take", &p, &res, err) != NRM_OK)
        return -1;
    int taken = 0;
    if (PQntuples(res) == 1) {
        *stored = nrm_db_int(res, 0, 0);
        taken = nrm_db_int(res, 0, 1) == layout ? 1 : 2;
    }
    PQclear(res);
    return taken;
}

nrm_status_t nrm_partitions_take_all(nrm_db_t *db, const char *stream, int layout, int64_t *stored,
                                     nrm_error_t *err)
{
    nrm_params_t p = {0};
    nrm_params_text(&p, stream);
    PGresult *res = NULL;
    nrm_status_t st = nrm_db_exec(db, "partitions_all", &p, &res, err);
    if (st != NRM_OK)
        return st;
    int n = PQntuples(res);
    bool ok = n == layout;
    for (int i = 0; ok && i < n; i++) {
        ok = nrm_db_int(res, i, 0) == i && nrm_db_int(res, i, 1) == layout;
        stored[i] = nrm_db_int(res, i, 2);
    }
    PQclear(res);
    return ok ? NRM_OK : nrm_fail(err, NRM_FAILED_PRECONDITION, NULL, "partition layout changed");
}

nrm_status_t nrm_partitions_move(nrm_db_t *db, const char *stream, int part, int64_t seq,
                                 nrm_error_t *err)
{
    nrm_params_t p = {0};
    nrm_params_text(&p, stream);
    nrm_params_int(&p, part);
    nrm_params_int(&p, seq);
    return nrm_db_exec(db, "partitions_move", &p, NULL, err);
}

void nrm_partitions_advance(nrm_db_t *db, const char *stream, int layout, const bool *has,
                            int64_t from, int64_t to)
{
    nrm_pgarray_t parts;
    nrm_pgarray_init(&parts);
    for (int i = 0; i < layout; i++)
        if (!has[i])
            nrm_pgarray_int(&parts, i);
    if (parts.count == 0) {
        nrm_pgarray_free(&parts);
        return; /* every partition had events */
    }
    nrm_params_t p = {0};
    nrm_params_text(&p, stream);
    nrm_params_int(&p, layout);
    nrm_params_text(&p, nrm_pgarray_close(&parts));
    nrm_params_int(&p, from);
    nrm_params_int(&p, to);
    nrm_error_t err;
    nrm_error_clear(&err);
    if (nrm_db_exec(db, "partitions_advance", &p, NULL, &err) != NRM_OK)
        nrm_log_warn("partitions not advanced", "{s:s, s:s}", "stream", stream, "message",
                     err.message);
    nrm_pgarray_free(&parts);
}

int64_t nrm_partitions_refresh(nrm_db_t *db, const char *stream)
{
    nrm_params_t p = {0};
    nrm_params_text(&p, stream);
    PGresult *res = NULL;
    if (nrm_db_exec(db, "partitions_refresh", &p, &res, NULL) != NRM_OK)
        return -1;
    int64_t min = PQntuples(res) == 1 && !nrm_db_is_null(res, 0, 0) ? nrm_db_int(res, 0, 0) : -1;
    PQclear(res);
    return min;
}
