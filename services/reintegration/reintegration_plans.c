/* Plans: opening (from an accepted referral or OpenPlan), closing, reassignment, and what the
 * life of the case does to them (consent withdrawn and given again, case closed, a new report
 * linked to the case). */
#include "nrm_authz.h"
#include "nrm_crypto.h"
#include "nrm_log.h"
#include "nrm_validate.h"
#include "reintegration.h"

#include <stdio.h>
#include <string.h>

#define S_RISK_LINKED "linked_report"

static const char s_sql_case_upsert[] =
    "INSERT INTO cases (case_id, manager_agency_id, nationality, region, consent)"
    " VALUES ($1, $2, $3, $4, $5) ON CONFLICT (case_id) DO NOTHING";
static const char s_sql_case_manager[] =
    "UPDATE cases SET manager_agency_id = $2 WHERE case_id = $1";
static const char s_sql_case_consent[] = "UPDATE cases SET consent = $2 WHERE case_id = $1";
static const char s_sql_case_closed[] = "UPDATE cases SET open = false WHERE case_id = $1";
static const char s_sql_case_load[] =
    "SELECT manager_agency_id, nationality, consent, open FROM cases WHERE case_id = $1";
static const char s_sql_referral_add[] =
    "INSERT INTO referrals (referral_id, case_id, service, provider_agency_id)"
    " VALUES ($1, $2, $3, $4) ON CONFLICT (referral_id) DO NOTHING";
static const char s_sql_referral_load[] =
    "SELECT case_id, service FROM referrals WHERE referral_id = $1";
/* any unique violation (the referral's plan, or a live plan of this kind) inserts nothing */
static const char s_sql_plan_insert[] =
    "INSERT INTO plans (plan_id, case_id, kind, manager_agency_id, referral_id, opened_ms)"
    " VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING RETURNING plan_id";
static const char s_sql_plan_load[] =
    "SELECT p.case_id, p.kind, p.state, p.manager_agency_id, p.reception_partner,"
    " p.arrival_confirmed, coalesce(c.manager_agency_id, '') FROM plans p"
    " LEFT JOIN cases c USING (case_id) WHERE p.plan_id = $1 FOR UPDATE OF p";
static const char s_sql_plan_close[] =
    "UPDATE plans SET state = 'closed', closed_ms = $2, outcome = $3, close_reason = $4"
    " WHERE plan_id = $1 AND state <> 'closed'";
static const char s_sql_case_live_plans[] =
    "SELECT plan_id FROM plans WHERE case_id = $1 AND state <> 'closed' ORDER BY plan_id"
    " FOR UPDATE";
static const char s_sql_plan_reassign[] =
    "UPDATE plans SET manager_agency_id = $2 WHERE plan_id = $1";
static const char s_sql_suspend[] =
    "UPDATE plans SET state = 'suspended', suspended_ms = $2 WHERE case_id = $1"
    " AND state = 'open' RETURNING plan_id";
static const char s_sql_resume[] =
    "WITH s AS (SELECT plan_id, suspended_ms FROM plans WHERE case_id = $1"
    "           AND state = 'suspended' FOR UPDATE)"
    " UPDATE plans p SET state = 'open', suspended_ms = NULL FROM s WHERE p.plan_id = s.plan_id"
    " RETURNING p.plan_id, s.suspended_ms";
static const char s_sql_risk_plan[] =
    "SELECT plan_id, state FROM plans WHERE case_id = $1 AND (state <> 'closed' OR closed_ms >= $2)"
    " ORDER BY opened_ms DESC, plan_id LIMIT 1";

void reint_plans_prepare(nrm_db_t *db)
{
    nrm_db_statement(db, "reint_case_upsert", s_sql_case_upsert);
    nrm_db_statement(db, "reint_case_manager", s_sql_case_manager);
    nrm_db_statement(db, "reint_case_consent", s_sql_case_consent);
    nrm_db_statement(db, "reint_case_closed", s_sql_case_closed);
    nrm_db_statement(db, "reint_case_load", s_sql_case_load);
    nrm_db_statement(db, "reint_referral_add", s_sql_referral_add);
    nrm_db_statement(db, "reint_referral_load", s_sql_referral_load);
    nrm_db_statement(db, "reint_plan_insert", s_sql_plan_insert);
    nrm_db_statement(db, "reint_plan_load", s_sql_plan_load);
    nrm_db_statement(db, "reint_plan_close", s_sql_plan_close);
    nrm_db_statement(db, "reint_case_live_plans", s_sql_case_live_plans);
    nrm_db_statement(db, "reint_plan_reassign", s_sql_plan_reassign);
    nrm_db_statement(db, "reint_suspend", s_sql_suspend);
    nrm_db_statement(db, "reint_resume", s_sql_resume);
    nrm_db_statement(db, "reint_risk_plan", s_sql_risk_plan);
}

