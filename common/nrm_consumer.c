#include "nrm_alloc.h"
#include "nrm_consumer.h"
#include "nrm_client.h"
#include "nrm_log.h"
#include "nrm_time.h"

#define S_BATCH 500
#define S_RCVHWM 100000
#define S_TICK_MS 1000
#define S_FETCH_TIMEOUT_MS 5000
#define S_BACKOFF_MAX_MS 30000
#define S_ERROR_TEXT 160

static const char s_sql_checkpoint_init[] =
    "INSERT INTO checkpoints (stream) VALUES ($1) ON CONFLICT DO NOTHING";
static const char s_sql_checkpoint_lock[] =
    "SELECT seq FROM checkpoints WHERE stream = $1 FOR UPDATE";
static const char s_sql_checkpoint_move[] =
    "UPDATE checkpoints SET seq = $2, updated_at = now() WHERE stream = $1";
static const char s_sql_quarantine[] =
    "INSERT INTO consumer_quarantine (consumer, stream, seq, topic, event_id, attempts,"
    " last_error, payload) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
    " ON CONFLICT (stream, seq) DO UPDATE SET attempts = EXCLUDED.attempts RETURNING id";

struct nrm_consumer_t {
    nrm_db_t *db;
    char *own_stream;
    char *source_stream;
    char *checkpoint_name; /* the checkpoints row */
    char *events_endpoint;
    const char *const *prefixes;
    nrm_apply_fn apply;
    void *ctx;
    nrm_flush_fn flush;
    nrm_reset_fn reset;
    zsock_t *sub;
    nrm_client_t *client;
    int64_t checkpoint;       /* last sequence known applied */
    int64_t known_head;       /* highest head heard of */
    int64_t applied;          /* events applied by this instance */
    Nrm__V1__Event **pending; /* live events following checkpoint, in order (owned) */
    size_t pending_count;
    bool need_fetch;
    char fetch_id[37]; /* request_id of the Fetch in flight, "" for none */
    int64_t fetch_sent_ms;
    zloop_t *loop;
    int max_attempts;                 /* failed attempts before an event is set aside */
    int backoff_ms;                   /* wait after the first failure, doubled after each */
    int64_t failing_seq;              /* the event whose application failed, 0 for none */
    int failing_attempts;             /* how often in a row */
    char failing_error[S_ERROR_TEXT]; /* the last failure: status and message */
    int64_t quarantine_seq;           /* the event to set aside in the next batch, 0: none */
    int64_t retry_after_ms;           /* no batch before (monotonic clock) */
    int retry_timer;                  /* the one-shot timer of the retry, -1 for none */
    int64_t quarantined;              /* events set aside by this instance */
    int64_t narrow_until; /* after a flush failed: one event per batch up to this seq, so that a
                             failure has an owner (and can be set aside); 0: whole batches */
};

nrm_consumer_t *nrm_consumer_new(nrm_db_t *db, const nrm_consumer_spec_t *spec)
{
    nrm_consumer_t *self = nrm_xcalloc(1, sizeof *self);
    self->db = db;
    self->own_stream = nrm_xstrdup(spec->own_stream);
    self->source_stream = nrm_xstrdup(spec->source_stream);
    self->checkpoint_name = nrm_xstrdup(spec->checkpoint ? spec->checkpoint : spec->source_stream);
    self->events_endpoint = nrm_xstrdup(spec->events_endpoint);
    self->prefixes = spec->prefixes;
    self->apply = spec->apply;
    self->ctx = spec->ctx;
    self->max_attempts = spec->max_attempts > 0 ? spec->max_attempts : NRM_CONSUMER_MAX_ATTEMPTS;
    self->backoff_ms = spec->backoff_ms > 0 ? spec->backoff_ms : NRM_CONSUMER_BACKOFF_MS;
    self->retry_timer = -1;
    self->pending = nrm_xcalloc(S_BATCH, sizeof *self->pending);
    self->flush = spec->flush;
    self->reset = spec->reset;
    self->sub = zsock_new(ZMQ_SUB);
    self->client = nrm_client_new(spec->api_endpoint, spec->agency_id, spec->curve);
    if (!self->sub || !self->client) {
        nrm_consumer_destroy(&self);
        return NULL;
    }
    zsock_set_rcvhwm(self->sub, S_RCVHWM);
    zsock_set_subscribe(self->sub, "");
    nrm_auth_apply_client(self->sub, spec->curve);
    if (zsock_connect(self->sub, "%s", spec->events_endpoint) != 0)
        nrm_consumer_destroy(&self);
    nrm_db_statement(db, "consumer_checkpoint_init", s_sql_checkpoint_init);
    nrm_db_statement(db, "consumer_checkpoint_lock", s_sql_checkpoint_lock);
    nrm_db_statement(db, "consumer_checkpoint_move", s_sql_checkpoint_move);
    nrm_db_statement(db, "consumer_quarantine", s_sql_quarantine);
    return self;
}

