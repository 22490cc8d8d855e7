/* nrm_stream: one service's event stream, in order and exactly once (see nrm_stream.h). */
#include "nrm_alloc.h"
#include "nrm_stream.h"
#include "nrm_client.h"
#include "nrm_event.h"
#include "nrm_time.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#define S_FETCH_MAX 1000 /* events asked for per Fetch (the service may cap it) */
#define S_LIVE_BATCH 500 /* live messages taken per call, so other streams get their turn */
#define S_SUB_HWM 100000 /* live messages queued while a Fetch is in progress */
#define S_EVENT_FRAMES 2 /* [topic][Event] */
#define S_PROBLEM_MAX 512

struct nrm_stream_t {
    char *name;
    nrm_client_t *client;
    zsock_t *sub;
    int timeout_ms;
    bool started;        /* the position is known */
    int64_t last;        /* last seq handled (printed or passed over) */
    const char *failure; /* why the last Fetch failed (a status name), or NULL; static */
};

/* Public: subscribes to everything at once, so nothing live is missed. */
nrm_stream_t *nrm_stream_new(const char *name, const char *api_endpoint,
                             const char *events_endpoint, const char *agency_id,
                             const nrm_curve_t *curve, int timeout_ms)
{
    nrm_stream_t *self = nrm_xcalloc(1, sizeof *self);
    self->name = nrm_xstrdup(name);
    self->timeout_ms = timeout_ms;
    self->client = nrm_client_new(api_endpoint, agency_id, curve);
    self->sub = zsock_new(ZMQ_SUB);
    if (!self->client || !self->sub) {
        nrm_stream_destroy(&self);
        return NULL;
    }
    zsock_set_rcvhwm(self->sub, S_SUB_HWM);
    zsock_set_linger(self->sub, 0);
    zsock_set_subscribe(self->sub, "");
    nrm_auth_apply_client(self->sub, curve);
    if (zsock_connect(self->sub, "%s", events_endpoint) != 0)
        nrm_stream_destroy(&self);
    return self;
}

/* Public: closes both sockets. */
void nrm_stream_destroy(nrm_stream_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    nrm_stream_t *self = *self_p;
    zsock_destroy(&self->sub);
    nrm_client_destroy(&self->client);
    free(self->name);
    free(self);
    *self_p = NULL;
}

/* Public: why the last Fetch failed. */
const char *nrm_stream_failure(const nrm_stream_t *self)
{
    return self->failure;
}

/* Public: the stream's name. */
const char *nrm_stream_name(const nrm_stream_t *self)
{
    return self->name;
}

/* Public: the position, when known. */
bool nrm_stream_position(const nrm_stream_t *self, int64_t *last)
{
    *last = self->last;
    return self->started;
}

/* Public: the SUB socket (borrowed). */
zsock_t *nrm_stream_sub(nrm_stream_t *self)
{
    return self->sub;
}

/* Public: limit reached or output failed. */
bool nrm_stream_sink_done(const nrm_stream_sink_t *sink)
{
    return sink->failed || (sink->limit > 0 && sink->handled >= sink->limit);
}

/* The topic of ev: its own field, else the one its body implies. */
static const char *s_topic(const Nrm__V1__Event *ev)
{
    if (ev->topic && ev->topic[0])
        return ev->topic;
    const char *topic = nrm_event_topic_of(ev->body_case);
    return topic ? topic : "";
}

/* Handles the next event of the stream: moves the position; if it matches, prints it or gives
 * it to the sink's callback. */
static void s_emit(nrm_stream_t *self, const Nrm__V1__Event *ev, nrm_stream_sink_t *sink)
{
    self->last = ev->seq;
    const char *topic = s_topic(ev);
    if (ev->body_case == NRM__V1__EVENT__BODY_STREAM_HEAD ||
        !nrm_topic_matches(topic, sink->prefixes))
        return;
    if (sink->on_event && sink->on_event(ev, sink->arg) != 0) {
        sink->failed = true;
        return;
    }
    sink->handled++;
    sink->last_handled_ms = nrm_mono_ms();
}

