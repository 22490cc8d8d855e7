/* nrmctl_ping: requests sent to several services at once, each answered or timed out within
 * one common deadline; Ping is the usual one (ping, status), any Request may be sent (status
 * and top ask shelter and notify at the same time as they ping).
 *
 * A call names its service and request; nrmctl_call_each opens one api client per call, sends
 * every request, then waits until each has its reply or the deadline passes. Replies stay in
 * the calls until nrmctl_calls_clear frees them. */
#ifndef NRMCTL_PING_H
#define NRMCTL_PING_H

#include <stddef.h>
#include "nrm_client.h"
#include "nrmctl_common.h"

#define NRMCTL_UUID_SIZE 37 /* a UUID as text, with its terminating NUL */

/* One request to one service. */
typedef struct {
    const char *service;               /* in: the service, reached at services.<name>.api_connect */
    Nrm__V1__Request *request;         /* in: borrowed; requestId is generated when empty */
    Nrm__V1__Reply *reply;             /* out: the reply, or NULL when none came in time */
    nrm_client_t *client;              /* private: the api client while the call is in flight */
    char request_id[NRMCTL_UUID_SIZE]; /* private: the id the reply must carry */
} nrmctl_call_t;

/* Sends every call's request to its service at once and waits up to timeout_ms in all for the
 * replies (calls[i].reply; NULL for those that did not come). The configuration must be
 * loaded. Returns NRMCTL_EXIT_OK, or NRMCTL_EXIT_USAGE after printing which service has no
 * usable endpoint (then nothing was sent). */
int nrmctl_call_each(nrmctl_t *ctl, nrmctl_call_t *calls, size_t count, int timeout_ms);

/* Frees the replies of the calls and sets them to NULL. Safe on calls without reply. */
void nrmctl_calls_clear(nrmctl_call_t *calls, size_t count);

/* Pings the service of every call at once (each call's request is set to a Ping), waiting
 * ctl->timeout_ms in all. Returns what nrmctl_call_each returns. */
int nrmctl_ping_each(nrmctl_t *ctl, nrmctl_call_t *calls, size_t count);

/* The exit code a reply to a Ping calls for: NRMCTL_EXIT_OK for a Pong, NRMCTL_EXIT_STATUS
 * for a non-OK reply, NRMCTL_EXIT_UNAVAILABLE for none. */
int nrmctl_ping_exit(const Nrm__V1__Reply *reply);

#endif
