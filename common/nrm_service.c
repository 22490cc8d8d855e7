#include "nrm_service.h"
#include "nrm_wipe.h"
#include "nrm_alloc.h"
#include "nrm_auth.h"
#include "nrm_crypto.h"
#include "nrm_directory.h"
#include "nrm_event.h"
#include "nrm_gauges.h"
#include "nrm_json.h"
#include "nrm_log.h"
#include "nrm_publisher.h"
#include "nrm_quarantine.h"
#include "nrm_time.h"

#include <errno.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif
#include <signal.h>

#define S_MAX_CONSUMERS 8
#define S_MAX_TIMERS 8
#define S_MAX_COUNTERS 16
#define S_MAX_LATENCIES 64 /* request kinds reported in Pong */
#define S_DEFAULT_METRICS_REFRESH_MS 5000
#define S_API_BATCH 64
#define S_API_HWM 10000
#define S_FETCH_CAP 1000
#define S_RELOAD_CHECK_MS 500
#define S_DIRECTORY_CHECK_MS 200 /* how soon a consumed directory change reaches the keys */
/* after the events socket is bound again, stream.head goes out early (twice) so that the
 * subscribers, reconnected by then, learn at once of an event they missed meanwhile */
#define S_REBOUND_HEAD_FIRST_MS 250
#define S_REBOUND_HEAD_SECOND_MS 1000
#define S_REBIND_RETRY_MS 20       /* while the events port is not free again */
#define S_REBIND_PATIENCE_MS 10000 /* the events port taken that long: the service stops */
#define S_HEALTH_CHECK_MS 2000     /* how often an idle service checks its database connection */
#define S_DB_WAIT_MS 1000
#define S_DB_PROGRESS_MS 50 /* how often a connection attempt in progress is moved on */
#define S_HARD_LIMIT_FACTOR 4
/* what CURVE adds to a frame on the wire (RFC 26 MESSAGE: command name 8, nonce 8, flags 1,
 * MAC 16), so that the hard limit on a request frame is the same with and without CURVE */
#define S_CURVE_MESSAGE_OVERHEAD 33
#define S_DEFAULT_HEARTBEAT_MS 5000
#define S_DEFAULT_MAX_REQUEST 1048576
#define S_PATH_MAX 160
#define S_DEFAULT_IDEMPOTENCY_WINDOW_S 604800 /* 7 days */
#define S_EXPIRE_BATCH 1000
#define S_EXPIRE_BATCHES_PER_RUN 50
#define S_EXPIRE_PERIOD_MIN_MS 1000
#define S_EXPIRE_PERIOD_MAX_MS 60000

static const char s_sql_fetch[] =
    "SELECT seq, payload FROM outbox WHERE seq >= $1 ORDER BY seq LIMIT $2";
static const char s_sql_head[] = "SELECT head FROM stream_head";
/* one batch of stored replies past the idempotency window (requests_created, bus 002) */
static const char s_sql_expire_requests[] =
    "WITH old AS (SELECT request_id FROM requests"
    "   WHERE created_at < now() - make_interval(secs => $1::double precision)"
    "   ORDER BY created_at LIMIT $2 FOR UPDATE SKIP LOCKED),"
    " gone AS (DELETE FROM requests WHERE request_id IN (SELECT request_id FROM old) RETURNING 1)"
    " SELECT count(*)::int FROM gone";

typedef struct {
    char *source;
    const char *const *prefixes;
    nrm_apply_fn apply;
    void *ctx;
    const char *checkpoint; /* NULL: the source's name */
    nrm_consumer_t *consumer;
    nrm_flush_fn flush;
    nrm_reset_fn reset;
} s_consumer_slot_t;

typedef struct {
    nrm_service_t *service;
    int period_ms;
    nrm_timer_fn fn;
    void *ctx;
} s_timer_slot_t;

typedef struct {
    const char *name;
    int64_t value;
} s_counter_t;

struct nrm_service_t {
    char *name;
    nrm_config_t *config;
    nrm_db_t *db;
    char *conninfo;
    const nrm_migration_t *migrations;
    size_t migration_count;
    nrm_server_t *server;
    nrm_publisher_t *publisher;
    nrm_auth_t *auth;
    nrm_directory_t *directory;
    int64_t directory_agencies; /* run-time agencies in force */
    zsock_t *api;
    zsock_t *events; /* NULL while it is bound again (rebind_timer) */
    zloop_t *loop;
    int rebind_timer;     /* the timer binding the events socket again, or -1 */
    int64_t rebind_since; /* zclock_mono when the old events socket was closed */
    bool fatal;           /* a handler stopped the service for a fault: it exits 1 */
    s_consumer_slot_t consumers[S_MAX_CONSUMERS];
    int consumer_count;
    s_timer_slot_t timers[S_MAX_TIMERS];
    int timer_count;
    nrm_reload_fn reload_fn;
    void *reload_ctx;
    nrm_timer_fn start_fn;
    void *start_ctx;
    s_counter_t counters[S_MAX_COUNTERS];
    int counter_count;
    nrm_gauges_t *gauges;
    int64_t quarantined;     /* consumer_quarantine rows at the last health check */
    bool partitions_allowed; /* consumer.partitions applies to the consumers (not the directory) */
};

static volatile sig_atomic_t s_reload_requested = 0;

static void s_rebind_events(nrm_service_t *self);
static int s_directory_refresh(nrm_service_t *self, bool force);

/* The directory consumer's checkpoint (0 on the registrar or when there is none). */
static int64_t s_directory_checkpoint(const nrm_service_t *self)
{
    for (int i = 0; i < self->consumer_count; i++)
        if (self->consumers[i].checkpoint && self->consumers[i].consumer)
            return nrm_consumer_checkpoint(self->consumers[i].consumer);
    return 0;
}

static void s_on_sighup(int signum)
{
    (void)signum;
    s_reload_requested = 1;
}

