/* Bad input to intake gets a clear error naming the field and changes nothing: malformed and
 * oversized frames (answered up to the hard limit, four times max_request_bytes; beyond it the
 * peer is dropped), request ids that are not UTF-8 (never echoed), envelope errors, and every
 * invalid field of a report. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "harness.h"
#include "nrm_client.h"
#include "nrm_crypto.h"
#include "nrm_validate.h"
#include "scenario.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define LIMIT_BYTES 65536
#define HARD_LIMIT_BYTES (4 * LIMIT_BYTES) /* ZMQ_MAXMSGSIZE: beyond it the peer is dropped */
#define NOT_UTF8_ID "\xc3\x28\xff-0000-4000-8000-000000000000"

static harness_t *h;

static int setup(void **state)
{
    h = harness_new("intake_invalid");
    harness_config_set(h, "max_request_bytes", json_integer(LIMIT_BYTES));
    return harness_start(h, "intake", 0);
}

static int teardown(void **state)
{
    harness_destroy(&h);
    return 0;
}

/* Asserts that nothing was stored by intake. */
static void s_assert_nothing_stored(void)
{
    assert_int_equal(harness_sql_int(h, "SELECT count(*) FROM intake.cases"), 0);
    assert_int_equal(harness_sql_int(h, "SELECT count(*) FROM intake.reports"), 0);
    assert_int_equal(harness_sql_int(h, "SELECT count(*) FROM intake.outbox"), 0);
    assert_int_equal(harness_sql_int(h, "SELECT count(*) FROM intake.requests"), 0);
}

/* Sends the report and asserts the status and field of the refusal. */
static void s_refused(scenario_report_t *s, const char *agency, Nrm__V1__Status status,
                      const char *field)
{
    Nrm__V1__Reply *reply = harness_call(h, "intake", agency, &s->request);
    assert_non_null(reply);
    if (reply->status != status || strcmp(reply->error_field, field) != 0)
        fprintf(stderr, "expected %s, got status %d field '%s' (%s)\n", field, reply->status,
                reply->error_field, reply->error_message);
    assert_int_equal(reply->status, status);
    assert_string_equal(reply->error_field, field);
    assert_true(strlen(reply->error_message) > 0);
    nrm__v1__reply__free_unpacked(reply, NULL);
}

/* True when Google's protobuf runtime for Python (the contract compiled by protoc) parses the
 * reply, as it must parse every reply: proto3 strings must be valid UTF-8. */
static bool s_google_protobuf_parses(const Nrm__V1__Reply *reply)
{
    char path[1024], cmd[4096];
    snprintf(path, sizeof path, "%s/reply.bin", harness_dir(h));
    size_t len = nrm__v1__reply__get_packed_size(reply);
    uint8_t *bytes = malloc(len + 1);
    nrm__v1__reply__pack(reply, bytes);
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(bytes, 1, len, f), len);
    fclose(f);
    free(bytes);
    snprintf(cmd, sizeof cmd,
             "mkdir -p %s/py && protoc -I%s/proto --python_out=%s/py %s/proto/nrm/v1/*.proto &&"
             " /usr/bin/python3 -c 'import sys; sys.path.insert(0, \"%s/py\");"
             " from nrm.v1 import api_pb2;"
             " api_pb2.Reply.FromString(open(\"%s\", \"rb\").read())'",
             harness_dir(h), getenv("NRM_SOURCE_DIR"), harness_dir(h), getenv("NRM_SOURCE_DIR"),
             harness_dir(h), path);
    return system(cmd) == 0;
}

/* A Request with request_id NOT_UTF8_ID and a Ping body, packed (caller frees). protobuf-c packs
 * the bytes as they are, as a client in C might. */
static uint8_t *s_pack_not_utf8_id(Nrm__V1__Request *req, size_t *len)
{
    req->request_id = NOT_UTF8_ID;
    req->agency_id = "police-ma-06";
    *len = nrm__v1__request__get_packed_size(req);
    uint8_t *bytes = malloc(*len + 1);
    nrm__v1__request__pack(req, bytes);
    return bytes;
}

