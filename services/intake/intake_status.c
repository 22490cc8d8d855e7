/* The formal status decision: a competent authority (an agency of a type intake.status_deciders
 * names, through the authorization matrix) decides whether the person is a presumed victim, an
 * identified victim or not a victim, on a basis given as a code. Every decision is kept
 * (status_decisions, append-only), audited like every request and published as
 * case.status_decided with the deciding agency's type; a new decision revises the last one.
 * NOT_A_VICTIM waits for the end of the recovery and reflection period (intake_recovery.c).
 * Nothing here makes assistance depend on the decision, nor on cooperation with anyone. */
#include "intake.h"
#include "nrm_authz.h"
#include "nrm_log.h"
#include "nrm_validate.h"

#include <stdio.h>
#include <string.h>

#define S_TYPE_NAME 64
#define S_BASIS_MAX 32
#define S_DECISION_KIND "status_decision"

static const char *const s_bases[] = {"indicators_assessment",
                                      "interview",
                                      "multidisciplinary_assessment",
                                      "prosecution_decision",
                                      "judicial_decision",
                                      "insufficient_indicators",
                                      "new_information",
                                      "other",
                                      NULL};

static const char s_sql_load[] =
    "SELECT status, trafficking_status, case_manager_agency_id FROM cases WHERE case_id = $1"
    " FOR UPDATE";
static const char s_sql_record[] =
    "WITH d AS (INSERT INTO status_decisions (case_id, decision, status, previous_status, basis,"
    "   agency_id, agency_type)"
    "   SELECT $1, COALESCE(max(decision), 0) + 1, $2, $3, $4, $5, $6 FROM status_decisions"
    "   WHERE case_id = $1 RETURNING decision),"
    " c AS (UPDATE cases SET trafficking_status = $2, updated_at = now() WHERE case_id = $1)"
    " SELECT decision FROM d";

void intake_status_prepare(nrm_db_t *db)
{
    nrm_db_statement(db, "intake_status_load", s_sql_load);
    nrm_db_statement(db, "intake_status_record", s_sql_record);
}

nrm_status_t intake_status_check_config(nrm_config_t *config, nrm_error_t *err)
{
    const json_t *list = nrm_config_get(config, NRM_AUTHZ_STATUS_DECIDERS);
    if (!list)
        return NRM_OK; /* the matrix's defaults */
    size_t i;
    json_t *item;
    bool ok = json_is_array(list);
    json_array_foreach(list, i, item)
    {
        char name[S_TYPE_NAME];
        const char *type = json_string_value(item);
        ok =
            ok && type && snprintf(name, sizeof name, "AGENCY_TYPE_%s", type) < (int)sizeof name &&
            protobuf_c_enum_descriptor_get_value_by_name(&nrm__v1__agency_type__descriptor, name) &&
            strcmp(type, "UNSPECIFIED") != 0;
    }
    if (ok)
        return NRM_OK;
    return nrm_fail(err, NRM_FAILED_PRECONDITION, NRM_AUTHZ_STATUS_DECIDERS,
                    "%s must be a list of agency types (JUDICIARY, LAW_ENFORCEMENT, ...)",
                    NRM_AUTHZ_STATUS_DECIDERS);
}

/* Checks a DecideStatus before anything is read. */
static nrm_status_t s_check(const Nrm__V1__DecideStatus *d, nrm_error_t *err)
{
    if (nrm_check_text(err, "decide_status.case_id", d->case_id, INTAKE_ID_MAX, true) != NRM_OK ||
        nrm_check_enum(err, "decide_status.status", &nrm__v1__trafficking_status__descriptor,
                       d->status, false) != NRM_OK)
        return NRM_INVALID_ARGUMENT;
    for (size_t i = 0; s_bases[i]; i++)
        if (strcmp(d->basis, s_bases[i]) == 0)
            return NRM_OK;
    return nrm_fail(err, NRM_INVALID_ARGUMENT, "decide_status.basis",
                    "basis must be one of indicators_assessment, interview, "
                    "multidisciplinary_assessment, prosecution_decision, judicial_decision, "
                    "insufficient_indicators, new_information, other");
}