/* Prints usage for a service binary. */
static void s_usage(const char *name)
{
    printf("usage: nrm-%s [--config FILE]\n"
           "  Runs the %s service. The configuration file defaults to $NRM_CONFIG, then\n"
           "  /etc/nrm/config.json. Settings can be overridden by NRM_* environment variables\n"
           "  (NRM_SERVICES_%s_API for services.%s.api, ...). SIGHUP reloads the\n"
           "  configuration; SIGTERM stops after the batch in hand.\n",
           name, name, "<NAME>", name);
}

/* Returns the configuration path from the command line, the environment or the default;
 * NULL after printing usage (with *exit_code set) when the service should not start. */
static const char *s_config_path(const char *name, int argc, char **argv, int *exit_code)
{
    const char *path = getenv("NRM_CONFIG") ? getenv("NRM_CONFIG") : "/etc/nrm/config.json";
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--config") == 0 && i + 1 < argc) {
            path = argv[++i];
        } else if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            s_usage(name);
            *exit_code = 0;
            return NULL;
        } else if (strcmp(argv[i], "--version") == 0) {
            printf("nrm-%s %s\n", name, NRM_VERSION);
            *exit_code = 0;
            return NULL;
        } else {
            fprintf(stderr, "nrm-%s: unknown argument '%s' (try --help)\n", name, argv[i]);
            *exit_code = 2;
            return NULL;
        }
    }
    return path;
}

/* Reads a whole small file (a secret) into a malloc'd string without trailing newline. */
static char *s_read_secret(const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return NULL;
    char buf[512];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r'))
        buf[--n] = '\0';
    return nrm_xstrdup(buf);
}

/* Appends key='value' to a libpq connection string, quoting as libpq requires. */
static void s_conninfo_add(char *buf, size_t size, const char *key, const char *value)
{
    size_t n = strlen(buf);
    n += (size_t)snprintf(buf + n, n < size ? size - n : 0, " %s='", key);
    for (const char *p = value; *p && n + 3 < size; p++) {
        if (*p == '\'' || *p == '\\')
            buf[n++] = '\\';
        buf[n++] = *p;
    }
    if (n + 2 < size) {
        buf[n++] = '\'';
        buf[n] = '\0';
    }
}

char *nrm_service_conninfo(nrm_config_t *config, const char *name)
{
    char path[S_PATH_MAX], role[S_PATH_MAX];
    char buf[2048];
    snprintf(buf, sizeof buf, "%s", nrm_config_string(config, "database.conninfo", ""));
    snprintf(role, sizeof role, "nrm_%s", name);
    snprintf(path, sizeof path, "services.%s.db_user", name);
    s_conninfo_add(buf, sizeof buf, "user", nrm_config_string(config, path, role));
    snprintf(path, sizeof path, "services.%s.db_password", name);
    const char *password = nrm_config_string(config, path, NULL);
    snprintf(path, sizeof path, "services.%s.db_password_file", name);
    const char *password_file = nrm_config_string(config, path, NULL);
    char *secret = password_file ? s_read_secret(password_file) : NULL;
    if (secret || password)
        s_conninfo_add(buf, sizeof buf, "password", secret ? secret : password);
    if (secret) {
        memset(secret, 0, strlen(secret));
        free(secret);
    }
    snprintf(path, sizeof path, "nrm-%s", name);
    s_conninfo_add(buf, sizeof buf, "application_name", path);
    if (!strstr(buf, "connect_timeout"))
        s_conninfo_add(buf, sizeof buf, "connect_timeout", "3");
    return nrm_xstrdup(buf);
}

nrm_service_t *nrm_service_new(const char *name, int argc, char **argv,
                               const nrm_migration_t *migrations, size_t count, int *exit_code)
{
    nrm_wipe_json(); /* before any JSON: requests and keyrings are wiped when freed */
    const char *path = s_config_path(name, argc, argv, exit_code);
    if (!path)
        return NULL;
    *exit_code = 2;
    nrm_error_t err;
    nrm_config_t *config = nrm_config_load(path, &err);
    if (!config) {
        fprintf(stderr, "nrm-%s: %s\n", name, err.message);
        return NULL;
    }
    nrm_log_init(name, nrm_config_string(config, "log_level", "info"));
    if (nrm_crypto_init() != 0) {
        nrm_log_error("libsodium failed to start", NULL);
        nrm_config_destroy(&config);
        return NULL;
    }
    nrm_auth_t *auth = nrm_auth_new(config, name, &err);
    if (!auth) {
        nrm_log_error("cannot start authentication", "{s:s, s:s}", "setting", err.field, "message",
                      err.message);
        nrm_config_destroy(&config);
        return NULL;
    }
    nrm_service_t *self = nrm_xcalloc(1, sizeof *self);
    self->rebind_timer = -1;
    self->auth = auth;
    self->name = nrm_xstrdup(name);
    self->config = config;
    self->conninfo = nrm_service_conninfo(config, name);
    self->db = nrm_db_new(self->conninfo, name);
    self->migrations = migrations;
    self->migration_count = count;
    size_t max_request = (size_t)nrm_config_int(config, "max_request_bytes", S_DEFAULT_MAX_REQUEST);
    self->server = nrm_server_new(name, self->db, config, max_request);
    self->loop = zloop_new();
    self->directory = nrm_directory_new(self->db);
    *exit_code = 0;
    return self;
}

void nrm_service_destroy(nrm_service_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    nrm_service_t *self = *self_p;
    /* what holds timers or readers of the loop ends them on destroy: it goes before the loop */
    for (int i = 0; i < self->consumer_count; i++) {
        nrm_consumer_destroy(&self->consumers[i].consumer);
        free(self->consumers[i].source);
    }
    nrm_publisher_destroy(&self->publisher);
    zloop_destroy(&self->loop);
    zsock_destroy(&self->api);
    zsock_destroy(&self->events);
    nrm_auth_destroy(&self->auth);
    nrm_directory_destroy(&self->directory);
    nrm_server_destroy(&self->server);
    nrm_gauges_destroy(&self->gauges);
    nrm_db_destroy(&self->db);
    nrm_config_destroy(&self->config);
    free(self->conninfo);
    free(self->name);
    free(self);
    *self_p = NULL;
}

