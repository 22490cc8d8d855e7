/* Helpers for the reintegration tests: a person referred to REINTEGRATION or RETURN_ASSISTANCE
 * and the provider's acceptance (through real intake and routing), requests to reintegration,
 * and what its schema holds. */
#ifndef NRM_REINT_FIXTURE_H
#define NRM_REINT_FIXTURE_H

#include <stdbool.h>
#include "harness.h"
#include "routing_scenario.h"

#define REINT_WAIT_MS 10000
#define REINT_REPORTER "police-ma-06"

/* A referred person: the case, the referral routing made and its provider. */
typedef struct {
    char case_id[ROUTING_ID_TEXT];
    char referral_id[ROUTING_ID_TEXT];
    char provider[ROUTING_ID_TEXT];
} reint_person_t;

/* Reports an adult woman of nationality (e.g. "NG") identified in MA-06 by REINTEGRATION_REPORTER,
 * consenting, needing service (REINTEGRATION or RETURN_ASSISTANCE), named full_name (NULL: not
 * named), and waits for routing's referral. Returns true when it was made. */
bool reint_refer(harness_t *h, const char *nationality, Nrm__V1__ServiceType service,
                 const char *full_name, reint_person_t *p);

/* The provider accepts the referral; true when routing answered OK. */
bool reint_accept(harness_t *h, const reint_person_t *p);

/* Sends a reintegration request (body and message) as agency; returns the Reply (caller frees)
 * or NULL on timeout. */
Nrm__V1__Reply *reint_call(harness_t *h, const char *agency, Nrm__V1__Request__BodyCase body,
                           void *message);

/* Sends a request and returns its status, freeing the reply (-1 on timeout). */
int reint_status(harness_t *h, const char *agency, Nrm__V1__Request__BodyCase body, void *message);

/* Waits until the case has `count` plans; returns the count seen. */
long long reint_wait_plans(harness_t *h, const char *case_id, long long count);

/* The id of the case's newest plan into plan_id (size ROUTING_ID_TEXT); false when none. */
bool reint_plan_of(harness_t *h, const char *case_id, char plan_id[ROUTING_ID_TEXT]);

/* Counts reintegration's outbox events of topic (about the case when case_id is not NULL). */
long long reint_count_events(harness_t *h, const char *topic, const char *case_id);

/* Waits until intake's case.opened of the case is applied by reintegration. */
bool reint_wait_case(harness_t *h, const char *case_id);

#endif
