/* Needs that wait: a need nobody could take (referral.unroutable was published, the coordinator
 * told) waits in state `waiting` and is routed, oldest of the most urgent first, as soon as a
 * place frees: a referral ends, a cap rises, a provider or an agreement is added. Every pass
 * runs under the assignment lock and locks the rows it takes (SKIP LOCKED), so with several
 * instances each waiting need is routed once, in one transaction with its referral.created. */
#include "routing.h"
#include "nrm_log.h"
#include "nrm_pgarray.h"

#include <stdio.h>
#include <string.h>

#define S_WAITING_CHECK_MS 60000 /* how often waiting needs are looked at without a trigger */

/* the waiting needs that an active provider with room could take by service and region (a
 * national provider's services $2; a regional one's (service, region) pairs $3, $4): needs no
 * provider can take now do not fill the pass's waiting_batch rows ahead of one that could;
 * with their place in the order (routing_waiting_key_t) */
#define S_WAITING_SQL                                                                              \
    "SELECT s.case_id, s.service, c.urgency, s.waiting_since_ms FROM case_services s"              \
    " JOIN cases c ON c.case_id = s.case_id"                                                       \
    " WHERE s.state = 'waiting' AND c.status = 'open' AND (s.service = ANY ($2::int[])"            \
    "  OR EXISTS (SELECT 1 FROM unnest($3::int[], $4::text[]) AS r(service, region)"               \
    "   WHERE r.service = s.service AND r.region = c.region))"
#define S_WAITING_ORDER                                                                            \
    " ORDER BY c.urgency DESC, s.waiting_since_ms, s.case_id COLLATE \"C\", s.service LIMIT $1"    \
    " FOR UPDATE OF s SKIP LOCKED"
/* the first page */
static const char s_sql_waiting[] = S_WAITING_SQL S_WAITING_ORDER;
/* a page after the key ($5 .. $8) */
static const char s_sql_waiting_after[] = S_WAITING_SQL
    " AND (c.urgency < $5 OR (c.urgency = $5 AND (s.waiting_since_ms,"
    " s.case_id COLLATE \"C\", s.service) > ($6::bigint, $7::text, $8::int)))" S_WAITING_ORDER;
/* the active providers below their cap (one at its cap takes no referral, whatever its
 * agreements) */
static const char s_sql_room[] =
    "SELECT provider_id FROM providers WHERE active AND open_count < max_open";

void routing_waiting_prepare(nrm_db_t *db)
{
    nrm_db_statement(db, "routing_waiting", s_sql_waiting);
    nrm_db_statement(db, "routing_waiting_after", s_sql_waiting_after);
    nrm_db_statement(db, "routing_waiting_room", s_sql_room);
}

/* Where the active providers with room serve now, into room (what it held is freed): the
 * services of national ones, then the (service, region) pairs of regional ones as services and
 * regions (int[] and text[] literals; the caller frees the three with nrm_pgarray_free). What
 * the batch holds is written first, so that its referrals count. *any false when there is no
 * such provider. */