nrm_config_t *nrm_service_config(nrm_service_t *self)
{
    return self->config;
}

nrm_db_t *nrm_service_db(nrm_service_t *self)
{
    return self->db;
}

const char *nrm_service_name(const nrm_service_t *self)
{
    return self->name;
}

nrm_directory_t *nrm_service_directory(nrm_service_t *self)
{
    return self->directory;
}

zloop_t *nrm_service_loop(nrm_service_t *self)
{
    return self->loop;
}

void nrm_service_handle(nrm_service_t *self, Nrm__V1__Request__BodyCase body,
                        nrm_handler_kind_t kind, nrm_handler_fn fn, void *ctx)
{
    nrm_server_handle(self->server, body, kind, fn, ctx);
}

void nrm_service_consume(nrm_service_t *self, const char *source, const char *const *prefixes,
                         nrm_apply_fn apply, void *ctx)
{
    nrm_service_consume_batches(self, source, prefixes, apply, NULL, NULL, ctx);
}

void nrm_service_consume_batches(nrm_service_t *self, const char *source,
                                 const char *const *prefixes, nrm_apply_fn apply,
                                 nrm_flush_fn flush, nrm_reset_fn reset, void *ctx)
{
    if (self->consumer_count >= S_MAX_CONSUMERS) {
        nrm_log_error("too many consumers", "{s:i}", "max", S_MAX_CONSUMERS);
        abort();
    }
    self->consumers[self->consumer_count++] =
        (s_consumer_slot_t){nrm_xstrdup(source), prefixes, apply, ctx, NULL, NULL, flush, reset};
}

void nrm_service_allow_partitions(nrm_service_t *self)
{
    self->partitions_allowed = true;
}

/* The consumer section of the configuration (ConsumerSettings) into out, defaults filled in.
 * Returns 0, or -1 after logging the offending field. */
static int s_consumer_settings(nrm_config_t *config, Nrm__V1__ConsumerSettings *out)
{
    char field[S_PATH_MAX];
    Nrm__V1__ConsumerSettings *s = (Nrm__V1__ConsumerSettings *)nrm_json_section_to_message(
        &nrm__v1__consumer_settings__descriptor, nrm_config_get(config, "consumer"), "consumer",
        field, sizeof field);
    const char *bad = NULL;
    if (!s)
        bad = field;
    else if (s->max_attempts < 0)
        bad = "consumer.max_attempts";
    else if (s->retry_backoff_ms < 0)
        bad = "consumer.retry_backoff_ms";
    else if (s->partitions < 0 || s->partitions > NRM_CONSUMER_MAX_PARTITIONS)
        bad = "consumer.partitions";
    if (bad) {
        nrm_log_error("consumer configuration refused", "{s:s}", "field", bad);
        if (s)
            protobuf_c_message_free_unpacked(&s->base, NULL);
        return -1;
    }
    /* the environment overrides each setting (NRM_CONSUMER_MAX_ATTEMPTS, ...), as for any */
    out->max_attempts =
        (int32_t)nrm_config_int(config, "consumer.max_attempts",
                                s->max_attempts ? s->max_attempts : NRM_CONSUMER_MAX_ATTEMPTS);
    out->retry_backoff_ms = (int32_t)nrm_config_int(config, "consumer.retry_backoff_ms",
                                                    s->retry_backoff_ms ? s->retry_backoff_ms
                                                                        : NRM_CONSUMER_BACKOFF_MS);
    out->partitions =
        (int32_t)nrm_config_int(config, "consumer.partitions", s->partitions ? s->partitions : 1);
    protobuf_c_message_free_unpacked(&s->base, NULL);
    if (out->partitions < 1 || out->partitions > NRM_CONSUMER_MAX_PARTITIONS) {
        nrm_log_error("consumer configuration refused", "{s:s}", "field", "consumer.partitions");
        return -1;
    }
    return 0;
}

void nrm_service_every(nrm_service_t *self, int period_ms, nrm_timer_fn fn, void *ctx)
{
    if (self->timer_count >= S_MAX_TIMERS) {
        nrm_log_error("too many timers", "{s:i}", "max", S_MAX_TIMERS);
        abort();
    }
    self->timers[self->timer_count++] = (s_timer_slot_t){self, period_ms, fn, ctx};
}

void nrm_service_on_start(nrm_service_t *self, nrm_timer_fn fn, void *ctx)
{
    self->start_fn = fn;
    self->start_ctx = ctx;
}

void nrm_service_on_reload(nrm_service_t *self, nrm_reload_fn fn, void *ctx)
{
    self->reload_fn = fn;
    self->reload_ctx = ctx;
}

void nrm_service_gauge(nrm_service_t *self, const char *name, const char *label_name,
                       const char *sql)
{
    if (!self->gauges)
        self->gauges = nrm_gauges_new();
    nrm_gauges_add(self->gauges, self->db, name, label_name, sql);
}

/* Timer: refreshes the gauges reported in Pong. */
static nrm_status_t s_refresh_gauges(void *ctx, nrm_tx_t *tx)
{
    nrm_service_t *self = ctx;
    return nrm_gauges_refresh(self->gauges, tx->db, tx->err);
}

