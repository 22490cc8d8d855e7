/* Case roles beyond the matrix's own check: the coordinator hands a case to another
 * case-managing agency (ReassignCase), and links are answers about a person, so each one is
 * audited and an agency that links too often raises case.link_alert for the coordinator. */
#include "intake.h"
#include "nrm_log.h"
#include "nrm_validate.h"

#include <string.h>

#define S_LINK_KIND "case_link"

static const char s_sql_manager_load[] =
    "SELECT status, case_manager_agency_id FROM cases WHERE case_id = $1 FOR UPDATE";
static const char s_sql_manager_save[] =
    "UPDATE cases SET case_manager_agency_id = $2, updated_at = now() WHERE case_id = $1";
/* Counts the agency's links in the window (this request's included: it is in the same
 * transaction) and moves its alert state: armed again when within the rate, raised once when
 * over it. Under two instances the primary key lets exactly one raise. */
static const char s_sql_link_rate[] =
    "WITH n AS (SELECT count(*)::int AS links FROM reports WHERE reporting_agency_id = $1"
    "   AND linked AND received_at > now() - make_interval(secs => $2::int)),"
    " cleared AS (DELETE FROM link_alerts WHERE agency_id = $1"
    "   AND (SELECT links FROM n) <= $3::int RETURNING 1),"
    " raised AS (INSERT INTO link_alerts (agency_id) SELECT $1 WHERE (SELECT links FROM n) > "
    "$3::int"
    "   ON CONFLICT (agency_id) DO NOTHING RETURNING 1)"
    " SELECT (SELECT links FROM n), (SELECT count(*)::int FROM raised),"
    " (SELECT count(*)::int FROM cleared)";

void intake_roles_prepare(nrm_db_t *db)
{
    nrm_db_statement(db, "intake_manager_load", s_sql_manager_load);
    nrm_db_statement(db, "intake_manager_save", s_sql_manager_save);
    nrm_db_statement(db, "intake_link_rate", s_sql_link_rate);
}

/* Checks a ReassignCase: the case id, and a new manager that is a configured agency. */
static nrm_status_t s_check_reassign(const Nrm__V1__ReassignCase *r, nrm_config_t *config,
                                     nrm_error_t *err)
{
    if (nrm_check_text(err, "reassign_case.case_id", r->case_id, INTAKE_ID_MAX, true) != NRM_OK ||
        nrm_check_text(err, "reassign_case.case_manager_agency_id", r->case_manager_agency_id,
                       INTAKE_ID_MAX, true) != NRM_OK)
        return NRM_INVALID_ARGUMENT;
    if (!nrm_config_agency(config, r->case_manager_agency_id))
        return nrm_fail(err, NRM_INVALID_ARGUMENT, "reassign_case.case_manager_agency_id",
                        "case_manager_agency_id is not a configured agency");
    return NRM_OK;
}

nrm_status_t intake_reassign_case(void *ctx, nrm_call_t *call)
{
    const Nrm__V1__ReassignCase *r = call->request->reassign_case;
    if (s_check_reassign(r, call->config, call->tx.err) != NRM_OK)
        return NRM_INVALID_ARGUMENT;
    /* coordinators only: the server has decided it (nrm_authz, a request about no object) */
    nrm_params_t p = {0};
    nrm_params_text(&p, r->case_id);
    PGresult *res = NULL;
    nrm_status_t st = nrm_db_exec(call->tx.db, "intake_manager_load", &p, &res, call->tx.err);
    if (st != NRM_OK)
        return st;
    if (PQntuples(res) != 1) {
        PQclear(res);
        return nrm_fail(call->tx.err, NRM_NOT_FOUND, "reassign_case.case_id", "no such case");
    }
    bool open = strcmp(nrm_db_text(res, 0, 0), "open") == 0;
    bool same = strcmp(nrm_db_text(res, 0, 1), r->case_manager_agency_id) == 0;
    PQclear(res);
    if (!open)
        return nrm_fail(call->tx.err, NRM_FAILED_PRECONDITION, "reassign_case.case_id",
                        "the case is closed");
    call->subject_id = r->case_id;
    if (!same) {
        nrm_params_t s = {0};
        nrm_params_text(&s, r->case_id);
        nrm_params_text(&s, r->case_manager_agency_id);
        st = nrm_db_exec(call->tx.db, "intake_manager_save", &s, NULL, call->tx.err);
        Nrm__V1__CaseManagerChanged body = NRM__V1__CASE_MANAGER_CHANGED__INIT;
        body.case_manager_agency_id = r->case_manager_agency_id;
        if (st == NRM_OK)
            st = nrm_tx_emit_body(&call->tx, r->case_id, NRM__V1__EVENT__BODY_CASE_MANAGER_CHANGED,
                                  &body);
    }
    if (st != NRM_OK)
        return st;
    intake_reply_case(call, r->case_id);
    return NRM_OK;
}

nrm_status_t intake_link_noted(nrm_call_t *call, const char *case_id)
{
    nrm_status_t st = nrm_call_audit(call, S_LINK_KIND, case_id);
    int64_t max_links =
        nrm_config_int(call->config, "intake.link_alert.max_links", INTAKE_LINK_ALERT_MAX_LINKS);
    int64_t window_s =
        nrm_config_int(call->config, "intake.link_alert.window_s", INTAKE_LINK_ALERT_WINDOW_S);
    if (st != NRM_OK || max_links < 1 || window_s < 1) /* 0: no alerts */
        return st;
    nrm_params_t p = {0};
    nrm_params_text(&p, call->agency_id);
    nrm_params_int(&p, window_s);
    nrm_params_int(&p, max_links);
    PGresult *res = NULL;
    st = nrm_db_exec(call->tx.db, "intake_link_rate", &p, &res, call->tx.err);
    if (st != NRM_OK)
        return st;
    int links = (int)nrm_db_int(res, 0, 0);
    bool raised = nrm_db_int(res, 0, 1) > 0;
    PQclear(res);
    if (!raised)
        return NRM_OK;
    Nrm__V1__CaseLinkAlert body = NRM__V1__CASE_LINK_ALERT__INIT;
    body.agency_id = (char *)call->agency_id;
    body.links = links;
    body.window_s = (int32_t)window_s;
    nrm_log_warn("link rate exceeded", "{s:s, s:i, s:I}", "agency_id", call->agency_id, "links",
                 links, "window_s", (json_int_t)window_s);
    return nrm_tx_emit_body(&call->tx, "", NRM__V1__EVENT__BODY_CASE_LINK_ALERT, &body);
}
