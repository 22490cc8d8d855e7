/* Identity disclosure, consented and audited, against real nrm-intake and nrm-routing processes
 * speaking CURVE: who reads a person's identity (GetIdentity), when that ends, and that every
 * disclosure leaves a trace and the identity itself none. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "harness.h"
#include "routing_scenario.h"
#include "scenario.h"

#include <stdio.h>
#include <string.h>

#define MANAGER "police-ma-04"
#define STRANGER "consulate-ng"
#define OK NRM__V1__STATUS__STATUS_OK
#define DENIED NRM__V1__STATUS__STATUS_PERMISSION_DENIED
#define LEGAL_AID NRM__V1__SERVICE_TYPE__SERVICE_TYPE_LEGAL_AID
#define CHILD_PROTECTION NRM__V1__SERVICE_TYPE__SERVICE_TYPE_CHILD_PROTECTION
#define WAIT_MS 15000
#define SQL_MAX 512
#define NAME_MAX_TEXT 64
#define ADULT_AGE 33
#define MINOR_AGE 15
#define NOTES "Told us the recruiter in Tangier keeps her passport."
#define PHONE "+212 600 000 111"

static harness_t *h;
static harness_sub_t *sub;

/* A person's case and the referral under test. */
typedef struct {
    char name[NAME_MAX_TEXT];
    char case_id[ROUTING_ID_TEXT];
    char referral_id[ROUTING_ID_TEXT];
    char provider[ROUTING_ID_TEXT];
} s_person_t;

static int setup(void **state)
{
    h = harness_new("identity");
    if (harness_start(h, "intake", 0) != 0 || harness_start(h, "routing", 0) != 0)
        return -1;
    sub = harness_subscribe(h, "intake", 0);
    return 0;
}

static int teardown(void **state)
{
    harness_sub_destroy(&sub);
    harness_destroy(&h);
    return 0;
}

/* Reports a named person to intake as MANAGER: an adult needing legal aid, or a minor (child
 * protection follows), consenting to referral and to data sharing as asked; fills the case and
 * the referral of `need` with its provider. */
static void s_report(s_person_t *p, bool minor, bool data_sharing, Nrm__V1__ServiceType need)
{
    static int people;
    memset(p, 0, sizeof *p);
    snprintf(p->name, sizeof p->name, "Disclosure Person %d Zerhouni", ++people);
    scenario_report_t s;
    routing_person(&s, "MA-04", minor ? MINOR_AGE : ADULT_AGE, NRM__V1__GENDER__GENDER_FEMALE, "NG",
                   !minor);
    routing_person_named(&s, p->name, minor ? "2011-05-06" : "1992-05-06");
    s.person.phone = PHONE;
    s.report.notes = NOTES;
    s.report.consent_to_data_sharing = data_sharing;
    if (!minor)
        routing_person_needs(&s, need);
    assert_int_equal(routing_submit(h, &s, MANAGER, p->case_id), OK);
    assert_true(routing_wait_referrals(h, p->case_id, 1) >= 1);
    assert_true(routing_referral(h, p->case_id, need, 1, p->referral_id, p->provider));
}

/* Waits until intake knows the referral in state. */
static void s_wait_access(const s_person_t *p, const char *state)
{
    char sql[SQL_MAX];
    snprintf(sql, sizeof sql,
             "SELECT count(*) FROM intake.referral_access WHERE referral_id = '%s'"
             " AND state = '%s'",
             p->referral_id, state);
    assert_int_equal(harness_wait_sql(h, sql, 1, WAIT_MS), 1);
}

/* The provider accepts its referral, and intake has learnt it. */
static void s_accept(const s_person_t *p)
{
    Nrm__V1__Reply *r =
        routing_provider_respond(h, p->provider, p->referral_id,
                                 NRM__V1__REFERRAL_DECISION__REFERRAL_DECISION_ACCEPT, 0, "");
    assert_non_null(r);
    assert_int_equal(r->status, OK);
    nrm__v1__reply__free_unpacked(r, NULL);
    s_wait_access(p, "accepted");
}

