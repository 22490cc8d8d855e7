#include "harness.h"
#include "nrm_auth.h"
#include "nrm_client.h"
#include "nrm_config.h"
#include "nrm_crypto.h"
#include "nrm_event.h"
#include "nrm_time.h"

#include <czmq.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#define S_SERVICES 6
#define S_PORT_LOW 20000
#define S_PORT_SPAN 10000 /* 20000-29999: shell tests take 10000-19999, clusters 554xx */
#define S_PORT_BLOCK 100
#define S_ENDPOINT 64
#define S_PATH 512
#define S_JOIN_TIMEOUT_MS 5000
#define S_POLL_MS 50
#define S_START_TIMEOUT_MS 20000
#define S_HARNESS_IDENTITY "coordinator" /* who the harness itself is: an event reader */

static const char *const s_services[S_SERVICES] = {"intake", "routing",       "shelter",
                                                   "notify", "reintegration", "stats"};

typedef struct {
    pid_t pid;
    char api[S_ENDPOINT];
    char events[S_ENDPOINT];
    char api_connect[S_ENDPOINT];
    char events_connect[S_ENDPOINT];
} s_instance_t;

struct harness_t {
    char name[64];
    char dir[S_PATH];
    char dbname[80];
    char pghost[S_PATH];
    char pgport[16];
    char build[S_PATH];
    char source[S_PATH];
    int port_base;
    int port_lock; /* descriptor holding the block's reservation */
    json_t *config;
    s_instance_t instances[S_SERVICES][HARNESS_MAX_INSTANCES];
    zhash_t *clients; /* "service/instance/identity" -> nrm_client_t */
    zhash_t *certs;   /* identity (agency id or "service:<name>") -> zcert_t */
    PGconn *pg;
};

struct harness_sub_t {
    zsock_t *sock;
    zlist_t *frames; /* every frame received, as zframe_t */
    zlist_t *queue;  /* events not yet returned by next, as zmsg_t */
};

/* Aborts the test with a message. */
static void s_die(const char *what)
{
    fprintf(stderr, "harness: %s\n", what);
    abort();
}

/* Index of a service name. */
static int s_index(const char *service)
{
    for (int i = 0; i < S_SERVICES; i++)
        if (strcmp(s_services[i], service) == 0)
            return i;
    s_die("unknown service");
    return -1;
}

/* Runs a shell command; aborts if it fails. */
static void s_run(const char *cmd)
{
    int rc = system(cmd);
    if (rc != 0) {
        fprintf(stderr, "harness: command failed (%d): %s\n", rc, cmd);
        abort();
    }
}

/* Further connection parameters for every connection to the test cluster (NRM_TEST_PGATTRS,
 * such as "target_session_attrs=read-write" when NRM_TEST_PGHOST and NRM_TEST_PGPORT list
 * several servers), or "". */
static const char *s_pg_attrs(void)
{
    const char *attrs = getenv("NRM_TEST_PGATTRS");
    return attrs ? attrs : "";
}

/* Reserves a block for this process: an exclusive lock on a file named after it, which the
 * kernel releases when the process ends, however it ends. Two tests that start together
 * could otherwise both find the same block free before either binds it. Returns the lock's
 * descriptor (kept open for the harness's life, not inherited by the services), or -1 if
 * another test holds the block. */
