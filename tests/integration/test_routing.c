/* Routing against real PostgreSQL and real nrm-intake and nrm-routing processes, with the
 * demonstration directory and policy: each scenario is a person reported to intake and the
 * referrals routing makes for them. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "harness.h"
#include "routing_scenario.h"

#include <stdio.h>
#include <string.h>

#define OK NRM__V1__STATUS__STATUS_OK
#define FEMALE NRM__V1__GENDER__GENDER_FEMALE
#define MALE NRM__V1__GENDER__GENDER_MALE
#define SHELTER NRM__V1__SERVICE_TYPE__SERVICE_TYPE_SHELTER
#define MEDICAL NRM__V1__SERVICE_TYPE__SERVICE_TYPE_MEDICAL
#define PSYCHOSOCIAL NRM__V1__SERVICE_TYPE__SERVICE_TYPE_PSYCHOSOCIAL
#define LEGAL_AID NRM__V1__SERVICE_TYPE__SERVICE_TYPE_LEGAL_AID
#define CHILD_PROTECTION NRM__V1__SERVICE_TYPE__SERVICE_TYPE_CHILD_PROTECTION
#define INTERPRETATION NRM__V1__SERVICE_TYPE__SERVICE_TYPE_INTERPRETATION
#define RETURN_ASSISTANCE NRM__V1__SERVICE_TYPE__SERVICE_TYPE_RETURN_ASSISTANCE
#define ACCEPT NRM__V1__REFERRAL_DECISION__REFERRAL_DECISION_ACCEPT
#define DECLINE NRM__V1__REFERRAL_DECISION__REFERRAL_DECISION_DECLINE
#define NO_REASON NRM__V1__DECLINE_REASON__DECLINE_REASON_UNSPECIFIED
#define HOUR_MS 3600000LL
#define URGENT_DEADLINE_MS (24 * HOUR_MS)
#define SQL_MAX 512

static harness_t *h;

static int setup(void **state)
{
    h = harness_new("routing");
    /* no expiry runs on its own here (deadlines are days): a test sets a deadline in the past */
    harness_config_set(h, "routing.expiry_check_ms", json_integer(3600000));
    if (harness_start(h, "intake", 0) != 0)
        return -1;
    return harness_start(h, "routing", 0);
}

static int teardown(void **state)
{
    harness_destroy(&h);
    return 0;
}

/* Asserts the case has exactly one referral of service, at attempt 1, to provider; returns
 * its referral.created event (caller frees). */
static Nrm__V1__Event *s_assert_referred(const char *case_id, Nrm__V1__ServiceType service,
                                         const char *provider)
{
    char referral_id[ROUTING_ID_TEXT], chosen[ROUTING_ID_TEXT];
    assert_int_equal(routing_count_referrals(h, case_id, service), 1);
    assert_true(routing_referral(h, case_id, service, 1, referral_id, chosen));
    assert_string_equal(chosen, provider);
    Nrm__V1__Event **events = NULL;
    size_t n = routing_case_events(h, case_id, "referral.created", &events);
    Nrm__V1__Event *found = NULL;
    for (size_t i = 0; i < n; i++)
        if (strcmp(events[i]->referral_created->referral_id, referral_id) == 0) {
            found = events[i];
            events[i] = events[n - 1];
            n--;
        }
    routing_events_free(events, n);
    assert_non_null(found);
    assert_int_equal(found->referral_created->service, service);
    assert_string_equal(found->referral_created->provider_agency_id, provider);
    assert_int_equal(found->referral_created->attempt, 1);
    assert_non_null(strstr(found->referral_created->reason, provider));
    return found;
}

