/* gateway_metrics: Prometheus text format (see gateway_metrics.h). */
#include "gateway_metrics.h"
#include "gateway_api.h"
#include "gateway_http.h"
#include "nrm_alloc.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define S_MAX_SERIES 256 /* (path, status) pairs counted; more share "other" */
#define S_MAX_PATHS 128  /* paths with a histogram */
#define S_LABEL_MAX 96
#define S_PING_TIMEOUT_MS 2000

static const double s_buckets[] = {0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10};
#define S_BUCKETS (sizeof s_buckets / sizeof s_buckets[0])

typedef struct {
    char path[S_LABEL_MAX];
    unsigned status;
    int64_t count;
} s_series_t;

typedef struct {
    char path[S_LABEL_MAX];
    int64_t buckets[S_BUCKETS]; /* non-cumulative; summed on output */
    int64_t count;
    double sum;
} s_histogram_t;

struct gw_metrics_t {
    pthread_mutex_t lock;
    s_series_t series[S_MAX_SERIES];
    int n_series;
    s_histogram_t paths[S_MAX_PATHS];
    int n_paths;
    int64_t sse_clients;
    int64_t sse_events;
};

gw_metrics_t *gw_metrics_new(void)
{
    gw_metrics_t *self = nrm_xcalloc(1, sizeof *self);
    if (self)
        pthread_mutex_init(&self->lock, NULL);
    return self;
}

void gw_metrics_destroy(gw_metrics_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    pthread_mutex_destroy(&(*self_p)->lock);
    free(*self_p);
    *self_p = NULL;
}

/* path made safe as a label value: only [A-Za-z0-9_./-], anything else '_'. */
static void s_label(char out[S_LABEL_MAX], const char *path)
{
    size_t i = 0;
    for (; path[i] && i < S_LABEL_MAX - 1; i++) {
        char c = path[i];
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  c == '_' || c == '.' || c == '/' || c == '-';
        out[i] = ok ? c : '_';
    }
    out[i] = '\0';
}

void gw_metrics_request(gw_metrics_t *self, const char *path, unsigned status, double seconds)
{
    char label[S_LABEL_MAX];
    s_label(label, path);
    pthread_mutex_lock(&self->lock);
    s_series_t *series = NULL;
    for (int i = 0; i < self->n_series && !series; i++)
        if (self->series[i].status == status && strcmp(self->series[i].path, label) == 0)
            series = &self->series[i];
    if (!series && self->n_series < S_MAX_SERIES) {
        series = &self->series[self->n_series++];
        memcpy(series->path, label, sizeof label);
        series->status = status;
    }
    if (series)
        series->count++;
    s_histogram_t *h = NULL;
    for (int i = 0; i < self->n_paths && !h; i++)
        if (strcmp(self->paths[i].path, label) == 0)
            h = &self->paths[i];
    if (!h && self->n_paths < S_MAX_PATHS) {
        h = &self->paths[self->n_paths++];
        memcpy(h->path, label, sizeof label);
    }
    if (h) {
        size_t b = 0;
        while (b < S_BUCKETS && seconds > s_buckets[b])
            b++;
        if (b < S_BUCKETS)
            h->buckets[b]++;
        h->count++;
        h->sum += seconds;
    }
    pthread_mutex_unlock(&self->lock);
}

void gw_metrics_sse(gw_metrics_t *self, int delta_clients, int64_t events_sent)
{
    pthread_mutex_lock(&self->lock);
    self->sse_clients += delta_clients;
    self->sse_events += events_sent;
    pthread_mutex_unlock(&self->lock);
}

bool gw_metrics_sse_open(gw_metrics_t *self, int64_t max)
{
    pthread_mutex_lock(&self->lock);
    bool room = self->sse_clients < max;
    if (room)
        self->sse_clients++;
    pthread_mutex_unlock(&self->lock);
    return room;
}

/* A growing text buffer. */
typedef struct {
    char *text;
    size_t len, cap;
    bool failed;
} s_out_t;

