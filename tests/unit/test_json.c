/* Unit tests of nrm_json: the proto3 JSON mapping over protobuf-c descriptors. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <sodium.h>

#include "nrm_json.h"
#include "nrm/v1/api.pb-c.h"
#include "nrm/v1/events.pb-c.h"

/* Messages nested deeper than this are refused by nrm_json_to_message. */
#define MAX_DEPTH 32
/* JSON arrays nested this deep stay under Jansson's own parser limit. */
#define DEEP_ARRAYS 1000

/* ---------------------------------------------------------------------------------------------
 * A self-recursive message with a bytes field, described by hand: no message of the contract
 * nests itself or carries bytes, but nrm_json must handle both.
 */

typedef struct node {
    ProtobufCMessage base;
    struct node *child;
    int32_t value;
    ProtobufCBinaryData blob;
} node_t;

static const ProtobufCMessageDescriptor s_node_descriptor;

static void s_node_init(ProtobufCMessage *msg)
{
    memset(msg, 0, sizeof(node_t));
    msg->descriptor = &s_node_descriptor;
}

static const ProtobufCFieldDescriptor s_node_fields[] = {
    {.name = "child",
     .id = 1,
     .label = PROTOBUF_C_LABEL_NONE,
     .type = PROTOBUF_C_TYPE_MESSAGE,
     .offset = offsetof(node_t, child),
     .descriptor = &s_node_descriptor},
    {.name = "value",
     .id = 2,
     .label = PROTOBUF_C_LABEL_NONE,
     .type = PROTOBUF_C_TYPE_INT32,
     .offset = offsetof(node_t, value)},
    {.name = "blob",
     .id = 3,
     .label = PROTOBUF_C_LABEL_NONE,
     .type = PROTOBUF_C_TYPE_BYTES,
     .offset = offsetof(node_t, blob)},
};
static const unsigned s_node_fields_by_name[] = {2, 0, 1}; /* blob, child, value */
static const ProtobufCIntRange s_node_ranges[] = {{1, 0}, {0, 3}};

static const ProtobufCMessageDescriptor s_node_descriptor = {
    .magic = PROTOBUF_C__MESSAGE_DESCRIPTOR_MAGIC,
    .name = "test.Node",
    .short_name = "Node",
    .c_name = "node_t",
    .package_name = "test",
    .sizeof_message = sizeof(node_t),
    .n_fields = 3,
    .fields = s_node_fields,
    .fields_sorted_by_name = s_node_fields_by_name,
    .n_field_ranges = 1,
    .field_ranges = s_node_ranges,
    .message_init = s_node_init,
};

/* ---------------------------------------------------------------------------------------------
 * Helpers
 */

static int s_setup(void **state)
{
    (void)state;
    return sodium_init() < 0 ? -1 : 0;
}

/* Returns the message parsed from JSON text (which must be valid JSON), or NULL with err set. */
static ProtobufCMessage *s_parse(const ProtobufCMessageDescriptor *desc, const char *text,
                                 nrm_error_t *err)
{
    json_error_t jerr;
    json_t *json = json_loads(text, JSON_DECODE_ANY, &jerr);
    assert_non_null(json);
    ProtobufCMessage *msg = nrm_json_to_message(desc, json, err);
    json_decref(json);
    return msg;
}

/* Asserts that text is refused as a desc with INVALID_ARGUMENT at field. */
static void s_assert_refused(const ProtobufCMessageDescriptor *desc, const char *text,
                             const char *field)
{
    nrm_error_t err;
    ProtobufCMessage *msg = s_parse(desc, text, &err);
    assert_null(msg);
    assert_int_equal(err.status, NRM_INVALID_ARGUMENT);
    assert_string_equal(err.field, field);
    assert_true(strlen(err.message) > 0);
}

/* Asserts that msg serialises to exactly the compact JSON text expected. */
static void s_assert_dumps(const ProtobufCMessage *msg, const char *expected)
{
    char *text = nrm_json_dumps_message(msg);
    assert_non_null(text);
    assert_string_equal(text, expected);
    free(text);
}

/* ---------------------------------------------------------------------------------------------
 * Tests
 */