/* Tells the sink's on_problem what went wrong with stream name (nothing without one). */
static void s_say(nrm_stream_sink_t *sink, const char *name, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void s_say(nrm_stream_sink_t *sink, const char *name, const char *fmt, ...)
{
    if (!sink->on_problem)
        return;
    char line[S_PROBLEM_MAX];
    va_list args;
    va_start(args, fmt);
    vsnprintf(line, sizeof line, fmt, args);
    va_end(args);
    sink->on_problem(name, line, sink->arg);
}

/* Asks for the events after the position. Returns the FetchResult's Reply (caller frees), or
 * NULL after telling the sink why. */
static Nrm__V1__Reply *s_fetch(nrm_stream_t *self, nrm_stream_sink_t *sink)
{
    Nrm__V1__Fetch fetch = NRM__V1__FETCH__INIT;
    fetch.stream = self->name;
    fetch.from_seq = self->last + 1;
    fetch.max = S_FETCH_MAX;
    Nrm__V1__Request req = NRM__V1__REQUEST__INIT;
    req.body_case = NRM__V1__REQUEST__BODY_FETCH;
    req.fetch = &fetch;
    nrm_error_t err;
    nrm_error_clear(&err);
    Nrm__V1__Reply *reply = nrm_client_call(self->client, &req, self->timeout_ms, &err);
    if (!reply) {
        s_say(sink, self->name, "cannot catch up: %s", err.message);
        self->failure = nrm_status_name(NRM_UNAVAILABLE);
        return NULL;
    }
    if (reply->status != NRM_OK || reply->result_case != NRM__V1__REPLY__RESULT_FETCH_RESULT) {
        s_say(sink, self->name, "fetch refused: %s", nrm_status_name(reply->status));
        self->failure = nrm_status_name(reply->status);
        nrm__v1__reply__free_unpacked(reply, NULL);
        return NULL;
    }
    self->failure = NULL;
    return reply;
}

/* Fetches and handles from the position until the service's head (or the sink is done).
 * Returns false when a Fetch was not answered. */
static bool s_catch_up(nrm_stream_t *self, nrm_stream_sink_t *sink)
{
    bool more = true;
    while (more && !nrm_stream_sink_done(sink)) {
        Nrm__V1__Reply *reply = s_fetch(self, sink);
        if (!reply)
            return false;
        const Nrm__V1__FetchResult *result = reply->fetch_result;
        for (size_t i = 0; i < result->n_events && !nrm_stream_sink_done(sink); i++)
            if (result->events[i]->seq > self->last)
                s_emit(self, result->events[i], sink);
        more = result->n_events > 0 && self->last < result->head;
        nrm__v1__reply__free_unpacked(reply, NULL);
    }
    return true;
}

/* Public: positions before from_seq and catches up to the head. */
bool nrm_stream_start_from(nrm_stream_t *self, int64_t from_seq, nrm_stream_sink_t *sink)
{
    self->started = true;
    self->last = from_seq > 0 ? from_seq - 1 : 0;
    return s_catch_up(self, sink);
}

/* A stream.head heartbeat: the first one positions the stream, a later one ahead of the
 * position fills the gap. */
static void s_take_head(nrm_stream_t *self, int64_t head, nrm_stream_sink_t *sink)
{
    if (!self->started) {
        self->started = true;
        self->last = head;
    } else if (head > self->last) {
        s_catch_up(self, sink);
    }
}

/* One live event: the first one positions the stream just before it; a gap is fetched; one
 * already handled is dropped. */
static void s_take_live(nrm_stream_t *self, const Nrm__V1__Event *ev, nrm_stream_sink_t *sink)
{
    if (ev->body_case == NRM__V1__EVENT__BODY_STREAM_HEAD) {
        s_take_head(self, ev->stream_head ? ev->stream_head->head : 0, sink);
        return;
    }
    if (ev->seq <= 0)
        return;
    if (!self->started) {
        self->started = true;
        self->last = ev->seq - 1;
    }
    if (ev->seq > self->last + 1)
        s_catch_up(self, sink);
    if (ev->seq == self->last + 1 && !nrm_stream_sink_done(sink))
        s_emit(self, ev, sink);
}

/* Returns the Event of a [topic][Event] message of this stream, or NULL. Caller frees. */
static Nrm__V1__Event *s_unpack(nrm_stream_t *self, zmsg_t *msg)
{
    zframe_t *body = zmsg_last(msg);
    Nrm__V1__Event *ev = zmsg_size(msg) == S_EVENT_FRAMES
                             ? nrm_event_unpack(zframe_data(body), zframe_size(body))
                             : NULL;
    if (ev && ev->stream && ev->stream[0] && strcmp(ev->stream, self->name) != 0) {
        nrm__v1__event__free_unpacked(ev, NULL);
        ev = NULL;
    }
    return ev;
}

/* Public: a bounded batch of live messages, each taken in order. */
void nrm_stream_on_live(nrm_stream_t *self, nrm_stream_sink_t *sink)
{
    for (int i = 0; i < S_LIVE_BATCH && !nrm_stream_sink_done(sink); i++) {
        zmsg_t *msg = zmsg_recv_nowait(self->sub);
        if (!msg)
            break;
        Nrm__V1__Event *ev = s_unpack(self, msg);
        zmsg_destroy(&msg);
        if (ev) {
            s_take_live(self, ev, sink);
            nrm__v1__event__free_unpacked(ev, NULL);
        }
    }
}
