/* nrm_publisher: gives committed outbox events their dense sequence and publishes them.
 *
 * Each instance of a service runs one publisher on its own database connection. The instance
 * that holds the stream's advisory lock is the sequencer: it numbers committed, unnumbered rows
 * 1, 2, 3, ... under the row lock of stream_head (so even two sequencers could not leave a gap
 * or a duplicate). Every instance publishes every numbered event on its PUB socket as
 * [topic][Event], in order, and a stream.head heartbeat with the last sequence it published.
 * It wakes on NOTIFY from committing transactions, with a periodic poll as a fallback. When
 * the lock holder dies, its session ends and another instance takes the lock over. */
#ifndef NRM_PUBLISHER_H
#define NRM_PUBLISHER_H

#include <czmq.h>
#include <stdbool.h>
#include <stdint.h>

typedef struct nrm_publisher_t nrm_publisher_t;

/* Returns a new publisher for schema's outbox, publishing stream's events on pub (borrowed:
 * it must outlive the publisher). heartbeat_ms is the stream.head period. */
nrm_publisher_t *nrm_publisher_new(const char *conninfo, const char *schema, const char *stream,
                                   zsock_t *pub, int heartbeat_ms);

/* Publishes on pub (borrowed, same rule) from now on: the events socket was bound again. NULL
 * (before the old socket is destroyed): publishes nothing, and heartbeats none, until set. */
void nrm_publisher_set_socket(nrm_publisher_t *self, zsock_t *pub);

/* Stops the publisher (its timer ends: call before destroying the loop it is attached to),
 * closes its connection, sets *self to NULL. Safe on NULL. */
void nrm_publisher_destroy(nrm_publisher_t **self);

/* Registers the publisher's timers and database socket on loop. Returns 0 or -1. */
int nrm_publisher_attach(nrm_publisher_t *self, zloop_t *loop);

/* Last sequence this instance published. */
int64_t nrm_publisher_head(const nrm_publisher_t *self);

/* Events published by this instance since start. */
int64_t nrm_publisher_count(const nrm_publisher_t *self);

/* True while this instance holds the sequencer lock. */
bool nrm_publisher_is_sequencer(const nrm_publisher_t *self);

/* Publishes a stream.head heartbeat now (also done every heartbeat_ms). */
void nrm_publisher_heartbeat(nrm_publisher_t *self);

#endif
