/* nrm_quarantine: the events a service's consumers set aside (nrm_consumer, table
 * consumer_quarantine of bus migration 003) and the requests every service answers about them:
 * ListQuarantine and RetryQuarantined (coordinator only, nrm_authz). */
#ifndef NRM_QUARANTINE_H
#define NRM_QUARANTINE_H

#include "nrm_consumer.h"
#include "nrm_server.h"

/* A consumer as RetryQuarantined replays an event through it: reset (may be NULL), apply, then
 * flush (may be NULL), as one batch of one event would. */
typedef struct {
    nrm_apply_fn apply;
    nrm_flush_fn flush;
    nrm_reset_fn reset;
    void *ctx;
    const char *const *prefixes;
} nrm_quarantine_consumer_t;

/* Finds the consumer whose checkpoint is name (the stream it consumes, or intake/directory:
 * consumer_quarantine.consumer) and fills *consumer. Returns false when this service has no
 * such consumer. */
typedef bool (*nrm_quarantine_find_fn)(void *ctx, const char *name,
                                       nrm_quarantine_consumer_t *consumer);

/* Registers the statements on db. */
void nrm_quarantine_prepare(nrm_db_t *db);

/* How many events are set aside (-1 when the database cannot say). */
int64_t nrm_quarantine_count(nrm_db_t *db);

/* ListQuarantine: newest first, at most max (default 50, at most 500), and the total. */
nrm_status_t nrm_quarantine_list(nrm_call_t *call);

/* RetryQuarantined: takes the row out and applies its event in the request's transaction with
 * the consumer that set it aside (find). When that fails, the request fails (the row stays) with
 * the handler's status; an unknown id is NOT_FOUND, a consumer that is gone or no longer takes
 * the event's topic FAILED_PRECONDITION (retry_quarantined.id). */
nrm_status_t nrm_quarantine_retry(nrm_call_t *call, nrm_quarantine_find_fn find, void *find_ctx);

#endif
