/* gateway_http: routes, sessions and CSRF on libmicrohttpd (see gateway_http.h). */
#include "gateway_http.h"
#include "gateway_api.h"
#include "gateway_metrics.h"
#include "gateway_session.h"
#include "gateway_sse.h"
#include "gateway_static.h"
#include "nrm_alloc.h"
#include "nrm_log.h"
#include "nrm_time.h"

#include <arpa/inet.h>
#include <stdlib.h>
#include <string.h>

#define S_DEFAULT_HTTP "127.0.0.1:7700"
#define S_MAX_BODY (1024 * 1024) /* largest request body read */
#define S_API_PREFIX "/api/v1/"
#define S_COOKIE "nrm_session"
#define S_CSP "default-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
#define S_SIGN_IN_RETRY_AFTER_S "1" /* seconds, when too many tokens are being checked */
#define S_EXTRA_CONNECTIONS 64      /* connections beyond the event streams: pages, API, metrics */

/* One request being received: its body so far and when it started. */
typedef struct {
    char *body;
    size_t len;
    bool too_large;
    int64_t started_us;
    char label[128]; /* the path recorded in the metrics */
} s_pending_t;

void gw_http_secure_headers(struct MHD_Response *response)
{
    MHD_add_response_header(response, "Content-Security-Policy", S_CSP);
    MHD_add_response_header(response, "X-Content-Type-Options", "nosniff");
    MHD_add_response_header(response, "X-Frame-Options", "DENY");
    MHD_add_response_header(response, "Referrer-Policy", "no-referrer");
}

/* A JSON response of body (taken; NULL for {}) with the common headers, or NULL. The caller
 * queues it with s_queue. */
static struct MHD_Response *s_json_response(json_t *body)
{
    char *text = json_dumps(body ? body : json_object(), JSON_COMPACT);
    json_decref(body);
    if (!text)
        return NULL;
    struct MHD_Response *response =
        MHD_create_response_from_buffer(strlen(text), text, MHD_RESPMEM_MUST_FREE);
    MHD_add_response_header(response, "Content-Type", "application/json");
    MHD_add_response_header(response, "Cache-Control", "no-store");
    gw_http_secure_headers(response);
    return response;
}

/* Queues response (taken; NULL answers nothing) with status. */
static enum MHD_Result s_queue(struct MHD_Connection *conn, unsigned status,
                               struct MHD_Response *response)
{
    if (!response)
        return MHD_NO;
    enum MHD_Result rc = MHD_queue_response(conn, status, response);
    MHD_destroy_response(response);
    return rc;
}

enum MHD_Result gw_http_json(struct MHD_Connection *conn, unsigned status, json_t *body)
{
    return s_queue(conn, status, s_json_response(body));
}

static enum MHD_Result s_error(struct MHD_Connection *conn, unsigned status, const char *message)
{
    return gw_http_json(conn, status, json_pack("{s:s}", "error", message));
}

bool gw_http_session(gw_t *gw, struct MHD_Connection *conn, char agency[128], char csrf[65])
{
    const char *sid = MHD_lookup_connection_value(conn, MHD_COOKIE_KIND, S_COOKIE);
    return sid && gw_sessions_find(gw->sessions, sid, agency, csrf);
}

/* The session body {"agencyId", "agencyType", "csrfToken"}. */
static json_t *s_session_body(gw_t *gw, const char *agency, const char *csrf)
{
    const char *type = nrm_config_agency_type(gw->config, agency);
    return json_pack("{s:s, s:s, s:s}", "agencyId", agency, "agencyType", type ? type : "",
                     "csrfToken", csrf);
}

/* The answer to a refused sign-in: 401, 429 for an agency over its limit, 503 with Retry-After
 * while as many tokens as allowed are being checked. */
static enum MHD_Result s_sign_in_refused(struct MHD_Connection *conn, gw_login_t outcome)
{
    const char *reason = outcome == GW_LOGIN_LIMITED ? "too many attempts"
                         : outcome == GW_LOGIN_BUSY  ? "too many sign-ins at once"
                                                     : "wrong agency or token";
    nrm_log_warn("sign-in refused", "{s:s}", "reason", reason);
    if (outcome == GW_LOGIN_LIMITED)
        return s_error(conn, MHD_HTTP_TOO_MANY_REQUESTS, "too many attempts, wait a minute");
    if (outcome != GW_LOGIN_BUSY)
        return s_error(conn, MHD_HTTP_UNAUTHORIZED, "wrong agency or token");
    struct MHD_Response *response = s_json_response(
        json_pack("{s:s}", "error", "too many sign-ins at once, try again in a second"));
    if (response)
        MHD_add_response_header(response, "Retry-After", S_SIGN_IN_RETRY_AFTER_S);
    return s_queue(conn, MHD_HTTP_SERVICE_UNAVAILABLE, response);
}

