/* nrm_json: the proto3 JSON mapping, driven by protobuf-c descriptors, for every message.
 *
 * Field names are lowerCamelCase on output (both lowerCamelCase and the proto's snake_case are
 * accepted on input); enums are their value names (on input also numbers, and short names: a
 * name without the enum's prefix, "ACCEPT" for "REFERRAL_DECISION_ACCEPT"; a wrong name is
 * refused with the valid short names listed in the message); 64-bit integers
 * are strings (numbers accepted on input); bytes are base64; fields at their default value are
 * omitted on output; a oneof writes the member that is set. */
#ifndef NRM_JSON_H
#define NRM_JSON_H

#include <jansson.h>
#include <protobuf-c/protobuf-c.h>
#include "nrm_error.h"

/* Returns a new JSON object for msg (caller owns the reference), or NULL if out of memory. */
json_t *nrm_json_from_message(const ProtobufCMessage *msg);

/* Returns a newly allocated message of type desc built from json (an object), or NULL with err
 * set to INVALID_ARGUMENT and err->field naming the offending path in snake_case dotted form
 * (for example "submit_report.profile.gender" or "needs[1]"). Unknown fields are an error.
 * The caller frees the result with protobuf_c_message_free_unpacked(msg, NULL). */
ProtobufCMessage *nrm_json_to_message(const ProtobufCMessageDescriptor *desc, const json_t *json,
                                      nrm_error_t *err);

/* The configuration section at path (section: an object; NULL or anything else is read as an
 * empty one) as a new message of type desc, its "_comment" ignored. NULL when refused, with the
 * offending field into field (field_size bytes): path, then the field inside it, as in
 * "consumer.max_attempts". The caller frees the result as for nrm_json_to_message. */
ProtobufCMessage *nrm_json_section_to_message(const ProtobufCMessageDescriptor *desc,
                                              const json_t *section, const char *path, char *field,
                                              size_t field_size);

/* The name of the enum's value number without the enum's prefix ("ACCEPT" for
 * REFERRAL_DECISION_ACCEPT), or NULL when the enum does not name number. Static. */
const char *nrm_json_enum_short_name(const ProtobufCEnumDescriptor *desc, int number);

/* Convenience: serialises msg as compact JSON text. Caller frees with free(). NULL on failure. */
char *nrm_json_dumps_message(const ProtobufCMessage *msg);

#endif
