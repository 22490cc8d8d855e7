/* Unit tests of nrm_event (topics, packing, the appended seq) and nrm_error. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "nrm_error.h"
#include "nrm_event.h"

#define MAX_TOPICS 64

/* Fills ev with a closed case and every envelope field set (seq 0, as stored). */
static void s_sample(Nrm__V1__Event *ev, Nrm__V1__CaseClosed *closed)
{
    *closed = (Nrm__V1__CaseClosed)NRM__V1__CASE_CLOSED__INIT;
    closed->reason = "reintegrated";
    *ev = (Nrm__V1__Event)NRM__V1__EVENT__INIT;
    ev->event_id = "0b7c5a9e-3f1d-4e2a-9c8b-1a2b3c4d5e6f";
    ev->stream = "intake";
    ev->occurred_at_ms = 1718452800123LL;
    ev->case_id = "c2f1e0d9-8b7a-4c6d-9e5f-0a1b2c3d4e5f";
    ev->causation_id = "9f8e7d6c-5b4a-4392-8170-6f5e4d3c2b1a";
    ev->topic = "case.closed";
    ev->body_case = NRM__V1__EVENT__BODY_CASE_CLOSED;
    ev->case_closed = closed;
}

static void test_every_event_body_has_a_topic_and_back(void **state)
{
    (void)state;
    const ProtobufCMessageDescriptor *d = &nrm__v1__event__descriptor;
    const char *seen[MAX_TOPICS];
    size_t bodies = 0;
    for (unsigned i = 0; i < d->n_fields; i++) {
        const ProtobufCFieldDescriptor *f = &d->fields[i];
        if (!(f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF))
            continue;
        const char *topic = nrm_event_topic_of((Nrm__V1__Event__BodyCase)f->id);
        if (!topic)
            fail_msg("body %s has no topic", f->name);
        assert_int_equal(nrm_event_body_of(topic), f->id);
        for (size_t k = 0; k < bodies; k++)
            assert_string_not_equal(seen[k], topic);
        assert_true(bodies < MAX_TOPICS);
        seen[bodies++] = topic;
    }
    assert_true(bodies >= 20);
    assert_string_equal(nrm_event_topic_of(NRM__V1__EVENT__BODY_CASE_OPENED), "case.opened");
    assert_string_equal(nrm_event_topic_of(NRM__V1__EVENT__BODY_STREAM_HEAD),
                        NRM_TOPIC_STREAM_HEAD);
    assert_null(nrm_event_topic_of(NRM__V1__EVENT__BODY__NOT_SET));
    assert_null(nrm_event_topic_of((Nrm__V1__Event__BodyCase)999));
    assert_int_equal(nrm_event_body_of("case.nothing"), NRM__V1__EVENT__BODY__NOT_SET);
    assert_int_equal(nrm_event_body_of("case"), NRM__V1__EVENT__BODY__NOT_SET);
    assert_int_equal(nrm_event_body_of(""), NRM__V1__EVENT__BODY__NOT_SET);
    assert_int_equal(nrm_event_body_of(NULL), NRM__V1__EVENT__BODY__NOT_SET);
}

static void test_topic_matches_prefixes(void **state)
{
    (void)state;
    static const char *const cases[] = {"case.", "referral.accepted", NULL};
    assert_true(nrm_topic_matches("case.opened", cases));
    assert_true(nrm_topic_matches("case.closed", cases));
    assert_true(nrm_topic_matches("referral.accepted", cases));
    assert_false(nrm_topic_matches("referral.declined", cases));
    assert_false(nrm_topic_matches("shelter.requested", cases));
    assert_false(nrm_topic_matches("case", cases));
    assert_false(nrm_topic_matches("", cases));
    static const char *const exact[] = {"case.opened", NULL};
    assert_false(nrm_topic_matches("case.closed", exact));
    /* NULL or an empty list match everything */
    static const char *const none[] = {NULL};
    assert_true(nrm_topic_matches("shelter.requested", NULL));
    assert_true(nrm_topic_matches("shelter.requested", none));
    assert_true(nrm_topic_matches("", none));
    /* an empty prefix matches everything too */
    static const char *const empty[] = {"", NULL};
    assert_true(nrm_topic_matches("stream.head", empty));
}

