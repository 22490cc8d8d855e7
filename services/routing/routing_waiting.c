/* Needs that wait: a need nobody could take (referral.unroutable was published, the coordinator
 * told) waits in state `waiting` and is routed, oldest of the most urgent first, as soon as a
 * place frees: a referral ends, a cap rises, a provider or an agreement is added. Every pass
 * runs under the assignment lock and locks the rows it takes (SKIP LOCKED), so with several
 * instances each waiting need is routed once, in one transaction with its referral.created. */
#include "routing.h"
#include "nrm_log.h"
#include "nrm_pgarray.h"

#include <string.h>

#define S_WAITING_CHECK_MS 60000 /* how often waiting needs are looked at without a trigger */

/* the waiting needs that an active provider with room could take by service and region (a
 * national provider's services $2; a regional one's (service, region) pairs $3, $4): needs no
 * provider can take now do not fill the pass's waiting_batch rows ahead of one that could */
static const char s_sql_waiting[] =
    "SELECT s.case_id, s.service FROM case_services s JOIN cases c ON c.case_id = s.case_id"
    " WHERE s.state = 'waiting' AND c.status = 'open' AND (s.service = ANY ($2::int[])"
    "  OR EXISTS (SELECT 1 FROM unnest($3::int[], $4::text[]) AS r(service, region)"
    "   WHERE r.service = s.service AND r.region = c.region))"
    " ORDER BY c.urgency DESC, s.waiting_since_ms, s.case_id, s.service LIMIT $1"
    " FOR UPDATE OF s SKIP LOCKED";
/* the active providers below their cap (one at its cap takes no referral, whatever its
 * agreements) */
static const char s_sql_room[] =
    "SELECT provider_id FROM providers WHERE active AND open_count < max_open";

void routing_waiting_prepare(nrm_db_t *db)
{
    nrm_db_statement(db, "routing_waiting", s_sql_waiting);
    nrm_db_statement(db, "routing_waiting_room", s_sql_room);
}

/* Where the active providers with room serve: the services of national ones into national, the
 * (service, region) pairs of regional ones into services and regions (int[] and text[] literals;
 * the caller frees the three with nrm_pgarray_free); *any false when there is no such provider. */
static nrm_status_t s_room(routing_t *self, nrm_tx_t *tx, nrm_pgarray_t *national,
                           nrm_pgarray_t *services, nrm_pgarray_t *regions, bool *any)
{
    nrm_pgarray_init(national);
    nrm_pgarray_init(services);
    nrm_pgarray_init(regions);
    PGresult *res = NULL;
    nrm_status_t st = nrm_db_exec(tx->db, "routing_waiting_room", NULL, &res, tx->err);
    routing_set_t everywhere = 0;
    *any = false;
    for (int row = 0; st == NRM_OK && row < PQntuples(res); row++) {
        const routing_provider_t *p =
            routing_directory_find(self->directory, nrm_db_text(res, row, 0));
        if (!p || !p->active)
            continue;
        *any = true;
        if (p->national) {
            everywhere |= p->services;
            continue;
        }
        for (unsigned v = 0; v < 32; v++)
            for (size_t r = 0; ROUTING_SET_HAS(p->services, v) && r < p->n_regions; r++) {
                nrm_pgarray_int(services, (int64_t)v);
                nrm_pgarray_text(regions, p->regions[r]);
            }
    }
    PQclear(res);
    for (unsigned v = 0; v < 32; v++)
        if (ROUTING_SET_HAS(everywhere, v))
            nrm_pgarray_int(national, (int64_t)v);
    return st;
}

nrm_status_t routing_serve_waiting(routing_t *self, nrm_tx_t *tx)
{
    nrm_status_t st = routing_batch_sync(self, tx); /* waiting needs held in the batch */
    if (st != NRM_OK)
        return st;
    nrm_pgarray_t national, services, regions;
    bool any = false;
    st = s_room(self, tx, &national, &services, &regions, &any);
    PGresult *res = NULL;
    if (st == NRM_OK && any) {
        nrm_params_t p = {0};
        nrm_params_int(&p, self->waiting_batch);
        nrm_params_text(&p, nrm_pgarray_close(&national));
        nrm_params_text(&p, nrm_pgarray_close(&services));
        nrm_params_text(&p, nrm_pgarray_close(&regions));
        st = nrm_db_exec(tx->db, "routing_waiting", &p, &res, tx->err);
    }
    nrm_pgarray_free(&national);
    nrm_pgarray_free(&services);
    nrm_pgarray_free(&regions);
    if (st != NRM_OK || !any)
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