/* POST /api/v1/session {"agencyId", "token"}: signs in. */
static enum MHD_Result s_sign_in(gw_t *gw, struct MHD_Connection *conn, const s_pending_t *p)
{
    json_error_t jerr;
    json_t *in = json_loadb(p->body ? p->body : "", p->len, 0, &jerr);
    const char *agency = json_string_value(json_object_get(in, "agencyId"));
    const char *token = json_string_value(json_object_get(in, "token"));
    if (!agency || !token) {
        json_decref(in);
        return s_error(conn, MHD_HTTP_BAD_REQUEST, "agencyId and token are required");
    }
    char sid[GW_TOKEN_TXT], csrf[GW_TOKEN_TXT];
    gw_login_t outcome = gw_sessions_login(gw->sessions, gw->config, agency, token, sid, csrf);
    if (outcome != GW_LOGIN_OK) {
        json_decref(in);
        return s_sign_in_refused(conn, outcome);
    }
    nrm_log_info("signed in", "{s:s}", "agency",
                 nrm_config_agency(gw->config, agency) ? agency : "unlisted");
    struct MHD_Response *response = s_json_response(s_session_body(gw, agency, csrf));
    json_decref(in);
    char cookie[256];
    snprintf(cookie, sizeof cookie, S_COOKIE "=%s; HttpOnly; SameSite=Strict; Path=/%s", sid,
             gw->tls ? "; Secure" : "");
    if (response)
        MHD_add_response_header(response, "Set-Cookie", cookie);
    return s_queue(conn, MHD_HTTP_OK, response);
}

/* DELETE /api/v1/session: signs out (the cookie is cleared). */
static enum MHD_Result s_sign_out(gw_t *gw, struct MHD_Connection *conn)
{
    const char *sid = MHD_lookup_connection_value(conn, MHD_COOKIE_KIND, S_COOKIE);
    if (sid)
        gw_sessions_end(gw->sessions, sid);
    char *text = nrm_xstrdup("{}");
    struct MHD_Response *response =
        MHD_create_response_from_buffer(strlen(text), text, MHD_RESPMEM_MUST_FREE);
    MHD_add_response_header(response, "Set-Cookie",
                            S_COOKIE "=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0");
    MHD_add_response_header(response, "Content-Type", "application/json");
    gw_http_secure_headers(response);
    enum MHD_Result rc = MHD_queue_response(conn, MHD_HTTP_OK, response);
    MHD_destroy_response(response);
    return rc;
}

/* GET /api/v1/regions: the configured regions, {"regions": [{"code", "name"}]}, in the
 * configuration's order (what the dashboard's map draws). */
static enum MHD_Result s_regions(gw_t *gw, struct MHD_Connection *conn)
{
    json_t *out = json_array();
    size_t i;
    json_t *region;
    json_array_foreach(nrm_config_get(gw->config, "regions"), i, region)
    {
        const char *code = json_string_value(json_object_get(region, "code"));
        const char *name = json_string_value(json_object_get(region, "name"));
        if (code)
            json_array_append_new(out,
                                  json_pack("{s:s, s:s}", "code", code, "name", name ? name : ""));
    }
    return gw_http_json(conn, MHD_HTTP_OK, json_pack("{s:o}", "regions", out));
}

static bool s_changes_state(const char *method)
{
    return strcmp(method, "POST") == 0 || strcmp(method, "PUT") == 0 ||
           strcmp(method, "DELETE") == 0 || strcmp(method, "PATCH") == 0;
}

