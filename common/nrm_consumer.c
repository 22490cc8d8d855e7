#include "nrm_alloc.h"
#include "nrm_consumer.h"
#include "nrm_client.h"
#include "nrm_log.h"
#include "nrm_partitions.h"
#include "nrm_time.h"

#include <string.h>
#include <unistd.h>

#define S_BATCH 500
#define S_RCVHWM 100000
#define S_TICK_MS 1000
#define S_FETCH_TIMEOUT_MS 5000
#define S_BACKOFF_MAX_MS 30000
#define S_STALL_MAX_MS 2000
#define S_STALL_DOUBLINGS 8 /* enough to reach S_STALL_MAX_MS from any sensible backoff_ms */
#define S_ERROR_TEXT 160
#define S_REFRESH_MS 250      /* the stream's row follows the partitions at least this often */
#define S_GUESS_PAUSE_MS 5000 /* batches lock the row first this long after a guess failed */

/* from the value read ($2) to the batch's last seq ($3); fails (serialization_failure) when
 * the row is no longer at $2 (bus migration 009) */
static const char s_sql_checkpoint_move[] = "SELECT checkpoint_advance($1, $2, $3)";
static const char s_sql_quarantine[] =
    "INSERT INTO consumer_quarantine (consumer, stream, seq, topic, event_id, attempts,"
    " last_error, payload) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
    " ON CONFLICT (consumer, stream, seq) DO UPDATE SET attempts = EXCLUDED.attempts"
    " RETURNING id";

/* The failures in a row of one event: per partition (and one for the barriers), so that two
 * events failing in different partitions each count their own attempts. */
typedef struct {
    int64_t seq;              /* the event whose application failed, 0 for none */
    int attempts;             /* how often in a row */
    char error[S_ERROR_TEXT]; /* the last failure: status and message */
    int64_t quarantine_seq;   /* the event to set aside in the next batch, 0: none */
} s_failure_t;

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
    int max_attempts;       /* failed attempts before an event is set aside */
    int backoff_ms;         /* wait after the first failure, doubled after each */
    s_failure_t *fail;      /* [0] unpartitioned; [p] partition p, [partitions] the barriers */
    int64_t retry_after_ms; /* no batch before (monotonic clock) */
    int retry_timer;        /* the one-shot timer of the retry, -1 for none */
    int stalls; /* failed batches in a row that moved nothing and no event owns (a missing grant,
                   a partition left behind): each waits twice as long before the next fetch */
    int64_t quarantined;  /* events set aside by this instance */
    int64_t narrow_until; /* after a flush failed: one event per batch up to this seq, so that a
                             failure has an owner (and can be set aside); 0: whole batches */
    int partitions;       /* 1: one checkpoint row; > 1: checkpoint_partitions */
    int configured;       /* the partitions asked for (the stored layout may differ) */
    int start;            /* the first partition this instance tries in a batch */
    bool reload;          /* the stored layout changed under us: load it again */
    int64_t lag_min;      /* the lowest partition at the last tick when behind us, -1 */
    int64_t refreshed_ms; /* the stream's row last moved (monotonic clock) */
    bool loaded;          /* the checkpoint and layout were read */
    /* one-row layout: seqs skip_base+1..skip_to were seen and none concerned the consumer, and
     * are not stored yet; skip_base is the stored checkpoint as this instance last read or
     * committed it. skip_to == skip_base: none (and then checkpoint is that stored value);
     * else checkpoint == skip_to. */
    int64_t skip_base;
    int64_t skip_to;
    int store_ms;           /* skipped seqs are stored after this long without a batch with work */
    int store_timer;        /* the one-shot timer of that move, -1 for none */
    int64_t guess_after_ms; /* no batch applied before its row is locked until then (monotonic) */
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
    self->store_timer = -1;
    self->store_ms = NRM_CONSUMER_STORE_MS;
    self->pending = nrm_xcalloc(S_BATCH, sizeof *self->pending);
    self->fail = nrm_xcalloc(NRM_CONSUMER_MAX_PARTITIONS + 1, sizeof *self->fail);
    self->configured = spec->partitions < 1 ? 1
                       : spec->partitions > NRM_CONSUMER_MAX_PARTITIONS
                           ? NRM_CONSUMER_MAX_PARTITIONS
                           : spec->partitions;
    self->partitions = self->configured;
    self->lag_min = -1;
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
    nrm_db_statement(db, "consumer_checkpoint_move", s_sql_checkpoint_move);
    nrm_db_statement(db, "consumer_quarantine", s_sql_quarantine);
    nrm_partitions_prepare(db);
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
    if (self->loop && self->store_timer >= 0)
        zloop_timer_end(self->loop, self->store_timer);
    if (self->pending)
        s_drop_pending(self);
    free(self->pending);
    free(self->fail);
    zsock_destroy(&self->sub);
    nrm_client_destroy(&self->client);
    free(self->own_stream);
    free(self->source_stream);
    free(self->checkpoint_name);
    free(self->events_endpoint);
    free(self);
    *self_p = NULL;
}