/* Sends GetIdentity as agency (request_id may be "" for a fresh one); returns the reply. */
static Nrm__V1__Reply *s_identity(const char *agency, const char *case_id, const char *purpose,
                                  const char *request_id)
{
    Nrm__V1__GetIdentity g = NRM__V1__GET_IDENTITY__INIT;
    g.case_id = (char *)case_id;
    g.purpose = (char *)purpose;
    Nrm__V1__Request req = NRM__V1__REQUEST__INIT;
    scenario_request(&req, NRM__V1__REQUEST__BODY_GET_IDENTITY, &g);
    req.request_id = (char *)request_id;
    Nrm__V1__Reply *reply = harness_call(h, "intake", agency, &req);
    assert_non_null(reply);
    return reply;
}

/* The status of a GetIdentity as agency; on OK, checks that it is the person's identity. */
static Nrm__V1__Status s_read(const char *agency, const s_person_t *p)
{
    Nrm__V1__Reply *r = s_identity(agency, p->case_id, "service_delivery", "");
    Nrm__V1__Status st = r->status;
    if (st == OK) {
        assert_int_equal(r->result_case, NRM__V1__REPLY__RESULT_IDENTITY);
        assert_string_equal(r->identity->case_id, p->case_id);
        assert_non_null(r->identity->person);
        assert_string_equal(r->identity->person->full_name, p->name);
        assert_string_equal(r->identity->person->phone, PHONE);
        assert_int_equal(r->identity->n_notes, 1);
        assert_string_equal(r->identity->notes[0], NOTES);
    } else {
        assert_null(r->identity);
    }
    nrm__v1__reply__free_unpacked(r, NULL);
    return st;
}

/* Sends an intake request of body as agency; returns its status. */
static Nrm__V1__Status s_intake(const char *agency, Nrm__V1__Request__BodyCase body, void *msg)
{
    Nrm__V1__Request req = NRM__V1__REQUEST__INIT;
    scenario_request(&req, body, msg);
    Nrm__V1__Reply *r = harness_call(h, "intake", agency, &req);
    assert_non_null(r);
    Nrm__V1__Status st = r->status;
    nrm__v1__reply__free_unpacked(r, NULL);
    return st;
}

static void test_the_case_manager_reads_the_identity_and_notes_it_reported(void **state)
{
    s_person_t p;
    s_report(&p, false, false, LEGAL_AID);
    assert_int_equal(s_read(MANAGER, &p), OK);
    assert_int_equal(s_read("coordinator", &p), OK);
}

static void test_a_stranger_is_refused_the_identity(void **state)
{
    s_person_t p;
    s_report(&p, false, true, LEGAL_AID);
    assert_int_equal(s_read(STRANGER, &p), DENIED);
}

static void test_a_provider_whose_referral_is_only_pending_is_refused(void **state)
{
    s_person_t p;
    s_report(&p, false, true, LEGAL_AID);
    s_wait_access(&p, "pending");
    assert_int_equal(s_read(p.provider, &p), DENIED);
}

static void test_the_accepting_provider_reads_the_identity_with_consent_to_data_sharing(void **s)
{
    s_person_t p;
    s_report(&p, false, true, LEGAL_AID);
    s_accept(&p);
    assert_int_equal(s_read(p.provider, &p), OK);
}

static void test_without_consent_to_data_sharing_the_accepting_provider_waits_for_it(void **s)
{
    s_person_t p;
    s_report(&p, false, false, LEGAL_AID);
    s_accept(&p);
    assert_int_equal(s_read(p.provider, &p), DENIED);
    Nrm__V1__UpdateCase u = NRM__V1__UPDATE_CASE__INIT;
    u.case_id = p.case_id;
    u.consent_to_data_sharing = 1;
    assert_int_equal(s_intake(MANAGER, NRM__V1__REQUEST__BODY_UPDATE_CASE, &u), OK);
    assert_int_equal(s_read(p.provider, &p), OK);
}

