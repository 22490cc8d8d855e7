/* The authorization matrix, cell by cell, against real nrm-intake, nrm-routing, nrm-shelter,
 * nrm-notify, nrm-reintegration and nrm-stats processes: every request type is sent by the
 * coordinator, the case manager, a reporter whose report was linked to the case, the referred
 * provider, the shelter operator, the subscription's agency, the plan manager, the reception
 * partner of a return that has arrived, an agency stats.readers grants a measure, a service
 * identity and an agency with no relation to the object, and each answer is OK (or, where the
 * domain's answer varies, at least not PERMISSION_DENIED) exactly where the table below says so,
 * PERMISSION_DENIED everywhere else. The table is written out here and checked against nrm_authz's,
 * so that a change in one shows in both. Every refusal is audited.
 *
 * The case-file reads come first: ListCases admits an agency as a case manager when it manages
 * some case, and the submissions of the SUBMIT_REPORT row make every column's agency the case
 * manager of a case of its own. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "authz_fixture.h"
#include "harness.h"
#include "notify_fixture.h"
#include "notify_sinks.h"
#include "nrm_authz.h"
#include "routing_scenario.h"
#include "scenario.h"
#include "shelter_fixture.h"

#include <stdio.h>
#include <string.h>

#define COORDINATOR NRM_ROLE_COORDINATOR
#define MANAGER NRM_ROLE_CASE_MANAGER
#define REPORTER NRM_ROLE_REPORTER
#define PROVIDER NRM_ROLE_REFERRED_PROVIDER
#define OPERATOR NRM_ROLE_SHELTER_OPERATOR
#define SUBSCRIBER NRM_ROLE_SUBSCRIPTION_AGENCY
#define PLAN_MANAGER NRM_ROLE_PLAN_MANAGER
#define PARTNER NRM_ROLE_RECEPTION_PARTNER
#define STATS_READER NRM_ROLE_STATS_READER
#define SERVICE NRM_ROLE_SERVICE
#define OTHER NRM_ROLE_ANY_AGENCY
#define AGENCIES                                                                                   \
    (COORDINATOR | MANAGER | REPORTER | PROVIDER | OPERATOR | SUBSCRIBER | PLAN_MANAGER |          \
     PARTNER | STATS_READER | OTHER)
#define EVERYONE (AGENCIES | SERVICE)

#define B(name) NRM__V1__REQUEST__BODY_##name
#define OK NRM__V1__STATUS__STATUS_OK
#define DENIED NRM__V1__STATUS__STATUS_PERMISSION_DENIED
#define LEGAL_AID NRM__V1__SERVICE_TYPE__SERVICE_TYPE_LEGAL_AID
#define SHELTER NRM__V1__SERVICE_TYPE__SERVICE_TYPE_SHELTER

#define CASE_MANAGER_ID "police-ma-04"
#define REPORTER_ID "hotline-national"
#define SUBSCRIBER_ID "iom-ma"
#define SERVICE_ID "service:routing"
#define STRANGER_ID "consulate-ng"
#define NEW_MANAGER_ID "police-ma-06"
#define NGO_MANAGER_ID "ngo-ma-07" /* a case manager of no competent type for DecideStatus */
#define PLAN_MANAGER_ID "ilo-partner-national"
#define PARTNER_ID "reception-ng"
#define STATS_READER_ID "labour-ma-09" /* stats.readers grants it the measure "cases" */
#define TEST_SHELTER "authz-test-shelter"
#define SECRET "authz-matrix-secret-0123456789abcdef"
#define MISMATCHES 4096