void nrm_consumer_set_store_ms(nrm_consumer_t *self, int ms)
{
    self->store_ms = ms > 0 ? ms : NRM_CONSUMER_STORE_MS;
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

/* Sets ev aside in the open transaction instead of applying it: a consumer_quarantine row named
 * by this consumer's checkpoint (a service can consume one stream twice: its own consumer and
 * the directory's) and a consumer.quarantined event on the own stream. */
static nrm_status_t s_quarantine(nrm_consumer_t *self, nrm_tx_t *tx, const Nrm__V1__Event *ev,
                                 const s_failure_t *f)
{
    size_t len = 0;
    uint8_t *payload = nrm_event_pack(ev, &len);
    nrm_params_t p = {0};
    nrm_params_text(&p, self->checkpoint_name);
    nrm_params_text(&p, self->source_stream);
    nrm_params_int(&p, ev->seq);
    nrm_params_text(&p, ev->topic ? ev->topic : "");
    nrm_params_text(&p, ev->event_id ? ev->event_id : "");
    nrm_params_int(&p, f->attempts);
    nrm_params_text(&p, f->error);
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
    q.attempts = f->attempts;
    q.last_error = (char *)f->error;
    q.consumer = self->checkpoint_name;
    st = nrm_tx_emit_body(tx, NULL, NRM__V1__EVENT__BODY_CONSUMER_QUARANTINED, &q);
    if (st == NRM_OK)
        nrm_log_error("event set aside after failed attempts", "{s:s, s:s, s:I, s:s, s:i, s:s}",
                      "consumer", self->checkpoint_name, "stream", self->source_stream, "seq",
                      (json_int_t)ev->seq, "topic", q.topic, "attempts", f->attempts, "error",
                      f->error);
    return st;
}

static int s_on_retry(zloop_t *loop, int timer_id, void *arg);

/* No batch for wait ms: the retry timer fetches then (0: at the next turn of the reactor). */
static void s_wait(nrm_consumer_t *self, int64_t wait)
{
    self->retry_after_ms = nrm_mono_ms() + wait;
    if (self->loop && self->retry_timer < 0)
        self->retry_timer =
            zloop_timer(self->loop, (size_t)(wait > 0 ? wait : 1), 1, s_on_retry, self);
}

/* backoff_ms doubled `doublings` times, at most max_ms. */
static int64_t s_backoff(const nrm_consumer_t *self, int doublings, int64_t max_ms)
{
    int64_t wait = self->backoff_ms;
    for (int i = 0; i < doublings && wait < max_ms; i++)
        wait *= 2;
    return wait > max_ms ? max_ms : wait;
}

/* Notes that applying event seq failed with st: counts the attempts in a row, waits with an
 * increasing backoff, and after max_attempts marks the event to be set aside next time. */
static void s_note_failure(nrm_consumer_t *self, s_failure_t *f, int64_t seq, nrm_status_t st,
                           const nrm_error_t *err)
{
    if (seq != f->seq) {
        f->seq = seq;
        f->attempts = 0;
    }
    f->attempts++;
    snprintf(f->error, sizeof f->error, "%s: %s", nrm_status_name(st),
             err->message[0] ? err->message : "failed");
    int64_t wait = s_backoff(self, f->attempts - 1, S_BACKOFF_MAX_MS);
    if (f->attempts >= self->max_attempts) {
        f->quarantine_seq = seq;
        wait = 0;
    }
    nrm_log_warn("event not applied", "{s:s, s:I, s:i, s:s}", "stream", self->source_stream, "seq",
                 (json_int_t)seq, "attempt", f->attempts, "error", f->error);
    s_wait(self, wait);
}

/* Locks the checkpoint row of the stream in the open transaction; returns its value or -1. */
static int64_t s_lock_checkpoint(nrm_consumer_t *self, nrm_error_t *err)
{
    int64_t seq = -1;
    return nrm_partitions_stream_take(self->db, self->checkpoint_name, &seq, err) == NRM_OK ? seq
                                                                                            : -1;
}

/* Whether seqs seen and skipped wait to be stored (see skip_base). */
static bool s_skipping(const nrm_consumer_t *self)
{
    return self->skip_to > self->skip_base;
}

/* Forgets the skipped seqs (stored, or to be read again). */
static void s_skip_clear(nrm_consumer_t *self)
{
    self->skip_base = 0;
    self->skip_to = 0;
}

int nrm_consumer_partition(const Nrm__V1__Event *ev, int partitions)
{
    if (!ev->case_id || !ev->case_id[0])
        return -1;
    uint32_t h = 2166136261u;
    for (const unsigned char *c = (const unsigned char *)ev->case_id; *c; c++)
        h = (h ^ *c) * 16777619u;
    return partitions > 1 ? (int)(h % (uint32_t)partitions) : 0;
}

/* The failure slot of an event: its partition, or the barriers' slot. */
static int s_slot(const nrm_consumer_t *self, const Nrm__V1__Event *ev)
{
    int part = nrm_consumer_partition(ev, self->partitions);
    return part < 0 ? self->partitions : part;
}

/* The outcome of one partitioned transaction. */
typedef struct {
    size_t handled;    /* events of the held partitions not applied before */
    int64_t failed;    /* the event that failed (0: none, or not its own fault) */
    int failed_slot;   /* its failure slot */
    int64_t set_aside; /* an event set aside, 0: none */
    int64_t last_seq;  /* the last event handled */
    int last_slot;     /* its failure slot */
    bool whole;        /* every event applied: what fails now fails the batch as a whole */
} s_outcome_t;

/* In the open transaction tx: applies the events of w[0..n) not applied yet that belong to a
 * held partition (stored[p] >= 0 is row p's seq, -1: not held); a barrier is applied only when
 * every partition is held (all; w ends with it). Then flush. Returns OK or the failure. */
static nrm_status_t s_apply_held(nrm_consumer_t *self, nrm_tx_t *tx, Nrm__V1__Event *const *w,
                                 size_t n, const int64_t *stored, bool all, s_outcome_t *out)
{
    nrm_status_t st = NRM_OK;
    if (self->reset)
        self->reset(self->ctx);
    for (size_t i = 0; st == NRM_OK && i < n; i++) {
        int part = nrm_consumer_partition(w[i], self->partitions);
        if (part < 0 ? !all : stored[part] < 0 || w[i]->seq <= stored[part])
            continue;
        int slot = s_slot(self, w[i]);
        out->handled++;
        out->last_seq = w[i]->seq;
        out->last_slot = slot;
        if (!nrm_topic_matches(w[i]->topic, self->prefixes))
            continue;
        tx->causation_id = w[i]->event_id;
        if (w[i]->seq == self->fail[slot].quarantine_seq) {
            st = s_quarantine(self, tx, w[i], &self->fail[slot]);
            out->set_aside = w[i]->seq;
            continue;
        }
        st = self->apply(self->ctx, tx, w[i]);
        if (st != NRM_OK) {
            out->failed = w[i]->seq;
            out->failed_slot = slot;
        }
    }
    out->whole = st == NRM_OK && out->handled > 0;
    if (out->whole && self->flush)
        st = self->flush(self->ctx, tx);
    return st;
}

/* Ends a partitioned transaction (st: its status after apply and flush): moves the rows held
 * (slot: the partition, -1 for all) to moved_to and commits, or rolls back and counts the
 * failure against its event. On success forgets the failures the moved rows passed. */
static nrm_status_t s_end_held(nrm_consumer_t *self, nrm_status_t st, nrm_error_t *err,
                               const s_outcome_t *out, int slot, int64_t moved_to)
{
    if (st == NRM_OK)
        st = nrm_partitions_move(self->db, self->checkpoint_name, slot, moved_to, err);
    if (st == NRM_OK)
        st = nrm_db_commit(self->db, err);
    s_outcome_t owned = *out;
    if (owned.whole && st != NRM_OK && st != NRM_UNAVAILABLE) {
        /* the flush, or what apply and flush left for later (sent with the rows' move or the
         * commit), failed as a whole: as in s_apply_batch, alone, the event owns the failure;
         * else the batches are narrowed */
        if (owned.handled == 1) {
            owned.failed = owned.last_seq;
            owned.failed_slot = owned.last_slot;
        } else if (owned.last_seq > self->narrow_until)
            self->narrow_until = owned.last_seq;
    }
    out = &owned;
    if (st != NRM_OK) {
        nrm_db_rollback(self->db);
        if (out->failed > 0 && st != NRM_UNAVAILABLE)
            s_note_failure(self, &self->fail[out->failed_slot], out->failed, st, err);
        else if (st != NRM_FAILED_PRECONDITION)
            nrm_log_warn("batch not applied", "{s:s, s:s, s:s}", "stream", self->source_stream,
                         "status", nrm_status_name(st), "message", err->message);
        return st;
    }
    self->applied += (int64_t)out->handled;
    if (out->set_aside)
        self->quarantined++;
    for (int i = 0; i <= self->partitions; i++)
        if ((slot < 0 || i == slot) && self->fail[i].seq && self->fail[i].seq <= moved_to)
            memset(&self->fail[i], 0, sizeof self->fail[i]);
    return NRM_OK;
}

/* One transaction for partition part over w[0..n) (events since the last barrier, none in it).
 * Returns OK (applied; or nothing to apply; or another instance holds the row), FAILED_PRECONDITION
 * with *floor set when the row is behind w (a gap: left to its holder, or to the lag check), or
 * the failure with *floor at the row's seq. */
static nrm_status_t s_apply_partition(nrm_consumer_t *self, Nrm__V1__Event *const *w, size_t n,
                                      int part, int64_t *floor)
{
    nrm_error_t err;
    nrm_error_clear(&err);
    if (nrm_db_begin(self->db, &err) != NRM_OK) {
        *floor = w[0]->seq - 1;
        return err.status;
    }
    int64_t row = 0;
    int taken =
        nrm_partitions_take(self->db, self->checkpoint_name, part, self->partitions, &row, &err);
    if (taken != 1 || row >= w[n - 1]->seq || row + 1 < w[0]->seq) {
        nrm_db_rollback(self->db);
        if (taken == 2)
            self->reload = true;
        if (taken < 0 || taken == 2) {
            *floor = w[0]->seq - 1;
            return taken < 0 ? err.status : NRM_FAILED_PRECONDITION;
        }
        if (taken == 1 && row + 1 < w[0]->seq) {
            *floor = row;
            return NRM_FAILED_PRECONDITION;
        }
        return NRM_OK; /* held by another instance, or applied already */
    }
    int64_t stored[NRM_CONSUMER_MAX_PARTITIONS];
    for (int i = 0; i < self->partitions; i++)
        stored[i] = i == part ? row : -1;
    nrm_tx_t tx = {self->db, self->own_stream, "", nrm_now_ms(), &err, 0};
    s_outcome_t out = {0};
    nrm_status_t st = s_apply_held(self, &tx, w, n, stored, false, &out);
    st = s_end_held(self, st, &err, &out, part, w[n - 1]->seq);
    if (st != NRM_OK)
        *floor = row;
    return st;
}

/* One transaction holding every partition (waiting for their holders) for the barrier w[n - 1]:
 * applies what each partition lacks of w[0..n-1) (events since the previous barrier), then the
 * barrier, and moves every row to it. Returns OK (also when it was applied already), or the
 * failure with *floor at the lowest row (FAILED_PRECONDITION: a partition is behind w). */
static nrm_status_t s_apply_barrier(nrm_consumer_t *self, Nrm__V1__Event *const *w, size_t n,
                                    int64_t *floor)
{
    nrm_error_t err;
    nrm_error_clear(&err);
    int64_t stored[NRM_CONSUMER_MAX_PARTITIONS];
    int64_t barrier = w[n - 1]->seq, min = barrier;
    *floor = w[0]->seq - 1;
    nrm_status_t st = nrm_db_begin(self->db, &err);
    if (st == NRM_OK)
        st = nrm_partitions_take_all(self->db, self->checkpoint_name, self->partitions, stored,
                                     &err);
    if (st == NRM_FAILED_PRECONDITION)
        self->reload = true;
    for (int i = 0; st == NRM_OK && i < self->partitions; i++)
        if (stored[i] < min)
            min = stored[i];
    if (st == NRM_OK && min >= barrier) { /* another instance passed it */
        nrm_db_rollback(self->db);
        return NRM_OK;
    }
    if (st == NRM_OK && min + 1 < w[0]->seq) {
        *floor = min;
        st = nrm_fail(&err, NRM_FAILED_PRECONDITION, NULL, "gap after checkpoint");
    }
    if (st != NRM_OK) {
        nrm_db_rollback(self->db);
        return st;
    }
    nrm_tx_t tx = {self->db, self->own_stream, "", nrm_now_ms(), &err, 0};
    s_outcome_t out = {0};
    st = s_apply_held(self, &tx, w, n, stored, true, &out);
    st = s_end_held(self, st, &err, &out, -1, barrier);
    if (st != NRM_OK)
        *floor = min;
    return st;
}

/* Moves the stream's row to the lowest partition row; when it stays behind this instance for a
 * whole tick (its holder died, or keeps failing), fetches from there again (tick only). */
static void s_refresh(nrm_consumer_t *self, bool tick)
{
    int64_t min = nrm_partitions_refresh(self->db, self->checkpoint_name);
    self->refreshed_ms = nrm_mono_ms();
    if (!tick)
        return;
    if (min < 0 || min >= self->checkpoint) {
        self->lag_min = -1;
        return;
    }
    if (min == self->lag_min) {
        nrm_log_info("partition behind, fetched again", "{s:s, s:I}", "stream", self->source_stream,
                     "seq", (json_int_t)min);
        self->checkpoint = min;
        self->need_fetch = true;
        self->lag_min = -1;
        return;
    }
    self->lag_min = min;
}

static void s_load_checkpoint(nrm_consumer_t *self);

/* The partitioned batch: events[0..n) in increasing, contiguous seq order from the instance's
 * position on. Segments between barriers are applied one transaction per partition with events
 * in them, starting at this instance's own partition; the partitions without are moved past the
 * segment in one statement; each barrier holds every partition. Returns OK, or the first
 * failure (the position then stays before what is not applied, and a fetch is due). */
static nrm_status_t s_apply_partitioned(nrm_consumer_t *self, Nrm__V1__Event *const *events,
                                        size_t n)
{
    if (n > 1 && events[0]->seq <= self->narrow_until) {
        n = 1; /* the rest is fetched again after this one */
        self->need_fetch = true;
    }
    int64_t floor = INT64_MAX;
    nrm_status_t result = NRM_OK;
    size_t lo = 0;
    while (lo < n && result == NRM_OK) {
        size_t end = lo;
        while (end < n && nrm_consumer_partition(events[end], self->partitions) >= 0)
            end++;
        if (end > lo) {
            bool has[NRM_CONSUMER_MAX_PARTITIONS] = {false};
            for (size_t i = lo; i < end; i++)
                has[nrm_consumer_partition(events[i], self->partitions)] = true;
            for (int i = 0; i < self->partitions && !self->reload; i++) {
                int part = (self->start + i) % self->partitions;
                int64_t at = INT64_MAX;
                nrm_status_t st =
                    has[part] ? s_apply_partition(self, events + lo, end - lo, part, &at) : NRM_OK;
                if (st == NRM_FAILED_PRECONDITION && !self->reload)
                    continue; /* behind: its holder's, or the lag check's */
                if (st != NRM_OK) {
                    result = st;
                    floor = at < floor ? at : floor;
                }
            }
            nrm_partitions_advance(self->db, self->checkpoint_name, self->partitions, has,
                                   events[lo]->seq - 1, events[end - 1]->seq);
        }
        if (result != NRM_OK || self->reload || end == n)
            break;
        int64_t at = INT64_MAX;
        result = s_apply_barrier(self, events + lo, end - lo + 1, &at);
        if (result != NRM_OK)
            floor = at;
        lo = end + 1;
    }
    if (self->reload) {
        self->reload = false;
        s_load_checkpoint(self);
        self->need_fetch = true;
        return NRM_FAILED_PRECONDITION;
    }
    if (result != NRM_OK) {
        if (floor != INT64_MAX && floor > self->checkpoint)
            self->checkpoint = floor;
        self->need_fetch = true;
        return result;
    }
    self->checkpoint = events[n - 1]->seq;
    if (self->narrow_until && self->checkpoint >= self->narrow_until)
        self->narrow_until = 0;
    if (self->checkpoint >= self->known_head || nrm_mono_ms() - self->refreshed_ms >= S_REFRESH_MS)
        s_refresh(self, false);
    return NRM_OK;
}

static int s_on_store(zloop_t *loop, int timer_id, void *arg);

/* One-row layout, before any transaction: takes the batch when none of its events after the
 * instance's position concerns the consumer (no topic matches the prefixes; only a matching
 * event is ever set aside): their seqs join the skipped ones (skip_base) and the position moves
 * past them in memory, to be stored by the next batch with work, or by the store timer armed
 * here when no such batch comes within store_ms. Nothing is applied, reset and flush are not
 * called. After a failed flush (narrow_until) only the first event is taken, as a batch would
 * be narrowed. Also takes a batch of events all seen and skipped already. Returns whether it
 * took the batch (else it goes to a transaction as usual). */
static bool s_skip_batch(nrm_consumer_t *self, Nrm__V1__Event *const *events, size_t n)
{
    size_t lo = 0;
    while (lo < n && events[lo]->seq <= self->checkpoint)
        lo++;
    if (lo == n)
        return s_skipping(self); /* else as today: the transaction reads the stored value */
    if (events[lo]->seq != self->checkpoint + 1)
        return false; /* a gap: the transaction says so */
    size_t hi = n;
    if (events[lo]->seq <= self->narrow_until && n > lo + 1)
        hi = lo + 1;
    for (size_t i = lo; i < hi; i++)
        if (events[i]->seq != events[lo]->seq + (int64_t)(i - lo) ||
            nrm_topic_matches(events[i]->topic, self->prefixes))
            return false;
    if (!s_skipping(self))
        self->skip_base = self->checkpoint;
    self->skip_to = events[hi - 1]->seq;
    self->checkpoint = self->skip_to;
    self->applied += (int64_t)(hi - lo);
    if (hi < n)
        self->need_fetch = true; /* the rest is fetched again after this one */
    if (self->narrow_until && self->checkpoint >= self->narrow_until)
        self->narrow_until = 0;
    if (self->loop && self->store_timer < 0)
        self->store_timer = zloop_timer(self->loop, (size_t)self->store_ms, 1, s_on_store, self);
    return true;
}

/* One-row layout: the stored checkpoint as this instance last read or committed it. */
static int64_t s_known_stored(const nrm_consumer_t *self)
{
    return s_skipping(self) ? self->skip_base : self->checkpoint;
}

/* One-row layout: applies events[0..n) in one transaction with the checkpoint's move. guess:
 * without locking the checkpoint row first, from the stored value this instance knows (the
 * move fails when another instance moved the row meanwhile); on any failure the transaction
 * is rolled back and the consumer's own state is left as it was (the caller applies the batch
 * again, not guessing). Else the row is locked first, and a failure is handled here: by whom it
 * is owned (an event's attempts are counted), what is read again. Returns OK or the failure; on
 * a gap after the stored checkpoint, FAILED_PRECONDITION and a fetch is due. */
static nrm_status_t s_apply_one_row(nrm_consumer_t *self, Nrm__V1__Event *const *events, size_t n,
                                    bool guess)
{
    nrm_error_t err;
    nrm_error_clear(&err);
    if (nrm_db_begin(self->db, &err) != NRM_OK)
        return err.status;
    int64_t stored = guess ? s_known_stored(self) : s_lock_checkpoint(self, &err);
    nrm_status_t st = stored < 0 ? (err.status != NRM_OK ? err.status : NRM_INTERNAL) : NRM_OK;
    size_t first = 0;
    while (st == NRM_OK && first < n && events[first]->seq <= stored)
        first++;
    /* the seqs between are ours, seen and skipped, when the stored value is the one we knew */
    bool skipped = st == NRM_OK && s_skipping(self) && stored == self->skip_base;
    if (st == NRM_OK && first < n && events[first]->seq != stored + 1 &&
        !(skipped && events[first]->seq == self->skip_to + 1))
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
        if (events[i]->seq == self->fail[0].quarantine_seq) {
            st = s_quarantine(self, &tx, events[i], &self->fail[0]);
            set_aside = events[i]->seq;
            continue;
        }
        st = self->apply(self->ctx, &tx, events[i]);
        if (st != NRM_OK)
            failed_seq = events[i]->seq;
    }
    bool whole = st == NRM_OK && n > first; /* the batch's work as a whole follows */
    if (whole && self->flush)
        st = self->flush(self->ctx, &tx);
    int64_t last = n > first ? events[n - 1]->seq : stored;
    if (st == NRM_OK && n > first) { /* the checkpoint moves and commits in one round trip */
        nrm_params_t p = {0};
        nrm_params_text(&p, self->checkpoint_name);
        nrm_params_int(&p, stored);
        nrm_params_int(&p, last);
        st = nrm_db_exec_commit(self->db, "consumer_checkpoint_move", &p, &err);
    } else if (st == NRM_OK) {
        st = nrm_db_commit(self->db, &err);
    }
    if (st != NRM_OK && guess) {
        nrm_db_rollback(self->db);
        return st;
    }
    /* the flush, or what apply and flush left for later (nrm_db_exec_later, sent with the
     * checkpoint's move), failed as a whole for a cause other than the database's
     * availability: alone, an event owns the failure; in a batch, the batch is applied again
     * one event at a time to find the owner */
    if (whole && st != NRM_OK && st != NRM_UNAVAILABLE) {
        if (n == first + 1)
            failed_seq = events[first]->seq;
        else if (events[n - 1]->seq > self->narrow_until)
            self->narrow_until = events[n - 1]->seq;
    }
    if (st != NRM_OK) {
        nrm_db_rollback(self->db);
        if (stored >= 0 && !skipped && s_skipping(self)) {
            s_skip_clear(self); /* another instance moved it: read on from its value */
            self->checkpoint = stored;
        } else if (stored >= 0 && stored > self->checkpoint) {
            self->checkpoint = stored;
        }
        self->need_fetch = true;
        /* a failure of the event's own (not the database's availability) counts against it */
        if (failed_seq > 0 && st != NRM_UNAVAILABLE)
            s_note_failure(self, &self->fail[0], failed_seq, st, &err);
        else if (st != NRM_FAILED_PRECONDITION)
            nrm_log_warn("batch not applied", "{s:s, s:s, s:s}", "stream", self->source_stream,
                         "status", nrm_status_name(st), "message", err.message);
        return st;
    }
    self->applied += (int64_t)(n - first);
    self->checkpoint = last;
    s_skip_clear(self);
    if (self->narrow_until && last >= self->narrow_until)
        self->narrow_until = 0;
    if (set_aside)
        self->quarantined++;
    if (self->fail[0].seq && self->fail[0].seq <= last)
        memset(&self->fail[0], 0, sizeof self->fail[0]);
    return NRM_OK;
}

