/* The intake service: reports of presumed victims, the cases they open or join, and the
 * case.* stream. Identifying data is sealed before it reaches the database and never leaves
 * this service. */
#ifndef INTAKE_H
#define INTAKE_H

#include "nrm_crypto.h"
#include "nrm_migrate.h"
#include "nrm_server.h"

extern const nrm_migration_t intake_migrations[];
extern const size_t intake_migrations_count;

#define INTAKE_MAX_NAME 200
#define INTAKE_MAX_ALIASES 10
#define INTAKE_MAX_PHONE 32
#define INTAKE_MAX_DOCUMENT 64
#define INTAKE_MAX_NOTES 4000
#define INTAKE_MAX_LANGUAGES 10
#define INTAKE_MAX_TYPES 10
#define INTAKE_MAX_CHILDREN 20
#define INTAKE_MAX_AGE 120
#define INTAKE_ADULT_AGE 18
#define INTAKE_CLOCK_SKEW_MS 300000
#define INTAKE_ID_MAX 64
#define INTAKE_LINK_ALERT_MAX_LINKS 5
#define INTAKE_LINK_ALERT_WINDOW_S 3600

typedef struct {
    nrm_keyring_t *keys; /* owned */
} intake_t;

/* What validation derives from a valid SubmitReport. */
typedef struct {
    bool is_minor;
    bool has_age;  /* an age is known (given or from the date of birth) */
    int age_years; /* when has_age */
    bool age_from_birth_date;
} intake_facts_t;

/* Validation: OK or INVALID_ARGUMENT naming the field ("submit_report.profile.age_years").
 * Nothing is touched. */
nrm_status_t intake_check_report(const Nrm__V1__SubmitReport *r, nrm_config_t *config,
                                 int64_t now_ms, intake_facts_t *facts, nrm_error_t *err);
nrm_status_t intake_check_update(const Nrm__V1__UpdateCase *u, nrm_error_t *err);
nrm_status_t intake_check_close(const Nrm__V1__CloseCase *c, nrm_error_t *err);

/* Request handlers (nrm_handler_fn; ctx is the intake_t). */
nrm_status_t intake_submit_report(void *ctx, nrm_call_t *call);
nrm_status_t intake_update_case(void *ctx, nrm_call_t *call);
nrm_status_t intake_withdraw_consent(void *ctx, nrm_call_t *call);
nrm_status_t intake_close_case(void *ctx, nrm_call_t *call);
nrm_status_t intake_reassign_case(void *ctx, nrm_call_t *call);

/* A report of the sender was just linked to case_id (inside the request's transaction): audits
 * the link (kind "case_link", subject the case) and, when the sender's links in the last
 * intake.link_alert.window_s seconds now exceed intake.link_alert.max_links and it was not
 * alerted since it was last within the rate, emits one case.link_alert. */
nrm_status_t intake_link_noted(nrm_call_t *call, const char *case_id);

/* Registers the statements of intake_roles.c on db. */
void intake_roles_prepare(nrm_db_t *db);

/* Registers the service's statements on db. */
void intake_prepare(nrm_db_t *db);

#endif
