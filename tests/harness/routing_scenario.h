/* Scenario helpers for the routing tests: reports of the people routing must serve, the
 * referrals it made for them, the events it published, and providers' answers. */
#ifndef NRM_ROUTING_SCENARIO_H
#define NRM_ROUTING_SCENARIO_H

#include <stdbool.h>
#include "harness.h"
#include "scenario.h"

#define ROUTING_WAIT_MS 8000
#define ROUTING_ID_TEXT 40

/* A report of a person identified in region: age_years (-1 for unknown), gender, nationality
 * (ISO 3166-1, "" for unknown), consent to referral, no needs, no languages, not named (never
 * linked to another case). Add needs and languages with the functions below. */
void routing_person(scenario_report_t *s, const char *region, int age_years, Nrm__V1__Gender gender,
                    const char *nationality, bool consent);

/* Names the person (the name and date of birth stay in intake, sealed). */
void routing_person_named(scenario_report_t *s, const char *full_name, const char *date_of_birth);

/* Adds a stated need. */
void routing_person_needs(scenario_report_t *s, Nrm__V1__ServiceType need);

/* Adds a language the person speaks (a literal). */
void routing_person_speaks(scenario_report_t *s, const char *language);

/* Submits the report to intake as agency; returns OK with case_id filled, or the failure. */
Nrm__V1__Status routing_submit(harness_t *h, scenario_report_t *s, const char *agency,
                               char case_id[ROUTING_ID_TEXT]);

/* Waits until the case has `count` referrals in routing (any state); returns the count seen. */
long long routing_wait_referrals(harness_t *h, const char *case_id, long long count);

/* Waits until intake's whole stream is applied by routing (its checkpoint reaches intake's
 * head). Returns true when it did within timeout_ms. */
bool routing_wait_caught_up(harness_t *h, int timeout_ms);

/* The referral of service for the case at attempt: its id and provider (either may be NULL).
 * Returns true when it exists. */
bool routing_referral(harness_t *h, const char *case_id, Nrm__V1__ServiceType service, int attempt,
                      char referral_id[ROUTING_ID_TEXT], char provider_id[ROUTING_ID_TEXT]);

/* The state of a referral ("pending", ...) into state (size ROUTING_ID_TEXT); "" if none. */
void routing_referral_state(harness_t *h, const char *referral_id, char state[ROUTING_ID_TEXT]);

/* Counts the referrals of the case (service 0: any service). */
long long routing_count_referrals(harness_t *h, const char *case_id, Nrm__V1__ServiceType service);

/* The events routing published about the case whose topic starts with prefix, in order
 * (Fetch from sequence 1, once every event routing committed is sequenced). Returns the count;
 * *events (caller frees with routing_events_free) receives them. */
size_t routing_case_events(harness_t *h, const char *case_id, const char *prefix,
                           Nrm__V1__Event ***events);
void routing_events_free(Nrm__V1__Event **events, size_t count);

/* Sends RespondToReferral as agency; returns the Reply (caller frees) or NULL on timeout. */
Nrm__V1__Reply *routing_provider_respond(harness_t *h, const char *agency, const char *referral_id,
                                         Nrm__V1__ReferralDecision decision,
                                         Nrm__V1__DeclineReason why, const char *note);

/* Sends CompleteReferral as agency; returns the Reply (caller frees) or NULL on timeout. */
Nrm__V1__Reply *routing_provider_complete(harness_t *h, const char *agency, const char *referral_id,
                                          bool delivered, const char *reason);

/* Sends an intake request about the case (UpdateCase consent, WithdrawConsent, CloseCase) as
 * agency; returns the reply status. */
Nrm__V1__Status routing_give_consent(harness_t *h, const char *agency, const char *case_id);
Nrm__V1__Status routing_withdraw_consent(harness_t *h, const char *agency, const char *case_id);
Nrm__V1__Status routing_close_case(harness_t *h, const char *agency, const char *case_id,
                                   const char *reason);

/* Submits a backlog of n reports to intake, pipelined (up to a window of requests in flight):
 * a deterministic mix of regions, ages (children, adults, unknown), nationalities, languages,
 * needs and consent, number i always the same person. Returns how many were accepted. */
int routing_submit_backlog(harness_t *h, int n);

/* Intake's stream head and routing's checkpoint on it, from their Ping (-1 when unanswered). */
long long routing_intake_head(harness_t *h);
long long routing_checkpoint(harness_t *h);

/* A fingerprint of every referral routing made: one line per referral "case service attempt
 * provider state" in a stable order, into a malloc'd string (caller frees). */
char *routing_fingerprint(harness_t *h);

/* Providers and agreements whose open counter (kept by referrals' triggers) differs from a
 * recount of their pending and accepted referrals: 0 when all agree. */
long long routing_counters_off(harness_t *h);

#endif
