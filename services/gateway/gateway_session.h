/* gateway_session: sign-in by agency and access token, sessions in memory, CSRF tokens.
 *
 * gateway.logins lists [{agency_id, token_hash}] with libsodium crypto_pwhash_str hashes (nrmctl
 * gateway-hash). A session is a random 256-bit id (the nrm_session cookie) bound to one agency
 * and one CSRF token, valid gateway.session_ttl_s (8 h by default) from sign-in. Failed sign-ins
 * are limited per agency (GW_LOGIN_FAILURES per GW_LOGIN_WINDOW_S, the attempts being checked
 * counted with them), every agency id without a login sharing one count; only a few tokens are
 * checked at once (each check takes crypto_pwhash's 64 MiB). Thread-safe. */
#ifndef GATEWAY_SESSION_H
#define GATEWAY_SESSION_H

#include <stdbool.h>
#include <stdint.h>
#include "nrm_config.h"

#define GW_TOKEN_TXT 65 /* 32 random bytes in hex, and the NUL */
#define GW_AGENCY_MAX 128
#define GW_LOGIN_FAILURES 5
#define GW_LOGIN_WINDOW_S 60

typedef struct gw_sessions_t gw_sessions_t;

typedef enum {
    GW_LOGIN_OK,
    GW_LOGIN_REFUSED, /* wrong token or unknown agency */
    GW_LOGIN_LIMITED, /* too many failures (and checks in flight) for this agency */
    GW_LOGIN_BUSY     /* as many tokens as allowed are being checked: try again in a second */
} gw_login_t;

/* Returns the session table (sessions last ttl_s seconds), or NULL. */
gw_sessions_t *gw_sessions_new(int64_t ttl_s);

/* Frees every session, sets *self to NULL. Safe on NULL. */
void gw_sessions_destroy(gw_sessions_t **self);

/* Checks token against agency's hash in config (gateway.logins, borrowed for the call). On
 * success opens a session and writes its id and CSRF token. An unknown agency costs the same
 * time as a wrong token. LIMITED and BUSY are answered before any check. */
gw_login_t gw_sessions_login(gw_sessions_t *self, nrm_config_t *config, const char *agency_id,
                             const char *token, char sid[GW_TOKEN_TXT], char csrf[GW_TOKEN_TXT]);

/* True when sid is a live session: copies its agency and CSRF token. */
bool gw_sessions_find(gw_sessions_t *self, const char *sid, char agency[GW_AGENCY_MAX],
                      char csrf[GW_TOKEN_TXT]);

/* True while sid is a live session of agency (not signed out, not expired). *hint is the
 * caller's, -1 at first: where the session was last found, so that a caller asking again and
 * again (an event stream) costs one comparison while the session stays where it is. */
bool gw_sessions_alive(gw_sessions_t *self, const char *sid, const char *agency, int *hint);

/* Ends the session sid (nothing when unknown). */
void gw_sessions_end(gw_sessions_t *self, const char *sid);

/* True when a and b are equal strings, in time that depends only on their lengths. */
bool gw_equal_secret(const char *a, const char *b);

#endif
