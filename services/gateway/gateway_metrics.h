/* gateway_metrics: GET /metrics in the Prometheus text exposition format (version 0.0.4).
 *
 * Per service, from its Pong: up, database up, stream head, the counters (requests,
 * requests_failed, events_published, sessions_refused, and the service's own), each consumer's
 * checkpoint and lag, the request latency histograms by kind (nrm_service_request_duration_
 * seconds) and the service's gauges (nrm_<name>: deliveries by state from notify, waitlist
 * length by region from shelter). The gateway's own: HTTP requests by path and status, a
 * latency histogram by path, SSE clients and events sent. Thread-safe. */
#ifndef GATEWAY_METRICS_H
#define GATEWAY_METRICS_H

#include <microhttpd.h>
#include "gateway.h"

/* Returns the gateway's own counters, or NULL. */
gw_metrics_t *gw_metrics_new(void);

/* Frees them, sets *self to NULL. Safe on NULL. */
void gw_metrics_destroy(gw_metrics_t **self);

/* Counts one HTTP request on path (a bounded label: a route, never client text), its status
 * and its duration in seconds. */
void gw_metrics_request(gw_metrics_t *self, const char *path, unsigned status, double seconds);

/* Counts SSE clients (delta +1 or -1) and events sent to them. */
void gw_metrics_sse(gw_metrics_t *self, int delta_clients, int64_t events_sent);

/* Counts one more SSE client when fewer than max are connected, in one step (two streams
 * opened at once never both take the last place). False when there is no room. The client is
 * counted out with gw_metrics_sse(self, -1, ...). */
bool gw_metrics_sse_open(gw_metrics_t *self, int64_t max);

/* Answers GET /metrics (pings every service). */
enum MHD_Result gw_metrics_serve(gw_t *gw, struct MHD_Connection *conn);

#endif
