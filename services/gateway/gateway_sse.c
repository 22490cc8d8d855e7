/* gateway_sse: server-sent events from a hub of rings (see gateway_sse.h). */
#include "gateway_sse.h"
#include "gateway_api.h"
#include "gateway_http.h"
#include "gateway_metrics.h"
#include "gateway_session.h"
#include "nrm_alloc.h"
#include "nrm_authz.h"
#include "nrm_event.h"
#include "nrm_json.h"
#include "nrm_log.h"
#include "nrm_stream.h"
#include "nrm_time.h"

#include <errno.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#define S_POLL_MS 500     /* hub poll and client wait granularity */
#define S_FETCH_MAX 500   /* events asked per Fetch of a catching-up client */
#define S_MAX_PREFIXES 16 /* topic prefixes per connection */
#define S_FILL_EVENTS 256 /* events formatted per fill of a connection's buffer */
#define S_BLOCK 32768     /* bytes libmicrohttpd asks per call */
#define S_READER_TIMEOUT_MS 3000

typedef struct {
    int64_t seq;
    char *topic;
    char *data; /* the Event in proto3 JSON; NULL: it cannot be written so (passed over) */
} s_entry_t;

/* One stream as the hub holds it: events (lo, high] are in the ring. */
typedef struct {
    const gw_service_t *service;
    nrm_stream_t *reader; /* hub thread only */
    bool started;
    int64_t base; /* the position the hub started from */
    int64_t high; /* last seq in the ring (base when none) */
    s_entry_t *ring;
} s_stream_t;

struct gw_hub_t {
    gw_t *gw;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    s_stream_t streams[GW_MAX_SERVICES];
    int n;
    pthread_t thread;
    bool running;
    volatile bool stop;
};

/* The lowest seq in the ring of s minus one: positions below it must Fetch. Under the lock. */
static int64_t s_low(const s_stream_t *s)
{
    int64_t low = s->high - GW_SSE_RING;
    return low > s->base ? low : s->base;
}

/* The event's topic (*topic, static or the event's) and its proto3 JSON (malloc'd; the caller
 * frees it), or NULL when it cannot be written so (only when Jansson runs out of memory: strings
 * that are not UTF-8 are written with U+FFFD), logged by stream and seq: readers pass over it,
 * as its place in the stream stays taken. */
static char *s_event_json(const char *stream, const Nrm__V1__Event *ev, const char **topic)
{
    const char *t = ev->topic && ev->topic[0] ? ev->topic : nrm_event_topic_of(ev->body_case);
    *topic = t ? t : "";
    char *data = nrm_json_dumps_message(&ev->base);
    if (!data)
        nrm_log_warn("SSE: an event that cannot be written as JSON is passed over", "{s:s, s:I}",
                     "stream", stream, "seq", (json_int_t)ev->seq);
    return data;
}

/* The hub's sink: appends one event of stream s to its ring; one that cannot be written as
 * JSON takes its slot with no data, so that readers pass over it rather than read the slot's
 * older occupant. */
static int s_append(const Nrm__V1__Event *ev, void *arg)
{
    s_stream_t *s = arg;
    const char *topic = NULL;
    char *data = s_event_json(s->service->name, ev, &topic);
    s_entry_t *e = &s->ring[ev->seq % GW_SSE_RING];
    free(e->data);
    free(e->topic);
    e->seq = ev->seq;
    e->data = data;
    e->topic = nrm_xstrdup(topic);
    if (!s->started) {
        s->started = true;
        s->base = ev->seq - 1;
    }
    s->high = ev->seq;
    return 0;
}

static void s_problem(const char *name, const char *message, void *arg)
{
    (void)arg;
    nrm_log_warn("stream cannot catch up", "{s:s, s:s}", "stream", name, "why", message);
}

/* The head of service's stream (Ping), or -1. */
static int64_t s_head(gw_t *gw, const gw_service_t *service)
{
    Nrm__V1__Ping ping = NRM__V1__PING__INIT;
    Nrm__V1__Request req = NRM__V1__REQUEST__INIT;
    req.body_case = NRM__V1__REQUEST__BODY_PING;
    req.ping = &ping;
    Nrm__V1__Reply *reply = gw_api_send(gw, service, &req, "", S_READER_TIMEOUT_MS);
    int64_t head = reply && reply->pong ? reply->pong->stream_head : -1;
    if (reply)
        nrm__v1__reply__free_unpacked(reply, NULL);
    return head;
}