static void test_malformed_frame_is_invalid_argument(void **state)
{
    nrm_client_t *c = harness_client_new(h, "intake", 0, "coordinator");
    const char garbage[] = "\xff\xff\xff\xff\x0f this is not protobuf \x0a\x80";
    Nrm__V1__Reply *reply = nrm_client_call_raw(c, garbage, sizeof garbage, HARNESS_TIMEOUT_MS);
    assert_non_null(reply);
    assert_int_equal(reply->status, NRM__V1__STATUS__STATUS_INVALID_ARGUMENT);
    nrm__v1__reply__free_unpacked(reply, NULL);
    /* an empty frame decodes as a request without id or body */
    reply = nrm_client_call_raw(c, "", 0, HARNESS_TIMEOUT_MS);
    assert_non_null(reply);
    assert_int_equal(reply->status, NRM__V1__STATUS__STATUS_INVALID_ARGUMENT);
    assert_string_equal(reply->error_field, "request_id");
    nrm__v1__reply__free_unpacked(reply, NULL);
    nrm_client_destroy(&c);
    s_assert_nothing_stored();
}

static void test_oversized_frame_is_refused_and_service_survives(void **state)
{
    scenario_report_t s;
    scenario_adult_woman(&s, "MA-06", "Oversized Person", "1990-01-01");
    char *big = malloc(LIMIT_BYTES + 10);
    memset(big, 'x', LIMIT_BYTES + 9);
    big[LIMIT_BYTES + 9] = '\0';
    s.report.notes = big;
    Nrm__V1__Reply *reply = harness_call(h, "intake", "police-ma-06", &s.request);
    assert_non_null(reply);
    assert_int_equal(reply->status, NRM__V1__STATUS__STATUS_INVALID_ARGUMENT);
    assert_non_null(strstr(reply->error_message, "exceeds the limit"));
    nrm__v1__reply__free_unpacked(reply, NULL);
    /* far past the hard limit the transport drops the peer; the service goes on */
    size_t huge = (size_t)LIMIT_BYTES * 8;
    char *blob = calloc(1, huge);
    nrm_client_t *c = harness_client_new(h, "intake", 0, "coordinator");
    assert_null(nrm_client_call_raw(c, blob, huge, 1000));
    nrm_client_destroy(&c);
    free(blob);
    free(big);
    Nrm__V1__Ping ping = NRM__V1__PING__INIT;
    Nrm__V1__Request req = NRM__V1__REQUEST__INIT;
    scenario_request(&req, NRM__V1__REQUEST__BODY_PING, &ping);
    reply = harness_call(h, "intake", "police-ma-06", &req);
    assert_non_null(reply);
    assert_int_equal(reply->status, NRM__V1__STATUS__STATUS_OK);
    nrm__v1__reply__free_unpacked(reply, NULL);
    s_assert_nothing_stored();
}

static void test_frame_up_to_the_hard_limit_is_answered_invalid_argument(void **state)
{
    char *blob = calloc(1, HARD_LIMIT_BYTES);
    nrm_client_t *c = harness_client_new(h, "intake", 0, "coordinator");
    Nrm__V1__Reply *reply = nrm_client_call_raw(c, blob, HARD_LIMIT_BYTES, HARNESS_TIMEOUT_MS);
    assert_non_null(reply);
    assert_int_equal(reply->status, NRM__V1__STATUS__STATUS_INVALID_ARGUMENT);
    assert_non_null(strstr(reply->error_message, "exceeds the limit"));
    nrm__v1__reply__free_unpacked(reply, NULL);
    nrm_client_destroy(&c);
    free(blob);
}

static void test_frame_over_the_hard_limit_gets_no_reply(void **state)
{
    char *blob = calloc(1, HARD_LIMIT_BYTES + 1);
    nrm_client_t *c = harness_client_new(h, "intake", 0, "coordinator");
    assert_null(nrm_client_call_raw(c, blob, HARD_LIMIT_BYTES + 1, 1000));
    nrm_client_destroy(&c);
    free(blob);
}

