/* gateway: the HTTP side of NRM for browsers and other systems (see README.md).
 *
 * One process: libmicrohttpd with a thread per connection. Each API call opens a CURVE client
 * to the service as "service:gateway" and names the signed-in agency in Request.agency_id
 * (only the gateway's key may do that; the services then authorize the agency). Sessions live
 * in memory: a restart signs everybody out. */
#ifndef GATEWAY_H
#define GATEWAY_H

#include <czmq.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include "nrm_auth.h"
#include "nrm_config.h"
#include "gateway_settings.h"

#define GW_NAME "gateway"
#define GW_MAX_SERVICES 16
#define GW_CALL_TIMEOUT_MS 5000

typedef struct gw_sessions_t gw_sessions_t;
typedef struct gw_metrics_t gw_metrics_t;
typedef struct gw_hub_t gw_hub_t;

/* A service the gateway speaks to: its name and api endpoint (copied from the configuration). */
typedef struct {
    char name[32];
    char api[256];
    char events[256];
    nrm_curve_t curve; /* cert borrowed from gw_t.cert */
} gw_service_t;

typedef struct {
    /* owned; replaced on SIGHUP (atomically: a thread reads the one in force, and a replaced
     * one stays valid until exit, in retired) */
    nrm_config_t *_Atomic config;
    nrm_config_t **retired;
    size_t n_retired;
    zcert_t *cert; /* own certificate (NULL in plain text) */
    gw_service_t services[GW_MAX_SERVICES];
    int n_services;
    char www[1024]; /* static files directory */
    bool tls;
    gw_sessions_t *sessions;
    gw_metrics_t *metrics;
    gw_hub_t *hub;
    gw_settings_t settings; /* read at start (a reload checks, never applies, them) */
} gw_t;

/* The configured service called name, or NULL. */
const gw_service_t *gw_service(const gw_t *gw, const char *name);

#endif
