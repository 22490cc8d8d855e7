#include "nrm_alloc.h"
#include "nrm_auth.h"
#include "nrm_authz.h"
#include "nrm_log.h"

#include <sodium.h>

#define S_ZAP_ENDPOINT "inproc://zeromq.zap.01"
#define S_MONITOR_ENDPOINT "inproc://nrm-auth-events-monitor-%d"
#define S_PATH_MAX 160
#define S_DEFAULT_MAX_SUBSCRIBERS 64
#define S_DEFAULT_SUBSCRIBER_HWM 1000
#define S_DEFAULT_SUBSCRIBER_SNDBUF 131072 /* fixed kernel buffer per subscriber, bytes */
#define S_KEY_BYTES 32

struct nrm_auth_t {
    char *name;
    bool secure;
    zcert_t *cert;       /* own key pair; NULL in plain text */
    zhash_t *identities; /* Z85 public key -> agency id or "service:<name>" */
    zhash_t *readers;    /* Z85 public key -> "" for identities that may read events */
    zsock_t *zap;
    zsock_t *monitor; /* PAIR receiving the events socket's connection events */
    int monitor_seq;
    int64_t open_subscribers;
    int64_t max_subscribers;
    int64_t subscriber_hwm;
    int64_t subscriber_sndbuf;
    int64_t refused;
};

bool nrm_auth_curve_on(nrm_config_t *config)
{
    json_t *v = nrm_config_get(config, "security.curve");
    const char *env = getenv("NRM_SECURITY_CURVE");
    if (env && env[0])
        return strcmp(env, "false") != 0 && strcmp(env, "0") != 0;
    return !json_is_false(v);
}

zcert_t *nrm_auth_load_cert(const char *path, nrm_error_t *err)
{
    if (!path || !path[0]) {
        nrm_fail(err, NRM_FAILED_PRECONDITION, "cert_file", "no certificate file configured");
        return NULL;
    }
    zcert_t *cert = zcert_load(path);
    if (!cert) {
        nrm_fail(err, NRM_FAILED_PRECONDITION, "cert_file", "cannot read the certificate file");
        return NULL;
    }
    static const char zero[S_KEY_BYTES];
    if (memcmp(zcert_secret_key(cert), zero, S_KEY_BYTES) == 0) {
        zcert_destroy(&cert);
        nrm_fail(err, NRM_FAILED_PRECONDITION, "cert_file",
                 "the certificate's secret file is missing or unreadable");
        return NULL;
    }
    return cert;
}

bool nrm_auth_key_valid(const char *key)
{
    uint8_t bin[S_KEY_BYTES];
    return key && strlen(key) == NRM_KEY_TXT - 1 && zmq_z85_decode(bin, key) != NULL;
}

int nrm_auth_service_key(nrm_config_t *config, const char *service, char key[NRM_KEY_TXT],
                         nrm_error_t *err)
{
    char path[S_PATH_MAX];
    snprintf(path, sizeof path, "services.%s.public_key", service);
    const char *txt = nrm_config_string(config, path, NULL);
    if (txt && nrm_auth_key_valid(txt)) {
        snprintf(key, NRM_KEY_TXT, "%s", txt);
        return 0;
    }
    snprintf(path, sizeof path, "services.%s.cert_file", service);
    const char *file = nrm_config_string(config, path, NULL);
    zcert_t *cert = file ? zcert_load(file) : NULL;
    if (!cert) {
        nrm_fail(err, NRM_FAILED_PRECONDITION, path, "no public key known for service %s", service);
        return -1;
    }
    snprintf(key, NRM_KEY_TXT, "%s", zcert_public_txt(cert));
    zcert_destroy(&cert);
    return 0;
}

void nrm_auth_apply_client(zsock_t *sock, const nrm_curve_t *curve)
{
    if (!curve || !curve->cert)
        return;
    zcert_apply(curve->cert, sock);
    zsock_set_curve_serverkey(sock, curve->server_key);
}

void nrm_auth_fingerprint(const char *key_txt, char out[17])
{
    uint8_t hash[8];
    crypto_generichash(hash, sizeof hash, (const uint8_t *)key_txt, strlen(key_txt), NULL, 0);
    sodium_bin2hex(out, 17, hash, sizeof hash);
}

/* Adds key -> identity (and the reader mark) to the maps. Invalid keys are logged, skipped. */
static void s_add_key(nrm_auth_t *self, const char *key, const char *identity, bool reader)
{
    if (!nrm_auth_key_valid(key)) {
        nrm_log_warn("invalid public key in the configuration", "{s:s}", "identity", identity);
        return;
    }
    char *copy = nrm_xstrdup(identity);
    if (zhash_insert(self->identities, key, copy) != 0) {
        nrm_log_warn("public key listed twice: the first identity keeps it", "{s:s}", "identity",
                     identity);
        free(copy);
        return;
    }
    zhash_freefn(self->identities, key, free);
    if (reader)
        zhash_insert(self->readers, key, "");
}