/* Who may send what: the matrix as this test expects it. */
static const struct {
    Nrm__V1__Request__BodyCase body;
    unsigned allowed;   /* columns answered OK */
    bool domain_varies; /* allowed cells answer "not PERMISSION_DENIED" rather than OK */
} s_expected[] = {
    {B(GET_CASE), COORDINATOR | MANAGER | REPORTER, false},
    {B(LIST_CASES), COORDINATOR | MANAGER, false},
    {B(GET_IDENTITY), COORDINATOR | MANAGER | PROVIDER, false},
    {B(ERASE_IDENTITY), COORDINATOR, false},
    {B(SUBMIT_REPORT), AGENCIES, false},
    {B(UPDATE_CASE), COORDINATOR | MANAGER, false},
    {B(WITHDRAW_CONSENT), COORDINATOR | MANAGER, false},
    {B(CLOSE_CASE), COORDINATOR | MANAGER, false},
    {B(REASSIGN_CASE), COORDINATOR, false},
    {B(DECIDE_STATUS), COORDINATOR, false}, /* by agency type: see s_decider_case */
    {B(RESPOND_TO_REFERRAL), COORDINATOR | PROVIDER, false},
    {B(COMPLETE_REFERRAL), COORDINATOR | PROVIDER, false},
    {B(LIST_REFERRALS), COORDINATOR | MANAGER | REPORTER | PROVIDER, false},
    {B(UPSERT_PROVIDER), COORDINATOR, false},
    {B(LIST_PROVIDERS), COORDINATOR, false},
    {B(UPSERT_AGREEMENT), COORDINATOR, false},
    {B(LIST_AGREEMENTS), COORDINATOR, false},
    {B(UPSERT_SHELTER), COORDINATOR | OPERATOR, false},
    {B(CONFIRM_ARRIVAL), COORDINATOR | OPERATOR, false},
    {B(RELEASE_BED), COORDINATOR | OPERATOR, false},
    {B(GET_OCCUPANCY), COORDINATOR | OPERATOR, false},
    {B(LIST_ALLOCATIONS), COORDINATOR | MANAGER | OPERATOR, false},
    {B(REQUEST_BED), COORDINATOR | MANAGER, true}, /* the bed is held: FAILED_PRECONDITION */
    {B(UPSERT_SUBSCRIPTION), COORDINATOR | SUBSCRIBER, false},
    {B(LIST_DELIVERIES), AGENCIES, false},
    {B(RETRY_DELIVERY), COORDINATOR | SUBSCRIBER, true}, /* only a failed delivery is retried */
    {B(OPEN_PLAN), COORDINATOR | MANAGER, false},
    {B(UPSERT_GOAL), COORDINATOR | PLAN_MANAGER, false},
    {B(RECORD_RETURN), COORDINATOR | PLAN_MANAGER, false},
    {B(RECORD_FOLLOW_UP), COORDINATOR | PLAN_MANAGER | PARTNER, false},
    {B(CLOSE_PLAN), COORDINATOR | PLAN_MANAGER, false},
    {B(GET_PLAN), COORDINATOR | MANAGER | PLAN_MANAGER | PARTNER, false},
    {B(LIST_PLANS), AGENCIES, false},
    {B(REASSIGN_PLAN), COORDINATOR, false},
    {B(UPSERT_AGENCY), COORDINATOR, false},
    {B(LIST_AGENCIES), COORDINATOR, false},
    {B(RESOLVE_DUPLICATE), COORDINATOR, true}, /* a pair never proposed: FAILED_PRECONDITION */
    {B(GET_STATISTICS), COORDINATOR | STATS_READER, false},
    {B(EXPORT_CASES), COORDINATOR, false},
    {B(PING), EVERYONE, false},
    {B(FETCH), COORDINATOR | SERVICE, false},
    {B(LIST_QUARANTINE), COORDINATOR, false},
    {B(RETRY_QUARANTINED), COORDINATOR, true}, /* no such quarantined event: NOT_FOUND */
};
#define EXPECTED_COUNT (sizeof s_expected / sizeof s_expected[0])

static harness_t *h;
static notify_receiver_t *receiver;
static authz_fixture_case_t shared;    /* a case with a pending LEGAL_AID referral */
static authz_fixture_case_t bed;       /* a case with a held bed */
static authz_fixture_case_t disclosed; /* a case whose LEGAL_AID referral is accepted */
/* DecideStatus is for agency types (intake.status_deciders), whatever the relation: its case is
 * managed by an NGO, so that the case manager's cell is a case manager and nothing else (the
 * other case manager, police, is of a competent type) */
static authz_fixture_case_t s_decider_case;
static authz_fixture_case_t plan; /* a case with a return plan whose person has arrived */
static char subscription_id[65];
static char delivery_id[AUTHZ_FIXTURE_ID];
static char url[256];

/* A shelter operated by the operator of the held bed, inactive so that no bed goes there. */
static const shelter_fixture_t *s_test_shelter(void)
{
    static shelter_fixture_t f = {
        TEST_SHELTER, "",  "MA-12", 2,     NRM__V1__SHELTER_POPULATION__SHELTER_POPULATION_MEN,
        18,           120, false,   false, "ar"};
    f.operator_id = bed.operator_id;
    return &f;
}