/* The state routing records for one service of the case ("" when none). */
static void s_service_state(const char *case_id, Nrm__V1__ServiceType service, char *out,
                            size_t size)
{
    char sql[SQL_MAX];
    snprintf(sql, sizeof sql,
             "SELECT state || ' ' || rule_id FROM routing.case_services WHERE case_id = '%s'"
             " AND service = %d",
             case_id, (int)service);
    PGresult *res = harness_sql(h, sql);
    snprintf(out, size, "%s", PQntuples(res) == 1 ? PQgetvalue(res, 0, 0) : "");
    PQclear(res);
}

static void test_minor_identified_in_ma04_without_needs_gets_child_protection(void **state)
{
    /* a 15-year-old girl found by the Rabat police; no needs stated, no consent recorded */
    scenario_report_t s;
    routing_person(&s, "MA-04", 15, FEMALE, "MA", false);
    routing_person_named(&s, "Salma Benjelloun", "2010-03-09");
    routing_person_speaks(&s, "ar");
    char case_id[ROUTING_ID_TEXT];
    assert_int_equal(routing_submit(h, &s, "police-ma-04", case_id), OK);
    assert_int_equal(routing_wait_referrals(h, case_id, 1), 1);

    Nrm__V1__Event *ev = s_assert_referred(case_id, CHILD_PROTECTION, "cpu-ma-04");
    assert_string_equal(ev->referral_created->rule_id, "minor-child-protection");
    assert_int_equal(ev->referral_created->urgency, NRM__V1__URGENCY__URGENCY_URGENT);
    assert_int_equal(ev->referral_created->due_ms - ev->occurred_at_ms, URGENT_DEADLINE_MS);
    assert_string_equal(ev->stream, "routing");
    nrm__v1__event__free_unpacked(ev, NULL);
    /* nothing else, and nothing identifying anywhere in routing */
    assert_int_equal(routing_count_referrals(h, case_id, 0), 1);
    assert_int_equal(harness_sql_int(h, "SELECT count(*) FROM routing.outbox WHERE"
                                        " position('Benjelloun'::bytea in payload) > 0"
                                        " OR position('2010-03-09'::bytea in payload) > 0"),
                     0);
    assert_false(harness_log_contains(h, "routing", 0, "Benjelloun"));
}

static void test_adult_foreign_national_asking_for_return_gets_iom(void **state)
{
    /* a Senegalese man, exploited on a fishing boat, asks to go home */
    scenario_report_t s;
    routing_person(&s, "MA-01", 34, MALE, "SN", true);
    routing_person_speaks(&s, "fr");
    routing_person_speaks(&s, "wo");
    routing_person_needs(&s, RETURN_ASSISTANCE);
    char case_id[ROUTING_ID_TEXT];
    assert_int_equal(routing_submit(h, &s, "border-ma-01", case_id), OK);
    assert_int_equal(routing_wait_referrals(h, case_id, 1), 1);
    Nrm__V1__Event *ev = s_assert_referred(case_id, RETURN_ASSISTANCE, "iom-ma");
    assert_string_equal(ev->referral_created->rule_id, "stated-need");
    nrm__v1__event__free_unpacked(ev, NULL);

    /* a Moroccan national asking for "return" is not sent to IOM: the policy says why */
    scenario_report_t n;
    routing_person(&n, "MA-01", 30, MALE, "MA", true);
    routing_person_speaks(&n, "ar");
    routing_person_needs(&n, RETURN_ASSISTANCE);
    routing_person_needs(&n, MEDICAL);
    char national[ROUTING_ID_TEXT];
    assert_int_equal(routing_submit(h, &n, "border-ma-01", national), OK);
    assert_int_equal(routing_wait_referrals(h, national, 1), 1);
    assert_int_equal(routing_count_referrals(h, national, RETURN_ASSISTANCE), 0);
    char decided[SQL_MAX];
    s_service_state(national, RETURN_ASSISTANCE, decided, sizeof decided);
    assert_string_equal(decided, "not_referred return-not-for-nationals");
}