static void test_request_id_not_utf8_is_not_echoed(void **state)
{
    Nrm__V1__Ping ping = NRM__V1__PING__INIT;
    Nrm__V1__Request req = NRM__V1__REQUEST__INIT;
    scenario_request(&req, NRM__V1__REQUEST__BODY_PING, &ping);
    size_t len = 0;
    uint8_t *frame = s_pack_not_utf8_id(&req, &len);
    nrm_client_t *c = harness_client_new(h, "intake", 0, "police-ma-06");
    Nrm__V1__Reply *reply = nrm_client_call_raw(c, frame, len, HARNESS_TIMEOUT_MS);
    assert_non_null(reply);
    assert_int_equal(reply->status, NRM__V1__STATUS__STATUS_INVALID_ARGUMENT);
    assert_string_equal(reply->error_field, "request_id");
    assert_string_equal(reply->request_id, "");
    assert_true(nrm_text_clean(reply->error_message));
    assert_true(s_google_protobuf_parses(reply));
    nrm__v1__reply__free_unpacked(reply, NULL);
    nrm_client_destroy(&c);
    free(frame);
}

static void test_oversized_frame_does_not_echo_a_request_id_not_utf8(void **state)
{
    scenario_report_t s;
    scenario_adult_woman(&s, "MA-06", "Oversized Person", "1990-01-01");
    char *big = malloc(LIMIT_BYTES + 10);
    memset(big, 'x', LIMIT_BYTES + 9);
    big[LIMIT_BYTES + 9] = '\0';
    s.report.notes = big;
    size_t len = 0;
    uint8_t *frame = s_pack_not_utf8_id(&s.request, &len);
    assert_true(len > LIMIT_BYTES);
    nrm_client_t *c = harness_client_new(h, "intake", 0, "coordinator");
    Nrm__V1__Reply *reply = nrm_client_call_raw(c, frame, len, HARNESS_TIMEOUT_MS);
    assert_non_null(reply);
    assert_int_equal(reply->status, NRM__V1__STATUS__STATUS_INVALID_ARGUMENT);
    assert_non_null(strstr(reply->error_message, "exceeds the limit"));
    assert_string_equal(reply->request_id, "");
    assert_true(s_google_protobuf_parses(reply));
    nrm__v1__reply__free_unpacked(reply, NULL);
    nrm_client_destroy(&c);
    free(frame);
    free(big);
    s_assert_nothing_stored();
}

static void test_envelope_errors(void **state)
{
    scenario_report_t s;
    scenario_adult_woman(&s, "MA-06", "Envelope Person", "1990-01-01");
    s.request.request_id = "not-a-uuid";
    s_refused(&s, "police-ma-06", NRM__V1__STATUS__STATUS_INVALID_ARGUMENT, "request_id");
    s.request.request_id = NULL;
    /* an unlisted agency's key gets no session at all: test_access covers it */
    Nrm__V1__Request empty = NRM__V1__REQUEST__INIT;
    Nrm__V1__Reply *reply = harness_call(h, "intake", "police-ma-06", &empty);
    assert_int_equal(reply->status, NRM__V1__STATUS__STATUS_INVALID_ARGUMENT);
    assert_string_equal(reply->error_field, "body");
    nrm__v1__reply__free_unpacked(reply, NULL);
    /* a request for another service */
    Nrm__V1__ReleaseBed release = NRM__V1__RELEASE_BED__INIT;
    release.allocation_id = "a-1";
    Nrm__V1__Request other = NRM__V1__REQUEST__INIT;
    scenario_request(&other, NRM__V1__REQUEST__BODY_RELEASE_BED, &release);
    reply = harness_call(h, "intake", "police-ma-06", &other);
    assert_int_equal(reply->status, NRM__V1__STATUS__STATUS_UNIMPLEMENTED);
    nrm__v1__reply__free_unpacked(reply, NULL);
    /* Fetch of another service's stream */
    Nrm__V1__Fetch fetch = NRM__V1__FETCH__INIT;
    fetch.stream = "routing";
    fetch.from_seq = 1;
    Nrm__V1__Request freq = NRM__V1__REQUEST__INIT;
    scenario_request(&freq, NRM__V1__REQUEST__BODY_FETCH, &fetch);
    reply = harness_call(h, "intake", "coordinator", &freq);
    assert_int_equal(reply->status, NRM__V1__STATUS__STATUS_INVALID_ARGUMENT);
    assert_string_equal(reply->error_field, "fetch.stream");
    nrm__v1__reply__free_unpacked(reply, NULL);
    s_assert_nothing_stored();
}