static int setup(void **state)
{
    h = harness_new("authz_matrix");
    receiver = notify_receiver_new();
    notify_fixture_settings_t settings = {
        .max_attempts = 2, .backoff_ms = 100, .max_backoff_ms = 200, .timeout_ms = 1000};
    notify_fixture_config(h, &settings, NULL);
    harness_config_set(
        h, "stats.readers",
        json_pack("[{s:s, s:[s]}]", "agency_id", STATS_READER_ID, "measures", "cases"));
    const char *services[] = {"intake", "routing", "shelter", "notify", "reintegration", "stats"};
    for (size_t i = 0; i < sizeof services / sizeof *services; i++)
        if (harness_start(h, services[i], 0) != 0)
            return -1;
    authz_fixture_case(h, CASE_MANAGER_ID, REPORTER_ID, LEGAL_AID, &shared);
    authz_fixture_case(h, CASE_MANAGER_ID, REPORTER_ID, SHELTER, &bed);
    authz_fixture_case(h, NGO_MANAGER_ID, REPORTER_ID, 0, &s_decider_case);
    char known[256]; /* shelter knows the bed's case manager (from intake's stream) */
    snprintf(known, sizeof known, "SELECT count(*) FROM shelter.case_managers WHERE case_id = '%s'",
             bed.case_id);
    if (harness_wait_sql(h, known, 1, AUTHZ_FIXTURE_WAIT_MS) != 1)
        return -1;
    authz_fixture_case(h, CASE_MANAGER_ID, NULL, 0, &plan);
    authz_fixture_plan(h, &plan, PLAN_MANAGER_ID, PARTNER_ID);
    shelter_fixture_upsert_t u;
    shelter_fixture_upsert(&u, s_test_shelter());
    u.upsert.active = 0;
    if (authz_fixture_call(h, "shelter", "coordinator", B(UPSERT_SHELTER), &u.upsert, NULL) != OK)
        return -1;
    /* the provider of an accepted referral (with consent to data sharing) reads the identity */
    authz_fixture_case(h, CASE_MANAGER_ID, REPORTER_ID, LEGAL_AID, &disclosed);
    Nrm__V1__RespondToReferral accept = NRM__V1__RESPOND_TO_REFERRAL__INIT;
    accept.referral_id = disclosed.referral_id;
    accept.decision = NRM__V1__REFERRAL_DECISION__REFERRAL_DECISION_ACCEPT;
    if (authz_fixture_call(h, "routing", disclosed.provider_id, B(RESPOND_TO_REFERRAL), &accept,
                           NULL) != OK)
        return -1;
    char sql[256];
    snprintf(sql, sizeof sql,
             "SELECT count(*) FROM intake.referral_access WHERE referral_id = '%s'"
             " AND state = 'accepted'",
             disclosed.referral_id);
    if (harness_wait_sql(h, sql, 1, AUTHZ_FIXTURE_WAIT_MS) != 1)
        return -1;
    /* the subscription's agency, and a delivery of its own: the case it reported is handed to
     * another case manager (so that it manages none: see ListCases) */
    notify_fixture_subscribe_ok(h, SUBSCRIBER_ID, "webhook",
                                notify_fixture_url(receiver, SUBSCRIBER_ID, url), NULL, SECRET,
                                subscription_id);
    authz_fixture_case_t own;
    authz_fixture_case(h, SUBSCRIBER_ID, NULL, 0, &own);
    Nrm__V1__ReassignCase handover = NRM__V1__REASSIGN_CASE__INIT;
    handover.case_id = own.case_id;
    handover.case_manager_agency_id = CASE_MANAGER_ID;
    if (authz_fixture_call(h, "intake", "coordinator", B(REASSIGN_CASE), &handover, NULL) != OK)
        return -1;
    if (notify_fixture_wait(h, "SELECT count(*) FROM notify.deliveries WHERE agency_id = 'iom-ma'",
                            1) != 1)
        return -1;
    PGresult *res =
        harness_sql(h, "SELECT delivery_id FROM notify.deliveries WHERE agency_id = 'iom-ma'");
    snprintf(delivery_id, sizeof delivery_id, "%s", PQgetvalue(res, 0, 0));
    PQclear(res);
    return 0;
}

static int teardown(void **state)
{
    harness_destroy(&h);
    notify_receiver_destroy(&receiver);
    return 0;
}

/* The agency that sends a request in column about obj. */
static const char *s_actor(unsigned column, const authz_fixture_case_t *obj)
{
    switch (column) {
    case COORDINATOR:
        return "coordinator";
    case MANAGER:
        return obj->manager_id[0] ? obj->manager_id : CASE_MANAGER_ID;
    case REPORTER:
        return REPORTER_ID;
    case PROVIDER:
        return obj->provider_id[0] ? obj->provider_id : shared.provider_id;
    case OPERATOR:
        return obj->operator_id[0] ? obj->operator_id : bed.operator_id;
    case SUBSCRIBER:
        return SUBSCRIBER_ID;
    case PLAN_MANAGER:
        return PLAN_MANAGER_ID;
    case PARTNER:
        return PARTNER_ID;
    case STATS_READER:
        return STATS_READER_ID;
    case SERVICE:
        return SERVICE_ID;
    default:
        return STRANGER_ID;
    }
}