/* Whether a one-row batch may guess the stored checkpoint (s_apply_one_row) instead of locking
 * the row first, one round trip less: in the steady state, with an event after the value this
 * instance knows, no event's failure being counted, narrowed to or set aside, and no guess
 * failed in the last S_GUESS_PAUSE_MS (another instance may be applying the stream too: its
 * batches and ours would then each do the work and one roll back). */
static bool s_may_guess(const nrm_consumer_t *self, Nrm__V1__Event *const *events, size_t n)
{
    return events[n - 1]->seq > s_known_stored(self) && !self->narrow_until && !self->fail[0].seq &&
           !self->fail[0].quarantine_seq && nrm_mono_ms() >= self->guess_after_ms;
}

/* Applies the events not yet applied, in one transaction with the checkpoint. events are in
 * increasing, contiguous seq order. A batch with nothing for the consumer opens no transaction
 * (s_skip_batch). The gap between the stored checkpoint and the first event is accepted when
 * this instance skipped exactly those seqs (the stored value is still skip_base). A batch that
 * guessed the stored value and failed, for whatever cause (another instance's move, or the
 * batch's own failure, which the second attempt then owns), is applied again at once with the
 * row locked, unless the connection is gone. Returns OK (also when all were already applied), or
 * the failure; on a gap after the stored checkpoint, FAILED_PRECONDITION and a fetch is due. */
