/* nrmctl_common: global options, configuration, endpoints, JSON input and output. */
#include "nrmctl_common.h"
#include "nrm_client.h"
#include "nrm_json.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Longest dotted configuration path built here ("services.<name>.events_connect"). */
#define S_CONFIG_PATH_MAX 160
/* Longest error line, message included. */
#define S_ERROR_MAX 512
/* Decimal base for integer options. */
#define S_DECIMAL 10

const char *const nrmctl_services[NRMCTL_SERVICE_COUNT + 1] = {"intake", "routing",       "shelter",
                                                               "notify", "reintegration", NULL};
const char *const nrmctl_health_services[NRMCTL_HEALTH_SERVICE_COUNT + 1] = {
    "intake", "routing", "shelter", "notify", "reintegration", "stats", NULL};

/* Public: defaults from the environment, then the built-in values. */
void nrmctl_init(nrmctl_t *ctl)
{
    const char *config = getenv("NRM_CONFIG");
    const char *agency = getenv("NRM_AGENCY");
    const char *cert = getenv("NRM_CERT");
    ctl->config_given = config && config[0];
    ctl->config_path = ctl->config_given ? config : NRMCTL_DEFAULT_CONFIG;
    ctl->agency_given = agency && agency[0];
    ctl->agency_id = ctl->agency_given ? agency : NRMCTL_DEFAULT_AGENCY;
    ctl->cert_path = cert && cert[0] ? cert : NULL;
    ctl->timeout_ms = NRMCTL_DEFAULT_TIMEOUT_MS;
    ctl->config = NULL;
    ctl->cert = NULL;
}

/* Public: frees the configuration if it was loaded. */
void nrmctl_cleanup(nrmctl_t *ctl)
{
    nrm_config_destroy(&ctl->config);
    zcert_destroy(&ctl->cert);
}

/* Public: one line "nrmctl: ..." on stderr. */
void nrmctl_error(const char *fmt, ...)
{
    char line[S_ERROR_MAX];
    va_list args;
    va_start(args, fmt);
    vsnprintf(line, sizeof line, fmt, args);
    va_end(args);
    fprintf(stderr, "nrmctl: %s\n", line);
}

/* Public: one line on stderr pointing at the usage; returns the usage exit code. */
int nrmctl_usage_error(const char *command, const char *fmt, ...)
{
    char line[S_ERROR_MAX];
    va_list args;
    va_start(args, fmt);
    vsnprintf(line, sizeof line, fmt, args);
    va_end(args);
    if (command)
        fprintf(stderr, "nrmctl: %s (try 'nrmctl %s --help')\n", line, command);
    else
        fprintf(stderr, "nrmctl: %s (try 'nrmctl --help')\n", line);
    return NRMCTL_EXIT_USAGE;
}

/* Public: strict unsigned decimal in [min, max]; false on anything else. */
bool nrmctl_parse_int(const char *text, int64_t min, int64_t max, int64_t *out)
{
    if (!text || !isdigit((unsigned char)text[0]))
        return false;
    char *end = NULL;
    errno = 0;
    long long value = strtoll(text, &end, S_DECIMAL);
    if (errno != 0 || end == text || *end != '\0' || value < min || value > max)
        return false;
    *out = (int64_t)value;
    return true;
}

/* The local runner's configuration and certificate, when nrmctl finds them (static, so that
 * ctl may point at them). */
static char s_found_config[PATH_MAX];
static char s_found_cert[PATH_MAX];

/* Without a configuration given and without the installed one: var/config.json of the current
 * directory or of its nearest parent that has one, and that var/certs/coordinator.cert when no
 * certificate is given. */