/* The /api/v1/ routes after sign-in checks. label is set for the metrics. */
static enum MHD_Result s_api(gw_t *gw, struct MHD_Connection *conn, const char *url,
                             const char *method, const s_pending_t *p, char *label, size_t cap)
{
    const char *rest = url + strlen(S_API_PREFIX);
    /* a bounded label: a route, never arbitrary client text */
    bool route =
        strcmp(rest, "session") == 0 || strcmp(rest, "events") == 0 || strcmp(rest, "regions") == 0;
    const char *slash = strchr(rest, '/');
    char service[32] = "";
    if (slash && (size_t)(slash - rest) < sizeof service)
        snprintf(service, sizeof service, "%.*s", (int)(slash - rest), rest);
    route = route || (slash && gw_api_known(gw, service, slash + 1));
    snprintf(label, cap, "%s", route && strlen(url) < cap ? url : S_API_PREFIX "other");
    if (strcmp(rest, "session") == 0 && strcmp(method, "POST") == 0)
        return s_sign_in(gw, conn, p);
    char agency[GW_AGENCY_MAX], csrf[GW_TOKEN_TXT];
    if (!gw_http_session(gw, conn, agency, csrf))
        return s_error(conn, MHD_HTTP_UNAUTHORIZED, "not signed in");
    if (s_changes_state(method)) {
        const char *given = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "X-CSRF-Token");
        if (!given || !gw_equal_secret(given, csrf))
            return s_error(conn, MHD_HTTP_FORBIDDEN, "missing or wrong X-CSRF-Token");
    }
    if (strcmp(rest, "session") == 0) {
        if (strcmp(method, "GET") == 0)
            return gw_http_json(conn, MHD_HTTP_OK, s_session_body(gw, agency, csrf));
        if (strcmp(method, "DELETE") == 0)
            return s_sign_out(gw, conn);
        return s_error(conn, MHD_HTTP_METHOD_NOT_ALLOWED, "GET, POST or DELETE");
    }
    if (strcmp(rest, "regions") == 0) {
        if (strcmp(method, "GET") != 0)
            return s_error(conn, MHD_HTTP_METHOD_NOT_ALLOWED, "GET");
        return s_regions(gw, conn);
    }
    if (strcmp(rest, "events") == 0) {
        if (strcmp(method, "GET") != 0)
            return s_error(conn, MHD_HTTP_METHOD_NOT_ALLOWED, "GET");
        return gw_sse_open(gw, conn, MHD_lookup_connection_value(conn, MHD_COOKIE_KIND, S_COOKIE),
                           agency);
    }
    if (!slash || strchr(slash + 1, '/') || slash == rest || !slash[1] ||
        (size_t)(slash - rest) >= 32)
        return s_error(conn, MHD_HTTP_NOT_FOUND, "no such resource");
    if (strcmp(method, "POST") != 0)
        return s_error(conn, MHD_HTTP_METHOD_NOT_ALLOWED, "POST");
    const char *key = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Idempotency-Key");
    return gw_api_call(gw, conn, agency, service, slash + 1, p->body, p->len, key);
}

/* Routes one complete request. label is set to the path recorded in the metrics. */
static enum MHD_Result s_route(gw_t *gw, struct MHD_Connection *conn, const char *url,
                               const char *method, const s_pending_t *p, char *label, size_t cap)
{
    if (p->too_large) {
        snprintf(label, cap, "other");
        return s_error(conn, MHD_HTTP_CONTENT_TOO_LARGE, "request body too large");
    }
    if (strncmp(url, S_API_PREFIX, strlen(S_API_PREFIX)) == 0)
        return s_api(gw, conn, url, method, p, label, cap);
    bool get = strcmp(method, "GET") == 0 || strcmp(method, "HEAD") == 0;
    if (strcmp(url, "/healthz") == 0 || strcmp(url, "/readyz") == 0 ||
        strcmp(url, "/metrics") == 0) {
        snprintf(label, cap, "%s", url);
        if (!get)
            return s_error(conn, MHD_HTTP_METHOD_NOT_ALLOWED, "GET");
        if (strcmp(url, "/healthz") == 0)
            return gw_http_json(conn, MHD_HTTP_OK, json_pack("{s:s}", "status", "ok"));
        if (strcmp(url, "/readyz") == 0)
            return gw_api_ready(gw, conn);
        return gw_metrics_serve(gw, conn);
    }
    snprintf(label, cap, "%s", strcmp(url, "/") == 0 ? "/" : "/static");
    if (!get)
        return s_error(conn, MHD_HTTP_METHOD_NOT_ALLOWED, "GET");
    return gw_static_serve(gw, conn, url);
}

