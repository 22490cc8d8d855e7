#include "directory_fixture.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

#define S_SQL_MAX 512
#define S_SECONDS_PER_DAY 86400

static char *s_languages[] = {"fr", "en"};
static Nrm__V1__ServiceType s_services[] = {DIRECTORY_RETURN};

/* Sends one request body to routing instance as the coordinator; returns the status. */
static Nrm__V1__Status s_send(harness_t *h, int instance, Nrm__V1__Request__BodyCase body,
                              void *message)
{
    Nrm__V1__Request req = NRM__V1__REQUEST__INIT;
    scenario_request(&req, body, message);
    Nrm__V1__Reply *reply = harness_call_at(h, "routing", instance, "coordinator", &req);
    if (!reply)
        return NRM__V1__STATUS__STATUS_UNAVAILABLE;
    Nrm__V1__Status st = reply->status;
    if (st != NRM__V1__STATUS__STATUS_OK)
        fprintf(stderr, "routing said %d on %s: %s\n", (int)st, reply->error_field,
                reply->error_message);
    nrm__v1__reply__free_unpacked(reply, NULL);
    return st;
}

Nrm__V1__Status directory_upsert_provider(harness_t *h, int instance, const directory_provider_t *p)
{
    return directory_upsert_provider_for(h, instance, p, NRM__V1__GENDER__GENDER_UNSPECIFIED);
}

Nrm__V1__Status directory_upsert_provider_for(harness_t *h, int instance,
                                              const directory_provider_t *p, Nrm__V1__Gender only)
{
    Nrm__V1__UpsertProvider u = NRM__V1__UPSERT_PROVIDER__INIT;
    char *regions[] = {(char *)p->region};
    u.id = (char *)p->id;
    u.n_services = 1;
    u.services = s_services;
    u.n_regions = p->region ? 1 : 0;
    u.regions = regions;
    u.national = !p->region;
    u.n_languages = 2;
    u.languages = s_languages;
    u.max_open_referrals = p->cap;
    u.active = p->active;
    Nrm__V1__ProviderEligibility eligibility = NRM__V1__PROVIDER_ELIGIBILITY__INIT;
    Nrm__V1__Gender genders[] = {only};
    if (only != NRM__V1__GENDER__GENDER_UNSPECIFIED) {
        eligibility.n_genders = 1;
        eligibility.genders = genders;
        u.eligibility = &eligibility;
    }
    return s_send(h, instance, NRM__V1__REQUEST__BODY_UPSERT_PROVIDER, &u);
}

Nrm__V1__Status directory_upsert_agreement(harness_t *h, const char *agreement_id,
                                           const char *provider_id, const char *region,
                                           int capacity, const char *start_date,
                                           const char *end_date)
{
    Nrm__V1__UpsertAgreement a = NRM__V1__UPSERT_AGREEMENT__INIT;
    char *regions[] = {(char *)region};
    a.agreement_id = (char *)agreement_id;
    a.provider_id = (char *)provider_id;
    a.n_services = 1;
    a.services = s_services;
    a.n_regions = region ? 1 : 0;
    a.regions = regions;
    a.capacity = capacity;
    a.start_date = (char *)start_date;
    a.end_date = (char *)end_date;
    return s_send(h, 0, NRM__V1__REQUEST__BODY_UPSERT_AGREEMENT, &a);
}

void directory_case(harness_t *h, const char *region, Nrm__V1__Urgency urgency,
                    char case_id[ROUTING_ID_TEXT])
{
    scenario_report_t s;
    routing_person(&s, region, 30, NRM__V1__GENDER__GENDER_MALE, "NG", true);
    routing_person_needs(&s, DIRECTORY_RETURN);
    s.report.urgency = urgency;
    if (routing_submit(h, &s, "police-ma-01", case_id) != NRM__V1__STATUS__STATUS_OK) {
        fprintf(stderr, "intake refused the report\n");
        case_id[0] = '\0';
    }
}

void directory_provider_of(harness_t *h, const char *case_id, int wait_ms,
                           char provider[ROUTING_ID_TEXT])
{
    char sql[S_SQL_MAX];
    snprintf(sql, sizeof sql,
             "SELECT count(*) FROM routing.referrals WHERE case_id = '%s' AND service = %d",
             case_id, (int)DIRECTORY_RETURN);
    provider[0] = '\0';
    if (harness_wait_sql(h, sql, 1, wait_ms) < 1)
        return;
    routing_referral(h, case_id, DIRECTORY_RETURN, 1, NULL, provider);
}

bool directory_need_is(harness_t *h, const char *case_id, const char *state)
{
    char sql[S_SQL_MAX];
    snprintf(sql, sizeof sql,
             "SELECT count(*) FROM routing.case_services WHERE case_id = '%s' AND service = %d"
             " AND state = '%s'",
             case_id, (int)DIRECTORY_RETURN, state);
    return harness_wait_sql(h, sql, 1, ROUTING_WAIT_MS) == 1;
}

void directory_day(int offset_days, char day[16])
{
    time_t t = time(NULL) + (time_t)offset_days * S_SECONDS_PER_DAY;
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(day, 16, "%Y-%m-%d", &tm);
}
