/* The shelter service's answers, as routing follows the case's SHELTER need: where the bed
 * stands (case_services.bed_status, from shelter.allocated, shelter.waitlisted,
 * shelter.released, shelter.request_cancelled), shelter.no_show for the coordinator when a hold
 * ended without an arrival (the person would otherwise lose the bed request silently; the case
 * manager may ask again with shelter's RequestBed), and the withdrawal of a pending request when
 * the person withdraws consent (shelter.request_withdrawn, for the shelter service). Applied
 * once per shelter event by the consumer's checkpoint, a batch of events at a time. */
#include "routing.h"
#include "nrm_log.h"
#include "nrm_pgarray.h"

#include <string.h>

#define S_NO_SHOW "no_show"

/* the batch's last status for each case ($1, $2: in the events' order) */
static const char s_sql_bed_status[] =
    "UPDATE case_services s SET bed_status = u.status, updated_at = now()"
    " FROM (SELECT DISTINCT ON (case_id) case_id, status"
    "       FROM unnest($1::text[], $2::text[]) WITH ORDINALITY AS u(case_id, status, n)"
    "       ORDER BY case_id, n DESC) u"
    " WHERE s.case_id = u.case_id AND s.service = $3 RETURNING s.case_id";
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

/* The bed status an event sets ("no_show" for a release that was one), or NULL for events
 * that are not followed. */
static const char *s_status_of(const Nrm__V1__Event *ev)
{
    if (!ev->case_id || !ev->case_id[0] || strlen(ev->case_id) >= ROUTING_ID_MAX)
        return NULL;
    switch (ev->body_case) {
    case NRM__V1__EVENT__BODY_SHELTER_ALLOCATED:
        return "held";
    case NRM__V1__EVENT__BODY_SHELTER_WAITLISTED:
        return "waiting";
    case NRM__V1__EVENT__BODY_SHELTER_REQUEST_CANCELLED:
        return "cancelled";
    case NRM__V1__EVENT__BODY_SHELTER_RELEASED: {
        const char *reason = ev->shelter_released->reason;
        return reason && strcmp(reason, S_NO_SHOW) == 0 ? S_NO_SHOW : "released";
    }
    default:
        return NULL;
    }
}

/* shelter.released as a no_show: published for the coordinator. */
static nrm_status_t s_no_show(routing_t *self, nrm_tx_t *tx, const Nrm__V1__Event *ev)
{
    const Nrm__V1__ShelterReleased *r = ev->shelter_released;
    Nrm__V1__ShelterNoShow body = NRM__V1__SHELTER_NO_SHOW__INIT;
    body.allocation_id = r->allocation_id;
    body.shelter_id = r->shelter_id;
    body.reason = S_NO_SHOW;
    nrm_log_warn("shelter no_show: the case has no bed and no request", "{s:s, s:s}", "case_id",
                 ev->case_id, "shelter_id", r->shelter_id ? r->shelter_id : "");
    nrm_db_count_on_commit(tx->db, self->shelter_no_shows, 1);
    return routing_emit_body(self, tx, ev->case_id, NRM__V1__EVENT__BODY_SHELTER_NO_SHOW, &body);
}

/* True when case_id is among the rows (column 0) of res. */
static bool s_listed(const PGresult *res, const char *case_id)
{
    for (int row = 0; row < PQntuples(res); row++)
        if (strcmp(nrm_db_text(res, row, 0), case_id) == 0)
            return true;
    return false;
}

nrm_status_t routing_flush_shelter_events(void *ctx, nrm_tx_t *tx)
{
    routing_t *self = ctx;
    const Nrm__V1__Event *const *events = NULL;
    size_t n = routing_batch_events(self, &events);
    nrm_pgarray_t ids, statuses;
    nrm_pgarray_init(&ids);
    nrm_pgarray_init(&statuses);
    for (size_t i = 0; i < n; i++) {
        const char *status = s_status_of(events[i]);
        if (!status)
            continue;
        nrm_pgarray_text(&ids, events[i]->case_id);
        nrm_pgarray_text(&statuses, status);
    }
    nrm_status_t st = NRM_OK;
    PGresult *res = NULL;
    routing_batch_begin(self);
    if (ids.count > 0)
        st = routing_lock(self, tx); /* before any row lock: one lock order everywhere */
    if (st == NRM_OK && ids.count > 0) {
        nrm_params_t p = {0};
        nrm_params_text(&p, nrm_pgarray_close(&ids));
        nrm_params_text(&p, nrm_pgarray_close(&statuses));
        nrm_params_int(&p, NRM__V1__SERVICE_TYPE__SERVICE_TYPE_SHELTER);
        st = nrm_db_exec(tx->db, "routing_bed_status", &p, &res, tx->err);
    }
    /* the cases routing has a SHELTER decision for (res) hear of their no_shows, in order */
    for (size_t i = 0; st == NRM_OK && res && i < n; i++) {
        const char *status = s_status_of(events[i]);
        if (status && strcmp(status, S_NO_SHOW) == 0 && s_listed(res, events[i]->case_id)) {
            tx->causation_id = events[i]->event_id;
            st = s_no_show(self, tx, events[i]);
        }
    }
    PQclear(res);
    nrm_pgarray_free(&ids);
    nrm_pgarray_free(&statuses);
    return routing_batch_end(self, tx, st);
}

nrm_status_t routing_shelter_withdraw(routing_t *self, nrm_tx_t *tx, const char *case_id,
                                      const char *reason)
{
    nrm_status_t st = routing_batch_sync(self, tx);
    if (st != NRM_OK)
        return st;
    nrm_params_t p = {0};
    nrm_params_text(&p, case_id);
    nrm_params_int(&p, NRM__V1__SERVICE_TYPE__SERVICE_TYPE_SHELTER);
    PGresult *res = NULL;
    st = nrm_db_exec(tx->db, "routing_shelter_withdraw", &p, &res, tx->err);
    bool withdrawn = st == NRM_OK && PQntuples(res) == 1;
    PQclear(res);
    if (!withdrawn)
        return st;
    Nrm__V1__ShelterRequestWithdrawn body = NRM__V1__SHELTER_REQUEST_WITHDRAWN__INIT;
    body.reason = (char *)reason;
    return routing_emit_body(self, tx, case_id, NRM__V1__EVENT__BODY_SHELTER_REQUEST_WITHDRAWN,
                             &body);
}