/* ---- settings ---- */

/* Parses the follow-up offsets (a JSON array of seconds, or the string "s1,s2,..." from the
 * environment) into self. Returns false when one is not a positive number or there are too
 * many. */
static bool s_offsets_parse(reint_t *self, nrm_config_t *config)
{
    static const int64_t dflt[] = {3 * REINT_MONTH_S, 6 * REINT_MONTH_S, 12 * REINT_MONTH_S};
    const char *path = "reintegration.followup_offsets_s";
    const char *text = nrm_config_string(config, path, NULL);
    json_t *list = nrm_config_get(config, path);
    self->n_offsets = 0;
    if (text) {
        char buf[256];
        snprintf(buf, sizeof buf, "%s", text);
        char *save = NULL;
        for (char *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
            char *end = NULL;
            long long v = strtoll(t, &end, 10);
            if (!end || *end || v <= 0 || self->n_offsets >= REINT_MAX_FOLLOWUPS)
                return false;
            self->offsets_ms[self->n_offsets++] = (int64_t)v * REINT_MS_PER_S;
        }
        return self->n_offsets > 0;
    }
    if (!list) {
        for (size_t i = 0; i < sizeof dflt / sizeof dflt[0]; i++)
            self->offsets_ms[self->n_offsets++] = dflt[i] * REINT_MS_PER_S;
        return true;
    }
    if (!json_is_array(list) || json_array_size(list) == 0 ||
        json_array_size(list) > REINT_MAX_FOLLOWUPS)
        return false;
    size_t i;
    json_t *item;
    json_array_foreach(list, i, item)
    {
        if (!json_is_integer(item) || json_integer_value(item) <= 0)
            return false;
        self->offsets_ms[self->n_offsets++] = (int64_t)json_integer_value(item) * REINT_MS_PER_S;
    }
    return true;
}

/* The country of identification: reintegration.country, else routing.policy.host_country,
 * else the prefix of the first configured region ("MA-04" -> "MA"). */
static void s_country(reint_t *self, nrm_config_t *config)
{
    const char *c = nrm_config_string(config, "reintegration.country", NULL);
    if (!c)
        c = nrm_config_string(config, "routing.policy.host_country", NULL);
    char prefix[REINT_COUNTRY_SIZE] = "";
    if (!c) {
        const char *code = json_string_value(
            json_object_get(json_array_get(nrm_config_get(config, "regions"), 0), "code"));
        if (code && strlen(code) > 2 && code[2] == '-')
            snprintf(prefix, sizeof prefix, "%.2s", code);
        c = prefix;
    }
    snprintf(self->country, sizeof self->country, "%s", c);
}

nrm_status_t reint_configure(void *ctx, nrm_config_t *config)
{
    reint_t *self = ctx;
    reint_t next = *self;
    const char *bad = NULL;
    if (!s_offsets_parse(&next, config))
        bad = "reintegration.followup_offsets_s";
    next.window_ms =
        nrm_config_int(config, "reintegration.followup_window_s", REINT_DEFAULT_WINDOW_S) *
        REINT_MS_PER_S;
    next.risk_window_ms =
        nrm_config_int(config, "reintegration.risk_window_s", REINT_DEFAULT_RISK_WINDOW_S) *
        REINT_MS_PER_S;
    next.scan_batch =
        (int)nrm_config_int(config, "reintegration.scan_batch", REINT_DEFAULT_SCAN_BATCH);
    if (!bad && next.window_ms <= 0)
        bad = "reintegration.followup_window_s";
    if (!bad && next.risk_window_ms < 0)
        bad = "reintegration.risk_window_s";
    if (!bad && next.scan_batch <= 0)
        bad = "reintegration.scan_batch";
    s_country(&next, config);
    nrm_error_t err;
    nrm_error_clear(&err);
    if (!bad && next.country[0] &&
        nrm_check_country(&err, "reintegration.country", next.country, true) != NRM_OK)
        bad = "reintegration.country";
    if (bad) {
        nrm_log_error("reintegration configuration refused", "{s:s}", "field", bad);
        return NRM_FAILED_PRECONDITION;
    }
    *self = next;
    nrm_log_info("reintegration configuration loaded", "{s:i, s:s}", "followups", next.n_offsets,
                 "country", next.country);
    return NRM_OK;
}

