/* Deliveries: one row per (event, recipient agency, subscription), created with the consumer's
 * checkpoint; claimed for an attempt under a lease; delivered, retried with exponential backoff
 * and jitter, or dead-lettered when the attempts or the age run out. Each final outcome is a
 * notification.delivered / notification.failed event emitted in the transaction recording it;
 * an agency without any subscription is recorded 'undeliverable' (and notification.failed) at
 * once, never dropped. A delivery is sent only on its subscription as long as that is active
 * with the delivery's agency and channel (and, for one owed only by the subscription's topics,
 * while it follows the topic under a grant that still delivers the event); otherwise the claim
 * dead-letters it unsent. The delivery_id is the X-NRM-Delivery of every attempt. */
#include "notify.h"
#include "nrm_alloc.h"
#include "nrm_authz.h"
#include "nrm_crypto.h"
#include "nrm_log.h"
#include "nrm_pgarray.h"
#include "nrm_time.h"

#include <sodium.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define S_NO_SUBSCRIPTION "undeliverable: the agency has no subscription"
/* an agency's undeliverable deliveries are logged once an hour (s_log_undeliverable) */
#define S_UNDELIVERABLE_LOG_MS (60 * 60 * 1000)
#define S_STATE_PENDING "pending"
#define S_STATE_FAILED "failed"

/* The deliveries of a whole batch: events e ($1..$5, by position i), the agencies each concerns
 * (pairs $6, $7) and the agencies whose grants deliver it broadly (pairs $10, $11). */
static const char s_sql_create[] =
    "WITH ev AS (SELECT * FROM unnest($1::text[], $2::bigint[], $3::text[], $4::text[],"
    "  $5::text[]) WITH ORDINALITY AS e(stream, seq, topic, case_id, event_id, i)),"
    " concerned AS (SELECT DISTINCT i, agency_id FROM unnest($6::bigint[], $7::text[])"
    "  AS c(i, agency_id)),"
    " broad AS (SELECT i, agency_id FROM unnest($10::bigint[], $11::text[]) AS b(i, agency_id)),"
    " matched AS (SELECT i, subscription_id, agency_id, channel, bool_and(by_topic) AS by_topic"
    "  FROM (SELECT c.i, s.subscription_id, s.agency_id, s.channel, false AS by_topic"
    "   FROM concerned c JOIN subscriptions s ON s.active AND s.agency_id = c.agency_id"
    "   UNION ALL SELECT b.i, s.subscription_id, s.agency_id, s.channel, true FROM broad b"
    "   JOIN ev e ON e.i = b.i JOIN subscriptions s ON s.active AND s.agency_id = b.agency_id"
    "    AND EXISTS (SELECT 1 FROM unnest(s.topics) t WHERE starts_with(e.topic, t))) m"
    "  GROUP BY i, subscription_id, agency_id, channel),"
    " wanted AS (SELECT i, agency_id, channel, subscription_id, 'pending'::text AS state,"
    "  by_topic FROM matched"
    "  UNION ALL SELECT c.i, c.agency_id, '', '', 'undeliverable', false FROM concerned c"
    "  WHERE NOT EXISTS (SELECT 1 FROM subscriptions s"
    "                     WHERE s.active AND s.agency_id = c.agency_id))"
    " INSERT INTO deliveries (delivery_id, source_stream, source_seq, agency_id, channel,"
    "  subscription_id, topic, case_id, event_id, state, started_ms, next_attempt_ms,"
    "  finished_ms, last_error, by_topic)"
    " SELECT gen_random_uuid(), e.stream, e.seq, w.agency_id, w.channel, w.subscription_id,"
    "  e.topic, e.case_id, e.event_id, w.state, $8::bigint, $8::bigint,"
    "  CASE WHEN w.state = 'undeliverable' THEN $8::bigint ELSE 0 END,"
    "  CASE WHEN w.state = 'undeliverable' THEN $9 ELSE '' END, w.by_topic"
    " FROM wanted w JOIN ev e ON e.i = w.i ORDER BY w.i"
    " ON CONFLICT DO NOTHING RETURNING delivery_id::text, agency_id, state, source_stream,"
    "  source_seq";
static const char s_sql_keep_event[] =
    "INSERT INTO events (source_stream, source_seq, event_id, topic, case_id, occurred_at_ms,"
    " outcome, payload)"
    " SELECT s, q, e, t, c, o, oc, decode(p, 'hex') FROM unnest($1::text[], $2::bigint[],"
    "  $3::text[], $4::text[], $5::text[], $6::bigint[], $7::bool[], $8::text[])"
    "  AS u(s, q, e, t, c, o, oc, p) ON CONFLICT DO NOTHING";
/* Why a due delivery is not sent on its subscription: the claim sends a delivery only on an
 * active subscription that still has the delivery's agency and channel and, for a delivery owed
 * only by the subscription's topics, still follows its topic (a subscription may be retired,
 * given to another agency, switched to another channel or made to follow other topics
 * meanwhile: sending would go to whatever it points at now, or to an agency that no longer asks
 * for it). Such a delivery is dead-lettered at once, never attempted. No values: a reason only. */
#define S_UNSENDABLE_GONE "not sent: the subscription no longer exists"
#define S_UNSENDABLE_RETIRED "not sent: the subscription was retired"
#define S_UNSENDABLE_MOVED "not sent: the subscription now belongs to another agency"
#define S_UNSENDABLE_CHANNEL "not sent: the subscription now uses another channel"
#define S_UNSENDABLE_TOPIC "not sent: the subscription no longer follows this topic"
/* True of delivery d on subscription s unless d is owed only by s's topics (by_topic) and none
 * of them starts its topic any more. */
#define S_FOLLOWS_TOPIC                                                                            \
    "(NOT d.by_topic OR EXISTS (SELECT 1 FROM unnest(s.topics) t WHERE starts_with(d.topic, t)))"
/* Why a claimed delivery owed only by its subscription's topics is not sent: the agency's grants
 * (notify.grants, reloaded) no longer deliver its event (notify_grants_deliver). */
#define S_UNSENDABLE_UNGRANTED "not sent: no grant of the agency covers this event any more"
/* The due deliveries (oldest first, up to $2) with their subscription as it is now: those it can
 * still carry are claimed for an attempt (a lease of $3 ms under claim $4), the others are
 * dead-lettered without one; both come back, with whether they are owed by topic
 * (S_CLAIM_BY_TOPIC) and the dead letters with their reason in the last column
 * (S_CLAIM_UNSENDABLE), NULL for a claim. */
