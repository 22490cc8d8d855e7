/* notify_retention: the bodies of delivered notifications are not kept for ever.
 *
 * notify keeps each consumed event that has deliveries (or is an outcome of a case) in
 * notify.events, the body every delivery of it sends. Once no delivery of an event can be sent
 * again (none pending or failed: failed ones can be retried by an operator) and the event is
 * older than notify.delivered_retention_s, the body is deleted; the delivery rows (ids, states,
 * times, no content) stay as the record of who was told what, when. 0 keeps bodies for ever. */
#include "notify.h"
#include "nrm_time.h"

#define S_BATCH 1000 /* bodies deleted per run at most, so a run stays short */

/* The oldest expired bodies (events_age, notify 004), locked, then deleted by their row
 * addresses: a delete joined back on the key was planned (generic plan) as a hash join over
 * every kept body, 50 ms a batch at 300,000 bodies against 1.5 ms. A row this statement has
 * locked cannot move before it deletes it. A body a consumer batch has read FOR SHARE to give it
 * to a reporting agency learnt late (notify_maps.c) is skipped: its delivery, not committed
 * yet, is invisible here. */
static const char s_sql_expire[] =
    "WITH old AS (SELECT e.ctid FROM events e"
    "  WHERE e.occurred_at_ms < $1"
    "    AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.source_stream = e.source_stream"
    "                      AND d.source_seq = e.source_seq AND d.state IN ('pending', 'failed'))"
    "  ORDER BY e.occurred_at_ms LIMIT $2 FOR UPDATE SKIP LOCKED)"
    " DELETE FROM events WHERE ctid = ANY (ARRAY(SELECT ctid FROM old))";

void notify_retention_prepare(nrm_db_t *db)
{
    nrm_db_statement(db, "notify_retention_expire", s_sql_expire);
}

nrm_status_t notify_retention_expire(void *ctx, nrm_tx_t *tx)
{
    notify_t *self = ctx;
    int64_t keep_s =
        nrm_config_int(nrm_service_config(self->service), "notify.delivered_retention_s", 0);
    if (keep_s <= 0)
        return NRM_OK;
    nrm_params_t p = {0};
    nrm_params_int(&p, tx->now_ms - keep_s * 1000);
    nrm_params_int(&p, S_BATCH);
    return nrm_db_exec(tx->db, "notify_retention_expire", &p, NULL, tx->err);
}