/* ---- opening ---- */

/* Opens a plan (a new id) with its follow-ups and publishes reintegration.plan_opened; when a
 * unique rule refuses it (the referral already opened one, or the case has a live plan of this
 * kind) nothing happens and *opened is false. referral_id may be NULL. plan_id (may be NULL)
 * receives the new id. */
static nrm_status_t s_open(reint_t *self, nrm_tx_t *tx, const char *case_id, int kind,
                           const char *manager, const char *referral_id, bool *opened,
                           char plan_id[REINT_UUID_SIZE])
{
    char id[REINT_UUID_SIZE];
    nrm_uuid_v4(id);
    nrm_params_t p = {0};
    nrm_params_text(&p, id);
    nrm_params_text(&p, case_id);
    nrm_params_int(&p, kind);
    nrm_params_text(&p, manager);
    nrm_params_text(&p, referral_id);
    nrm_params_int(&p, tx->now_ms);
    PGresult *res = NULL;
    nrm_status_t st = nrm_db_exec(tx->db, "reint_plan_insert", &p, &res, tx->err);
    if (st != NRM_OK)
        return st;
    *opened = PQntuples(res) == 1;
    PQclear(res);
    if (!*opened)
        return NRM_OK;
    int followups = 0;
    st = reint_followups_schedule(self, tx, id, tx->now_ms, &followups);
    if (st != NRM_OK)
        return st;
    Nrm__V1__PlanOpened body = NRM__V1__PLAN_OPENED__INIT;
    body.plan_id = id;
    body.kind = kind;
    body.manager_agency_id = (char *)manager;
    body.referral_id = (char *)(referral_id ? referral_id : "");
    body.followups = followups;
    st = nrm_tx_emit_body(tx, case_id, NRM__V1__EVENT__BODY_PLAN_OPENED, &body);
    if (st == NRM_OK && self->plans_opened)
        (*self->plans_opened)++;
    if (plan_id)
        snprintf(plan_id, REINT_UUID_SIZE, "%s", id);
    return st;
}

/* What reintegration knows of a case. */
typedef struct {
    bool known;
    char manager[REINT_ID_MAX + 1];
    char nationality[REINT_COUNTRY_SIZE];
    bool consent;
    bool open;
} s_case_t;

static nrm_status_t s_case_load(nrm_tx_t *tx, const char *case_id, s_case_t *c)
{
    memset(c, 0, sizeof *c);
    nrm_params_t p = {0};
    nrm_params_text(&p, case_id);
    PGresult *res = NULL;
    nrm_status_t st = nrm_db_exec(tx->db, "reint_case_load", &p, &res, tx->err);
    if (st != NRM_OK)
        return st;
    if (PQntuples(res) == 1) {
        c->known = true;
        snprintf(c->manager, sizeof c->manager, "%s", nrm_db_text(res, 0, 0));
        snprintf(c->nationality, sizeof c->nationality, "%s", nrm_db_text(res, 0, 1));
        c->consent = nrm_db_int(res, 0, 2) != 0;
        c->open = nrm_db_int(res, 0, 3) != 0;
    }
    PQclear(res);
    return NRM_OK;
}

/* True when the person is a national of the country of identification. */
static bool s_national(const reint_t *self, const s_case_t *c)
{
    return self->country[0] && c->nationality[0] && strcmp(self->country, c->nationality) == 0;
}

/* Sets the reply to a PlanRef. */
static void s_reply_ref(nrm_call_t *call, const char *plan_id, const char *state)
{
    Nrm__V1__PlanRef *ref = nrm_call_alloc(call, sizeof *ref);
    nrm__v1__plan_ref__init(ref);
    ref->plan_id = nrm_call_strdup(call, plan_id);
    ref->state = nrm_call_strdup(call, state);
    call->reply->result_case = NRM__V1__REPLY__RESULT_PLAN_REF;
    call->reply->plan_ref = ref;
}