static void s_find_local_config(nrmctl_t *ctl)
{
    char dir[PATH_MAX];
    if (ctl->config_given || access(NRMCTL_DEFAULT_CONFIG, F_OK) == 0 || !getcwd(dir, sizeof dir))
        return;
    for (;;) {
        int n = snprintf(s_found_config, sizeof s_found_config, "%s/var/config.json",
                         strcmp(dir, "/") == 0 ? "" : dir);
        if (n > 0 && (size_t)n < sizeof s_found_config && access(s_found_config, R_OK) == 0) {
            ctl->config_path = s_found_config;
            n = snprintf(s_found_cert, sizeof s_found_cert, "%s/var/certs/coordinator.cert",
                         strcmp(dir, "/") == 0 ? "" : dir);
            if (!ctl->cert_path && n > 0 && (size_t)n < sizeof s_found_cert &&
                access(s_found_cert, R_OK) == 0)
                ctl->cert_path = s_found_cert;
            return;
        }
        char *slash = strrchr(dir, '/');
        if (!slash || strcmp(dir, "/") == 0)
            return;
        if (slash == dir)
            slash[1] = '\0';
        else
            *slash = '\0';
    }
}

/* Public: loads the configuration once; NULL after printing why. */
nrm_config_t *nrmctl_config(nrmctl_t *ctl)
{
    if (ctl->config)
        return ctl->config;
    s_find_local_config(ctl);
    nrm_error_t err;
    nrm_error_clear(&err);
    ctl->config = nrm_config_load(ctl->config_path, &err);
    if (!ctl->config)
        nrmctl_error("%s", err.message);
    return ctl->config;
}

/* Public: services.<service>.<kind>, environment first; NULL when empty. */
const char *nrmctl_endpoint(nrmctl_t *ctl, const char *service, const char *kind)
{
    char path[S_CONFIG_PATH_MAX];
    snprintf(path, sizeof path, "services.%s.%s", service, kind);
    const char *endpoint = nrm_config_string(ctl->config, path, NULL);
    return endpoint && endpoint[0] ? endpoint : NULL;
}

/* Public: the agency's key pair and the service's public key. */
int nrmctl_curve(nrmctl_t *ctl, const char *service, nrm_curve_t *curve)
{
    memset(curve, 0, sizeof *curve);
    if (!nrm_auth_curve_on(ctl->config))
        return NRMCTL_EXIT_OK;
    nrm_error_t err;
    nrm_error_clear(&err);
    if (!ctl->cert) {
        if (!ctl->cert_path) {
            nrmctl_error("no certificate: give --cert FILE or set NRM_CERT (services use CURVE)");
            return NRMCTL_EXIT_USAGE;
        }
        ctl->cert = nrm_auth_load_cert(ctl->cert_path, &err);
        if (!ctl->cert) {
            nrmctl_error("certificate %s: %s", ctl->cert_path, err.message);
            return NRMCTL_EXIT_USAGE;
        }
    }
    curve->cert = ctl->cert;
    if (nrm_auth_service_key(ctl->config, service, curve->server_key, &err) != 0) {
        nrmctl_error("%s", err.message);
        return NRMCTL_EXIT_USAGE;
    }
    return NRMCTL_EXIT_OK;
}

/* Public: a client with the keys; with CURVE the key names the agency unless --agency is set. */
nrm_client_t *nrmctl_client(nrmctl_t *ctl, const char *service, const char *endpoint)
{
    nrm_curve_t curve;
    if (nrmctl_curve(ctl, service, &curve) != NRMCTL_EXIT_OK)
        return NULL;
    const char *agency = curve.cert && !ctl->agency_given ? "" : ctl->agency_id;
    nrm_client_t *client = nrm_client_new(endpoint, agency, &curve);
    if (!client)
        nrmctl_error("%s: invalid endpoint %s", service, endpoint);
    return client;
}

/* Public: letters, digits, '_' and '-' only (no dots: it becomes a path). */
bool nrmctl_service_name_ok(const char *name)
{
    if (!name || !name[0])
        return false;
    for (const char *p = name; *p; p++)
        if (!isalnum((unsigned char)*p) && *p != '_' && *p != '-')
            return false;
    return true;
}

/* Loads path ("-" for stdin) as JSON; NULL after printing why (never the text itself, which
 * may be identifying: only the position of a syntax error). */
