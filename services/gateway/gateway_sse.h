/* gateway_sse: GET /api/v1/events?topics=P1,P2 as Server-Sent Events.
 *
 * A hub thread reads every configured service's stream once (common/nrm_stream: in order,
 * exactly once, as service:gateway) into a ring of the last GW_SSE_RING events per stream,
 * already in proto3 JSON; each SSE connection (its own thread) sends from the rings what it
 * has not sent yet. Each event goes out as
 *     id: intake:12,routing:7,shelter:3     (the position of every stream, after this event)
 *     event: referral.accepted
 *     data: {...the Event...}
 * so one Last-Event-ID resumes every stream: what is older than a ring is fetched from the
 * service (Fetch, as the signed-in agency), so a reconnecting browser misses nothing and gets
 * nothing twice. Without Last-Event-ID a stream starts at its head. Heartbeat comments every
 * GW_SSE_HEARTBEAT_S; at most gateway.max_sse_clients connections; a live client that falls
 * further behind than the ring is dropped (it reconnects and catches up with Fetch). */
#ifndef GATEWAY_SSE_H
#define GATEWAY_SSE_H

#include <microhttpd.h>
#include "gateway.h"

#define GW_SSE_RING 4096
#define GW_SSE_HEARTBEAT_S 15

/* Starts the hub thread of gw's services. Returns it, or NULL. */
gw_hub_t *gw_hub_start(gw_t *gw);

/* Stops the thread; open SSE connections end within a poll (the hub stays readable until
 * gw_hub_destroy). Safe on NULL. */
void gw_hub_halt(gw_hub_t *self);

/* Halts and frees the hub, sets *self to NULL: after the HTTP daemon has stopped. Safe on NULL. */
void gw_hub_destroy(gw_hub_t **self);

/* Answers GET /api/v1/events for agency, signed in as session sid (copied): 403 unless it is an
 * event reader, 503 when max_sse_clients are connected, else the stream, which ends once the
 * session ends or the agency stops being an event reader (a reload). */
enum MHD_Result gw_sse_open(gw_t *gw, struct MHD_Connection *conn, const char *sid,
                            const char *agency);

#endif