/* The hub's thread: reads every stream into its ring. */
static void *s_hub_run(void *arg)
{
    gw_hub_t *hub = arg;
    zpoller_t *poller = zpoller_new(NULL);
    for (int i = 0; i < hub->n; i++) {
        s_stream_t *s = &hub->streams[i];
        const gw_service_t *svc = s->service;
        s->reader = nrm_stream_new(svc->name, svc->api, svc->events, "",
                                   svc->curve.cert ? &svc->curve : NULL, S_READER_TIMEOUT_MS);
        if (!s->reader)
            continue;
        zpoller_add(poller, nrm_stream_sub(s->reader));
        int64_t head = s_head(hub->gw, svc);
        nrm_stream_sink_t sink = {.on_event = s_append, .on_problem = s_problem, .arg = s};
        pthread_mutex_lock(&hub->lock);
        if (head >= 0 && nrm_stream_start_from(s->reader, head + 1, &sink) && !s->started) {
            s->started = true;
            s->base = s->high = head;
        }
        pthread_mutex_unlock(&hub->lock);
    }
    while (!hub->stop) {
        void *sock = zpoller_wait(poller, S_POLL_MS);
        if (zpoller_terminated(poller))
            break;
        bool changed = false;
        for (int i = 0; i < hub->n; i++) {
            s_stream_t *s = &hub->streams[i];
            if (!s->reader || (sock && nrm_stream_sub(s->reader) != sock))
                continue;
            nrm_stream_sink_t sink = {.on_event = s_append, .on_problem = s_problem, .arg = s};
            pthread_mutex_lock(&hub->lock);
            int64_t before = s->high;
            bool was = s->started;
            nrm_stream_on_live(s->reader, &sink);
            int64_t last;
            if (!s->started && nrm_stream_position(s->reader, &last)) {
                s->started = true;
                s->base = s->high = last;
            }
            changed |= s->high != before || s->started != was;
            pthread_mutex_unlock(&hub->lock);
        }
        if (changed)
            pthread_cond_broadcast(&hub->cond);
    }
    zpoller_destroy(&poller);
    for (int i = 0; i < hub->n; i++)
        nrm_stream_destroy(&hub->streams[i].reader);
    return NULL;
}

gw_hub_t *gw_hub_start(gw_t *gw)
{
    gw_hub_t *self = nrm_xcalloc(1, sizeof *self);
    self->gw = gw;
    pthread_mutex_init(&self->lock, NULL);
    pthread_condattr_t attr;
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(&self->cond, &attr);
    pthread_condattr_destroy(&attr);
    for (int i = 0; i < gw->n_services; i++) {
        if (!gw->services[i].events[0])
            continue;
        s_stream_t *s = &self->streams[self->n];
        s->service = &gw->services[i];
        s->ring = nrm_xcalloc(GW_SSE_RING, sizeof *s->ring);
        self->n++;
    }
    if (pthread_create(&self->thread, NULL, s_hub_run, self) != 0) {
        gw_hub_destroy(&self);
        return NULL;
    }
    self->running = true;
    return self;
}

void gw_hub_halt(gw_hub_t *self)
{
    if (!self)
        return;
    self->stop = true;
    pthread_cond_broadcast(&self->cond);
    if (self->running)
        pthread_join(self->thread, NULL);
    self->running = false;
}

void gw_hub_destroy(gw_hub_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    gw_hub_t *self = *self_p;
    gw_hub_halt(self);
    for (int i = 0; i < self->n; i++) {
        for (int k = 0; self->streams[i].ring && k < GW_SSE_RING; k++) {
            free(self->streams[i].ring[k].data);
            free(self->streams[i].ring[k].topic);
        }
        free(self->streams[i].ring);
    }
    pthread_cond_destroy(&self->cond);
    pthread_mutex_destroy(&self->lock);
    free(self);
    *self_p = NULL;
}

/* ---- one SSE connection ---- */

typedef struct {
    gw_t *gw;
    gw_hub_t *hub;
    char sid[GW_TOKEN_TXT]; /* the session the stream was opened in: it must stay live */
    int session_hint;       /* for gw_sessions_alive */
    char agency[GW_AGENCY_MAX];
    char *prefix_text;                        /* the topics parameter, split in place */
    const char *prefixes[S_MAX_PREFIXES + 1]; /* NULL-terminated; [0] NULL for all */
    int64_t pos[GW_MAX_SERVICES];             /* last seq sent or passed over; -1 unknown */
    bool live[GW_MAX_SERVICES];               /* has read from the ring */
    bool head_checked[GW_MAX_SERVICES];       /* a position ahead of the ring was checked */
    char *out;                                /* formatted, not yet sent */
    size_t out_len, out_sent, out_cap;
    int64_t last_write_ms;
    bool end;
    bool failed;
    int64_t sent;
} s_client_t;