static void test_a_child_protection_provider_reads_a_minors_identity_without_consent(void **s)
{
    s_person_t p;
    s_report(&p, true, false, CHILD_PROTECTION);
    s_accept(&p);
    assert_int_equal(s_read(p.provider, &p), OK);
}

static void test_withdrawing_data_sharing_ends_access_and_keeps_the_referral(void **s)
{
    s_person_t p;
    s_report(&p, false, true, LEGAL_AID);
    s_accept(&p);
    assert_int_equal(s_read(p.provider, &p), OK);
    Nrm__V1__WithdrawConsent w = NRM__V1__WITHDRAW_CONSENT__INIT;
    w.case_id = p.case_id;
    w.data_sharing_only = 1;
    assert_int_equal(s_intake(MANAGER, NRM__V1__REQUEST__BODY_WITHDRAW_CONSENT, &w), OK);
    assert_int_equal(s_read(p.provider, &p), DENIED);
    /* routing applied the withdrawal and revoked nothing */
    assert_true(routing_wait_caught_up(h, WAIT_MS));
    char state[ROUTING_ID_TEXT];
    routing_referral_state(h, p.referral_id, state);
    assert_string_equal(state, "accepted");
}

static void test_completing_the_referral_ends_the_providers_access(void **s)
{
    s_person_t p;
    s_report(&p, false, true, LEGAL_AID);
    s_accept(&p);
    Nrm__V1__Reply *r = routing_provider_complete(h, p.provider, p.referral_id, true, "");
    assert_int_equal(r->status, OK);
    nrm__v1__reply__free_unpacked(r, NULL);
    s_wait_access(&p, "completed");
    assert_int_equal(s_read(p.provider, &p), DENIED);
    assert_int_equal(s_read(MANAGER, &p), OK);
}

static void test_revoking_the_referral_ends_the_providers_access(void **s)
{
    s_person_t p;
    s_report(&p, false, true, LEGAL_AID);
    s_accept(&p);
    /* closing the case revokes its open referrals; consent to data sharing stays */
    assert_int_equal(routing_close_case(h, MANAGER, p.case_id, "transferred"), OK);
    s_wait_access(&p, "revoked");
    assert_int_equal(s_read(p.provider, &p), DENIED);
}

static void test_intake_away_while_a_referral_is_accepted_then_completed_ends_the_access(void **s)
{
    s_person_t p;
    s_report(&p, false, true, LEGAL_AID);
    s_wait_access(&p, "pending");
    assert_true(harness_signal(h, "intake", 0, SIGTERM) >= 0);
    /* both moves wait in routing's stream: intake applies them in one batch when it is back */
    Nrm__V1__Reply *r = routing_provider_respond(
        h, p.provider, p.referral_id, NRM__V1__REFERRAL_DECISION__REFERRAL_DECISION_ACCEPT, 0, "");
    assert_int_equal(r->status, OK);
    nrm__v1__reply__free_unpacked(r, NULL);
    r = routing_provider_complete(h, p.provider, p.referral_id, true, "");
    assert_int_equal(r->status, OK);
    nrm__v1__reply__free_unpacked(r, NULL);
    assert_int_equal(harness_start(h, "intake", 0), 0);
    s_wait_access(&p, "completed");
    assert_int_equal(s_read(p.provider, &p), DENIED);
    assert_int_equal(s_read(MANAGER, &p), OK);
}