/* Adds the request latency histograms of the server to a Pong. */
static void s_pong_latencies(nrm_service_t *self, nrm_call_t *call, Nrm__V1__Pong *pong)
{
    nrm_latency_t *l = nrm_call_alloc(call, S_MAX_LATENCIES * sizeof *l);
    size_t n = nrm_server_latencies(self->server, l, S_MAX_LATENCIES);
    pong->latencies = nrm_call_alloc(call, (n ? n : 1) * sizeof *pong->latencies);
    for (size_t i = 0; i < n; i++) {
        Nrm__V1__RequestLatency *r = nrm_call_alloc(call, sizeof *r);
        nrm__v1__request_latency__init(r);
        r->kind = (char *)l[i].kind;
        r->n_upper_bounds = NRM_LATENCY_BUCKETS;
        r->upper_bounds = (double *)nrm_latency_bounds;
        r->n_cumulative_counts = NRM_LATENCY_BUCKETS;
        r->cumulative_counts = l[i].counts;
        r->sum_seconds = l[i].sum_seconds;
        r->count = l[i].count;
        pong->latencies[pong->n_latencies++] = r;
    }
}

int64_t *nrm_service_counter(nrm_service_t *self, const char *name)
{
    for (int i = 0; i < self->counter_count; i++)
        if (strcmp(self->counters[i].name, name) == 0)
            return &self->counters[i].value;
    if (self->counter_count >= S_MAX_COUNTERS) {
        nrm_log_error("too many counters", "{s:i}", "max", S_MAX_COUNTERS);
        abort();
    }
    self->counters[self->counter_count] = (s_counter_t){name, 0};
    return &self->counters[self->counter_count++].value;
}

/* Adds one counter to a Pong. */
static void s_pong_counter(nrm_call_t *call, Nrm__V1__Pong *pong, const char *name, int64_t v)
{
    Nrm__V1__Counter *c = nrm_call_alloc(call, sizeof *c);
    nrm__v1__counter__init(c);
    c->name = (char *)name;
    c->value = v;
    pong->counters[pong->n_counters++] = c;
}

/* Ping: health, head, counters and consumer positions; answered without the database. */
static nrm_status_t s_handle_ping(void *ctx, nrm_call_t *call)
{
    nrm_service_t *self = ctx;
    Nrm__V1__Pong *pong = nrm_call_alloc(call, sizeof *pong);
    nrm__v1__pong__init(pong);
    pong->service = self->name;
    pong->version = NRM_VERSION;
    pong->stream_head = self->publisher ? nrm_publisher_head(self->publisher) : 0;
    pong->database_ok = nrm_db_connected(self->db);
    pong->quarantined = self->quarantined;
    size_t max_counters = (size_t)self->counter_count + 7;
    pong->counters = nrm_call_alloc(call, max_counters * sizeof *pong->counters);
    s_pong_counter(call, pong, "requests", nrm_server_requests(self->server));
    s_pong_counter(call, pong, "requests_failed", nrm_server_failures(self->server));
    s_pong_counter(call, pong, "events_published",
                   self->publisher ? nrm_publisher_count(self->publisher) : 0);
    s_pong_counter(call, pong, "sequencer",
                   self->publisher && nrm_publisher_is_sequencer(self->publisher));
    s_pong_counter(call, pong, "sessions_refused", nrm_auth_refused(self->auth));
    /* the directory's consumer is shown by its counters, not among the consumers (one per
     * stream there, as dashboards and tests count them) */
    s_pong_counter(call, pong, "directory_agencies", self->directory_agencies);
    s_pong_counter(call, pong, "directory_checkpoint", s_directory_checkpoint(self));
    for (int i = 0; i < self->counter_count; i++)
        s_pong_counter(call, pong, self->counters[i].name, self->counters[i].value);
    pong->consumers = nrm_call_alloc(call, S_MAX_CONSUMERS * sizeof *pong->consumers);
    for (int i = 0; i < self->consumer_count; i++) {
        nrm_consumer_t *c = self->consumers[i].consumer;
        if (!c || self->consumers[i].checkpoint)
            continue;
        Nrm__V1__ConsumerState *cs = nrm_call_alloc(call, sizeof *cs);
        nrm__v1__consumer_state__init(cs);
        cs->stream = (char *)nrm_consumer_stream(c);
        cs->checkpoint = nrm_consumer_checkpoint(c);
        cs->known_head = nrm_consumer_known_head(c);
        pong->consumers[pong->n_consumers++] = cs;
    }
    s_pong_latencies(self, call, pong);
    if (self->gauges)
        nrm_gauges_pong(self->gauges, call, pong);
    call->reply->result_case = NRM__V1__REPLY__RESULT_PONG;
    call->reply->pong = pong;
    return NRM_OK;
}

/* Fetch: replay of this service's own stream from from_seq, at most max (capped). Audited like
 * every read: the row names "<stream>@<from_seq>", also when nothing lies past the head. */
static nrm_status_t s_handle_fetch(void *ctx, nrm_call_t *call)
{
    nrm_service_t *self = ctx;
    const Nrm__V1__Fetch *f = call->request->fetch;
    if (strcmp(f->stream, self->name) != 0)
        return nrm_fail(call->tx.err, NRM_INVALID_ARGUMENT, "fetch.stream",
                        "this service serves the stream '%s' only", self->name);
    if (f->from_seq < 0)
        return nrm_fail(call->tx.err, NRM_INVALID_ARGUMENT, "fetch.from_seq",
                        "from_seq must not be negative");
    int max = f->max <= 0 || f->max > S_FETCH_CAP ? S_FETCH_CAP : f->max;
    nrm_params_t p = {0};
    nrm_params_int(&p, f->from_seq);
    nrm_params_int(&p, max);
    PGresult *res = NULL, *head = NULL;
    nrm_status_t st = nrm_db_exec(self->db, "service_fetch", &p, &res, call->tx.err);
    if (st == NRM_OK)
        st = nrm_db_exec(self->db, "service_head", NULL, &head, call->tx.err);
    if (st != NRM_OK) {
        PQclear(res);
        return st;
    }
    Nrm__V1__FetchResult *fr = nrm_call_alloc(call, sizeof *fr);
    nrm__v1__fetch_result__init(fr);
    fr->head = nrm_db_int(head, 0, 0);
    PQclear(head);
    int rows = PQntuples(res);
    fr->events = nrm_call_alloc(call, (size_t)(rows ? rows : 1) * sizeof *fr->events);
    for (int i = 0; i < rows; i++) {
        size_t len = 0, out_len = 0;
        const uint8_t *stored = nrm_db_bytes(res, i, 1, &len);
        uint8_t *bytes = nrm_event_with_seq(stored, len, nrm_db_int(res, i, 0), &out_len);
        Nrm__V1__Event *ev = bytes ? nrm_event_unpack(bytes, out_len) : NULL;
        free(bytes);
        if (!ev)
            break;
        fr->events[fr->n_events++] = nrm_call_keep(call, ev);
    }
    PQclear(res);
    call->reply->result_case = NRM__V1__REPLY__RESULT_FETCH_RESULT;
    call->reply->fetch_result = fr;
    char subject[S_PATH_MAX];
    snprintf(subject, sizeof subject, "%s@%lld", self->name, (long long)f->from_seq);
    call->subject_id = nrm_call_strdup(call, subject);
    return NRM_OK;
}

