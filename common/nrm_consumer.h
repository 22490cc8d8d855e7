/* nrm_consumer: applies another service's event stream exactly once.
 *
 * It subscribes to the whole stream first, then catches up with Fetch from its checkpoint.
 * Live events that follow the checkpoint directly are batched; a gap, or a stream.head
 * heartbeat ahead of the checkpoint, triggers a Fetch of what was missed. Each batch is one
 * transaction that locks the stream's checkpoint row, skips what is already applied (another
 * instance may have been faster), calls apply for every event matching the topic prefixes, and
 * moves the checkpoint: effects and checkpoint commit together, so a crash replays the batch
 * and nothing is applied twice. A failed batch is rolled back and fetched again later, after a
 * backoff that doubles with each failure of the same event. An event whose application failed
 * max_attempts times in a row (for a reason of its own: not an unavailable database) is set
 * aside: the next batch writes it to consumer_quarantine instead of applying it, publishes
 * consumer.quarantined on the own stream, and moves the checkpoint past it (the other events
 * keep their order). RetryQuarantined (nrm_service) applies it again later.
 *
 * A batch with nothing for the consumer (no event's topic matches the prefixes) opens no
 * transaction in the one-row layout: the consumer notes in memory that it saw those seqs, and
 * the next batch with work moves the stored checkpoint past them in its own transaction (its gap
 * check accepts exactly the seqs this instance skipped after the stored value it knew). When
 * none comes within store_ms, one transaction moves the checkpoint past them, so that at rest
 * the stored checkpoint reaches the head. After a restart, seqs skipped but not stored are read
 * and skipped again. The partitioned layout opens its transactions as before.
 *
 * Partitioned consumption (spec.partitions > 1): an event belongs to partition
 * fnv1a(case_id) % partitions, and each partition has its own checkpoint row
 * (checkpoint_partitions). A batch is applied one transaction per partition that has events in
 * it; an instance takes a partition's row with FOR UPDATE SKIP LOCKED, so that two instances
 * apply different partitions of the same batch in parallel and neither waits for the other; a
 * row it finds taken is left to its holder. An event without a case_id is a barrier: it is applied
 * in a transaction that holds every partition's row (waiting for them), after what each
 * partition still lacks before it, so it keeps its order against every case. The stream's row in
 * checkpoints is moved to the lowest partition row (every event up to it is applied) after
 * each batch that catches up and on each tick; a partition that stays behind the instance's
 * position for a tick (its holder died) is fetched again and applied by the survivor. */
#ifndef NRM_CONSUMER_H
#define NRM_CONSUMER_H

#include <czmq.h>
#include "nrm/v1/events.pb-c.h"
#include "nrm_auth.h"
#include "nrm_outbox.h"

typedef struct nrm_consumer_t nrm_consumer_t;

/* Applies one event inside the batch transaction tx (tx->causation_id is the event's id).
 * Returns OK, or a failure that rolls the whole batch back. */
typedef nrm_status_t (*nrm_apply_fn)(void *ctx, nrm_tx_t *tx, const Nrm__V1__Event *ev);

/* Called once per batch after apply has seen its events, in the same transaction, before the
 * checkpoint moves: a consumer that gathers the batch's effects in memory writes them here in
 * one statement per table. Called for every batch with events not yet applied of which one
 * matches the prefixes (one-row layout; partitioned: whether or not they matched). A non-OK return
 * rolls the batch back; so does a failed apply, after which flush is not called: reset, at the
 * start of the next batch, discards what was gathered. */
typedef nrm_status_t (*nrm_flush_fn)(void *ctx, nrm_tx_t *tx);

/* Called before the first event of each batch that opens a transaction: drop anything gathered
 * for a batch that failed. */
typedef void (*nrm_reset_fn)(void *ctx);

typedef struct {
    const char *own_stream;      /* the consuming service (stream of events it emits) */
    const char *source_stream;   /* the stream consumed */
    const char *events_endpoint; /* the source's PUB socket */
    const char *api_endpoint;    /* the source's api socket, for Fetch */
    const char *agency_id;       /* who the Fetch requests come from */
    const nrm_curve_t *curve;    /* keys for both sockets (borrowed for the call); NULL: plain */
    const char *const *prefixes; /* topic prefixes to apply, NULL-terminated; NULL for all */
    nrm_apply_fn apply;
    void *ctx;
    const char *checkpoint; /* the checkpoint row's name; NULL: source_stream (one consumer of a
                               stream may apply only some topics under a name of its own) */
    int max_attempts;       /* failed attempts before an event is set aside (<= 0: the default) */
    int backoff_ms;         /* wait after a first failure, doubled each time (<= 0: the default) */
    nrm_flush_fn flush;     /* optional: end of each batch (see nrm_flush_fn) */
    nrm_reset_fn reset;     /* optional: start of each batch */
    int partitions;         /* > 1: partitioned consumption (see above); <= 1: one checkpoint row.
                               The layout stored first wins until every partition is at the same
                               sequence (the stream caught up): then the next start changes it. */
} nrm_consumer_spec_t;

#define NRM_CONSUMER_MAX_PARTITIONS 64

/* The partition of an event among partitions: a stable hash (FNV-1a, 32 bits) of its case_id
 * modulo partitions; -1 for an event without a case_id (a barrier). */
int nrm_consumer_partition(const Nrm__V1__Event *ev, int partitions);

#define NRM_CONSUMER_MAX_ATTEMPTS 5
#define NRM_CONSUMER_BACKOFF_MS 200
#define NRM_CONSUMER_STORE_MS 200

/* Returns a new consumer working on db (borrowed; shared with the service's other work on the
 * same thread). Strings of spec are copied; the prefixes array must outlive the consumer. */
nrm_consumer_t *nrm_consumer_new(nrm_db_t *db, const nrm_consumer_spec_t *spec);

/* Closes the sockets, frees the consumer, sets *self to NULL. Safe on NULL. */
void nrm_consumer_destroy(nrm_consumer_t **self);

/* Seqs skipped (nothing for the consumer) are stored after ms without a batch with work (<= 0:
 * NRM_CONSUMER_STORE_MS, the default). Call before attach. */
void nrm_consumer_set_store_ms(nrm_consumer_t *self, int ms);

/* Registers the sockets and timers on loop and starts catching up. Returns 0 or -1. */
int nrm_consumer_attach(nrm_consumer_t *self, zloop_t *loop);

/* The stream consumed, the last sequence applied (or skipped: stored within store_ms), the
 * highest head heard of, events applied (skipped ones included). */
const char *nrm_consumer_stream(const nrm_consumer_t *self);
int64_t nrm_consumer_checkpoint(const nrm_consumer_t *self);
int64_t nrm_consumer_known_head(const nrm_consumer_t *self);
int64_t nrm_consumer_applied(const nrm_consumer_t *self);
/* Events this instance set aside (consumer_quarantine). */
int64_t nrm_consumer_quarantined(const nrm_consumer_t *self);

#endif