static void test_forced_labour_in_ma06_gets_legal_aid_and_psychosocial_in_region(void **state)
{
    /* a construction worker from Casablanca-Settat, debt bondage; national providers exist
     * for both needs, the region's own are preferred */
    scenario_report_t s;
    routing_person(&s, "MA-06", 41, MALE, "MA", true);
    routing_person_speaks(&s, "ar");
    routing_person_needs(&s, LEGAL_AID);
    routing_person_needs(&s, PSYCHOSOCIAL);
    char case_id[ROUTING_ID_TEXT];
    assert_int_equal(routing_submit(h, &s, "labour-ma-06", case_id), OK);
    assert_int_equal(routing_wait_referrals(h, case_id, 2), 2);
    Nrm__V1__Event *legal = s_assert_referred(case_id, LEGAL_AID, "legal-aid-ma-06");
    Nrm__V1__Event *psy = s_assert_referred(case_id, PSYCHOSOCIAL, "psy-ngo-ma-06");
    assert_non_null(strstr(legal->referral_created->reason, "serves the region"));
    assert_non_null(strstr(psy->referral_created->reason, "serves the region"));
    assert_string_equal(legal->referral_created->rule_id, "stated-need");
    nrm__v1__event__free_unpacked(legal, NULL);
    nrm__v1__event__free_unpacked(psy, NULL);
    assert_int_equal(routing_count_referrals(h, case_id, 0), 2);
}

static void test_without_consent_only_mandatory_referrals_then_consent_brings_the_rest(void **s)
{
    /* a 16-year-old boy from Guinea in Oujda needs care and support but has not consented */
    scenario_report_t r;
    routing_person(&r, "MA-02", 16, MALE, "GN", false);
    routing_person_speaks(&r, "fr");
    routing_person_speaks(&r, "ff");
    routing_person_needs(&r, MEDICAL);
    routing_person_needs(&r, PSYCHOSOCIAL);
    char case_id[ROUTING_ID_TEXT];
    assert_int_equal(routing_submit(h, &r, "gendarmerie-ma-02", case_id), OK);
    assert_int_equal(routing_wait_referrals(h, case_id, 1), 1);
    Nrm__V1__Event *cp = s_assert_referred(case_id, CHILD_PROTECTION, "cpu-ma-02");
    nrm__v1__event__free_unpacked(cp, NULL);
    char decided[SQL_MAX];
    s_service_state(case_id, MEDICAL, decided, sizeof decided);
    assert_string_equal(decided, "awaiting_consent stated-need");
    s_service_state(case_id, PSYCHOSOCIAL, decided, sizeof decided);
    assert_string_equal(decided, "awaiting_consent stated-need");

    /* he consents: the waiting needs are referred, child protection is not referred twice */
    assert_int_equal(routing_give_consent(h, "gendarmerie-ma-02", case_id), OK);
    assert_int_equal(routing_wait_referrals(h, case_id, 3), 3);
    Nrm__V1__Event *med = s_assert_referred(case_id, MEDICAL, "hospital-ma-02");
    Nrm__V1__Event *psy = s_assert_referred(case_id, PSYCHOSOCIAL, "psy-ngo-ma-02");
    nrm__v1__event__free_unpacked(med, NULL);
    nrm__v1__event__free_unpacked(psy, NULL);
    assert_int_equal(routing_count_referrals(h, case_id, CHILD_PROTECTION), 1);
}

