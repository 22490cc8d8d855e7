#include "routing_scenario.h"
#include "nrm_client.h"
#include "nrm_event.h"
#include "nrm_time.h"

#include <czmq.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define S_SQL 512
#define S_POLL_MS 50
#define S_MAX_NEEDS 8
#define S_MAX_LANGUAGES 4
#define S_FINGERPRINT_LINE 256
#define S_WINDOW 64 /* backlog requests in flight */
#define S_REGIONS 12
#define S_MINOR_EVERY 6 /* every 6th person of the backlog is 16 */
#define S_UNKNOWN_AGE_EVERY 17
#define S_NO_CONSENT_EVERY 5
#define S_ADULT_AGE_BASE 19
#define S_ADULT_AGE_SPAN 37
#define S_MINOR_AGE 16
#define S_REGION_TEXT 8

void routing_person(scenario_report_t *s, const char *region, int age_years, Nrm__V1__Gender gender,
                    const char *nationality, bool consent)
{
    scenario_adult_woman(s, region, "", "");
    s->report.person = NULL;
    s->report.notes = "";
    s->profile.age_years = age_years < 0 ? 0 : age_years;
    s->profile.age_unknown = age_years < 0;
    s->profile.age_estimated = 0;
    s->profile.gender = gender;
    s->profile.nationality = (char *)nationality;
    s->profile.n_languages = 0;
    s->report.n_needs = 0;
    s->report.consent_to_referral = consent;
}

void routing_person_named(scenario_report_t *s, const char *full_name, const char *date_of_birth)
{
    s->person.full_name = (char *)full_name;
    s->person.date_of_birth = (char *)date_of_birth;
    s->report.person = &s->person;
}

void routing_person_needs(scenario_report_t *s, Nrm__V1__ServiceType need)
{
    if (s->report.n_needs < S_MAX_NEEDS)
        s->needs[s->report.n_needs++] = need;
}

void routing_person_speaks(scenario_report_t *s, const char *language)
{
    if (s->profile.n_languages < S_MAX_LANGUAGES)
        s->languages[s->profile.n_languages++] = (char *)language;
}

Nrm__V1__Status routing_submit(harness_t *h, scenario_report_t *s, const char *agency,
                               char case_id[ROUTING_ID_TEXT])
{
    case_id[0] = '\0';
    s->request.request_id = "";
    Nrm__V1__Reply *reply = harness_call(h, "intake", agency, &s->request);
    if (!reply)
        return NRM__V1__STATUS__STATUS_UNAVAILABLE;
    Nrm__V1__Status status = reply->status;
    if (status == NRM__V1__STATUS__STATUS_OK && reply->case_ref)
        snprintf(case_id, ROUTING_ID_TEXT, "%s", reply->case_ref->case_id);
    else
        fprintf(stderr, "routing_submit: %d %s %s\n", status, reply->error_field,
                reply->error_message);
    nrm__v1__reply__free_unpacked(reply, NULL);
    return status;
}

long long routing_wait_referrals(harness_t *h, const char *case_id, long long count)
{
    char sql[S_SQL];
    snprintf(sql, sizeof sql, "SELECT count(*) FROM routing.referrals WHERE case_id = '%s'",
             case_id);
    return harness_wait_sql(h, sql, count, ROUTING_WAIT_MS);
}

/* Pings a service; returns the Pong's reply (caller frees) or NULL. */
static Nrm__V1__Reply *s_ping(harness_t *h, const char *service)
{
    Nrm__V1__Ping ping = NRM__V1__PING__INIT;
    Nrm__V1__Request req = NRM__V1__REQUEST__INIT;
    scenario_request(&req, NRM__V1__REQUEST__BODY_PING, &ping);
    Nrm__V1__Reply *reply = harness_call(h, service, "coordinator", &req);
    if (reply && !reply->pong) {
        nrm__v1__reply__free_unpacked(reply, NULL);
        reply = NULL;
    }
    return reply;
}

long long routing_intake_head(harness_t *h)
{
    Nrm__V1__Reply *reply = s_ping(h, "intake");
    long long head = reply ? reply->pong->stream_head : -1;
    if (reply)
        nrm__v1__reply__free_unpacked(reply, NULL);
    return head;
}

/* Routing's checkpoint of intake's stream in its Pong, or -1 when it reports none (routing
 * also consumes the shelter stream). */
static long long s_intake_checkpoint(const Nrm__V1__Reply *reply)
{
    for (size_t i = 0; reply && reply->pong && i < reply->pong->n_consumers; i++)
        if (strcmp(reply->pong->consumers[i]->stream, "intake") == 0)
            return reply->pong->consumers[i]->checkpoint;
    return -1;
}