static int s_reserve_block(int base)
{
    char path[S_PATH];
    snprintf(path, sizeof path, "/tmp/nrm-test-ports-%d.lock", base);
    int fd = open(path, O_RDONLY | O_CLOEXEC); /* made by another user: O_CREAT may be refused */
    if (fd < 0)
        fd = open(path, O_RDONLY | O_CREAT | O_CLOEXEC, 0666);
    if (fd < 0)
        return -1;
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

/* Picks a block of ports that no other test holds and nobody listens on, and reserves it
 * (*lock_fd, see s_reserve_block). */
static int s_pick_ports(int *lock_fd)
{
    srand((unsigned)(getpid() ^ nrm_mono_us()));
    for (int attempt = 0; attempt < 200; attempt++) {
        int base = S_PORT_LOW + (rand() % (S_PORT_SPAN / S_PORT_BLOCK)) * S_PORT_BLOCK;
        int fd = s_reserve_block(base);
        if (fd < 0)
            continue;
        zsock_t *probe = zsock_new(ZMQ_PUB);
        bool free_block = true;
        for (int p = 0; p < S_SERVICES * 10 && free_block; p += 1) {
            if (zsock_bind(probe, "tcp://127.0.0.1:%d", base + p) < 0)
                free_block = false;
            else
                zsock_unbind(probe, "tcp://127.0.0.1:%d", base + p);
        }
        zsock_destroy(&probe);
        if (free_block) {
            *lock_fd = fd;
            return base;
        }
        close(fd);
    }
    s_die("no free ports");
    return 0;
}

/* Sets a value at a dotted path of obj, creating objects on the way. Steals value. */
static void s_json_set(json_t *obj, const char *path, json_t *value)
{
    char buf[S_PATH];
    snprintf(buf, sizeof buf, "%s", path);
    char *save = NULL, *key = strtok_r(buf, ".", &save);
    while (key) {
        char *next = strtok_r(NULL, ".", &save);
        if (!next) {
            json_object_set_new(obj, key, value);
            return;
        }
        json_t *child = json_object_get(obj, key);
        if (!json_is_object(child)) {
            child = json_object();
            json_object_set_new(obj, key, child);
        }
        obj = child;
        key = next;
    }
}

harness_t *harness_new(const char *name)
{
    harness_t *self = calloc(1, sizeof *self);
    const char *pghost = getenv("NRM_TEST_PGHOST"), *pgport = getenv("NRM_TEST_PGPORT");
    const char *build = getenv("NRM_BUILD_DIR"), *source = getenv("NRM_SOURCE_DIR");
    if (!pghost || !pgport || !build || !source)
        s_die("NRM_TEST_PGHOST, NRM_TEST_PGPORT, NRM_BUILD_DIR and NRM_SOURCE_DIR must be set");
    nrm_crypto_init();
    snprintf(self->name, sizeof self->name, "%s", name);
    snprintf(self->dbname, sizeof self->dbname, "t_%s", name);
    snprintf(self->pghost, sizeof self->pghost, "%s", pghost);
    snprintf(self->pgport, sizeof self->pgport, "%s", pgport);
    snprintf(self->build, sizeof self->build, "%s", build);
    snprintf(self->source, sizeof self->source, "%s", source);
    snprintf(self->dir, sizeof self->dir, "/tmp/nrm-t-%s-XXXXXX", name);
    if (!mkdtemp(self->dir))
        s_die("mkdtemp");
    char cmd[4 * S_PATH];
    snprintf(cmd, sizeof cmd,
             "psql -X -q -h %s -p %s -U postgres -d postgres -c 'DROP DATABASE IF EXISTS %s WITH "
             "(FORCE)' >/dev/null && PGHOST=%s PGPORT=%s PGUSER=postgres %s/deploy/db-init.sh %s "
             ">/dev/null",
             pghost, pgport, self->dbname, pghost, pgport, source, self->dbname);
    s_run(cmd);
    char path[S_PATH + 32];
    snprintf(path, sizeof path, "%s/keys.json", self->dir);
    if (nrm_keyring_generate(path) != 0)
        s_die("keyring");
    snprintf(cmd, sizeof cmd, "%s/deploy/demo/config.json", source);
    json_error_t jerr;
    self->config = json_load_file(cmd, 0, &jerr);
    if (!self->config)
        s_die("cannot read deploy/demo/config.json");
    /* the demonstration data files stay where they are */
    json_t *includes = json_object_get(self->config, "include");
    size_t k;
    json_t *inc;
    json_array_foreach(includes, k, inc)
    {
        char abs[2 * S_PATH];
        snprintf(abs, sizeof abs, "%s/deploy/demo/%s", source, json_string_value(inc));
        json_array_set_new(includes, k, json_string(abs));
    }
    self->clients = zhash_new();
    self->certs = zhash_new();
    char conninfo[2 * S_PATH];
    snprintf(conninfo, sizeof conninfo, "host=%s port=%s dbname=%s %s", pghost, pgport,
             self->dbname, s_pg_attrs());
    s_json_set(self->config, "database.conninfo", json_string(conninfo));
    s_json_set(self->config, "crypto.keys_file", json_string(path));
    s_json_set(self->config, "heartbeat_ms", json_integer(500));
    /* no recovery and reflection period unless a test sets one: most tests close cases at once */
    s_json_set(self->config, "intake.recovery_period_s", json_integer(0));
    self->port_base = s_pick_ports(&self->port_lock);
    for (int s = 0; s < S_SERVICES; s++)
        for (int i = 0; i < HARNESS_MAX_INSTANCES; i++) {
            s_instance_t *in = &self->instances[s][i];
            int port = self->port_base + s * 10 + i * 2;
            snprintf(in->api, S_ENDPOINT, "tcp://127.0.0.1:%d", port);
            snprintf(in->events, S_ENDPOINT, "tcp://127.0.0.1:%d", port + 1);
        }
    for (int s = 0; s < S_SERVICES; s++) {
        char key[S_PATH];
        s_instance_t *in = &self->instances[s][0];
        snprintf(key, sizeof key, "services.%s.api", s_services[s]);
        s_json_set(self->config, key, json_string(in->api));
        snprintf(key, sizeof key, "services.%s.events", s_services[s]);
        s_json_set(self->config, key, json_string(in->events));
        snprintf(key, sizeof key, "services.%s.api_connect", s_services[s]);
        s_json_set(self->config, key, json_string(in->api));
        snprintf(key, sizeof key, "services.%s.events_connect", s_services[s]);
        s_json_set(self->config, key, json_string(in->events));
    }
    return self;
}

void harness_destroy(harness_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    harness_t *self = *self_p;
    for (int s = 0; s < S_SERVICES; s++)
        for (int i = 0; i < HARNESS_MAX_INSTANCES; i++)
            if (self->instances[s][i].pid > 0)
                harness_signal(self, s_services[s], i, SIGKILL);
    for (nrm_client_t *c = zhash_first(self->clients); c; c = zhash_next(self->clients))
        nrm_client_destroy(&c);
    zhash_destroy(&self->clients);
    for (zcert_t *c = zhash_first(self->certs); c; c = zhash_next(self->certs))
        zcert_destroy(&c);
    zhash_destroy(&self->certs);
    if (self->pg)
        PQfinish(self->pg);
    json_decref(self->config);
    close(self->port_lock);
    if (!getenv("NRM_TEST_KEEP")) {
        char cmd[S_PATH + 16];
        snprintf(cmd, sizeof cmd, "rm -rf %s", self->dir);
        if (system(cmd) != 0)
            fprintf(stderr, "harness: could not remove %s\n", self->dir);
    }
    free(self);
    *self_p = NULL;
}

const char *harness_dir(const harness_t *self)
{
    return self->dir;
}

void harness_config_set(harness_t *self, const char *path, json_t *value)
{
    s_json_set(self->config, path, value);
}

const char *harness_api(harness_t *self, const char *service, int instance)
{
    return self->instances[s_index(service)][instance].api;
}

const char *harness_events(harness_t *self, const char *service, int instance)
{
    return self->instances[s_index(service)][instance].events;
}

/* The file name of an identity's certificate ("service:intake" -> "service-intake"). */
static void s_cert_path(harness_t *self, const char *identity, char *path, size_t size)
{
    char name[S_ENDPOINT];
    snprintf(name, sizeof name, "%s", identity);
    for (char *c = name; *c; c++)
        if (*c == ':' || *c == '/')
            *c = '-';
    snprintf(path, size, "%s/certs/%s.cert", self->dir, name);
}

/* The key pair of an identity, made (and saved under dir/certs) on first use. Borrowed. Only
 * the keys the configuration lists are accepted by the services: a key made for a name the
 * configuration does not list is a stranger's. */
static zcert_t *s_cert(harness_t *self, const char *identity)
{
    zcert_t *cert = zhash_lookup(self->certs, identity);
    if (cert)
        return cert;
    cert = zcert_new();
    char path[S_PATH + S_ENDPOINT];
    s_cert_path(self, identity, path, sizeof path);
    char dir[S_PATH + 16];
    snprintf(dir, sizeof dir, "%s/certs", self->dir);
    zsys_dir_create("%s", dir);
    if (!cert || zcert_save(cert, path) != 0)
        s_die("cannot make a certificate");
    zhash_insert(self->certs, identity, cert);
    return cert;
}

const char *harness_public_key(harness_t *self, const char *identity)
{
    return zcert_public_txt(s_cert(self, identity));
}

const char *harness_cert_file(harness_t *self, const char *identity)
{
    static char path[S_PATH + S_ENDPOINT];
    s_cert(self, identity);
    s_cert_path(self, identity, path, sizeof path);
    return path;
}

void harness_curve(harness_t *self, const char *service, const char *identity, nrm_curve_t *curve)
{
    curve->cert = s_cert(self, identity);
    char who[S_ENDPOINT];
    snprintf(who, sizeof who, NRM_SERVICE_PREFIX "%s", service);
    snprintf(curve->server_key, sizeof curve->server_key, "%s", harness_public_key(self, who));
    /* NRM_SECURITY_CURVE=false turns CURVE off in the services (nrm_auth_curve_on): the
     * harness then speaks plain text too, for figures with and without CURVE in one run */
    const char *env = getenv("NRM_SECURITY_CURVE");
    if (env && (strcmp(env, "false") == 0 || strcmp(env, "0") == 0))
        curve->cert = NULL;
}

/* Writes the configuration the services read to path: the test's, with its data files merged
 * in (as the services would merge them), every service's and every agency's key added (a key
 * the test set itself, as "public_keys", stays as it is). */
static void s_write_config(harness_t *self, const char *path)
{
    char draft[S_PATH + 32];
    snprintf(draft, sizeof draft, "%s/config.draft.json", self->dir);
    nrm_error_t err;
    nrm_config_t *merged = NULL;
    if (json_dump_file(self->config, draft, JSON_INDENT(1)) != 0 ||
        !(merged = nrm_config_load(draft, &err)))
        s_die("cannot write or read back the configuration");
    json_t *config = json_deep_copy(nrm_config_get(merged, ""));
    nrm_config_destroy(&merged);
    json_object_del(config, "include");
    for (int s = 0; s < S_SERVICES; s++) {
        char who[S_ENDPOINT], key[S_PATH];
        snprintf(who, sizeof who, NRM_SERVICE_PREFIX "%s", s_services[s]);
        snprintf(key, sizeof key, "services.%s.cert_file", s_services[s]);
        s_json_set(config, key, json_string(harness_cert_file(self, who)));
        snprintf(key, sizeof key, "services.%s.public_key", s_services[s]);
        s_json_set(config, key, json_string(harness_public_key(self, who)));
    }
    size_t i;
    json_t *agency;
    json_array_foreach(json_object_get(config, "agencies"), i, agency)
    {
        const char *id = json_string_value(json_object_get(agency, "id"));
        if (id && !json_object_get(agency, "public_keys"))
            json_object_set_new(agency, "public_keys",
                                json_pack("[s]", harness_public_key(self, id)));
    }
    /* written aside and renamed over, so that a service reloading meanwhile (harness_reload)
     * reads the old file or the new one, never half of one */
    char next[S_PATH + 32];
    snprintf(next, sizeof next, "%s.next", path);
    int rc = json_dump_file(config, next, JSON_INDENT(1));
    json_decref(config);
    if (rc != 0 || rename(next, path) != 0)
        s_die("cannot write config");
}

void harness_agency_keys(harness_t *self, const char *agency, json_t *keys)
{
    size_t i;
    json_t *entry;
    json_array_foreach(json_object_get(self->config, "agencies"), i, entry)
    {
        const char *id = json_string_value(json_object_get(entry, "id"));
        if (id && strcmp(id, agency) == 0) {
            json_object_set_new(entry, "public_keys", keys);
            return;
        }
    }
    s_die("harness_agency_keys: the agency is not in the main configuration");
}

void harness_reload(harness_t *self, const char *service, int instance)
{
    char config[S_PATH + 16];
    snprintf(config, sizeof config, "%s/config.json", self->dir);
    s_write_config(self, config);
    harness_signal(self, service, instance, SIGHUP);
}

int harness_pid(harness_t *self, const char *service, int instance)
{
    return self->instances[s_index(service)][instance].pid;
}

nrm_client_t *harness_client_new(harness_t *self, const char *service, int instance,
                                 const char *identity)
{
    nrm_curve_t curve;
    harness_curve(self, service, identity, &curve);
    nrm_client_t *client =
        nrm_client_new(self->instances[s_index(service)][instance].api, "", &curve);
    if (!client)
        s_die("cannot make a client");
    return client;
}

/* The client of an instance speaking as identity, created on first use. */
static nrm_client_t *s_client(harness_t *self, int s, int instance, const char *identity)
{
    char key[S_PATH];
    snprintf(key, sizeof key, "%d/%d/%s", s, instance, identity);
    nrm_client_t *client = zhash_lookup(self->clients, key);
    if (!client) {
        client = harness_client_new(self, s_services[s], instance, identity);
        zhash_insert(self->clients, key, client);
    }
    return client;
}

Nrm__V1__Reply *harness_call_at(harness_t *self, const char *service, int instance,
                                const char *agency, Nrm__V1__Request *req)
{
    int s = s_index(service);
    char *saved = req->agency_id;
    if (agency)
        req->agency_id = (char *)agency;
    const char *identity =
        req->agency_id && req->agency_id[0] ? req->agency_id : S_HARNESS_IDENTITY;
    nrm_error_t err;
    Nrm__V1__Reply *reply =
        nrm_client_call(s_client(self, s, instance, identity), req, HARNESS_TIMEOUT_MS, &err);
    req->agency_id = saved;
    return reply;
}

Nrm__V1__Reply *harness_call(harness_t *self, const char *service, const char *agency,
                             Nrm__V1__Request *req)
{
    return harness_call_at(self, service, 0, agency, req);
}

/* The Pong of service's instance 0 (NULL when none came); the caller frees it. */
static Nrm__V1__Reply *s_pong(harness_t *self, const char *service)
{
    Nrm__V1__Ping ping = NRM__V1__PING__INIT;
    Nrm__V1__Request req = NRM__V1__REQUEST__INIT;
    req.body_case = NRM__V1__REQUEST__BODY_PING;
    req.ping = &ping;
    req.request_id = "";
    Nrm__V1__Reply *reply = harness_call(self, service, S_HARNESS_IDENTITY, &req);
    if (reply && !reply->pong) {
        nrm__v1__reply__free_unpacked(reply, NULL);
        return NULL;
    }
    return reply;
}

int64_t harness_gauge(harness_t *self, const char *service, const char *name,
                      const char *label_name, const char *label_value)
{
    Nrm__V1__Reply *reply = s_pong(self, service);
    int64_t value = -1;
    for (size_t i = 0; reply && i < reply->pong->n_gauges; i++) {
        const Nrm__V1__ServiceGauge *g = reply->pong->gauges[i];
        if (strcmp(g->name, name) == 0 && strcmp(g->label_name, label_name) == 0 &&
            strcmp(g->label_value, label_value) == 0)
            value = g->value;
    }
    if (reply)
        nrm__v1__reply__free_unpacked(reply, NULL);
    return value;
}

int64_t harness_counter(harness_t *self, const char *service, const char *name)
{
    Nrm__V1__Reply *reply = s_pong(self, service);
    int64_t value = -1;
    for (size_t i = 0; reply && i < reply->pong->n_counters; i++)
        if (strcmp(reply->pong->counters[i]->name, name) == 0)
            value = reply->pong->counters[i]->value;
    if (reply)
        nrm__v1__reply__free_unpacked(reply, NULL);
    return value;
}

/* Prints the last lines of an instance's log (to understand a failure). */
static void s_show_log(harness_t *self, const char *service, int instance)
{
    char cmd[2 * S_PATH];
    snprintf(cmd, sizeof cmd, "tail -n 30 %s/%s-%d.log >&2", self->dir, service, instance);
    if (system(cmd) != 0)
        fprintf(stderr, "harness: no log\n");
}

/* True when the instance answers Ping with its database connected. */
static bool s_ready(harness_t *self, int s, int instance)
{
    Nrm__V1__Ping ping = NRM__V1__PING__INIT;
    Nrm__V1__Request req = NRM__V1__REQUEST__INIT;
    req.body_case = NRM__V1__REQUEST__BODY_PING;
    req.ping = &ping;
    nrm_error_t err;
    Nrm__V1__Reply *reply =
        nrm_client_call(s_client(self, s, instance, S_HARNESS_IDENTITY), &req, 500, &err);
    bool ok = reply && reply->status == NRM__V1__STATUS__STATUS_OK && reply->pong &&
              reply->pong->database_ok;
    if (reply)
        nrm__v1__reply__free_unpacked(reply, NULL);
    return ok;
}

int harness_start(harness_t *self, const char *service, int instance)
{
    int s = s_index(service);
    char config[S_PATH + 16], log[S_PATH + 64], binary[2 * S_PATH];
    snprintf(config, sizeof config, "%s/config.json", self->dir);
    s_write_config(self, config);
    snprintf(log, sizeof log, "%s/%s-%d.log", self->dir, service, instance);
    snprintf(binary, sizeof binary, "%s/services/%s/nrm-%s", self->build, service, service);
    s_instance_t *in = &self->instances[s][instance];
    fflush(NULL);
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid == 0) {
        /* a test that aborts leaves no service behind to serve the next run's database */
        if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0 || getppid() != parent)
            _exit(127);
        char name[S_PATH];
        snprintf(name, sizeof name, "NRM_SERVICES_%s_API", service);
        for (char *c = name; *c; c++)
            *c = (char)(*c >= 'a' && *c <= 'z' ? *c - 32 : *c);
        setenv(name, in->api, 1);
        snprintf(name, sizeof name, "NRM_SERVICES_%s_EVENTS", service);
        for (char *c = name; *c; c++)
            *c = (char)(*c >= 'a' && *c <= 'z' ? *c - 32 : *c);
        setenv(name, in->events, 1);
        if (!freopen(log, "a", stderr) || !freopen(log, "a", stdout))
            _exit(127);
        execl(binary, binary, "--config", config, (char *)NULL);
        _exit(127);
    }
    in->pid = pid;
    int64_t deadline = nrm_mono_ms() + S_START_TIMEOUT_MS;
    while (nrm_mono_ms() < deadline) {
        if (s_ready(self, s, instance))
            return 0;
        int status;
        if (waitpid(pid, &status, WNOHANG) == pid) {
            in->pid = 0;
            break;
        }
        zclock_sleep(S_POLL_MS);
    }
    fprintf(stderr, "harness: %s-%d did not start\n", service, instance);
    s_show_log(self, service, instance);
    return -1;
}

