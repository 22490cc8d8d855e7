/* nrm_json: the proto3 JSON mapping over protobuf-c descriptors (see nrm_json.h).
 *
 * Output walks a message's descriptor and emits every field that is present; input walks the
 * descriptor of the wanted type, looks each field up in the JSON object under its snake_case
 * and lowerCamelCase names, and builds a message that protobuf_c_message_free_unpacked() can
 * free. Error messages never quote the offending value, which may be identifying data. */
#include "nrm_alloc.h"
#include "nrm_json.h"
#include "nrm_alloc.h"

#include <ctype.h>
#include <errno.h>
#include <float.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

/* Deepest message nesting accepted on input; the top-level message is depth 1. */
#define S_MAX_DEPTH 32
/* Longest enum value name built from a short one (prefix and name). */
#define S_ENUM_NAME_MAX 128
/* Longest wrong enum value name quoted in an error message. */
#define S_QUOTE_MAX 40
/* Room kept at the end of the list of valid names for "...)" and the NUL. */
#define S_LIST_TAIL 5

/* The proto3 JSON spellings of the non-finite floating-point values. */
static const char s_nan[] = "NaN";
static const char s_infinity[] = "Infinity";
static const char s_minus_infinity[] = "-Infinity";

/* Base64 alphabets accepted on input, the canonical one (emitted on output) first. */
static const int s_base64_variants[] = {
    sodium_base64_VARIANT_ORIGINAL, sodium_base64_VARIANT_ORIGINAL_NO_PADDING,
    sodium_base64_VARIANT_URLSAFE, sodium_base64_VARIANT_URLSAFE_NO_PADDING};

/* State of one nrm_json_to_message call: where the parser is, and where errors go. */
typedef struct {
    nrm_error_t *err;
    char path[NRM_ERROR_FIELD_MAX]; /* snake_case dotted path of the value being read */
    int depth;                      /* messages currently open */
} s_parser_t;

/* Returns the address of a member at offset bytes into msg. Does not allocate. */
static void *s_member(const ProtobufCMessage *msg, unsigned offset)
{
    return (char *)msg + offset;
}

/* Size of one value of each type as protobuf-c stores it in a message or a repeated array. */
/* clang-format off */
static const size_t s_value_sizes[] = {
    [PROTOBUF_C_TYPE_INT32] = sizeof(int32_t),    [PROTOBUF_C_TYPE_SINT32] = sizeof(int32_t),
    [PROTOBUF_C_TYPE_SFIXED32] = sizeof(int32_t), [PROTOBUF_C_TYPE_UINT32] = sizeof(uint32_t),
    [PROTOBUF_C_TYPE_FIXED32] = sizeof(uint32_t), [PROTOBUF_C_TYPE_INT64] = sizeof(int64_t),
    [PROTOBUF_C_TYPE_SINT64] = sizeof(int64_t),   [PROTOBUF_C_TYPE_SFIXED64] = sizeof(int64_t),
    [PROTOBUF_C_TYPE_UINT64] = sizeof(uint64_t),  [PROTOBUF_C_TYPE_FIXED64] = sizeof(uint64_t),
    [PROTOBUF_C_TYPE_FLOAT] = sizeof(float),      [PROTOBUF_C_TYPE_DOUBLE] = sizeof(double),
    [PROTOBUF_C_TYPE_BOOL] = sizeof(protobuf_c_boolean),
    [PROTOBUF_C_TYPE_ENUM] = sizeof(int),
    [PROTOBUF_C_TYPE_STRING] = sizeof(char *),
    [PROTOBUF_C_TYPE_BYTES] = sizeof(ProtobufCBinaryData),
    [PROTOBUF_C_TYPE_MESSAGE] = sizeof(ProtobufCMessage *),
};
/* clang-format on */

/* Returns the next character of the lowerCamelCase spelling of a snake_case name, advancing
 * *snake past what it consumed; '\0' at the end. This is protoc's json_name rule: each '_' is
 * dropped and the letter after it upper-cased. */
static char s_camel_next(const char **snake)
{
    bool upper = false;
    for (; **snake == '_'; (*snake)++)
        upper = true;
    char c = **snake;
    if (c)
        (*snake)++;
    return upper && c >= 'a' && c <= 'z' ? (char)(c - 'a' + 'A') : c;
}