#define S_CLAIM_BY_TOPIC 15
#define S_CLAIM_UNSENDABLE 16
static const char s_sql_claim[] =
    "WITH due AS (SELECT d.delivery_id, s.address, s.secret_sealed, s.secret_key_id,"
    "  CASE WHEN s.subscription_id IS NULL THEN '" S_UNSENDABLE_GONE "'"
    "   WHEN NOT s.active THEN '" S_UNSENDABLE_RETIRED "'"
    "   WHEN s.agency_id <> d.agency_id THEN '" S_UNSENDABLE_MOVED "'"
    "   WHEN s.channel <> d.channel THEN '" S_UNSENDABLE_CHANNEL "'"
    "   WHEN NOT " S_FOLLOWS_TOPIC " THEN '" S_UNSENDABLE_TOPIC "' END AS unsendable"
    "  FROM deliveries d LEFT JOIN subscriptions s ON s.subscription_id = d.subscription_id"
    "  WHERE d.state = 'pending' AND d.next_attempt_ms <= $1::bigint"
    "  ORDER BY d.next_attempt_ms LIMIT $2 FOR UPDATE OF d SKIP LOCKED),"
    " claimed AS (UPDATE deliveries d SET attempts = d.attempts + 1,"
    "  next_attempt_ms = $1::bigint + $3::bigint, last_attempt_ms = $1::bigint,"
    "  claim_id = $4::uuid FROM due WHERE d.delivery_id = due.delivery_id"
    "  AND due.unsendable IS NULL"
    "  RETURNING d.*, due.address, due.secret_sealed, due.secret_key_id),"
    " dead AS (UPDATE deliveries d SET state = 'failed', finished_ms = $1::bigint,"
    "  last_error = due.unsendable, claim_id = NULL FROM due"
    "  WHERE d.delivery_id = due.delivery_id AND due.unsendable IS NOT NULL RETURNING d.*)"
    " SELECT c.delivery_id::text, c.subscription_id, c.agency_id, c.channel, c.topic,"
    "  c.source_stream, c.source_seq, c.case_id, c.event_id, c.attempts, c.started_ms,"
    "  c.address, c.secret_sealed, c.secret_key_id, e.payload, c.by_topic,"
    "  NULL::text AS unsendable"
    " FROM claimed c"
    " LEFT JOIN events e ON e.source_stream = c.source_stream AND e.source_seq = c.source_seq"
    " UNION ALL SELECT u.delivery_id::text, u.subscription_id, u.agency_id, u.channel, u.topic,"
    "  u.source_stream, u.source_seq, u.case_id, u.event_id, u.attempts, u.started_ms, NULL,"
    "  NULL, NULL, NULL, u.by_topic, u.last_error FROM dead u";
/* Claimed deliveries ($1) of claim $2 that their agency's grants no longer cover: dead-lettered
 * at $3 with reason $4, their attempt not counted (it was never made). */
static const char s_sql_ungranted[] =
    "UPDATE deliveries d SET state = 'failed', finished_ms = $3, last_error = $4,"
    " claim_id = NULL, attempts = d.attempts - 1 FROM unnest($1::uuid[]) AS u(id)"
    " WHERE d.delivery_id = u.id AND d.claim_id = $2::uuid AND d.state = 'pending'"
    " RETURNING 1";
static const char s_sql_delivered[] =
    "UPDATE deliveries SET state = 'delivered', finished_ms = $2, last_error = '', claim_id = NULL"
    " WHERE delivery_id = $1::uuid AND state = 'pending' RETURNING attempts";
static const char s_sql_delivered_many[] =
    "UPDATE deliveries d SET state = 'delivered', finished_ms = $2, last_error = '',"
    " claim_id = NULL FROM unnest($1::uuid[]) AS u(id)"
    " WHERE d.delivery_id = u.id AND d.state = 'pending'"
    " RETURNING d.delivery_id::text, d.attempts";
static const char s_sql_retry_later[] =
    "UPDATE deliveries SET next_attempt_ms = $3, last_error = $4, claim_id = NULL"
    " WHERE delivery_id = $1::uuid AND claim_id = $2::uuid AND state = 'pending' RETURNING 1";
static const char s_sql_dead[] =
    "UPDATE deliveries SET state = 'failed', finished_ms = $3, last_error = $4, claim_id = NULL"
    " WHERE delivery_id = $1::uuid AND claim_id = $2::uuid AND state = 'pending'"
    " RETURNING attempts";
static const char s_sql_release[] =
    "UPDATE deliveries SET next_attempt_ms = $3, claim_id = NULL"
    " WHERE delivery_id = $1::uuid AND claim_id = $2::uuid AND state = 'pending'";
#define S_LIST_COLUMNS                                                                             \
    "delivery_id::text, subscription_id, agency_id, topic, source_stream, source_seq,"             \
    " attempts, state, last_error, CASE WHEN state = 'pending' THEN next_attempt_ms ELSE 0 END,"   \
    " channel, case_id"
static const char s_sql_list[] =
    "SELECT " S_LIST_COLUMNS " FROM deliveries WHERE ($1::text = '' OR state = $1::text)"
    " AND ($3::text = '' OR agency_id = $3::text) ORDER BY created_at DESC, delivery_id LIMIT $2";
static const char s_sql_retry[] =
    "UPDATE deliveries SET state = 'pending', attempts = 0, started_ms = $2, next_attempt_ms = $2,"
    " last_error = '', finished_ms = 0, retries = retries + 1, claim_id = NULL"
    " WHERE delivery_id = $1::uuid AND state = 'failed' RETURNING " S_LIST_COLUMNS;
/* A delivery's state, agency, whether its subscription can still carry it (as the claim
 * decides: active, same agency and channel, the topic still followed when owed by topic), whether
 * it is owed by topic and its stored event (NULL when not stored). */
static const char s_sql_state[] =
    "SELECT d.state, d.agency_id, EXISTS (SELECT 1 FROM subscriptions s"
    "  WHERE s.subscription_id = d.subscription_id AND s.active AND s.agency_id = d.agency_id"
    "  AND s.channel = d.channel AND " S_FOLLOWS_TOPIC "), d.by_topic, e.payload"
    " FROM deliveries d LEFT JOIN events e"
    "  ON e.source_stream = d.source_stream AND e.source_seq = d.source_seq"
    " WHERE d.delivery_id = $1::uuid FOR UPDATE OF d";

void notify_deliveries_prepare(nrm_db_t *db)
{
    nrm_db_statement(db, "notify_delivery_create", s_sql_create);
    nrm_db_statement(db, "notify_event_keep", s_sql_keep_event);
    nrm_db_statement(db, "notify_delivery_claim", s_sql_claim);
    nrm_db_statement(db, "notify_delivery_ungranted", s_sql_ungranted);
    nrm_db_statement(db, "notify_delivery_delivered", s_sql_delivered);
    nrm_db_statement(db, "notify_delivery_delivered_many", s_sql_delivered_many);
    nrm_db_statement(db, "notify_delivery_retry_later", s_sql_retry_later);
    nrm_db_statement(db, "notify_delivery_dead", s_sql_dead);
    nrm_db_statement(db, "notify_delivery_release", s_sql_release);
    nrm_db_statement(db, "notify_delivery_list", s_sql_list);
    nrm_db_statement(db, "notify_delivery_retry", s_sql_retry);
    nrm_db_statement(db, "notify_delivery_state", s_sql_state);
}

/* What a notification.* event says about one delivery. */
typedef struct {
    const char *delivery_id;
    const char *subscription_id;
    const char *agency_id;
    const char *topic;
    const char *source_stream;
    int64_t source_seq;
    const char *case_id;
    const char *event_id; /* the source event: the causation */
    int attempts;
    const char *last_error; /* NULL for a delivery */
} s_outcome_t;

/* The outcome of delivery d after attempts, failed with last_error (NULL: delivered); strings
 * borrowed from d. */
static s_outcome_t s_outcome_of(const notify_delivery_t *d, int attempts, const char *last_error)
{
    return (s_outcome_t){d->delivery_id,   d->subscription_id, d->agency_id, d->topic,
                         d->source_stream, d->source_seq,      d->case_id,   d->event_id,
                         attempts,         last_error};
}

/* The storage of one notification.* event built from an outcome. */
typedef struct {
    Nrm__V1__Event ev;
    Nrm__V1__NotificationDelivered delivered;
    Nrm__V1__NotificationFailed failed;
} s_outcome_event_t;