static void s_write(s_client_t *c, const char *text, size_t len)
{
    if (c->out_len + len + 1 > c->out_cap) {
        size_t cap = (c->out_len + len + 1) * 2;
        char *grown = nrm_xrealloc(c->out, cap);
        c->out = grown;
        c->out_cap = cap;
    }
    memcpy(c->out + c->out_len, text, len);
    c->out_len += len;
}

static void s_writes(s_client_t *c, const char *text)
{
    s_write(c, text, strlen(text));
}

/* Writes "id: a:1,b:2\n" for the current positions. */
static void s_write_id(s_client_t *c)
{
    s_writes(c, "id: ");
    bool first = true;
    for (int i = 0; i < c->hub->n; i++) {
        if (c->pos[i] < 0)
            continue;
        char part[96];
        snprintf(part, sizeof part, "%s%s:%lld", first ? "" : ",", c->hub->streams[i].service->name,
                 (long long)c->pos[i]);
        s_writes(c, part);
        first = false;
    }
    s_writes(c, "\n");
}

/* Advances stream i of the client past seq; writes the event when its topic matches and it
 * could be written as JSON (data not NULL). */
static void s_take(s_client_t *c, int i, int64_t seq, const char *topic, const char *data)
{
    c->pos[i] = seq;
    if (!data || !nrm_topic_matches(topic, c->prefixes))
        return;
    s_write_id(c);
    s_writes(c, "event: ");
    s_writes(c, topic);
    s_writes(c, "\ndata: ");
    s_writes(c, data);
    s_writes(c, "\n\n");
    c->sent++;
}

/* Catches stream i of the client up from the service (Fetch as the agency), outside the lock;
 * an event that cannot be written as JSON is passed over. Returns false when the service
 * refuses or does not answer, or when its answer does not move the position (it lacks the next
 * event): the connection then ends, since asking again would get the same answer at once,
 * forever. */
static bool s_fetch(s_client_t *c, int i, int budget)
{
    const gw_service_t *svc = c->hub->streams[i].service;
    int64_t from = c->pos[i];
    Nrm__V1__Fetch fetch = NRM__V1__FETCH__INIT;
    fetch.stream = (char *)svc->name;
    fetch.from_seq = from + 1;
    fetch.max = budget < S_FETCH_MAX ? budget : S_FETCH_MAX;
    Nrm__V1__Request req = NRM__V1__REQUEST__INIT;
    req.body_case = NRM__V1__REQUEST__BODY_FETCH;
    req.fetch = &fetch;
    Nrm__V1__Reply *reply = gw_api_send(c->gw, svc, &req, c->agency, S_READER_TIMEOUT_MS);
    bool ok = reply && reply->status == NRM__V1__STATUS__STATUS_OK && reply->fetch_result;
    for (size_t k = 0; ok && k < reply->fetch_result->n_events; k++) {
        const Nrm__V1__Event *ev = reply->fetch_result->events[k];
        if (ev->seq != c->pos[i] + 1)
            continue;
        const char *topic = NULL;
        char *data = s_event_json(svc->name, ev, &topic);
        s_take(c, i, ev->seq, topic, data);
        free(data);
    }
    if (!ok)
        nrm_log_warn("SSE catch-up refused", "{s:s, s:s}", "stream", svc->name, "status",
                     reply ? nrm_status_name(reply->status) : "UNAVAILABLE");
    else if (c->pos[i] == from) {
        nrm_log_warn("SSE catch-up stuck: the service gave no usable event at the position",
                     "{s:s, s:I, s:I}", "stream", svc->name, "seq", (json_int_t)(from + 1), "head",
                     (json_int_t)reply->fetch_result->head);
        ok = false;
    }
    if (reply)
        nrm__v1__reply__free_unpacked(reply, NULL);
    return ok;
}

/* Stream i of the client is at a position the hub has not reached (a Last-Event-ID): when the
 * service's head is behind it too, the position belongs to another history of the stream (a
 * database restored from a backup, a forged or mistyped id) and would swallow every event until
 * the stream got there: the client goes on from the head instead. Outside the lock. */