/* api socket readable: take up to a batch of requests, answer them after one commit. */
static int s_on_api(zloop_t *loop, zsock_t *sock, void *arg)
{
    nrm_service_t *self = arg;
    zmsg_t *envelopes[S_API_BATCH];
    zframe_t *requests[S_API_BATCH], *replies[S_API_BATCH];
    const char *senders[S_API_BATCH];
    size_t n = 0;
    while (n < S_API_BATCH) {
        zmsg_t *msg = zmsg_recv_nowait(sock);
        if (!msg)
            break;
        /* [identity][payload] from DEALER, [identity][empty][payload] from REQ */
        size_t frames = zmsg_size(msg);
        zmsg_first(msg);
        zframe_t *second = frames >= 2 ? zmsg_next(msg) : NULL;
        bool req_style = frames == 3 && zframe_size(second) == 0;
        if (frames != 2 && !req_style) {
            zmsg_destroy(&msg);
            continue; /* not a request envelope: nobody to answer */
        }
        requests[n] = zmsg_last(msg);
        senders[n] = nrm_auth_identity(self->auth, requests[n]);
        envelopes[n++] = msg;
    }
    if (n == 0)
        return 0;
    nrm_server_process(self->server, requests, nrm_auth_secure(self->auth) ? senders : NULL, n,
                       replies);
    /* an UpsertAgency of this batch is in force before its reply leaves */
    if (nrm_directory_due(self->directory))
        s_directory_refresh(self, false);
    for (size_t i = 0; i < n; i++) {
        zframe_t *payload = zmsg_last(envelopes[i]);
        zmsg_remove(envelopes[i], payload);
        zframe_destroy(&payload);
        zmsg_append(envelopes[i], &replies[i]);
        zmsg_send(&envelopes[i], sock);
        zmsg_destroy(&envelopes[i]); /* kept by zmsg_send when it could not be sent */
    }
    return 0;
}

/* Runs one periodic job in its own transaction. */
static int s_on_timer(zloop_t *loop, int timer_id, void *arg)
{
    s_timer_slot_t *slot = arg;
    nrm_service_t *self = slot->service;
    nrm_error_t err;
    nrm_error_clear(&err);
    if (nrm_db_begin(self->db, &err) != NRM_OK)
        return 0;
    nrm_tx_t tx = {self->db, self->name, "", nrm_now_ms(), &err, 0};
    if (slot->fn(slot->ctx, &tx) == NRM_OK && nrm_db_commit(self->db, &err) == NRM_OK)
        return 0;
    nrm_db_rollback(self->db);
    nrm_log_warn("periodic job failed", "{s:s, s:s}", "status", nrm_status_name(err.status),
                 "message", err.message);
    return 0;
}

/* Timer: deletes the stored replies older than idempotency_window_s (0: kept for ever), in
 * batches; a request_id repeated after that is a new request. */
static nrm_status_t s_expire_requests(void *ctx, nrm_tx_t *tx)
{
    nrm_service_t *self = ctx;
    int64_t window_s =
        nrm_config_int(self->config, "idempotency_window_s", S_DEFAULT_IDEMPOTENCY_WINDOW_S);
    if (window_s <= 0)
        return NRM_OK;
    int64_t deleted = 0;
    for (int batch = 0; batch < S_EXPIRE_BATCHES_PER_RUN; batch++) {
        nrm_params_t p = {0};
        nrm_params_int(&p, window_s);
        nrm_params_int(&p, S_EXPIRE_BATCH);
        PGresult *res = NULL;
        nrm_status_t st = nrm_db_exec(tx->db, "service_expire_requests", &p, &res, tx->err);
        if (st != NRM_OK)
            return st;
        int64_t n = nrm_db_int(res, 0, 0);
        PQclear(res);
        deleted += n;
        if (n < S_EXPIRE_BATCH)
            break;
    }
    if (deleted > 0)
        nrm_log_info("stored replies expired", "{s:I, s:I}", "requests", (json_int_t)deleted,
                     "idempotency_window_s", (json_int_t)window_s);
    return NRM_OK;
}

/* How often the stored replies are pruned: a quarter of the window, within 1 s and 60 s. */
static int s_expire_period_ms(nrm_config_t *config)
{
    int64_t window_ms =
        nrm_config_int(config, "idempotency_window_s", S_DEFAULT_IDEMPOTENCY_WINDOW_S) * 1000;
    int64_t period = window_ms / 4;
    if (period < S_EXPIRE_PERIOD_MIN_MS)
        period = S_EXPIRE_PERIOD_MIN_MS;
    if (period > S_EXPIRE_PERIOD_MAX_MS)
        period = S_EXPIRE_PERIOD_MAX_MS;
    return (int)period;
}

/* Checks the database connection so that Pong.database_ok is true to within a few seconds even
 * when nothing else uses the database (and a lost connection is remade). */