/* Returns the lowerCamelCase spelling of a snake_case name, newly allocated; NULL if out of
 * memory. */
static char *s_camel_dup(const char *snake)
{
    char *camel = nrm_xmalloc(strlen(snake) + 1);
    for (char *out = camel; (*out++ = s_camel_next(&snake));)
        ;
    return camel;
}

/* Returns whether key is the lowerCamelCase spelling of the snake_case name. Does not allocate. */
static bool s_camel_equals(const char *snake, const char *key)
{
    char c;
    do {
        c = s_camel_next(&snake);
        if (*key++ != c)
            return false;
    } while (c);
    return true;
}

/* --- Output: message -> JSON --- */

/* Defined below: the JSON object for a (sub)message, new reference. */
static json_t *s_message_to_json(const ProtobufCMessage *msg);

/* Returns a JSON real for d, or the proto3 string for NaN and the infinities; new reference. */
static json_t *s_double_to_json(double d)
{
    if (isnan(d))
        return json_string(s_nan);
    if (isinf(d))
        return json_string(d > 0 ? s_infinity : s_minus_infinity);
    return json_real(d);
}

/* Returns standard padded base64 of data as a JSON string, new reference; NULL if out of
 * memory. */
static json_t *s_bytes_to_json(const ProtobufCBinaryData *data)
{
    size_t size = sodium_base64_encoded_len(data->len, sodium_base64_VARIANT_ORIGINAL);
    char *text = nrm_xmalloc(size);
    sodium_bin2base64(text, size, data->data, data->len, sodium_base64_VARIANT_ORIGINAL);
    json_t *json = json_string(text);
    free(text);
    return json;
}

/* Returns the enum value's name as a JSON string, or its number if the enum does not name it;
 * new reference. */
static json_t *s_enum_to_json(const ProtobufCEnumDescriptor *desc, int number)
{
    const ProtobufCEnumValue *value = protobuf_c_enum_descriptor_get_value(desc, number);
    return value ? json_string(value->name) : json_integer(number);
}

/* Length of the well-formed UTF-8 sequence at p (RFC 3629: no overlong forms, no surrogates,
 * nothing above U+10FFFF), or 0 when the byte at p does not start one. */
static size_t s_utf8_sequence(const unsigned char *p)
{
    if (p[0] < 0x80)
        return 1;
    size_t n = p[0] >= 0xC2 && p[0] <= 0xDF   ? 2
               : p[0] >= 0xE0 && p[0] <= 0xEF ? 3
               : p[0] >= 0xF0 && p[0] <= 0xF4 ? 4
                                              : 0;
    for (size_t i = 1; i < n; i++)
        if ((p[i] & 0xC0) != 0x80)
            return 0;
    if ((n == 3 && p[0] == 0xE0 && p[1] < 0xA0) || (n == 3 && p[0] == 0xED && p[1] > 0x9F) ||
        (n == 4 && p[0] == 0xF0 && p[1] < 0x90) || (n == 4 && p[0] == 0xF4 && p[1] > 0x8F))
        return 0;
    return n;
}

/* A JSON string for a proto string field, new reference. protobuf-c decodes strings without
 * checking that they are UTF-8, as proto3 requires and JSON must be: a byte that does not
 * start a well-formed sequence is written as U+FFFD (the replacement character) rather than
 * failing the whole message. */
static json_t *s_string_to_json(const char *text)
{
    json_t *json = json_string(text);
    if (json || !text)
        return json;
    size_t len = strlen(text);
    char *clean = nrm_xmalloc(3 * len + 1), *out = clean;
    const unsigned char *p = (const unsigned char *)text;
    while (*p) {
        size_t n = s_utf8_sequence(p);
        if (n == 0) {
            memcpy(out, "\xEF\xBF\xBD", 3);
            out += 3;
            p++;
        } else {
            memcpy(out, p, n);
            out += n;
            p += n;
        }
    }
    *out = '\0';
    json = json_string(clean);
    free(clean);
    return json;
}

/* Returns the JSON form of one value of field's type stored at member; new reference, or NULL
 * if out of memory or a string is not valid UTF-8 (which protobuf forbids). */
