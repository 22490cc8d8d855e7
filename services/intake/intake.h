/* The intake service: reports of presumed victims, the cases they open or join, and the
 * case.* stream. Identifying data is sealed before it reaches the database and never leaves
 * this service. */
#ifndef INTAKE_H
#define INTAKE_H

#include "nrm_crypto.h"
#include "nrm_migrate.h"
#include "nrm_server.h"
#include "nrm_service.h"

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
#define INTAKE_RETENTION_PERIOD_MS 1000

typedef struct {
    nrm_keyring_t *keys;    /* owned */
    nrm_service_t *service; /* borrowed: its configuration, for timers */
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

/* The case file (intake_read.c): GetCase and ListCases, categorical data only. */
nrm_status_t intake_get_case(void *ctx, nrm_call_t *call);
nrm_status_t intake_list_cases(void *ctx, nrm_call_t *call);
void intake_read_prepare(nrm_db_t *db);

/* Data keys (intake_keys.c). The AAD that binds a report's sealed fields to its case. */
#define INTAKE_REPORT_AAD "intake.report:"
#define INTAKE_AAD_MAX 96

/* The case's data key into key, for sealing a new report (inside tx): created (and stored
 * wrapped by the keyring's active key) when the case has none. UNAVAILABLE ("retry") when the
 * case's identity was erased meanwhile; INTERNAL when the key cannot be unwrapped. */
nrm_status_t intake_case_key_for_sealing(intake_t *self, nrm_tx_t *tx, const char *case_id,
                                         uint8_t key[NRM_DATA_KEY_BYTES]);

/* The case's data key into key for reading; *found false when the case has none (erased). */
nrm_status_t intake_case_key_load(intake_t *self, nrm_tx_t *tx, const char *case_id,
                                  uint8_t key[NRM_DATA_KEY_BYTES], bool *found);

/* Start job (nrm_timer_fn, ctx the intake_t): wraps again under the active keyring key the data
 * keys wrapped under another, and moves reports sealed directly under the keyring (before data
 * keys existed) to their case's data key, in batches. Idempotent. */
nrm_status_t intake_keys_start(void *ctx, nrm_tx_t *tx);
void intake_keys_prepare(nrm_db_t *db);

/* Identity disclosure (intake_identity.c): GetIdentity, and routing's referral.* events that
 * say which provider holds which referral (nrm_apply_fn). */
nrm_status_t intake_get_identity(void *ctx, nrm_call_t *call);
nrm_status_t intake_apply_referral_event(void *ctx, nrm_tx_t *tx, const Nrm__V1__Event *ev);
void intake_identity_prepare(nrm_db_t *db);

/* Erasure (intake_erase.c): EraseIdentity, and the retention timer (nrm_timer_fn) that erases
 * identities of cases closed more than intake.retention.erase_closed_after_s ago (0: never). */
nrm_status_t intake_erase_identity(void *ctx, nrm_call_t *call);
nrm_status_t intake_retention_erase(void *ctx, nrm_tx_t *tx);
void intake_erase_prepare(nrm_db_t *db);

#endif