static const char s_report_json[] =
    "{\"requestId\": \"req-1\", \"agencyId\": \"agency-police-1\","
    " \"submitReport\": {"
    "  \"region\": \"GB-LND\", \"identifiedAtMs\": \"1700000000123\","
    "  \"person\": {\"fullName\": \"Test Person\", \"aliases\": [\"T\", \"TP\"],"
    "              \"dateOfBirth\": \"2001-02-03\", \"phone\": \"+440000\","
    "              \"documentNumber\": \"X123\"},"
    "  \"profile\": {\"ageYears\": 23, \"ageEstimated\": true, \"gender\": \"GENDER_FEMALE\","
    "               \"nationality\": \"VN\", \"languages\": [\"vi\", \"en\"],"
    "               \"accompanyingChildren\": 1},"
    "  \"exploitationTypes\": [\"EXPLOITATION_TYPE_FORCED_LABOUR\","
    "                         \"EXPLOITATION_TYPE_SEXUAL_EXPLOITATION\"],"
    "  \"countryOfExploitation\": \"GB\","
    "  \"needs\": [\"SERVICE_TYPE_SHELTER\", \"SERVICE_TYPE_MEDICAL\"],"
    "  \"urgency\": \"URGENCY_URGENT\", \"safetyRisk\": \"SAFETY_RISK_HIGH\","
    "  \"consentToReferral\": true, \"consentToDataSharing\": true, \"notes\": \"n\"}}";

static void test_submit_report_round_trips_with_camel_keys_and_enum_names(void **state)
{
    (void)state;
    json_t *in = json_loads(s_report_json, 0, NULL);
    assert_non_null(in);
    nrm_error_t err;
    Nrm__V1__Request *req =
        (Nrm__V1__Request *)nrm_json_to_message(&nrm__v1__request__descriptor, in, &err);
    assert_non_null(req);
    assert_int_equal(err.status, NRM_OK);
    assert_string_equal(req->request_id, "req-1");
    assert_int_equal(req->body_case, NRM__V1__REQUEST__BODY_SUBMIT_REPORT);
    Nrm__V1__SubmitReport *report = req->submit_report;
    assert_true(report->identified_at_ms == 1700000000123LL);
    assert_string_equal(report->person->full_name, "Test Person");
    assert_int_equal(report->person->n_aliases, 2);
    assert_string_equal(report->person->aliases[1], "TP");
    assert_int_equal(report->profile->age_years, 23);
    assert_int_equal(report->profile->gender, NRM__V1__GENDER__GENDER_FEMALE);
    assert_int_equal(report->n_needs, 2);
    assert_int_equal(report->needs[1], NRM__V1__SERVICE_TYPE__SERVICE_TYPE_MEDICAL);
    assert_int_equal(report->exploitation_types[0],
                     NRM__V1__EXPLOITATION_TYPE__EXPLOITATION_TYPE_FORCED_LABOUR);
    assert_int_equal(report->safety_risk, NRM__V1__SAFETY_RISK__SAFETY_RISK_HIGH);
    assert_true(report->consent_to_data_sharing);

    json_t *out = nrm_json_from_message(&req->base);
    assert_non_null(out);
    assert_true(json_equal(in, out));
    json_t *body = json_object_get(out, "submitReport");
    assert_true(json_is_string(json_object_get(body, "identifiedAtMs")));
    assert_string_equal(
        json_string_value(json_object_get(json_object_get(body, "profile"), "gender")),
        "GENDER_FEMALE");
    assert_non_null(json_object_get(json_object_get(body, "person"), "documentNumber"));
    assert_null(json_object_get(body, "safety_risk"));
    json_decref(out);
    json_decref(in);
    protobuf_c_message_free_unpacked(&req->base, NULL);
}