int harness_signal(harness_t *self, const char *service, int instance, int signal)
{
    s_instance_t *in = &self->instances[s_index(service)][instance];
    if (in->pid <= 0)
        return -1;
    kill(in->pid, signal);
    if (signal != SIGKILL && signal != SIGTERM)
        return 0;
    int status = -1;
    waitpid(in->pid, &status, 0);
    in->pid = 0;
    if (signal == SIGTERM && !(WIFEXITED(status) && WEXITSTATUS(status) == 0)) {
        fprintf(stderr, "harness: %s-%d did not stop cleanly at SIGTERM (status %d)\n", service,
                instance, status);
        s_show_log(self, service, instance); /* its stderr (an abort's message) is in the log */
    }
    return status;
}

/* The superuser connection to the test database, (re)made as needed. */
static PGconn *s_pg(harness_t *self)
{
    if (self->pg && PQstatus(self->pg) == CONNECTION_OK)
        return self->pg;
    if (self->pg)
        PQfinish(self->pg);
    char conninfo[2 * S_PATH];
    snprintf(conninfo, sizeof conninfo, "host=%s port=%s dbname=%s user=postgres %s", self->pghost,
             self->pgport, self->dbname, s_pg_attrs());
    self->pg = PQconnectdb(conninfo);
    if (PQstatus(self->pg) != CONNECTION_OK)
        s_die("cannot connect to the test database");
    return self->pg;
}