/* The object of a cell: a fresh one where an allowed request changes its state for good,
 * the shared ones otherwise. */
static void s_object(Nrm__V1__Request__BodyCase body, bool allowed, authz_fixture_case_t *obj)
{
    if (body == B(GET_IDENTITY)) {
        *obj = disclosed;
        return;
    }
    bool fresh =
        allowed &&
        (body == B(CLOSE_CASE) || body == B(REASSIGN_CASE) || body == B(ERASE_IDENTITY) ||
         body == B(RESPOND_TO_REFERRAL) || body == B(COMPLETE_REFERRAL) || body == B(RELEASE_BED) ||
         body == B(OPEN_PLAN) || body == B(CLOSE_PLAN) || body == B(RECORD_FOLLOW_UP));
    bool about_plan = body == B(UPSERT_GOAL) || body == B(RECORD_RETURN) ||
                      body == B(RECORD_FOLLOW_UP) || body == B(CLOSE_PLAN) || body == B(GET_PLAN) ||
                      body == B(REASSIGN_PLAN);
    const authz_fixture_case_t *same = body == B(CONFIRM_ARRIVAL) || body == B(RELEASE_BED) ||
                                               body == B(LIST_ALLOCATIONS) || body == B(REQUEST_BED)
                                           ? &bed
                                       : about_plan ? &plan
                                                    : &shared;
    if (body == B(DECIDE_STATUS)) {
        *obj = s_decider_case;
        return;
    }
    if (!fresh) {
        *obj = *same;
        return;
    }
    if (body == B(OPEN_PLAN) || about_plan) { /* a case (with its plan) of the case manager */
        authz_fixture_case(h, CASE_MANAGER_ID, NULL, 0, obj);
        char sql[256];
        snprintf(sql, sizeof sql, "SELECT count(*) FROM reintegration.cases WHERE case_id = '%s'",
                 obj->case_id);
        assert_int_equal(harness_wait_sql(h, sql, 1, AUTHZ_FIXTURE_WAIT_MS), 1);
        if (about_plan)
            authz_fixture_plan(h, obj, PLAN_MANAGER_ID, PARTNER_ID);
        return;
    }
    Nrm__V1__ServiceType need = body == B(RELEASE_BED) ? SHELTER
                                : body == B(RESPOND_TO_REFERRAL) || body == B(COMPLETE_REFERRAL)
                                    ? LEGAL_AID
                                    : 0;
    authz_fixture_case(h, CASE_MANAGER_ID, REPORTER_ID, need, obj);
    if (body == B(COMPLETE_REFERRAL)) { /* a referral is completed once accepted */
        Nrm__V1__RespondToReferral r = NRM__V1__RESPOND_TO_REFERRAL__INIT;
        r.referral_id = obj->referral_id;
        r.decision = NRM__V1__REFERRAL_DECISION__REFERRAL_DECISION_ACCEPT;
        assert_int_equal(
            authz_fixture_call(h, "routing", obj->provider_id, B(RESPOND_TO_REFERRAL), &r, NULL),
            OK);
    }
}