static void test_int64_is_emitted_as_string_and_accepted_as_string_or_number(void **state)
{
    (void)state;
    nrm_error_t err;
    Nrm__V1__Request *req = (Nrm__V1__Request *)s_parse(
        &nrm__v1__request__descriptor,
        "{\"fetch\": {\"stream\": \"intake\", \"fromSeq\": 42, \"max\": 100}}", &err);
    assert_non_null(req);
    assert_true(req->fetch->from_seq == 42);
    s_assert_dumps(&req->base,
                   "{\"fetch\":{\"stream\":\"intake\",\"fromSeq\":\"42\",\"max\":100}}");
    protobuf_c_message_free_unpacked(&req->base, NULL);

    req = (Nrm__V1__Request *)s_parse(&nrm__v1__request__descriptor,
                                      "{\"fetch\": {\"fromSeq\": \"9223372036854775807\"}}", &err);
    assert_non_null(req);
    assert_true(req->fetch->from_seq == INT64_MAX);
    s_assert_dumps(&req->base, "{\"fetch\":{\"fromSeq\":\"9223372036854775807\"}}");
    protobuf_c_message_free_unpacked(&req->base, NULL);

    req = (Nrm__V1__Request *)s_parse(&nrm__v1__request__descriptor,
                                      "{\"submitReport\": {\"identifiedAtMs\": -1700000000123}}",
                                      &err);
    assert_non_null(req);
    assert_true(req->submit_report->identified_at_ms == -1700000000123LL);
    s_assert_dumps(&req->base, "{\"submitReport\":{\"identifiedAtMs\":\"-1700000000123\"}}");
    protobuf_c_message_free_unpacked(&req->base, NULL);

    s_assert_refused(&nrm__v1__request__descriptor,
                     "{\"fetch\": {\"fromSeq\": \"9223372036854775808\"}}", "fetch.from_seq");
    s_assert_refused(&nrm__v1__request__descriptor, "{\"fetch\": {\"fromSeq\": \"12abc\"}}",
                     "fetch.from_seq");
    s_assert_refused(&nrm__v1__request__descriptor, "{\"fetch\": {\"fromSeq\": true}}",
                     "fetch.from_seq");
}

static void test_defaults_are_omitted(void **state)
{
    (void)state;
    Nrm__V1__SubmitReport report = NRM__V1__SUBMIT_REPORT__INIT;
    s_assert_dumps(&report.base, "{}");

    Nrm__V1__Profile profile = NRM__V1__PROFILE__INIT;
    report.region = "GB-LND";
    report.profile = &profile;
    s_assert_dumps(&report.base, "{\"region\":\"GB-LND\",\"profile\":{}}");

    nrm_error_t err;
    ProtobufCMessage *msg =
        s_parse(&nrm__v1__profile__descriptor,
                "{\"ageYears\": 0, \"ageEstimated\": false, \"gender\": \"GENDER_UNSPECIFIED\","
                " \"nationality\": \"\", \"languages\": [], \"pregnant\": null}",
                &err);
    assert_non_null(msg);
    s_assert_dumps(msg, "{}");
    protobuf_c_message_free_unpacked(msg, NULL);
}

static void test_event_oneof_bodies_are_emitted_even_when_empty(void **state)
{
    (void)state;
    Nrm__V1__StreamHead head = NRM__V1__STREAM_HEAD__INIT;
    Nrm__V1__Event event = NRM__V1__EVENT__INIT;
    event.stream = "intake";
    event.topic = "stream.head";
    event.body_case = NRM__V1__EVENT__BODY_STREAM_HEAD;
    event.stream_head = &head;
    s_assert_dumps(&event.base,
                   "{\"stream\":\"intake\",\"topic\":\"stream.head\",\"streamHead\":{}}");
    head.head = 12;
    s_assert_dumps(
        &event.base,
        "{\"stream\":\"intake\",\"topic\":\"stream.head\",\"streamHead\":{\"head\":\"12\"}}");

    Nrm__V1__ConsentWithdrawn withdrawn = NRM__V1__CONSENT_WITHDRAWN__INIT;
    Nrm__V1__Event event2 = NRM__V1__EVENT__INIT;
    event2.event_id = "e-2";
    event2.stream = "intake";
    event2.seq = 7;
    event2.case_id = "c-1";
    event2.topic = "case.consent_withdrawn";
    event2.body_case = NRM__V1__EVENT__BODY_CONSENT_WITHDRAWN;
    event2.consent_withdrawn = &withdrawn;
    const char *expected =
        "{\"eventId\":\"e-2\",\"stream\":\"intake\",\"seq\":\"7\",\"caseId\":\"c-1\","
        "\"topic\":\"case.consent_withdrawn\",\"consentWithdrawn\":{}}";
    s_assert_dumps(&event2.base, expected);

    nrm_error_t err;
    Nrm__V1__Event *parsed = (Nrm__V1__Event *)s_parse(&nrm__v1__event__descriptor, expected, &err);
    assert_non_null(parsed);
    assert_int_equal(parsed->body_case, NRM__V1__EVENT__BODY_CONSENT_WITHDRAWN);
    assert_non_null(parsed->consent_withdrawn);
    assert_true(parsed->seq == 7);
    s_assert_dumps(&parsed->base, expected);
    protobuf_c_message_free_unpacked(&parsed->base, NULL);

    Nrm__V1__Request *req =
        (Nrm__V1__Request *)s_parse(&nrm__v1__request__descriptor, "{\"ping\": {}}", &err);
    assert_non_null(req);
    assert_int_equal(req->body_case, NRM__V1__REQUEST__BODY_PING);
    s_assert_dumps(&req->base, "{\"ping\":{}}");
    protobuf_c_message_free_unpacked(&req->base, NULL);
}