long long routing_checkpoint(harness_t *h)
{
    Nrm__V1__Reply *reply = s_ping(h, "routing");
    long long seq = s_intake_checkpoint(reply);
    if (reply)
        nrm__v1__reply__free_unpacked(reply, NULL);
    return seq;
}

bool routing_wait_caught_up(harness_t *h, int timeout_ms)
{
    int64_t deadline = nrm_mono_ms() + timeout_ms;
    while (nrm_mono_ms() < deadline) {
        /* intake's head from its outbox, once every committed event has its sequence: a Ping
         * may come before the sequencer numbered the last report's event */
        long long head = harness_sql_int(
            h, "SELECT CASE WHEN EXISTS (SELECT 1 FROM intake.outbox WHERE seq IS NULL) THEN -1"
               " ELSE (SELECT coalesce(max(seq), 0) FROM intake.outbox) END");
        Nrm__V1__Reply *routing = s_ping(h, "routing");
        bool done = head >= 0 && routing && s_intake_checkpoint(routing) == head;
        if (routing)
            nrm__v1__reply__free_unpacked(routing, NULL);
        if (done)
            return true;
        zclock_sleep(S_POLL_MS);
    }
    return false;
}

bool routing_referral(harness_t *h, const char *case_id, Nrm__V1__ServiceType service, int attempt,
                      char referral_id[ROUTING_ID_TEXT], char provider_id[ROUTING_ID_TEXT])
{
    char sql[S_SQL];
    snprintf(sql, sizeof sql,
             "SELECT referral_id, provider_id FROM routing.referrals WHERE case_id = '%s'"
             " AND service = %d AND attempt = %d",
             case_id, (int)service, attempt);
    PGresult *res = harness_sql(h, sql);
    bool found = PQntuples(res) == 1;
    if (referral_id)
        snprintf(referral_id, ROUTING_ID_TEXT, "%s", found ? PQgetvalue(res, 0, 0) : "");
    if (provider_id)
        snprintf(provider_id, ROUTING_ID_TEXT, "%s", found ? PQgetvalue(res, 0, 1) : "");
    PQclear(res);
    return found;
}

void routing_referral_state(harness_t *h, const char *referral_id, char state[ROUTING_ID_TEXT])
{
    char sql[S_SQL];
    snprintf(sql, sizeof sql, "SELECT state FROM routing.referrals WHERE referral_id = '%s'",
             referral_id);
    PGresult *res = harness_sql(h, sql);
    snprintf(state, ROUTING_ID_TEXT, "%s", PQntuples(res) == 1 ? PQgetvalue(res, 0, 0) : "");
    PQclear(res);
}

long long routing_count_referrals(harness_t *h, const char *case_id, Nrm__V1__ServiceType service)
{
    char sql[S_SQL];
    if (service)
        snprintf(sql, sizeof sql,
                 "SELECT count(*) FROM routing.referrals WHERE case_id = '%s' AND service = %d",
                 case_id, (int)service);
    else
        snprintf(sql, sizeof sql, "SELECT count(*) FROM routing.referrals WHERE case_id = '%s'",
                 case_id);
    return harness_sql_int(h, sql);
}

size_t routing_case_events(harness_t *h, const char *case_id, const char *prefix,
                           Nrm__V1__Event ***events)
{
    /* what routing committed is on its stream once the sequencer has numbered it */
    harness_wait_sql(h, "SELECT count(*) FROM routing.outbox WHERE seq IS NULL", 0,
                     ROUTING_WAIT_MS);
    Nrm__V1__Event **all = NULL;
    size_t n = harness_fetch_all(h, "routing", &all), kept = 0;
    for (size_t i = 0; i < n; i++) {
        const char *const prefixes[] = {prefix, NULL};
        if (strcmp(all[i]->case_id, case_id) == 0 && nrm_topic_matches(all[i]->topic, prefixes))
            all[kept++] = all[i];
        else
            nrm__v1__event__free_unpacked(all[i], NULL);
    }
    *events = all;
    return kept;
}

void routing_events_free(Nrm__V1__Event **events, size_t count)
{
    for (size_t i = 0; i < count; i++)
        nrm__v1__event__free_unpacked(events[i], NULL);
    free(events);
}