static void s_check_ahead(s_client_t *c, int i)
{
    const gw_service_t *svc = c->hub->streams[i].service;
    int64_t head = s_head(c->gw, svc);
    if (head < 0)
        return; /* no answer: asked again at the next fill */
    c->head_checked[i] = true;
    if (c->pos[i] <= head)
        return; /* the hub gets there */
    nrm_log_warn("SSE resume ahead of the stream: going on from its head", "{s:s, s:I, s:I}",
                 "stream", svc->name, "from", (json_int_t)c->pos[i], "head", (json_int_t)head);
    c->pos[i] = head;
}

/* Formats what the client has not been sent yet, up to a budget. Returns true when something
 * was formatted (or the connection must end). */
static bool s_fill(s_client_t *c)
{
    gw_hub_t *hub = c->hub;
    int budget = S_FILL_EVENTS;
    for (int i = 0; i < hub->n && budget > 0 && !c->end; i++) {
        pthread_mutex_lock(&hub->lock);
        s_stream_t *s = &hub->streams[i];
        if (!s->started) {
            pthread_mutex_unlock(&hub->lock);
            continue;
        }
        if (c->pos[i] < 0)
            c->pos[i] = s->base; /* a new stream: from where the hub started */
        if (c->pos[i] > s->high && !c->head_checked[i]) {
            pthread_mutex_unlock(&hub->lock);
            s_check_ahead(c, i);
            continue;
        }
        int64_t low = s_low(s);
        if (c->pos[i] < low) {
            pthread_mutex_unlock(&hub->lock);
            if (c->live[i]) {
                nrm_log_warn("SSE client too slow, dropped", "{s:s}", "stream", s->service->name);
                c->end = true;
            } else if (!s_fetch(c, i, budget)) {
                c->end = true;
            }
            budget = 0;
            continue;
        }
        c->live[i] = true;
        while (c->pos[i] < s->high && budget > 0) {
            const s_entry_t *e = &s->ring[(c->pos[i] + 1) % GW_SSE_RING];
            s_take(c, i, e->seq, e->topic, e->data);
            budget--;
        }
        pthread_mutex_unlock(&hub->lock);
    }
    return c->out_len > 0 || c->end || c->failed;
}

/* Waits until the hub has something newer for the client, or the wait times out. */
static void s_wait(s_client_t *c)
{
    gw_hub_t *hub = c->hub;
    struct timespec until;
    clock_gettime(CLOCK_MONOTONIC, &until);
    until.tv_nsec += (long)S_POLL_MS * 1000000L;
    until.tv_sec += until.tv_nsec / 1000000000L;
    until.tv_nsec %= 1000000000L;
    pthread_mutex_lock(&hub->lock);
    bool ready = false;
    for (int i = 0; i < hub->n && !ready; i++)
        ready = hub->streams[i].started && c->pos[i] < hub->streams[i].high;
    if (!ready && !hub->stop)
        pthread_cond_timedwait(&hub->cond, &hub->lock, &until);
    pthread_mutex_unlock(&hub->lock);
}

/* True while the client's session is live and its agency an event reader under the
 * configuration in force; logs why not (once: the stream then ends). */
static bool s_still_allowed(s_client_t *c)
{
    nrm_config_t *config = c->gw->config;
    const char *why = NULL;
    if (!gw_sessions_alive(c->gw->sessions, c->sid, c->agency, &c->session_hint))
        why = "the session ended (signed out or expired)";
    else if (!nrm_authz_event_reader(config, c->agency, nrm_config_agency_type(config, c->agency)))
        why = "the agency is no longer an event reader";
    if (why)
        nrm_log_info("SSE stream ended", "{s:s}", "why", why);
    return why == NULL;
}

/* libmicrohttpd's content reader: blocks (this connection's thread) until there is something.
 * The session and the agency's right to read events are checked again before anything is
 * given out and after each wait, so a stream ends within a poll of either ending. */
static ssize_t s_read(void *cls, uint64_t pos, char *buf, size_t max)
{
    (void)pos;
    s_client_t *c = cls;
    if (!s_still_allowed(c))
        return MHD_CONTENT_READER_END_WITH_ERROR;
    while (c->out_sent == c->out_len) {
        c->out_len = c->out_sent = 0;
        if (c->end || c->failed || c->hub->stop)
            return MHD_CONTENT_READER_END_WITH_ERROR;
        if (s_fill(c))
            break;
        if (nrm_mono_ms() - c->last_write_ms >= GW_SSE_HEARTBEAT_S * 1000) {
            s_writes(c, ": heartbeat\n\n");
            break;
        }
        s_wait(c);
        if (!s_still_allowed(c))
            return MHD_CONTENT_READER_END_WITH_ERROR;
    }
    if (c->out_sent == c->out_len)
        return MHD_CONTENT_READER_END_WITH_ERROR;
    size_t n = c->out_len - c->out_sent;
    if (n > max)
        n = max;
    memcpy(buf, c->out + c->out_sent, n);
    c->out_sent += n;
    c->last_write_ms = nrm_mono_ms();
    if (c->sent) {
        gw_metrics_sse(c->gw->metrics, 0, c->sent);
        c->sent = 0;
    }
    return (ssize_t)n;
}