/* One invalid field of a report: how to break it and the path that must be named. */
typedef struct {
    const char *field;
    void (*breaks)(scenario_report_t *s);
} s_case_t;

static void s_region_unknown(scenario_report_t *s)
{
    s->report.region = "XX-99";
}
static void s_region_missing(scenario_report_t *s)
{
    s->report.region = "";
}
static void s_identified_future(scenario_report_t *s)
{
    s->report.identified_at_ms += 86400000LL * 3;
}
static void s_identified_missing(scenario_report_t *s)
{
    s->report.identified_at_ms = 0;
}
static void s_dob_shape(scenario_report_t *s)
{
    s->person.date_of_birth = "17/04/1996";
}
static void s_dob_day(scenario_report_t *s)
{
    s->person.date_of_birth = "1996-02-30";
}
static void s_dob_future(scenario_report_t *s)
{
    s->person.date_of_birth = "2099-01-01";
}
static void s_age_high(scenario_report_t *s)
{
    s->profile.age_years = 121;
}
static void s_age_negative(scenario_report_t *s)
{
    s->profile.age_years = -1;
}
static void s_gender_range(scenario_report_t *s)
{
    s->profile.gender = (Nrm__V1__Gender)42;
}
static void s_nationality(scenario_report_t *s)
{
    s->profile.nationality = "Nigeria";
}
static void s_language(scenario_report_t *s)
{
    s->languages[1] = "FRA";
}
static void s_children(scenario_report_t *s)
{
    s->profile.accompanying_children = 99;
}
static void s_profile_missing(scenario_report_t *s)
{
    s->report.profile = NULL;
}
static void s_need_range(scenario_report_t *s)
{
    s->needs[1] = (Nrm__V1__ServiceType)77;
}
static void s_need_zero(scenario_report_t *s)
{
    s->needs[0] = NRM__V1__SERVICE_TYPE__SERVICE_TYPE_UNSPECIFIED;
}
static void s_type_range(scenario_report_t *s)
{
    s->types[0] = (Nrm__V1__ExploitationType)-3;
}
static void s_country(scenario_report_t *s)
{
    s->report.country_of_exploitation = "ma";
}
static void s_urgency(scenario_report_t *s)
{
    s->report.urgency = (Nrm__V1__Urgency)9;
}
static void s_risk(scenario_report_t *s)
{
    s->report.safety_risk = (Nrm__V1__SafetyRisk)9;
}
static void s_name_long(scenario_report_t *s)
{
    static char name[400];
    memset(name, 'a', sizeof name - 1);
    s->person.full_name = name;
}
static void s_name_control(scenario_report_t *s)
{
    s->person.full_name = "Amina\x01"
                          "Benali";
}
static void s_name_utf8(scenario_report_t *s)
{
    s->person.full_name = "Amina \xc3\x28";
}
static void s_phone(scenario_report_t *s)
{
    s->person.phone = "call me maybe";
}
static void s_notes_long(scenario_report_t *s)
{
    static char notes[5000];
    memset(notes, 'n', sizeof notes - 1);
    s->report.notes = notes;
}

