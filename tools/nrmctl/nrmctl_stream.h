/* nrmctl_stream: one service's event stream as tail sees it, handled in order exactly once.
 *
 * A stream subscribes to the service's events socket (all topics) when created. It is
 * positioned either explicitly (nrmctl_stream_start_from, which catches up with Fetch) or by
 * the first live event or stream.head heartbeat it receives. From then on it handles each
 * event once, in seq order: live events at or before the last handled seq are dropped; a gap,
 * or a heartbeat whose head is ahead, is filled with Fetch before going on. Events whose topic
 * does not match the sink's prefixes are passed over (they still advance the position). Each
 * handled event is printed as a JSON line (tail), or given to the sink's callback (top). */
#ifndef NRMCTL_STREAM_H
#define NRMCTL_STREAM_H

#include <czmq.h>
#include <stdbool.h>
#include <stdint.h>
#include "nrm/v1/events.pb-c.h"
#include "nrmctl_common.h"

/* Takes one event of a stream, in order, once (arg is the sink's). Returns 0, or -1 to stop
 * (the sink is then failed). */
typedef int (*nrmctl_event_fn)(const Nrm__V1__Event *ev, void *arg);

/* Where events go, shared by all the streams of one tail (or top). */
typedef struct {
    const char *const *prefixes; /* topic prefixes, NULL-terminated; NULL or empty for all */
    int64_t limit;               /* stop after printing this many events; 0 for no limit */
    int64_t printed;             /* events printed so far */
    int64_t last_print_ms;       /* monotonic time of the last print (or of the start) */
    bool failed;                 /* stdout could not be written, or on_event refused */
    nrmctl_event_fn on_event;    /* NULL: print each event as a line of proto3 JSON */
    void *arg;                   /* given to on_event */
} nrmctl_sink_t;

typedef struct nrmctl_stream_t nrmctl_stream_t;

/* Returns a new stream named name (the service), subscribed to events_endpoint and fetching
 * from api_endpoint as agency_id with curve's keys (borrowed for the call; NULL: plain text),
 * waiting timeout_ms for each Fetch; NULL if it cannot. */
nrmctl_stream_t *nrmctl_stream_new(const char *name, const char *api_endpoint,
                                   const char *events_endpoint, const char *agency_id,
                                   const nrm_curve_t *curve, int timeout_ms);

/* Opens the streams of a command (command names it in messages): of each named service
 * (services[0 .. n_services), which must have both endpoints), or when none is named, of the
 * default five that have them. streams has room for n_services + NRMCTL_SERVICE_COUNT;
 * *n_streams counts those opened (the caller destroys them, even after an error). Returns 0,
 * or NRMCTL_EXIT_USAGE after printing why. The configuration must be loaded. */
int nrmctl_streams_open(nrmctl_t *ctl, const char *command, const char *const *services,
                        int n_services, nrmctl_stream_t **streams, int *n_streams);

/* Closes the sockets, frees the stream, sets *self to NULL. Safe on NULL. */
void nrmctl_stream_destroy(nrmctl_stream_t **self);

/* The status name ("PERMISSION_DENIED", "UNAVAILABLE", ...) of the last Fetch that failed, or
 * NULL when the last one succeeded (static). */
const char *nrmctl_stream_failure(const nrmctl_stream_t *self);

/* The stream's name: the service (borrowed). */
const char *nrmctl_stream_name(const nrmctl_stream_t *self);

/* The SUB socket, for polling (borrowed). */
zsock_t *nrmctl_stream_sub(nrmctl_stream_t *self);

/* Positions the stream before from_seq and handles what the service has from there on.
 * Returns true when it reached the service's head (or the sink is done), false when the
 * service could not be asked (said on stderr; a later heartbeat catches up). */
bool nrmctl_stream_start_from(nrmctl_stream_t *self, int64_t from_seq, nrmctl_sink_t *sink);

/* Takes the live events waiting on the SUB socket (a bounded batch). */
void nrmctl_stream_on_live(nrmctl_stream_t *self, nrmctl_sink_t *sink);

/* True when the sink wants no more events (limit reached or output failed). */
bool nrmctl_sink_done(const nrmctl_sink_t *sink);

#endif