static json_t *s_value_to_json(const ProtobufCFieldDescriptor *field, const void *member)
{
    switch (field->type) {
    case PROTOBUF_C_TYPE_INT32:
    case PROTOBUF_C_TYPE_SINT32:
    case PROTOBUF_C_TYPE_SFIXED32:
        return json_integer(*(const int32_t *)member);
    case PROTOBUF_C_TYPE_UINT32:
    case PROTOBUF_C_TYPE_FIXED32:
        return json_integer(*(const uint32_t *)member);
    case PROTOBUF_C_TYPE_INT64:
    case PROTOBUF_C_TYPE_SINT64:
    case PROTOBUF_C_TYPE_SFIXED64:
        return json_sprintf("%" PRId64, *(const int64_t *)member);
    case PROTOBUF_C_TYPE_UINT64:
    case PROTOBUF_C_TYPE_FIXED64:
        return json_sprintf("%" PRIu64, *(const uint64_t *)member);
    case PROTOBUF_C_TYPE_FLOAT:
        return s_double_to_json(*(const float *)member);
    case PROTOBUF_C_TYPE_DOUBLE:
        return s_double_to_json(*(const double *)member);
    case PROTOBUF_C_TYPE_BOOL:
        return json_boolean(*(const protobuf_c_boolean *)member);
    case PROTOBUF_C_TYPE_ENUM:
        return s_enum_to_json(field->descriptor, *(const int *)member);
    case PROTOBUF_C_TYPE_STRING:
        return s_string_to_json(*(char *const *)member);
    case PROTOBUF_C_TYPE_BYTES:
        return s_bytes_to_json(member);
    case PROTOBUF_C_TYPE_MESSAGE:
        return s_message_to_json(*(ProtobufCMessage *const *)member);
    default:
        return NULL;
    }
}

/* Returns whether a singular value at member differs from its type's proto3 default: a
 * non-empty string or bytes, a message pointer that is set, any other value not all zero bits. */
static bool s_value_is_nondefault(const ProtobufCFieldDescriptor *field, const void *member)
{
    static const union {
        uint64_t integer;
        double real;
        void *pointer;
    } zero; /* as large as any scalar or pointer member */
    if (field->type == PROTOBUF_C_TYPE_STRING)
        return *(char *const *)member && **(char *const *)member;
    if (field->type == PROTOBUF_C_TYPE_BYTES)
        return ((const ProtobufCBinaryData *)member)->len > 0;
    return memcmp(member, &zero, s_value_sizes[field->type]) != 0;
}

/* Returns whether the singular field is present in msg and so is emitted: a set oneof member
 * (unless its message or string pointer is NULL, which protobuf-c does not send either), an
 * optional field whose has_ flag is set, a required field, or a proto3 field not at default. */
static bool s_field_is_present(const ProtobufCMessage *msg, const ProtobufCFieldDescriptor *field)
{
    const void *member = s_member(msg, field->offset);
    bool is_pointer =
        field->type == PROTOBUF_C_TYPE_MESSAGE || field->type == PROTOBUF_C_TYPE_STRING;
    if (field->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) {
        if (*(const uint32_t *)s_member(msg, field->quantifier_offset) != field->id)
            return false;
        return !is_pointer || *(void *const *)member != NULL;
    }
    if (field->label == PROTOBUF_C_LABEL_NONE)
        return s_value_is_nondefault(field, member);
    if (is_pointer)
        return *(void *const *)member != NULL && *(void *const *)member != field->default_value;
    if (field->label == PROTOBUF_C_LABEL_OPTIONAL)
        return *(const protobuf_c_boolean *)s_member(msg, field->quantifier_offset);
    return true;
}

/* Returns a JSON array of the repeated field's values in msg, new reference; NULL if out of
 * memory. */
static json_t *s_repeated_to_json(const ProtobufCMessage *msg,
                                  const ProtobufCFieldDescriptor *field)
{
    size_t count = *(const size_t *)s_member(msg, field->quantifier_offset);
    const char *values = *(char *const *)s_member(msg, field->offset);
    size_t size = s_value_sizes[field->type];
    json_t *array = json_array();
    for (size_t i = 0; array && i < count; i++) {
        if (json_array_append_new(array, s_value_to_json(field, values + i * size)) != 0) {
            json_decref(array);
            array = NULL;
        }
    }
    return array;
}

/* Returns the JSON object for msg, new reference; NULL if out of memory. A NULL msg (which a
 * well-formed message only holds in a repeated field by mistake) is written as {}. */