Nrm__V1__Reply *routing_provider_respond(harness_t *h, const char *agency, const char *referral_id,
                                         Nrm__V1__ReferralDecision decision,
                                         Nrm__V1__DeclineReason why, const char *note)
{
    Nrm__V1__RespondToReferral body = NRM__V1__RESPOND_TO_REFERRAL__INIT;
    body.referral_id = (char *)referral_id;
    body.decision = decision;
    body.decline_reason = why;
    body.note = (char *)note;
    Nrm__V1__Request req = NRM__V1__REQUEST__INIT;
    scenario_request(&req, NRM__V1__REQUEST__BODY_RESPOND_TO_REFERRAL, &body);
    return harness_call(h, "routing", agency, &req);
}

Nrm__V1__Reply *routing_provider_complete(harness_t *h, const char *agency, const char *referral_id,
                                          bool delivered, const char *reason)
{
    Nrm__V1__CompleteReferral body = NRM__V1__COMPLETE_REFERRAL__INIT;
    body.referral_id = (char *)referral_id;
    body.service_delivered = delivered;
    body.reason = (char *)reason;
    Nrm__V1__Request req = NRM__V1__REQUEST__INIT;
    scenario_request(&req, NRM__V1__REQUEST__BODY_COMPLETE_REFERRAL, &body);
    return harness_call(h, "routing", agency, &req);
}

/* Sends an intake request and returns its status (UNAVAILABLE on timeout). */
static Nrm__V1__Status s_intake(harness_t *h, const char *agency, Nrm__V1__Request__BodyCase body,
                                void *message)
{
    Nrm__V1__Request req = NRM__V1__REQUEST__INIT;
    scenario_request(&req, body, message);
    Nrm__V1__Reply *reply = harness_call(h, "intake", agency, &req);
    Nrm__V1__Status status = reply ? reply->status : NRM__V1__STATUS__STATUS_UNAVAILABLE;
    if (reply)
        nrm__v1__reply__free_unpacked(reply, NULL);
    return status;
}

Nrm__V1__Status routing_give_consent(harness_t *h, const char *agency, const char *case_id)
{
    Nrm__V1__UpdateCase u = NRM__V1__UPDATE_CASE__INIT;
    u.case_id = (char *)case_id;
    u.consent_to_referral = 1;
    return s_intake(h, agency, NRM__V1__REQUEST__BODY_UPDATE_CASE, &u);
}

Nrm__V1__Status routing_withdraw_consent(harness_t *h, const char *agency, const char *case_id)
{
    Nrm__V1__WithdrawConsent w = NRM__V1__WITHDRAW_CONSENT__INIT;
    w.case_id = (char *)case_id;
    return s_intake(h, agency, NRM__V1__REQUEST__BODY_WITHDRAW_CONSENT, &w);
}

Nrm__V1__Status routing_close_case(harness_t *h, const char *agency, const char *case_id,
                                   const char *reason)
{
    Nrm__V1__CloseCase c = NRM__V1__CLOSE_CASE__INIT;
    c.case_id = (char *)case_id;
    c.reason = (char *)reason;
    return s_intake(h, agency, NRM__V1__REQUEST__BODY_CLOSE_CASE, &c);
}

/* A person of the backlog, by nationality: who they are and the languages they speak. */
typedef struct {
    const char *nationality;
    const char *languages[2];
} s_origin_t;

static const s_origin_t s_origins[] = {
    {"MA", {"ar", NULL}}, {"NG", {"en", NULL}}, {"SN", {"fr", "wo"}}, {"CI", {"fr", NULL}},
    {"GN", {"fr", "ff"}}, {"BD", {"bn", NULL}}, {"CM", {"fr", "en"}},
};

/* The needs people of the backlog state, in turn. */
static const Nrm__V1__ServiceType s_need_sets[][2] = {
    {NRM__V1__SERVICE_TYPE__SERVICE_TYPE_MEDICAL, 0},
    {NRM__V1__SERVICE_TYPE__SERVICE_TYPE_PSYCHOSOCIAL,
     NRM__V1__SERVICE_TYPE__SERVICE_TYPE_LEGAL_AID},
    {NRM__V1__SERVICE_TYPE__SERVICE_TYPE_SHELTER, NRM__V1__SERVICE_TYPE__SERVICE_TYPE_MEDICAL},
    {NRM__V1__SERVICE_TYPE__SERVICE_TYPE_RETURN_ASSISTANCE, 0},
    {NRM__V1__SERVICE_TYPE__SERVICE_TYPE_REINTEGRATION,
     NRM__V1__SERVICE_TYPE__SERVICE_TYPE_PSYCHOSOCIAL},
    {0, 0},
};

static const char *const s_reporters[] = {"police-ma-04",   "labour-ma-06", "hotline-national",
                                          "hospital-ma-06", "ngo-ma-07",    "border-ma-01"};

#define S_COUNT(a) ((int)(sizeof(a) / sizeof((a)[0])))

