/* Helpers for the authorization tests: the objects every request is about (a case with its
 * case manager and a linked reporter, a referral with its provider, an allocation with its
 * shelter's operator), made fresh on demand, and one call that returns a reply's status. */
#ifndef NRM_AUTHZ_FIXTURE_H
#define NRM_AUTHZ_FIXTURE_H

#include <stdbool.h>
#include "harness.h"
#include "nrm/v1/api.pb-c.h"

#define AUTHZ_FIXTURE_ID 72
#define AUTHZ_FIXTURE_WAIT_MS 15000

/* A case and what hangs from it; strings are "" when not made. */
typedef struct {
    char case_id[AUTHZ_FIXTURE_ID];
    char manager_id[AUTHZ_FIXTURE_ID];  /* its case manager */
    char referral_id[AUTHZ_FIXTURE_ID]; /* the need's referral (LEGAL_AID) */
    char provider_id[AUTHZ_FIXTURE_ID]; /* its provider */
    char allocation_id[AUTHZ_FIXTURE_ID];
    char operator_id[AUTHZ_FIXTURE_ID]; /* the allocation's shelter operator */
    char plan_id[AUTHZ_FIXTURE_ID];     /* a reintegration plan (authz_fixture_plan) */
} authz_fixture_case_t;

/* Opens the case of a new named adult woman in MA-04 (consenting) reported by manager, which
 * thereby manages it; when reporter is not NULL, the same person is reported again by reporter,
 * whose report links to the case. need is LEGAL_AID (waits for the referral and fills
 * referral_id, provider_id), SHELTER (waits for the allocation and fills allocation_id,
 * operator_id) or 0 (no need). Aborts the program when any step fails. */
void authz_fixture_case(harness_t *h, const char *manager, const char *reporter,
                        Nrm__V1__ServiceType need, authz_fixture_case_t *c);

/* Sends a request of body (message borrowed) to service as agency; returns the reply's status
 * and, when field is not NULL, copies its error_field (AUTHZ_FIXTURE_ID bytes). Aborts the
 * program when there is no reply. */
Nrm__V1__Status authz_fixture_call(harness_t *h, const char *service, const char *agency,
                                   Nrm__V1__Request__BodyCase body, void *message, char *field);

/* Opens an assisted voluntary return plan for the case (once reintegration knows it) managed
 * by manager, whose person has arrived with partner as the reception partner; fills plan_id.
 * Aborts the program when any step fails. */
void authz_fixture_plan(harness_t *h, authz_fixture_case_t *c, const char *manager,
                        const char *partner);

/* The number of PERMISSION_DENIED rows in the audit logs of intake, routing, shelter, notify
 * and reintegration together. */
long long authz_fixture_denials(harness_t *h);

#endif