/* Builds in *e notification.delivered (last_error NULL) or notification.failed for o (strings
 * borrowed from o). */
static void s_outcome_event(const s_outcome_t *o, s_outcome_event_t *e)
{
    e->ev = (Nrm__V1__Event)NRM__V1__EVENT__INIT;
    e->ev.case_id = (char *)o->case_id;
    e->ev.causation_id = (char *)o->event_id;
    if (!o->last_error) {
        e->delivered = (Nrm__V1__NotificationDelivered)NRM__V1__NOTIFICATION_DELIVERED__INIT;
        e->delivered.delivery_id = (char *)o->delivery_id;
        e->delivered.subscription_id = (char *)o->subscription_id;
        e->delivered.agency_id = (char *)o->agency_id;
        e->delivered.topic = (char *)o->topic;
        e->delivered.source_stream = (char *)o->source_stream;
        e->delivered.source_seq = o->source_seq;
        e->delivered.attempts = o->attempts;
        e->ev.body_case = NRM__V1__EVENT__BODY_NOTIFICATION_DELIVERED;
        e->ev.notification_delivered = &e->delivered;
    } else {
        e->failed = (Nrm__V1__NotificationFailed)NRM__V1__NOTIFICATION_FAILED__INIT;
        e->failed.delivery_id = (char *)o->delivery_id;
        e->failed.subscription_id = (char *)o->subscription_id;
        e->failed.agency_id = (char *)o->agency_id;
        e->failed.topic = (char *)o->topic;
        e->failed.source_stream = (char *)o->source_stream;
        e->failed.source_seq = o->source_seq;
        e->failed.attempts = o->attempts;
        e->failed.last_error = (char *)o->last_error;
        e->ev.body_case = NRM__V1__EVENT__BODY_NOTIFICATION_FAILED;
        e->ev.notification_failed = &e->failed;
    }
}

/* Emits notification.delivered (last_error NULL) or notification.failed in tx. */
static nrm_status_t s_emit_outcome(nrm_tx_t *tx, const s_outcome_t *o)
{
    s_outcome_event_t e;
    s_outcome_event(o, &e);
    return nrm_tx_emit(tx, &e.ev);
}

/* Emits the n outcomes os in tx in one statement, in their order. */
static nrm_status_t s_emit_outcomes(nrm_tx_t *tx, const s_outcome_t *os, size_t n)
{
    if (n == 0)
        return NRM_OK;
    s_outcome_event_t *events = nrm_xcalloc(n, sizeof *events);
    Nrm__V1__Event **evs = nrm_xcalloc(n, sizeof *evs);
    for (size_t i = 0; i < n; i++) {
        s_outcome_event(&os[i], &events[i]);
        evs[i] = &events[i].ev;
    }
    nrm_status_t st = nrm_tx_emit_many(tx, evs, n);
    free(evs);
    free(events);
    return st;
}

/* Appends (at, id copied) to a. */
static void s_pairs_add(notify_pairs_t *a, int64_t at, const char *id)
{
    if (a->n == a->cap) {
        a->cap = a->cap ? a->cap * 2 : 16;
        a->at = nrm_xreallocarray(a->at, a->cap, sizeof *a->at);
        a->ids = nrm_xreallocarray(a->ids, a->cap, sizeof *a->ids);
    }
    a->at[a->n] = at;
    a->ids[a->n] = nrm_xstrdup(id);
    a->n++;
}

/* Frees the ids and arrays of a and zeroes it. */
static void s_pairs_clear(notify_pairs_t *a)
{
    for (size_t i = 0; i < a->n; i++)
        free(a->ids[i]);
    free(a->at);
    free(a->ids);
    memset(a, 0, sizeof *a);
}

void notify_batch_clear(notify_batch_t *b)
{
    for (size_t i = 0; i < b->n; i++) {
        notify_gathered_t *g = &b->events[i];
        char *strings[] = {g->stream,   g->topic,       g->case_id,
                           g->event_id, g->payload_hex, g->late_agency};
        for (size_t k = 0; k < sizeof strings / sizeof strings[0]; k++)
            free(strings[k]);
    }
    free(b->events);
    s_pairs_clear(&b->concerned);
    s_pairs_clear(&b->broad);
    memset(b, 0, sizeof *b);
}

/* A copy of a protobuf string (never NULL). */
static char *s_copy(const char *s)
{
    return nrm_xstrdup(s ? s : "");
}

void notify_deliveries_gather(notify_t *self, notify_batch_t *b, const Nrm__V1__Event *ev,
                              char *const *agencies, size_t n, bool outcome,
                              const char *late_agency)
{
    if (b->n == b->cap) {
        b->cap = b->cap ? b->cap * 2 : 16;
        b->events = nrm_xreallocarray(b->events, b->cap, sizeof *b->events);
    }
    char *hex = NULL;
    if (!late_agency) { /* a late outcome is stored already */
        size_t len = 0;
        uint8_t *payload = nrm_event_pack(ev, &len);
        hex = nrm_xmalloc(2 * len + 1);
        sodium_bin2hex(hex, 2 * len + 1, payload, len);
        free(payload);
    }
    b->events[b->n] = (notify_gathered_t){s_copy(ev->stream),
                                          ev->seq,
                                          s_copy(ev->topic),
                                          s_copy(ev->case_id),
                                          s_copy(ev->event_id),
                                          ev->occurred_at_ms,
                                          outcome,
                                          hex,
                                          false,
                                          late_agency ? nrm_xstrdup(late_agency) : NULL,
                                          0,
                                          0};
    int64_t at = (int64_t)++b->n; /* the event's position in the statement (1-based) */
    for (size_t i = 0; i < n; i++)
        if (agencies[i] && agencies[i][0])
            s_pairs_add(&b->concerned, at, agencies[i]);
    /* a subscription's topics reach only the agencies whose grants cover this event */
    size_t n_broad = 0;
    char **broad =
        notify_grants_broad(self->settings.grants, nrm_service_config(self->service), ev, &n_broad);
    for (size_t i = 0; i < n_broad; i++)
        s_pairs_add(&b->broad, at, broad[i]);
    free(broad);
    b->events[b->n - 1].concerned_to = b->concerned.n;
    b->events[b->n - 1].broad_to = b->broad.n;
}

/* An undeliverable row returned by the insert, with the position of its event. */
typedef struct {
    size_t event; /* index into the batch's events */
    int row;      /* in the result, to keep the order within an event */
} s_failed_row_t;

static int s_failed_cmp(const void *a, const void *b)
{
    const s_failed_row_t *x = a, *y = b;
    if (x->event != y->event)
        return x->event < y->event ? -1 : 1;
    return (x->row > y->row) - (x->row < y->row);
}

/* True when agency is among the pairs of a from index from to index to. */
static bool s_pairs_have(const notify_pairs_t *a, size_t from, size_t to, const char *agency)
{
    for (size_t i = from; i < to; i++)
        if (strcmp(a->ids[i], agency) == 0)
            return true;
    return false;
}

/* The index of the gathered event (stream, seq) that made a delivery for agency, looked for from
 * *cursor on (and updated): an event may be gathered twice (itself, and given late to a
 * reporting agency), so the one whose pairs name the agency owns the row. */
