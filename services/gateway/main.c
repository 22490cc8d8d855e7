/* nrm-gateway: HTTP, sign-in, the JSON API, server-sent events and /metrics for NRM.
 *
 * Its whole life: read the configuration, load its certificate, find the services, start the
 * stream hub and the HTTP daemon, read the configuration again on each SIGHUP, and on SIGTERM
 * or SIGINT stop both. It owns no database
 * schema: sessions live in memory (a restart signs everybody out). */
#include "gateway.h"
#include "gateway_http.h"
#include "gateway_metrics.h"
#include "gateway_session.h"
#include "gateway_settings.h"
#include "gateway_sse.h"
#include "nrm_alloc.h"
#include "nrm_log.h"
#include "nrm_wipe.h"

#include <signal.h>
#include <string.h>
#include <pthread.h>
#include <unistd.h>

#define S_EXIT_USAGE 2
#define S_EXIT_FAILURE 1
#ifndef NRM_GATEWAY_WWW
#define NRM_GATEWAY_WWW "/usr/local/share/nrm/www"
#endif

const gw_service_t *gw_service(const gw_t *gw, const char *name)
{
    for (int i = 0; i < gw->n_services; i++)
        if (strcmp(gw->services[i].name, name) == 0)
            return &gw->services[i];
    return NULL;
}

/* SIGHUP: reads the configuration file again. The new one is in force for every request that
 * starts after (sign-ins and their tokens, agencies, regions, event readers); the services,
 * their keys, the HTTP address, TLS and the numbers of gw->settings stay as they were at start.
 * A file that cannot be read, or whose gateway section is refused, keeps the old one. */
static void s_reload(gw_t *gw)
{
    nrm_error_t err;
    nrm_error_clear(&err);
    nrm_config_t *old = gw->config;
    nrm_config_t *fresh = nrm_config_load(nrm_config_path(old), &err);
    if (!fresh) {
        nrm_log_error("configuration reload refused", "{s:s}", "message", err.message);
        return;
    }
    gw_settings_t checked;
    if (gw_settings_read(fresh, &checked) != 0) {
        nrm_log_error("configuration reload refused", "{s:s}", "message",
                      "the gateway section is refused (logged above)");
        nrm_config_destroy(&fresh);
        return;
    }
    gw->retired = nrm_xrealloc(gw->retired, (gw->n_retired + 1) * sizeof *gw->retired);
    gw->retired[gw->n_retired++] = old;
    gw->config = fresh;
    nrm_log_info("configuration reloaded", NULL);
}

/* Fills gw->services with every configured service that has an api_connect (not the gateway). */
static int s_find_services(gw_t *gw)
{
    json_t *services = nrm_config_get(gw->config, "services");
    const char *name;
    json_t *entry;
    json_object_foreach(services, name, entry)
    {
        const char *api = json_string_value(json_object_get(entry, "api_connect"));
        const char *events = json_string_value(json_object_get(entry, "events_connect"));
        if (strcmp(name, GW_NAME) == 0 || !api || gw->n_services == GW_MAX_SERVICES ||
            strlen(name) >= sizeof gw->services[0].name)
            continue;
        gw_service_t *s = &gw->services[gw->n_services];
        snprintf(s->name, sizeof s->name, "%s", name);
        snprintf(s->api, sizeof s->api, "%s", api);
        snprintf(s->events, sizeof s->events, "%s", events ? events : "");
        s->curve.cert = gw->cert;
        nrm_error_t err;
        nrm_error_clear(&err);
        if (gw->cert && nrm_auth_service_key(gw->config, name, s->curve.server_key, &err) != 0) {
            nrm_log_error("no public key for a service", "{s:s, s:s}", "service", name, "why",
                          err.message);
            return -1;
        }
        gw->n_services++;
    }
    return 0;
}

/* Reads the command line and configuration into gw. Returns 0, or an exit code. */
static int s_configure(gw_t *gw, int argc, char **argv)
{
    const char *path = getenv("NRM_CONFIG");
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--config") == 0 && i + 1 < argc)
            path = argv[++i];
        else if (strncmp(argv[i], "--config=", 9) == 0)
            path = argv[i] + 9;
        else {
            fprintf(stderr, "usage: nrm-gateway --config FILE\n");
            return S_EXIT_USAGE;
        }
    }
    nrm_error_t err;
    nrm_error_clear(&err);
    gw->config = nrm_config_load(path ? path : "/etc/nrm/config.json", &err);
    if (!gw->config) {
        fprintf(stderr, "nrm-gateway: %s\n", err.message);
        return S_EXIT_USAGE;
    }
    nrm_log_init(GW_NAME, nrm_config_string(gw->config, "log_level", "info"));
    if (nrm_auth_curve_on(gw->config)) {
        const char *cert = nrm_config_string(gw->config, "services.gateway.cert_file", "");
        gw->cert = nrm_auth_load_cert(cert, &err);
        if (!gw->cert) {
            nrm_log_error("cannot load the gateway's certificate", "{s:s}", "why", err.message);
            return S_EXIT_USAGE;
        }
    } else {
        nrm_log_error("PLAIN TEXT MODE: security.curve is false", NULL);
    }
    snprintf(gw->www, sizeof gw->www, "%s",
             nrm_config_string(gw->config, "services.gateway.www", NRM_GATEWAY_WWW));
    if (gw_settings_read(gw->config, &gw->settings) != 0)
        return S_EXIT_USAGE;
    return s_find_services(gw) == 0 ? 0 : S_EXIT_USAGE;
}

int main(int argc, char **argv)
{
    gw_t gw = {0};
    nrm_wipe_json(); /* requests and replies carry names: their JSON is wiped when freed */
    /* SIGTERM, SIGINT and SIGHUP are blocked in every thread (libmicrohttpd's and the hub's inherit
     * the mask) and taken by sigwait below */
    sigset_t stop_signals;
    sigemptyset(&stop_signals);
    sigaddset(&stop_signals, SIGTERM);
    sigaddset(&stop_signals, SIGINT);
    sigaddset(&stop_signals, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &stop_signals, NULL);
    signal(SIGPIPE, SIG_IGN);
    int rc = s_configure(&gw, argc, argv);
    struct MHD_Daemon *daemon = NULL;
    if (rc == 0) {
        gw.sessions = gw_sessions_new(gw.settings.session_ttl_s);
        gw.metrics = gw_metrics_new();
        gw.hub = gw.sessions && gw.metrics ? gw_hub_start(&gw) : NULL;
        daemon = gw.hub ? gw_http_start(&gw) : NULL;
        rc = daemon ? 0 : S_EXIT_FAILURE;
    }
    if (rc == 0) {
        nrm_log_info("gateway started", "{s:i}", "services", gw.n_services);
        int sig = SIGHUP;
        while (sig == SIGHUP) {
            sigwait(&stop_signals, &sig);
            if (sig == SIGHUP)
                s_reload(&gw);
        }
        nrm_log_info("gateway stopping", "{s:i}", "signal", sig);
    }
    gw_hub_halt(gw.hub); /* SSE connections end within a poll */
    if (daemon)
        MHD_stop_daemon(daemon);
    gw_hub_destroy(&gw.hub);
    gw_sessions_destroy(&gw.sessions);
    gw_metrics_destroy(&gw.metrics);
    zcert_destroy(&gw.cert);
    nrm_config_t *config = gw.config;
    nrm_config_destroy(&config);
    for (size_t i = 0; i < gw.n_retired; i++)
        nrm_config_destroy(&gw.retired[i]);
    free(gw.retired);
    return rc;
}
