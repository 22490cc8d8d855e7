/* nrm_client: the requesting side of the api: one Request out, one Reply back.
 *
 * Used by nrmctl, tests, benchmarks and consumers that Fetch. A DEALER socket sends the
 * serialized Request as one frame; replies whose request_id is not the awaited one (late
 * answers to an earlier timed-out call) are dropped. */
#ifndef NRM_CLIENT_H
#define NRM_CLIENT_H

#include <czmq.h>
#include "nrm/v1/api.pb-c.h"
#include "nrm_auth.h"
#include "nrm_error.h"

typedef struct nrm_client_t nrm_client_t;

/* Returns a client connected to endpoint, naming agency_id in its requests (both copied), or
 * NULL. With curve (borrowed for the call) the connection is CURVE: the server knows the client
 * by curve->cert, and agency_id may then be "" (the key decides who is speaking); NULL curve is
 * plain text, for services whose security.curve is false. */
nrm_client_t *nrm_client_new(const char *endpoint, const char *agency_id, const nrm_curve_t *curve);

/* Closes the socket, frees the client, sets *self to NULL. Safe on NULL. */
void nrm_client_destroy(nrm_client_t **self);

/* Sends req and waits up to timeout_ms for its Reply. request_id is filled with a fresh UUID if
 * empty, agency_id with the client's if empty (the caller's strings are restored on return).
 * Returns the Reply (caller frees with nrm__v1__reply__free_unpacked), or NULL with err set to
 * UNAVAILABLE on timeout or INTERNAL for an unreadable answer. */
Nrm__V1__Reply *nrm_client_call(nrm_client_t *self, Nrm__V1__Request *req, int timeout_ms,
                                nrm_error_t *err);

/* Sends raw bytes as one frame and waits for any reply frame (for tests of hostile input).
 * Returns the parsed Reply or NULL on timeout or garbage. Caller frees. */
Nrm__V1__Reply *nrm_client_call_raw(nrm_client_t *self, const void *data, size_t len,
                                    int timeout_ms);

/* The DEALER socket, for asynchronous use in a reactor (borrowed). */
zsock_t *nrm_client_socket(nrm_client_t *self);

/* Sends req without waiting (fills request_id and agency_id like nrm_client_call; the filled
 * request_id is copied into request_id_out, 37 bytes). Returns 0, or -1 if it cannot be sent. */
int nrm_client_send(nrm_client_t *self, Nrm__V1__Request *req, char request_id_out[37]);

/* Receives one waiting Reply without blocking; NULL if none or unreadable. Caller frees. */
Nrm__V1__Reply *nrm_client_receive(nrm_client_t *self);

#endif