static size_t s_find_event(const notify_batch_t *b, const char *stream, int64_t seq,
                           const char *agency, size_t *cursor)
{
    for (size_t k = 0; k < b->n; k++) {
        size_t i = (*cursor + k) % b->n;
        const notify_gathered_t *g = &b->events[i];
        if (g->seq != seq || strcmp(g->stream, stream) != 0)
            continue;
        size_t c_from = i ? b->events[i - 1].concerned_to : 0;
        size_t b_from = i ? b->events[i - 1].broad_to : 0;
        if (s_pairs_have(&b->concerned, c_from, g->concerned_to, agency) ||
            s_pairs_have(&b->broad, b_from, g->broad_to, agency)) {
            *cursor = i;
            return i;
        }
    }
    return b->n; /* cannot happen: every row comes from a gathered event */
}

/* Inserts the deliveries of every gathered event with one statement; *res its result. */
static nrm_status_t s_insert_deliveries(nrm_tx_t *tx, const notify_batch_t *b, PGresult **res)
{
    char **streams = nrm_xcalloc(b->n, sizeof *streams);
    char **topics = nrm_xcalloc(b->n, sizeof *topics);
    char **cases = nrm_xcalloc(b->n, sizeof *cases);
    char **event_ids = nrm_xcalloc(b->n, sizeof *event_ids);
    int64_t *seqs = nrm_xcalloc(b->n, sizeof *seqs);
    for (size_t i = 0; i < b->n; i++) {
        streams[i] = b->events[i].stream;
        topics[i] = b->events[i].topic;
        cases[i] = b->events[i].case_id;
        event_ids[i] = b->events[i].event_id;
        seqs[i] = b->events[i].seq;
    }
    char *arrays[] = {nrm_pgarray_of_texts(streams, b->n),
                      nrm_pgarray_of_ints(seqs, b->n),
                      nrm_pgarray_of_texts(topics, b->n),
                      nrm_pgarray_of_texts(cases, b->n),
                      nrm_pgarray_of_texts(event_ids, b->n),
                      nrm_pgarray_of_ints(b->concerned.at, b->concerned.n),
                      nrm_pgarray_of_texts(b->concerned.ids, b->concerned.n),
                      nrm_pgarray_of_ints(b->broad.at, b->broad.n),
                      nrm_pgarray_of_texts(b->broad.ids, b->broad.n)};
    nrm_params_t p = {0};
    for (size_t i = 0; i < 7; i++)
        nrm_params_text(&p, arrays[i]);
    nrm_params_int(&p, tx->now_ms);
    nrm_params_text(&p, S_NO_SUBSCRIPTION);
    nrm_params_text(&p, arrays[7]);
    nrm_params_text(&p, arrays[8]);
    nrm_status_t st = nrm_db_exec(tx->db, "notify_delivery_create", &p, res, tx->err);
    for (size_t i = 0; i < sizeof arrays / sizeof arrays[0]; i++)
        free(arrays[i]);
    free(streams);
    free(topics);
    free(cases);
    free(event_ids);
    free(seqs);
    return st;
}

/* Stores, with one statement, the gathered events that got deliveries or are outcomes of their
 * case (the deliveries will send them; a late reporter may need them). */
static nrm_status_t s_keep_events(nrm_tx_t *tx, const notify_batch_t *b)
{
    size_t n = 0;
    char **cols[5];
    for (size_t c = 0; c < 5; c++)
        cols[c] = nrm_xcalloc(b->n, sizeof *cols[c]);
    int64_t *seqs = nrm_xcalloc(b->n, sizeof *seqs);
    int64_t *occurred = nrm_xcalloc(b->n, sizeof *occurred);
    bool *outcomes = nrm_xcalloc(b->n, sizeof *outcomes);
    for (size_t i = 0; i < b->n; i++) {
        const notify_gathered_t *g = &b->events[i];
        if ((!g->has_rows && !g->outcome) || g->late_agency)
            continue;
        cols[0][n] = g->stream;
        cols[1][n] = g->event_id;
        cols[2][n] = g->topic;
        cols[3][n] = g->case_id;
        cols[4][n] = g->payload_hex;
        seqs[n] = g->seq;
        occurred[n] = g->occurred_at_ms;
        outcomes[n] = g->outcome;
        n++;
    }
    nrm_status_t st = NRM_OK;
    if (n > 0) {
        char *arrays[] = {nrm_pgarray_of_texts(cols[0], n),  nrm_pgarray_of_ints(seqs, n),
                          nrm_pgarray_of_texts(cols[1], n),  nrm_pgarray_of_texts(cols[2], n),
                          nrm_pgarray_of_texts(cols[3], n),  nrm_pgarray_of_ints(occurred, n),
                          nrm_pgarray_of_bools(outcomes, n), nrm_pgarray_of_texts(cols[4], n)};
        nrm_params_t p = {0};
        for (size_t i = 0; i < sizeof arrays / sizeof arrays[0]; i++)
            nrm_params_text(&p, arrays[i]);
        st = nrm_db_exec_later(tx->db, "notify_event_keep", &p, tx->err);
        for (size_t i = 0; i < sizeof arrays / sizeof arrays[0]; i++)
            free(arrays[i]);
    }
    for (size_t c = 0; c < 5; c++)
        free(cols[c]);
    free(seqs);
    free(occurred);
    free(outcomes);
    return st;
}

/* When an agency's undeliverable deliveries were last logged, and how many came since. */
typedef struct {
    int64_t logged_ms;
    int64_t since;
} s_logged_t;

/* Logs undeliverable delivery o at warn the first time for its agency, then at most once per
 * S_UNDELIVERABLE_LOG_MS with the number not logged since: each one is counted in Pong, listed
 * by ListDeliveries and announced by notification.failed, and an agency without a subscription
 * would otherwise write a warning per event concerning it. Aborts when out of memory. */
static void s_log_undeliverable(notify_t *self, const s_outcome_t *o, int64_t now_ms)
{
    if (!self->undeliverable_logged) {
        self->undeliverable_logged = zhash_new();
        if (!self->undeliverable_logged)
            nrm_oom("undeliverable log");
    }
    s_logged_t *logged = zhash_lookup(self->undeliverable_logged, o->agency_id);
    if (logged && now_ms - logged->logged_ms < S_UNDELIVERABLE_LOG_MS) {
        logged->since++;
        return;
    }
    int64_t since = logged ? logged->since : 0;
    if (!logged) {
        logged = nrm_xcalloc(1, sizeof *logged);
        if (zhash_insert(self->undeliverable_logged, o->agency_id, logged) != 0)
            nrm_oom("undeliverable log");
        zhash_freefn(self->undeliverable_logged, o->agency_id, free);
    }
    *logged = (s_logged_t){now_ms, 0};
    nrm_log_warn("undeliverable: the agency has no subscription", "{s:s, s:s, s:s, s:I, s:I}",
                 "delivery_id", o->delivery_id, "agency_id", o->agency_id, "topic", o->topic,
                 "source_seq", (json_int_t)o->source_seq, "not_logged_since_last",
                 (json_int_t)since);
}