static json_t *s_message_to_json(const ProtobufCMessage *msg)
{
    if (!msg)
        return json_object();
    const ProtobufCMessageDescriptor *desc = msg->descriptor;
    json_t *object = json_object();
    for (unsigned i = 0; object && i < desc->n_fields; i++) {
        const ProtobufCFieldDescriptor *field = &desc->fields[i];
        json_t *value = NULL;
        if (field->label == PROTOBUF_C_LABEL_REPEATED) {
            if (*(const size_t *)s_member(msg, field->quantifier_offset) == 0)
                continue;
            value = s_repeated_to_json(msg, field);
        } else {
            if (!s_field_is_present(msg, field))
                continue;
            value = s_value_to_json(field, s_member(msg, field->offset));
        }
        char *name = s_camel_dup(field->name);
        if (!value || json_object_set_new(object, name, value) != 0) {
            json_decref(object);
            object = NULL;
        }
        free(name);
    }
    return object;
}

/* Public: see nrm_json.h. The caller owns the returned reference. */
json_t *nrm_json_from_message(const ProtobufCMessage *msg)
{
    return msg ? s_message_to_json(msg) : NULL;
}

/* Public: see nrm_json.h. The caller frees the returned text with free(). */
char *nrm_json_dumps_message(const ProtobufCMessage *msg)
{
    json_t *json = nrm_json_from_message(msg);
    if (!json)
        return NULL;
    char *text = json_dumps(json, JSON_COMPACT);
    json_decref(json);
    return text;
}

/* --- Input: JSON -> message --- */

/* Records an INVALID_ARGUMENT with message at the parser's current path and returns false. */
static bool s_fail(s_parser_t *p, const char *message)
{
    nrm_fail(p->err, NRM_INVALID_ARGUMENT, p->path, "%s", message);
    return false;
}

/* Appends a formatted step ("[3]", or ".name" made by s_path_push_name) to the path, truncated if
 * too long for nrm_error_t; returns the old length for s_path_pop. */
static size_t __attribute__((format(printf, 2, 3))) s_path_push(s_parser_t *p, const char *fmt, ...)
{
    size_t length = strlen(p->path);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(p->path + length, sizeof p->path - length, fmt, ap);
    va_end(ap);
    return length;
}

/* Appends a field name (or key) to the path, dotted unless at the top; returns the old length. */
static size_t s_path_push_name(s_parser_t *p, const char *name)
{
    return s_path_push(p, "%s%s", *p->path ? "." : "", name);
}

/* Restores the path to the length a push returned. */
static void s_path_pop(s_parser_t *p, size_t length)
{
    p->path[length] = '\0';
}

/* Reads an integral JSON number, or a string holding a decimal integer, into *out as two's
 * complement bits if it lies in [-max - 1, max] (is_signed) or [0, max]. Records an error and
 * returns false otherwise. */
static bool s_parse_integer(s_parser_t *p, const json_t *value, bool is_signed, uint64_t max,
                            uint64_t *out)
{
    bool negative;
    uint64_t magnitude;
    if (json_is_integer(value)) {
        negative = json_integer_value(value) < 0;
        magnitude = (uint64_t)json_integer_value(value);
        magnitude = negative ? 0 - magnitude : magnitude;
    } else if (json_is_real(value)) {
        double d = json_real_value(value);
        negative = d < 0;
        d = negative ? -d : d;
        /* (double)UINT64_MAX rounds up to 2^64, the first magnitude that does not fit */
        if (!(d < (double)UINT64_MAX))
            return s_fail(p, "integer out of range");
        magnitude = (uint64_t)d;
        if ((double)magnitude != d)
            return s_fail(p, "not an integer");
    } else if (json_is_string(value)) {
        const char *text = json_string_value(value);
        negative = *text == '-';
        text += negative;
        char *end;
        errno = 0;
        magnitude = strtoull(text, &end, 10);
        if (*text < '0' || *text > '9' || *end != '\0' || errno != 0)
            return s_fail(p, "not a decimal integer in range");
    } else
        return s_fail(p, "expected an integer");
    bool fits = negative && magnitude > 0 ? is_signed && magnitude - 1 <= max : magnitude <= max;
    if (!fits)
        return s_fail(p, "integer out of range");
    *out = negative ? 0 - magnitude : magnitude;
    return true;
}

