/* Helpers for the tests of the directory managed at run time: providers and agreements sent
 * to a routing instance as the coordinator, reports needing return assistance, and what routing
 * did with them. */
#ifndef NRM_DIRECTORY_FIXTURE_H
#define NRM_DIRECTORY_FIXTURE_H

#include <stdbool.h>
#include "harness.h"
#include "routing_scenario.h"

#define DIRECTORY_RETURN NRM__V1__SERVICE_TYPE__SERVICE_TYPE_RETURN_ASSISTANCE

/* A return-assistance provider: id (a configured agency) serving region (NULL: national), at
 * most cap open referrals, active or not. */
typedef struct {
    const char *id;
    const char *region;
    int cap;
    bool active;
} directory_provider_t;

/* Sends UpsertProvider for p to routing instance as the coordinator; returns the status. */
Nrm__V1__Status directory_upsert_provider(harness_t *h, int instance,
                                          const directory_provider_t *p);

/* The same for a provider that takes only people of gender only. */
Nrm__V1__Status directory_upsert_provider_for(harness_t *h, int instance,
                                              const directory_provider_t *p, Nrm__V1__Gender only);

/* Sends UpsertAgreement (return assistance, region NULL: every region) to instance 0. */
Nrm__V1__Status directory_upsert_agreement(harness_t *h, const char *agreement_id,
                                           const char *provider_id, const char *region,
                                           int capacity, const char *start_date,
                                           const char *end_date);

/* Submits the report of an adult foreign national in region needing return assistance, with
 * the given Urgency; fills case_id. Asserts intake accepted it. */
void directory_case(harness_t *h, const char *region, Nrm__V1__Urgency urgency,
                    char case_id[ROUTING_ID_TEXT]);

/* The provider of the case's return-assistance referral at attempt 1, waited for; "" when
 * none came within wait_ms. */
void directory_provider_of(harness_t *h, const char *case_id, int wait_ms,
                           char provider[ROUTING_ID_TEXT]);

/* True once the case's return-assistance need is in state (waited for up to ROUTING_WAIT_MS). */
bool directory_need_is(harness_t *h, const char *case_id, const char *state);

/* Writes a day relative to today ("YYYY-MM-DD", UTC) into day (16 bytes). */
void directory_day(int offset_days, char day[16]);

#endif
