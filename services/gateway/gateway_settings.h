/* gateway_settings: the "gateway" section of the configuration, read as a GatewaySettings
 * message (proto/nrm/v1/api.proto) and checked before it is used. The environment overrides
 * each number like any setting (NRM_GATEWAY_SESSION_TTL_S, ...). */
#ifndef GATEWAY_SETTINGS_H
#define GATEWAY_SETTINGS_H

#include <stdint.h>
#include "nrm_config.h"

#define GW_DEFAULT_SESSION_TTL_S (8 * 3600)
#define GW_DEFAULT_MAX_SSE_CLIENTS 100
#define GW_DEFAULT_CONNECTION_TIMEOUT_S 30
#define GW_DEFAULT_MAX_CONNECTIONS_PER_IP 32 /* off a loopback listen address */

typedef struct {
    int64_t session_ttl_s;          /* session lifetime from sign-in */
    int64_t max_sse_clients;        /* event streams open at once */
    int64_t connection_timeout_s;   /* a connection idle this long is closed (not a stream) */
    int64_t max_connections_per_ip; /* 0: not set (the listen address decides the default) */
} gw_settings_t;

/* Reads and checks config's gateway section (logins included) into out, defaults filled in.
 * Returns 0, or -1 after logging the offending field; out is then unchanged. */
int gw_settings_read(nrm_config_t *config, gw_settings_t *out);

#endif
