/* nrm_auth: CURVE authentication of every api and events socket, and the keys behind it.
 *
 * Every agency and every service has a CURVE key pair, kept as CZMQ certificate files (the
 * public file and "<file>_secret", as zcert_save writes them; pyzmq's load_certificate reads
 * them too). The public key is the identity:
 *   agencies[].public_keys     Z85 keys of an agency (a list: two overlap during a rotation);
 *                              run-time agencies' keys come from nrm_directory, after these
 *   services.<name>.public_key Z85 key of a service (or read from services.<name>.cert_file)
 *   services.<name>.cert_file  a service's own certificate (its secret file beside it)
 *   security.curve             true by default; false is plain text, logged loudly at start
 *   security.event_readers     who may connect to events sockets and Fetch besides services:
 *                              {"agency_types": ["COORDINATOR"], "agency_ids": []} by default
 *                              (nrm_authz_event_reader decides, for both)
 *   security.max_subscribers   connections an events socket accepts at once (default 64)
 *   security.subscriber_hwm    messages queued per subscriber before live ones drop (1000)
 *
 * A server side (nrm_auth_t) answers ZAP for the sockets of its process, on its reactor: an
 * unknown key gets no session (counted, logged with a short fingerprint, never the key), and on
 * an events socket only services and event readers get one, up to max_subscribers. The key of
 * each request's connection is its frame's "User-Id" metadata; nrm_auth_identity maps it to the
 * sender through the current keys, so a key removed by a reload is refused from then on, also on
 * connections already open. */
#ifndef NRM_AUTH_H
#define NRM_AUTH_H

#include <czmq.h>
#include <stdbool.h>
#include "nrm_config.h"
#include "nrm_error.h"

#define NRM_KEY_TXT 41 /* a Z85 public key and its NUL */
#define NRM_SERVICE_PREFIX "service:"

/* What a connecting socket needs: its own key pair and the server's public key. A NULL
 * nrm_curve_t (or a NULL cert) means plain text. */
typedef struct {
    zcert_t *cert;                /* borrowed */
    char server_key[NRM_KEY_TXT]; /* Z85 */
} nrm_curve_t;

typedef struct nrm_auth_t nrm_auth_t;

/* True unless the configuration sets security.curve to false. */
bool nrm_auth_curve_on(nrm_config_t *config);

/* Loads a certificate that has its secret key, from the public file or the "_secret" file.
 * Returns it (caller destroys with zcert_destroy), or NULL with err set (FAILED_PRECONDITION). */
zcert_t *nrm_auth_load_cert(const char *path, nrm_error_t *err);

/* Writes service's Z85 public key into key (services.<name>.public_key, else the public half of
 * services.<name>.cert_file). Returns 0, or -1 with err set. */
int nrm_auth_service_key(nrm_config_t *config, const char *service, char key[NRM_KEY_TXT],
                         nrm_error_t *err);

/* Applies curve to a socket before it connects (nothing when curve or its cert is NULL). */
void nrm_auth_apply_client(zsock_t *sock, const nrm_curve_t *curve);

/* True when key is a Z85 CURVE public key: 40 characters that decode to 32 bytes. */
bool nrm_auth_key_valid(const char *key);

/* A short, non-reversible fingerprint of a Z85 public key for logs (16 hex digits). */
void nrm_auth_fingerprint(const char *key_txt, char out[17]);

/* Returns a server side for service `name`: its own certificate and the keys of config
 * (borrowed only for the call). NULL with err set when CURVE is on and the certificate cannot
 * be loaded, or the ZAP endpoint cannot be bound (one per process). */
nrm_auth_t *nrm_auth_new(nrm_config_t *config, const char *name, nrm_error_t *err);

/* Frees everything, sets *self to NULL. Safe on NULL. */
void nrm_auth_destroy(nrm_auth_t **self);

/* Answers ZAP requests on loop. Returns 0 or -1. */
int nrm_auth_attach(nrm_auth_t *self, zloop_t *loop);

/* Makes sock a CURVE server in ZAP domain "api" or "events" (before bind), with the events
 * socket's bounded queue per subscriber and its connection count watched. Returns 0 or -1. */
int nrm_auth_serve(nrm_auth_t *self, zsock_t *sock, const char *domain);

/* The sender of a request frame received on a served socket: an agency id or
 * "service:<name>", borrowed until the next reload; NULL when its key is no longer known. In
 * plain text mode (no keys), NULL. */
const char *nrm_auth_identity(nrm_auth_t *self, zframe_t *frame);

/* True when CURVE is on for this server. */
bool nrm_auth_secure(const nrm_auth_t *self);

/* Fills curve for connecting to service peer as this service (own cert borrowed from self).
 * Returns 0, or -1 with err set when the peer's key is unknown. In plain text, curve->cert is
 * NULL. */
int nrm_auth_curve_for(nrm_auth_t *self, nrm_config_t *config, const char *peer, nrm_curve_t *curve,
                       nrm_error_t *err);

/* Takes the keys of a reloaded configuration. Returns true when a key that was accepted before
 * is gone (the caller re-binds its events socket so that every subscriber authenticates again). */
bool nrm_auth_reload(nrm_auth_t *self, nrm_config_t *config);

/* Sessions refused since start (unknown key, not an event reader, too many subscribers). */
int64_t nrm_auth_refused(const nrm_auth_t *self);

#endif