static int s_on_health_check(zloop_t *loop, int timer_id, void *arg)
{
    nrm_service_t *self = arg;
    int64_t quarantined = nrm_quarantine_count(self->db); /* also checks the connection */
    if (quarantined >= 0)
        self->quarantined = quarantined;
#ifdef __GLIBC__
    /* give the heap a burst left free back to the system: an idle service keeps the memory it
     * needs, not its high-water mark (a 500-event batch, a backlog drained) */
    malloc_trim(0);
#endif
    return 0;
}

/* ListQuarantine (nrm_quarantine). */
static nrm_status_t s_handle_list_quarantine(void *ctx, nrm_call_t *call)
{
    return nrm_quarantine_list(call);
}

/* The consumer whose checkpoint is name, for RetryQuarantined (nrm_quarantine_find_fn). */
static bool s_find_consumer(void *ctx, const char *name, nrm_quarantine_consumer_t *consumer)
{
    nrm_service_t *self = ctx;
    for (int i = 0; i < self->consumer_count; i++) {
        const s_consumer_slot_t *slot = &self->consumers[i];
        if (strcmp(slot->checkpoint ? slot->checkpoint : slot->source, name) == 0) {
            *consumer = (nrm_quarantine_consumer_t){slot->apply, slot->flush, slot->reset,
                                                    slot->ctx, slot->prefixes};
            return true;
        }
    }
    return false;
}

/* RetryQuarantined (nrm_quarantine). */
static nrm_status_t s_handle_retry_quarantined(void *ctx, nrm_call_t *call)
{
    return nrm_quarantine_retry(call, s_find_consumer, ctx);
}

/* Moves a database connection attempt on (nrm_db_connect never waits long for the server), so
 * that the reactor keeps answering (Ping says database_ok=false) while the database is away. */
static int s_on_db_progress(zloop_t *loop, int timer_id, void *arg)
{
    nrm_service_t *self = arg;
    if (nrm_db_connecting(self->db))
        nrm_db_connect(self->db, NULL, NULL);
    return 0;
}

/* SIGHUP: load the configuration again; keep the old one if the new one is refused. */
static int s_on_reload_check(zloop_t *loop, int timer_id, void *arg)
{
    nrm_service_t *self = arg;
    if (!s_reload_requested)
        return 0;
    s_reload_requested = 0;
    nrm_error_t err;
    nrm_config_t *fresh = nrm_config_load(nrm_config_path(self->config), &err);
    json_t *directory = fresh ? nrm_config_directory(self->config) : NULL;
    if (fresh && directory)
        nrm_config_set_directory(fresh, json_incref(directory));
    if (!fresh || (self->reload_fn && self->reload_fn(self->reload_ctx, fresh) != NRM_OK)) {
        nrm_log_error("configuration reload refused", "{s:s}", "message",
                      fresh ? "rejected by the service" : err.message);
        nrm_config_destroy(&fresh);
        return 0;
    }
    nrm_server_set_config(self->server, fresh);
    nrm_config_destroy(&self->config);
    self->config = fresh;
    nrm_log_info("configuration reloaded", NULL);
    if (nrm_auth_reload(self->auth, fresh))
        s_rebind_events(self);
    return 0;
}

/* Waits for the database, applies the migrations and checks that the audit is out of the
 * role's reach (a database not prepared by this version's deploy/db-init.sh waits, logged once,
 * until it is). Returns 0, or -1 when interrupted. */
static int s_prepare_database(nrm_service_t *self)
{
    nrm_error_t err;
    bool warned = false;
    while (!zsys_interrupted) {
        bool connected = nrm_db_connect_wait(self->db, S_DB_WAIT_MS, &err) == NRM_OK;
        if (connected &&
            nrm_migrate(self->db, bus_migrations, bus_migrations_count, &err) == NRM_OK &&
            nrm_migrate(self->db, self->migrations, self->migration_count, &err) == NRM_OK &&
            nrm_server_check_audit(self->server, &err) == NRM_OK)
            return 0;
        if (!warned)
            nrm_log_warn("waiting for the database", "{s:s}", "message", err.message);
        warned = true;
        if (connected)
            zclock_sleep(S_DB_WAIT_MS);
    }
    return -1;
}

/* Runs the start job until it commits. Returns 0, or -1 when interrupted. */
static int s_run_start_job(nrm_service_t *self)
{
    bool warned = false;
    while (self->start_fn && !zsys_interrupted) {
        nrm_error_t err;
        nrm_error_clear(&err);
        nrm_tx_t tx = {self->db, self->name, "", nrm_now_ms(), &err, 0};
        if (nrm_db_connect_wait(self->db, S_DB_WAIT_MS, &err) == NRM_OK &&
            nrm_db_begin(self->db, &err) == NRM_OK &&
            self->start_fn(self->start_ctx, &tx) == NRM_OK &&
            nrm_db_commit(self->db, &err) == NRM_OK)
            return 0;
        nrm_db_rollback(self->db);
        if (!warned)
            nrm_log_warn("start job failed, retrying", "{s:s, s:s}", "status",
                         nrm_status_name(err.status), "message", err.message);
        warned = true;
        zclock_sleep(S_DB_WAIT_MS);
    }
    return zsys_interrupted ? -1 : 0;
}

/* Returns a socket of type bound to the service's setting `key`, or NULL (after logging, unless
 * quiet). */
static zsock_t *s_bind(nrm_service_t *self, int type, const char *key, const char *dflt, bool quiet)
{
    char path[S_PATH_MAX];
    snprintf(path, sizeof path, "services.%s.%s", self->name, key);
    const char *endpoint = nrm_config_string(self->config, path, dflt);
    zsock_t *sock = zsock_new(type);
    if (!sock)
        abort();
    size_t max = (size_t)nrm_config_int(self->config, "max_request_bytes", S_DEFAULT_MAX_REQUEST);
    if (type == ZMQ_ROUTER) {
        size_t overhead = nrm_auth_secure(self->auth) ? S_CURVE_MESSAGE_OVERHEAD : 0;
        zsock_set_maxmsgsize(sock, (int)(max * S_HARD_LIMIT_FACTOR + overhead));
        zsock_set_rcvhwm(sock, S_API_HWM);
        zsock_set_sndhwm(sock, S_API_HWM);
    }
    zsock_set_linger(sock, 0);
    if (nrm_auth_serve(self->auth, sock, type == ZMQ_ROUTER ? "api" : "events") != 0 ||
        zsock_bind(sock, "%s", endpoint) < 0) {
        if (!quiet)
            nrm_log_error("cannot bind", "{s:s, s:s}", "setting", path, "endpoint", endpoint);
        zsock_destroy(&sock);
    }
    return sock;
}