nrm_status_t reint_open_plan(void *ctx, nrm_call_t *call)
{
    reint_t *self = ctx;
    const Nrm__V1__OpenPlan *o = call->request->open_plan;
    nrm_error_t *err = call->tx.err;
    if (nrm_check_text(err, "open_plan.case_id", o->case_id, REINT_ID_MAX, true) != NRM_OK ||
        nrm_check_enum(err, "open_plan.kind", &nrm__v1__plan_kind__descriptor, o->kind, false) !=
            NRM_OK ||
        nrm_check_text(err, "open_plan.manager_agency_id", o->manager_agency_id, REINT_ID_MAX,
                       false) != NRM_OK)
        return NRM_INVALID_ARGUMENT;
    if (o->manager_agency_id[0] && !nrm_config_agency(call->config, o->manager_agency_id))
        return nrm_fail(err, NRM_INVALID_ARGUMENT, "open_plan.manager_agency_id",
                        "the manager must be an agency of the configuration");
    s_case_t c;
    nrm_status_t st = s_case_load(&call->tx, o->case_id, &c);
    if (st != NRM_OK)
        return st;
    if (!c.known)
        return nrm_fail(err, NRM_NOT_FOUND, "open_plan.case_id", "no such case");
    bool is_manager = strcmp(c.manager, call->agency_id) == 0;
    if ((st = nrm_authz_check(call, is_manager ? NRM_ROLE_CASE_MANAGER : 0)) != NRM_OK)
        return st;
    call->subject_id = nrm_call_strdup(call, o->case_id);
    if (o->kind == NRM__V1__PLAN_KIND__PLAN_KIND_ASSISTED_VOLUNTARY_RETURN && s_national(self, &c))
        return nrm_fail(err, NRM_INVALID_ARGUMENT, "open_plan.kind",
                        "a national of the country of identification cannot have a return plan");
    if (!c.open)
        return nrm_fail(err, NRM_FAILED_PRECONDITION, "open_plan.case_id", "the case is closed");
    if (!c.consent)
        return nrm_fail(err, NRM_FAILED_PRECONDITION, "open_plan.case_id",
                        "consent to referral was withdrawn");
    const char *manager = o->manager_agency_id[0] ? o->manager_agency_id : c.manager;
    bool opened = false;
    char plan_id[REINT_UUID_SIZE] = "";
    st = s_open(self, &call->tx, o->case_id, o->kind, manager, NULL, &opened, plan_id);
    if (st != NRM_OK)
        return st;
    if (!opened)
        return nrm_fail(err, NRM_CONFLICT, "open_plan.kind",
                        "the case already has a live plan of this kind");
    s_reply_ref(call, plan_id, "open");
    return NRM_OK;
}

/* referral.accepted: the referral is one of ours (REINTEGRATION or RETURN_ASSISTANCE, from
 * referral.created) and opens a plan managed by the provider, unless one is live already. */
static nrm_status_t s_on_accepted(reint_t *self, nrm_tx_t *tx, const Nrm__V1__Event *ev)
{
    const Nrm__V1__ReferralAccepted *a = ev->referral_accepted;
    if (!a->referral_id[0] || strlen(a->referral_id) > REINT_ID_MAX ||
        strlen(a->provider_agency_id) > REINT_ID_MAX)
        return NRM_OK;
    nrm_params_t p = {0};
    nrm_params_text(&p, a->referral_id);
    PGresult *res = NULL;
    nrm_status_t st = nrm_db_exec(tx->db, "reint_referral_load", &p, &res, tx->err);
    if (st != NRM_OK)
        return st;
    bool ours = PQntuples(res) == 1;
    char case_id[REINT_ID_MAX + 1] = "";
    int service = 0;
    if (ours) {
        snprintf(case_id, sizeof case_id, "%s", nrm_db_text(res, 0, 0));
        service = (int)nrm_db_int(res, 0, 1);
    }
    PQclear(res);
    if (!ours)
        return NRM_OK;
    int kind = service == NRM__V1__SERVICE_TYPE__SERVICE_TYPE_RETURN_ASSISTANCE
                   ? NRM__V1__PLAN_KIND__PLAN_KIND_ASSISTED_VOLUNTARY_RETURN
                   : NRM__V1__PLAN_KIND__PLAN_KIND_LOCAL_REINTEGRATION;
    s_case_t c;
    if ((st = s_case_load(tx, case_id, &c)) != NRM_OK)
        return st;
    if (kind == NRM__V1__PLAN_KIND__PLAN_KIND_ASSISTED_VOLUNTARY_RETURN && s_national(self, &c)) {
        nrm_log_warn("return referral for a national: no plan", "{s:s}", "referral_id",
                     a->referral_id);
        return NRM_OK;
    }
    if (c.known && !c.open)
        return NRM_OK;
    bool opened = false;
    return s_open(self, tx, case_id, kind, a->provider_agency_id, a->referral_id, &opened, NULL);
}