PGresult *harness_sql(harness_t *self, const char *sql)
{
    PGresult *res = PQexec(s_pg(self), sql);
    if (PQresultStatus(res) != PGRES_TUPLES_OK && PQresultStatus(res) != PGRES_COMMAND_OK) {
        fprintf(stderr, "harness: SQL failed: %s\n%s\n", sql, PQresultErrorMessage(res));
        abort();
    }
    return res;
}

long long harness_sql_int(harness_t *self, const char *sql)
{
    PGresult *res = harness_sql(self, sql);
    long long v = PQntuples(res) > 0 && !PQgetisnull(res, 0, 0) ? atoll(PQgetvalue(res, 0, 0)) : 0;
    PQclear(res);
    return v;
}

long long harness_sql_intf(harness_t *self, const char *fmt, ...)
{
    char sql[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(sql, sizeof sql, fmt, ap);
    va_end(ap);
    return harness_sql_int(self, sql);
}

long long harness_wait_sql(harness_t *self, const char *sql, long long want, int timeout_ms)
{
    int64_t deadline = nrm_mono_ms() + timeout_ms;
    long long v = harness_sql_int(self, sql);
    while (v != want && nrm_mono_ms() < deadline) {
        zclock_sleep(S_POLL_MS);
        v = harness_sql_int(self, sql);
    }
    return v;
}

void harness_pg_stop(harness_t *self)
{
    if (self->pg) {
        PQfinish(self->pg);
        self->pg = NULL;
    }
    char cmd[3 * S_PATH];
    snprintf(cmd, sizeof cmd, "%s/tests/pg-cluster.sh stop %s >/dev/null", self->source,
             getenv("NRM_TEST_PGDIR"));
    s_run(cmd);
}

void harness_pg_start(harness_t *self)
{
    char cmd[3 * S_PATH];
    snprintf(cmd, sizeof cmd, "%s/tests/pg-cluster.sh start %s %s >/dev/null", self->source,
             getenv("NRM_TEST_PGDIR"), self->pgport);
    s_run(cmd);
}

int harness_log_lines(harness_t *self, const char *service, int instance, const char *needle,
                      const char *also)
{
    char path[S_PATH + 64];
    snprintf(path, sizeof path, "%s/%s-%d.log", self->dir, service, instance);
    FILE *f = fopen(path, "r");
    if (!f)
        return 0;
    int lines = 0;
    char *line = NULL;
    size_t cap = 0;
    while (getline(&line, &cap, f) >= 0)
        if (strstr(line, needle) && (!also || strstr(line, also)))
            lines++;
    free(line);
    fclose(f);
    return lines;
}

bool harness_log_contains(harness_t *self, const char *service, int instance, const char *needle)
{
    return harness_log_lines(self, service, instance, needle, NULL) > 0;
}

harness_sub_t *harness_subscribe(harness_t *self, const char *service, int instance)
{
    harness_sub_t *sub = calloc(1, sizeof *sub);
    sub->sock = zsock_new(ZMQ_SUB);
    zsock_set_rcvhwm(sub->sock, 0); /* before connecting: it applies to new pipes only */
    zsock_set_subscribe(sub->sock, "");
    nrm_curve_t curve;
    harness_curve(self, service, S_HARNESS_IDENTITY, &curve);
    nrm_auth_apply_client(sub->sock, &curve);
    zsock_connect(sub->sock, "%s", harness_events(self, service, instance));
    sub->frames = zlist_new();
    sub->queue = zlist_new();
    /* a publisher applies a new subscription lazily: the first heartbeat received proves it
     * is in force, so nothing published afterwards is missed */
    int64_t deadline = nrm_mono_ms() + S_JOIN_TIMEOUT_MS;
    while (!harness_sub_saw_bytes(sub, NRM_TOPIC_STREAM_HEAD) && nrm_mono_ms() < deadline)
        zclock_sleep(S_POLL_MS);
    return sub;
}

void harness_sub_destroy(harness_sub_t **sub_p)
{
    if (!sub_p || !*sub_p)
        return;
    harness_sub_t *sub = *sub_p;
    zframe_t *f;
    while ((f = zlist_pop(sub->frames)))
        zframe_destroy(&f);
    zmsg_t *m;
    while ((m = zlist_pop(sub->queue)))
        zmsg_destroy(&m);
    zlist_destroy(&sub->frames);
    zlist_destroy(&sub->queue);
    zsock_destroy(&sub->sock);
    free(sub);
    *sub_p = NULL;
}

/* Receives what is waiting (up to wait_ms for the first message) into frames and queue. */
static void s_sub_drain(harness_sub_t *sub, int wait_ms)
{
    zpoller_t *poller = zpoller_new(sub->sock, NULL);
    while (zpoller_wait(poller, wait_ms)) {
        zmsg_t *msg = zmsg_recv(sub->sock);
        if (!msg)
            break;
        for (zframe_t *f = zmsg_first(msg); f; f = zmsg_next(msg))
            zlist_append(sub->frames, zframe_dup(f));
        zlist_append(sub->queue, msg);
        wait_ms = 0;
    }
    zpoller_destroy(&poller);
}

Nrm__V1__Event *harness_sub_next(harness_sub_t *sub, const char *prefix, int timeout_ms)
{
    int64_t deadline = nrm_mono_ms() + timeout_ms;
    for (;;) {
        zmsg_t *msg;
        while ((msg = zlist_pop(sub->queue))) {
            char *topic = zmsg_popstr(msg);
            zframe_t *body = zmsg_pop(msg);
            Nrm__V1__Event *ev = NULL;
            if (topic && body && strncmp(topic, prefix, strlen(prefix)) == 0 &&
                strcmp(topic, NRM_TOPIC_STREAM_HEAD) != 0)
                ev = nrm_event_unpack(zframe_data(body), zframe_size(body));
            free(topic);
            zframe_destroy(&body);
            zmsg_destroy(&msg);
            if (ev)
                return ev;
        }
        int64_t left = deadline - nrm_mono_ms();
        if (left <= 0) {
            fprintf(stderr, "harness: no '%s' event within %d ms (%zu frames received)\n", prefix,
                    timeout_ms, zlist_size(sub->frames));
            return NULL;
        }
        s_sub_drain(sub, (int)left);
    }
}

bool harness_sub_saw_bytes(harness_sub_t *sub, const char *needle)
{
    s_sub_drain(sub, 0);
    size_t n = strlen(needle);
    for (zframe_t *f = zlist_first(sub->frames); f; f = zlist_next(sub->frames)) {
        size_t size = zframe_size(f);
        const byte *data = zframe_data(f);
        for (size_t i = 0; i + n <= size; i++)
            if (memcmp(data + i, needle, n) == 0)
                return true;
    }
    return false;
}

size_t harness_fetch_all(harness_t *self, const char *service, Nrm__V1__Event ***events)
{
    size_t count = 0, cap = 64;
    *events = malloc(cap * sizeof **events);
    int64_t from = 1;
    for (;;) {
        Nrm__V1__Fetch fetch = NRM__V1__FETCH__INIT;
        fetch.stream = (char *)service;
        fetch.from_seq = from;
        fetch.max = 1000;
        Nrm__V1__Request req = NRM__V1__REQUEST__INIT;
        req.body_case = NRM__V1__REQUEST__BODY_FETCH;
        req.fetch = &fetch;
        Nrm__V1__Reply *reply = harness_call(self, service, "coordinator", &req);
        if (!reply || !reply->fetch_result) {
            if (reply)
                nrm__v1__reply__free_unpacked(reply, NULL);
            break;
        }
        Nrm__V1__FetchResult *fr = reply->fetch_result;
        for (size_t i = 0; i < fr->n_events; i++) {
            if (count == cap)
                *events = realloc(*events, (cap *= 2) * sizeof **events);
            size_t len = nrm__v1__event__get_packed_size(fr->events[i]);
            uint8_t *buf = malloc(len + 1);
            nrm__v1__event__pack(fr->events[i], buf);
            (*events)[count++] = nrm_event_unpack(buf, len);
            free(buf);
            from = fr->events[i]->seq + 1;
        }
        bool done = fr->n_events == 0 || from > fr->head;
        nrm__v1__reply__free_unpacked(reply, NULL);
        if (done)
            break;
    }
    return count;
}