static void s_free(void *cls)
{
    s_client_t *c = cls;
    gw_metrics_sse(c->gw->metrics, -1, c->sent);
    sodium_memzero(c->sid, sizeof c->sid);
    free(c->prefix_text);
    free(c->out);
    free(c);
}

/* Sets the client's positions from a Last-Event-ID "intake:12,routing:7". */
static void s_resume(s_client_t *c, const char *last_id)
{
    char *copy = nrm_xstrdup(last_id);
    char *save = NULL;
    for (char *part = strtok_r(copy, ",", &save); part; part = strtok_r(NULL, ",", &save)) {
        char *colon = strchr(part, ':');
        if (!colon)
            continue;
        *colon = '\0';
        char *end = NULL;
        errno = 0;
        long long seq = strtoll(colon + 1, &end, 10);
        if (errno || *end || seq < 0)
            continue;
        for (int i = 0; i < c->hub->n; i++)
            if (strcmp(c->hub->streams[i].service->name, part) == 0)
                c->pos[i] = seq;
    }
    free(copy);
}

/* Splits "case.,referral." into the client's prefixes. */
static void s_topics(s_client_t *c, const char *topics)
{
    int n = 0;
    if (topics && topics[0]) {
        c->prefix_text = nrm_xstrdup(topics);
        char *save = NULL;
        for (char *p = strtok_r(c->prefix_text, ",", &save); p && n < S_MAX_PREFIXES;
             p = strtok_r(NULL, ",", &save))
            c->prefixes[n++] = p;
    }
    c->prefixes[n] = NULL;
}

enum MHD_Result gw_sse_open(gw_t *gw, struct MHD_Connection *conn, const char *sid,
                            const char *agency)
{
    const char *type = nrm_config_agency_type(gw->config, agency);
    if (!gw->hub || !nrm_authz_event_reader(gw->config, agency, type))
        return gw_http_json(conn, MHD_HTTP_FORBIDDEN,
                            json_pack("{s:s}", "error", "this agency may not read event streams"));
    if (!gw_metrics_sse_open(gw->metrics, gw->settings.max_sse_clients))
        return gw_http_json(conn, MHD_HTTP_SERVICE_UNAVAILABLE,
                            json_pack("{s:s}", "error", "too many event streams open"));
    s_client_t *c = nrm_xcalloc(1, sizeof *c);
    c->gw = gw;
    c->hub = gw->hub;
    snprintf(c->sid, sizeof c->sid, "%s", sid ? sid : "");
    c->session_hint = -1;
    snprintf(c->agency, sizeof c->agency, "%s", agency);
    s_topics(c, MHD_lookup_connection_value(conn, MHD_GET_ARGUMENT_KIND, "topics"));
    pthread_mutex_lock(&gw->hub->lock);
    for (int i = 0; i < gw->hub->n; i++)
        c->pos[i] = gw->hub->streams[i].started ? gw->hub->streams[i].high : -1;
    pthread_mutex_unlock(&gw->hub->lock);
    const char *last_id = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Last-Event-ID");
    if (last_id)
        s_resume(c, last_id);
    c->last_write_ms = 0; /* a first comment at once: the browser sees the stream open */
    s_writes(c, ": connected\nretry: 2000\n\n");
    struct MHD_Response *response =
        MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, S_BLOCK, s_read, c, s_free);
    if (!response) {
        s_free(c);
        return MHD_NO;
    }
    MHD_add_response_header(response, "Content-Type", "text/event-stream");
    MHD_add_response_header(response, "Cache-Control", "no-store");
    MHD_add_response_header(response, "X-Accel-Buffering", "no");
    gw_http_secure_headers(response);
    /* a stream is idle between events by design: the connection timeout does not apply to it;
     * the heartbeat's write finds a peer that has gone */
    MHD_set_connection_option(conn, MHD_CONNECTION_OPTION_TIMEOUT, 0u);
    enum MHD_Result rc = MHD_queue_response(conn, MHD_HTTP_OK, response);
    MHD_destroy_response(response);
    return rc;
}