/* Reads a JSON number, or "NaN", "Infinity", "-Infinity" or numeric text, into *out; a float
 * field (is_float) rejects finite values beyond FLT_MAX. Records an error and returns false
 * otherwise. */
static bool s_parse_double(s_parser_t *p, const json_t *value, bool is_float, double *out)
{
    if (json_is_number(value))
        *out = json_number_value(value);
    else if (!json_is_string(value))
        return s_fail(p, "expected a number");
    else {
        const char *text = json_string_value(value);
        if (strcmp(text, s_nan) == 0)
            *out = NAN;
        else if (strcmp(text, s_infinity) == 0)
            *out = INFINITY;
        else if (strcmp(text, s_minus_infinity) == 0)
            *out = -INFINITY;
        else {
            /* any other text must be a JSON number */
            json_t *number = json_loads(text, JSON_DECODE_ANY, NULL);
            bool is_number = json_is_number(number);
            *out = json_number_value(number);
            json_decref(number);
            if (!is_number)
                return s_fail(p, "not a number");
        }
    }
    if (is_float && isfinite(*out) && (*out > FLT_MAX || *out < -FLT_MAX))
        return s_fail(p, "number out of range");
    return true;
}

/* Writes into out (size bytes) the value name prefix of an enum: its name in upper snake case
 * and an underscore ("ReferralDecision" -> "REFERRAL_DECISION_", from its short name), the prefix
 * of its values by the style of the contract. Returns false when it does not fit. */
static bool s_enum_prefix(const ProtobufCEnumDescriptor *desc, char *out, size_t size)
{
    size_t n = 0;
    for (const char *c = desc->short_name; c && *c; c++) {
        bool word = c != desc->short_name && isupper((unsigned char)*c);
        if (n + 3 > size)
            return false;
        if (word)
            out[n++] = '_';
        out[n++] = (char)toupper((unsigned char)*c);
    }
    if (n + 2 > size)
        return false;
    out[n++] = '_';
    out[n] = '\0';
    return true;
}

/* Public: see nrm_json.h. */
const char *nrm_json_enum_short_name(const ProtobufCEnumDescriptor *desc, int number)
{
    const ProtobufCEnumValue *value = protobuf_c_enum_descriptor_get_value(desc, number);
    char prefix[S_ENUM_NAME_MAX];
    if (!value)
        return NULL;
    size_t skip = s_enum_prefix(desc, prefix, sizeof prefix) ? strlen(prefix) : 0;
    if (skip && strncmp(value->name, prefix, skip) == 0 && value->name[skip])
        return value->name + skip;
    return value->name;
}

/* The value of desc named name, or named by the enum's prefix followed by name (a short name:
 * "ACCEPT" for "REFERRAL_DECISION_ACCEPT"); NULL when neither names one. */
static const ProtobufCEnumValue *s_enum_value_named(const ProtobufCEnumDescriptor *desc,
                                                    const char *name)
{
    const ProtobufCEnumValue *named = protobuf_c_enum_descriptor_get_value_by_name(desc, name);
    char full[S_ENUM_NAME_MAX];
    size_t length;
    if (named || !s_enum_prefix(desc, full, sizeof full))
        return named;
    length = strlen(full);
    if (length + strlen(name) + 1 > sizeof full)
        return NULL;
    memcpy(full + length, name, strlen(name) + 1);
    return protobuf_c_enum_descriptor_get_value_by_name(desc, full);
}

/* True when text is short and made of letters, digits and '_' only, so that an error message
 * may quote it (anything else could be text that should not be repeated). */
static bool s_quotable(const char *text)
{
    size_t n = 0;
    for (; text[n]; n++)
        if (n >= S_QUOTE_MAX || (!isalnum((unsigned char)text[n]) && text[n] != '_'))
            return false;
    return n > 0;
}

/* Records the error of an enum value name that names nothing: the value (when quotable), the
 * field and the valid short names (every value but the zero one), as many as fit. */