static nrm_status_t s_apply_batch(nrm_consumer_t *self, Nrm__V1__Event *const *events, size_t n)
{
    if (!self->loaded) { /* the start could not read the checkpoint: read it, fetch from there */
        s_load_checkpoint(self);
        self->need_fetch = true;
        return self->loaded ? NRM_FAILED_PRECONDITION : NRM_UNAVAILABLE;
    }
    if (self->partitions > 1)
        return s_apply_partitioned(self, events, n);
    if (s_skip_batch(self, events, n))
        return NRM_OK;
    if (s_may_guess(self, events, n)) {
        nrm_status_t st = s_apply_one_row(self, events, n, true);
        if (st == NRM_OK)
            return st;
        if (!nrm_db_connected(self->db)) {
            self->need_fetch = true;
            nrm_log_warn("batch not applied", "{s:s, s:s}", "stream", self->source_stream, "status",
                         nrm_status_name(st));
            return st;
        }
        self->guess_after_ms = nrm_mono_ms() + S_GUESS_PAUSE_MS;
    }
    return s_apply_one_row(self, events, n, false);
}

/* s_apply_batch, and after a failure that moved nothing and set no retry of its own (no event
 * owns it, or the database is unavailable: the next fetch would fail the same way at once), a
 * wait instead of fetching again at once: backoff_ms, doubled with each such failure in a row
 * up to S_STALL_MAX_MS (short: a database back or a grant fixed is followed within it). */
