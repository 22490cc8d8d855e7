/* Intake's case events as shelter needs them: case.closed frees the case's beds
 * (shelter_on_case_closed); case.opened and case.manager_changed say who manages the case, so
 * that its case manager may list its allocations. Applied once each by the consumer; a replay
 * is harmless (an older manager never replaces a newer one). The managers of one batch are
 * written together at its end, the newest of each case. */
#include "nrm_alloc.h"
#include "shelter.h"

#include <stdlib.h>
#include <string.h>

static const char s_sql_manager[] =
    "INSERT INTO case_managers (case_id, agency_id, manager_seq)"
    " SELECT DISTINCT ON (case_id) case_id, agency_id, manager_seq"
    " FROM jsonb_to_recordset($1::jsonb) AS x(case_id text, agency_id text, manager_seq bigint)"
    " ORDER BY case_id, manager_seq DESC"
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
    shelter_t *self = ctx;
    if (!self->managers)
        self->managers = json_array();
    json_t *row = json_pack("{s:s, s:s, s:I}", "case_id", ev->case_id, "agency_id", manager,
                            "manager_seq", (json_int_t)ev->seq);
    if (!row || json_array_append_new(self->managers, row) != 0)
        nrm_oom("shelter case managers");
    return NRM_OK;
}

nrm_status_t shelter_cases_flush(void *ctx, nrm_tx_t *tx)
{
    shelter_t *self = ctx;
    if (json_array_size(self->managers) == 0)
        return NRM_OK;
    char *text = json_dumps(self->managers, JSON_COMPACT);
    if (!text)
        nrm_oom("shelter case managers");
    nrm_params_t p = {0};
    nrm_params_text(&p, text);
    nrm_status_t st = nrm_db_exec_later(tx->db, "shelter_case_manager", &p, tx->err);
    free(text);
    shelter_cases_reset(self);
    return st;
}

void shelter_cases_reset(void *ctx)
{
    shelter_t *self = ctx;
    json_array_clear(self->managers);
}
