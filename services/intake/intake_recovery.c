/* The recovery and reflection period (Council of Europe Convention, Article 13): from
 * identification (identified_at of the report that opened the case) and for
 * intake.recovery_period_s (30 days by default, adjustable by the national committee), nothing
 * that would remove protection is accepted: a NOT_A_VICTIM decision, or a closure other than by
 * the person's own choice, is refused FAILED_PRECONDITION naming the field. The case manager and
 * the coordinator are reminded (case.recovery_period_ending) intake.recovery_reminder_s before
 * it ends, once per case, whichever instance gets there first. */
#include "intake.h"
#include "nrm_log.h"
#include "nrm_service.h"

#include <stdio.h>
#include <string.h>

#define S_MS_PER_S 1000
#define S_REMIND_BATCH 100

/* Closures accepted during the period: the person's own choice, and reasons that remove no
 * protection from anyone (the person's case goes on under another id; the person died). */
static const char *const s_close_within[] = {"declined_assistance", "duplicate", "deceased", NULL};

static const char s_sql_identified[] =
    "SELECT (extract(epoch FROM identified_at) * 1000)::bigint FROM cases WHERE case_id = $1";
/* The open cases whose reminder is due, not yet reminded, locked by this instance only (a
 * case another instance is reminding is skipped); the conditional update makes it once. */
static const char s_sql_remind[] =
    "WITH due AS (SELECT case_id FROM cases WHERE status = 'open' AND recovery_reminded_at IS NULL"
    "   AND identified_at <= to_timestamp($3::bigint / 1000.0) - make_interval(secs => $1::bigint)"
    "     + make_interval(secs => $2::bigint)"
    "   ORDER BY identified_at LIMIT $4 FOR UPDATE SKIP LOCKED)"
    " UPDATE cases c SET recovery_reminded_at = now() FROM due"
    " WHERE c.case_id = due.case_id AND c.recovery_reminded_at IS NULL"
    " RETURNING c.case_id, (extract(epoch FROM c.identified_at) * 1000)::bigint,"
    " c.case_manager_agency_id";

void intake_recovery_prepare(nrm_db_t *db)
{
    nrm_db_statement(db, "intake_recovery_identified", s_sql_identified);
    nrm_db_statement(db, "intake_recovery_remind", s_sql_remind);
}

int64_t intake_recovery_period_s(nrm_config_t *config)
{
    int64_t s = nrm_config_int(config, "intake.recovery_period_s", INTAKE_RECOVERY_PERIOD_S);
    return s < 0 ? INTAKE_RECOVERY_PERIOD_S : s;
}

int64_t intake_recovery_reminder_s(nrm_config_t *config)
{
    int64_t s = nrm_config_int(config, "intake.recovery_reminder_s", INTAKE_RECOVERY_REMINDER_S);
    return s < 0 ? INTAKE_RECOVERY_REMINDER_S : s;
}

nrm_status_t intake_recovery_refuse_within(nrm_call_t *call, const char *case_id, const char *field,
                                           const char *what)
{
    int64_t period_s = intake_recovery_period_s(call->config);
    if (period_s == 0)
        return NRM_OK;
    nrm_params_t p = {0};
    nrm_params_text(&p, case_id);
    PGresult *res = NULL;
    nrm_status_t st =
        nrm_db_exec(call->tx.db, "intake_recovery_identified", &p, &res, call->tx.err);
    if (st != NRM_OK)
        return st;
    bool found = PQntuples(res) == 1;
    int64_t ends_ms = found ? nrm_db_int(res, 0, 0) + period_s * S_MS_PER_S : 0;
    PQclear(res);
    if (!found)
        return nrm_fail(call->tx.err, NRM_NOT_FOUND, field, "no such case");
    if (call->tx.now_ms >= ends_ms)
        return NRM_OK;
    return nrm_fail(call->tx.err, NRM_FAILED_PRECONDITION, field,
                    "%s waits for the end of the recovery and reflection period (%lld s from "
                    "now)",
                    what, (long long)((ends_ms - call->tx.now_ms + S_MS_PER_S - 1) / S_MS_PER_S));
}

nrm_status_t intake_recovery_check_close(nrm_call_t *call, const char *case_id, const char *reason)
{
    for (size_t i = 0; s_close_within[i]; i++)
        if (strcmp(reason, s_close_within[i]) == 0)
            return NRM_OK;
    return intake_recovery_refuse_within(call, case_id, "close_case.reason",
                                         "a closure other than by the person's own choice "
                                         "(declined_assistance)");
}

nrm_status_t intake_recovery_remind(void *ctx, nrm_tx_t *tx)
{
    intake_t *self = ctx;
    nrm_config_t *config = nrm_service_config(self->service);
    int64_t period_s = intake_recovery_period_s(config);
    int64_t reminder_s = intake_recovery_reminder_s(config);
    if (period_s == 0)
        return NRM_OK;
    nrm_params_t p = {0};
    nrm_params_int(&p, period_s);
    nrm_params_int(&p, reminder_s);
    nrm_params_int(&p, tx->now_ms);
    nrm_params_int(&p, S_REMIND_BATCH);
    PGresult *res = NULL;
    nrm_status_t st = nrm_db_exec(tx->db, "intake_recovery_remind", &p, &res, tx->err);
    if (st != NRM_OK)
        return st;
    for (int i = 0; st == NRM_OK && i < PQntuples(res); i++) {
        int64_t ends_ms = nrm_db_int(res, i, 1) + period_s * S_MS_PER_S;
        if (ends_ms <= tx->now_ms)
            continue; /* over already (the settings changed): nothing left to remind of */
        Nrm__V1__RecoveryPeriodEnding body = NRM__V1__RECOVERY_PERIOD_ENDING__INIT;
        body.ends_at_ms = ends_ms;
        body.case_manager_agency_id = (char *)nrm_db_text(res, i, 2);
        st = nrm_tx_emit_body(tx, nrm_db_text(res, i, 0),
                              NRM__V1__EVENT__BODY_RECOVERY_PERIOD_ENDING, &body);
        if (st == NRM_OK)
            nrm_log_info("recovery period ending", "{s:s, s:I}", "case_id", nrm_db_text(res, i, 0),
                         "ends_at_ms", (json_int_t)ends_ms);
    }
    PQclear(res);
    return st;
}

nrm_status_t intake_ident_configure(void *ctx, nrm_config_t *config)
{
    intake_t *self = ctx;
    nrm_error_t err;
    nrm_error_clear(&err);
    intake_screening_t *screening = NULL;
    if (intake_status_check_config(config, &err) == NRM_OK)
        screening = intake_screening_load(config, &err);
    if (!screening) {
        nrm_log_error("identification configuration refused", "{s:s, s:s}", "field", err.field,
                      "message", err.message);
        return NRM_FAILED_PRECONDITION;
    }
    intake_screening_destroy(&self->screening);
    self->screening = screening;
    int64_t period_s = intake_recovery_period_s(config);
    if (period_s < INTAKE_RECOVERY_PERIOD_S)
        nrm_log_warn("recovery period shorter than the Convention's 30 days", "{s:I}",
                     "recovery_period_s", (json_int_t)period_s);
    return NRM_OK;
}