/* Frees the pending live events. */
static void s_drop_pending(nrm_consumer_t *self)
{
    for (size_t i = 0; i < self->pending_count; i++)
        nrm__v1__event__free_unpacked(self->pending[i], NULL);
    self->pending_count = 0;
}

void nrm_consumer_destroy(nrm_consumer_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    nrm_consumer_t *self = *self_p;
    if (self->loop && self->retry_timer >= 0)
        zloop_timer_end(self->loop, self->retry_timer);
    if (self->pending)
        s_drop_pending(self);
    free(self->pending);
    zsock_destroy(&self->sub);
    nrm_client_destroy(&self->client);
    free(self->own_stream);
    free(self->source_stream);
    free(self->checkpoint_name);
    free(self->events_endpoint);
    free(self);
    *self_p = NULL;
}

const char *nrm_consumer_stream(const nrm_consumer_t *self)
{
    return self->source_stream;
}

int64_t nrm_consumer_checkpoint(const nrm_consumer_t *self)
{
    return self->checkpoint;
}

int64_t nrm_consumer_known_head(const nrm_consumer_t *self)
{
    return self->known_head > self->checkpoint ? self->known_head : self->checkpoint;
}

int64_t nrm_consumer_applied(const nrm_consumer_t *self)
{
    return self->applied;
}

int64_t nrm_consumer_quarantined(const nrm_consumer_t *self)
{
    return self->quarantined;
}

/* Sets ev aside in the open transaction instead of applying it: a consumer_quarantine row and
 * a consumer.quarantined event on the own stream. */
static nrm_status_t s_quarantine(nrm_consumer_t *self, nrm_tx_t *tx, const Nrm__V1__Event *ev)
{
    size_t len = 0;
    uint8_t *payload = nrm_event_pack(ev, &len);
    nrm_params_t p = {0};
    nrm_params_text(&p, self->own_stream);
    nrm_params_text(&p, self->source_stream);
    nrm_params_int(&p, ev->seq);
    nrm_params_text(&p, ev->topic ? ev->topic : "");
    nrm_params_text(&p, ev->event_id ? ev->event_id : "");
    nrm_params_int(&p, self->failing_attempts);
    nrm_params_text(&p, self->failing_error);
    nrm_params_bytes(&p, payload, len);
    PGresult *res = NULL;
    nrm_status_t st = nrm_db_exec(self->db, "consumer_quarantine", &p, &res, tx->err);
    free(payload);
    if (st != NRM_OK)
        return st;
    int64_t id = nrm_db_int(res, 0, 0);
    PQclear(res);
    Nrm__V1__ConsumerQuarantined q = NRM__V1__CONSUMER_QUARANTINED__INIT;
    q.quarantine_id = id;
    q.stream = self->source_stream;
    q.seq = ev->seq;
    q.topic = ev->topic ? ev->topic : "";
    q.attempts = self->failing_attempts;
    q.last_error = self->failing_error;
    st = nrm_tx_emit_body(tx, NULL, NRM__V1__EVENT__BODY_CONSUMER_QUARANTINED, &q);
    if (st == NRM_OK)
        nrm_log_error("event set aside after failed attempts", "{s:s, s:I, s:s, s:i, s:s}",
                      "stream", self->source_stream, "seq", (json_int_t)ev->seq, "topic", q.topic,
                      "attempts", self->failing_attempts, "error", self->failing_error);
    return st;
}

