/* nrm_authz: the one authorization matrix. Who may send which request, as a table of request
 * bodies x roles, consulted by the server (requests whose answer does not depend on an object)
 * and by every handler (requests about an object: a case, a referral, a shelter, ...).
 *
 * A role is what the sender is (a coordinator, a service, any configured agency) or its
 * relation to the object (the case manager of the case, the provider of the referral, ...).
 * What the sender is comes from its authenticated identity and the configuration; its relations
 * come from the handler, which knows the object and passes them to nrm_authz_check. A service
 * identity ("service:<name>") has no relations: it may do only what the table gives services.
 *
 * deploy/OPERATIONS.md shows the table as nrm-authz-doc prints it (a test keeps them equal). */
#ifndef NRM_AUTHZ_H
#define NRM_AUTHZ_H

#include <stdbool.h>
#include <stdio.h>
#include "nrm/v1/api.pb-c.h"
#include "nrm_config.h"
#include "nrm_error.h"
#include "nrm_server.h"

/* The agency type given to service identities ("service:<name>"). */
#define NRM_AUTHZ_SERVICE_TYPE "SERVICE"
#define NRM_AUTHZ_SERVICE_PREFIX "service:"
#define NRM_AUTHZ_COORDINATOR_TYPE "COORDINATOR"
/* The setting that names the agency types competent to decide a person's status. */
#define NRM_AUTHZ_STATUS_DECIDERS "intake.status_deciders"

typedef enum {
    NRM_ROLE_COORDINATOR = 1u << 0,         /* an agency of type COORDINATOR */
    NRM_ROLE_CASE_MANAGER = 1u << 1,        /* the case-managing agency of the case */
    NRM_ROLE_REPORTER = 1u << 2,            /* an agency whose report opened or joined the case */
    NRM_ROLE_REFERRED_PROVIDER = 1u << 3,   /* the provider the referral was made to */
    NRM_ROLE_SHELTER_OPERATOR = 1u << 4,    /* the operator of the shelter (of the allocation) */
    NRM_ROLE_SUBSCRIPTION_AGENCY = 1u << 5, /* the agency of the subscription or delivery */
    NRM_ROLE_SERVICE = 1u << 6,             /* a service identity */
    NRM_ROLE_ANY_AGENCY = 1u << 7,          /* any configured agency */
    NRM_ROLE_EVENT_READER = 1u << 8,        /* an agency security.event_readers lets read streams */
    NRM_ROLE_ANYONE = 1u << 9,              /* any authenticated peer */
    NRM_ROLE_PLAN_MANAGER = 1u << 10,       /* the managing agency of the reintegration plan */
    NRM_ROLE_RECEPTION_PARTNER = 1u << 11,  /* the return's reception partner, after arrival */
    NRM_ROLE_STATS_READER = 1u << 12,       /* an agency stats.readers grants the measure */
} nrm_role_t;

/* The roles that are relations to an object (only agencies have them). */
#define NRM_ROLE_RELATIONS                                                                         \
    (NRM_ROLE_CASE_MANAGER | NRM_ROLE_REPORTER | NRM_ROLE_REFERRED_PROVIDER |                      \
     NRM_ROLE_SHELTER_OPERATOR | NRM_ROLE_SUBSCRIPTION_AGENCY | NRM_ROLE_PLAN_MANAGER |            \
     NRM_ROLE_RECEPTION_PARTNER | NRM_ROLE_STATS_READER)

/* One row of the matrix. */
typedef struct {
    Nrm__V1__Request__BodyCase body;
    const char *service;             /* the service that answers it ("intake", "any") */
    const char *object_field;        /* the field naming the object; NULL when the answer does
                                        not depend on an object (the server decides up front) */
    unsigned roles;                  /* nrm_role_t bits allowed */
    const char *const *agency_types; /* agency types allowed besides roles (NULL-terminated),
                                        or NULL */
    const char *note;                /* scope and restrictions, for the document */
} nrm_authz_rule_t;

/* The columns of the matrix: a sender whose only relation to the object is `role`. */
typedef struct {
    unsigned role;
    const char *title;
} nrm_authz_column_t;

/* Every rule, in request order; *n receives the count. Static. */
const nrm_authz_rule_t *nrm_authz_rules(size_t *n);

/* The rule of a request body, or NULL when the table has none (such a request is refused). */
const nrm_authz_rule_t *nrm_authz_rule(Nrm__V1__Request__BodyCase body);