static bool s_fail_enum_name(s_parser_t *p, const ProtobufCFieldDescriptor *field,
                             const ProtobufCEnumDescriptor *desc, const char *name)
{
    char prefix[S_ENUM_NAME_MAX];
    size_t skip = s_enum_prefix(desc, prefix, sizeof prefix) ? strlen(prefix) : 0;
    char message[NRM_ERROR_MESSAGE_MAX];
    int n = snprintf(message, sizeof message,
                     "invalid value '%s' for field %s (valid: ", s_quotable(name) ? name : "?",
                     field->name);
    const char *separator = "";
    for (unsigned i = 0; i < desc->n_values && n > 0 && (size_t)n < sizeof message; i++) {
        const char *value = desc->values[i].name;
        if (desc->values[i].value == 0)
            continue;
        if (skip && strncmp(value, prefix, skip) == 0)
            value += skip;
        size_t room = sizeof message - (size_t)n;
        if (strlen(separator) + strlen(value) + S_LIST_TAIL >= room) {
            n += snprintf(message + n, room, "%s...", separator);
            break;
        }
        n += snprintf(message + n, room, "%s%s", separator, value);
        separator = ", ";
    }
    if (n > 0 && (size_t)n < sizeof message)
        snprintf(message + n, sizeof message - (size_t)n, ")");
    return s_fail(p, message);
}

/* Reads an enum value name (in full or without the enum's prefix), or an int32 number (proto3
 * enums are open), into *out. Records an error and returns false otherwise. */
static bool s_parse_enum(s_parser_t *p, const ProtobufCFieldDescriptor *field, const json_t *value,
                         int *out)
{
    const ProtobufCEnumDescriptor *desc = field->descriptor;
    if (json_is_string(value)) {
        const ProtobufCEnumValue *named = s_enum_value_named(desc, json_string_value(value));
        if (!named)
            return s_fail_enum_name(p, field, desc, json_string_value(value));
        *out = named->value;
        return true;
    }
    if (!json_is_integer(value))
        return s_fail(p, "expected an enum value name or number");
    uint64_t bits = 0;
    bool ok = s_parse_integer(p, value, true, INT32_MAX, &bits);
    *out = (int)(int64_t)bits;
    return ok;
}

/* Copies a JSON string into *out as a new malloc'd C string. Records an error and returns false
 * if value is not a string or holds a NUL character. */
static bool s_parse_string(s_parser_t *p, const json_t *value, char **out)
{
    if (!json_is_string(value))
        return s_fail(p, "expected a string");
    size_t length = json_string_length(value);
    if (strlen(json_string_value(value)) != length)
        return s_fail(p, "string contains a NUL character");
    *out = nrm_xmalloc(length + 1);
    memcpy(*out, json_string_value(value), length + 1);
    return true;
}

/* Decodes a base64 JSON string (standard or URL-safe, padded or not) into *out, whose data is
 * malloc'd (NULL when empty). Records an error and returns false otherwise. */
static bool s_parse_bytes(s_parser_t *p, const json_t *value, ProtobufCBinaryData *out)
{
    if (!json_is_string(value))
        return s_fail(p, "expected a base64 string");
    const char *text = json_string_value(value);
    size_t length = json_string_length(value);
    size_t capacity = length / 4 * 3 + 3; /* 3 bytes per 4 characters, a partial group */
    uint8_t *data = nrm_xmalloc(capacity);
    for (size_t i = 0; i < sizeof s_base64_variants / sizeof s_base64_variants[0]; i++) {
        size_t decoded;
        if (sodium_base642bin(data, capacity, text, length, NULL, &decoded, NULL,
                              s_base64_variants[i]) == 0) {
            out->len = decoded;
            out->data = decoded ? data : NULL;
            if (!decoded)
                free(data);
            return true;
        }
    }
    free(data);
    return s_fail(p, "invalid base64");
}

/* Defined below: reads a (sub)message; recursion is bounded by S_MAX_DEPTH. */
static ProtobufCMessage *s_parse_message(s_parser_t *p, const ProtobufCMessageDescriptor *desc,
                                         const json_t *json);

/* Reads one non-null value of field's type from JSON into the storage at dest (a singular
 * member or an element of a repeated field's array). Anything allocated is stored in dest only
 * on success (a scalar may be overwritten on failure). Records an error at the current path and
 * returns false otherwise. */