static int s_on_retry(zloop_t *loop, int timer_id, void *arg);

/* Notes that applying event seq failed with st: counts the attempts in a row, waits with an
 * increasing backoff, and after max_attempts marks the event to be set aside next time. */
static void s_note_failure(nrm_consumer_t *self, int64_t seq, nrm_status_t st,
                           const nrm_error_t *err)
{
    if (seq != self->failing_seq) {
        self->failing_seq = seq;
        self->failing_attempts = 0;
    }
    self->failing_attempts++;
    snprintf(self->failing_error, sizeof self->failing_error, "%s: %s", nrm_status_name(st),
             err->message[0] ? err->message : "failed");
    int64_t wait = self->backoff_ms;
    for (int i = 1; i < self->failing_attempts && wait < S_BACKOFF_MAX_MS; i++)
        wait *= 2;
    if (wait > S_BACKOFF_MAX_MS)
        wait = S_BACKOFF_MAX_MS;
    if (self->failing_attempts >= self->max_attempts) {
        self->quarantine_seq = seq;
        wait = 0;
    }
    nrm_log_warn("event not applied", "{s:s, s:I, s:i, s:s}", "stream", self->source_stream, "seq",
                 (json_int_t)seq, "attempt", self->failing_attempts, "error", self->failing_error);
    self->retry_after_ms = nrm_mono_ms() + wait;
    if (self->loop && self->retry_timer < 0)
        self->retry_timer =
            zloop_timer(self->loop, (size_t)(wait > 0 ? wait : 1), 1, s_on_retry, self);
}

/* Locks the checkpoint row of the stream in the open transaction; returns its value or -1. */
static int64_t s_lock_checkpoint(nrm_consumer_t *self, nrm_error_t *err)
{
    nrm_params_t p = {0};
    nrm_params_text(&p, self->checkpoint_name);
    PGresult *res = NULL;
    if (nrm_db_exec(self->db, "consumer_checkpoint_init", &p, NULL, err) != NRM_OK ||
        nrm_db_exec(self->db, "consumer_checkpoint_lock", &p, &res, err) != NRM_OK)
        return -1;
    int64_t seq = PQntuples(res) == 1 ? nrm_db_int(res, 0, 0) : -1;
    PQclear(res);
    return seq;
}

/* Applies the events not yet applied, in one transaction with the checkpoint. events are in
 * increasing, contiguous seq order. Returns OK (also when all were already applied), or the
 * failure; on a gap after the stored checkpoint, FAILED_PRECONDITION and a fetch is due. */
