#include "nrm_quarantine.h"
#include "nrm_event.h"
#include "nrm_log.h"

#define S_LIST_DEFAULT 50
#define S_LIST_MAX 500

static const char s_sql_list[] =
    "SELECT id, stream, seq, topic, event_id, attempts, last_error,"
    " (extract(epoch FROM quarantined_at) * 1000)::bigint, consumer,"
    " (SELECT count(*) FROM consumer_quarantine WHERE $1 = '' OR stream = $1)"
    " FROM consumer_quarantine WHERE $1 = '' OR stream = $1 ORDER BY id DESC LIMIT $2";
static const char s_sql_take[] =
    "DELETE FROM consumer_quarantine WHERE id = $1 RETURNING consumer, stream, seq, payload";
static const char s_sql_count[] = "SELECT count(*) FROM consumer_quarantine";

void nrm_quarantine_prepare(nrm_db_t *db)
{
    nrm_db_statement(db, "quarantine_list", s_sql_list);
    nrm_db_statement(db, "quarantine_take", s_sql_take);
    nrm_db_statement(db, "quarantine_count", s_sql_count);
}

int64_t nrm_quarantine_count(nrm_db_t *db)
{
    PGresult *res = NULL;
    if (nrm_db_exec(db, "quarantine_count", NULL, &res, NULL) != NRM_OK)
        return -1;
    int64_t n = nrm_db_int(res, 0, 0);
    PQclear(res);
    return n;
}

nrm_status_t nrm_quarantine_list(nrm_call_t *call)
{
    const Nrm__V1__ListQuarantine *req = call->request->list_quarantine;
    if (req->max < 0 || req->max > S_LIST_MAX)
        return nrm_fail(call->tx.err, NRM_INVALID_ARGUMENT, "list_quarantine.max",
                        "max must be 0..%d", S_LIST_MAX);
    nrm_params_t p = {0};
    nrm_params_text(&p, req->stream ? req->stream : "");
    nrm_params_int(&p, req->max ? req->max : S_LIST_DEFAULT);
    PGresult *res = NULL;
    nrm_status_t st = nrm_db_exec(call->tx.db, "quarantine_list", &p, &res, call->tx.err);
    if (st != NRM_OK)
        return st;
    int rows = PQntuples(res);
    Nrm__V1__QuarantineList *list = nrm_call_alloc(call, sizeof *list);
    nrm__v1__quarantine_list__init(list);
    list->events = nrm_call_alloc(call, (size_t)(rows ? rows : 1) * sizeof *list->events);
    for (int i = 0; i < rows; i++) {
        Nrm__V1__QuarantinedEvent *q = nrm_call_alloc(call, sizeof *q);
        nrm__v1__quarantined_event__init(q);
        q->id = nrm_db_int(res, i, 0);
        q->stream = nrm_call_strdup(call, nrm_db_text(res, i, 1));
        q->seq = nrm_db_int(res, i, 2);
        q->topic = nrm_call_strdup(call, nrm_db_text(res, i, 3));
        q->event_id = nrm_call_strdup(call, nrm_db_text(res, i, 4));
        q->attempts = (int32_t)nrm_db_int(res, i, 5);
        q->last_error = nrm_call_strdup(call, nrm_db_text(res, i, 6));
        q->quarantined_at_ms = nrm_db_int(res, i, 7);
        q->consumer = nrm_call_strdup(call, nrm_db_text(res, i, 8));
        list->total = nrm_db_int(res, i, 9);
        list->events[list->n_events++] = q;
    }
    PQclear(res);
    call->subject_id = req->stream && req->stream[0] ? req->stream : "quarantine";
    call->reply->result_case = NRM__V1__REPLY__RESULT_QUARANTINE_LIST;
    call->reply->quarantine_list = list;
    return NRM_OK;
}

nrm_status_t nrm_quarantine_retry(nrm_call_t *call, nrm_quarantine_find_fn find, void *find_ctx)
{
    const Nrm__V1__RetryQuarantined *req = call->request->retry_quarantined;
    if (req->id <= 0)
        return nrm_fail(call->tx.err, NRM_INVALID_ARGUMENT, "retry_quarantined.id",
                        "id must be positive");
    nrm_params_t p = {0};
    nrm_params_int(&p, req->id);
    PGresult *res = NULL;
    nrm_status_t st = nrm_db_exec(call->tx.db, "quarantine_take", &p, &res, call->tx.err);
    if (st != NRM_OK)
        return st;
    if (PQntuples(res) != 1) {
        PQclear(res);
        return nrm_fail(call->tx.err, NRM_NOT_FOUND, "retry_quarantined.id",
                        "no such quarantined event");
    }
    char *name = nrm_call_strdup(call, nrm_db_text(res, 0, 0));
    char *stream = nrm_call_strdup(call, nrm_db_text(res, 0, 1));
    int64_t seq = nrm_db_int(res, 0, 2);
    size_t len = 0;
    const uint8_t *payload = nrm_db_bytes(res, 0, 3, &len);
    Nrm__V1__Event *ev = nrm_event_unpack(payload, len);
    PQclear(res);
    nrm_quarantine_consumer_t consumer = {0};
    if (!ev)
        st = nrm_fail(call->tx.err, NRM_INTERNAL, NULL, "stored event unreadable");
    else if (!find(find_ctx, name, &consumer))
        st = nrm_fail(call->tx.err, NRM_FAILED_PRECONDITION, "retry_quarantined.id",
                      "this service no longer has the consumer that set the event aside");
    else if (!nrm_topic_matches(ev->topic, consumer.prefixes))
        st = nrm_fail(call->tx.err, NRM_FAILED_PRECONDITION, "retry_quarantined.id",
                      "the consumer no longer takes the event's topic");
    else {
        nrm_tx_t tx = call->tx;
        tx.causation_id = ev->event_id;
        if (consumer.reset)
            consumer.reset(consumer.ctx);
        st = consumer.apply(consumer.ctx, &tx, ev);
        if (st == NRM_OK && consumer.flush) /* a batch consumer writes what apply gathered */
            st = consumer.flush(consumer.ctx, &tx);
        call->tx.emitted = tx.emitted;
    }
    if (ev)
        nrm__v1__event__free_unpacked(ev, NULL);
    if (st != NRM_OK)
        return st;
    nrm_log_info("quarantined event applied", "{s:s, s:I}", "stream", stream, "seq",
                 (json_int_t)seq);
    Nrm__V1__QuarantineRetried *done = nrm_call_alloc(call, sizeof *done);
    nrm__v1__quarantine_retried__init(done);
    done->id = req->id;
    done->stream = stream;
    done->seq = seq;
    char *subject = nrm_call_alloc(call, 32);
    snprintf(subject, 32, "quarantine:%lld", (long long)req->id);
    call->subject_id = subject;
    call->reply->result_case = NRM__V1__REPLY__RESULT_QUARANTINE_RETRIED;
    call->reply->quarantine_retried = done;
    return NRM_OK;
}