static bool s_parse_value(s_parser_t *p, const ProtobufCFieldDescriptor *field, const json_t *value,
                          void *dest)
{
    uint64_t bits = 0;
    double real = 0;
    bool ok;
    switch (field->type) {
    case PROTOBUF_C_TYPE_INT32:
    case PROTOBUF_C_TYPE_SINT32:
    case PROTOBUF_C_TYPE_SFIXED32:
        ok = s_parse_integer(p, value, true, INT32_MAX, &bits);
        *(int32_t *)dest = (int32_t)(int64_t)bits;
        return ok;
    case PROTOBUF_C_TYPE_UINT32:
    case PROTOBUF_C_TYPE_FIXED32:
        ok = s_parse_integer(p, value, false, UINT32_MAX, &bits);
        *(uint32_t *)dest = (uint32_t)bits;
        return ok;
    case PROTOBUF_C_TYPE_INT64:
    case PROTOBUF_C_TYPE_SINT64:
    case PROTOBUF_C_TYPE_SFIXED64:
        ok = s_parse_integer(p, value, true, INT64_MAX, &bits);
        *(int64_t *)dest = (int64_t)bits;
        return ok;
    case PROTOBUF_C_TYPE_UINT64:
    case PROTOBUF_C_TYPE_FIXED64:
        return s_parse_integer(p, value, false, UINT64_MAX, dest);
    case PROTOBUF_C_TYPE_FLOAT:
        ok = s_parse_double(p, value, true, &real);
        *(float *)dest = (float)real;
        return ok;
    case PROTOBUF_C_TYPE_DOUBLE:
        return s_parse_double(p, value, false, dest);
    case PROTOBUF_C_TYPE_BOOL:
        if (!json_is_boolean(value))
            return s_fail(p, "expected true or false");
        *(protobuf_c_boolean *)dest = json_is_true(value);
        return true;
    case PROTOBUF_C_TYPE_ENUM:
        return s_parse_enum(p, field, value, dest);
    case PROTOBUF_C_TYPE_STRING:
        return s_parse_string(p, value, dest);
    case PROTOBUF_C_TYPE_BYTES:
        return s_parse_bytes(p, value, dest);
    case PROTOBUF_C_TYPE_MESSAGE:
        *(ProtobufCMessage **)dest = s_parse_message(p, field->descriptor, value);
        return *(ProtobufCMessage **)dest != NULL;
    default:
        return s_fail(p, "unsupported field type");
    }
}

/* Reads a JSON array into the repeated field of msg: the array and its count are stored in msg
 * first, zero-filled, so that freeing msg after a failure part-way frees what was read. */
static bool s_parse_repeated(s_parser_t *p, ProtobufCMessage *msg,
                             const ProtobufCFieldDescriptor *field, const json_t *value)
{
    if (!json_is_array(value))
        return s_fail(p, "expected an array");
    size_t count = json_array_size(value);
    if (count == 0)
        return true;
    size_t size = s_value_sizes[field->type];
    char *values = nrm_xcalloc(count, size);
    *(char **)s_member(msg, field->offset) = values;
    *(size_t *)s_member(msg, field->quantifier_offset) = count;
    for (size_t i = 0; i < count; i++) {
        size_t mark = s_path_push(p, "[%zu]", i);
        const json_t *element = json_array_get(value, i);
        bool ok = json_is_null(element) ? s_fail(p, "null in a repeated field")
                                        : s_parse_value(p, field, element, values + i * size);
        if (!ok)
            return false;
        s_path_pop(p, mark);
    }
    return true;
}

/* Returns field's value in object, looked up under both of its names; NULL when absent. Records
 * an error (and sets *ok false) if both names are present. */
static const json_t *s_field_value(s_parser_t *p, const json_t *object,
                                   const ProtobufCFieldDescriptor *field, bool *ok)
{
    const json_t *snake = json_object_get(object, field->name);
    char *camel_name = s_camel_dup(field->name);
    const json_t *camel =
        strcmp(camel_name, field->name) ? json_object_get(object, camel_name) : NULL;
    free(camel_name);
    if (snake && camel) {
        s_path_push_name(p, field->name);
        *ok = s_fail(p, "field given under two names");
        return NULL;
    }
    return snake ? snake : camel;
}

/* Reads field from object into msg. A missing or null value leaves the default. A oneof member
 * sets the oneof's case, and is an error if another member is already set; an optional scalar
 * sets its has_ flag. Records an error and returns false on failure. */