static void test_snake_case_input_is_accepted(void **state)
{
    (void)state;
    nrm_error_t err;
    Nrm__V1__Request *req = (Nrm__V1__Request *)s_parse(
        &nrm__v1__request__descriptor,
        "{\"request_id\": \"r\", \"submit_report\": {\"identified_at_ms\": 5,"
        " \"safety_risk\": \"SAFETY_RISK_LOW\", \"profile\": {\"age_years\": 30,"
        " \"age_unknown\": true}, \"needs\": [1, \"SERVICE_TYPE_LEGAL_AID\"]}}",
        &err);
    assert_non_null(req);
    assert_string_equal(req->request_id, "r");
    assert_true(req->submit_report->identified_at_ms == 5);
    assert_int_equal(req->submit_report->safety_risk, NRM__V1__SAFETY_RISK__SAFETY_RISK_LOW);
    assert_int_equal(req->submit_report->profile->age_years, 30);
    assert_true(req->submit_report->profile->age_unknown);
    assert_int_equal(req->submit_report->needs[0], NRM__V1__SERVICE_TYPE__SERVICE_TYPE_SHELTER);
    s_assert_dumps(&req->base,
                   "{\"requestId\":\"r\",\"submitReport\":{\"identifiedAtMs\":\"5\",\"profile\":"
                   "{\"ageYears\":30,\"ageUnknown\":true},\"needs\":[\"SERVICE_TYPE_SHELTER\","
                   "\"SERVICE_TYPE_LEGAL_AID\"],\"safetyRisk\":\"SAFETY_RISK_LOW\"}}");
    protobuf_c_message_free_unpacked(&req->base, NULL);

    s_assert_refused(&nrm__v1__request__descriptor, "{\"request_id\": \"a\", \"requestId\": \"b\"}",
                     "request_id");
}

static void test_unknown_enum_number_round_trips_as_number(void **state)
{
    (void)state;
    nrm_error_t err;
    ProtobufCMessage *msg =
        s_parse(&nrm__v1__case_updated__descriptor, "{\"needs\": [99], \"urgency\": 2}", &err);
    assert_non_null(msg);
    s_assert_dumps(msg, "{\"needs\":[99],\"urgency\":\"URGENCY_URGENT\"}");
    protobuf_c_message_free_unpacked(msg, NULL);
}

/* protobuf-c decodes strings without checking UTF-8: a message off the wire with a byte that
 * starts no UTF-8 sequence is still written, with U+FFFD in its place (found by fuzz_json). */
static void test_string_that_is_not_utf8_is_written_with_replacement_characters(void **state)
{
    (void)state;
    char agency[] = "\327oordinator\xE0\x80";
    Nrm__V1__Request req = NRM__V1__REQUEST__INIT;
    req.request_id = "6f1c2e1a-4b8f-4c5e-8a7b-0d1e2f3a4b6c";
    req.agency_id = agency;
    s_assert_dumps(&req.base, "{\"requestId\":\"6f1c2e1a-4b8f-4c5e-8a7b-0d1e2f3a4b6c\","
                              "\"agencyId\":\"\xEF\xBF\xBDoordinator\xEF\xBF\xBD\xEF\xBF\xBD\"}");
}