/* Builds the key maps of config into self->identities and self->readers. */
static void s_load_keys(nrm_auth_t *self, nrm_config_t *config)
{
    zhash_destroy(&self->identities);
    zhash_destroy(&self->readers);
    self->identities = zhash_new();
    self->readers = zhash_new();
    if (!self->identities || !self->readers)
        nrm_oom("zhash");
    json_t *services = nrm_config_get(config, "services");
    const char *name;
    json_t *entry;
    json_object_foreach(services, name, entry)
    {
        char key[NRM_KEY_TXT], identity[S_PATH_MAX];
        nrm_error_t err;
        if (nrm_auth_service_key(config, name, key, &err) != 0)
            continue;
        snprintf(identity, sizeof identity, NRM_SERVICE_PREFIX "%s", name);
        s_add_key(self, key, identity, true);
    }
    /* the file's agencies first, then the run-time directory's: a key listed by both stays
     * with the file's agency */
    size_t n = nrm_config_agency_count(config), k;
    json_t *key;
    for (size_t i = 0; i < n; i++) {
        json_t *agency = nrm_config_agency_at(config, i);
        const char *id = json_string_value(json_object_get(agency, "id"));
        if (!id)
            continue;
        bool reader = nrm_authz_event_reader(config, id, nrm_config_agency_type(config, id));
        json_array_foreach(json_object_get(agency, "public_keys"), k, key)
        {
            if (json_is_string(key))
                s_add_key(self, json_string_value(key), id, reader);
        }
    }
}

nrm_auth_t *nrm_auth_new(nrm_config_t *config, const char *name, nrm_error_t *err)
{
    nrm_auth_t *self = nrm_xcalloc(1, sizeof *self);
    self->name = nrm_xstrdup(name);
    self->secure = nrm_auth_curve_on(config);
    self->max_subscribers =
        nrm_config_int(config, "security.max_subscribers", S_DEFAULT_MAX_SUBSCRIBERS);
    self->subscriber_hwm =
        nrm_config_int(config, "security.subscriber_hwm", S_DEFAULT_SUBSCRIBER_HWM);
    self->subscriber_sndbuf =
        nrm_config_int(config, "security.subscriber_sndbuf", S_DEFAULT_SUBSCRIBER_SNDBUF);
    s_load_keys(self, config);
    if (!self->secure) {
        nrm_log_error("PLAIN TEXT MODE: security.curve is false; every api and events socket is "
                      "unauthenticated and unencrypted, and any client is whoever it claims",
                      NULL);
        return self;
    }
    char path[S_PATH_MAX];
    snprintf(path, sizeof path, "services.%s.cert_file", name);
    self->cert = nrm_auth_load_cert(nrm_config_string(config, path, NULL), err);
    if (self->cert) {
        self->zap = zsock_new(ZMQ_REP);
        if (!self->zap || zsock_bind(self->zap, S_ZAP_ENDPOINT) != 0) {
            nrm_fail(err, NRM_INTERNAL, NULL, "cannot bind the ZAP handler");
            zsock_destroy(&self->zap);
        }
    } else {
        snprintf(err->field, sizeof err->field, "%s", path);
    }
    if (!self->cert || !self->zap)
        nrm_auth_destroy(&self);
    return self;
}

void nrm_auth_destroy(nrm_auth_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    nrm_auth_t *self = *self_p;
    zsock_destroy(&self->zap);
    zsock_destroy(&self->monitor);
    zcert_destroy(&self->cert);
    zhash_destroy(&self->identities);
    zhash_destroy(&self->readers);
    free(self->name);
    free(self);
    *self_p = NULL;
}

bool nrm_auth_secure(const nrm_auth_t *self)
{
    return self->secure;
}

int64_t nrm_auth_refused(const nrm_auth_t *self)
{
    return self->refused;
}

/* Counts the events socket's connections from its monitor's queued events. */
static void s_drain_monitor(nrm_auth_t *self)
{
    while (self->monitor) {
        zmsg_t *msg = zmsg_recv_nowait(self->monitor);
        if (!msg)
            return;
        zframe_t *head = zmsg_first(msg);
        if (head && zframe_size(head) >= 2) {
            uint16_t event;
            memcpy(&event, zframe_data(head), sizeof event);
            if (event == ZMQ_EVENT_ACCEPTED)
                self->open_subscribers++;
            else if (event == ZMQ_EVENT_DISCONNECTED && self->open_subscribers > 0)
                self->open_subscribers--;
        }
        zmsg_destroy(&msg);
    }
}

/* Decides one ZAP request. Returns true to admit; *why says why not. */
static bool s_admit(nrm_auth_t *self, const char *domain, const char *mechanism, const char *key,
                    const char **why)
{
    if (strcmp(mechanism, "CURVE") != 0) {
        *why = "not CURVE";
        return false;
    }
    if (!zhash_lookup(self->identities, key)) {
        *why = "unknown key";
        return false;
    }
    if (strcmp(domain, "events") != 0)
        return true;
    if (!zhash_lookup(self->readers, key)) {
        *why = "not an event reader";
        return false;
    }
    s_drain_monitor(self);
    /* the connection asking is counted already (accepted before its handshake) */
    if (self->open_subscribers > self->max_subscribers) {
        *why = "too many subscribers";
        return false;
    }
    return true;
}