/* Sends the request of body about obj as agency; returns the status, field set. */
static Nrm__V1__Status s_send(Nrm__V1__Request__BodyCase body, const authz_fixture_case_t *obj,
                              const char *agency, char *field)
{
    static int reports;
    switch (body) {
    case B(GET_CASE): {
        Nrm__V1__GetCase g = NRM__V1__GET_CASE__INIT;
        g.case_id = (char *)obj->case_id;
        return authz_fixture_call(h, "intake", agency, body, &g, field);
    }
    case B(LIST_CASES): {
        Nrm__V1__ListCases l = NRM__V1__LIST_CASES__INIT;
        return authz_fixture_call(h, "intake", agency, body, &l, field);
    }
    case B(GET_IDENTITY): {
        Nrm__V1__GetIdentity g = NRM__V1__GET_IDENTITY__INIT;
        g.case_id = (char *)obj->case_id;
        g.purpose = "service_delivery";
        return authz_fixture_call(h, "intake", agency, body, &g, field);
    }
    case B(ERASE_IDENTITY): {
        Nrm__V1__EraseIdentity e = NRM__V1__ERASE_IDENTITY__INIT;
        e.case_id = (char *)obj->case_id;
        e.reason = "recorded_in_error";
        return authz_fixture_call(h, "intake", agency, body, &e, field);
    }
    case B(SUBMIT_REPORT): {
        scenario_report_t s;
        routing_person(&s, "MA-01", 40 + reports++ % 20, NRM__V1__GENDER__GENDER_MALE, "SN", false);
        return authz_fixture_call(h, "intake", agency, body, &s.report, field);
    }
    case B(UPDATE_CASE): {
        Nrm__V1__UpdateCase u = NRM__V1__UPDATE_CASE__INIT;
        u.case_id = (char *)obj->case_id;
        u.urgency = NRM__V1__URGENCY__URGENCY_URGENT;
        return authz_fixture_call(h, "intake", agency, body, &u, field);
    }
    case B(WITHDRAW_CONSENT): {
        Nrm__V1__WithdrawConsent w = NRM__V1__WITHDRAW_CONSENT__INIT;
        w.case_id = (char *)obj->case_id;
        return authz_fixture_call(h, "intake", agency, body, &w, field);
    }
    case B(CLOSE_CASE): {
        Nrm__V1__CloseCase c = NRM__V1__CLOSE_CASE__INIT;
        c.case_id = (char *)obj->case_id;
        c.reason = "duplicate";
        return authz_fixture_call(h, "intake", agency, body, &c, field);
    }
    case B(REASSIGN_CASE): {
        Nrm__V1__ReassignCase r = NRM__V1__REASSIGN_CASE__INIT;
        r.case_id = (char *)obj->case_id;
        r.case_manager_agency_id = NEW_MANAGER_ID;
        return authz_fixture_call(h, "intake", agency, body, &r, field);
    }
    case B(DECIDE_STATUS): {
        Nrm__V1__DecideStatus d = NRM__V1__DECIDE_STATUS__INIT;
        d.case_id = (char *)obj->case_id;
        d.status = NRM__V1__TRAFFICKING_STATUS__TRAFFICKING_STATUS_IDENTIFIED_VICTIM;
        d.basis = "interview";
        return authz_fixture_call(h, "intake", agency, body, &d, field);
    }
    case B(RESPOND_TO_REFERRAL): {
        Nrm__V1__RespondToReferral r = NRM__V1__RESPOND_TO_REFERRAL__INIT;
        r.referral_id = (char *)obj->referral_id;
        r.decision = NRM__V1__REFERRAL_DECISION__REFERRAL_DECISION_ACCEPT;
        return authz_fixture_call(h, "routing", agency, body, &r, field);
    }
    case B(COMPLETE_REFERRAL): {
        Nrm__V1__CompleteReferral c = NRM__V1__COMPLETE_REFERRAL__INIT;
        c.referral_id = (char *)obj->referral_id;
        c.service_delivered = 1;
        return authz_fixture_call(h, "routing", agency, body, &c, field);
    }
    case B(LIST_REFERRALS): { /* about a case: its referrals */
        Nrm__V1__ListReferrals l = NRM__V1__LIST_REFERRALS__INIT;
        l.case_id = (char *)obj->case_id;
        return authz_fixture_call(h, "routing", agency, body, &l, field);
    }
    case B(UPSERT_PROVIDER): { /* an agency that is no provider, made one but inactive */
        static Nrm__V1__ServiceType services[] = {
            NRM__V1__SERVICE_TYPE__SERVICE_TYPE_RETURN_ASSISTANCE};
        static char *languages[] = {"ar"};
        Nrm__V1__UpsertProvider u = NRM__V1__UPSERT_PROVIDER__INIT;
        u.id = "hotline-national";
        u.n_services = 1;
        u.services = services;
        u.national = 1;
        u.n_languages = 1;
        u.languages = languages;
        u.max_open_referrals = 1;
        return authz_fixture_call(h, "routing", agency, body, &u, field);
    }
    case B(LIST_PROVIDERS): {
        Nrm__V1__ListProviders l = NRM__V1__LIST_PROVIDERS__INIT;
        return authz_fixture_call(h, "routing", agency, body, &l, field);
    }
    case B(UPSERT_AGREEMENT): { /* an agreement long ended: it changes no routing */
        static Nrm__V1__ServiceType services[] = {
            NRM__V1__SERVICE_TYPE__SERVICE_TYPE_RETURN_ASSISTANCE};
        Nrm__V1__UpsertAgreement a = NRM__V1__UPSERT_AGREEMENT__INIT;
        a.agreement_id = "authz-agreement";
        a.provider_id = "iom-ma";
        a.n_services = 1;
        a.services = services;
        a.capacity = 1;
        a.start_date = "2020-01-01";
        a.end_date = "2020-12-31";
        return authz_fixture_call(h, "routing", agency, body, &a, field);
    }
    case B(LIST_AGREEMENTS): {
        Nrm__V1__ListAgreements l = NRM__V1__LIST_AGREEMENTS__INIT;
        return authz_fixture_call(h, "routing", agency, body, &l, field);
    }
    case B(UPSERT_SHELTER): {
        shelter_fixture_upsert_t u;
        shelter_fixture_upsert(&u, s_test_shelter());
        u.upsert.active = 0;
        return authz_fixture_call(h, "shelter", agency, body, &u.upsert, field);
    }
    case B(CONFIRM_ARRIVAL): {
        Nrm__V1__ConfirmArrival c = NRM__V1__CONFIRM_ARRIVAL__INIT;
        c.allocation_id = (char *)obj->allocation_id;
        return authz_fixture_call(h, "shelter", agency, body, &c, field);
    }
    case B(RELEASE_BED): {
        Nrm__V1__ReleaseBed r = NRM__V1__RELEASE_BED__INIT;
        r.allocation_id = (char *)obj->allocation_id;
        r.reason = "departed";
        return authz_fixture_call(h, "shelter", agency, body, &r, field);
    }
    case B(GET_OCCUPANCY): {
        Nrm__V1__GetOccupancy g = NRM__V1__GET_OCCUPANCY__INIT;
        return authz_fixture_call(h, "shelter", agency, body, &g, field);
    }
    case B(LIST_ALLOCATIONS): { /* about a case: its bed */
        Nrm__V1__ListAllocations l = NRM__V1__LIST_ALLOCATIONS__INIT;
        l.case_id = (char *)obj->case_id;
        return authz_fixture_call(h, "shelter", agency, body, &l, field);
    }
    case B(REQUEST_BED): {
        Nrm__V1__RequestBed r = NRM__V1__REQUEST_BED__INIT;
        r.case_id = (char *)obj->case_id;
        return authz_fixture_call(h, "shelter", agency, body, &r, field);
    }
    case B(UPSERT_SUBSCRIPTION): {
        Nrm__V1__UpsertSubscription s = NRM__V1__UPSERT_SUBSCRIPTION__INIT;
        s.subscription_id = subscription_id;
        s.agency_id = SUBSCRIBER_ID;
        s.channel = "webhook";
        s.address = url;
        s.secret = SECRET;
        return authz_fixture_call(h, "notify", agency, body, &s, field);
    }
    case B(LIST_DELIVERIES): {
        Nrm__V1__ListDeliveries l = NRM__V1__LIST_DELIVERIES__INIT;
        return authz_fixture_call(h, "notify", agency, body, &l, field);
    }
    case B(RETRY_DELIVERY): {
        Nrm__V1__RetryDelivery r = NRM__V1__RETRY_DELIVERY__INIT;
        r.delivery_id = delivery_id;
        return authz_fixture_call(h, "notify", agency, body, &r, field);
    }
    case B(OPEN_PLAN): {
        Nrm__V1__OpenPlan o = NRM__V1__OPEN_PLAN__INIT;
        o.case_id = (char *)obj->case_id;
        o.kind = NRM__V1__PLAN_KIND__PLAN_KIND_LOCAL_REINTEGRATION;
        return authz_fixture_call(h, "reintegration", agency, body, &o, field);
    }
    case B(UPSERT_GOAL): {
        Nrm__V1__UpsertGoal g = NRM__V1__UPSERT_GOAL__INIT;
        g.plan_id = (char *)obj->plan_id;
        g.domain = NRM__V1__GOAL_DOMAIN__GOAL_DOMAIN_EMPLOYMENT;
        return authz_fixture_call(h, "reintegration", agency, body, &g, field);
    }
    case B(RECORD_RETURN): {
        Nrm__V1__RecordReturn r = NRM__V1__RECORD_RETURN__INIT;
        r.plan_id = (char *)obj->plan_id;
        r.country_of_return = "NG";
        r.travel_documents_obtained = r.departure_confirmed = r.arrival_confirmed = 1;
        r.reception_partner_agency_id = PARTNER_ID;
        return authz_fixture_call(h, "reintegration", agency, body, &r, field);
    }
    case B(RECORD_FOLLOW_UP): {
        Nrm__V1__RecordFollowUp f = NRM__V1__RECORD_FOLLOW_UP__INIT;
        f.plan_id = (char *)obj->plan_id;
        return authz_fixture_call(h, "reintegration", agency, body, &f, field);
    }
    case B(CLOSE_PLAN): {
        Nrm__V1__ClosePlan c = NRM__V1__CLOSE_PLAN__INIT;
        c.plan_id = (char *)obj->plan_id;
        c.outcome = NRM__V1__PLAN_OUTCOME__PLAN_OUTCOME_REINTEGRATED;
        return authz_fixture_call(h, "reintegration", agency, body, &c, field);
    }
    case B(GET_PLAN): {
        Nrm__V1__GetPlan g = NRM__V1__GET_PLAN__INIT;
        g.plan_id = (char *)obj->plan_id;
        return authz_fixture_call(h, "reintegration", agency, body, &g, field);
    }
    case B(LIST_PLANS): {
        Nrm__V1__ListPlans l = NRM__V1__LIST_PLANS__INIT;
        return authz_fixture_call(h, "reintegration", agency, body, &l, field);
    }
    case B(REASSIGN_PLAN): {
        Nrm__V1__ReassignPlan r = NRM__V1__REASSIGN_PLAN__INIT;
        r.plan_id = (char *)obj->plan_id;
        r.manager_agency_id = PLAN_MANAGER_ID; /* the same: the plan stays as it is */
        return authz_fixture_call(h, "reintegration", agency, body, &r, field);
    }
    case B(UPSERT_AGENCY): { /* a run-time agency without keys, registered again each time */
        Nrm__V1__UpsertAgency u = NRM__V1__UPSERT_AGENCY__INIT;
        u.agency_id = "matrix-partner";
        u.type = NRM__V1__AGENCY_TYPE__AGENCY_TYPE_NGO;
        u.active = 1;
        return authz_fixture_call(h, "intake", agency, body, &u, field);
    }
    case B(LIST_AGENCIES): {
        Nrm__V1__ListAgencies l = NRM__V1__LIST_AGENCIES__INIT;
        return authz_fixture_call(h, "intake", agency, body, &l, field);
    }
    case B(RESOLVE_DUPLICATE): {
        Nrm__V1__ResolveDuplicate r = NRM__V1__RESOLVE_DUPLICATE__INIT;
        r.case_id = (char *)obj->case_id;
        r.other_case_id = (char *)shared.case_id;
        return authz_fixture_call(h, "intake", agency, body, &r, field);
    }
    case B(GET_STATISTICS): {
        Nrm__V1__GetStatistics g = NRM__V1__GET_STATISTICS__INIT;
        g.measure = "cases";
        return authz_fixture_call(h, "stats", agency, body, &g, field);
    }
    case B(EXPORT_CASES): {
        Nrm__V1__ExportCases x = NRM__V1__EXPORT_CASES__INIT;
        return authz_fixture_call(h, "stats", agency, body, &x, field);
    }
    case B(PING): {
        Nrm__V1__Ping p = NRM__V1__PING__INIT;
        return authz_fixture_call(h, "intake", agency, body, &p, field);
    }
    case B(FETCH): {
        Nrm__V1__Fetch f = NRM__V1__FETCH__INIT;
        f.stream = "intake";
        f.from_seq = 1;
        f.max = 1;
        return authz_fixture_call(h, "intake", agency, body, &f, field);
    }
    case B(LIST_QUARANTINE): {
        Nrm__V1__ListQuarantine l = NRM__V1__LIST_QUARANTINE__INIT;
        return authz_fixture_call(h, "routing", agency, body, &l, field);
    }
    case B(RETRY_QUARANTINED): {
        Nrm__V1__RetryQuarantined r = NRM__V1__RETRY_QUARANTINED__INIT;
        r.id = 1;
        return authz_fixture_call(h, "routing", agency, body, &r, field);
    }
    default:
        fail_msg("no request built for body %d", (int)body);
        return NRM__V1__STATUS__STATUS_INTERNAL;
    }
}