static nrm_status_t s_room(routing_t *self, nrm_tx_t *tx, nrm_pgarray_t room[3], bool *any)
{
    nrm_pgarray_t *national = &room[0], *services = &room[1], *regions = &room[2];
    for (int i = 0; i < 3; i++)
        nrm_pgarray_free(&room[i]);
    *any = false;
    nrm_status_t st = routing_batch_sync(self, tx);
    if (st != NRM_OK)
        return st;
    PGresult *res = NULL;
    st = nrm_db_exec(tx->db, "routing_waiting_room", NULL, &res, tx->err);
    routing_set_t everywhere = 0;
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

/* The key of row of a page (s_sql_waiting's columns). */
static routing_waiting_key_t s_key_of(const PGresult *res, int row)
{
    routing_waiting_key_t k = {.set = true,
                               .urgency = (int)nrm_db_int(res, row, 2),
                               .since_ms = nrm_db_int(res, row, 3),
                               .service = (int)nrm_db_int(res, row, 1)};
    snprintf(k.case_id, sizeof k.case_id, "%s", nrm_db_text(res, row, 0));
    return k;
}

/* Whether a comes after b in the order waiting needs are served in. */
static bool s_key_after(const routing_waiting_key_t *a, const routing_waiting_key_t *b)
{
    if (a->urgency != b->urgency)
        return a->urgency < b->urgency;
    if (a->since_ms != b->since_ms)
        return a->since_ms > b->since_ms;
    int c = strcmp(a->case_id, b->case_id);
    return c != 0 ? c > 0 : a->service > b->service;
}

/* Reads one page of waiting needs (after: NULL for the first) that a provider with room could
 * take (s_room's arrays) into *res, and examines each: routes it when a provider can take
 * it now (*routed counts them). */
static nrm_status_t s_page(routing_t *self, nrm_tx_t *tx, nrm_pgarray_t room[3],
                           const routing_waiting_key_t *after, PGresult **res, int *routed)
{
    nrm_params_t p = {0};
    nrm_params_int(&p, self->waiting_batch);
    for (int i = 0; i < 3; i++)
        nrm_params_text(&p, nrm_pgarray_close(&room[i]));
    if (after) {
        nrm_params_int(&p, after->urgency);
        nrm_params_int(&p, after->since_ms);
        nrm_params_text(&p, after->case_id);
        nrm_params_int(&p, after->service);
    }
    nrm_status_t st =
        nrm_db_exec(tx->db, after ? "routing_waiting_after" : "routing_waiting", &p, res, tx->err);
    for (int row = 0; st == NRM_OK && row < PQntuples(*res); row++) {
        routing_case_t c;
        memset(&c, 0, sizeof c);
        st = routing_case_load(tx, nrm_db_text(*res, row, 0), NULL, &c);
        bool done = false;
        if (st == NRM_OK)
            st = routing_refer_waiting(self, tx, &c, (int)nrm_db_int(*res, row, 1), &done);
        *routed += done;
        routing_case_release(&c);
    }
    return st;
}

nrm_status_t routing_serve_waiting(routing_t *self, nrm_tx_t *tx)
{
    nrm_pgarray_t room[3] = {{0}, {0}, {0}};
    PGresult *first = NULL, *next = NULL;
    bool any = false;
    int routed = 0, examined = 0;
    nrm_status_t st = s_room(self, tx, room, &any);
    if (st == NRM_OK && any)
        st = s_page(self, tx, room, NULL, &first, &routed);
    examined = st == NRM_OK && first ? PQntuples(first) : 0;
    bool more = examined > 0 && examined == self->waiting_batch; /* behind the first page */
    if (more) /* the room the first page's referrals left */
        st = s_room(self, tx, room, &any);
    if (st == NRM_OK && more && any) {
        routing_waiting_key_t end = s_key_of(first, examined - 1);
        const routing_waiting_key_t *from =
            self->waiting_next.set && s_key_after(&self->waiting_next, &end) ? &self->waiting_next
                                                                             : &end;
        st = s_page(self, tx, room, from, &next, &routed);
        int rows = st == NRM_OK ? PQntuples(next) : 0;
        examined += rows;
        /* a rolled-back pass leaves the key moved all the same: those needs come round again */
        self->waiting_next =
            rows == self->waiting_batch ? s_key_of(next, rows - 1) : (routing_waiting_key_t){0};
    } else if (st == NRM_OK && any && !more) {
        self->waiting_next = (routing_waiting_key_t){0}; /* every candidate was examined */
    }
    PQclear(first);
    PQclear(next);
    for (int i = 0; i < 3; i++)
        nrm_pgarray_free(&room[i]);
    if (st == NRM_OK && routed > 0)
        nrm_log_info("waiting needs routed", "{s:i, s:i}", "routed", routed, "examined", examined);
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