nrm_status_t notify_deliveries_write(notify_t *self, nrm_tx_t *tx, notify_batch_t *b, int *created)
{
    *created = 0;
    if (b->n == 0)
        return NRM_OK;
    PGresult *res = NULL;
    nrm_status_t st = NRM_OK;
    if (b->concerned.n + b->broad.n > 0) /* events that concern nobody: no statement */
        st = s_insert_deliveries(tx, b, &res);
    int rows = st == NRM_OK && res ? PQntuples(res) : 0, pending = 0;
    s_failed_row_t *failed_rows = nrm_xcalloc(rows ? (size_t)rows : 1, sizeof *failed_rows);
    size_t n_failed = 0, cursor = 0;
    for (int r = 0; r < rows; r++) {
        size_t k = s_find_event(b, nrm_db_text(res, r, 3), nrm_db_int(res, r, 4),
                                nrm_db_text(res, r, 1), &cursor);
        if (k == b->n) {
            st = nrm_fail(tx->err, NRM_INTERNAL, NULL, "a delivery of no gathered event");
            break;
        }
        b->events[k].has_rows = true;
        if (strcmp(nrm_db_text(res, r, 2), S_STATE_PENDING) == 0)
            pending++;
        else
            failed_rows[n_failed++] = (s_failed_row_t){k, r};
    }
    /* the undeliverable ones' notification.failed events, in the order of their events: one
     * statement for all */
    qsort(failed_rows, n_failed, sizeof *failed_rows, s_failed_cmp);
    s_outcome_t *failed = nrm_xcalloc(n_failed ? n_failed : 1, sizeof *failed);
    for (size_t i = 0; i < n_failed; i++) {
        const notify_gathered_t *g = &b->events[failed_rows[i].event];
        int r = failed_rows[i].row;
        failed[i] = (s_outcome_t){nrm_db_text(res, r, 0),
                                  "",
                                  nrm_db_text(res, r, 1),
                                  g->topic,
                                  g->stream,
                                  g->seq,
                                  g->case_id,
                                  g->event_id,
                                  0,
                                  S_NO_SUBSCRIPTION};
    }
    if (st == NRM_OK)
        st = s_emit_outcomes(tx, failed, n_failed);
    for (size_t i = 0; st == NRM_OK && i < n_failed; i++) {
        nrm_db_count_on_commit(tx->db, self->undeliverable, 1);
        s_log_undeliverable(self, &failed[i], nrm_mono_ms());
    }
    for (size_t i = 0; st == NRM_OK && i < b->n; i++)
        if (b->events[i].late_agency && b->events[i].has_rows)
            nrm_log_info("outcome given to a reporting agency learnt late", "{s:s, s:s, s:I}",
                         "agency_id", b->events[i].late_agency, "source_stream",
                         b->events[i].stream, "source_seq", (json_int_t)b->events[i].seq);
    free(failed);
    free(failed_rows);
    PQclear(res);
    if (st == NRM_OK)
        st = s_keep_events(tx, b);
    notify_batch_clear(b);
    if (st != NRM_OK)
        return st;
    nrm_db_count_on_commit(tx->db, self->created, pending);
    *created = pending;
    return NRM_OK;
}

/* A malloc'd copy of a result text (never NULL; aborts when out of memory). */
static char *s_dup(const PGresult *res, int row, int col)
{
    return nrm_xstrdup(nrm_db_text(res, row, col));
}

/* Builds the delivery of claimed row i, its secret opened with keyring (left NULL when it
 * cannot be opened: the attempt then fails without sending). */
static notify_delivery_t *s_claimed(const PGresult *res, int i, const char *claim_id,
                                    const nrm_keyring_t *keyring)
{
    notify_delivery_t *d = nrm_xcalloc(1, sizeof *d);
    d->delivery_id = s_dup(res, i, 0);
    d->claim_id = nrm_xstrdup(claim_id);
    d->subscription_id = s_dup(res, i, 1);
    d->agency_id = s_dup(res, i, 2);
    d->channel = s_dup(res, i, 3);
    d->topic = s_dup(res, i, 4);
    d->source_stream = s_dup(res, i, 5);
    d->source_seq = nrm_db_int(res, i, 6);
    d->case_id = s_dup(res, i, 7);
    d->event_id = s_dup(res, i, 8);
    d->attempts = (int)nrm_db_int(res, i, 9);
    d->started_ms = nrm_db_int(res, i, 10);
    if (!nrm_db_is_null(res, i, 11))
        d->address = s_dup(res, i, 11);
    if (!nrm_db_is_null(res, i, 12)) {
        size_t len = 0;
        const uint8_t *sealed = nrm_db_bytes(res, i, 12, &len);
        d->secret = notify_secret_open(keyring, d->subscription_id, sealed, len,
                                       (uint32_t)nrm_db_int(res, i, 13));
        d->secret_unreadable = d->secret == NULL;
    }
    if (!nrm_db_is_null(res, i, 14)) {
        size_t len = 0;
        const uint8_t *payload = nrm_db_bytes(res, i, 14, &len);
        d->event = nrm_event_unpack(payload, len);
    }
    return d;
}

/* The dead letters of one claim, logged once its transaction commits (nrm_db_on_end). */
typedef struct {
    size_t n;
    char *(*rows)[4]; /* delivery_id, subscription_id, agency_id, reason: copies */
} s_unsendable_log_t;

static void s_unsendable_logged(void *arg, bool committed)
{
    s_unsendable_log_t *l = arg;
    for (size_t i = 0; i < l->n; i++) {
        if (committed)
            nrm_log_warn("delivery failed: dead letter", "{s:s, s:s, s:s, s:s}", "delivery_id",
                         l->rows[i][0], "subscription_id", l->rows[i][1], "agency_id",
                         l->rows[i][2], "error", l->rows[i][3]);
        for (size_t k = 0; k < 4; k++)
            free(l->rows[i][k]);
    }
    free(l->rows);
    free(l);
}

/* Records in tx the n dead letters os made without an attempt: their notification.failed
 * events in one statement, counted and logged once tx commits. */
static nrm_status_t s_unsent(notify_t *self, nrm_tx_t *tx, const s_outcome_t *os, size_t n)
{
    if (n == 0)
        return NRM_OK;
    s_unsendable_log_t *l = nrm_xcalloc(1, sizeof *l);
    l->rows = nrm_xcalloc(n, sizeof *l->rows);
    for (; l->n < n; l->n++) {
        const s_outcome_t *o = &os[l->n];
        const char *logged[4] = {o->delivery_id, o->subscription_id, o->agency_id, o->last_error};
        for (size_t k = 0; k < 4; k++)
            l->rows[l->n][k] = nrm_xstrdup(logged[k]);
    }
    nrm_status_t st = s_emit_outcomes(tx, os, n);
    if (st == NRM_OK)
        nrm_db_count_on_commit(tx->db, self->failed, (int64_t)n);
    nrm_db_on_end(tx->db, s_unsendable_logged, l);
    return st;
}

/* Records in tx the dead letters of the claim's result res (the rows with a reason). */
static nrm_status_t s_unsendable(notify_t *self, nrm_tx_t *tx, const PGresult *res)
{
    int rows = PQntuples(res);
    size_t n = 0;
    for (int r = 0; r < rows; r++)
        n += !nrm_db_is_null(res, r, S_CLAIM_UNSENDABLE);
    if (n == 0)
        return NRM_OK; /* the usual claim: nothing to record */
    s_outcome_t *os = nrm_xcalloc(n, sizeof *os);
    n = 0;
    for (int r = 0; r < rows; r++)
        if (!nrm_db_is_null(res, r, S_CLAIM_UNSENDABLE))
            os[n++] =
                (s_outcome_t){nrm_db_text(res, r, 0),     nrm_db_text(res, r, 1),
                              nrm_db_text(res, r, 2),     nrm_db_text(res, r, 4),
                              nrm_db_text(res, r, 5),     nrm_db_int(res, r, 6),
                              nrm_db_text(res, r, 7),     nrm_db_text(res, r, 8),
                              (int)nrm_db_int(res, r, 9), nrm_db_text(res, r, S_CLAIM_UNSENDABLE)};
    nrm_status_t st = s_unsent(self, tx, os, n);
    free(os);
    return st;
}