static void test_unknown_field_is_refused_with_its_path(void **state)
{
    (void)state;
    s_assert_refused(&nrm__v1__request__descriptor, "{\"bogus\": 1}", "bogus");
    s_assert_refused(&nrm__v1__request__descriptor,
                     "{\"submitReport\": {\"profile\": {\"eyeColour\": \"blue\"}}}",
                     "submit_report.profile.eyeColour");
}

static void test_wrong_type_is_refused_with_its_path(void **state)
{
    (void)state;
    const ProtobufCMessageDescriptor *req = &nrm__v1__request__descriptor;
    s_assert_refused(req, "{\"submitReport\": {\"person\": {\"fullName\": 42}}}",
                     "submit_report.person.full_name");
    s_assert_refused(req, "{\"submitReport\": {\"consentToReferral\": \"yes\"}}",
                     "submit_report.consent_to_referral");
    s_assert_refused(req, "{\"submitReport\": {\"consentToReferral\": 1}}",
                     "submit_report.consent_to_referral");
    s_assert_refused(req, "{\"submitReport\": {\"needs\": \"SERVICE_TYPE_SHELTER\"}}",
                     "submit_report.needs");
    s_assert_refused(req, "{\"submitReport\": {\"person\": {\"aliases\": [\"a\", 3]}}}",
                     "submit_report.person.aliases[1]");
    s_assert_refused(req, "{\"submitReport\": {\"person\": {\"aliases\": [null]}}}",
                     "submit_report.person.aliases[0]");
    s_assert_refused(req, "{\"submitReport\": 5}", "submit_report");
    s_assert_refused(req, "{\"fetch\": {\"max\": \"many\"}}", "fetch.max");
    s_assert_refused(req, "{\"fetch\": {\"max\": 1.5}}", "fetch.max");
}

static void test_bad_enum_name_is_refused_with_its_path(void **state)
{
    (void)state;
    s_assert_refused(&nrm__v1__request__descriptor,
                     "{\"submitReport\": {\"profile\": {\"gender\": \"GENDER_ROBOT\"}}}",
                     "submit_report.profile.gender");
    s_assert_refused(&nrm__v1__request__descriptor, "{\"submitReport\": {\"urgency\": true}}",
                     "submit_report.urgency");
}

static void test_short_enum_names_are_accepted(void **state)
{
    (void)state;
    nrm_error_t err;
    ProtobufCMessage *msg = s_parse(&nrm__v1__request__descriptor,
                                    "{\"respondToReferral\": {\"decision\": \"ACCEPT\"},"
                                    " \"requestId\": \"r\"}",
                                    &err);
    assert_non_null(msg);
    s_assert_dumps(msg, "{\"requestId\":\"r\",\"respondToReferral\":{\"decision\":"
                        "\"REFERRAL_DECISION_ACCEPT\"}}");
    protobuf_c_message_free_unpacked(msg, NULL);
    msg = s_parse(
        &nrm__v1__case_updated__descriptor,
        "{\"needs\": [\"LEGAL_AID\", \"SERVICE_TYPE_SHELTER\"], \"safetyRisk\": \"HIGH\"}", &err);
    assert_non_null(msg);
    s_assert_dumps(msg, "{\"needs\":[\"SERVICE_TYPE_LEGAL_AID\",\"SERVICE_TYPE_SHELTER\"],"
                        "\"safetyRisk\":\"SAFETY_RISK_HIGH\"}");
    protobuf_c_message_free_unpacked(msg, NULL);
}

static void test_wrong_enum_name_lists_the_valid_short_names(void **state)
{
    (void)state;
    nrm_error_t err;
    ProtobufCMessage *msg = s_parse(&nrm__v1__request__descriptor,
                                    "{\"respondToReferral\": {\"decision\": \"MAYBE\"}}", &err);
    assert_null(msg);
    assert_string_equal(err.field, "respond_to_referral.decision");
    assert_string_equal(err.message,
                        "invalid value 'MAYBE' for field decision (valid: ACCEPT, DECLINE)");
    /* text that is not a name is not repeated */
    msg = s_parse(&nrm__v1__request__descriptor,
                  "{\"respondToReferral\": {\"decision\": \"Amina B.\"}}", &err);
    assert_null(msg);
    assert_string_equal(err.message,
                        "invalid value '?' for field decision (valid: ACCEPT, DECLINE)");
}

