/* gateway_http: the HTTP routes (see README.md, The API) on libmicrohttpd. */
#ifndef GATEWAY_HTTP_H
#define GATEWAY_HTTP_H

#include <microhttpd.h>
#include "gateway.h"

/* Starts the HTTP daemon of gw on services.gateway.http (TLS when a certificate is configured;
 * refused on a non-loopback address without TLS). Returns it, or NULL after logging why. */
struct MHD_Daemon *gw_http_start(gw_t *gw);

/* Queues a JSON response (body taken, may be NULL for {}) with the common security headers. */
enum MHD_Result gw_http_json(struct MHD_Connection *conn, unsigned status, json_t *body);

/* Adds the headers every response carries (CSP, nosniff, no framing). */
void gw_http_secure_headers(struct MHD_Response *response);

/* The live session of the request, or false (agency and csrf written on success). */
bool gw_http_session(gw_t *gw, struct MHD_Connection *conn, char agency[128], char csrf[65]);

#endif
