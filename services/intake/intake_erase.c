/* Erasure by crypto-shredding. Erasing a case's identity deletes its wrapped data key (the
 * sealed reports stay, unreadable by anyone, in the database and in every backup taken after
 * the key is gone) and its identity hash (so a later report of the same person opens a new
 * case); the categorical record, the events and the audit stay. Each erasure is audited (kind
 * identity_erased, subject the case) and published as case.identity_erased { reason }: that
 * log is what re-applies erasures after a restore (deploy/OPERATIONS.md).
 *
 * EraseIdentity is the coordinator's (the matrix decides it before the handler); the retention
 * timer erases, with reason "retention", the identities of cases closed more than
 * intake.retention.erase_closed_after_s seconds ago (0, the default: never). */
#include "intake.h"
#include "nrm_log.h"
#include "nrm_validate.h"

#include <string.h>

#define S_ERASED_KIND "identity_erased"
#define S_RETENTION_REASON "retention"
#define S_RETENTION_BATCH 100
#define S_REASON_MAX 32
#define S_SERVICE_AGENCY "service:intake"

static const char *const s_reasons[] = {"subject_request", "retention", "recorded_in_error", NULL};

static const char s_sql_load[] =
    "SELECT identity_erased_at IS NOT NULL FROM cases WHERE case_id = $1 FOR UPDATE";
/* the hashes (identity and blocking) and the key go; rows sealed directly under the keyring (before
 * data keys, not yet moved by the start job) lose their bytes, since the keyring would still open
 * them; the stored replies of the case's reports lose their request hash (an unkeyed hash of the
 * whole request, identity included, which would confirm a guess: nrm_server then gives the stored
 * reply to a repeat from the same agency without comparing) */
static const char s_sql_erase[] =
    "WITH erased AS (UPDATE cases SET identity_hash = NULL, blocking_hash = NULL,"
    "   identity_erased_at = now(),"
    "   erase_reason = $2, updated_at = now() WHERE case_id = $1 AND identity_erased_at IS NULL"
    "   RETURNING case_id),"
    " key AS (DELETE FROM case_keys WHERE case_id IN (SELECT case_id FROM erased)),"
    " old AS (UPDATE reports SET person_sealed = '', notes_sealed = '', sealed_under = 'case_key',"
    "   key_id = 0 WHERE case_id IN (SELECT case_id FROM erased) AND sealed_under = 'keyring'),"
    " req AS (UPDATE requests SET request_hash = '' WHERE request_id IN"
    "   (SELECT request_id FROM reports WHERE case_id IN (SELECT case_id FROM erased)))"
    " SELECT count(*)::int FROM erased";
static const char s_sql_due[] =
    "SELECT case_id FROM cases WHERE status = 'closed' AND identity_erased_at IS NULL"
    " AND closed_at < now() - make_interval(secs => $1::int) ORDER BY closed_at LIMIT $2"
    " FOR UPDATE SKIP LOCKED";
static const char s_sql_audit[] =
    "INSERT INTO audit_log (request_id, agency_id, kind, status, error_field, subject_id)"
    " VALUES ('', $1, $2, 'OK', '', $3)";

void intake_erase_prepare(nrm_db_t *db)
{
    nrm_db_statement(db, "intake_erase_load", s_sql_load);
    nrm_db_statement(db, "intake_erase", s_sql_erase);
    nrm_db_statement(db, "intake_erase_due", s_sql_due);
    nrm_db_statement(db, "intake_erase_audit", s_sql_audit);
}

/* Erases the identity of a case (locked by the caller, not yet erased) and publishes
 * case.identity_erased. */
static nrm_status_t s_erase(nrm_tx_t *tx, const char *case_id, const char *reason)
{
    nrm_params_t p = {0};
    nrm_params_text(&p, case_id);
    nrm_params_text(&p, reason);
    PGresult *res = NULL;
    nrm_status_t st = nrm_db_exec(tx->db, "intake_erase", &p, &res, tx->err);
    if (st != NRM_OK)
        return st;
    bool erased = nrm_db_int(res, 0, 0) == 1;
    PQclear(res);
    if (!erased)
        return NRM_OK;
    Nrm__V1__IdentityErased body = NRM__V1__IDENTITY_ERASED__INIT;
    body.reason = (char *)reason;
    return nrm_tx_emit_body(tx, case_id, NRM__V1__EVENT__BODY_IDENTITY_ERASED, &body);
}

