/* gateway_api: POST /api/v1/{service}/{request_field}, a Request in proto3 JSON sent to the
 * service on behalf of the signed-in agency, and the Reply back; and the Ping of /readyz. */
#ifndef GATEWAY_API_H
#define GATEWAY_API_H

#include <microhttpd.h>
#include "gateway.h"
#include "nrm/v1/api.pb-c.h"

/* Answers one API call: body is the request message as JSON text (len bytes, may be empty),
 * idempotency_key the Idempotency-Key header or NULL. 404 unless gw_api_known. */
enum MHD_Result gw_api_call(gw_t *gw, struct MHD_Connection *conn, const char *agency,
                            const char *service, const char *field, const char *body, size_t len,
                            const char *idempotency_key);

/* True when service is configured and field a request body the API forwards (any member of
 * Request.body but ping and fetch: /readyz, /metrics and /api/v1/events do those). */
bool gw_api_known(gw_t *gw, const char *service, const char *field);

/* Sends req to service as agency_id ("" for the gateway itself) and returns the Reply (caller
 * frees), or NULL when the service does not answer within timeout_ms. */
Nrm__V1__Reply *gw_api_send(gw_t *gw, const gw_service_t *service, Nrm__V1__Request *req,
                            const char *agency_id, int timeout_ms);

/* The HTTP status of a Reply status. */
unsigned gw_api_http_status(int status);

/* GET /readyz: 200 when every service answers Ping with database_ok, else 503 naming them. */
enum MHD_Result gw_api_ready(gw_t *gw, struct MHD_Connection *conn);

#endif