nrm_status_t reint_on_referral_event(void *ctx, nrm_tx_t *tx, const Nrm__V1__Event *ev)
{
    reint_t *self = ctx;
    if (ev->body_case == NRM__V1__EVENT__BODY_REFERRAL_CREATED) {
        const Nrm__V1__ReferralCreated *r = ev->referral_created;
        if ((r->service != NRM__V1__SERVICE_TYPE__SERVICE_TYPE_REINTEGRATION &&
             r->service != NRM__V1__SERVICE_TYPE__SERVICE_TYPE_RETURN_ASSISTANCE) ||
            !r->referral_id[0] || strlen(r->referral_id) > REINT_ID_MAX || !ev->case_id[0] ||
            strlen(ev->case_id) > REINT_ID_MAX)
            return NRM_OK;
        nrm_params_t p = {0};
        nrm_params_text(&p, r->referral_id);
        nrm_params_text(&p, ev->case_id);
        nrm_params_int(&p, r->service);
        nrm_params_text(&p, r->provider_agency_id);
        return nrm_db_exec(tx->db, "reint_referral_add", &p, NULL, tx->err);
    }
    if (ev->body_case == NRM__V1__EVENT__BODY_REFERRAL_ACCEPTED)
        return s_on_accepted(self, tx, ev);
    return NRM_OK;
}

/* ---- closing, reassigning ---- */

/* Closes a live plan: its follow-ups are cancelled, reintegration.plan_closed published. */
static nrm_status_t s_close(nrm_tx_t *tx, const char *case_id, const char *plan_id, int outcome,
                            const char *reason)
{
    nrm_params_t p = {0};
    nrm_params_text(&p, plan_id);
    nrm_params_int(&p, tx->now_ms);
    nrm_params_int(&p, outcome);
    nrm_params_text(&p, reason);
    nrm_status_t st = nrm_db_exec(tx->db, "reint_plan_close", &p, NULL, tx->err);
    if (st == NRM_OK)
        st = reint_followups_cancel(tx, plan_id);
    if (st != NRM_OK)
        return st;
    Nrm__V1__PlanClosed body = NRM__V1__PLAN_CLOSED__INIT;
    body.plan_id = (char *)plan_id;
    body.outcome = outcome;
    body.reason = (char *)reason;
    return nrm_tx_emit_body(tx, case_id, NRM__V1__EVENT__BODY_PLAN_CLOSED, &body);
}

nrm_status_t reint_plan_load(nrm_call_t *call, const char *plan_id, const char *field,
                             reint_plan_t *plan)
{
    if (nrm_check_text(call->tx.err, field, plan_id, REINT_ID_MAX, true) != NRM_OK)
        return NRM_INVALID_ARGUMENT;
    nrm_params_t p = {0};
    nrm_params_text(&p, plan_id);
    PGresult *res = NULL;
    nrm_status_t st = nrm_db_exec(call->tx.db, "reint_plan_load", &p, &res, call->tx.err);
    if (st != NRM_OK)
        return st;
    if (PQntuples(res) != 1) {
        PQclear(res);
        return nrm_fail(call->tx.err, NRM_NOT_FOUND, field, "no such plan");
    }
    memset(plan, 0, sizeof *plan);
    snprintf(plan->plan_id, sizeof plan->plan_id, "%s", plan_id);
    snprintf(plan->case_id, sizeof plan->case_id, "%s", nrm_db_text(res, 0, 0));
    plan->kind = (int)nrm_db_int(res, 0, 1);
    snprintf(plan->state, sizeof plan->state, "%s", nrm_db_text(res, 0, 2));
    snprintf(plan->manager, sizeof plan->manager, "%s", nrm_db_text(res, 0, 3));
    snprintf(plan->reception_partner, sizeof plan->reception_partner, "%s", nrm_db_text(res, 0, 4));
    plan->arrival_confirmed = nrm_db_int(res, 0, 5) != 0;
    snprintf(plan->case_manager, sizeof plan->case_manager, "%s", nrm_db_text(res, 0, 6));
    PQclear(res);
    call->subject_id = nrm_call_strdup(call, plan_id);
    return NRM_OK;
}

