#include "nrm_consumer.h"
#include "nrm_client.h"
#include "nrm_log.h"
#include "nrm_time.h"

#define S_BATCH 500
#define S_RCVHWM 100000
#define S_TICK_MS 1000
#define S_FETCH_TIMEOUT_MS 5000

static const char s_sql_checkpoint_init[] =
    "INSERT INTO checkpoints (stream) VALUES ($1) ON CONFLICT DO NOTHING";
static const char s_sql_checkpoint_lock[] =
    "SELECT seq FROM checkpoints WHERE stream = $1 FOR UPDATE";
static const char s_sql_checkpoint_move[] =
    "UPDATE checkpoints SET seq = $2, updated_at = now() WHERE stream = $1";

struct nrm_consumer_t {
    nrm_db_t *db;
    char *own_stream;
    char *source_stream;
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
};

nrm_consumer_t *nrm_consumer_new(nrm_db_t *db, const nrm_consumer_spec_t *spec)
{
    nrm_consumer_t *self = calloc(1, sizeof *self);
    if (!self)
        return NULL;
    self->db = db;
    self->own_stream = strdup(spec->own_stream);
    self->source_stream = strdup(spec->source_stream);
    self->events_endpoint = strdup(spec->events_endpoint);
    self->prefixes = spec->prefixes;
    self->apply = spec->apply;
    self->ctx = spec->ctx;
    self->flush = spec->flush;
    self->reset = spec->reset;
    self->pending = calloc(S_BATCH, sizeof *self->pending);
    self->sub = zsock_new(ZMQ_SUB);
    self->client = nrm_client_new(spec->api_endpoint, spec->agency_id, spec->curve);
    if (!self->own_stream || !self->source_stream || !self->pending || !self->sub ||
        !self->client) {
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
    if (self->pending)
        s_drop_pending(self);
    free(self->pending);
    zsock_destroy(&self->sub);
    nrm_client_destroy(&self->client);
    free(self->own_stream);
    free(self->source_stream);
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

/* Locks the checkpoint row of the stream in the open transaction; returns its value or -1. */
static int64_t s_lock_checkpoint(nrm_consumer_t *self, nrm_error_t *err)
{
    nrm_params_t p = {0};
    nrm_params_text(&p, self->source_stream);
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
    nrm_tx_t tx = {self->db, self->own_stream, "", nrm_now_ms(), &err, 0};
    if (self->reset)
        self->reset(self->ctx);
    for (size_t i = first; st == NRM_OK && i < n; i++) {
        if (!nrm_topic_matches(events[i]->topic, self->prefixes))
            continue;
        tx.causation_id = events[i]->event_id;
        st = self->apply(self->ctx, &tx, events[i]);
    }
    if (st == NRM_OK && self->flush && n > first)
        st = self->flush(self->ctx, &tx);
    int64_t last = n > first ? events[n - 1]->seq : stored;
    if (st == NRM_OK && n > first) {
        nrm_params_t p = {0};
        nrm_params_text(&p, self->source_stream);
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
        if (st != NRM_FAILED_PRECONDITION)
            nrm_log_warn("batch not applied", "{s:s, s:s, s:s}", "stream", self->source_stream,
                         "status", nrm_status_name(st), "message", err.message);
        return st;
    }
    self->applied += (int64_t)(n - first);
    self->checkpoint = last;
    return NRM_OK;
}

/* Applies and frees the pending live events. */
static void s_flush_pending(nrm_consumer_t *self)
{
    if (self->pending_count == 0)
        return;
    s_apply_batch(self, self->pending, self->pending_count);
    s_drop_pending(self);
}

/* Asks the source for the events after the checkpoint, unless a Fetch is already in flight. */
static void s_fetch(nrm_consumer_t *self)
{
    if (self->fetch_id[0] && nrm_mono_ms() - self->fetch_sent_ms < S_FETCH_TIMEOUT_MS)
        return;
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
    if (zloop_reader(loop, self->sub, s_on_live, self) != 0 ||
        zloop_reader(loop, nrm_client_socket(self->client), s_on_fetched, self) != 0 ||
        zloop_timer(loop, S_TICK_MS, 0, s_on_tick, self) < 0)
        return -1;
    s_load_checkpoint(self);
    self->need_fetch = true;
    s_fetch(self);
    return 0;
}
