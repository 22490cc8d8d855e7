/* gateway_settings: the gateway section as a GatewaySettings message (see gateway_settings.h). */
#include "gateway_settings.h"
#include "nrm_json.h"
#include "nrm_log.h"
#include "nrm_validate.h"
#include "nrm/v1/api.pb-c.h"

#include <stdio.h>

#define S_SECTION "gateway"
#define S_FIELD_MAX 96
#define S_MAX_SSE_CLIENTS 10000 /* a thread each */
#define S_MAX_CONNECTION_TIMEOUT_S 3600

/* The field of a login that is missing, in field (S_FIELD_MAX), or NULL when every login names
 * an agency and a hash. */
static const char *s_login_bad(const Nrm__V1__GatewaySettings *s, char *field)
{
    for (size_t i = 0; i < s->n_logins; i++) {
        const Nrm__V1__GatewayLogin *login = s->logins[i];
        if (login->agency_id[0] && login->token_hash[0])
            continue;
        char base[S_FIELD_MAX];
        nrm_path_index(base, sizeof base, S_SECTION ".logins", i);
        snprintf(field, S_FIELD_MAX, "%s.%s", base,
                 login->agency_id[0] ? "token_hash" : "agency_id");
        return field;
    }
    return NULL;
}

/* The setting at path (the environment first), or dflt when it is not set (0 in the file). */
static int64_t s_number(nrm_config_t *config, const char *path, int32_t in_file, int64_t dflt)
{
    return nrm_config_int(config, path, in_file ? in_file : dflt);
}

/* Fills out from s and the environment. Returns the offending field, or NULL. */
static const char *s_numbers(nrm_config_t *config, const Nrm__V1__GatewaySettings *s,
                             gw_settings_t *out)
{
    out->session_ttl_s =
        s_number(config, S_SECTION ".session_ttl_s", s->session_ttl_s, GW_DEFAULT_SESSION_TTL_S);
    out->max_sse_clients = s_number(config, S_SECTION ".max_sse_clients", s->max_sse_clients,
                                    GW_DEFAULT_MAX_SSE_CLIENTS);
    out->connection_timeout_s = s_number(config, S_SECTION ".connection_timeout_s",
                                         s->connection_timeout_s, GW_DEFAULT_CONNECTION_TIMEOUT_S);
    out->max_connections_per_ip =
        s_number(config, S_SECTION ".max_connections_per_ip", s->max_connections_per_ip, 0);
    if (out->session_ttl_s <= 0)
        return S_SECTION ".session_ttl_s";
    if (out->max_sse_clients <= 0 || out->max_sse_clients > S_MAX_SSE_CLIENTS)
        return S_SECTION ".max_sse_clients";
    if (out->connection_timeout_s <= 0 || out->connection_timeout_s > S_MAX_CONNECTION_TIMEOUT_S)
        return S_SECTION ".connection_timeout_s";
    if (out->max_connections_per_ip < 0 || out->max_connections_per_ip > INT32_MAX)
        return S_SECTION ".max_connections_per_ip";
    return NULL;
}

int gw_settings_read(nrm_config_t *config, gw_settings_t *out)
{
    json_t *section = nrm_config_get(config, S_SECTION);
    char field[S_FIELD_MAX];
    Nrm__V1__GatewaySettings *s = (Nrm__V1__GatewaySettings *)nrm_json_section_to_message(
        &nrm__v1__gateway_settings__descriptor, section, S_SECTION, field, sizeof field);
    const char *bad = NULL;
    gw_settings_t read = {0};
    if (section && !json_is_object(section))
        bad = S_SECTION;
    else if (!s) {
        bad = field;
    } else {
        bad = s_login_bad(s, field);
        if (!bad)
            bad = s_numbers(config, s, &read);
    }
    if (s)
        protobuf_c_message_free_unpacked(&s->base, NULL);
    if (bad) {
        nrm_log_error("gateway configuration refused", "{s:s}", "field", bad);
        return -1;
    }
    *out = read;
    return 0;
}