static void test_pack_unpack_round_trip(void **state)
{
    (void)state;
    Nrm__V1__Event ev;
    Nrm__V1__CaseClosed closed;
    s_sample(&ev, &closed);
    ev.seq = 42;
    size_t len = 0;
    uint8_t *buf = nrm_event_pack(&ev, &len);
    assert_non_null(buf);
    assert_int_equal(len, nrm__v1__event__get_packed_size(&ev));
    Nrm__V1__Event *back = nrm_event_unpack(buf, len);
    assert_non_null(back);
    assert_string_equal(back->event_id, ev.event_id);
    assert_string_equal(back->stream, "intake");
    assert_int_equal(back->seq, 42);
    assert_int_equal(back->occurred_at_ms, ev.occurred_at_ms);
    assert_string_equal(back->case_id, ev.case_id);
    assert_string_equal(back->causation_id, ev.causation_id);
    assert_string_equal(back->topic, "case.closed");
    assert_int_equal(back->body_case, NRM__V1__EVENT__BODY_CASE_CLOSED);
    assert_string_equal(back->case_closed->reason, "reintegrated");
    nrm__v1__event__free_unpacked(back, NULL);
    free(buf);
    /* an empty event packs to nothing and back */
    Nrm__V1__Event empty = NRM__V1__EVENT__INIT;
    buf = nrm_event_pack(&empty, &len);
    assert_non_null(buf);
    assert_int_equal(len, 0);
    back = nrm_event_unpack(buf, len);
    assert_non_null(back);
    assert_int_equal(back->body_case, NRM__V1__EVENT__BODY__NOT_SET);
    nrm__v1__event__free_unpacked(back, NULL);
    free(buf);
    /* bytes that are no Event */
    static const uint8_t junk[] = {0xFF, 0xFF, 0xFF, 0xFF, 0x0F};
    assert_null(nrm_event_unpack(junk, sizeof junk));
    static const uint8_t truncated[] = {0x0A, 0x20, 'a', 'b'}; /* event_id of 32 bytes, 2 sent */
    assert_null(nrm_event_unpack(truncated, sizeof truncated));
}

static void test_with_seq_sets_seq_and_leaves_the_rest(void **state)
{
    (void)state;
    Nrm__V1__Event ev;
    Nrm__V1__CaseClosed closed;
    s_sample(&ev, &closed);
    size_t stored_len = 0;
    uint8_t *stored = nrm_event_pack(&ev, &stored_len);
    assert_non_null(stored);
    static const int64_t seqs[] = {1, 127, 128, 16383, 16384, 1LL << 40, INT64_MAX};
    for (size_t i = 0; i < sizeof seqs / sizeof *seqs; i++) {
        size_t len = 0;
        uint8_t *with = nrm_event_with_seq(stored, stored_len, seqs[i], &len);
        assert_non_null(with);
        assert_true(len > stored_len);
        assert_memory_equal(with, stored, stored_len);
        Nrm__V1__Event *back = nrm_event_unpack(with, len);
        assert_non_null(back);
        assert_int_equal(back->seq, seqs[i]);
        /* everything else is unchanged: with seq 0 again it packs to the stored bytes */
        back->seq = 0;
        size_t again_len = 0;
        uint8_t *again = nrm_event_pack(back, &again_len);
        assert_int_equal(again_len, stored_len);
        assert_memory_equal(again, stored, stored_len);
        free(again);
        nrm__v1__event__free_unpacked(back, NULL);
        free(with);
    }
    free(stored);
}