static void test_bad_enum_in_repeated_field_is_refused_with_its_index(void **state)
{
    (void)state;
    s_assert_refused(&nrm__v1__request__descriptor,
                     "{\"submitReport\": {\"needs\": [\"SERVICE_TYPE_SHELTER\","
                     " \"SERVICE_TYPE_TELEPORT\"]}}",
                     "submit_report.needs[1]");
    s_assert_refused(&nrm__v1__case_updated__descriptor,
                     "{\"needs\": [\"SERVICE_TYPE_SHELTER\", \"nope\"]}", "needs[1]");
}

static void test_out_of_range_int32_is_refused(void **state)
{
    (void)state;
    const ProtobufCMessageDescriptor *profile = &nrm__v1__profile__descriptor;
    s_assert_refused(profile, "{\"ageYears\": 2147483648}", "age_years");
    s_assert_refused(profile, "{\"ageYears\": -2147483649}", "age_years");
    s_assert_refused(profile, "{\"ageYears\": \"2147483648\"}", "age_years");
    s_assert_refused(profile, "{\"ageYears\": 1e10}", "age_years");
    s_assert_refused(&nrm__v1__case_updated__descriptor, "{\"needs\": [4294967297]}", "needs[0]");

    nrm_error_t err;
    Nrm__V1__Profile *msg =
        (Nrm__V1__Profile *)s_parse(profile, "{\"ageYears\": 2147483647}", &err);
    assert_non_null(msg);
    assert_int_equal(msg->age_years, INT32_MAX);
    protobuf_c_message_free_unpacked(&msg->base, NULL);
    msg = (Nrm__V1__Profile *)s_parse(
        profile, "{\"ageYears\": \"-17\", \"accompanyingChildren\": 2.0}", &err);
    assert_non_null(msg);
    assert_int_equal(msg->age_years, -17);
    assert_int_equal(msg->accompanying_children, 2);
    protobuf_c_message_free_unpacked(&msg->base, NULL);
}

static void test_two_oneof_members_are_refused(void **state)
{
    (void)state;
    s_assert_refused(&nrm__v1__request__descriptor, "{\"ping\": {}, \"fetch\": {}}", "fetch");
    s_assert_refused(&nrm__v1__event__descriptor,
                     "{\"caseClosed\": {\"reason\": \"duplicate\"}, \"streamHead\": {\"head\": 1}}",
                     "stream_head");

    nrm_error_t err;
    Nrm__V1__Request *req = (Nrm__V1__Request *)s_parse(&nrm__v1__request__descriptor,
                                                        "{\"ping\": null, \"fetch\": {}}", &err);
    assert_non_null(req);
    assert_int_equal(req->body_case, NRM__V1__REQUEST__BODY_FETCH);
    protobuf_c_message_free_unpacked(&req->base, NULL);
}

static void test_non_object_top_level_is_refused(void **state)
{
    (void)state;
    s_assert_refused(&nrm__v1__request__descriptor, "[1, 2]", "");
    s_assert_refused(&nrm__v1__request__descriptor, "\"ping\"", "");
    s_assert_refused(&nrm__v1__request__descriptor, "null", "");

    nrm_error_t err;
    assert_null(nrm_json_to_message(&nrm__v1__request__descriptor, NULL, &err));
    assert_int_equal(err.status, NRM_INVALID_ARGUMENT);
}

/* Returns {"child": {"child": ... {}}} with the given number of "child" keys; new reference. */
static json_t *s_nested_nodes(int levels)
{
    json_t *json = json_object();
    for (int i = 0; i < levels; i++) {
        json_t *outer = json_object();
        json_object_set_new(outer, "child", json);
        json = outer;
    }
    return json;
}

