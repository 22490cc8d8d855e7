/* nrm_stream: one service's event stream as a reader sees it (nrmctl tail and top, the gateway's
 * server-sent events), handled in order exactly once.
 *
 * A stream subscribes to the service's events socket (all topics) when created. It is
 * positioned either explicitly (nrm_stream_start_from, which catches up with Fetch) or by
 * the first live event or stream.head heartbeat it receives. From then on it handles each
 * event once, in seq order: live events at or before the last handled seq are dropped; a gap,
 * or a heartbeat whose head is ahead, is filled with Fetch before going on. Events whose topic
 * does not match the sink's prefixes are passed over (they still advance the position). Each
 * handled event is given to the sink's callback. Not thread-safe: one thread per stream. */
#ifndef NRM_STREAM_H
#define NRM_STREAM_H

#include <czmq.h>
#include <stdbool.h>
#include <stdint.h>
#include "nrm/v1/events.pb-c.h"
#include "nrm_auth.h"

/* Takes one event of a stream, in order, once (arg is the sink's). Returns 0, or -1 to stop
 * (the sink is then failed). */
typedef int (*nrm_stream_event_fn)(const Nrm__V1__Event *ev, void *arg);

/* Told why a stream could not catch up (name is the stream; arg is the sink's). */
typedef void (*nrm_stream_problem_fn)(const char *name, const char *message, void *arg);

/* Where events go, shared by all the streams of one reader. */
typedef struct {
    const char *const *prefixes;      /* topic prefixes, NULL-terminated; NULL or empty for all */
    int64_t limit;                    /* stop after handling this many events; 0 for no limit */
    int64_t handled;                  /* events handled so far */
    int64_t last_handled_ms;          /* monotonic time of the last one (or of the start) */
    bool failed;                      /* on_event refused */
    nrm_stream_event_fn on_event;     /* takes each matching event */
    nrm_stream_problem_fn on_problem; /* NULL: problems are only in nrm_stream_failure */
    void *arg;                        /* given to on_event and on_problem */
} nrm_stream_sink_t;

typedef struct nrm_stream_t nrm_stream_t;

/* Returns a new stream named name (the service), subscribed to events_endpoint and fetching
 * from api_endpoint as agency_id with curve's keys (borrowed for the call; NULL: plain text),
 * waiting timeout_ms for each Fetch; NULL if it cannot. */
nrm_stream_t *nrm_stream_new(const char *name, const char *api_endpoint,
                             const char *events_endpoint, const char *agency_id,
                             const nrm_curve_t *curve, int timeout_ms);

/* Closes the sockets, frees the stream, sets *self to NULL. Safe on NULL. */
void nrm_stream_destroy(nrm_stream_t **self);

/* The status name ("PERMISSION_DENIED", "UNAVAILABLE", ...) of the last Fetch that failed, or
 * NULL when the last one succeeded (static). */
const char *nrm_stream_failure(const nrm_stream_t *self);

/* The stream's name: the service (borrowed). */
const char *nrm_stream_name(const nrm_stream_t *self);

/* The SUB socket, for polling (borrowed). */
zsock_t *nrm_stream_sub(nrm_stream_t *self);

/* Positions the stream before from_seq and handles what the service has from there on.
 * Returns true when it reached the service's head (or the sink is done), false when the
 * service could not be asked (told to on_problem; a later heartbeat catches up). */
bool nrm_stream_start_from(nrm_stream_t *self, int64_t from_seq, nrm_stream_sink_t *sink);

/* True when the stream is positioned: *last is then the last seq handled or passed over. */
bool nrm_stream_position(const nrm_stream_t *self, int64_t *last);

/* Takes the live events waiting on the SUB socket (a bounded batch). */
void nrm_stream_on_live(nrm_stream_t *self, nrm_stream_sink_t *sink);

/* True when the sink wants no more events (limit reached or on_event failed). */
bool nrm_stream_sink_done(const nrm_stream_sink_t *sink);

#endif
