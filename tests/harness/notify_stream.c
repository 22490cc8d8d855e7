#include "notify_stream.h"
#include "nrm_crypto.h"
#include "nrm_event.h"
#include "nrm_time.h"

#include <czmq.h>

#define S_HEARTBEAT_MS 200
#define S_FETCH_MAX 1000
#define S_ID_MAX 37

struct notify_stream_t {
    zactor_t *actor;
    char *stream;
    int64_t seq; /* last seq emitted */
};

typedef struct {
    const char *stream;
    const char *api;
    const char *events;
} s_args_t;

/* Answers one Fetch frame from a client identity with the stored events. */
static void s_answer(zsock_t *router, zframe_t *identity, zframe_t *payload, zlist_t *events,
                     const char *stream)
{
    Nrm__V1__Request *req =
        nrm__v1__request__unpack(NULL, zframe_size(payload), zframe_data(payload));
    if (!req)
        return;
    Nrm__V1__Reply reply = NRM__V1__REPLY__INIT;
    Nrm__V1__FetchResult result = NRM__V1__FETCH_RESULT__INIT;
    reply.request_id = req->request_id;
    size_t total = zlist_size(events), n = 0;
    Nrm__V1__Event **list = calloc(total ? total : 1, sizeof *list);
    if (req->body_case == NRM__V1__REQUEST__BODY_FETCH && strcmp(req->fetch->stream, stream) == 0) {
        int max =
            req->fetch->max > 0 && req->fetch->max < S_FETCH_MAX ? req->fetch->max : S_FETCH_MAX;
        int64_t seq = 0;
        for (zframe_t *f = zlist_first(events); f && (int)n < max; f = zlist_next(events))
            if (++seq >= req->fetch->from_seq)
                list[n++] = nrm_event_unpack(zframe_data(f), zframe_size(f));
        result.events = list;
        result.n_events = n;
        result.head = (int64_t)total;
        reply.status = NRM__V1__STATUS__STATUS_OK;
        reply.result_case = NRM__V1__REPLY__RESULT_FETCH_RESULT;
        reply.fetch_result = &result;
    } else {
        reply.status = NRM__V1__STATUS__STATUS_UNIMPLEMENTED;
    }
    zframe_t *out = zframe_new(NULL, nrm__v1__reply__get_packed_size(&reply));
    nrm__v1__reply__pack(&reply, zframe_data(out));
    zmsg_t *msg = zmsg_new();
    zmsg_append(msg, &identity);
    zmsg_append(msg, &out);
    zmsg_send(&msg, router);
    for (size_t i = 0; i < n; i++)
        nrm__v1__event__free_unpacked(list[i], NULL);
    free(list);
    nrm__v1__request__free_unpacked(req, NULL);
}

/* Frees a stored frame (zlist free function). */
static void s_frame_free(void *item)
{
    zframe_t *frame = item;
    zframe_destroy(&frame);
}

/* Publishes stream.head with the number of stored events. */
static void s_heartbeat(zsock_t *pub, const char *stream, int64_t head)
{
    Nrm__V1__StreamHead body = NRM__V1__STREAM_HEAD__INIT;
    body.head = head;
    Nrm__V1__Event ev = NRM__V1__EVENT__INIT;
    char id[S_ID_MAX];
    nrm_uuid_v4(id);
    ev.event_id = id;
    ev.stream = (char *)stream;
    ev.topic = NRM_TOPIC_STREAM_HEAD;
    ev.occurred_at_ms = nrm_now_ms();
    ev.body_case = NRM__V1__EVENT__BODY_STREAM_HEAD;
    ev.stream_head = &body;
    size_t len = 0;
    uint8_t *bytes = nrm_event_pack(&ev, &len);
    zmsg_t *msg = zmsg_new();
    zmsg_addstr(msg, NRM_TOPIC_STREAM_HEAD);
    zmsg_addmem(msg, bytes, len);
    zmsg_send(&msg, pub);
    free(bytes);
}

