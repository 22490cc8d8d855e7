/* The reintegration service: follows each person after assistance, for about a year. A plan
 * (local reintegration or assisted voluntary return) opens when a provider accepts a
 * REINTEGRATION or RETURN_ASSISTANCE referral, or by OpenPlan; it has goals with milestones,
 * for a return the steps of the journey, and follow-ups at configured offsets that fall due and
 * become overdue on time; it closes with an outcome.
 *
 * Reintegration learns cases from intake's stream (case manager, nationality, consent; never
 * identifying data) and referrals from routing's. It stores no free text at all: every field
 * is categorical, a code, a date, a score or an id. Follow-up deadlines move by conditional
 * UPDATEs (FOR UPDATE SKIP LOCKED), so several instances may share the schema and each
 * followup_due / followup_overdue is published once.
 *
 * Decisions:
 * - The plan's manager is the provider whose acceptance opened it; for OpenPlan, the agency it
 *   names or else the case manager. The coordinator may ReassignPlan.
 * - A case has at most one live plan of each kind: a second acceptance (or OpenPlan) of the same
 *   kind opens nothing (OpenPlan: CONFLICT).
 * - A national (the case's nationality equals the country of identification: setting
 *   reintegration.country, else routing.policy.host_country, else the prefix of the first
 *   region) cannot have a return plan (INVALID_ARGUMENT open_plan.kind); an accepted
 *   RETURN_ASSISTANCE referral for a national opens nothing.
 * - Reintegration and return are never mandatory services: case.consent_withdrawn (not
 *   data_sharing_only) suspends every live plan of the case and stops its follow-ups' clock;
 *   case.updated with consent_to_referral resumes them, their due times moved by the time spent
 *   suspended. case.closed closes live plans (outcome CASE_CLOSED, the case's reason).
 * - RecordFollowUp fills the plan's earliest follow-up not yet recorded, due or not. The
 *   reception partner of a return reports once arrival is confirmed. A follow-up that reports a
 *   re-trafficking risk, and a new report linked to a case whose plan is live or closed within
 *   reintegration.risk_window_s, publish reintegration.risk_alert. */
#ifndef REINTEGRATION_H
#define REINTEGRATION_H

#include <stdbool.h>
#include <stdint.h>
#include "nrm/v1/events.pb-c.h"
#include "nrm_config.h"
#include "nrm_migrate.h"
#include "nrm_server.h"

extern const nrm_migration_t reintegration_migrations[];
extern const size_t reintegration_migrations_count;

#define REINT_ID_MAX 64 /* case, plan, goal, referral and agency ids, bytes */
#define REINT_UUID_SIZE 37
#define REINT_COUNTRY_SIZE 3
#define REINT_MAX_FOLLOWUPS 12
#define REINT_MAX_GOALS 20
#define REINT_MAX_MILESTONES 20
#define REINT_SCORE_MIN 1
#define REINT_SCORE_MAX 5
#define REINT_MS_PER_S 1000
#define REINT_DAY_S 86400
#define REINT_MONTH_S (30 * REINT_DAY_S)
#define REINT_DEFAULT_WINDOW_S (30 * REINT_DAY_S)
#define REINT_DEFAULT_RISK_WINDOW_S (365 * REINT_DAY_S)
#define REINT_DEFAULT_CHECK_MS 1000
#define REINT_DEFAULT_SCAN_BATCH 500

/* The service's state: settings only; everything else lives in the database. */
typedef struct {
    int64_t offsets_ms[REINT_MAX_FOLLOWUPS]; /* follow-up offsets after opening */
    int n_offsets;
    int64_t window_ms;      /* how long a due follow-up may wait before it is overdue */
    int64_t risk_window_ms; /* how long after closing a linked report still raises an alert */
    int scan_batch;         /* follow-ups moved per scan and state */
    char country[REINT_COUNTRY_SIZE]; /* the country of identification ("" unknown) */
    int64_t *plans_opened;            /* counters shown in Pong (owned by the service) */
    int64_t *followups_due;
    int64_t *followups_overdue;
} reint_t;

/* A plan as the handlers need it (one row of plans). */
typedef struct {
    char plan_id[REINT_ID_MAX + 1];
    char case_id[REINT_ID_MAX + 1];
    int kind;
    char state[16];
    char manager[REINT_ID_MAX + 1];
    char reception_partner[REINT_ID_MAX + 1];
    bool arrival_confirmed;
    char case_manager[REINT_ID_MAX + 1]; /* "" when the case is unknown */
} reint_plan_t;

/* What reintegration knows of a case (from intake's stream). */
typedef struct {
    bool known; /* the case was opened on intake's stream */
    char manager[REINT_ID_MAX + 1];
    char nationality[REINT_COUNTRY_SIZE];
    bool consent;
    bool open;
} reint_case_t;

/* ---- reintegration_settings.c ---- */

/* Reload hook (nrm_reload_fn; ctx is the reint_t): checks and adopts the settings
 * (reintegration.followup_offsets_s, followup_window_s, risk_window_s, scan_batch, country).
 * Returns OK, or FAILED_PRECONDITION after logging the field. */
