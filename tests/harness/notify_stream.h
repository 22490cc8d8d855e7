/* A stand-in for another service's event stream (routing, shelter, ...) in the notification
 * tests, so that every topic can be exercised before those services exist or without their
 * rules: it binds the api (ROUTER) and events (PUB) endpoints the harness gave that service,
 * publishes each event the test emits, answers Fetch of its stream from them, and publishes a
 * stream.head heartbeat. It runs in a thread of the test process. */
#ifndef NOTIFY_STREAM_H
#define NOTIFY_STREAM_H

#include <stdint.h>
#include "nrm/v1/events.pb-c.h"

typedef struct notify_stream_t notify_stream_t;

/* Returns a stream named stream served on the api and events endpoints; aborts on failure. */
notify_stream_t *notify_stream_new(const char *stream, const char *api, const char *events);

/* Stops serving, frees, sets *self to NULL. Safe on NULL. */
void notify_stream_destroy(notify_stream_t **self);

/* Appends ev as the stream's next event and publishes it. The stored copy gets stream, topic,
 * seq, an event_id when ev has none and occurred_at_ms = now when 0; ev is left unchanged.
 * Returns the event's seq. */
int64_t notify_stream_emit(notify_stream_t *self, const Nrm__V1__Event *ev);

/* Like emit, but only stores the event: it is not published live (a lost message), so a
 * consumer learns of it from the next heartbeat and a Fetch. */
int64_t notify_stream_store(notify_stream_t *self, const Nrm__V1__Event *ev);

#endif