static void test_with_seq_on_an_empty_event(void **state)
{
    (void)state;
    size_t len = 0;
    static const uint8_t none[1] = {0};
    uint8_t *with = nrm_event_with_seq(none, 0, 300, &len);
    assert_non_null(with);
    Nrm__V1__Event *back = nrm_event_unpack(with, len);
    assert_non_null(back);
    assert_int_equal(back->seq, 300);
    assert_string_equal(back->event_id, "");
    assert_int_equal(back->body_case, NRM__V1__EVENT__BODY__NOT_SET);
    nrm__v1__event__free_unpacked(back, NULL);
    free(with);
}

static void test_fail_fills_the_error_and_returns_the_status(void **state)
{
    (void)state;
    nrm_error_t err;
    nrm_error_clear(&err);
    assert_int_equal(err.status, NRM_OK);
    assert_string_equal(err.field, "");
    assert_string_equal(err.message, "");
    assert_int_equal(nrm_fail(&err, NRM_NOT_FOUND, "close_case.case_id", "no case %d", 7),
                     NRM_NOT_FOUND);
    assert_int_equal(err.status, NRM_NOT_FOUND);
    assert_string_equal(err.field, "close_case.case_id");
    assert_string_equal(err.message, "no case 7");
    assert_int_equal(nrm_fail(&err, NRM_INTERNAL, NULL, "%s", "broken"), NRM_INTERNAL);
    assert_string_equal(err.field, "");
    assert_string_equal(err.message, "broken");
    /* a NULL err only returns the status; clearing NULL is harmless */
    assert_int_equal(nrm_fail(NULL, NRM_CONFLICT, "x", "y"), NRM_CONFLICT);
    nrm_error_clear(NULL);
    /* overlong texts are cut, never overflowed */
    char longer[NRM_ERROR_MESSAGE_MAX * 2];
    memset(longer, 'm', sizeof longer - 1);
    longer[sizeof longer - 1] = '\0';
    nrm_fail(&err, NRM_INVALID_ARGUMENT, longer, "%s", longer);
    assert_int_equal(strlen(err.field), NRM_ERROR_FIELD_MAX - 1);
    assert_int_equal(strlen(err.message), NRM_ERROR_MESSAGE_MAX - 1);
    nrm_error_clear(&err);
    assert_int_equal(err.status, NRM_OK);
    assert_string_equal(err.field, "");
}

static void test_status_names(void **state)
{
    (void)state;
    static const struct {
        nrm_status_t status;
        const char *name;
    } names[] = {{NRM_OK, "OK"},
                 {NRM_INVALID_ARGUMENT, "INVALID_ARGUMENT"},
                 {NRM_UNAUTHENTICATED, "UNAUTHENTICATED"},
                 {NRM_PERMISSION_DENIED, "PERMISSION_DENIED"},
                 {NRM_NOT_FOUND, "NOT_FOUND"},
                 {NRM_CONFLICT, "CONFLICT"},
                 {NRM_FAILED_PRECONDITION, "FAILED_PRECONDITION"},
                 {NRM_UNAVAILABLE, "UNAVAILABLE"},
                 {NRM_UNIMPLEMENTED, "UNIMPLEMENTED"},
                 {NRM_INTERNAL, "INTERNAL"},
                 {NRM__V1__STATUS__STATUS_UNSPECIFIED, "UNSPECIFIED"},
                 {(nrm_status_t)999, "UNKNOWN"},
                 {(nrm_status_t)-1, "UNKNOWN"}};
    for (size_t i = 0; i < sizeof names / sizeof *names; i++)
        assert_string_equal(nrm_status_name(names[i].status), names[i].name);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_event_body_has_a_topic_and_back),
        cmocka_unit_test(test_topic_matches_prefixes),
        cmocka_unit_test(test_pack_unpack_round_trip),
        cmocka_unit_test(test_with_seq_sets_seq_and_leaves_the_rest),
        cmocka_unit_test(test_with_seq_on_an_empty_event),
        cmocka_unit_test(test_fail_fills_the_error_and_returns_the_status),
        cmocka_unit_test(test_status_names),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