static void test_every_disclosure_is_audited_and_published_without_the_identity(void **s)
{
    s_person_t p;
    s_report(&p, false, true, LEGAL_AID);
    s_accept(&p);
    Nrm__V1__Reply *r = s_identity(p.provider, p.case_id, "contact", "");
    assert_int_equal(r->status, OK);
    nrm__v1__reply__free_unpacked(r, NULL);
    char sql[SQL_MAX];
    snprintf(sql, sizeof sql,
             "SELECT count(*) FROM intake.audit_log WHERE kind = 'identity_disclosed'"
             " AND subject_id = '%s' AND agency_id = '%s' AND status = 'OK'",
             p.case_id, p.provider);
    assert_int_equal(harness_sql_int(h, sql), 1);
    Nrm__V1__Event *ev = NULL;
    while ((ev = harness_sub_next(sub, "case.identity_disclosed", WAIT_MS)) != NULL) {
        if (strcmp(ev->case_id, p.case_id) == 0)
            break;
        nrm__v1__event__free_unpacked(ev, NULL);
    }
    assert_non_null(ev);
    assert_int_equal(ev->body_case, NRM__V1__EVENT__BODY_IDENTITY_DISCLOSED);
    assert_string_equal(ev->identity_disclosed->agency_id, p.provider);
    assert_string_equal(ev->identity_disclosed->purpose, "contact");
    nrm__v1__event__free_unpacked(ev, NULL);
    /* a refused read discloses nothing and publishes nothing */
    assert_int_equal(s_read(STRANGER, &p), DENIED);
    snprintf(sql, sizeof sql,
             "SELECT count(*) FROM intake.audit_log WHERE kind = 'identity_disclosed'"
             " AND subject_id = '%s'",
             p.case_id);
    assert_int_equal(harness_sql_int(h, sql), 1);
}

static void test_a_repeated_request_id_of_a_disclosure_gives_nothing_to_another_agency(void **s)
{
    s_person_t p;
    s_report(&p, false, true, LEGAL_AID);
    s_accept(&p);
    const char *id = "6f1c3a52-9d4e-4b7a-8c21-0e5f7a9b3d10";
    Nrm__V1__Reply *first = s_identity(p.provider, p.case_id, "contact", id);
    assert_int_equal(first->status, OK);
    assert_non_null(first->identity);
    nrm__v1__reply__free_unpacked(first, NULL);
    Nrm__V1__Reply *other = s_identity(STRANGER, p.case_id, "contact", id);
    assert_int_equal(other->status, DENIED);
    assert_null(other->identity);
    nrm__v1__reply__free_unpacked(other, NULL);
    /* the repeat by the provider itself is a second, audited disclosure: nothing is replayed */
    Nrm__V1__Reply *again = s_identity(p.provider, p.case_id, "contact", id);
    assert_int_equal(again->status, OK);
    nrm__v1__reply__free_unpacked(again, NULL);
    char sql[SQL_MAX];
    snprintf(sql, sizeof sql, "SELECT count(*) FROM intake.requests WHERE request_id = '%s'", id);
    assert_int_equal(harness_sql_int(h, sql), 0);
    snprintf(sql, sizeof sql,
             "SELECT count(*) FROM intake.audit_log WHERE kind = 'identity_disclosed'"
             " AND request_id = '%s'",
             id);
    assert_int_equal(harness_sql_int(h, sql), 2);
}

static void test_a_purpose_that_is_not_a_code_is_refused_naming_the_field(void **s)
{
    s_person_t p;
    s_report(&p, false, true, LEGAL_AID);
    Nrm__V1__Reply *r = s_identity(MANAGER, p.case_id, "curiosity", "");
    assert_int_equal(r->status, NRM__V1__STATUS__STATUS_INVALID_ARGUMENT);
    assert_string_equal(r->error_field, "get_identity.purpose");
    nrm__v1__reply__free_unpacked(r, NULL);
}