/* True when claimed delivery d (row i of the claim's result res) may be attempted: owed because
 * its event concerns the agency, or by its subscription's topics under a grant that still
 * delivers the event (an event not stored is left to the attempt, which fails without sending). */
static bool s_granted(notify_t *self, const PGresult *res, int i, const notify_delivery_t *d)
{
    return !nrm_db_int(res, i, S_CLAIM_BY_TOPIC) || !d->event ||
           notify_grants_deliver(self->settings.grants, nrm_service_config(self->service),
                                 d->agency_id, d->event);
}

/* Dead-letters in tx, with one statement, the n claimed deliveries ds (of claim claim_id) that
 * their agency's grants no longer cover, with their events. ds stays the caller's. */
static nrm_status_t s_ungranted(notify_t *self, nrm_tx_t *tx, const char *claim_id,
                                notify_delivery_t **ds, size_t n)
{
    if (n == 0)
        return NRM_OK;
    char **ids = nrm_xcalloc(n, sizeof *ids);
    for (size_t i = 0; i < n; i++)
        ids[i] = ds[i]->delivery_id;
    char *array = nrm_pgarray_of_texts(ids, n);
    nrm_params_t p = {0};
    nrm_params_text(&p, array);
    nrm_params_text(&p, claim_id);
    nrm_params_int(&p, tx->now_ms);
    nrm_params_text(&p, S_UNSENDABLE_UNGRANTED);
    PGresult *res = NULL;
    nrm_status_t st = nrm_db_exec(tx->db, "notify_delivery_ungranted", &p, &res, tx->err);
    free(array);
    free(ids);
    if (st != NRM_OK)
        return st;
    /* the rows are this claim's, locked by this transaction: every one was updated */
    bool all = PQntuples(res) == (int)n;
    PQclear(res);
    if (!all)
        return nrm_fail(tx->err, NRM_INTERNAL, NULL, "a claimed delivery changed under its claim");
    s_outcome_t *os = nrm_xcalloc(n, sizeof *os);
    for (size_t i = 0; i < n; i++) /* the claim counted an attempt that was never made */
        os[i] = s_outcome_of(ds[i], ds[i]->attempts - 1, S_UNSENDABLE_UNGRANTED);
    st = s_unsent(self, tx, os, n);
    free(os);
    return st;
}

nrm_status_t notify_deliveries_claim(notify_t *self, nrm_tx_t *tx, int max, zlist_t *out,
                                     int *claimed)
{
    *claimed = 0;
    if (max <= 0)
        return NRM_OK;
    char claim_id[37];
    nrm_uuid_v4(claim_id);
    nrm_params_t p = {0};
    nrm_params_int(&p, tx->now_ms);
    nrm_params_int(&p, max);
    nrm_params_int(&p, self->settings.lease_ms);
    nrm_params_text(&p, claim_id);
    PGresult *res = NULL;
    nrm_status_t st = nrm_db_exec(tx->db, "notify_delivery_claim", &p, &res, tx->err);
    if (st != NRM_OK)
        return st;
    int rows = PQntuples(res);
    notify_delivery_t **ungranted = nrm_xcalloc(rows ? (size_t)rows : 1, sizeof *ungranted);
    size_t n_ungranted = 0;
    for (int i = 0; i < rows; i++) {
        if (!nrm_db_is_null(res, i, S_CLAIM_UNSENDABLE))
            continue; /* dead-lettered by the claim: no attempt */
        notify_delivery_t *d = s_claimed(res, i, claim_id, self->keyring);
        if (!s_granted(self, res, i, d)) {
            ungranted[n_ungranted++] = d;
            continue;
        }
        zlist_append(out, d);
        (*claimed)++;
    }
    st = s_unsendable(self, tx, res);
    PQclear(res);
    if (st == NRM_OK)
        st = s_ungranted(self, tx, claim_id, ungranted, n_ungranted);
    for (size_t i = 0; i < n_ungranted; i++)
        notify_delivery_destroy(&ungranted[i]);
    free(ungranted);
    nrm_db_count_on_commit(tx->db, self->attempted, *claimed);
    return st;
}

int64_t notify_backoff_ms(const notify_settings_t *s, int attempts)
{
    int64_t delay = s->backoff_ms;
    for (int i = 1; i < attempts && delay < s->max_backoff_ms; i++)
        delay *= 2;
    if (delay > s->max_backoff_ms)
        delay = s->max_backoff_ms;
    int64_t half = delay / 2;
    return delay - half + (half > 0 ? (int64_t)randombytes_uniform((uint32_t)half + 1) : 0);
}

/* What happened to one finished attempt once recorded. */
typedef enum { S_NOTHING, S_DELIVERED, S_RETRY, S_DEAD } s_fate_t;

/* Records the outcome of one attempt in the open transaction; *fate says what it became. */
static nrm_status_t s_record(notify_t *self, nrm_tx_t *tx, const notify_delivery_t *d,
                             s_fate_t *fate)
{
    const notify_settings_t *s = &self->settings;
    int64_t now = tx->now_ms;
    bool dead = !d->ok && (d->attempts >= s->max_attempts || now - d->started_ms >= s->max_age_ms);
    nrm_params_t p = {0};
    nrm_params_text(&p, d->delivery_id);
    PGresult *res = NULL;
    nrm_status_t st;
    *fate = S_NOTHING;
    if (d->ok) {
        nrm_params_int(&p, now);
        st = nrm_db_exec(tx->db, "notify_delivery_delivered", &p, &res, tx->err);
    } else if (!dead) {
        int64_t next = now + notify_backoff_ms(s, d->attempts);
        if (next > d->started_ms + s->max_age_ms)
            next = d->started_ms + s->max_age_ms; /* one last attempt when the age runs out */
        nrm_params_text(&p, d->claim_id);
        nrm_params_int(&p, next);
        nrm_params_text(&p, d->error);
        st = nrm_db_exec(tx->db, "notify_delivery_retry_later", &p, &res, tx->err);
        if (st == NRM_OK && PQntuples(res) == 1)
            *fate = S_RETRY;
        PQclear(res);
        return st;
    } else {
        nrm_params_text(&p, d->claim_id);
        nrm_params_int(&p, now);
        nrm_params_text(&p, d->error);
        st = nrm_db_exec(tx->db, "notify_delivery_dead", &p, &res, tx->err);
    }
    if (st != NRM_OK)
        return st;
    if (PQntuples(res) == 1) { /* else another attempt was recorded first: nothing to say */
        s_outcome_t o = s_outcome_of(d, (int)nrm_db_int(res, 0, 0), d->ok ? NULL : d->error);
        st = s_emit_outcome(tx, &o);
        *fate = d->ok ? S_DELIVERED : S_DEAD;
    }
    PQclear(res);
    return st;
}

/* Records every successful attempt of done in the open transaction with one UPDATE over the
 * array of their ids and emits their notification.delivered events with one statement;
 * fates[i] becomes S_DELIVERED for the i-th of done when its row was still pending (otherwise
 * another attempt was recorded first: nothing to say). Failed attempts are left to s_record. */