static void test_depth_bomb_is_refused(void **state)
{
    (void)state;
    nrm_error_t err;
    json_t *json = s_nested_nodes(MAX_DEPTH - 1);
    ProtobufCMessage *msg = nrm_json_to_message(&s_node_descriptor, json, &err);
    assert_non_null(msg);
    protobuf_c_message_free_unpacked(msg, NULL);
    json_decref(json);

    json = s_nested_nodes(MAX_DEPTH);
    assert_null(nrm_json_to_message(&s_node_descriptor, json, &err));
    assert_int_equal(err.status, NRM_INVALID_ARGUMENT);
    assert_true(strncmp(err.field, "child.child.child", strlen("child.child.child")) == 0);
    json_decref(json);

    json = s_nested_nodes(DEEP_ARRAYS);
    assert_null(nrm_json_to_message(&s_node_descriptor, json, &err));
    assert_int_equal(err.status, NRM_INVALID_ARGUMENT);
    json_decref(json);

    /* deep JSON where the schema expects a string */
    char *text = malloc(2 * DEEP_ARRAYS + 64);
    assert_non_null(text);
    strcpy(text, "{\"submitReport\": {\"person\": {\"fullName\": ");
    size_t length = strlen(text);
    memset(text + length, '[', DEEP_ARRAYS);
    memset(text + length + DEEP_ARRAYS, ']', DEEP_ARRAYS);
    strcpy(text + length + 2 * DEEP_ARRAYS, "}}}");
    s_assert_refused(&nrm__v1__request__descriptor, text, "submit_report.person.full_name");
    free(text);
}

static void test_bytes_round_trip_as_base64(void **state)
{
    (void)state;
    nrm_error_t err;
    node_t *node = (node_t *)s_parse(
        &s_node_descriptor, "{\"blob\": \"aGVsbG8=\", \"child\": {\"blob\": \"AP8=\"}}", &err);
    assert_non_null(node);
    assert_int_equal(node->blob.len, strlen("hello"));
    assert_memory_equal(node->blob.data, "hello", strlen("hello"));
    assert_int_equal(node->child->blob.len, 2);
    assert_int_equal(node->child->blob.data[1], 0xff);
    s_assert_dumps(&node->base, "{\"child\":{\"blob\":\"AP8=\"},\"blob\":\"aGVsbG8=\"}");
    protobuf_c_message_free_unpacked(&node->base, NULL);

    node = (node_t *)s_parse(&s_node_descriptor, "{\"blob\": \"aGVsbG8\", \"value\": 1}", &err);
    assert_non_null(node);
    assert_int_equal(node->blob.len, strlen("hello"));
    protobuf_c_message_free_unpacked(&node->base, NULL);

    node = (node_t *)s_parse(&s_node_descriptor, "{\"blob\": \"\"}", &err);
    assert_non_null(node);
    assert_int_equal(node->blob.len, 0);
    s_assert_dumps(&node->base, "{}");
    protobuf_c_message_free_unpacked(&node->base, NULL);

    s_assert_refused(&s_node_descriptor, "{\"child\": {\"blob\": \"not base64!\"}}", "child.blob");
    s_assert_refused(&s_node_descriptor, "{\"blob\": 12}", "blob");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_submit_report_round_trips_with_camel_keys_and_enum_names),
        cmocka_unit_test(test_int64_is_emitted_as_string_and_accepted_as_string_or_number),
        cmocka_unit_test(test_defaults_are_omitted),
        cmocka_unit_test(test_event_oneof_bodies_are_emitted_even_when_empty),
        cmocka_unit_test(test_snake_case_input_is_accepted),
        cmocka_unit_test(test_unknown_enum_number_round_trips_as_number),
        cmocka_unit_test(test_string_that_is_not_utf8_is_written_with_replacement_characters),
        cmocka_unit_test(test_unknown_field_is_refused_with_its_path),
        cmocka_unit_test(test_wrong_type_is_refused_with_its_path),
        cmocka_unit_test(test_bad_enum_name_is_refused_with_its_path),
        cmocka_unit_test(test_short_enum_names_are_accepted),
        cmocka_unit_test(test_wrong_enum_name_lists_the_valid_short_names),
        cmocka_unit_test(test_bad_enum_in_repeated_field_is_refused_with_its_index),
        cmocka_unit_test(test_out_of_range_int32_is_refused),
        cmocka_unit_test(test_two_oneof_members_are_refused),
        cmocka_unit_test(test_non_object_top_level_is_refused),
        cmocka_unit_test(test_depth_bomb_is_refused),
        cmocka_unit_test(test_bytes_round_trip_as_base64),
    };
    return cmocka_run_group_tests(tests, s_setup, NULL);
}