static void test_no_identity_appears_in_any_event_log_line_or_stored_reply(void **s)
{
    s_person_t p;
    s_report(&p, false, true, LEGAL_AID);
    s_accept(&p);
    assert_int_equal(s_read(p.provider, &p), OK);
    assert_int_equal(s_read(MANAGER, &p), OK);
    harness_wait_sql(h, "SELECT count(*) FROM intake.outbox WHERE seq IS NULL", 0, WAIT_MS);
    const char *identifying[] = {"Zerhouni", PHONE, "Tangier", "PASS-A1234567"};
    const char *services[] = {"intake", "routing"};
    for (size_t i = 0; i < sizeof identifying / sizeof *identifying; i++) {
        assert_false(harness_sub_saw_bytes(sub, identifying[i]));
        for (size_t k = 0; k < sizeof services / sizeof *services; k++)
            assert_false(harness_log_contains(h, services[k], 0, identifying[i]));
        char sql[SQL_MAX];
        snprintf(sql, sizeof sql,
                 "SELECT (SELECT count(*) FROM intake.requests"
                 "         WHERE position(convert_to('%s', 'UTF8') in reply) > 0)"
                 "     + (SELECT count(*) FROM intake.outbox"
                 "         WHERE position(convert_to('%s', 'UTF8') in payload) > 0)"
                 "     + (SELECT count(*) FROM routing.outbox"
                 "         WHERE position(convert_to('%s', 'UTF8') in payload) > 0)",
                 identifying[i], identifying[i], identifying[i]);
        assert_int_equal(harness_sql_int(h, sql), 0);
    }
}

/* Submits s to intake as MANAGER under request_id; fills case_id. Returns the status. */
static Nrm__V1__Status s_submit_as(scenario_report_t *s, const char *request_id,
                                   char case_id[ROUTING_ID_TEXT])
{
    s->request.request_id = (char *)request_id;
    Nrm__V1__Reply *r = harness_call(h, "intake", MANAGER, &s->request);
    assert_non_null(r);
    Nrm__V1__Status st = r->status;
    snprintf(case_id, ROUTING_ID_TEXT, "%s", st == OK && r->case_ref ? r->case_ref->case_id : "");
    nrm__v1__reply__free_unpacked(r, NULL);
    return st;
}

static void test_a_profile_field_intake_does_not_know_is_neither_stored_nor_published(void **s)
{
    /* a client built from another version of the contract: field 20 of Profile, unknown here,
     * carries a name */
    static const char smuggled[] = "Smuggled Zerhouni";
    uint8_t data[sizeof smuggled]; /* as protobuf-c keeps it: the length, then the bytes */
    data[0] = (uint8_t)(sizeof smuggled - 1);
    memcpy(data + 1, smuggled, sizeof smuggled - 1);
    ProtobufCMessageUnknownField field = {.tag = 20,
                                          .wire_type = PROTOBUF_C_WIRE_TYPE_LENGTH_PREFIXED,
                                          .len = sizeof data,
                                          .data = data};
    scenario_report_t r;
    routing_person(&r, "MA-04", ADULT_AGE, NRM__V1__GENDER__GENDER_FEMALE, "NG", true);
    routing_person_named(&r, "Unknown Field Person Zerhouni", "1992-05-07");
    r.profile.base.n_unknown_fields = 1;
    r.profile.base.unknown_fields = &field;
    char case_id[ROUTING_ID_TEXT];
    assert_int_equal(s_submit_as(&r, "", case_id), OK);
    harness_wait_sql(h, "SELECT count(*) FROM intake.outbox WHERE seq IS NULL", 0, WAIT_MS);
    bool heard = false; /* its case.opened has reached the subscriber */
    for (Nrm__V1__Event *ev; !heard && (ev = harness_sub_next(sub, "case.opened", WAIT_MS));) {
        heard = strcmp(ev->case_id, case_id) == 0;
        nrm__v1__event__free_unpacked(ev, NULL);
    }
    assert_true(heard);
    assert_false(harness_sub_saw_bytes(sub, smuggled));
    assert_int_equal(
        harness_sql_int(h, "SELECT (SELECT count(*) FROM intake.cases"
                           "   WHERE position('\\x536d7567676c6564'::bytea in profile) > 0)"
                           " + (SELECT count(*) FROM intake.outbox"
                           "   WHERE position('\\x536d7567676c6564'::bytea in payload) > 0)"),
        0);
}