static void s_put(s_out_t *out, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void s_put(s_out_t *out, const char *fmt, ...)
{
    for (int attempt = 0; attempt < 2 && !out->failed; attempt++) {
        va_list args;
        va_start(args, fmt);
        int n = vsnprintf(out->text + out->len, out->cap - out->len, fmt, args);
        va_end(args);
        if (n < 0) {
            out->failed = true;
            return;
        }
        if ((size_t)n < out->cap - out->len) {
            out->len += (size_t)n;
            return;
        }
        size_t cap = (out->cap + (size_t)n) * 2;
        char *grown = nrm_xrealloc(out->text, cap);
        out->text = grown;
        out->cap = cap;
    }
}

/* The gateway's own series. */
static void s_own(gw_metrics_t *self, s_out_t *out)
{
    pthread_mutex_lock(&self->lock);
    s_put(out, "# HELP nrm_gateway_http_requests_total HTTP requests answered by the gateway.\n"
               "# TYPE nrm_gateway_http_requests_total counter\n");
    for (int i = 0; i < self->n_series; i++)
        s_put(out, "nrm_gateway_http_requests_total{path=\"%s\",status=\"%u\"} %lld\n",
              self->series[i].path, self->series[i].status, (long long)self->series[i].count);
    s_put(out, "# HELP nrm_gateway_http_request_duration_seconds Time to answer, by path.\n"
               "# TYPE nrm_gateway_http_request_duration_seconds histogram\n");
    for (int i = 0; i < self->n_paths; i++) {
        const s_histogram_t *h = &self->paths[i];
        int64_t cumulative = 0;
        for (size_t b = 0; b < S_BUCKETS; b++) {
            cumulative += h->buckets[b];
            s_put(out,
                  "nrm_gateway_http_request_duration_seconds_bucket{path=\"%s\",le=\"%g\"} %lld\n",
                  h->path, s_buckets[b], (long long)cumulative);
        }
        s_put(out,
              "nrm_gateway_http_request_duration_seconds_bucket{path=\"%s\",le=\"+Inf\"} %lld\n"
              "nrm_gateway_http_request_duration_seconds_sum{path=\"%s\"} %.6f\n"
              "nrm_gateway_http_request_duration_seconds_count{path=\"%s\"} %lld\n",
              h->path, (long long)h->count, h->path, h->sum, h->path, (long long)h->count);
    }
    s_put(out,
          "# HELP nrm_gateway_sse_clients Server-sent event streams open.\n"
          "# TYPE nrm_gateway_sse_clients gauge\nnrm_gateway_sse_clients %lld\n"
          "# HELP nrm_gateway_sse_events_total Events sent to SSE clients.\n"
          "# TYPE nrm_gateway_sse_events_total counter\nnrm_gateway_sse_events_total %lld\n",
          (long long)self->sse_clients, (long long)self->sse_events);
    pthread_mutex_unlock(&self->lock);
}

/* The Pong of every service (NULL for one that did not answer). */
static void s_ping_all(gw_t *gw, Nrm__V1__Reply **pongs)
{
    for (int i = 0; i < gw->n_services; i++) {
        Nrm__V1__Ping ping = NRM__V1__PING__INIT;
        Nrm__V1__Request req = NRM__V1__REQUEST__INIT;
        req.body_case = NRM__V1__REQUEST__BODY_PING;
        req.ping = &ping;
        pongs[i] = gw_api_send(gw, &gw->services[i], &req, "", S_PING_TIMEOUT_MS);
        if (pongs[i] && (pongs[i]->status != NRM__V1__STATUS__STATUS_OK || !pongs[i]->pong)) {
            nrm__v1__reply__free_unpacked(pongs[i], NULL);
            pongs[i] = NULL;
        }
    }
}

/* The well-known Pong counters, as Prometheus counters of their own. */
static const struct {
    const char *counter;
    const char *metric;
    const char *help;
} s_known[] = {
    {"requests", "nrm_service_requests_total", "Requests handled by the service."},
    {"requests_failed", "nrm_service_requests_failed_total", "Requests answered with an error."},
    {"events_published", "nrm_service_events_published_total", "Events published."},
    {"sessions_refused", "nrm_service_sessions_refused_total", "CURVE sessions refused."},
};
#define S_KNOWN (sizeof s_known / sizeof s_known[0])

static int s_known_index(const char *name)
{
    for (size_t k = 0; k < S_KNOWN; k++)
        if (strcmp(s_known[k].counter, name) == 0)
            return (int)k;
    return -1;
}

/* The head of stream name among the pongs, or -1. */
static int64_t s_head_of(gw_t *gw, Nrm__V1__Reply **pongs, const char *name)
{
    for (int i = 0; i < gw->n_services; i++)
        if (pongs[i] && strcmp(gw->services[i].name, name) == 0)
            return pongs[i]->pong->stream_head;
    return -1;
}

/* The services' series. */
static void s_services(gw_t *gw, Nrm__V1__Reply **pongs, s_out_t *out)
{
    s_put(out, "# HELP nrm_service_up 1 when the service answered Ping.\n"
               "# TYPE nrm_service_up gauge\n");
    for (int i = 0; i < gw->n_services; i++)
        s_put(out, "nrm_service_up{service=\"%s\"} %d\n", gw->services[i].name, pongs[i] != NULL);
    s_put(out, "# HELP nrm_service_database_up 1 when the service reaches its database.\n"
               "# TYPE nrm_service_database_up gauge\n");
    for (int i = 0; i < gw->n_services; i++)
        if (pongs[i])
            s_put(out, "nrm_service_database_up{service=\"%s\"} %d\n", gw->services[i].name,
                  pongs[i]->pong->database_ok ? 1 : 0);
    s_put(out, "# HELP nrm_stream_head The last sequence of the service's stream.\n"
               "# TYPE nrm_stream_head gauge\n");
    for (int i = 0; i < gw->n_services; i++)
        if (pongs[i])
            s_put(out, "nrm_stream_head{stream=\"%s\"} %lld\n", gw->services[i].name,
                  (long long)pongs[i]->pong->stream_head);
    for (size_t k = 0; k < S_KNOWN; k++) {
        s_put(out, "# HELP %s %s\n# TYPE %s counter\n", s_known[k].metric, s_known[k].help,
              s_known[k].metric);
        for (int i = 0; i < gw->n_services; i++)
            for (size_t c = 0; pongs[i] && c < pongs[i]->pong->n_counters; c++)
                if (strcmp(pongs[i]->pong->counters[c]->name, s_known[k].counter) == 0)
                    s_put(out, "%s{service=\"%s\"} %lld\n", s_known[k].metric, gw->services[i].name,
                          (long long)pongs[i]->pong->counters[c]->value);
    }
    s_put(out, "# HELP nrm_service_counter The service's own counters (nrmctl ping).\n"
               "# TYPE nrm_service_counter gauge\n");
    for (int i = 0; i < gw->n_services; i++)
        for (size_t c = 0; pongs[i] && c < pongs[i]->pong->n_counters; c++) {
            char name[S_LABEL_MAX];
            s_label(name, pongs[i]->pong->counters[c]->name);
            if (s_known_index(name) < 0)
                s_put(out, "nrm_service_counter{service=\"%s\",name=\"%s\"} %lld\n",
                      gw->services[i].name, name, (long long)pongs[i]->pong->counters[c]->value);
        }
    s_put(out, "# HELP nrm_consumer_lag Events of a stream not yet applied by a consumer.\n"
               "# TYPE nrm_consumer_lag gauge\n");
    for (int i = 0; i < gw->n_services; i++)
        for (size_t c = 0; pongs[i] && c < pongs[i]->pong->n_consumers; c++) {
            const Nrm__V1__ConsumerState *cs = pongs[i]->pong->consumers[c];
            char stream[S_LABEL_MAX];
            s_label(stream, cs->stream);
            int64_t head = s_head_of(gw, pongs, cs->stream);
            if (head < cs->known_head)
                head = cs->known_head;
            int64_t lag = head > cs->checkpoint ? head - cs->checkpoint : 0;
            s_put(out, "nrm_consumer_lag{service=\"%s\",stream=\"%s\"} %lld\n",
                  gw->services[i].name, stream, (long long)lag);
        }
}

/* name made safe as a metric or label name: [a-z0-9_] (anything else '_'). */
static void s_name(char out[S_LABEL_MAX], const char *name)
{
    size_t i = 0;
    for (; name[i] && i < S_LABEL_MAX - 1; i++) {
        char c = name[i];
        bool ok = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_';
        out[i] = ok ? c : '_';
    }
    out[i] = '\0';
}

/* The services' request latencies, one histogram family by service and request kind. */
static void s_latencies(gw_t *gw, Nrm__V1__Reply **pongs, s_out_t *out)
{
    s_put(out, "# HELP nrm_service_request_duration_seconds Time a service took to answer a "
               "request, by kind.\n"
               "# TYPE nrm_service_request_duration_seconds histogram\n");
    for (int i = 0; i < gw->n_services; i++)
        for (size_t k = 0; pongs[i] && k < pongs[i]->pong->n_latencies; k++) {
            const Nrm__V1__RequestLatency *l = pongs[i]->pong->latencies[k];
            char kind[S_LABEL_MAX];
            s_name(kind, l->kind);
            const char *svc = gw->services[i].name;
            for (size_t b = 0; b < l->n_upper_bounds && b < l->n_cumulative_counts; b++)
                s_put(out,
                      "nrm_service_request_duration_seconds_bucket{service=\"%s\",kind=\"%s\","
                      "le=\"%g\"} %lld\n",
                      svc, kind, l->upper_bounds[b], (long long)l->cumulative_counts[b]);
            s_put(out,
                  "nrm_service_request_duration_seconds_bucket{service=\"%s\",kind=\"%s\","
                  "le=\"+Inf\"} %lld\n"
                  "nrm_service_request_duration_seconds_sum{service=\"%s\",kind=\"%s\"} %.6f\n"
                  "nrm_service_request_duration_seconds_count{service=\"%s\",kind=\"%s\"} "
                  "%lld\n",
                  svc, kind, (long long)l->count, svc, kind, l->sum_seconds, svc, kind,
                  (long long)l->count);
        }
}

/* True when gauge name was already written before (service i, gauge g). */
static bool s_gauge_seen(gw_t *gw, Nrm__V1__Reply **pongs, int i, size_t g, const char *name)
{
    for (int j = 0; j <= i; j++)
        for (size_t h = 0; pongs[j] && h < pongs[j]->pong->n_gauges && (j < i || h < g); h++)
            if (strcmp(pongs[j]->pong->gauges[h]->name, name) == 0)
                return true;
    return false;
}

/* The services' gauges (deliveries by state, waitlist length by region, ...): one family
 * nrm_<name> each, with the service and the gauge's own label. */
static void s_gauges(gw_t *gw, Nrm__V1__Reply **pongs, s_out_t *out)
{
    for (int i = 0; i < gw->n_services; i++)
        for (size_t g = 0; pongs[i] && g < pongs[i]->pong->n_gauges; g++) {
            const char *name = pongs[i]->pong->gauges[g]->name;
            if (s_gauge_seen(gw, pongs, i, g, name))
                continue;
            char metric[S_LABEL_MAX];
            s_name(metric, name);
            s_put(out,
                  "# HELP nrm_%s The services' gauge %s, from their database.\n"
                  "# TYPE nrm_%s gauge\n",
                  metric, metric, metric);
            for (int j = i; j < gw->n_services; j++)
                for (size_t h = 0; pongs[j] && h < pongs[j]->pong->n_gauges; h++) {
                    const Nrm__V1__ServiceGauge *v = pongs[j]->pong->gauges[h];
                    if (strcmp(v->name, name) != 0)
                        continue;
                    char label[S_LABEL_MAX], value[S_LABEL_MAX];
                    s_name(label, v->label_name);
                    s_label(value, v->label_value);
                    if (label[0])
                        s_put(out, "nrm_%s{service=\"%s\",%s=\"%s\"} %lld\n", metric,
                              gw->services[j].name, label, value, (long long)v->value);
                    else
                        s_put(out, "nrm_%s{service=\"%s\"} %lld\n", metric, gw->services[j].name,
                              (long long)v->value);
                }
        }
}

enum MHD_Result gw_metrics_serve(gw_t *gw, struct MHD_Connection *conn)
{
    Nrm__V1__Reply *pongs[GW_MAX_SERVICES] = {0};
    s_ping_all(gw, pongs);
    s_out_t out = {0};
    s_services(gw, pongs, &out);
    s_latencies(gw, pongs, &out);
    s_gauges(gw, pongs, &out);
    s_own(gw->metrics, &out);
    for (int i = 0; i < gw->n_services; i++)
        if (pongs[i])
            nrm__v1__reply__free_unpacked(pongs[i], NULL);
    if (out.failed || !out.text) {
        free(out.text);
        return MHD_NO;
    }
    struct MHD_Response *response =
        MHD_create_response_from_buffer(out.len, out.text, MHD_RESPMEM_MUST_FREE);
    MHD_add_response_header(response, "Content-Type", "text/plain; version=0.0.4; charset=utf-8");
    MHD_add_response_header(response, "Cache-Control", "no-store");
    gw_http_secure_headers(response);
    enum MHD_Result rc = MHD_queue_response(conn, MHD_HTTP_OK, response);
    MHD_destroy_response(response);
    return rc;
}
