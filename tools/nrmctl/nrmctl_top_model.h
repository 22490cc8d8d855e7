/* nrmctl_top_model: what top counts, from the events of the streams (each given once, in
 * order per stream) and from the answers of one request round per refresh.
 *
 * - events per topic: in all, and in the last minute (by occurredAtMs);
 * - events per region: case.opened and case.linked (their region), shelter.allocated (the
 *   shelter's region), and referral.* through the region of the case they are about (a
 *   referral event seen before its case.opened is counted when the case shows up);
 * - open referrals per service: pending (created, not yet answered, expired or revoked),
 *   accepted (not yet completed or revoked) and overdue (pending past dueMs);
 * - shelter occupancy per region and the waitlist (GetOccupancy {});
 * - deliveries: the failed ones (ListDeliveries {state: "failed"}), notification.delivered
 *   and notification.failed in the last minute.
 *
 * Case and referral ids are kept to attribute events, never shown: the snapshot holds counts
 * only. */
#ifndef NRMCTL_TOP_MODEL_H
#define NRMCTL_TOP_MODEL_H

#include <jansson.h>
#include <stdint.h>
#include "nrm/v1/api.pb-c.h"
#include "nrm/v1/events.pb-c.h"

#define NRMCTL_TOP_WINDOW_MS 60000 /* "last minute" */

typedef struct nrmctl_top_model_t nrmctl_top_model_t;

/* Returns an empty model, or NULL when out of memory. */
nrmctl_top_model_t *nrmctl_top_model_new(void);

/* Frees the model and sets *self_p to NULL. Safe on NULL. */
void nrmctl_top_model_destroy(nrmctl_top_model_t **self_p);

/* Counts one event; an nrmctl_event_fn whose arg is the model. Returns 0, or -1 when out of
 * memory. */
int nrmctl_top_model_add(const Nrm__V1__Event *ev, void *arg);

/* Takes shelter's reply to GetOccupancy {} (NULL: none came in time) for the next snapshots. */
void nrmctl_top_model_set_occupancy(nrmctl_top_model_t *self, const Nrm__V1__Reply *reply);

/* Takes notify's reply to ListDeliveries {state: "failed"} (NULL: none came in time). */
void nrmctl_top_model_set_failed(nrmctl_top_model_t *self, const Nrm__V1__Reply *reply);

/* Says that service is not configured, so its answer is not expected ("shelter" or "notify"). */
void nrmctl_top_model_not_configured(nrmctl_top_model_t *self, const char *service);

/* Returns the snapshot at now_ms (wall clock) as a new JSON object (caller decrefs), or NULL:
 * {"topics": {TOPIC: {"total", "lastMinute"}}, "regions": {REGION: N},
 *  "openReferrals": {SERVICE: {"pending", "accepted", "overdue"}},
 *  "shelters": {"regions": {REGION: {"shelters", "capacity", "occupied", "held", "free"}},
 *               "total": {...the same...}, "waitlist": N} or {"error": WHY},
 *  "deliveries": {"failed": N or null, "failedError": WHY, "deliveredPerMinute",
 *                 "failedPerMinute"}}
 * (per minute: notification.delivered and notification.failed events of the last minute)
 * SERVICE is a ServiceType value name ("SERVICE_TYPE_MEDICAL"). */
json_t *nrmctl_top_model_snapshot(nrmctl_top_model_t *self, int64_t now_ms);

#endif
