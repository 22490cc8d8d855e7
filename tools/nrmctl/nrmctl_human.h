/* nrmctl_human: one line of text per event for people (tail --human).
 *
 * A line is "HH:MM:SS STREAM TOPIC CASE DETAILS": the local time the event occurred, the stream
 * (padded to the width given), the topic, the first 8 characters of the case id ("-" without
 * one) and the essentials of the event, by a formatter per topic; a topic without one shows its
 * body as compact JSON. Enum values are shown without their enum's prefix, times of the same day
 * as HH:MM, others with their date. Only categorical fields and ids are shown, as on the
 * streams themselves. */
#ifndef NRMCTL_HUMAN_H
#define NRMCTL_HUMAN_H

#include "nrm/v1/events.pb-c.h"

/* Characters of an id shown (case, referral, plan, delivery ids). */
#define NRMCTL_HUMAN_ID_CHARS 8

/* Returns the line of ev without a newline (malloc'd, caller frees), the stream (ev's own, else
 * stream) padded to stream_width; NULL when out of memory. */
char *nrmctl_human_line(const Nrm__V1__Event *ev, const char *stream, int stream_width);

#endif