static void test_provider_speaking_none_of_his_languages_brings_an_interpreter(void **state)
{
    /* a Bangladeshi man in a Casablanca garment workshop speaks Bengali only: the hospital
     * does not, so an interpreter is mandatory -- and the local cooperative has no Bengali */
    scenario_report_t s;
    routing_person(&s, "MA-06", 28, MALE, "BD", true);
    routing_person_speaks(&s, "bn");
    routing_person_needs(&s, MEDICAL);
    char case_id[ROUTING_ID_TEXT];
    assert_int_equal(routing_submit(h, &s, "labour-ma-06", case_id), OK);
    assert_int_equal(routing_wait_referrals(h, case_id, 2), 2);
    Nrm__V1__Event *med = s_assert_referred(case_id, MEDICAL, "hospital-ma-06");
    Nrm__V1__Event *interp = s_assert_referred(case_id, INTERPRETATION, "interpreters-national");
    assert_string_equal(interp->referral_created->rule_id, "language-gap-interpretation");
    nrm__v1__event__free_unpacked(med, NULL);
    nrm__v1__event__free_unpacked(interp, NULL);

    /* he withdraws his consent: the interpreter, there for his medical care, goes with it */
    assert_int_equal(routing_withdraw_consent(h, "labour-ma-06", case_id), OK);
    char sql[SQL_MAX];
    snprintf(sql, sizeof sql,
             "SELECT count(*) FROM routing.referrals WHERE case_id = '%s' AND state = 'revoked'",
             case_id);
    assert_int_equal(harness_wait_sql(h, sql, 2, ROUTING_WAIT_MS), 2);
    assert_int_equal(routing_count_referrals(h, case_id, 0), 2);
}

static void test_child_without_consent_gets_child_protection_and_its_interpreter(void **state)
{
    /* a 12-year-old Bangladeshi boy found in Casablanca, no consent recorded: the child
     * protection unit speaks no Bengali, so the interpreter is as mandatory as the unit */
    scenario_report_t s;
    routing_person(&s, "MA-06", 12, MALE, "BD", false);
    routing_person_speaks(&s, "bn");
    routing_person_needs(&s, MEDICAL);
    char case_id[ROUTING_ID_TEXT];
    assert_int_equal(routing_submit(h, &s, "police-ma-06", case_id), OK);
    assert_int_equal(routing_wait_referrals(h, case_id, 2), 2);
    Nrm__V1__Event *cp = s_assert_referred(case_id, CHILD_PROTECTION, "cpu-ma-06");
    Nrm__V1__Event *interp = s_assert_referred(case_id, INTERPRETATION, "interpreters-national");
    nrm__v1__event__free_unpacked(cp, NULL);
    nrm__v1__event__free_unpacked(interp, NULL);
    assert_int_equal(routing_count_referrals(h, case_id, MEDICAL), 0);
    char decided[SQL_MAX];
    s_service_state(case_id, INTERPRETATION, decided, sizeof decided);
    assert_string_equal(decided, "referred language-gap-interpretation");
    /* withdrawing a consent never given changes none of it */
    assert_int_equal(routing_withdraw_consent(h, "police-ma-06", case_id), OK);
    assert_int_equal(routing_close_case(h, "coordinator", case_id, "transferred"), OK);
    char sql[SQL_MAX];
    snprintf(sql, sizeof sql,
             "SELECT count(*) FROM routing.referrals WHERE case_id = '%s' AND state = 'revoked'"
             " AND revoke_reason = 'case_closed'",
             case_id);
    assert_int_equal(harness_wait_sql(h, sql, 2, ROUTING_WAIT_MS), 2);
}