static void
test_an_erasure_blanks_the_request_hash_and_a_repeat_still_gets_the_stored_reply(void **s)
{
    /* the stored request hash is an unkeyed hash of the whole report, identity included: it
     * would confirm a guessed name after the erasure */
    static const char request_id[] = "6f1d2c3b-4a59-4e68-9d7c-8b9a0f1e2d3c";
    scenario_report_t r;
    routing_person(&r, "MA-04", ADULT_AGE, NRM__V1__GENDER__GENDER_FEMALE, "NG", true);
    routing_person_named(&r, "Erased Request Person Zerhouni", "1992-05-08");
    char case_id[ROUTING_ID_TEXT], again[ROUTING_ID_TEXT], sql[SQL_MAX];
    assert_int_equal(s_submit_as(&r, request_id, case_id), OK);
    Nrm__V1__EraseIdentity e = NRM__V1__ERASE_IDENTITY__INIT;
    e.case_id = case_id;
    e.reason = "recorded_in_error";
    assert_int_equal(s_intake("coordinator", NRM__V1__REQUEST__BODY_ERASE_IDENTITY, &e), OK);
    snprintf(sql, sizeof sql,
             "SELECT count(*) FILTER (WHERE octet_length(request_hash) = 0) * 10 + count(*)"
             " FROM intake.requests WHERE request_id = '%s'",
             request_id);
    assert_int_equal(harness_sql_int(h, sql), 11); /* kept, with its hash blank */
    /* the reporting agency repeats the report: it gets the stored reply, nothing is opened */
    assert_int_equal(s_submit_as(&r, request_id, again), OK);
    assert_string_equal(again, case_id);
    assert_int_equal(harness_sql_int(h, "SELECT count(*) FROM intake.cases"
                                        " WHERE identity_hash IS NOT NULL AND case_id IN"
                                        " (SELECT case_id FROM intake.reports WHERE request_id ="
                                        " '6f1d2c3b-4a59-4e68-9d7c-8b9a0f1e2d3c')"),
                     0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_the_case_manager_reads_the_identity_and_notes_it_reported),
        cmocka_unit_test(test_a_stranger_is_refused_the_identity),
        cmocka_unit_test(test_a_provider_whose_referral_is_only_pending_is_refused),
        cmocka_unit_test(
            test_the_accepting_provider_reads_the_identity_with_consent_to_data_sharing),
        cmocka_unit_test(test_without_consent_to_data_sharing_the_accepting_provider_waits_for_it),
        cmocka_unit_test(test_a_child_protection_provider_reads_a_minors_identity_without_consent),
        cmocka_unit_test(test_withdrawing_data_sharing_ends_access_and_keeps_the_referral),
        cmocka_unit_test(test_completing_the_referral_ends_the_providers_access),
        cmocka_unit_test(test_revoking_the_referral_ends_the_providers_access),
        cmocka_unit_test(test_every_disclosure_is_audited_and_published_without_the_identity),
        cmocka_unit_test(
            test_a_repeated_request_id_of_a_disclosure_gives_nothing_to_another_agency),
        cmocka_unit_test(test_a_purpose_that_is_not_a_code_is_refused_naming_the_field),
        cmocka_unit_test(test_no_identity_appears_in_any_event_log_line_or_stored_reply),
        cmocka_unit_test(test_a_profile_field_intake_does_not_know_is_neither_stored_nor_published),
        cmocka_unit_test(
            test_an_erasure_blanks_the_request_hash_and_a_repeat_still_gets_the_stored_reply),
        /* last: it restarts intake, and the tests above listen to its events socket */
        cmocka_unit_test(
            test_intake_away_while_a_referral_is_accepted_then_completed_ends_the_access),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