/* The AgencyType value of a configured type name ("JUDICIARY"), or 0. */
static Nrm__V1__AgencyType s_agency_type(const char *type)
{
    char name[S_TYPE_NAME];
    if (!type || snprintf(name, sizeof name, "AGENCY_TYPE_%s", type) >= (int)sizeof name)
        return NRM__V1__AGENCY_TYPE__AGENCY_TYPE_UNSPECIFIED;
    const ProtobufCEnumValue *v =
        protobuf_c_enum_descriptor_get_value_by_name(&nrm__v1__agency_type__descriptor, name);
    return v ? (Nrm__V1__AgencyType)v->value : NRM__V1__AGENCY_TYPE__AGENCY_TYPE_UNSPECIFIED;
}

/* Loads (and locks) the case: NOT_FOUND, then the matrix, then FAILED_PRECONDITION for a
 * closed case. *previous receives its status. */
static nrm_status_t s_load(nrm_call_t *call, const char *case_id, int *previous)
{
    nrm_params_t p = {0};
    nrm_params_text(&p, case_id);
    PGresult *res = NULL;
    nrm_status_t st = nrm_db_exec(call->tx.db, "intake_status_load", &p, &res, call->tx.err);
    if (st != NRM_OK)
        return st;
    if (PQntuples(res) != 1) {
        PQclear(res);
        return nrm_authz_not_found(call, "decide_status.case_id", "no such case");
    }
    bool open = strcmp(nrm_db_text(res, 0, 0), "open") == 0;
    *previous = (int)nrm_db_int(res, 0, 1);
    unsigned relations =
        strcmp(nrm_db_text(res, 0, 2), call->agency_id) == 0 ? NRM_ROLE_CASE_MANAGER : 0;
    PQclear(res);
    /* competence is a matter of agency type (intake.status_deciders), never of the relation */
    if ((st = nrm_authz_check(call, relations)) != NRM_OK)
        return st;
    if (!open)
        return nrm_fail(call->tx.err, NRM_FAILED_PRECONDITION, "decide_status.case_id",
                        "the case is closed");
    call->subject_id = case_id;
    return NRM_OK;
}

nrm_status_t intake_decide_status(void *ctx, nrm_call_t *call)
{
    (void)ctx;
    const Nrm__V1__DecideStatus *d = call->request->decide_status;
    if (s_check(d, call->tx.err) != NRM_OK)
        return NRM_INVALID_ARGUMENT;
    int previous = 0;
    nrm_status_t st = s_load(call, d->case_id, &previous);
    if (st == NRM_OK && d->status == NRM__V1__TRAFFICKING_STATUS__TRAFFICKING_STATUS_NOT_A_VICTIM)
        st = intake_recovery_refuse_within(call, d->case_id, "decide_status.status",
                                           "a NOT_A_VICTIM decision");
    if (st != NRM_OK)
        return st;
    nrm_params_t p = {0};
    nrm_params_text(&p, d->case_id);
    nrm_params_int(&p, d->status);
    nrm_params_int(&p, previous);
    nrm_params_text(&p, d->basis);
    nrm_params_text(&p, call->agency_id);
    nrm_params_text(&p, call->agency_type);
    PGresult *res = NULL;
    st = nrm_db_exec(call->tx.db, "intake_status_record", &p, &res, call->tx.err);
    if (st != NRM_OK)
        return st;
    int decision = (int)nrm_db_int(res, 0, 0);
    PQclear(res);
    Nrm__V1__StatusDecided body = NRM__V1__STATUS_DECIDED__INIT;
    body.status = d->status;
    body.previous_status = (Nrm__V1__TraffickingStatus)previous;
    body.basis = d->basis;
    body.decided_by_agency_type = s_agency_type(call->agency_type);
    body.decided_by_agency_id = (char *)call->agency_id;
    body.decision = decision;
    st = nrm_call_audit(call, S_DECISION_KIND, d->case_id);
    if (st == NRM_OK)
        st = nrm_tx_emit_body(&call->tx, d->case_id, NRM__V1__EVENT__BODY_STATUS_DECIDED, &body);
    if (st != NRM_OK)
        return st;
    nrm_log_info("status decided", "{s:s, s:i, s:s, s:i}", "case_id", d->case_id, "status",
                 (int)d->status, "agency_type", call->agency_type, "decision", decision);
    intake_reply_case(call, d->case_id);
    return NRM_OK;
}