/* Checks an EraseIdentity: the case id and a reason code. */
static nrm_status_t s_check(const Nrm__V1__EraseIdentity *e, nrm_error_t *err)
{
    if (nrm_check_text(err, "erase_identity.case_id", e->case_id, INTAKE_ID_MAX, true) != NRM_OK ||
        nrm_check_text(err, "erase_identity.reason", e->reason, S_REASON_MAX, true) != NRM_OK)
        return NRM_INVALID_ARGUMENT;
    for (size_t i = 0; s_reasons[i]; i++)
        if (strcmp(e->reason, s_reasons[i]) == 0)
            return NRM_OK;
    return nrm_fail(err, NRM_INVALID_ARGUMENT, "erase_identity.reason",
                    "reason must be one of subject_request, retention, recorded_in_error");
}

nrm_status_t intake_erase_identity(void *ctx, nrm_call_t *call)
{
    (void)ctx;
    const Nrm__V1__EraseIdentity *e = call->request->erase_identity;
    if (s_check(e, call->tx.err) != NRM_OK)
        return NRM_INVALID_ARGUMENT;
    /* coordinators only: the server has decided it (nrm_authz, a request about no object) */
    nrm_params_t p = {0};
    nrm_params_text(&p, e->case_id);
    PGresult *res = NULL;
    nrm_status_t st = nrm_db_exec(call->tx.db, "intake_erase_load", &p, &res, call->tx.err);
    if (st != NRM_OK)
        return st;
    int rows = PQntuples(res);
    bool already = rows == 1 && nrm_db_int(res, 0, 0) != 0;
    PQclear(res);
    if (rows != 1)
        return nrm_fail(call->tx.err, NRM_NOT_FOUND, "erase_identity.case_id", "no such case");
    if (already)
        return nrm_fail(call->tx.err, NRM_FAILED_PRECONDITION, "erase_identity.case_id",
                        "the identity of this case is already erased");
    call->subject_id = e->case_id;
    st = s_erase(&call->tx, e->case_id, e->reason);
    if (st == NRM_OK)
        st = nrm_call_audit(call, S_ERASED_KIND, e->case_id);
    if (st != NRM_OK)
        return st;
    intake_reply_case(call, e->case_id);
    return NRM_OK;
}

nrm_status_t intake_retention_erase(void *ctx, nrm_tx_t *tx)
{
    intake_t *self = ctx;
    int64_t after_s = nrm_config_int(nrm_service_config(self->service),
                                     "intake.retention.erase_closed_after_s", 0);
    if (after_s <= 0)
        return NRM_OK;
    nrm_params_t p = {0};
    nrm_params_int(&p, after_s);
    nrm_params_int(&p, S_RETENTION_BATCH);
    PGresult *res = NULL;
    nrm_status_t st = nrm_db_exec(tx->db, "intake_erase_due", &p, &res, tx->err);
    if (st != NRM_OK)
        return st;
    int rows = PQntuples(res);
    for (int i = 0; i < rows && st == NRM_OK; i++) {
        const char *case_id = nrm_db_text(res, i, 0);
        st = s_erase(tx, case_id, S_RETENTION_REASON);
        nrm_params_t a = {0};
        nrm_params_text(&a, S_SERVICE_AGENCY);
        nrm_params_text(&a, S_ERASED_KIND);
        nrm_params_text(&a, case_id);
        if (st == NRM_OK)
            st = nrm_db_exec(tx->db, "intake_erase_audit", &a, NULL, tx->err);
    }
    PQclear(res);
    if (st == NRM_OK && rows > 0)
        nrm_log_info("identities erased after retention", "{s:i, s:I}", "cases", rows,
                     "erase_closed_after_s", (json_int_t)after_s);
    return st;
}