static void test_shelter_need_becomes_one_shelter_request_not_a_referral(void **state)
{
    /* a woman with two children escaping domestic servitude in Marrakech needs shelter and
     * care; later she also asks for psychosocial support */
    scenario_report_t s;
    routing_person(&s, "MA-07", 31, FEMALE, "CI", true);
    routing_person_speaks(&s, "fr");
    routing_person_needs(&s, SHELTER);
    routing_person_needs(&s, MEDICAL);
    s.profile.accompanying_children = 2;
    s.report.safety_risk = NRM__V1__SAFETY_RISK__SAFETY_RISK_HIGH;
    char case_id[ROUTING_ID_TEXT];
    assert_int_equal(routing_submit(h, &s, "ngo-ma-07", case_id), OK);
    assert_int_equal(routing_wait_referrals(h, case_id, 1), 1);
    Nrm__V1__Event *med = s_assert_referred(case_id, MEDICAL, "hospital-ma-07");
    nrm__v1__event__free_unpacked(med, NULL);
    assert_int_equal(routing_count_referrals(h, case_id, SHELTER), 0);
    Nrm__V1__Event **events = NULL;
    size_t n = routing_case_events(h, case_id, "shelter.requested", &events);
    assert_int_equal(n, 1);
    Nrm__V1__ShelterRequested *req = events[0]->shelter_requested;
    assert_int_equal(req->beds, 3);
    assert_string_equal(req->region, "MA-07");
    assert_false(req->is_minor);
    assert_int_equal(req->safety_risk, NRM__V1__SAFETY_RISK__SAFETY_RISK_HIGH);
    assert_int_equal(req->urgency, NRM__V1__URGENCY__URGENCY_URGENT);
    assert_non_null(req->profile);
    assert_int_equal(req->profile->gender, FEMALE);
    assert_int_equal(req->profile->accompanying_children, 2);
    routing_events_free(events, n);

    /* a new need is routed; shelter is not requested again */
    Nrm__V1__UpdateCase u = NRM__V1__UPDATE_CASE__INIT;
    Nrm__V1__ServiceType more[] = {PSYCHOSOCIAL};
    u.case_id = case_id;
    u.add_needs = more;
    u.n_add_needs = 1;
    Nrm__V1__Request req_update = NRM__V1__REQUEST__INIT;
    scenario_request(&req_update, NRM__V1__REQUEST__BODY_UPDATE_CASE, &u);
    Nrm__V1__Reply *reply = harness_call(h, "intake", "ngo-ma-07", &req_update);
    assert_int_equal(reply->status, OK);
    nrm__v1__reply__free_unpacked(reply, NULL);
    assert_int_equal(routing_wait_referrals(h, case_id, 2), 2);
    Nrm__V1__Event *psy = s_assert_referred(case_id, PSYCHOSOCIAL, "ngo-ma-07");
    nrm__v1__event__free_unpacked(psy, NULL);
    n = routing_case_events(h, case_id, "shelter.requested", &events);
    assert_int_equal(n, 1);
    routing_events_free(events, n);
}

/* Asserts a refused request: status and field. Frees the reply. */
static void s_assert_refused(Nrm__V1__Reply *reply, Nrm__V1__Status status, const char *field)
{
    assert_non_null(reply);
    assert_int_equal(reply->status, status);
    assert_string_equal(reply->error_field, field);
    nrm__v1__reply__free_unpacked(reply, NULL);
}

