#include "reint_fixture.h"

#include <czmq.h>
#include <stdio.h>
#include <string.h>

#define S_SQL_MAX 512
#define S_POLL_MS 50

bool reint_refer(harness_t *h, const char *nationality, Nrm__V1__ServiceType service,
                 const char *full_name, reint_person_t *p)
{
    memset(p, 0, sizeof *p);
    scenario_report_t s;
    routing_person(&s, "MA-06", 30, NRM__V1__GENDER__GENDER_FEMALE, nationality, true);
    if (full_name)
        routing_person_named(&s, full_name, "1990-04-12");
    routing_person_needs(&s, service);
    routing_person_speaks(&s, "fr");
    if (routing_submit(h, &s, REINT_REPORTER, p->case_id) != NRM__V1__STATUS__STATUS_OK)
        return false;
    if (routing_wait_referrals(h, p->case_id, 1) < 1)
        return false;
    return routing_referral(h, p->case_id, service, 1, p->referral_id, p->provider);
}

bool reint_accept(harness_t *h, const reint_person_t *p)
{
    Nrm__V1__Reply *r = routing_provider_respond(
        h, p->provider, p->referral_id, NRM__V1__REFERRAL_DECISION__REFERRAL_DECISION_ACCEPT,
        NRM__V1__DECLINE_REASON__DECLINE_REASON_UNSPECIFIED, "");
    bool ok = r && r->status == NRM__V1__STATUS__STATUS_OK;
    if (r)
        nrm__v1__reply__free_unpacked(r, NULL);
    return ok;
}

Nrm__V1__Reply *reint_call(harness_t *h, const char *agency, Nrm__V1__Request__BodyCase body,
                           void *message)
{
    Nrm__V1__Request req = NRM__V1__REQUEST__INIT;
    scenario_request(&req, body, message);
    req.agency_id = (char *)agency;
    return harness_call(h, "reintegration", agency, &req);
}

int reint_status(harness_t *h, const char *agency, Nrm__V1__Request__BodyCase body, void *message)
{
    Nrm__V1__Reply *r = reint_call(h, agency, body, message);
    if (!r)
        return -1;
    int status = r->status;
    nrm__v1__reply__free_unpacked(r, NULL);
    return status;
}

long long reint_wait_plans(harness_t *h, const char *case_id, long long count)
{
    char sql[S_SQL_MAX];
    snprintf(sql, sizeof sql, "SELECT count(*) FROM reintegration.plans WHERE case_id = '%s'",
             case_id);
    return harness_wait_sql(h, sql, count, REINT_WAIT_MS);
}

bool reint_plan_of(harness_t *h, const char *case_id, char plan_id[ROUTING_ID_TEXT])
{
    char sql[S_SQL_MAX];
    snprintf(sql, sizeof sql,
             "SELECT plan_id FROM reintegration.plans WHERE case_id = '%s'"
             " ORDER BY opened_ms DESC LIMIT 1",
             case_id);
    PGresult *res = harness_sql(h, sql);
    bool found = PQntuples(res) == 1;
    snprintf(plan_id, ROUTING_ID_TEXT, "%s", found ? PQgetvalue(res, 0, 0) : "");
    PQclear(res);
    return found;
}

long long reint_count_events(harness_t *h, const char *topic, const char *case_id)
{
    char sql[S_SQL_MAX];
    if (case_id)
        snprintf(sql, sizeof sql,
                 "SELECT count(*) FROM reintegration.outbox WHERE topic = '%s'"
                 " AND position(convert_to('%s', 'UTF8') in payload) > 0",
                 topic, case_id);
    else
        snprintf(sql, sizeof sql, "SELECT count(*) FROM reintegration.outbox WHERE topic = '%s'",
                 topic);
    return harness_sql_int(h, sql);
}

bool reint_wait_case(harness_t *h, const char *case_id)
{
    char sql[S_SQL_MAX];
    snprintf(sql, sizeof sql, "SELECT count(*) FROM reintegration.cases WHERE case_id = '%s'",
             case_id);
    return harness_wait_sql(h, sql, 1, REINT_WAIT_MS) == 1;
}
