#include "authz_fixture.h"
#include "routing_scenario.h"
#include "scenario.h"
#include "shelter_fixture.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define S_NAME 64
#define S_AGE 31

/* Prints why the fixture cannot go on and aborts the test program. */
static void s_die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "authz_fixture: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    abort();
}

void authz_fixture_case(harness_t *h, const char *manager, const char *reporter,
                        Nrm__V1__ServiceType need, authz_fixture_case_t *c)
{
    static int people;
    memset(c, 0, sizeof *c);
    char name[S_NAME];
    snprintf(name, sizeof name, "Authz Person %d", ++people);
    scenario_report_t s;
    routing_person(&s, "MA-04", S_AGE, NRM__V1__GENDER__GENDER_FEMALE, "NG", true);
    routing_person_named(&s, name, "1990-02-03");
    if (need)
        routing_person_needs(&s, need);
    char case_id[ROUTING_ID_TEXT], linked[ROUTING_ID_TEXT];
    if (routing_submit(h, &s, manager, case_id) != NRM__V1__STATUS__STATUS_OK)
        s_die("the case manager's report was refused");
    snprintf(c->case_id, sizeof c->case_id, "%s", case_id);
    snprintf(c->manager_id, sizeof c->manager_id, "%s", manager);
    if (reporter) {
        if (routing_submit(h, &s, reporter, linked) != NRM__V1__STATUS__STATUS_OK ||
            strcmp(linked, case_id) != 0)
            s_die("the reporter's report did not link to the case");
    }
    if (need == NRM__V1__SERVICE_TYPE__SERVICE_TYPE_LEGAL_AID) {
        char referral_id[ROUTING_ID_TEXT], provider_id[ROUTING_ID_TEXT];
        if (routing_wait_referrals(h, case_id, 1) != 1 ||
            !routing_referral(h, case_id, need, 1, referral_id, provider_id))
            s_die("routing made no referral for the case");
        snprintf(c->referral_id, sizeof c->referral_id, "%s", referral_id);
        snprintf(c->provider_id, sizeof c->provider_id, "%s", provider_id);
    } else if (need == NRM__V1__SERVICE_TYPE__SERVICE_TYPE_SHELTER) {
        Nrm__V1__Event *ev = shelter_fixture_outcome(
            h, case_id, NRM__V1__EVENT__BODY_SHELTER_ALLOCATED, AUTHZ_FIXTURE_WAIT_MS);
        if (!ev || ev->body_case != NRM__V1__EVENT__BODY_SHELTER_ALLOCATED)
            s_die("no bed was allocated to the case");
        snprintf(c->allocation_id, sizeof c->allocation_id, "%s",
                 ev->shelter_allocated->allocation_id);
        snprintf(c->operator_id, sizeof c->operator_id, "%s",
                 ev->shelter_allocated->operator_agency_id);
        nrm__v1__event__free_unpacked(ev, NULL);
    }
}

Nrm__V1__Status authz_fixture_call(harness_t *h, const char *service, const char *agency,
                                   Nrm__V1__Request__BodyCase body, void *message, char *field)
{
    Nrm__V1__Request req = NRM__V1__REQUEST__INIT;
    scenario_request(&req, body, message);
    Nrm__V1__Reply *reply = harness_call(h, service, agency, &req);
    if (!reply)
        s_die("%s did not answer", service);
    Nrm__V1__Status status = reply->status;
    if (field)
        snprintf(field, AUTHZ_FIXTURE_ID, "%s", reply->error_field);
    nrm__v1__reply__free_unpacked(reply, NULL);
    return status;
}

long long authz_fixture_denials(harness_t *h)
{
    return harness_sql_int(
        h, "SELECT (SELECT count(*) FROM intake.audit_log WHERE status = 'PERMISSION_DENIED')"
           " + (SELECT count(*) FROM routing.audit_log WHERE status = 'PERMISSION_DENIED')"
           " + (SELECT count(*) FROM shelter.audit_log WHERE status = 'PERMISSION_DENIED')"
           " + (SELECT count(*) FROM notify.audit_log WHERE status = 'PERMISSION_DENIED')"
           " + (SELECT count(*) FROM reintegration.audit_log WHERE status = 'PERMISSION_DENIED')"
           " + (SELECT count(*) FROM stats.audit_log WHERE status = 'PERMISSION_DENIED')");
}

void authz_fixture_plan(harness_t *h, authz_fixture_case_t *c, const char *manager,
                        const char *partner)
{
    char sql[256];
    snprintf(sql, sizeof sql, "SELECT count(*) FROM reintegration.cases WHERE case_id = '%s'",
             c->case_id);
    if (harness_wait_sql(h, sql, 1, AUTHZ_FIXTURE_WAIT_MS) != 1)
        s_die("reintegration did not learn the case");
    Nrm__V1__OpenPlan o = NRM__V1__OPEN_PLAN__INIT;
    o.case_id = c->case_id;
    o.kind = NRM__V1__PLAN_KIND__PLAN_KIND_ASSISTED_VOLUNTARY_RETURN;
    o.manager_agency_id = (char *)manager;
    Nrm__V1__Request req = NRM__V1__REQUEST__INIT;
    scenario_request(&req, NRM__V1__REQUEST__BODY_OPEN_PLAN, &o);
    req.agency_id = "coordinator";
    Nrm__V1__Reply *reply = harness_call(h, "reintegration", "coordinator", &req);
    if (!reply || reply->status != NRM__V1__STATUS__STATUS_OK)
        s_die("OpenPlan failed");
    snprintf(c->plan_id, sizeof c->plan_id, "%s", reply->plan_ref->plan_id);
    nrm__v1__reply__free_unpacked(reply, NULL);
    Nrm__V1__RecordReturn r = NRM__V1__RECORD_RETURN__INIT;
    r.plan_id = c->plan_id;
    r.country_of_return = "NG";
    r.travel_documents_obtained = r.departure_confirmed = r.arrival_confirmed = 1;
    r.reception_partner_agency_id = (char *)partner;
    if (authz_fixture_call(h, "reintegration", manager, NRM__V1__REQUEST__BODY_RECORD_RETURN, &r,
                           NULL) != NRM__V1__STATUS__STATUS_OK)
        s_die("RecordReturn failed");
}