static void test_stranger_answering_is_refused_and_bad_requests_change_nothing(void **state)
{
    scenario_report_t s;
    routing_person(&s, "MA-04", 26, FEMALE, "NG", true);
    routing_person_speaks(&s, "en");
    routing_person_needs(&s, LEGAL_AID);
    char case_id[ROUTING_ID_TEXT], referral_id[ROUTING_ID_TEXT], st[ROUTING_ID_TEXT];
    assert_int_equal(routing_submit(h, &s, "hospital-ma-04", case_id), OK);
    assert_int_equal(routing_wait_referrals(h, case_id, 1), 1);
    assert_true(routing_referral(h, case_id, LEGAL_AID, 1, referral_id, NULL));
    long long events_before = harness_sql_int(h, "SELECT count(*) FROM routing.outbox");

    /* another agency tries to accept it */
    s_assert_refused(
        routing_provider_respond(h, "legal-aid-ma-06", referral_id, ACCEPT, NO_REASON, ""),
        NRM__V1__STATUS__STATUS_PERMISSION_DENIED, "respond_to_referral.referral_id");
    /* malformed answers name their field */
    s_assert_refused(routing_provider_respond(h, "legal-aid-ma-04", "", ACCEPT, NO_REASON, ""),
                     NRM__V1__STATUS__STATUS_INVALID_ARGUMENT, "respond_to_referral.referral_id");
    s_assert_refused(routing_provider_respond(
                         h, "legal-aid-ma-04", referral_id,
                         NRM__V1__REFERRAL_DECISION__REFERRAL_DECISION_UNSPECIFIED, NO_REASON, ""),
                     NRM__V1__STATUS__STATUS_INVALID_ARGUMENT, "respond_to_referral.decision");
    s_assert_refused(
        routing_provider_respond(h, "legal-aid-ma-04", referral_id, DECLINE, NO_REASON, ""),
        NRM__V1__STATUS__STATUS_INVALID_ARGUMENT, "respond_to_referral.decline_reason");
    s_assert_refused(routing_provider_respond(h, "legal-aid-ma-04", referral_id, ACCEPT,
                                              NRM__V1__DECLINE_REASON__DECLINE_REASON_OTHER, ""),
                     NRM__V1__STATUS__STATUS_INVALID_ARGUMENT,
                     "respond_to_referral.decline_reason");
    s_assert_refused(routing_provider_respond(h, "legal-aid-ma-04", referral_id, ACCEPT, NO_REASON,
                                              "bad\x01note"),
                     NRM__V1__STATUS__STATUS_INVALID_ARGUMENT, "respond_to_referral.note");
    /* a referral that does not exist: only a coordinator learns that; a provider is refused as
     * for another provider's referral */
    s_assert_refused(routing_provider_respond(h, "legal-aid-ma-04",
                                              "00000000-0000-4000-8000-000000000000", ACCEPT,
                                              NO_REASON, ""),
                     NRM__V1__STATUS__STATUS_PERMISSION_DENIED, "respond_to_referral.referral_id");
    s_assert_refused(routing_provider_respond(h, "coordinator",
                                              "00000000-0000-4000-8000-000000000000", ACCEPT,
                                              NO_REASON, ""),
                     NRM__V1__STATUS__STATUS_NOT_FOUND, "respond_to_referral.referral_id");
    /* an outcome before acceptance, and an outcome whose reason is free text */
    s_assert_refused(routing_provider_complete(h, "legal-aid-ma-04", referral_id, true, ""),
                     NRM__V1__STATUS__STATUS_FAILED_PRECONDITION, "complete_referral.referral_id");
    s_assert_refused(routing_provider_complete(h, "legal-aid-ma-04", referral_id, false,
                                               "she moved in with her cousin Joy"),
                     NRM__V1__STATUS__STATUS_INVALID_ARGUMENT, "complete_referral.reason");
    routing_referral_state(h, referral_id, st);
    assert_string_equal(st, "pending");
    assert_int_equal(harness_sql_int(h, "SELECT count(*) FROM routing.outbox"), events_before);

    /* the provider accepts (its note is not kept), then records the outcome */
    Nrm__V1__Reply *ok = routing_provider_respond(h, "legal-aid-ma-04", referral_id, ACCEPT,
                                                  NO_REASON, "client Blessing Okafor seen");
    assert_int_equal(ok->status, OK);
    assert_int_equal(ok->result_case, NRM__V1__REPLY__RESULT_REFERRAL_REF);
    assert_string_equal(ok->referral_ref->referral_id, referral_id);
    assert_string_equal(ok->referral_ref->state, "accepted");
    nrm__v1__reply__free_unpacked(ok, NULL);
    s_assert_refused(
        routing_provider_respond(h, "legal-aid-ma-04", referral_id, ACCEPT, NO_REASON, ""),
        NRM__V1__STATUS__STATUS_FAILED_PRECONDITION, "respond_to_referral.referral_id");
    Nrm__V1__Reply *done =
        routing_provider_complete(h, "legal-aid-ma-04", referral_id, false, "lost_contact");
    assert_int_equal(done->status, OK);
    assert_string_equal(done->referral_ref->state, "completed");
    nrm__v1__reply__free_unpacked(done, NULL);
    Nrm__V1__Event **events = NULL;
    size_t n = routing_case_events(h, case_id, "referral.", &events);
    assert_int_equal(n, 3);
    assert_string_equal(events[1]->topic, "referral.accepted");
    assert_string_equal(events[2]->topic, "referral.completed");
    assert_false(events[2]->referral_completed->service_delivered);
    assert_string_equal(events[2]->referral_completed->reason, "lost_contact");
    routing_events_free(events, n);
    assert_false(harness_log_contains(h, "routing", 0, "Okafor"));
    assert_int_equal(harness_sql_int(h, "SELECT count(*) FROM routing.outbox WHERE"
                                        " position('Okafor'::bytea in payload) > 0"),
                     0);
    assert_int_equal(harness_sql_int(h, "SELECT count(*) FROM routing.audit_log WHERE"
                                        " status = 'PERMISSION_DENIED'"
                                        " AND agency_id = 'legal-aid-ma-06'"),
                     1);
}