static enum MHD_Result s_handle(void *cls, struct MHD_Connection *conn, const char *url,
                                const char *method, const char *version, const char *upload,
                                size_t *upload_size, void **con_cls)
{
    (void)version;
    gw_t *gw = cls;
    s_pending_t *p = *con_cls;
    if (!p) {
        p = nrm_xcalloc(1, sizeof *p);
        p->started_us = nrm_mono_us();
        *con_cls = p;
        return MHD_YES;
    }
    if (*upload_size) {
        if (p->len + *upload_size > S_MAX_BODY) {
            p->too_large = true;
        } else {
            char *grown = nrm_xrealloc(p->body, p->len + *upload_size + 1);
            memcpy(grown + p->len, upload, *upload_size);
            p->body = grown;
            p->len += *upload_size;
            p->body[p->len] = '\0';
        }
        *upload_size = 0;
        return MHD_YES;
    }
    snprintf(p->label, sizeof p->label, "other");
    return s_route(gw, conn, url, method, p, p->label, sizeof p->label);
}

/* Called when a request ends: records its path, status and duration. */
static void s_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                        enum MHD_RequestTerminationCode code)
{
    (void)code;
    gw_t *gw = cls;
    s_pending_t *p = *con_cls;
    if (!p)
        return;
    const union MHD_ConnectionInfo *info =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_HTTP_STATUS);
    unsigned status = info ? info->http_status : 0;
    gw_metrics_request(gw->metrics, p->label, status,
                       (double)(nrm_mono_us() - p->started_us) / 1e6);
    free(p->body);
    free(p);
    *con_cls = NULL;
}

/* True when addr (IPv4 or IPv6) is a loopback address: 127.0.0.0/8, ::1 or ::ffff:127.x.y.z. */
static bool s_loopback(const struct sockaddr_storage *addr)
{
    if (addr->ss_family == AF_INET)
        return (ntohl(((const struct sockaddr_in *)addr)->sin_addr.s_addr) >> 24) == 127;
    const struct in6_addr *a6 = &((const struct sockaddr_in6 *)addr)->sin6_addr;
    return IN6_IS_ADDR_LOOPBACK(a6) || (IN6_IS_ADDR_V4MAPPED(a6) && a6->s6_addr[12] == 127);
}

/* Reads a whole file into a new NUL-terminated string (caller frees), or NULL. */
static char *s_read_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    char *text = NULL;
    if (fseek(f, 0, SEEK_END) == 0) {
        long n = ftell(f);
        if (n >= 0 && fseek(f, 0, SEEK_SET) == 0) {
            text = nrm_xmalloc((size_t)n + 1);
            if (fread(text, 1, (size_t)n, f) != (size_t)n) {
                free(text);
                text = NULL;
            } else {
                text[n] = '\0';
            }
        }
    }
    fclose(f);
    return text;
}

/* Parses "a.b.c.d:port", "localhost:port" or "[v6 address]:port" into addr. Returns 0 or -1. */
static int s_parse_address(const char *text, struct sockaddr_storage *addr)
{
    char host[64];
    const char *colon = strrchr(text, ':');
    if (!colon || (size_t)(colon - text) >= sizeof host)
        return -1;
    snprintf(host, sizeof host, "%.*s", (int)(colon - text), text);
    char *end = NULL;
    long port = strtol(colon + 1, &end, 10);
    if (!colon[1] || *end || port <= 0 || port > 65535)
        return -1;
    memset(addr, 0, sizeof *addr);
    size_t len = strlen(host);
    if (len >= 2 && host[0] == '[' && host[len - 1] == ']') {
        struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)addr;
        host[len - 1] = '\0';
        a6->sin6_family = AF_INET6;
        a6->sin6_port = htons((uint16_t)port);
        return inet_pton(AF_INET6, host + 1, &a6->sin6_addr) == 1 ? 0 : -1;
    }
    struct sockaddr_in *a4 = (struct sockaddr_in *)addr;
    a4->sin_family = AF_INET;
    a4->sin_port = htons((uint16_t)port);
    if (strcmp(host, "localhost") == 0)
        snprintf(host, sizeof host, "127.0.0.1");
    return inet_pton(AF_INET, host, &a4->sin_addr) == 1 ? 0 : -1;
}