static json_t *s_load_json(const char *path)
{
    json_error_t jerr;
    FILE *file = strcmp(path, "-") == 0 ? stdin : fopen(path, "r");
    if (!file) {
        nrmctl_error("cannot open the input file: %s", strerror(errno));
        return NULL;
    }
    json_t *json = json_loadf(file, JSON_REJECT_DUPLICATES, &jerr);
    if (file != stdin)
        fclose(file);
    if (!json)
        nrmctl_error("the input is not valid JSON (line %d, column %d)", jerr.line, jerr.column);
    return json;
}

/* Public: JSON file to message; NULL after naming the offending field. */
ProtobufCMessage *nrmctl_read_message(const char *path, const ProtobufCMessageDescriptor *desc,
                                      const char *field_prefix)
{
    json_t *json = s_load_json(path);
    if (!json)
        return NULL;
    nrm_error_t err;
    nrm_error_clear(&err);
    ProtobufCMessage *msg = nrm_json_to_message(desc, json, &err);
    json_decref(json);
    if (msg)
        return msg;
    const char *prefix = field_prefix ? field_prefix : "";
    const char *dot = field_prefix && err.field[0] && err.field[0] != '[' ? "." : "";
    if (prefix[0] || err.field[0])
        nrmctl_error("invalid input at %s%s%s: %s", prefix, dot, err.field, err.message);
    else
        nrmctl_error("invalid input: %s", err.message);
    return NULL;
}

/* Public: one Request, one Reply; the exit code says what went wrong. */
int nrmctl_call(nrmctl_t *ctl, const char *service, Nrm__V1__Request *req, Nrm__V1__Reply **reply)
{
    *reply = NULL;
    if (!nrmctl_config(ctl))
        return NRMCTL_EXIT_USAGE;
    const char *endpoint = nrmctl_endpoint(ctl, service, "api_connect");
    if (!endpoint) {
        nrmctl_error("no endpoint for service '%s' (services.%s.api_connect)", service, service);
        return NRMCTL_EXIT_USAGE;
    }
    nrm_client_t *client = nrmctl_client(ctl, service, endpoint);
    if (!client)
        return NRMCTL_EXIT_USAGE;
    nrm_error_t err;
    nrm_error_clear(&err);
    *reply = nrm_client_call(client, req, ctl->timeout_ms, &err);
    nrm_client_destroy(&client);
    if (*reply)
        return NRMCTL_EXIT_OK;
    nrmctl_error("%s: %s", service, err.message);
    return NRMCTL_EXIT_UNAVAILABLE;
}

/* Writes text and a newline on stdout and flushes. Returns 0, or -1. */
static int s_print_line(const char *text)
{
    if (!text || fputs(text, stdout) == EOF || fputc('\n', stdout) == EOF)
        return -1;
    return fflush(stdout) == 0 ? 0 : -1;
}

/* Public: the message as one flushed line of proto3 JSON. */
int nrmctl_print_message(const ProtobufCMessage *msg)
{
    char *text = nrm_json_dumps_message(msg);
    int rc = s_print_line(text);
    free(text);
    return rc;
}

/* Public: the JSON value as one flushed compact line. */
int nrmctl_print_json(const json_t *json)
{
    char *text = json_dumps(json, JSON_COMPACT);
    int rc = s_print_line(text);
    free(text);
    return rc;
}

/* Public: prints the Reply; exit code OK or STATUS from its status. */
int nrmctl_print_reply(const Nrm__V1__Reply *reply)
{
    if (nrmctl_print_message(&reply->base) != 0)
        nrmctl_error("cannot write the reply");
    return reply->status == NRM_OK ? NRMCTL_EXIT_OK : NRMCTL_EXIT_STATUS;
}

/* Public: unavailable outweighs any other code, then the first that is not OK. */
int nrmctl_exit_worse(int a, int b)
{
    if (a == NRMCTL_EXIT_UNAVAILABLE || b == NRMCTL_EXIT_UNAVAILABLE)
        return NRMCTL_EXIT_UNAVAILABLE;
    return a != NRMCTL_EXIT_OK ? a : b;
}