static void test_the_expected_matrix_is_the_matrix_of_the_code(void **state)
{
    size_t n_rules = 0, n_columns = 0;
    const nrm_authz_rule_t *rules = nrm_authz_rules(&n_rules);
    const nrm_authz_column_t *columns = nrm_authz_columns(&n_columns);
    assert_int_equal(n_rules, EXPECTED_COUNT);
    for (size_t r = 0; r < EXPECTED_COUNT; r++) {
        const nrm_authz_rule_t *rule = nrm_authz_rule(s_expected[r].body);
        assert_non_null(rule);
        for (size_t c = 0; c < n_columns; c++)
            if (nrm_authz_cell(rule, columns[c].role) !=
                ((s_expected[r].allowed & columns[c].role) != 0))
                fail_msg("%s from %s: the test expects %s, nrm_authz says otherwise",
                         nrm_authz_body_name(rule->body), columns[c].title,
                         (s_expected[r].allowed & columns[c].role) ? "allowed" : "denied");
    }
    (void)rules;
}

static void test_every_request_from_every_role_gets_the_answer_of_the_matrix(void **state)
{
    size_t n_columns = 0;
    const nrm_authz_column_t *columns = nrm_authz_columns(&n_columns);
    long long denials_before = authz_fixture_denials(h), denied_cells = 0;
    static char mismatches[MISMATCHES];
    size_t used = 0;
    for (size_t r = 0; r < EXPECTED_COUNT; r++) {
        for (size_t c = 0; c < n_columns; c++) {
            Nrm__V1__Request__BodyCase body = s_expected[r].body;
            bool allowed = (s_expected[r].allowed & columns[c].role) != 0;
            authz_fixture_case_t obj;
            s_object(body, allowed, &obj);
            const char *agency = s_actor(columns[c].role, &obj);
            char field[AUTHZ_FIXTURE_ID];
            Nrm__V1__Status st = s_send(body, &obj, agency, field);
            bool right =
                allowed ? (s_expected[r].domain_varies ? st != DENIED : st == OK) : st == DENIED;
            denied_cells += !allowed;
            if (!right && used < sizeof mismatches)
                used += (size_t)snprintf(mismatches + used, sizeof mismatches - used,
                                         "  %s from %s (%s): status %d field %s, expected %s\n",
                                         nrm_authz_body_name(body), columns[c].title, agency,
                                         (int)st, field, allowed ? "allowed" : "denied");
        }
    }
    if (used)
        fail_msg("cells that disagree with the matrix:\n%s", mismatches);
    assert_int_equal(authz_fixture_denials(h) - denials_before, denied_cells);
}