/* Answers one ZAP request (RFC 27): admits known keys, refuses the rest. */
static int s_on_zap(zloop_t *loop, zsock_t *sock, void *arg)
{
    nrm_auth_t *self = arg;
    zmsg_t *req = zmsg_recv(sock);
    if (!req)
        return 0;
    char *version = zmsg_popstr(req), *request_id = zmsg_popstr(req);
    char *domain = zmsg_popstr(req), *address = zmsg_popstr(req);
    char *routing_id = zmsg_popstr(req), *mechanism = zmsg_popstr(req);
    zframe_t *credentials = zmsg_pop(req);
    char key[NRM_KEY_TXT] = "";
    if (credentials && zframe_size(credentials) == S_KEY_BYTES)
        zmq_z85_encode(key, zframe_data(credentials), S_KEY_BYTES);
    const char *why = "malformed request";
    bool ok =
        version && domain && mechanism && key[0] && s_admit(self, domain, mechanism, key, &why);
    if (!ok) {
        self->refused++;
        char fingerprint[17] = "none";
        if (key[0])
            nrm_auth_fingerprint(key, fingerprint);
        nrm_log_warn("connection refused", "{s:s, s:s, s:s}", "socket", domain ? domain : "",
                     "reason", why, "key", fingerprint);
    }
    zmsg_t *reply = zmsg_new();
    zmsg_addstr(reply, "1.0");
    zmsg_addstr(reply, request_id ? request_id : "");
    zmsg_addstr(reply, ok ? "200" : "400");
    zmsg_addstr(reply, ok ? "OK" : "refused");
    zmsg_addstr(reply, ok ? key : "");
    zmsg_addmem(reply, NULL, 0);
    zmsg_send(&reply, sock);
    zmsg_destroy(&reply); /* kept by zmsg_send when it could not be sent */
    zframe_destroy(&credentials);
    free(version);
    free(request_id);
    free(domain);
    free(address);
    free(routing_id);
    free(mechanism);
    zmsg_destroy(&req);
    return 0;
}

int nrm_auth_attach(nrm_auth_t *self, zloop_t *loop)
{
    if (!self->zap)
        return 0;
    return zloop_reader(loop, self->zap, s_on_zap, self);
}

int nrm_auth_serve(nrm_auth_t *self, zsock_t *sock, const char *domain)
{
    bool events = strcmp(domain, "events") == 0;
    if (events) {
        zsock_set_sndhwm(sock, (int)self->subscriber_hwm);
        zsock_set_sndbuf(sock, (int)self->subscriber_sndbuf);
    }
    if (!self->secure)
        return 0;
    zcert_apply(self->cert, sock);
    zsock_set_curve_server(sock, 1);
    zsock_set_zap_domain(sock, domain);
    if (!events)
        return 0;
    zsock_destroy(&self->monitor);
    self->open_subscribers = 0;
    char endpoint[64];
    snprintf(endpoint, sizeof endpoint, S_MONITOR_ENDPOINT, ++self->monitor_seq);
    if (zmq_socket_monitor(zsock_resolve(sock), endpoint,
                           ZMQ_EVENT_ACCEPTED | ZMQ_EVENT_DISCONNECTED) != 0)
        return -1;
    self->monitor = zsock_new(ZMQ_PAIR);
    if (!self->monitor || zsock_connect(self->monitor, "%s", endpoint) != 0)
        return -1;
    return 0;
}

const char *nrm_auth_identity(nrm_auth_t *self, zframe_t *frame)
{
    if (!self->secure)
        return NULL;
    const char *key = zframe_meta(frame, "User-Id");
    return key ? zhash_lookup(self->identities, key) : NULL;
}

int nrm_auth_curve_for(nrm_auth_t *self, nrm_config_t *config, const char *peer, nrm_curve_t *curve,
                       nrm_error_t *err)
{
    memset(curve, 0, sizeof *curve);
    if (!self->secure)
        return 0;
    curve->cert = self->cert;
    return nrm_auth_service_key(config, peer, curve->server_key, err);
}

bool nrm_auth_reload(nrm_auth_t *self, nrm_config_t *config)
{
    zhash_t *before = self->identities;
    zhash_t *readers_before = self->readers;
    self->identities = NULL;
    self->readers = NULL;
    s_load_keys(self, config);
    bool removed = false;
    for (void *id = zhash_first(before); id && !removed; id = zhash_next(before)) {
        const char *key = zhash_cursor(before);
        const char *now = zhash_lookup(self->identities, key);
        removed = !now || strcmp(now, id) != 0 ||
                  (zhash_lookup(readers_before, key) && !zhash_lookup(self->readers, key));
    }
    zhash_destroy(&before);
    zhash_destroy(&readers_before);
    return removed;
}
