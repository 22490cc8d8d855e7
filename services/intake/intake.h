/* The intake service: reports of presumed victims, the cases they open or join, and the
 * case.* stream. Identifying data is sealed before it reaches the database and never leaves
 * this service. */
#ifndef INTAKE_H
#define INTAKE_H

#include "nrm_crypto.h"
#include "nrm_migrate.h"
#include "nrm_pgarray.h"
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

typedef struct intake_screening_t intake_screening_t; /* the checklist and its rule */
typedef struct intake_names_t intake_names_t;         /* name keys (intake_names.h) */

/* Routing's referral events of one consumer batch, gathered for one statement (columns as
 * PostgreSQL array literals; ord numbers the batch's events in stream order). */
typedef struct {
    nrm_pgarray_t created_id, created_case, created_provider, created_service, created_ord;
    nrm_pgarray_t moved_id, moved_state, moved_ord;
    int ord;
} intake_referrals_t;

typedef struct {
    nrm_keyring_t *keys;           /* owned */
    intake_screening_t *screening; /* owned; replaced on reload (intake_recovery.c) */
    struct nrm_service_t *service; /* borrowed: its configuration, for timers */
    intake_names_t *names;         /* owned */
    double dup_threshold;          /* intake.names.duplicate_threshold */
    int dup_max_candidates;        /* intake.names.max_candidates */
    intake_referrals_t referrals;  /* the consumer batch's referral events */
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

/* The linking hash of an identity (intake_dedup.c): nrm_identity_hash over the name's key
 * (intake_names_key: script, accents, case and word order do not count), the date of birth and
 * the nationality. out is "" when there is no name, or neither a date of birth nor a
 * nationality (such a report always opens a case of its own). */
void intake_identity_hash(const intake_t *self, const char *full_name, const char *date_of_birth,
                          const char *nationality, char out[65]);

/* Closes the open case case_id for reason (checked by the caller) and publishes case.closed,
 * with duplicate_of_case_id when duplicate_of is not NULL: the one close path. */
nrm_status_t intake_case_close(nrm_call_t *call, const char *case_id, const char *reason,
                               const char *duplicate_of);

/* Sets the call's reply to a CaseRef of case_id and returns it (owned by the call), for a
 * handler to add to: the reply of every request about one case. */
Nrm__V1__CaseRef *intake_reply_case(nrm_call_t *call, const char *case_id);

/* Request handlers (nrm_handler_fn; ctx is the intake_t). */
nrm_status_t intake_submit_report(void *ctx, nrm_call_t *call);
nrm_status_t intake_update_case(void *ctx, nrm_call_t *call);
nrm_status_t intake_withdraw_consent(void *ctx, nrm_call_t *call);
nrm_status_t intake_close_case(void *ctx, nrm_call_t *call);
nrm_status_t intake_reassign_case(void *ctx, nrm_call_t *call);

/* The agency directory's registrar (intake_agencies.c): coordinator only. UpsertAgency
 * validates every field (INVALID_ARGUMENT with its path; FAILED_PRECONDITION for an agency of
 * the configuration file; CONFLICT for a key another agency or a service holds) and registers
 * the entry with nrm_directory; ListAgencies lists the file's agencies and the directory's. */
nrm_status_t intake_upsert_agency(void *ctx, nrm_call_t *call);
nrm_status_t intake_list_agencies(void *ctx, nrm_call_t *call);

/* A report of the sender was just linked to case_id (inside the request's transaction): audits
 * the link (kind "case_link", subject the case) and, when the sender's links in the last
 * intake.link_alert.window_s seconds now exceed intake.link_alert.max_links and it was not
 * alerted since it was last within the rate, emits one case.link_alert. */
nrm_status_t intake_link_noted(nrm_call_t *call, const char *case_id);

/* Identification (issue 15): the data standard's case fields (intake_fields.c), the screening
 * (intake_screening.c), the status decision (intake_status.c), the recovery and reflection
 * period (intake_recovery.c). */

#define INTAKE_MAX_MEANS 17 /* MeansOfControl values */
#define INTAKE_MAX_TRANSIT 20
#define INTAKE_MAX_DIMENSIONS 5
#define INTAKE_VERSION_MAX 64
#define INTAKE_RECOVERY_PERIOD_S (30 * 24 * 3600) /* Council of Europe Convention, Art. 13 */
#define INTAKE_RECOVERY_REMINDER_S (5 * 24 * 3600)

/* A case's data standard fields, in fixed storage: msg's arrays point into the members. */
typedef struct {
    Nrm__V1__TraffickingFacts msg;
    Nrm__V1__ExploitationPeriod period;
    Nrm__V1__MeansOfControl means[INTAKE_MAX_MEANS];
    char transit[INTAKE_MAX_TRANSIT][3];
    char *transit_ptrs[INTAKE_MAX_TRANSIT];
} intake_fields_t;

/* A screening outcome, in fixed storage: msg's arrays point into the members. */
typedef struct {
    Nrm__V1__Screening msg;
    Nrm__V1__IndicatorDimension dims[INTAKE_MAX_DIMENSIONS];
    char version[INTAKE_VERSION_MAX];
} intake_screened_t;

/* What identification knows of a case, as its events carry it. */
typedef struct {
    intake_fields_t fields;
    intake_screened_t screened;
    int status;                  /* TraffickingStatus value */
    int64_t recovery_ends_at_ms; /* end of the recovery and reflection period */
} intake_ident_t;

/* Checks the identification part of a SubmitReport (facts, screening answers): OK or
 * INVALID_ARGUMENT naming the field. */
nrm_status_t intake_ident_check_report(const intake_t *self, const Nrm__V1__SubmitReport *r,
                                       int64_t now_ms, nrm_error_t *err);
nrm_status_t intake_ident_check_update(const intake_t *self, const Nrm__V1__UpdateCase *u,
                                       int64_t now_ms, nrm_error_t *err);

/* A report opens a case: fills ident for case.opened (its fields from the report's facts, the
 * status, the period's end, the outcome of the report's screening answers) and *facts
 * (malloc'd, caller frees) with the packed fields the caller stores with the new case (and
 * identified_at, the report's). Writes nothing: intake_ident_open_answers stores the answers
 * once the case exists. Pure but for the configuration. */
void intake_ident_opening(const intake_t *self, nrm_call_t *call, bool is_minor,
                          intake_ident_t *ident, uint8_t **facts, size_t *facts_len);

/* Stores the report's screening answers on the case it just opened, and their outcome (the one
 * intake_ident_opening computed); no answers: nothing (the columns' defaults say so). */
nrm_status_t intake_ident_open_answers(intake_t *self, nrm_call_t *call, const char *case_id,
                                       bool is_minor);

/* Adds facts and answers (either may be empty) to the locked case: lists merge, set fields
 * replace, answers replace earlier answers to the same indicators and the outcome is computed
 * again. Fills ident with the case's state; *changed says whether anything changed. */
nrm_status_t intake_ident_update(intake_t *self, nrm_call_t *call, const char *case_id,
                                 const Nrm__V1__TraffickingFacts *facts,
                                 Nrm__V1__IndicatorAnswer *const *answers, size_t n_answers,
                                 intake_ident_t *ident, bool *changed);

void intake_fields_prepare(nrm_db_t *db);

/* intake_fields.c: the checks of the case fields. prefix is "submit_report.facts" or
 * "update_case.facts". */
nrm_status_t intake_check_facts(const Nrm__V1__TraffickingFacts *f, const char *prefix,
                                int64_t now_ms, nrm_error_t *err);

/* intake_screening.c. */

/* Loads intake.screening (the checklist and its rule) from config, or NULL with err
 * (FAILED_PRECONDITION naming the setting). Caller destroys. */
intake_screening_t *intake_screening_load(nrm_config_t *config, nrm_error_t *err);
void intake_screening_destroy(intake_screening_t **self);

/* Checks answers: known indicators, each at most once. field names the repeated field. */
nrm_status_t intake_screening_check(const intake_screening_t *self,
                                    Nrm__V1__IndicatorAnswer *const *answers, size_t n,
                                    const char *field, nrm_error_t *err);

/* The outcome of a set of answers (ids[i] present[i]) for an adult or a minor. Pure. */
void intake_screening_assess(const intake_screening_t *self, const char *const *ids,
                             const bool *present, size_t n, bool is_minor, intake_screened_t *out);

/* Stores the answers of a case (upsert) and recomputes its outcome from all its answers into
 * out (saved on the case). */
nrm_status_t intake_screening_record(const intake_screening_t *self, nrm_tx_t *tx,
                                     const char *case_id, Nrm__V1__IndicatorAnswer *const *answers,
                                     size_t n, bool is_minor, intake_screened_t *out);

void intake_screening_prepare(nrm_db_t *db);

/* intake_status.c: DecideStatus (nrm_handler_fn; ctx is the intake_t), and the check of
 * intake.status_deciders at start and on reload. */
nrm_status_t intake_decide_status(void *ctx, nrm_call_t *call);
nrm_status_t intake_status_check_config(nrm_config_t *config, nrm_error_t *err);
void intake_status_prepare(nrm_db_t *db);

/* intake_recovery.c: the recovery and reflection period. */

/* The period and the reminder, in seconds, from config (defaults above). */
int64_t intake_recovery_period_s(nrm_config_t *config);
int64_t intake_recovery_reminder_s(nrm_config_t *config);

/* FAILED_PRECONDITION naming field (the message says what is refused) when the case is within
 * its recovery and reflection period (reading its row, which the caller has locked). */
nrm_status_t intake_recovery_refuse_within(nrm_call_t *call, const char *case_id, const char *field,
                                           const char *what);

/* CloseCase during the period: only the person's own choice (declined_assistance) and reasons
 * that end no protection (duplicate, deceased) are accepted. */
nrm_status_t intake_recovery_check_close(nrm_call_t *call, const char *case_id, const char *reason);

/* Timer (nrm_timer_fn; ctx is the intake_t): emits case.recovery_period_ending once for every
 * open case whose period ends within intake.recovery_reminder_s; safe with several
 * instances. */
nrm_status_t intake_recovery_remind(void *ctx, nrm_tx_t *tx);

/* Reload (nrm_reload_fn; ctx is the intake_t): the checklist and the identification settings
 * of the new configuration, refused (the old ones kept) when invalid. */
nrm_status_t intake_ident_configure(void *ctx, nrm_config_t *config);

void intake_recovery_prepare(nrm_db_t *db);

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

/* A fresh data key for a case this transaction is creating (no other transaction sees it yet,
 * so nothing is locked or read): the key into key and its wrapping under the keyring's active
 * key into *wrapped (malloc'd, caller frees), *len and *key_id, for the caller to store with
 * the case. Returns 0, or -1 (nothing allocated, key wiped). */
int intake_case_key_new(const intake_t *self, const char *case_id, uint8_t key[NRM_DATA_KEY_BYTES],
                        uint8_t **wrapped, size_t *len, uint32_t *key_id);

/* Unwraps a case's data key read with the case (case_keys.key_id, wrapped_key) into key, for a
 * reader that fetched it in its own statement. 0 or -1 (unknown keyring key, forged bytes). */
int intake_case_key_unwrap(const intake_t *self, const char *case_id, uint32_t key_id,
                           const uint8_t *wrapped, size_t len, uint8_t key[NRM_DATA_KEY_BYTES]);

/* The case's data key into key for reading; *found false when the case has none (erased). */
nrm_status_t intake_case_key_load(intake_t *self, nrm_tx_t *tx, const char *case_id,
                                  uint8_t key[NRM_DATA_KEY_BYTES], bool *found);

/* Start job (nrm_timer_fn, ctx the intake_t): wraps again under the active keyring key the data
 * keys wrapped under another, and moves reports sealed directly under the keyring (before data
 * keys existed) to their case's data key, in batches. Idempotent. */
nrm_status_t intake_keys_start(void *ctx, nrm_tx_t *tx);
void intake_keys_prepare(nrm_db_t *db);

/* Opens a report's sealed field: with key (the case's data key, NULL when it has none) when
 * sealed_under is "case_key", else with the keyring's key key_id. aad is INTAKE_REPORT_AAD and
 * the case id. 0 (*plain malloc'd, the caller wipes and frees) or -1. */
int intake_report_open(intake_t *self, const char *sealed_under, uint32_t key_id,
                       const uint8_t *sealed, size_t sealed_len, const uint8_t *key,
                       const char *aad, uint8_t **plain, size_t *len);

/* The person of a case's first report read in row of res with the case's data key: columns
 * col .. col + 4 are the report's sealed_under, key_id and person_sealed, then case_keys.key_id
 * and wrapped_key (NULL when the case has none). 0 with *person (NULL when the bytes are not a
 * PersonalData; the caller frees it with nrm_wipe_allocator), -1 when the report cannot be
 * opened, -2 (err INTERNAL)
 * when the case's data key cannot be unwrapped. */
int intake_first_person_open(intake_t *self, const PGresult *res, int row, int col,
                             const char *case_id, Nrm__V1__PersonalData **person, nrm_error_t *err);

/* Names (intake_dedup.c). Start job, after intake_keys_start: under an advisory lock, unless
 * name_versions holds INTAKE_NAMES_VERSION, re-computes the identity and blocking hashes of
 * every non-erased case from its first report, 500 cases per UPDATE, records the version,
 * and proposes the newer of two open cases that now share an identity hash as a duplicate of
 * the older (score 1; its identity hash is cleared, so reports link to the older). */
nrm_status_t intake_names_start(void *ctx, nrm_tx_t *tx);
void intake_dedup_prepare(nrm_db_t *db);

/* Reads the "intake.names" section (IntakeNamesSettings) into self (nrm_reload_fn; ctx the
 * intake_t): FAILED_PRECONDITION, logged with the field, for a value out of range (nothing
 * adopted). */
nrm_status_t intake_names_configure(void *ctx, nrm_config_t *config);

/* The other open cases of a new case's block, oldest first, as columns of the statement that
 * opens it (intake_cases.c): $25 is the blocking hash (NULL: none), $1 the new case's id, $26
 * how many at most (intake.names.max_candidates; 0 without a name to compare). Columns: case_id,
 * then the first report's sealed columns as intake_first_person_open reads them, then opened_at. */
#define INTAKE_DUP_BLOCK_SQL                                                                       \
    "SELECT oc.case_id, fr.sealed_under, fr.key_id, fr.person_sealed, ck.key_id AS case_key_id,"   \
    " ck.wrapped_key, oc.opened_at FROM cases oc CROSS JOIN LATERAL (SELECT sealed_under, key_id," \
    " person_sealed FROM reports WHERE case_id = oc.case_id ORDER BY received_at, report_id"       \
    " LIMIT 1) fr LEFT JOIN case_keys ck ON ck.case_id = oc.case_id"                               \
    " WHERE oc.blocking_hash = $25 AND oc.status = 'open' AND oc.case_id <> $1"                    \
    " AND oc.identity_erased_at IS NULL ORDER BY oc.opened_at, oc.case_id LIMIT $26"

/* The key the duplicate check compares a reported full name by (intake_names_key), malloc'd;
 * NULL when there is no name to compare (none reported, or nothing left of it). The caller
 * gives it to intake_dup_key_free. */
char *intake_dup_key(intake_t *self, const char *full_name);
void intake_dup_key_free(char *key);

/* A case just opened by the call's report (case_id; key, its intake_dup_key, not NULL): the
 * other open cases of its block, the rows of res with INTAKE_DUP_BLOCK_SQL's columns from col
 * on (a row whose case_id there is NULL is none), are opened and their names compared
 * (intake_names_similarity); each with a score at or above intake.names.duplicate_threshold
 * and below 1 is proposed (intake_dup_propose). res stays the caller's. */
nrm_status_t intake_dup_find(intake_t *self, nrm_call_t *call, const char *case_id, const char *key,
                             const PGresult *res, int col);

/* ResolveDuplicate (nrm_handler_fn; ctx is the intake_t): coordinator only (the server decides
 * it). INVALID_ARGUMENT for a missing id, NOT_FOUND for an unknown case (its field),
 * FAILED_PRECONDITION for a pair never proposed or already resolved, or a confirm of a case
 * closed meanwhile. */
nrm_status_t intake_resolve_duplicate(void *ctx, nrm_call_t *call);
void intake_duplicates_prepare(nrm_db_t *db);

/* Proposes case_id (the newer) as a possible duplicate of other_case_id with score: a row of
 * duplicate_pairs and case.possible_duplicate, unless the pair was proposed before (then
 * nothing). */
nrm_status_t intake_dup_propose(nrm_tx_t *tx, const char *case_id, const char *other_case_id,
                                double score);

/* The blocking hash of a date of birth and nationality (a keyed hash; "" unless both are
 * given). */
void intake_blocking_hash(const intake_t *self, const char *date_of_birth, const char *nationality,
                          char out[65]);

/* Identity disclosure (intake_identity.c): GetIdentity, and routing's referral.* events that
 * say which provider holds which referral, consumed per batch: apply gathers an event into
 * ctx's (intake_t) referrals, flush writes the batch in one statement, reset drops it. */
nrm_status_t intake_get_identity(void *ctx, nrm_call_t *call);
nrm_status_t intake_apply_referral_event(void *ctx, nrm_tx_t *tx, const Nrm__V1__Event *ev);
nrm_status_t intake_flush_referrals(void *ctx, nrm_tx_t *tx);
void intake_reset_referrals(void *ctx);
void intake_identity_prepare(nrm_db_t *db);

/* Erasure (intake_erase.c): EraseIdentity, and the retention timer (nrm_timer_fn) that erases
 * identities of cases closed more than intake.retention.erase_closed_after_s ago (0: never). */
nrm_status_t intake_erase_identity(void *ctx, nrm_call_t *call);
nrm_status_t intake_retention_erase(void *ctx, nrm_tx_t *tx);
void intake_erase_prepare(nrm_db_t *db);

#endif