/* The requests about one object that a handler looks up by its id. */
static const Nrm__V1__Request__BodyCase s_about_an_object[] = {
    B(GET_CASE),        B(GET_IDENTITY),  B(UPDATE_CASE),         B(WITHDRAW_CONSENT),
    B(CLOSE_CASE),      B(DECIDE_STATUS), B(RESPOND_TO_REFERRAL), B(COMPLETE_REFERRAL),
    B(CONFIRM_ARRIVAL), B(RELEASE_BED),   B(REQUEST_BED),         B(RETRY_DELIVERY),
    B(OPEN_PLAN),       B(UPSERT_GOAL),   B(RECORD_RETURN),       B(RECORD_FOLLOW_UP),
    B(CLOSE_PLAN),      B(GET_PLAN),
};

static void test_who_may_not_act_on_an_object_is_not_told_whether_it_exists(void **state)
{
    /* an object of every kind that does not exist */
    authz_fixture_case_t none;
    memset(&none, 0, sizeof none);
    const char *unknown = "00000000-0000-4000-8000-00000000beef";
    snprintf(none.case_id, sizeof none.case_id, "%s", unknown);
    snprintf(none.referral_id, sizeof none.referral_id, "%s", unknown);
    snprintf(none.allocation_id, sizeof none.allocation_id, "%s", unknown);
    snprintf(none.plan_id, sizeof none.plan_id, "%s", unknown);
    char known_delivery[sizeof delivery_id];
    snprintf(known_delivery, sizeof known_delivery, "%s", delivery_id);
    snprintf(delivery_id, sizeof delivery_id, "%s", unknown);

    size_t n_columns = 0;
    const nrm_authz_column_t *columns = nrm_authz_columns(&n_columns);
    long long denials_before = authz_fixture_denials(h), denied = 0;
    static char mismatches[MISMATCHES];
    size_t used = 0;
    for (size_t r = 0; r < sizeof s_about_an_object / sizeof *s_about_an_object; r++) {
        Nrm__V1__Request__BodyCase body = s_about_an_object[r];
        unsigned allowed = 0;
        for (size_t e = 0; e < EXPECTED_COUNT; e++)
            if (s_expected[e].body == body)
                allowed = s_expected[e].allowed;
        for (size_t c = 0; c < n_columns; c++) {
            unsigned column = columns[c].role;
            /* the coordinator is told; an agency that holds this relation to other objects,
             * or none, is refused as for an object of someone else's */
            bool asks = column == COORDINATOR || column == OTHER || (allowed & column) != 0;
            if (!asks || column == SERVICE || column == STATS_READER)
                continue;
            Nrm__V1__Status want =
                column == COORDINATOR ? NRM__V1__STATUS__STATUS_NOT_FOUND : DENIED;
            const char *agency = s_actor(column, &none);
            char field[AUTHZ_FIXTURE_ID];
            Nrm__V1__Status st = s_send(body, &none, agency, field);
            denied += want == DENIED;
            if (st != want && used < sizeof mismatches)
                used += (size_t)snprintf(mismatches + used, sizeof mismatches - used,
                                         "  %s from %s (%s): status %d field %s, expected %d\n",
                                         nrm_authz_body_name(body), columns[c].title, agency,
                                         (int)st, field, (int)want);
        }
    }
    snprintf(delivery_id, sizeof delivery_id, "%s", known_delivery);
    if (used)
        fail_msg("unknown objects answered otherwise:\n%s", mismatches);
    assert_int_equal(authz_fixture_denials(h) - denials_before, denied);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_the_expected_matrix_is_the_matrix_of_the_code),
        cmocka_unit_test(test_every_request_from_every_role_gets_the_answer_of_the_matrix),
        cmocka_unit_test(test_who_may_not_act_on_an_object_is_not_told_whether_it_exists),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