/* The connections one address may hold at once (0: no limit): the configured number, else none
 * on a loopback listen address (only this host reaches it: a reverse proxy, the local runner)
 * and GW_DEFAULT_MAX_CONNECTIONS_PER_IP elsewhere. */
static unsigned s_per_ip_limit(const gw_t *gw, bool loopback)
{
    if (gw->settings.max_connections_per_ip > 0)
        return (unsigned)gw->settings.max_connections_per_ip;
    return loopback ? 0 : GW_DEFAULT_MAX_CONNECTIONS_PER_IP;
}

/* Starts libmicrohttpd on addr with the limits of gw->settings; cert and key (PEM, borrowed for
 * the call) when both are given. Returns the daemon, or NULL. */
static struct MHD_Daemon *s_start_daemon(gw_t *gw, const struct sockaddr_storage *addr,
                                         const char *cert, const char *key)
{
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_THREAD_PER_CONNECTION |
                     MHD_USE_ERROR_LOG | (addr->ss_family == AF_INET6 ? MHD_USE_IPv6 : 0) |
                     (cert && key ? MHD_USE_TLS : 0);
    struct MHD_OptionItem tls[] = {{MHD_OPTION_HTTPS_MEM_CERT, 0, (void *)cert},
                                   {MHD_OPTION_HTTPS_MEM_KEY, 0, (void *)key},
                                   {MHD_OPTION_END, 0, NULL}};
    struct MHD_OptionItem plain[] = {{MHD_OPTION_END, 0, NULL}};
    /* every connection is closed once idle for connection_timeout_s (a request that never
     * completes too); an event stream lifts it for itself (gw_sse_open) */
    return MHD_start_daemon(
        flags, 0, NULL, NULL, s_handle, gw, MHD_OPTION_SOCK_ADDR, addr, MHD_OPTION_NOTIFY_COMPLETED,
        s_completed, gw, MHD_OPTION_CONNECTION_LIMIT,
        (unsigned)(gw->settings.max_sse_clients + S_EXTRA_CONNECTIONS),
        MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)gw->settings.connection_timeout_s,
        MHD_OPTION_PER_IP_CONNECTION_LIMIT, s_per_ip_limit(gw, s_loopback(addr)), MHD_OPTION_ARRAY,
        cert && key ? tls : plain, MHD_OPTION_END);
}

struct MHD_Daemon *gw_http_start(gw_t *gw)
{
    const char *http = nrm_config_string(gw->config, "services.gateway.http", S_DEFAULT_HTTP);
    struct sockaddr_storage addr;
    if (s_parse_address(http, &addr) != 0) {
        nrm_log_error("bad services.gateway.http: want IPV4:PORT or [IPV6]:PORT", "{s:s}", "http",
                      http);
        return NULL;
    }
    const char *cert_file = nrm_config_string(gw->config, "services.gateway.tls_cert_file", "");
    const char *key_file = nrm_config_string(gw->config, "services.gateway.tls_key_file", "");
    gw->tls = cert_file[0] && key_file[0];
    if (!gw->tls && !s_loopback(&addr)) {
        nrm_log_error("refusing plain HTTP on a non-loopback address: configure "
                      "services.gateway.tls_cert_file and tls_key_file",
                      "{s:s}", "http", http);
        return NULL;
    }
    struct MHD_Daemon *daemon = NULL;
    if (gw->tls) {
        char *cert = s_read_file(cert_file), *key = s_read_file(key_file);
        if (!cert || !key)
            nrm_log_error("cannot read the TLS certificate or key", "{s:s, s:s}", "cert", cert_file,
                          "key", key_file);
        else
            daemon = s_start_daemon(gw, &addr, cert, key);
        free(cert);
        if (key) {
            memset(key, 0, strlen(key));
            free(key);
        }
    } else {
        daemon = s_start_daemon(gw, &addr, NULL, NULL);
    }
    if (!daemon)
        nrm_log_error("cannot start HTTP", "{s:s}", "http", http);
    else
        nrm_log_info("HTTP listening", "{s:s, s:b, s:i, s:i}", "http", http, "tls", gw->tls,
                     "connection_timeout_s", (int)gw->settings.connection_timeout_s,
                     "max_connections_per_ip", (int)s_per_ip_limit(gw, s_loopback(&addr)));
    return daemon;
}
