/* Needs that wait: a need nobody could take (referral.unroutable was published, the coordinator
 * told) waits in state `waiting` and is routed, oldest of the most urgent first, as soon as a
 * place frees: a referral ends, a cap rises, a provider or an agreement is added. Every pass
 * runs under the assignment lock and locks the rows it takes (SKIP LOCKED), so with several
 * instances each waiting need is routed once, in one transaction with its referral.created. */
#include "routing.h"
#include "nrm_log.h"

#include <string.h>

#define S_WAITING_CHECK_MS 60000 /* how often waiting needs are looked at without a trigger */

static const char s_sql_waiting[] =
    "SELECT s.case_id, s.service FROM case_services s JOIN cases c ON c.case_id = s.case_id"
    " WHERE s.state = 'waiting' AND c.status = 'open'"
    " ORDER BY c.urgency DESC, s.waiting_since_ms, s.case_id, s.service LIMIT $1"
    " FOR UPDATE OF s SKIP LOCKED";

void routing_waiting_prepare(nrm_db_t *db)
{
    nrm_db_statement(db, "routing_waiting", s_sql_waiting);
}

nrm_status_t routing_serve_waiting(routing_t *self, nrm_tx_t *tx)
{
    nrm_status_t st = routing_batch_sync(self, tx); /* waiting needs held in the batch */
    if (st != NRM_OK)
        return st;
    nrm_params_t p = {0};
    nrm_params_int(&p, self->waiting_batch);
    PGresult *res = NULL;
    st = nrm_db_exec(tx->db, "routing_waiting", &p, &res, tx->err);
    if (st != NRM_OK)
        return st;
    int routed = 0, rows = PQntuples(res);
    for (int row = 0; st == NRM_OK && row < rows; row++) {
        routing_case_t c;
        memset(&c, 0, sizeof c);
        st = routing_case_load(tx, nrm_db_text(res, row, 0), NULL, &c);
        bool done = false;
        if (st == NRM_OK)
            st = routing_refer_waiting(self, tx, &c, (int)nrm_db_int(res, row, 1), &done);
        routed += done;
        routing_case_release(&c);
    }
    PQclear(res);
    if (st == NRM_OK && routed > 0)
        nrm_log_info("waiting needs routed", "{s:i, s:i}", "routed", routed, "examined", rows);
    return st;
}

nrm_status_t routing_directory_tick(void *ctx, nrm_tx_t *tx)
{
    routing_t *self = ctx;
    nrm_status_t st = NRM_OK;
    if (self->seed_pending) { /* after SIGHUP: the configuration's providers, once */
        st = routing_seed_providers(self, tx);
        if (st == NRM_OK)
            self->seed_pending = false;
    }
    if (st == NRM_OK)
        st = routing_warn_agreements(self, tx);
    /* now and then without a trigger: an agreement that starts today */
    if (st == NRM_OK && tx->now_ms - self->waiting_checked_ms >= S_WAITING_CHECK_MS) {
        st = routing_lock(self, tx);
        if (st == NRM_OK)
            st = routing_serve_waiting(self, tx);
        if (st == NRM_OK)
            self->waiting_checked_ms = tx->now_ms;
    }
    return st;
}