static void test_an_answer_after_the_deadline_is_refused_and_the_referral_stays_pending(void **s)
{
    scenario_report_t r;
    routing_person(&r, "MA-04", 27, FEMALE, "NG", true);
    routing_person_speaks(&r, "en");
    routing_person_needs(&r, LEGAL_AID);
    char case_id[ROUTING_ID_TEXT], referral_id[ROUTING_ID_TEXT], st[ROUTING_ID_TEXT],
        provider[ROUTING_ID_TEXT], sql[SQL_MAX];
    assert_int_equal(routing_submit(h, &r, "hospital-ma-04", case_id), OK);
    assert_int_equal(routing_wait_referrals(h, case_id, 1), 1);
    assert_true(routing_referral(h, case_id, LEGAL_AID, 1, referral_id, provider));
    /* its deadline passes before the expiry check comes round */
    snprintf(sql, sizeof sql,
             "WITH u AS (UPDATE routing.referrals SET due_ms = 1 WHERE referral_id = '%s'"
             " RETURNING 1) SELECT count(*) FROM u",
             referral_id);
    assert_int_equal(harness_sql_int(h, sql), 1);
    s_assert_refused(routing_provider_respond(h, provider, referral_id, ACCEPT, NO_REASON, ""),
                     NRM__V1__STATUS__STATUS_FAILED_PRECONDITION,
                     "respond_to_referral.referral_id");
    routing_referral_state(h, referral_id, st);
    assert_string_equal(st, "pending"); /* the expiry's to pass on */
}

static void test_consent_withdrawn_revokes_consented_referrals_and_closure_the_rest(void **st)
{
    /* a 14-year-old girl in Fes: child protection (mandatory) and medical care (consented) */
    scenario_report_t s;
    routing_person(&s, "MA-03", 14, FEMALE, "MA", true);
    routing_person_speaks(&s, "ar");
    routing_person_needs(&s, MEDICAL);
    char case_id[ROUTING_ID_TEXT], cp[ROUTING_ID_TEXT], med[ROUTING_ID_TEXT];
    char state[ROUTING_ID_TEXT];
    assert_int_equal(routing_submit(h, &s, "hotline-national", case_id), OK);
    assert_int_equal(routing_wait_referrals(h, case_id, 2), 2);
    assert_true(routing_referral(h, case_id, CHILD_PROTECTION, 1, cp, NULL));
    assert_true(routing_referral(h, case_id, MEDICAL, 1, med, NULL));

    assert_int_equal(routing_withdraw_consent(h, "hotline-national", case_id), OK);
    char sql[SQL_MAX];
    snprintf(sql, sizeof sql,
             "SELECT count(*) FROM routing.referrals WHERE case_id = '%s' AND state = 'revoked'",
             case_id);
    assert_int_equal(harness_wait_sql(h, sql, 1, ROUTING_WAIT_MS), 1);
    routing_referral_state(h, med, state);
    assert_string_equal(state, "revoked");
    routing_referral_state(h, cp, state);
    assert_string_equal(state, "pending");

    assert_int_equal(routing_close_case(h, "coordinator", case_id, "transferred"), OK);
    assert_int_equal(harness_wait_sql(h, sql, 2, ROUTING_WAIT_MS), 2);
    Nrm__V1__Event **events = NULL;
    size_t n = routing_case_events(h, case_id, "referral.revoked", &events);
    assert_int_equal(n, 2);
    assert_string_equal(events[0]->referral_revoked->referral_id, med);
    assert_string_equal(events[0]->referral_revoked->reason, "consent_withdrawn");
    assert_string_equal(events[1]->referral_revoked->referral_id, cp);
    assert_string_equal(events[1]->referral_revoked->reason, "case_closed");
    routing_events_free(events, n);
    /* a revoked referral cannot be answered */
    s_assert_refused(routing_provider_respond(h, "cpu-ma-03", cp, ACCEPT, NO_REASON, ""),
                     NRM__V1__STATUS__STATUS_FAILED_PRECONDITION,
                     "respond_to_referral.referral_id");
}