static nrm_status_t s_apply_batch(nrm_consumer_t *self, Nrm__V1__Event *const *events, size_t n)
{
    nrm_error_t err;
    nrm_error_clear(&err);
    if (nrm_db_begin(self->db, &err) != NRM_OK)
        return err.status;
    int64_t stored = s_lock_checkpoint(self, &err);
    nrm_status_t st = stored < 0 ? (err.status != NRM_OK ? err.status : NRM_INTERNAL) : NRM_OK;
    size_t first = 0;
    while (st == NRM_OK && first < n && events[first]->seq <= stored)
        first++;
    if (st == NRM_OK && first < n && events[first]->seq != stored + 1)
        st = nrm_fail(&err, NRM_FAILED_PRECONDITION, NULL, "gap after checkpoint");
    if (st == NRM_OK && first < n && events[first]->seq <= self->narrow_until && n > first + 1) {
        n = first + 1; /* the rest is fetched again after this one */
        self->need_fetch = true;
    }
    nrm_tx_t tx = {self->db, self->own_stream, "", nrm_now_ms(), &err, 0};
    int64_t failed_seq = 0, set_aside = 0;
    if (self->reset)
        self->reset(self->ctx);
    for (size_t i = first; st == NRM_OK && i < n; i++) {
        if (!nrm_topic_matches(events[i]->topic, self->prefixes))
            continue;
        tx.causation_id = events[i]->event_id;
        if (events[i]->seq == self->quarantine_seq) {
            st = s_quarantine(self, &tx, events[i]);
            set_aside = events[i]->seq;
            continue;
        }
        st = self->apply(self->ctx, &tx, events[i]);
        if (st != NRM_OK)
            failed_seq = events[i]->seq;
    }
    if (st == NRM_OK && self->flush && n > first) {
        st = self->flush(self->ctx, &tx);
        /* what the batch gathered failed as a whole: alone, an event owns its failure; in a
         * batch, the batch is applied again one event at a time to find the owner */
        if (st != NRM_OK && st != NRM_UNAVAILABLE) {
            if (n == first + 1)
                failed_seq = events[first]->seq;
            else if (events[n - 1]->seq > self->narrow_until)
                self->narrow_until = events[n - 1]->seq;
        }
    }
    int64_t last = n > first ? events[n - 1]->seq : stored;
    if (st == NRM_OK && n > first) {
        nrm_params_t p = {0};
        nrm_params_text(&p, self->checkpoint_name);
        nrm_params_int(&p, last);
        st = nrm_db_exec(self->db, "consumer_checkpoint_move", &p, NULL, &err);
    }
    if (st == NRM_OK)
        st = nrm_db_commit(self->db, &err);
    if (st != NRM_OK) {
        nrm_db_rollback(self->db);
        if (stored >= 0 && stored > self->checkpoint)
            self->checkpoint = stored;
        self->need_fetch = true;
        /* a failure of the event's own (not the database's availability) counts against it */
        if (failed_seq > 0 && st != NRM_UNAVAILABLE)
            s_note_failure(self, failed_seq, st, &err);
        else if (st != NRM_FAILED_PRECONDITION)
            nrm_log_warn("batch not applied", "{s:s, s:s, s:s}", "stream", self->source_stream,
                         "status", nrm_status_name(st), "message", err.message);
        return st;
    }
    self->applied += (int64_t)(n - first);
    self->checkpoint = last;
    if (self->narrow_until && last >= self->narrow_until)
        self->narrow_until = 0;
    if (set_aside)
        self->quarantined++;
    if (self->failing_seq && self->failing_seq <= last) {
        self->failing_seq = self->quarantine_seq = 0;
        self->failing_attempts = 0;
    }
    return NRM_OK;
}

/* Applies and frees the pending live events. */
static void s_flush_pending(nrm_consumer_t *self)
{
    if (self->pending_count == 0)
        return;
    if (nrm_mono_ms() < self->retry_after_ms) { /* waiting after a failure: fetched later */
        s_drop_pending(self);
        self->need_fetch = true;
        return;
    }
    s_apply_batch(self, self->pending, self->pending_count);
    s_drop_pending(self);
}

/* Asks the source for the events after the checkpoint, unless a Fetch is already in flight. */
static void s_fetch(nrm_consumer_t *self)
{
    if (self->fetch_id[0] && nrm_mono_ms() - self->fetch_sent_ms < S_FETCH_TIMEOUT_MS)
        return;
    if (nrm_mono_ms() < self->retry_after_ms) {
        self->need_fetch = true; /* the retry timer fetches */
        return;
    }
    Nrm__V1__Fetch fetch = NRM__V1__FETCH__INIT;
    fetch.stream = self->source_stream;
    fetch.from_seq = self->checkpoint + 1;
    fetch.max = S_BATCH;
    Nrm__V1__Request req = NRM__V1__REQUEST__INIT;
    req.body_case = NRM__V1__REQUEST__BODY_FETCH;
    req.fetch = &fetch;
    if (nrm_client_send(self->client, &req, self->fetch_id) != 0) {
        self->fetch_id[0] = '\0';
        return;
    }
    self->fetch_sent_ms = nrm_mono_ms();
    self->need_fetch = false;
}

/* Takes one live event: queue it when it follows on, drop it when old, note a gap. Owns ev. */
static void s_take_live(nrm_consumer_t *self, Nrm__V1__Event *ev)
{
    int64_t expected = self->checkpoint + (int64_t)self->pending_count + 1;
    if (ev->body_case == NRM__V1__EVENT__BODY_STREAM_HEAD) {
        if (ev->stream_head && ev->stream_head->head > self->known_head)
            self->known_head = ev->stream_head->head;
        nrm__v1__event__free_unpacked(ev, NULL);
        return;
    }
    if (ev->seq > self->known_head)
        self->known_head = ev->seq;
    if (ev->seq == expected && !self->fetch_id[0]) {
        self->pending[self->pending_count++] = ev;
        if (self->pending_count == S_BATCH)
            s_flush_pending(self);
        return;
    }
    if (ev->seq >= expected)
        self->need_fetch = true;
    nrm__v1__event__free_unpacked(ev, NULL);
}