/* One-shot timer: a stream.head heartbeat after the events socket was bound again. */
static int s_on_rebound_head(zloop_t *loop, int timer_id, void *arg)
{
    nrm_service_t *self = arg;
    if (self->publisher)
        nrm_publisher_heartbeat(self->publisher);
    return 0;
}

/* Binds the events socket again (quietly: the old socket's port is released asynchronously) and
 * puts it in force: the publisher sends on it, heartbeats follow soon so that subscribers learn
 * the head. Returns true when bound; the retry timer, if any, is ended then. */
static bool s_rebind_now(nrm_service_t *self)
{
    self->events = s_bind(self, ZMQ_PUB, "events", NULL, true);
    if (!self->events)
        return false;
    if (self->rebind_timer >= 0)
        zloop_timer_end(self->loop, self->rebind_timer);
    self->rebind_timer = -1;
    nrm_publisher_set_socket(self->publisher, self->events);
    zloop_timer(self->loop, S_REBOUND_HEAD_FIRST_MS, 1, s_on_rebound_head, self);
    zloop_timer(self->loop, S_REBOUND_HEAD_SECOND_MS, 1, s_on_rebound_head, self);
    nrm_log_info("events socket bound again after a key was removed", NULL);
    return true;
}

/* Timer while the events socket is unbound: tries again every S_REBIND_RETRY_MS, never waiting
 * in the reactor (Ping and requests are answered meanwhile; events committed meanwhile stay in
 * the outbox, where subscribers' Fetch finds them). After S_REBIND_PATIENCE_MS the service stops
 * (exit 1): something else holds the port. */
static int s_on_rebind_retry(zloop_t *loop, int timer_id, void *arg)
{
    nrm_service_t *self = arg;
    if (s_rebind_now(self))
        return 0;
    if (zclock_mono() - self->rebind_since < S_REBIND_PATIENCE_MS)
        return 0;
    nrm_log_error("cannot bind the events socket again: stopping", "{s:i}", "waited_ms",
                  S_REBIND_PATIENCE_MS);
    zloop_timer_end(loop, timer_id);
    self->rebind_timer = -1;
    self->fatal = true;
    return -1;
}

/* Binds a new events socket in place of the old one, so that every subscriber authenticates
 * again with the keys now in force (the honest ones reconnect and catch up with Fetch). When a
 * bind is already pending, it will take the keys now in force: nothing more to do. */
static void s_rebind_events(nrm_service_t *self)
{
    if (self->rebind_timer >= 0)
        return;
    if (self->publisher) /* it never sends on a destroyed socket */
        nrm_publisher_set_socket(self->publisher, NULL);
    zsock_destroy(&self->events);
    if (s_rebind_now(self))
        return;
    self->rebind_since = zclock_mono();
    self->rebind_timer = zloop_timer(self->loop, S_REBIND_RETRY_MS, 0, s_on_rebind_retry, self);
    if (self->rebind_timer < 0) {
        nrm_log_error("cannot bind the events socket again: stopping", NULL);
        self->fatal = true;
        zsys_interrupted = 1;
    }
}

/* Reads the agency directory when it changed (always when force) and puts it in force: the
 * configuration's run-time agencies and the key table; the events socket is bound again when a
 * key is gone. Returns 1 when it changed, 0 when not, -1 when the database cannot say. */
static int s_directory_refresh(nrm_service_t *self, bool force)
{
    json_t *agencies = NULL;
    int rc = nrm_directory_refresh(self->directory, force, &agencies);
    if (rc != 1)
        return rc;
    size_t n = json_array_size(agencies);
    self->directory_agencies = (int64_t)n;
    nrm_config_set_directory(self->config, agencies);
    bool removed = nrm_auth_reload(self->auth, self->config);
    nrm_log_info("agency directory in force", "{s:I}", "runtime_agencies", (json_int_t)n);
    if (removed && (self->events || self->rebind_timer >= 0))
        s_rebind_events(self);
    return 1;
}

/* Timer: picks up directory changes written by this service's consumer or another instance. */
static int s_on_directory_check(zloop_t *loop, int timer_id, void *arg)
{
    nrm_service_t *self = arg;
    if (nrm_directory_due(self->directory))
        s_directory_refresh(self, false);
    return 0;
}

/* Loads the directory before anything is served (the database is up). Returns 0, or -1 when
 * interrupted. */
static int s_directory_start(nrm_service_t *self)
{
    while (!zsys_interrupted) {
        if (s_directory_refresh(self, true) >= 0)
            return 0;
        zclock_sleep(S_DB_WAIT_MS);
    }
    return -1;
}

/* Every service but the registrar consumes the registrar's directory events, when the
 * configuration says how to reach it (a service run alone keeps the agencies of its table). */
static void s_consume_directory(nrm_service_t *self)
{
    static const char *const topics[] = {NRM_DIRECTORY_TOPIC_PREFIX, NULL};
    const char *registrar = NRM_DIRECTORY_REGISTRAR;
    char api_path[S_PATH_MAX], events_path[S_PATH_MAX];
    snprintf(api_path, sizeof api_path, "services.%s.api_connect", registrar);
    snprintf(events_path, sizeof events_path, "services.%s.events_connect", registrar);
    if (strcmp(self->name, registrar) == 0)
        return;
    if (!nrm_config_string(self->config, api_path, NULL) ||
        !nrm_config_string(self->config, events_path, NULL)) {
        nrm_log_info("no registrar endpoints: run-time agencies are not followed", "{s:s}",
                     "registrar", registrar);
        return;
    }
    nrm_service_consume(self, registrar, topics, nrm_directory_apply, self->directory);
    self->consumers[self->consumer_count - 1].checkpoint = NRM_DIRECTORY_CHECKPOINT;
}

