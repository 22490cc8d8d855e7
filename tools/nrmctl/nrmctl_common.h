/* nrmctl_common: what every nrmctl command shares: the global options, the configuration and
 * its endpoints, reading JSON input, printing JSON output and one-line error messages.
 *
 * Output discipline: replies and events go to stdout as one line of proto3 JSON each, flushed
 * at once; errors go to stderr as one line "nrmctl: ..." and never carry identifying data
 * (so never a value taken from an input file or a reply). */
#ifndef NRMCTL_COMMON_H
#define NRMCTL_COMMON_H

#include <protobuf-c/protobuf-c.h>
#include <stdbool.h>
#include <stdint.h>
#include "nrm/v1/api.pb-c.h"
#include "nrm_auth.h"
#include "nrm_client.h"
#include "nrm_config.h"

/* Exit codes, as documented in the usage text. */
#define NRMCTL_EXIT_OK 0
#define NRMCTL_EXIT_STATUS 1      /* the service answered with a non-OK status */
#define NRMCTL_EXIT_USAGE 2       /* usage error, unreadable or invalid input */
#define NRMCTL_EXIT_UNAVAILABLE 3 /* no reply within the timeout */

#define NRMCTL_DEFAULT_CONFIG "/etc/nrm/config.json"
#define NRMCTL_DEFAULT_AGENCY "coordinator"
#define NRMCTL_DEFAULT_TIMEOUT_MS 5000

/* The global options and the configuration, loaded on first use. */
typedef struct {
    const char *config_path;
    bool config_given; /* --config or $NRM_CONFIG: no search for var/config.json */
    const char *agency_id;
    bool agency_given;     /* --agency or $NRM_AGENCY: named in requests even with CURVE */
    const char *cert_path; /* --cert or $NRM_CERT: the agency's certificate */
    int timeout_ms;
    nrm_config_t *config;
    zcert_t *cert; /* loaded on first use */
} nrmctl_t;

/* The five services with streams, NULL-terminated: the default of tail and top. */
#define NRMCTL_SERVICE_COUNT 5
extern const char *const nrmctl_services[NRMCTL_SERVICE_COUNT + 1];
/* The services ping and status ask by default (those configured of them): the five with
 * streams, then stats, which only consumes. NULL-terminated. */
#define NRMCTL_HEALTH_SERVICE_COUNT 6
extern const char *const nrmctl_health_services[NRMCTL_HEALTH_SERVICE_COUNT + 1];

/* Fills ctl with the defaults ($NRM_CONFIG, $NRM_AGENCY, the built-in values). Without
 * --config or $NRM_CONFIG, when /etc/nrm/config.json does not exist, the configuration is
 * var/config.json in the current directory or the nearest parent that has one (the local
 * runner's, deploy/run-local.sh), and without --cert or $NRM_CERT the certificate is that
 * var/certs/coordinator.cert when it exists; see nrmctl_config. */
void nrmctl_init(nrmctl_t *ctl);

/* Frees what ctl holds (the configuration). */
void nrmctl_cleanup(nrmctl_t *ctl);

/* Prints "nrmctl: <message>" as one line on stderr. */
void nrmctl_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Prints a usage error about command (NULL for the global options) and returns
 * NRMCTL_EXIT_USAGE. */
int nrmctl_usage_error(const char *command, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Parses text as an unsigned decimal integer in [min, max] into *out. Returns true on success. */
bool nrmctl_parse_int(const char *text, int64_t min, int64_t max, int64_t *out);

/* Returns the configuration, loading it on first use; NULL after printing why it cannot. */
nrm_config_t *nrmctl_config(nrmctl_t *ctl);

/* Returns the endpoint services.<service>.<kind> ("api_connect" or "events_connect"),
 * environment overrides included, or NULL when the configuration does not give one.
 * The configuration must be loaded. */
const char *nrmctl_endpoint(nrmctl_t *ctl, const char *service, const char *kind);

/* Fills curve for talking to service: the agency's certificate (--cert, $NRM_CERT) and the
 * service's public key from the configuration (loaded). In plain text mode (security.curve
 * false) curve->cert is NULL. Returns NRMCTL_EXIT_OK, or NRMCTL_EXIT_USAGE after printing why. */
int nrmctl_curve(nrmctl_t *ctl, const char *service, nrm_curve_t *curve);

/* Returns a client of service's api at endpoint with the right keys and agency id, or NULL
 * after printing why (caller destroys). */
nrm_client_t *nrmctl_client(nrmctl_t *ctl, const char *service, const char *endpoint);

/* Returns true when name can be a service name (letters, digits, '_' and '-'). */
bool nrmctl_service_name_ok(const char *name);

/* Reads path ("-" for stdin) as JSON and builds a message of type desc from it. field_prefix
 * (may be NULL) is put before the field path in error messages. Returns the message (caller
 * frees with protobuf_c_message_free_unpacked) or NULL after printing the error. */
ProtobufCMessage *nrmctl_read_message(const char *path, const ProtobufCMessageDescriptor *desc,
                                      const char *field_prefix);

/* Sends req to service's api and waits for the Reply (into *reply, caller frees).
 * Returns NRMCTL_EXIT_OK, NRMCTL_EXIT_USAGE (no endpoint or configuration) or
 * NRMCTL_EXIT_UNAVAILABLE (no reply), after printing the error. */
int nrmctl_call(nrmctl_t *ctl, const char *service, Nrm__V1__Request *req, Nrm__V1__Reply **reply);

/* Prints msg as one line of proto3 JSON on stdout and flushes. Returns 0, or -1. */
int nrmctl_print_message(const ProtobufCMessage *msg);

/* Prints json (compact) as one line on stdout and flushes. Returns 0, or -1. */
int nrmctl_print_json(const json_t *json);

/* Combines the exit codes of several requests: unavailable outweighs any other, then the first
 * that is not OK is kept. */
int nrmctl_exit_worse(int a, int b);

/* Prints the Reply and returns the exit code it calls for (OK or STATUS). */
int nrmctl_print_reply(const Nrm__V1__Reply *reply);

#endif