static void test_provider_at_its_cap_is_skipped(void **state)
{
    /* the Agadir listening centre takes two open referrals at most; a third farm worker goes
     * to a national provider */
    char case_id[3][ROUTING_ID_TEXT], provider[ROUTING_ID_TEXT];
    for (int i = 0; i < 3; i++) {
        scenario_report_t s;
        routing_person(&s, "MA-09", 30 + i, MALE, "MA", true);
        routing_person_speaks(&s, "ar");
        routing_person_needs(&s, PSYCHOSOCIAL);
        assert_int_equal(routing_submit(h, &s, "labour-ma-09", case_id[i]), OK);
        assert_int_equal(routing_wait_referrals(h, case_id[i], 1), 1);
    }
    for (int i = 0; i < 2; i++) {
        assert_true(routing_referral(h, case_id[i], PSYCHOSOCIAL, 1, NULL, provider));
        assert_string_equal(provider, "psy-ngo-ma-09");
    }
    Nrm__V1__Event *ev = s_assert_referred(case_id[2], PSYCHOSOCIAL, "migrant-health-ngo-national");
    assert_non_null(strstr(ev->referral_created->reason, "national coverage"));
    nrm__v1__event__free_unpacked(ev, NULL);
}

/* After every scenario above (referrals made, accepted, declined, expired, revoked, completed),
 * each provider's and agreement's open counter agrees with a recount. */
static void test_open_counters_agree_with_a_recount(void **state)
{
    assert_int_equal(routing_counters_off(h), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_minor_identified_in_ma04_without_needs_gets_child_protection),
        cmocka_unit_test(test_adult_foreign_national_asking_for_return_gets_iom),
        cmocka_unit_test(test_forced_labour_in_ma06_gets_legal_aid_and_psychosocial_in_region),
        cmocka_unit_test(
            test_without_consent_only_mandatory_referrals_then_consent_brings_the_rest),
        cmocka_unit_test(test_provider_speaking_none_of_his_languages_brings_an_interpreter),
        cmocka_unit_test(test_child_without_consent_gets_child_protection_and_its_interpreter),
        cmocka_unit_test(test_shelter_need_becomes_one_shelter_request_not_a_referral),
        cmocka_unit_test(test_stranger_answering_is_refused_and_bad_requests_change_nothing),
        cmocka_unit_test(
            test_an_answer_after_the_deadline_is_refused_and_the_referral_stays_pending),
        cmocka_unit_test(test_consent_withdrawn_revokes_consented_referrals_and_closure_the_rest),
        cmocka_unit_test(test_provider_at_its_cap_is_skipped),
        cmocka_unit_test(test_open_counters_agree_with_a_recount),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
