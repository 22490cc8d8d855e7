/* Intake's case events as shelter needs them: case.closed frees the case's beds
 * (shelter_on_case_closed); case.opened and case.manager_changed say who manages the case, so
 * that its case manager may list its allocations. Applied once each by the consumer; a replay
 * is harmless (an older manager never replaces a newer one). */
#include "shelter.h"

#include <string.h>

static const char s_sql_manager[] =
    "INSERT INTO case_managers (case_id, agency_id, manager_seq) VALUES ($1, $2, $3)"
    " ON CONFLICT (case_id) DO UPDATE SET agency_id = EXCLUDED.agency_id,"
    " manager_seq = EXCLUDED.manager_seq WHERE case_managers.manager_seq < EXCLUDED.manager_seq";

void shelter_cases_prepare(nrm_db_t *db)
{
    nrm_db_statement(db, "shelter_case_manager", s_sql_manager);
}

nrm_status_t shelter_on_case_event(void *ctx, nrm_tx_t *tx, const Nrm__V1__Event *ev)
{
    const char *manager = NULL;
    if (ev->body_case == NRM__V1__EVENT__BODY_CASE_CLOSED)
        return shelter_on_case_closed(ctx, tx, ev);
    if (ev->body_case == NRM__V1__EVENT__BODY_CASE_OPENED)
        manager = ev->case_opened->reporting_agency_id;
    else if (ev->body_case == NRM__V1__EVENT__BODY_CASE_MANAGER_CHANGED)
        manager = ev->case_manager_changed->case_manager_agency_id;
    if (!manager || !manager[0] || strlen(manager) > SHELTER_ID_MAX || !ev->case_id ||
        !ev->case_id[0] || strlen(ev->case_id) > SHELTER_ID_MAX)
        return NRM_OK;
    nrm_params_t p = {0};
    nrm_params_text(&p, ev->case_id);
    nrm_params_text(&p, manager);
    nrm_params_int(&p, ev->seq);
    return nrm_db_exec(tx->db, "shelter_case_manager", &p, NULL, tx->err);
}
