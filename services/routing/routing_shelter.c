/* The shelter service's answers, as routing follows the case's SHELTER need: where the bed
 * stands (case_services.bed_status, from shelter.allocated, shelter.waitlisted,
 * shelter.released, shelter.request_cancelled), shelter.no_show for the coordinator when a hold
 * ended without an arrival (the person would otherwise lose the bed request silently; the case
 * manager may ask again with shelter's RequestBed), and the withdrawal of a pending request when
 * the person withdraws consent (shelter.request_withdrawn, for the shelter service). Applied
 * once per shelter event by the consumer's checkpoint. */
#include "routing.h"
#include "nrm_log.h"

#include <string.h>

#define S_NO_SHOW "no_show"

static const char s_sql_bed_status[] =
    "UPDATE case_services SET bed_status = $3, updated_at = now()"
    " WHERE case_id = $1 AND service = $2 RETURNING 1";
/* a consented (not mandatory) shelter request goes back to waiting for consent */
static const char s_sql_withdraw[] =
    "UPDATE case_services SET state = 'awaiting_consent', updated_at = now()"
    " WHERE case_id = $1 AND service = $2 AND NOT mandatory AND state = 'shelter_requested'"
    " RETURNING 1";

void routing_shelter_prepare(nrm_db_t *db)
{
    nrm_db_statement(db, "routing_bed_status", s_sql_bed_status);
    nrm_db_statement(db, "routing_shelter_withdraw", s_sql_withdraw);
}

/* Records where the case's bed stands; *known is false when routing has no SHELTER decision
 * for the case (nothing to follow). */
static nrm_status_t s_bed_status(nrm_tx_t *tx, const char *case_id, const char *status, bool *known)
{
    nrm_params_t p = {0};
    nrm_params_text(&p, case_id);
    nrm_params_int(&p, NRM__V1__SERVICE_TYPE__SERVICE_TYPE_SHELTER);
    nrm_params_text(&p, status);
    PGresult *res = NULL;
    nrm_status_t st = nrm_db_exec(tx->db, "routing_bed_status", &p, &res, tx->err);
    *known = st == NRM_OK && PQntuples(res) == 1;
    PQclear(res);
    return st;
}

/* shelter.released: a no_show is published for the coordinator; any release is recorded. */
static nrm_status_t s_released(routing_t *self, nrm_tx_t *tx, const Nrm__V1__Event *ev)
{
    const Nrm__V1__ShelterReleased *r = ev->shelter_released;
    bool no_show = r->reason && strcmp(r->reason, S_NO_SHOW) == 0, known = false;
    nrm_status_t st = s_bed_status(tx, ev->case_id, no_show ? "no_show" : "released", &known);
    if (st != NRM_OK || !no_show || !known)
        return st;
    Nrm__V1__ShelterNoShow body = NRM__V1__SHELTER_NO_SHOW__INIT;
    body.allocation_id = r->allocation_id;
    body.shelter_id = r->shelter_id;
    body.reason = S_NO_SHOW;
    nrm_log_warn("shelter no_show: the case has no bed and no request", "{s:s, s:s}", "case_id",
                 ev->case_id, "shelter_id", r->shelter_id ? r->shelter_id : "");
    (*self->shelter_no_shows)++;
    return nrm_tx_emit_body(tx, ev->case_id, NRM__V1__EVENT__BODY_SHELTER_NO_SHOW, &body);
}

nrm_status_t routing_apply_shelter_event(void *ctx, nrm_tx_t *tx, const Nrm__V1__Event *ev)
{
    routing_t *self = ctx;
    const char *status = NULL;
    switch (ev->body_case) {
    case NRM__V1__EVENT__BODY_SHELTER_ALLOCATED:
        status = "held";
        break;
    case NRM__V1__EVENT__BODY_SHELTER_WAITLISTED:
        status = "waiting";
        break;
    case NRM__V1__EVENT__BODY_SHELTER_REQUEST_CANCELLED:
        status = "cancelled";
        break;
    case NRM__V1__EVENT__BODY_SHELTER_RELEASED:
        break;
    default:
        return NRM_OK;
    }
    if (!ev->case_id || !ev->case_id[0] || strlen(ev->case_id) >= ROUTING_ID_MAX)
        return NRM_OK;
    nrm_status_t st = routing_lock(self, tx); /* before any row lock: one lock order everywhere */
    if (st != NRM_OK)
        return st;
    if (!status)
        return s_released(self, tx, ev);
    bool known = false;
    return s_bed_status(tx, ev->case_id, status, &known);
}

nrm_status_t routing_shelter_withdraw(nrm_tx_t *tx, const char *case_id, const char *reason)
{
    nrm_params_t p = {0};
    nrm_params_text(&p, case_id);
    nrm_params_int(&p, NRM__V1__SERVICE_TYPE__SERVICE_TYPE_SHELTER);
    PGresult *res = NULL;
    nrm_status_t st = nrm_db_exec(tx->db, "routing_shelter_withdraw", &p, &res, tx->err);
    bool withdrawn = st == NRM_OK && PQntuples(res) == 1;
    PQclear(res);
    if (!withdrawn)
        return st;
    Nrm__V1__ShelterRequestWithdrawn body = NRM__V1__SHELTER_REQUEST_WITHDRAWN__INIT;
    body.reason = (char *)reason;
    return nrm_tx_emit_body(tx, case_id, NRM__V1__EVENT__BODY_SHELTER_REQUEST_WITHDRAWN, &body);
}