static nrm_status_t s_record_delivered(nrm_tx_t *tx, zlist_t *done, s_fate_t *fates)
{
    size_t n = zlist_size(done), n_ok = 0;
    char **ids = nrm_xcalloc(n ? n : 1, sizeof *ids);
    for (notify_delivery_t *d = zlist_first(done); d; d = zlist_next(done))
        if (d->ok)
            ids[n_ok++] = d->delivery_id;
    nrm_status_t st = NRM_OK;
    PGresult *res = NULL;
    if (n_ok > 0) {
        char *array = nrm_pgarray_of_texts(ids, n_ok);
        nrm_params_t p = {0};
        nrm_params_text(&p, array);
        nrm_params_int(&p, tx->now_ms);
        st = nrm_db_exec(tx->db, "notify_delivery_delivered_many", &p, &res, tx->err);
        free(array);
    }
    int rows = st == NRM_OK && res ? PQntuples(res) : 0;
    s_outcome_t *os = nrm_xcalloc(rows ? (size_t)rows : 1, sizeof *os);
    size_t n_os = 0;
    for (int r = 0; r < rows; r++) {
        const char *id = nrm_db_text(res, r, 0);
        size_t k = 0;
        for (notify_delivery_t *d = zlist_first(done); d; d = zlist_next(done), k++) {
            if (!d->ok || strcmp(d->delivery_id, id) != 0 || fates[k] == S_DELIVERED)
                continue;
            fates[k] = S_DELIVERED;
            os[n_os++] = s_outcome_of(d, (int)nrm_db_int(res, r, 1), NULL);
            break;
        }
    }
    if (st == NRM_OK)
        st = s_emit_outcomes(tx, os, n_os);
    PQclear(res);
    free(os);
    free(ids);
    return st;
}

/* Logs and counts what a committed outcome became. */
static void s_report(notify_t *self, const notify_delivery_t *d, s_fate_t fate)
{
    if (fate == S_DELIVERED) {
        (*self->delivered)++;
        nrm_log_debug("delivered", "{s:s, s:s, s:s, s:i}", "delivery_id", d->delivery_id,
                      "subscription_id", d->subscription_id, "topic", d->topic, "attempts",
                      d->attempts);
    } else if (fate == S_RETRY) {
        nrm_log_info("delivery attempt failed, will retry", "{s:s, s:s, s:i, s:s}", "delivery_id",
                     d->delivery_id, "subscription_id", d->subscription_id, "attempts", d->attempts,
                     "error", d->error);
    } else if (fate == S_DEAD) {
        (*self->failed)++;
        nrm_log_warn("delivery failed: dead letter", "{s:s, s:s, s:s, s:i, s:s}", "delivery_id",
                     d->delivery_id, "subscription_id", d->subscription_id, "agency_id",
                     d->agency_id, "attempts", d->attempts, "error", d->error);
    }
}

int notify_deliveries_turn(notify_t *self, nrm_db_t *db, zlist_t *done, int max, zlist_t *out)
{
    size_t n = zlist_size(done);
    s_fate_t *fates = nrm_xcalloc(n ? n : 1, sizeof *fates);
    nrm_error_t err;
    nrm_error_clear(&err);
    nrm_tx_t tx = {db, nrm_service_name(self->service), "", nrm_now_ms(), &err, 0};
    nrm_status_t st = nrm_db_begin(db, &err);
    if (st == NRM_OK)
        st = s_record_delivered(&tx, done, fates);
    size_t i = 0;
    for (notify_delivery_t *d = zlist_first(done); st == NRM_OK && d; d = zlist_next(done), i++)
        if (!d->ok)
            st = s_record(self, &tx, d, &fates[i]);
    zlist_t *claimed = zlist_new();
    int count = 0;
    if (st == NRM_OK)
        st = claimed ? notify_deliveries_claim(self, &tx, max, claimed, &count) : NRM_INTERNAL;
    if (st == NRM_OK)
        st = nrm_db_commit(db, &err);
    notify_delivery_t *d;
    if (st != NRM_OK) {
        nrm_db_rollback(db);
        while (claimed && (d = zlist_pop(claimed)) != NULL)
            notify_delivery_destroy(&d);
        zlist_destroy(&claimed);
        free(fates);
        if (!self->db_trouble)
            nrm_log_warn("deliveries neither recorded nor claimed for now", "{s:s, s:s}", "status",
                         nrm_status_name(err.status), "message", err.message);
        self->db_trouble = true;
        return -1;
    }
    if (self->db_trouble)
        nrm_log_info("deliveries recorded and claimed again", NULL);
    self->db_trouble = false;
    for (i = 0; (d = zlist_pop(done)) != NULL; i++) {
        s_report(self, d, fates[i]);
        notify_delivery_destroy(&d);
    }
    while ((d = zlist_pop(claimed)) != NULL)
        zlist_append(out, d);
    zlist_destroy(&claimed);
    free(fates);
    return count;
}

void notify_deliveries_release(notify_t *self, nrm_db_t *db, zlist_t *unfinished)
{
    nrm_error_t err;
    if (zlist_size(unfinished) == 0 || nrm_db_begin(db, &err) != NRM_OK)
        return;
    int64_t now = nrm_now_ms();
    nrm_status_t st = NRM_OK;
    for (notify_delivery_t *d = zlist_first(unfinished); st == NRM_OK && d;
         d = zlist_next(unfinished)) {
        nrm_params_t p = {0};
        nrm_params_text(&p, d->delivery_id);
        nrm_params_text(&p, d->claim_id);
        nrm_params_int(&p, now);
        st = nrm_db_exec(db, "notify_delivery_release", &p, NULL, &err);
    }
    if (st != NRM_OK || nrm_db_commit(db, &err) != NRM_OK)
        nrm_db_rollback(db);
}

void notify_delivery_destroy(notify_delivery_t **d_p)
{
    if (!d_p || !*d_p)
        return;
    notify_delivery_t *d = *d_p;
    if (d->easy)
        curl_easy_cleanup(d->easy);
    curl_slist_free_all(d->headers);
    curl_slist_free_all(d->recipients);
    if (d->secret)
        sodium_memzero(d->secret, strlen(d->secret));
    char *strings[] = {d->delivery_id, d->claim_id, d->subscription_id, d->agency_id,
                       d->channel,     d->topic,    d->source_stream,   d->case_id,
                       d->event_id,    d->address,  d->secret,          d->body};
    for (size_t i = 0; i < sizeof strings / sizeof strings[0]; i++)
        free(strings[i]);
    if (d->event)
        nrm__v1__event__free_unpacked(d->event, NULL);
    free(d);
    *d_p = NULL;
}

/* Fills a Delivery from a row of S_LIST_COLUMNS (strings owned by the call). */
static Nrm__V1__Delivery *s_listed(nrm_call_t *call, const PGresult *res, int i)
{
    Nrm__V1__Delivery *d = nrm_call_alloc(call, sizeof *d);
    nrm__v1__delivery__init(d);
    d->delivery_id = nrm_call_strdup(call, nrm_db_text(res, i, 0));
    d->subscription_id = nrm_call_strdup(call, nrm_db_text(res, i, 1));
    d->agency_id = nrm_call_strdup(call, nrm_db_text(res, i, 2));
    d->topic = nrm_call_strdup(call, nrm_db_text(res, i, 3));
    d->source_stream = nrm_call_strdup(call, nrm_db_text(res, i, 4));
    d->source_seq = nrm_db_int(res, i, 5);
    d->attempts = (int32_t)nrm_db_int(res, i, 6);
    d->state = nrm_call_strdup(call, nrm_db_text(res, i, 7));
    d->last_error = nrm_call_strdup(call, nrm_db_text(res, i, 8));
    d->next_attempt_ms = nrm_db_int(res, i, 9);
    d->channel = nrm_call_strdup(call, nrm_db_text(res, i, 10));
    d->case_id = nrm_call_strdup(call, nrm_db_text(res, i, 11));
    return d;
}