/* Creates and attaches every consumer from the configuration. Returns 0 or -1. */
static int s_start_consumers(nrm_service_t *self)
{
    char agency[S_PATH_MAX], api_path[S_PATH_MAX], events_path[S_PATH_MAX];
    snprintf(agency, sizeof agency, "service:%s", self->name);
    Nrm__V1__ConsumerSettings settings = NRM__V1__CONSUMER_SETTINGS__INIT;
    if (s_consumer_settings(self->config, &settings) != 0)
        return -1;
    for (int i = 0; i < self->consumer_count; i++) {
        s_consumer_slot_t *slot = &self->consumers[i];
        snprintf(api_path, sizeof api_path, "services.%s.api_connect", slot->source);
        snprintf(events_path, sizeof events_path, "services.%s.events_connect", slot->source);
        const char *api = nrm_config_string(self->config, api_path, NULL);
        const char *events = nrm_config_string(self->config, events_path, NULL);
        if (!api || !events) {
            nrm_log_error("missing endpoints of a consumed stream", "{s:s}", "stream",
                          slot->source);
            return -1;
        }
        nrm_curve_t curve;
        nrm_error_t err;
        if (nrm_auth_curve_for(self->auth, self->config, slot->source, &curve, &err) != 0) {
            nrm_log_error("no key for a consumed stream", "{s:s, s:s}", "stream", slot->source,
                          "message", err.message);
            return -1;
        }
        nrm_consumer_spec_t spec = {
            self->name,
            slot->source,
            events,
            api,
            agency,
            &curve,
            slot->prefixes,
            slot->apply,
            slot->ctx,
            slot->checkpoint,
            settings.max_attempts,
            settings.retry_backoff_ms,
            slot->flush,
            slot->reset,
            self->partitions_allowed && !slot->checkpoint ? settings.partitions : 1};
        slot->consumer = nrm_consumer_new(self->db, &spec);
        if (!slot->consumer || nrm_consumer_attach(slot->consumer, self->loop) != 0)
            return -1;
    }
    return 0;
}

int nrm_service_run(nrm_service_t *self)
{
    struct sigaction sa = {0};
    sa.sa_handler = s_on_sighup;
    sigaction(SIGHUP, &sa, NULL);
    nrm_db_statement(self->db, "service_fetch", s_sql_fetch);
    nrm_db_statement(self->db, "service_head", s_sql_head);
    nrm_db_statement(self->db, "service_expire_requests", s_sql_expire_requests);
    nrm_service_every(self, s_expire_period_ms(self->config), s_expire_requests, self);
    if (self->gauges)
        nrm_service_every(
            self,
            (int)nrm_config_int(self->config, "metrics_refresh_ms", S_DEFAULT_METRICS_REFRESH_MS),
            s_refresh_gauges, self);
    nrm_service_handle(self, NRM__V1__REQUEST__BODY_PING, NRM_HANDLER_NO_DB, s_handle_ping, self);
    nrm_service_handle(self, NRM__V1__REQUEST__BODY_FETCH, NRM_HANDLER_READ, s_handle_fetch, self);
    nrm_quarantine_prepare(self->db);
    nrm_service_handle(self, NRM__V1__REQUEST__BODY_LIST_QUARANTINE, NRM_HANDLER_READ,
                       s_handle_list_quarantine, self);
    nrm_service_handle(self, NRM__V1__REQUEST__BODY_RETRY_QUARANTINED, NRM_HANDLER_WRITE,
                       s_handle_retry_quarantined, self);
    zsys_catch_interrupts();
    if (s_prepare_database(self) != 0 || s_directory_start(self) != 0 || s_run_start_job(self) != 0)
        return 0;
    s_consume_directory(self);
    nrm_db_set_reactor(self->db); /* from here on the reactor never waits for the database */
    if (nrm_auth_attach(self->auth, self->loop) != 0)
        return 1;
    self->events = s_bind(self, ZMQ_PUB, "events", NULL, false);
    self->api = s_bind(self, ZMQ_ROUTER, "api", NULL, false);
    if (!self->events || !self->api)
        return 1;
    int heartbeat = (int)nrm_config_int(self->config, "heartbeat_ms", S_DEFAULT_HEARTBEAT_MS);
    self->publisher =
        nrm_publisher_new(self->conninfo, self->name, self->name, self->events, heartbeat);
    if (!self->publisher || nrm_publisher_attach(self->publisher, self->loop) != 0 ||
        s_start_consumers(self) != 0)
        return 1;
    zloop_reader(self->loop, self->api, s_on_api, self);
    for (int i = 0; i < self->timer_count; i++)
        zloop_timer(self->loop, (size_t)self->timers[i].period_ms, 0, s_on_timer, &self->timers[i]);
    zloop_timer(self->loop, S_RELOAD_CHECK_MS, 0, s_on_reload_check, self);
    zloop_timer(self->loop, S_DIRECTORY_CHECK_MS, 0, s_on_directory_check, self);
    zloop_timer(self->loop, S_HEALTH_CHECK_MS, 0, s_on_health_check, self);
    zloop_timer(self->loop, S_DB_PROGRESS_MS, 0, s_on_db_progress, self);
    nrm_log_info("service started", "{s:s}", "version", NRM_VERSION);
    /* any signal interrupts the reactor's poll (EINTR); only SIGTERM and SIGINT
     * (zsys_interrupted) or a handler's -1 stop the service: after SIGHUP it goes on */
    while (zloop_start(self->loop) == 0 && !zsys_interrupted && errno == EINTR)
        ;
    nrm_log_info("service stopped", NULL);
    return self->fatal ? 1 : 0;
}