unsigned reint_plan_relations(const nrm_call_t *call, const reint_plan_t *plan)
{
    unsigned r = 0;
    if (strcmp(plan->manager, call->agency_id) == 0)
        r |= NRM_ROLE_PLAN_MANAGER;
    if (plan->arrival_confirmed && strcmp(plan->reception_partner, call->agency_id) == 0)
        r |= NRM_ROLE_RECEPTION_PARTNER;
    if (plan->case_manager[0] && strcmp(plan->case_manager, call->agency_id) == 0)
        r |= NRM_ROLE_CASE_MANAGER;
    return r;
}

nrm_status_t reint_close_plan(void *ctx, nrm_call_t *call)
{
    const Nrm__V1__ClosePlan *c = call->request->close_plan;
    reint_plan_t plan;
    nrm_status_t st = reint_plan_load(call, c->plan_id, "close_plan.plan_id", &plan);
    if (st == NRM_OK)
        st = nrm_authz_check(call, reint_plan_relations(call, &plan));
    if (st != NRM_OK)
        return st;
    if (nrm_check_enum(call->tx.err, "close_plan.outcome", &nrm__v1__plan_outcome__descriptor,
                       c->outcome, false) != NRM_OK)
        return NRM_INVALID_ARGUMENT;
    if (c->outcome == NRM__V1__PLAN_OUTCOME__PLAN_OUTCOME_CASE_CLOSED)
        return nrm_fail(call->tx.err, NRM_INVALID_ARGUMENT, "close_plan.outcome",
                        "CASE_CLOSED is set when the case closes");
    if (strcmp(plan.state, "closed") == 0)
        return nrm_fail(call->tx.err, NRM_FAILED_PRECONDITION, "close_plan.plan_id",
                        "the plan is closed");
    st = s_close(&call->tx, plan.case_id, plan.plan_id, c->outcome, "");
    if (st == NRM_OK)
        s_reply_ref(call, plan.plan_id, "closed");
    return st;
}

nrm_status_t reint_reassign_plan(void *ctx, nrm_call_t *call)
{
    const Nrm__V1__ReassignPlan *r = call->request->reassign_plan;
    if (nrm_check_text(call->tx.err, "reassign_plan.manager_agency_id", r->manager_agency_id,
                       REINT_ID_MAX, true) != NRM_OK)
        return NRM_INVALID_ARGUMENT;
    if (!nrm_config_agency(call->config, r->manager_agency_id))
        return nrm_fail(call->tx.err, NRM_INVALID_ARGUMENT, "reassign_plan.manager_agency_id",
                        "the manager must be an agency of the configuration");
    reint_plan_t plan;
    nrm_status_t st = reint_plan_load(call, r->plan_id, "reassign_plan.plan_id", &plan);
    if (st != NRM_OK)
        return st;
    if (strcmp(plan.state, "closed") == 0)
        return nrm_fail(call->tx.err, NRM_FAILED_PRECONDITION, "reassign_plan.plan_id",
                        "the plan is closed");
    nrm_params_t p = {0};
    nrm_params_text(&p, plan.plan_id);
    nrm_params_text(&p, r->manager_agency_id);
    st = nrm_db_exec(call->tx.db, "reint_plan_reassign", &p, NULL, call->tx.err);
    if (st == NRM_OK)
        s_reply_ref(call, plan.plan_id, plan.state);
    return st;
}

/* ---- the case's life ---- */

/* Closes every live plan of the case (the case closed). */
static nrm_status_t s_close_case_plans(nrm_tx_t *tx, const char *case_id, const char *reason)
{
    nrm_params_t p = {0};
    nrm_params_text(&p, case_id);
    PGresult *res = NULL;
    nrm_status_t st = nrm_db_exec(tx->db, "reint_case_closed", &p, NULL, tx->err);
    if (st == NRM_OK)
        st = nrm_db_exec(tx->db, "reint_case_live_plans", &p, &res, tx->err);
    if (st != NRM_OK)
        return st;
    for (int i = 0; i < PQntuples(res) && st == NRM_OK; i++)
        st = s_close(tx, case_id, nrm_db_text(res, i, 0),
                     NRM__V1__PLAN_OUTCOME__PLAN_OUTCOME_CASE_CLOSED, reason);
    PQclear(res);
    return st;
}