/* Sets the reply to the deliveries of res. */
static void s_reply_list(nrm_call_t *call, const PGresult *res)
{
    Nrm__V1__DeliveryList *list = nrm_call_alloc(call, sizeof *list);
    nrm__v1__delivery_list__init(list);
    int rows = PQntuples(res);
    list->deliveries = nrm_call_alloc(call, (size_t)(rows ? rows : 1) * sizeof *list->deliveries);
    for (int i = 0; i < rows; i++)
        list->deliveries[list->n_deliveries++] = s_listed(call, res, i);
    call->reply->result_case = NRM__V1__REPLY__RESULT_DELIVERY_LIST;
    call->reply->delivery_list = list;
}

/* The agency whose deliveries a delivery request may see (nrm_authz): "" (all) for a
 * coordinator, the sender's own otherwise. */
static const char *s_deliveries_of(const nrm_call_t *call)
{
    return nrm_authz_sender_is(call, NRM_ROLE_COORDINATOR) ? "" : call->agency_id;
}

nrm_status_t notify_list_deliveries(void *ctx, nrm_call_t *call)
{
    const Nrm__V1__ListDeliveries *l = call->request->list_deliveries;
    static const char *const states[] = {"", "pending", "delivered", "failed", "undeliverable"};
    bool known = false;
    for (size_t i = 0; i < sizeof states / sizeof states[0]; i++)
        known |= strcmp(l->state, states[i]) == 0;
    if (!known)
        return nrm_fail(call->tx.err, NRM_INVALID_ARGUMENT, "list_deliveries.state",
                        "state is pending, delivered, failed, undeliverable or empty for all");
    if (l->max < 0 || l->max > NOTIFY_LIST_MAX)
        return nrm_fail(call->tx.err, NRM_INVALID_ARGUMENT, "list_deliveries.max",
                        "max is from 0 (the default, %d) to %d", NOTIFY_LIST_DEFAULT,
                        NOTIFY_LIST_MAX);
    /* any agency, its own deliveries only (decided by the server: a request about no object) */
    nrm_params_t p = {0};
    nrm_params_text(&p, l->state);
    nrm_params_int(&p, l->max ? l->max : NOTIFY_LIST_DEFAULT);
    nrm_params_text(&p, s_deliveries_of(call));
    PGresult *res = NULL;
    nrm_status_t st = nrm_db_exec(call->tx.db, "notify_delivery_list", &p, &res, call->tx.err);
    if (st != NRM_OK)
        return st;
    s_reply_list(call, res);
    PQclear(res);
    return NRM_OK;
}

/* True when the delivery of the state row res (s_sql_state) is owed by its subscription's topics
 * and its agency's grants no longer deliver its stored event. */
static bool s_no_longer_granted(notify_t *self, nrm_call_t *call, const PGresult *res)
{
    if (!nrm_db_int(res, 0, 3) || nrm_db_is_null(res, 0, 4))
        return false;
    size_t len = 0;
    const uint8_t *payload = nrm_db_bytes(res, 0, 4, &len);
    Nrm__V1__Event *ev = nrm_event_unpack(payload, len);
    bool ungranted = ev && !notify_grants_deliver(self->settings.grants, call->config,
                                                  nrm_db_text(res, 0, 1), ev);
    if (ev)
        nrm__v1__event__free_unpacked(ev, NULL);
    return ungranted;
}

/* Loads (and locks) the delivery a retry names and decides whether the sender may retry it
 * (nrm_authz: a coordinator, or the agency the delivery is for): PERMISSION_DENIED (for an
 * unknown delivery too, nrm_authz_not_found), NOT_FOUND, then FAILED_PRECONDITION unless it failed
 * and its subscription can still carry it (active, with the delivery's agency and channel, still
 * following its topic when the delivery was owed by topic, and then under a grant that still
 * delivers its event). */
static nrm_status_t s_load_for_retry(notify_t *self, nrm_call_t *call, const char *id)
{
    nrm_params_t q = {0};
    nrm_params_text(&q, id);
    PGresult *res = NULL;
    nrm_status_t st = nrm_db_exec(call->tx.db, "notify_delivery_state", &q, &res, call->tx.err);
    if (st != NRM_OK)
        return st;
    if (PQntuples(res) == 0) {
        PQclear(res);
        return nrm_authz_not_found(call, "retry_delivery.delivery_id", "no such delivery");
    }
    bool own = strcmp(nrm_db_text(res, 0, 1), call->agency_id) == 0;
    st = nrm_authz_check(call, own ? NRM_ROLE_SUBSCRIPTION_AGENCY : 0);
    if (st == NRM_OK && strcmp(nrm_db_text(res, 0, 0), "failed") != 0)
        st = nrm_fail(call->tx.err, NRM_FAILED_PRECONDITION, "retry_delivery.delivery_id",
                      "only a failed delivery can be retried; this one is %s",
                      nrm_db_text(res, 0, 0));
    else if (st == NRM_OK && !nrm_db_int(res, 0, 2))
        st = nrm_fail(call->tx.err, NRM_FAILED_PRECONDITION, "retry_delivery.delivery_id",
                      "the delivery's subscription is retired, gone, now has another agency or"
                      " channel, or no longer follows its topic: it would not be sent where it"
                      " was meant to go");
    else if (st == NRM_OK && s_no_longer_granted(self, call, res))
        st = nrm_fail(call->tx.err, NRM_FAILED_PRECONDITION, "retry_delivery.delivery_id",
                      "the agency's grants (notify.grants) no longer cover this delivery's"
                      " event: it would not be sent");
    PQclear(res);
    return st;
}

nrm_status_t notify_retry_delivery(void *ctx, nrm_call_t *call)
{
    notify_t *self = ctx;
    const char *id = call->request->retry_delivery->delivery_id;
    if (!nrm_uuid_valid(id))
        return nrm_fail(call->tx.err, NRM_INVALID_ARGUMENT, "retry_delivery.delivery_id",
                        "delivery_id is a UUID");
    nrm_status_t st = s_load_for_retry(self, call, id);
    if (st != NRM_OK)
        return st;
    call->subject_id = id;
    nrm_params_t p = {0};
    nrm_params_text(&p, id);
    nrm_params_int(&p, call->tx.now_ms);
    PGresult *res = NULL;
    st = nrm_db_exec(call->tx.db, "notify_delivery_retry", &p, &res, call->tx.err);
    if (st != NRM_OK)
        return st;
    bool retried = PQntuples(res) == 1;
    if (retried)
        s_reply_list(call, res);
    PQclear(res);
    if (!retried) /* the row is locked: cannot happen, but never answer OK without it */
        return nrm_fail(call->tx.err, NRM_FAILED_PRECONDITION, "retry_delivery.delivery_id",
                        "the delivery changed meanwhile");
    nrm_db_count_on_commit(call->tx.db, self->retried, 1);
    notify_sender_wake(self->sender);
    nrm_log_info("failed delivery retried", "{s:s, s:s}", "delivery_id", id, "by", call->agency_id);
    return NRM_OK;
}
