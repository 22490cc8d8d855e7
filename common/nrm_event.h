/* nrm_event: the Event envelope: topics, packing, unpacking. */
#ifndef NRM_EVENT_H
#define NRM_EVENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "nrm/v1/api.pb-c.h"
#include "nrm/v1/events.pb-c.h"

#define NRM_TOPIC_STREAM_HEAD "stream.head"

/* The dotted topic of an event body ("case.opened", ...), or NULL for an unset body. Static. */
const char *nrm_event_topic_of(Nrm__V1__Event__BodyCase body);

/* The body case of a topic, or NRM__V1__EVENT__BODY__NOT_SET. */
Nrm__V1__Event__BodyCase nrm_event_body_of(const char *topic);

/* Serialises ev into a malloc'd buffer (caller frees; never NULL); *len gets its size. */
uint8_t *nrm_event_pack(const Nrm__V1__Event *ev, size_t *len);

/* Parses an Event; NULL for bytes that are not one. Caller frees with
 * nrm__v1__event__free_unpacked. */
Nrm__V1__Event *nrm_event_unpack(const void *data, size_t len);

/* True when topic starts with one of the prefixes (a NULL-terminated list; NULL or an empty
 * list match everything). */
bool nrm_topic_matches(const char *topic, const char *const *prefixes);

/* Returns a malloc'd copy of a stored event (serialized with seq 0) with its seq set, by
 * appending field 3 as protobuf's merge rules allow (caller frees); *out_len gets its size. */
uint8_t *nrm_event_with_seq(const uint8_t *stored, size_t len, int64_t seq, size_t *out_len);
#endif