/* Suspends the case's open plans (consent withdrawn) or resumes its suspended ones. */
static nrm_status_t s_set_consent(nrm_tx_t *tx, const char *case_id, bool consent)
{
    nrm_params_t p = {0};
    nrm_params_text(&p, case_id);
    nrm_params_bool(&p, consent);
    nrm_status_t st = nrm_db_exec(tx->db, "reint_case_consent", &p, NULL, tx->err);
    nrm_params_t q = {0};
    nrm_params_text(&q, case_id);
    if (!consent)
        nrm_params_int(&q, tx->now_ms);
    PGresult *res = NULL;
    if (st == NRM_OK)
        st = nrm_db_exec(tx->db, consent ? "reint_resume" : "reint_suspend", &q, &res, tx->err);
    if (st != NRM_OK)
        return st;
    for (int i = 0; i < PQntuples(res) && st == NRM_OK; i++) {
        const char *plan_id = nrm_db_text(res, i, 0);
        if (consent)
            st = reint_followups_shift(tx, plan_id, tx->now_ms - nrm_db_int(res, i, 1));
        Nrm__V1__PlanSuspended body = NRM__V1__PLAN_SUSPENDED__INIT;
        body.plan_id = (char *)plan_id;
        body.suspended = !consent;
        if (st == NRM_OK)
            st = nrm_tx_emit_body(tx, case_id, NRM__V1__EVENT__BODY_PLAN_SUSPENDED, &body);
    }
    PQclear(res);
    return st;
}

/* A new report linked to the case: a live plan, or one closed within the risk window, raises
 * reintegration.risk_alert. */
static nrm_status_t s_on_linked(reint_t *self, nrm_tx_t *tx, const Nrm__V1__Event *ev)
{
    nrm_params_t p = {0};
    nrm_params_text(&p, ev->case_id);
    nrm_params_int(&p, tx->now_ms - self->risk_window_ms);
    PGresult *res = NULL;
    nrm_status_t st = nrm_db_exec(tx->db, "reint_risk_plan", &p, &res, tx->err);
    if (st != NRM_OK)
        return st;
    if (PQntuples(res) == 1)
        st = reint_emit_risk(tx, ev->case_id, nrm_db_text(res, 0, 0), nrm_db_text(res, 0, 1),
                             S_RISK_LINKED, ev->case_linked->reporting_agency_id);
    PQclear(res);
    return st;
}

nrm_status_t reint_on_case_event(void *ctx, nrm_tx_t *tx, const Nrm__V1__Event *ev)
{
    reint_t *self = ctx;
    if (!ev->case_id || !ev->case_id[0] || strlen(ev->case_id) > REINT_ID_MAX)
        return NRM_OK;
    nrm_params_t p = {0};
    nrm_params_text(&p, ev->case_id);
    switch (ev->body_case) {
    case NRM__V1__EVENT__BODY_CASE_OPENED: {
        const Nrm__V1__CaseOpened *o = ev->case_opened;
        const char *nationality =
            o->profile && o->profile->nationality ? o->profile->nationality : "";
        nrm_params_text(&p, o->reporting_agency_id);
        nrm_params_text(&p, strlen(nationality) == 2 ? nationality : "");
        nrm_params_text(&p, o->region);
        nrm_params_bool(&p, o->consent_to_referral);
        return nrm_db_exec(tx->db, "reint_case_upsert", &p, NULL, tx->err);
    }
    case NRM__V1__EVENT__BODY_CASE_MANAGER_CHANGED:
        nrm_params_text(&p, ev->case_manager_changed->case_manager_agency_id);
        return nrm_db_exec(tx->db, "reint_case_manager", &p, NULL, tx->err);
    case NRM__V1__EVENT__BODY_CONSENT_WITHDRAWN:
        if (ev->consent_withdrawn->data_sharing_only)
            return NRM_OK;
        return s_set_consent(tx, ev->case_id, false);
    case NRM__V1__EVENT__BODY_CASE_UPDATED:
        if (!ev->case_updated->consent_to_referral)
            return NRM_OK;
        return s_set_consent(tx, ev->case_id, true);
    case NRM__V1__EVENT__BODY_CASE_CLOSED:
        return s_close_case_plans(tx, ev->case_id, ev->case_closed->reason);
    case NRM__V1__EVENT__BODY_CASE_LINKED:
        return s_on_linked(self, tx, ev);
    default:
        return NRM_OK;
    }
}