static nrm_status_t s_apply(nrm_consumer_t *self, Nrm__V1__Event *const *events, size_t n)
{
    int64_t before = self->checkpoint;
    bool was_loaded = self->loaded;
    nrm_status_t st = s_apply_batch(self, events, n);
    bool moved = self->checkpoint != before || self->loaded != was_loaded;
    if (st == NRM_OK) {
        self->stalls = 0;
    } else if (!moved && self->retry_timer < 0) {
        s_wait(self, s_backoff(self, self->stalls, S_STALL_MAX_MS));
        if (self->stalls < S_STALL_DOUBLINGS)
            self->stalls++;
    }
    return st;
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
    s_apply(self, self->pending, self->pending_count);
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
                if (fr->n_events == 0 || s_apply(self, fr->events, fr->n_events) == NRM_OK)
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

/* The skipped seqs waited store_ms for a batch with work: one transaction moves the stored
 * checkpoint past them, when it still is the value the skip started after; when another
 * instance moved it, forgets them and reads on from its value. A database failure keeps them
 * and tries again after store_ms. */
static int s_on_store(zloop_t *loop, int timer_id, void *arg)
{
    nrm_consumer_t *self = arg;
    self->store_timer = -1;
    if (!s_skipping(self))
        return 0;
    nrm_error_t err;
    nrm_error_clear(&err);
    nrm_status_t st = nrm_db_begin(self->db, &err);
    int64_t stored = st == NRM_OK ? s_lock_checkpoint(self, &err) : -1;
    if (st == NRM_OK && stored < 0)
        st = err.status != NRM_OK ? err.status : NRM_INTERNAL;
    if (st == NRM_OK && stored == self->skip_base) {
        nrm_params_t p = {0};
        nrm_params_text(&p, self->checkpoint_name);
        nrm_params_int(&p, stored);
        nrm_params_int(&p, self->skip_to);
        st = nrm_db_exec_commit(self->db, "consumer_checkpoint_move", &p, &err);
        if (st == NRM_OK) {
            s_skip_clear(self);
            return 0;
        }
    } else if (st == NRM_OK) {
        nrm_db_rollback(self->db);
        s_skip_clear(self);
        if (stored < self->checkpoint) { /* what lies between is read again */
            self->checkpoint = stored;
            self->need_fetch = true;
            s_fetch(self);
        } else {
            self->checkpoint = stored;
        }
        return 0;
    }
    nrm_db_rollback(self->db);
    nrm_log_warn("skipped events not stored", "{s:s, s:s, s:s}", "stream", self->source_stream,
                 "status", nrm_status_name(st), "message", err.message);
    self->store_timer = zloop_timer(self->loop, (size_t)self->store_ms, 1, s_on_store, self);
    return 0;
}

/* Periodic check: catch up when a heartbeat or a gap says we are behind (partitioned: also
 * when a partition stays behind us), and keep the stream's row on the partitions. */
static int s_on_tick(zloop_t *loop, int timer_id, void *arg)
{
    nrm_consumer_t *self = arg;
    if (self->loaded && self->partitions > 1)
        s_refresh(self, true);
    if (self->need_fetch || self->known_head > self->checkpoint)
        s_fetch(self);
    return 0;
}

/* Loads the stored checkpoint and the partition layout (nrm_partitions_load); when the
 * database cannot say yet, the first batch tries again. */
static void s_load_checkpoint(nrm_consumer_t *self)
{
    int layout = 1;
    int64_t cursor = 0;
    if (nrm_partitions_load(self->db, self->checkpoint_name, self->configured, &layout, &cursor,
                            NULL) != NRM_OK)
        return;
    self->loaded = true;
    self->partitions = layout;
    self->checkpoint = cursor;
    s_skip_clear(self);
    self->start = layout > 1 ? (int)(((uint32_t)getpid() * 2654435761u) % (uint32_t)layout) : 0;
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