static bool s_parse_field(s_parser_t *p, ProtobufCMessage *msg,
                          const ProtobufCFieldDescriptor *field, const json_t *object)
{
    bool ok = true;
    const json_t *value = s_field_value(p, object, field, &ok);
    if (!ok || !value || json_is_null(value))
        return ok;
    size_t mark = s_path_push_name(p, field->name);
    uint32_t *oneof_case =
        field->flags & PROTOBUF_C_FIELD_FLAG_ONEOF ? s_member(msg, field->quantifier_offset) : NULL;
    if (field->label == PROTOBUF_C_LABEL_REPEATED)
        ok = s_parse_repeated(p, msg, field, value);
    else if (oneof_case && *oneof_case != 0)
        ok = s_fail(p, "more than one member of a oneof is set");
    else
        ok = s_parse_value(p, field, value, s_member(msg, field->offset));
    if (!ok)
        return false;
    if (oneof_case)
        *oneof_case = field->id;
    else if (field->label == PROTOBUF_C_LABEL_OPTIONAL && field->type != PROTOBUF_C_TYPE_MESSAGE &&
             field->type != PROTOBUF_C_TYPE_STRING)
        *(protobuf_c_boolean *)s_member(msg, field->quantifier_offset) = 1;
    s_path_pop(p, mark);
    return true;
}

/* Records an error at the first key of object that names no field of desc and returns false;
 * returns true if every key names a field. */
static bool s_check_keys(s_parser_t *p, const ProtobufCMessageDescriptor *desc,
                         const json_t *object)
{
    json_t *json = (json_t *)object;
    for (void *it = json_object_iter(json); it; it = json_object_iter_next(json, it)) {
        const char *key = json_object_iter_key(it);
        bool known = false;
        for (unsigned i = 0; !known && i < desc->n_fields; i++)
            known =
                strcmp(desc->fields[i].name, key) == 0 || s_camel_equals(desc->fields[i].name, key);
        if (!known) {
            s_path_push_name(p, key);
            return s_fail(p, "unknown field");
        }
    }
    return true;
}

/* Returns a new message of type desc read from the JSON object, which the caller frees with
 * protobuf_c_message_free_unpacked; NULL with the error recorded if json is not a valid
 * message, nests deeper than S_MAX_DEPTH, or memory runs out. */
static ProtobufCMessage *s_parse_message(s_parser_t *p, const ProtobufCMessageDescriptor *desc,
                                         const json_t *json)
{
    if (!json_is_object(json) || p->depth >= S_MAX_DEPTH) {
        s_fail(p, json_is_object(json) ? "messages nested too deeply" : "expected an object");
        return NULL;
    }
    if (!s_check_keys(p, desc, json))
        return NULL;
    ProtobufCMessage *msg = nrm_xmalloc(desc->sizeof_message);
    protobuf_c_message_init(desc, msg);
    p->depth++;
    bool ok = true;
    for (unsigned i = 0; ok && i < desc->n_fields; i++)
        ok = s_parse_field(p, msg, &desc->fields[i], json);
    p->depth--;
    if (!ok) {
        protobuf_c_message_free_unpacked(msg, NULL);
        return NULL;
    }
    return msg;
}

/* Public: see nrm_json.h. json is only read; the caller frees the result with
 * protobuf_c_message_free_unpacked(msg, NULL). */
ProtobufCMessage *nrm_json_to_message(const ProtobufCMessageDescriptor *desc, const json_t *json,
                                      nrm_error_t *err)
{
    s_parser_t parser = {.err = err, .path = "", .depth = 0};
    nrm_error_clear(err);
    if (!desc || !json_is_object(json)) {
        s_fail(&parser, "expected a JSON object");
        return NULL;
    }
    return s_parse_message(&parser, desc, json);
}

ProtobufCMessage *nrm_json_section_to_message(const ProtobufCMessageDescriptor *desc,
                                              const json_t *section, const char *path, char *field,
                                              size_t field_size)
{
    json_t *copy = json_is_object(section) ? json_deep_copy(section) : json_object();
    if (!copy)
        nrm_oom("configuration section");
    json_object_del(copy, "_comment");
    nrm_error_t err;
    nrm_error_clear(&err);
    ProtobufCMessage *msg = nrm_json_to_message(desc, copy, &err);
    json_decref(copy);
    if (!msg)
        snprintf(field, field_size, "%s%s%s", path, err.field[0] ? "." : "", err.field);
    return msg;
}