/* The actor: serves the stream until $TERM. Commands: EMIT|STORE, topic, event bytes. */
static void s_actor(zsock_t *pipe, void *arg)
{
    s_args_t *args = arg;
    zsock_t *router = zsock_new(ZMQ_ROUTER), *pub = zsock_new(ZMQ_PUB);
    if (zsock_bind(router, "%s", args->api) < 0 || zsock_bind(pub, "%s", args->events) < 0) {
        fprintf(stderr, "notify_stream: cannot bind %s / %s\n", args->api, args->events);
        abort();
    }
    char *stream = strdup(args->stream); /* args live until the signal only */
    zlist_t *events = zlist_new();
    zpoller_t *poller = zpoller_new(pipe, router, NULL);
    zsock_signal(pipe, 0);
    int64_t next_beat = nrm_mono_ms() + S_HEARTBEAT_MS;
    for (;;) {
        int64_t wait = next_beat - nrm_mono_ms();
        zsock_t *ready = zpoller_wait(poller, (int)(wait > 0 ? wait : 0));
        if (ready == pipe) {
            zmsg_t *msg = zmsg_recv(pipe);
            char *command = msg ? zmsg_popstr(msg) : NULL;
            bool stop = !command || strcmp(command, "$TERM") == 0;
            if (!stop) {
                char *topic = zmsg_popstr(msg);
                zframe_t *bytes = zmsg_pop(msg);
                zframe_t *stored = zframe_dup(bytes);
                zlist_append(events, stored);
                zlist_freefn(events, stored, s_frame_free, true);
                if (strcmp(command, "EMIT") == 0) {
                    zmsg_t *out = zmsg_new();
                    zmsg_addstr(out, topic);
                    zmsg_append(out, &bytes);
                    zmsg_send(&out, pub);
                }
                zframe_destroy(&bytes);
                free(topic);
                zsock_signal(pipe, 0);
            }
            free(command);
            zmsg_destroy(&msg);
            if (stop)
                break;
        } else if (ready == router) {
            zmsg_t *msg = zmsg_recv(router);
            zframe_t *identity = zmsg_pop(msg), *payload = zmsg_pop(msg);
            if (identity && payload)
                s_answer(router, identity, payload, events, stream);
            else
                zframe_destroy(&identity);
            zframe_destroy(&payload);
            zmsg_destroy(&msg);
        }
        if (nrm_mono_ms() >= next_beat) {
            s_heartbeat(pub, stream, (int64_t)zlist_size(events));
            next_beat = nrm_mono_ms() + S_HEARTBEAT_MS;
        }
    }
    zpoller_destroy(&poller);
    zlist_destroy(&events);
    free(stream);
    zsock_destroy(&router);
    zsock_destroy(&pub);
}

notify_stream_t *notify_stream_new(const char *stream, const char *api, const char *events)
{
    notify_stream_t *self = calloc(1, sizeof *self);
    self->stream = strdup(stream);
    s_args_t args = {self->stream, api, events};
    self->actor = zactor_new(s_actor, &args); /* returns once the actor has bound */
    return self;
}

void notify_stream_destroy(notify_stream_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    zactor_destroy(&(*self_p)->actor);
    free((*self_p)->stream);
    free(*self_p);
    *self_p = NULL;
}

/* Stores (and publishes when live) the next event. */
static int64_t s_add(notify_stream_t *self, const Nrm__V1__Event *ev, const char *command)
{
    Nrm__V1__Event copy = *ev;
    char id[S_ID_MAX];
    if (!copy.event_id || !copy.event_id[0]) {
        nrm_uuid_v4(id);
        copy.event_id = id;
    }
    copy.stream = self->stream;
    copy.topic = (char *)nrm_event_topic_of(ev->body_case);
    copy.seq = ++self->seq;
    if (copy.occurred_at_ms == 0)
        copy.occurred_at_ms = nrm_now_ms();
    size_t len = 0;
    uint8_t *bytes = nrm_event_pack(&copy, &len);
    zmsg_t *msg = zmsg_new();
    zmsg_addstr(msg, command);
    zmsg_addstr(msg, copy.topic);
    zmsg_addmem(msg, bytes, len);
    zmsg_send(&msg, self->actor);
    zsock_wait(self->actor);
    free(bytes);
    return copy.seq;
}

int64_t notify_stream_emit(notify_stream_t *self, const Nrm__V1__Event *ev)
{
    return s_add(self, ev, "EMIT");
}

int64_t notify_stream_store(notify_stream_t *self, const Nrm__V1__Event *ev)
{
    return s_add(self, ev, "STORE");
}