static void test_each_invalid_field_is_named_and_nothing_stored(void **state)
{
    const s_case_t cases[] = {
        {"submit_report.region", s_region_unknown},
        {"submit_report.region", s_region_missing},
        {"submit_report.identified_at_ms", s_identified_future},
        {"submit_report.identified_at_ms", s_identified_missing},
        {"submit_report.person.date_of_birth", s_dob_shape},
        {"submit_report.person.date_of_birth", s_dob_day},
        {"submit_report.person.date_of_birth", s_dob_future},
        {"submit_report.profile.age_years", s_age_high},
        {"submit_report.profile.age_years", s_age_negative},
        {"submit_report.profile.gender", s_gender_range},
        {"submit_report.profile.nationality", s_nationality},
        {"submit_report.profile.languages[1]", s_language},
        {"submit_report.profile.accompanying_children", s_children},
        {"submit_report.profile", s_profile_missing},
        {"submit_report.needs[1]", s_need_range},
        {"submit_report.needs[0]", s_need_zero},
        {"submit_report.exploitation_types[0]", s_type_range},
        {"submit_report.country_of_exploitation", s_country},
        {"submit_report.urgency", s_urgency},
        {"submit_report.safety_risk", s_risk},
        {"submit_report.person.full_name", s_name_long},
        {"submit_report.person.full_name", s_name_control},
        {"submit_report.person.full_name", s_name_utf8},
        {"submit_report.person.phone", s_phone},
        {"submit_report.notes", s_notes_long},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        scenario_report_t s;
        scenario_adult_woman(&s, "MA-06", "Invalid Field Person", "1990-05-05");
        cases[i].breaks(&s);
        s_refused(&s, "police-ma-06", NRM__V1__STATUS__STATUS_INVALID_ARGUMENT, cases[i].field);
    }
    s_assert_nothing_stored();
    /* refusals are audited, without the refused values */
    assert_true(harness_sql_int(h,
                                "SELECT count(*) FROM intake.audit_log WHERE status = "
                                "'INVALID_ARGUMENT'") >= (long long)(sizeof cases / sizeof *cases));
    assert_false(harness_log_contains(h, "intake", 0, "Invalid Field Person"));
}

static void test_unknown_case_ids(void **state)
{
    Nrm__V1__UpdateCase u = NRM__V1__UPDATE_CASE__INIT;
    u.case_id = "00000000-0000-4000-8000-000000000000";
    Nrm__V1__Request req = NRM__V1__REQUEST__INIT;
    scenario_request(&req, NRM__V1__REQUEST__BODY_UPDATE_CASE, &u);
    Nrm__V1__Reply *reply = harness_call(h, "intake", "coordinator", &req);
    assert_int_equal(reply->status, NRM__V1__STATUS__STATUS_NOT_FOUND);
    assert_string_equal(reply->error_field, "update_case.case_id");
    nrm__v1__reply__free_unpacked(reply, NULL);
    Nrm__V1__CloseCase c = NRM__V1__CLOSE_CASE__INIT;
    c.case_id = "no-such-case";
    c.reason = "duplicate";
    scenario_request(&req, NRM__V1__REQUEST__BODY_CLOSE_CASE, &c);
    reply = harness_call(h, "intake", "coordinator", &req);
    assert_int_equal(reply->status, NRM__V1__STATUS__STATUS_NOT_FOUND);
    assert_string_equal(reply->error_field, "close_case.case_id");
    nrm__v1__reply__free_unpacked(reply, NULL);
    s_assert_nothing_stored();
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_malformed_frame_is_invalid_argument),
        cmocka_unit_test(test_oversized_frame_is_refused_and_service_survives),
        cmocka_unit_test(test_frame_up_to_the_hard_limit_is_answered_invalid_argument),
        cmocka_unit_test(test_frame_over_the_hard_limit_gets_no_reply),
        cmocka_unit_test(test_request_id_not_utf8_is_not_echoed),
        cmocka_unit_test(test_oversized_frame_does_not_echo_a_request_id_not_utf8),
        cmocka_unit_test(test_envelope_errors),
        cmocka_unit_test(test_each_invalid_field_is_named_and_nothing_stored),
        cmocka_unit_test(test_unknown_case_ids),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