/* The columns of the matrix, in order; *n receives the count. Static. */
const nrm_authz_column_t *nrm_authz_columns(size_t *n);

/* The request body's field name ("close_case"), or "none". Static. */
const char *nrm_authz_body_name(Nrm__V1__Request__BodyCase body);

/* True when a sender with these roles (and this agency type, may be NULL) may send rule's
 * request; agency types as the rule's defaults say. */
bool nrm_authz_allows(const nrm_authz_rule_t *rule, unsigned roles, const char *agency_type);

/* The same, with the agency types the configuration gives the rule (the setting
 * nrm_authz_types_setting names, when config has it; config may be NULL: the defaults). */
bool nrm_authz_allows_in(const nrm_config_t *config, const nrm_authz_rule_t *rule, unsigned roles,
                         const char *agency_type);

/* The configuration path of a list of agency types that replaces the rule's agency_types (then
 * its defaults), or NULL when the rule's types are fixed. Static. */
const char *nrm_authz_types_setting(const nrm_authz_rule_t *rule);

/* The cell of the matrix: true when a sender in column `role` (an agency that is nothing else,
 * of no type the rule lists, or a coordinator, of type COORDINATOR, or a service; event readers
 * and agency types as by default) may send rule's request. */
bool nrm_authz_cell(const nrm_authz_rule_t *rule, unsigned role);

/* The type a sender has: its configured agency type, NRM_AUTHZ_SERVICE_TYPE for
 * "service:<name>" of a configured service, or NULL when unknown. Borrowed from config. */
const char *nrm_authz_sender_type(const nrm_config_t *config, const char *agency_id);

/* True when the sender may read event streams (Fetch, the events socket): every service, and
 * the agencies that security.event_readers names by type ("agency_types") or id ("agency_ids");
 * default {"agency_types": ["COORDINATOR"], "agency_ids": []}. */
bool nrm_authz_event_reader(const nrm_config_t *config, const char *agency_id,
                            const char *agency_type);

/* The roles a sender has whatever the object: ANYONE, SERVICE, or ANY_AGENCY with COORDINATOR
 * and EVENT_READER where they apply. */
unsigned nrm_authz_sender_roles(const nrm_config_t *config, const char *agency_id,
                                const char *agency_type);

/* The server's check, before any handler runs: OK when the sender may send this body; for a
 * request about an object, when some relation to an object could allow it (the handler then
 * decides). PERMISSION_DENIED in err otherwise (field: the body name). */
nrm_status_t nrm_authz_precheck(const nrm_config_t *config, Nrm__V1__Request__BodyCase body,
                                const char *agency_id, const char *agency_type, nrm_error_t *err);

/* A handler's check, before it changes anything: relations are the sender's nrm_role_t
 * relations to the object (ignored for a service identity). OK (and call->authorized set), or
 * PERMISSION_DENIED in call->tx.err naming the rule's object field (or field when not NULL),
 * with a message that names only roles. */
nrm_status_t nrm_authz_check(nrm_call_t *call, unsigned relations);
nrm_status_t nrm_authz_check_at(nrm_call_t *call, unsigned relations, const char *field);

/* The answer of a handler that found no object of the request's kind under that id: NOT_FOUND
 * naming field, with message, when the sender may act without a relation to the object (a
 * coordinator, or a rule open to every agency); otherwise the PERMISSION_DENIED naming field that
 * it would get for an object it has no relation to. Who may not act on an object learns nothing
 * of whether it exists. Sets call->tx.err either way. */
nrm_status_t nrm_authz_not_found(nrm_call_t *call, const char *field, const char *message);

/* True when the sender has role whatever the object (for handlers that scope an answer, such
 * as a coordinator seeing every shelter). */
bool nrm_authz_sender_is(const nrm_call_t *call, nrm_role_t role);

/* The markers around the generated matrix in deploy/OPERATIONS.md. */
#define NRM_AUTHZ_DOC_BEGIN "<!-- NRM_AUTHZ_BEGIN: generated by nrm-authz-doc, do not edit -->"
#define NRM_AUTHZ_DOC_END "<!-- NRM_AUTHZ_END -->"

/* Writes the matrix as a Markdown section (the part of deploy/OPERATIONS.md between the
 * markers) to out. */
void nrm_authz_markdown(FILE *out);

#endif