/* Builds person i of the backlog into s; region must hold S_REGION_TEXT bytes and outlive s. */
static void s_backlog_person(scenario_report_t *s, int i, char *region)
{
    snprintf(region, S_REGION_TEXT, "MA-%02d", i % S_REGIONS + 1);
    const s_origin_t *o = &s_origins[i % S_COUNT(s_origins)];
    int age = i % S_MINOR_EVERY == 0         ? S_MINOR_AGE
              : i % S_UNKNOWN_AGE_EVERY == 0 ? -1
                                             : S_ADULT_AGE_BASE + i % S_ADULT_AGE_SPAN;
    routing_person(s, region, age,
                   i % 2 ? NRM__V1__GENDER__GENDER_FEMALE : NRM__V1__GENDER__GENDER_MALE,
                   o->nationality, i % S_NO_CONSENT_EVERY != S_NO_CONSENT_EVERY - 1);
    for (int k = 0; k < 2 && o->languages[k]; k++)
        routing_person_speaks(s, o->languages[k]);
    const Nrm__V1__ServiceType *needs = s_need_sets[i % S_COUNT(s_need_sets)];
    for (int k = 0; k < 2 && needs[k]; k++)
        routing_person_needs(s, needs[k]);
    s->report.urgency = (Nrm__V1__Urgency)(NRM__V1__URGENCY__URGENCY_ROUTINE + i % 3);
}

int routing_submit_backlog(harness_t *h, int n)
{
    /* one connection per reporting agency: the key of a connection is its agency */
    enum { REPORTERS = S_COUNT(s_reporters) };
    nrm_client_t *clients[REPORTERS];
    zpoller_t *poller = zpoller_new(NULL);
    for (int r = 0; r < REPORTERS; r++) {
        clients[r] = harness_client_new(h, "intake", 0, s_reporters[r]);
        zpoller_add(poller, nrm_client_socket(clients[r]));
    }
    int sent = 0, answered = 0, accepted = 0;
    int64_t deadline = nrm_mono_ms() + HARNESS_TIMEOUT_MS;
    while (answered < n && nrm_mono_ms() < deadline) {
        while (sent < n && sent - answered < S_WINDOW) {
            scenario_report_t s;
            char region[S_REGION_TEXT], request_id[37];
            s_backlog_person(&s, sent, region);
            s.request.request_id = "";
            s.request.agency_id = (char *)s_reporters[sent % REPORTERS];
            if (nrm_client_send(clients[sent % REPORTERS], &s.request, request_id) != 0)
                break;
            sent++;
        }
        if (!zpoller_wait(poller, S_POLL_MS))
            continue;
        for (int r = 0; r < REPORTERS; r++) {
            Nrm__V1__Reply *reply;
            while ((reply = nrm_client_receive(clients[r])) != NULL) {
                answered++;
                accepted += reply->status == NRM__V1__STATUS__STATUS_OK;
                nrm__v1__reply__free_unpacked(reply, NULL);
                deadline = nrm_mono_ms() + HARNESS_TIMEOUT_MS;
            }
        }
    }
    zpoller_destroy(&poller);
    for (int r = 0; r < REPORTERS; r++)
        nrm_client_destroy(&clients[r]);
    return accepted;
}

char *routing_fingerprint(harness_t *h)
{
    PGresult *res = harness_sql(h, "SELECT case_id, service, attempt, provider_id, state"
                                   " FROM routing.referrals ORDER BY case_id, service, attempt");
    int rows = PQntuples(res);
    size_t size = (size_t)rows * S_FINGERPRINT_LINE + 1, used = 0;
    char *text = calloc(1, size);
    for (int r = 0; r < rows; r++)
        used +=
            (size_t)snprintf(text + used, size - used, "%s %s %s %s %s\n", PQgetvalue(res, r, 0),
                             PQgetvalue(res, r, 1), PQgetvalue(res, r, 2), PQgetvalue(res, r, 3),
                             PQgetvalue(res, r, 4));
    PQclear(res);
    return text;
}

long long routing_counters_off(harness_t *h)
{
    return harness_sql_int(
        h, "SELECT (SELECT count(*) FROM routing.providers p WHERE p.open_count <>"
           "  (SELECT count(*) FROM routing.referrals r WHERE r.provider_id = p.provider_id"
           "   AND r.state IN ('pending', 'accepted')))"
           " + (SELECT count(*) FROM routing.agreements g WHERE g.open_count <>"
           "  (SELECT count(*) FROM routing.referrals r WHERE r.agreement_id = g.agreement_id"
           "   AND r.state IN ('pending', 'accepted')))");
}