nrm_status_t reint_configure(void *ctx, nrm_config_t *config);

/* ---- reintegration_plans.c: opening, closing, reassigning; loading a plan ---- */

/* Register each file's statements on db (once, before run). */
void reint_plans_prepare(nrm_db_t *db);
void reint_cases_prepare(nrm_db_t *db);
void reint_goals_prepare(nrm_db_t *db);

/* Checks of requests that need nothing but the request (OK or INVALID_ARGUMENT naming the
 * field): a goal's domain and milestones ("upsert_goal.milestones[i].state"), a follow-up's
 * scores ("record_follow_up.scores.economic"). */
nrm_status_t reint_check_goal(const Nrm__V1__UpsertGoal *g, nrm_error_t *err);
nrm_status_t reint_check_scores(const Nrm__V1__RecordFollowUp *r, nrm_error_t *err);
void reint_followups_prepare(nrm_db_t *db);
void reint_reads_prepare(nrm_db_t *db);

/* Opens a plan (a new id) with its follow-ups and publishes reintegration.plan_opened; when a
 * unique rule refuses it (the referral already opened one, or the case has a live plan of this
 * kind) nothing happens and *opened is false. referral_id may be NULL; plan_id (may be NULL)
 * receives the new id (REINT_UUID_SIZE bytes). */
nrm_status_t reint_plan_open(reint_t *self, nrm_tx_t *tx, const char *case_id, int kind,
                             const char *manager, const char *referral_id, bool *opened,
                             char *plan_id);

/* Closes a live plan: its follow-ups are cancelled, reintegration.plan_closed published. */
nrm_status_t reint_plan_close(nrm_tx_t *tx, const char *case_id, const char *plan_id, int outcome,
                              const char *reason);

/* Loads what reintegration knows of the case into *c (c->known false when nothing). */
nrm_status_t reint_case_load(nrm_tx_t *tx, const char *case_id, reint_case_t *c);

/* True when the person is a national of the country of identification. */
bool reint_national(const reint_t *self, const reint_case_t *c);

/* Loads and locks the plan plan_id names (field for errors) into *plan. When unknown:
 * nrm_authz_not_found (NOT_FOUND for a coordinator, PERMISSION_DENIED for others). Sets
 * call->subject_id. Checks no authorization of a plan that exists: the caller does. */
nrm_status_t reint_plan_load(nrm_call_t *call, const char *plan_id, const char *field,
                             reint_plan_t *plan);

/* The sender's relations to a loaded plan: PLAN_MANAGER, RECEPTION_PARTNER (once arrival is
 * confirmed), CASE_MANAGER. */
unsigned reint_plan_relations(const nrm_call_t *call, const reint_plan_t *plan);

/* Request handlers (nrm_handler_fn; ctx is the reint_t). */
nrm_status_t reint_open_plan(void *ctx, nrm_call_t *call);
nrm_status_t reint_close_plan(void *ctx, nrm_call_t *call);
nrm_status_t reint_reassign_plan(void *ctx, nrm_call_t *call);
nrm_status_t reint_upsert_goal(void *ctx, nrm_call_t *call);
nrm_status_t reint_record_return(void *ctx, nrm_call_t *call);
nrm_status_t reint_record_followup(void *ctx, nrm_call_t *call);
nrm_status_t reint_get_plan(void *ctx, nrm_call_t *call);
nrm_status_t reint_list_plans(void *ctx, nrm_call_t *call);

/* ---- reintegration_cases.c ---- */

/* Consumers (nrm_apply_fn; ctx is the reint_t): routing's referral.created / accepted, and
 * intake's case.* events. */
nrm_status_t reint_on_referral_event(void *ctx, nrm_tx_t *tx, const Nrm__V1__Event *ev);
nrm_status_t reint_on_case_event(void *ctx, nrm_tx_t *tx, const Nrm__V1__Event *ev);

/* ---- reintegration_followups.c ---- */

/* Schedules the plan's follow-ups at the configured offsets after opened_ms. Returns how many
 * in *count. */
nrm_status_t reint_followups_schedule(reint_t *self, nrm_tx_t *tx, const char *plan_id,
                                      int64_t opened_ms, int *count);

/* Cancels the follow-ups of a plan not yet recorded (the plan closes). */
nrm_status_t reint_followups_cancel(nrm_tx_t *tx, const char *plan_id);

/* Moves the clock of a resumed plan's pending follow-ups by paused_ms. */
nrm_status_t reint_followups_shift(nrm_tx_t *tx, const char *plan_id, int64_t paused_ms);

/* Timer (nrm_timer_fn; ctx is the reint_t): follow-ups of open plans whose time has come
 * become due (reintegration.followup_due), due ones past their window overdue
 * (reintegration.followup_overdue); at most scan_batch of each per run. */
nrm_status_t reint_scan_followups(void *ctx, nrm_tx_t *tx);

/* Publishes reintegration.risk_alert for a plan. */
nrm_status_t reint_emit_risk(nrm_tx_t *tx, const char *case_id, const char *plan_id,
                             const char *plan_state, const char *reason, const char *agency_id);

#endif