/* SUB socket readable: take what is waiting (bounded), apply it as one batch. */
static int s_on_live(zloop_t *loop, zsock_t *sock, void *arg)
{
    nrm_consumer_t *self = arg;
    for (int i = 0; i < S_BATCH; i++) {
        zmsg_t *msg = zmsg_recv_nowait(sock);
        if (!msg)
            break;
        zframe_t *body = zmsg_last(msg);
        Nrm__V1__Event *ev =
            zmsg_size(msg) == 2 ? nrm_event_unpack(zframe_data(body), zframe_size(body)) : NULL;
        zmsg_destroy(&msg);
        if (ev && ev->stream && strcmp(ev->stream, self->source_stream) == 0)
            s_take_live(self, ev);
        else if (ev)
            nrm__v1__event__free_unpacked(ev, NULL);
    }
    s_flush_pending(self);
    if (self->need_fetch || self->known_head > self->checkpoint)
        s_fetch(self);
    return 0;
}

/* Fetch reply: apply what came, and fetch on while the source is ahead. */
static int s_on_fetched(zloop_t *loop, zsock_t *sock, void *arg)
{
    nrm_consumer_t *self = arg;
    Nrm__V1__Reply *reply;
    while ((reply = nrm_client_receive(self->client)) != NULL) {
        bool awaited = self->fetch_id[0] && strcmp(reply->request_id, self->fetch_id) == 0;
        if (awaited) {
            self->fetch_id[0] = '\0';
            if (reply->status == NRM_OK &&
                reply->result_case == NRM__V1__REPLY__RESULT_FETCH_RESULT) {
                Nrm__V1__FetchResult *fr = reply->fetch_result;
                if (fr->head > self->known_head)
                    self->known_head = fr->head;
                s_drop_pending(self);
                if (fr->n_events == 0 || s_apply_batch(self, fr->events, fr->n_events) == NRM_OK)
                    self->need_fetch = self->known_head > self->checkpoint;
            } else {
                nrm_log_warn("fetch refused", "{s:s, s:s}", "stream", self->source_stream, "status",
                             nrm_status_name(reply->status));
            }
        }
        nrm__v1__reply__free_unpacked(reply, NULL);
    }
    if (self->need_fetch)
        s_fetch(self);
    return 0;
}

/* The wait after a failure is over: fetch the failed batch again. */
static int s_on_retry(zloop_t *loop, int timer_id, void *arg)
{
    nrm_consumer_t *self = arg;
    self->retry_timer = -1;
    self->need_fetch = true;
    s_fetch(self);
    return 0;
}

/* Periodic check: catch up when a heartbeat or a gap says we are behind. */
static int s_on_tick(zloop_t *loop, int timer_id, void *arg)
{
    nrm_consumer_t *self = arg;
    if (self->need_fetch || self->known_head > self->checkpoint)
        s_fetch(self);
    return 0;
}

/* Loads the stored checkpoint (0 when the database cannot say yet). */
static void s_load_checkpoint(nrm_consumer_t *self)
{
    if (nrm_db_begin(self->db, NULL) != NRM_OK)
        return;
    int64_t stored = s_lock_checkpoint(self, NULL);
    if (stored >= 0 && nrm_db_commit(self->db, NULL) == NRM_OK)
        self->checkpoint = stored;
    nrm_db_rollback(self->db);
}

int nrm_consumer_attach(nrm_consumer_t *self, zloop_t *loop)
{
    self->loop = loop;
    if (zloop_reader(loop, self->sub, s_on_live, self) != 0 ||
        zloop_reader(loop, nrm_client_socket(self->client), s_on_fetched, self) != 0 ||
        zloop_timer(loop, S_TICK_MS, 0, s_on_tick, self) < 0)
        return -1;
    s_load_checkpoint(self);
    self->need_fetch = true;
    s_fetch(self);
    return 0;
}
