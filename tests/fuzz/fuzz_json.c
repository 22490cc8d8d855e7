/* libFuzzer target: the proto3 JSON mapping (common/nrm_json) both ways. The first byte picks a
 * message type and a direction:
 *   even: the rest is JSON text, read into that message with nrm_json_to_message; a message
 *         that is accepted must be written back (nrm_json_from_message) and read again to the
 *         same message (equal serialisations), or the target aborts;
 *   odd:  the rest is that message in protobuf's binary form; one that decodes must be written
 *         as JSON, read back, and written again as the same JSON (the binary form may hold
 *         what JSON does not carry: unknown fields, strings that are not UTF-8, which are
 *         written with U+FFFD).
 * What nrmctl, the gateway and the configuration sections feed the mapping comes from outside. */
#include "nrm/v1/api.pb-c.h"
#include "nrm/v1/events.pb-c.h"
#include "nrm_json.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const ProtobufCMessageDescriptor *const s_types[] = {
    &nrm__v1__request__descriptor,
    &nrm__v1__reply__descriptor,
    &nrm__v1__event__descriptor,
    &nrm__v1__submit_report__descriptor,
    &nrm__v1__upsert_subscription__descriptor,
    &nrm__v1__upsert_shelter__descriptor,
    &nrm__v1__case_view__descriptor,
    &nrm__v1__upsert_goal__descriptor,
};
#define S_TYPES (sizeof s_types / sizeof s_types[0])

/* Packs msg into a new buffer (caller frees); *len receives its size. */
static uint8_t *s_pack(const ProtobufCMessage *msg, size_t *len)
{
    *len = protobuf_c_message_get_packed_size(msg);
    uint8_t *buf = malloc(*len ? *len : 1);
    if (!buf)
        abort();
    protobuf_c_message_pack(msg, buf);
    return buf;
}

/* msg -> JSON -> message again: must succeed and give the same JSON; with exact, also the same
 * serialisation. */
static void s_round_trip(const ProtobufCMessage *msg, bool exact)
{
    json_t *json = nrm_json_from_message(msg);
    if (!json)
        abort();
    nrm_error_t err;
    ProtobufCMessage *again = nrm_json_to_message(msg->descriptor, json, &err);
    if (!again) {
        char *text = json_dumps(json, JSON_COMPACT);
        fprintf(stderr, "fuzz_json: %s written as %s is refused at %s: %s\n", msg->descriptor->name,
                text ? text : "?", err.field, err.message);
        abort();
    }
    json_t *json_again = nrm_json_from_message(again);
    if (!json_again || !json_equal(json, json_again)) {
        fprintf(stderr, "fuzz_json: %s is not written again as the same JSON\n",
                msg->descriptor->name);
        abort();
    }
    json_decref(json_again);
    size_t len_a, len_b;
    uint8_t *a = s_pack(msg, &len_a), *b = s_pack(again, &len_b);
    if (exact && (len_a != len_b || memcmp(a, b, len_a) != 0)) {
        char *text = json_dumps(json, JSON_COMPACT);
        fprintf(stderr, "fuzz_json: %s does not survive JSON: %s\n", msg->descriptor->name,
                text ? text : "?");
        abort();
    }
    free(a);
    free(b);
    protobuf_c_message_free_unpacked(again, NULL);
    json_decref(json);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    const ProtobufCMessageDescriptor *type = s_types[(data[0] >> 1) % S_TYPES];
    const uint8_t *rest = data + 1;
    size_t len = size - 1;
    if (data[0] & 1) {
        ProtobufCMessage *msg = protobuf_c_message_unpack(type, NULL, len, rest);
        if (msg) {
            s_round_trip(msg, false);
            protobuf_c_message_free_unpacked(msg, NULL);
        }
        return 0;
    }
    json_error_t jerr;
    json_t *json = json_loadb((const char *)rest, len, JSON_DECODE_ANY, &jerr);
    if (!json)
        return 0;
    nrm_error_t err;
    ProtobufCMessage *msg = nrm_json_to_message(type, json, &err);
    if (msg) {
        s_round_trip(msg, true);
        protobuf_c_message_free_unpacked(msg, NULL);
    }
    json_decref(json);
    return 0;
}
