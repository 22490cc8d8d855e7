/* Set-based work per consumer batch (issue 14 §5). Routing's consumers gather a batch's events
 * in apply and do the work in flush, inside the batch's transaction: the assignment lock and
 * the directory's version once per batch, and what the events write to case_services and the
 * outbox held in memory and written in one statement per table. A statement that reads
 * case_services first writes what is held (routing_batch_sync), so the events of one case in
 * one batch see each other's effects in their order; events are emitted in the order they were
 * made. Outside a batch (handlers, timers) every write goes to the database at once. */
#include "routing.h"
#include "nrm_alloc.h"
#include "nrm_pgarray.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* a state recorded for a service of a case; waiting_since_ms as routing_set_state's */
static const char s_sql_states_many[] =
    "INSERT INTO case_services (case_id, service, state, mandatory, rule_id, reason,"
    " waiting_since_ms) SELECT u.case_id, u.service, u.state, u.mandatory, u.rule_id, u.reason,"
    " CASE WHEN u.state = 'waiting' THEN $7::bigint END"
    " FROM unnest($1::text[], $2::int[], $3::text[], $4::bool[], $5::text[], $6::text[])"
    " AS u(case_id, service, state, mandatory, rule_id, reason)"
    " ON CONFLICT (case_id, service) DO UPDATE SET"
    " state = EXCLUDED.state, mandatory = EXCLUDED.mandatory, rule_id = EXCLUDED.rule_id,"
    " reason = EXCLUDED.reason, updated_at = now(), waiting_since_ms = CASE WHEN"
    " EXCLUDED.state = 'waiting' THEN coalesce(case_services.waiting_since_ms, $7::bigint) END";

/* One service state held for the batch (strings owned). */
typedef struct {
    char case_id[ROUTING_ID_MAX];
    int service;
    char *state;
    bool mandatory;
    char *rule_id;
    char *reason;
} s_state_row_t;

struct routing_batch_t {
    const Nrm__V1__Event **events; /* gathered by apply (the consumer's, alive until flush) */
    size_t n_events, cap_events;
    s_state_row_t *states; /* case_services rows not written yet, one per (case, service) */
    size_t n_states, cap_states;
    Nrm__V1__Event **emitted; /* events not appended to the outbox yet (owned copies) */
    size_t n_emitted, cap_emitted;
    bool active; /* flush is running: writes are held */
    bool locked; /* the assignment lock is held by this batch's transaction */
};

void routing_batch_prepare(nrm_db_t *db)
{
    nrm_db_statement(db, "routing_states_many", s_sql_states_many);
}

routing_batch_t *routing_batch_new(void)
{
    return nrm_xcalloc(1, sizeof(routing_batch_t));
}

/* Drops what is held (rows and events); the gathered events stay. */
static void s_drop_held(routing_batch_t *b)
{
    for (size_t i = 0; i < b->n_states; i++) {
        free(b->states[i].state);
        free(b->states[i].rule_id);
        free(b->states[i].reason);
    }
    b->n_states = 0;
    for (size_t i = 0; i < b->n_emitted; i++)
        nrm__v1__event__free_unpacked(b->emitted[i], NULL);
    b->n_emitted = 0;
}

void routing_batch_destroy(routing_batch_t **self)
{
    if (!self || !*self)
        return;
    s_drop_held(*self);
    free((*self)->events);
    free((*self)->states);
    free((*self)->emitted);
    free(*self);
    *self = NULL;
}

void routing_batch_reset(void *ctx)
{
    routing_t *self = ctx;
    routing_prefetch_drop(self);
    s_drop_held(self->batch);
    self->batch->n_events = 0;
    self->batch->active = self->batch->locked = false;
}

nrm_status_t routing_batch_gather(void *ctx, nrm_tx_t *tx, const Nrm__V1__Event *ev)
{
    (void)tx;
    routing_batch_t *b = ((routing_t *)ctx)->batch;
    if (b->n_events == b->cap_events) {
        b->cap_events = b->cap_events ? 2 * b->cap_events : 64;
        b->events = nrm_xreallocarray(b->events, b->cap_events, sizeof *b->events);
    }
    b->events[b->n_events++] = ev;
    return NRM_OK;
}

size_t routing_batch_events(const routing_t *self, const Nrm__V1__Event *const **events)
{
    *events = self->batch->events;
    return self->batch->n_events;
}

bool routing_batch_locked(const routing_t *self)
{
    return self->batch && self->batch->locked;
}

void routing_batch_begin(routing_t *self)
{
    self->batch->active = true;
}

void routing_batch_set_locked(routing_t *self)
{
    if (self->batch->active)
        self->batch->locked = true;
}

nrm_status_t routing_batch_end(routing_t *self, nrm_tx_t *tx, nrm_status_t st)
{
    if (st == NRM_OK)
        st = routing_batch_sync(self, tx);
    if (st == NRM_OK)
        st = nrm_tx_emit_many(tx, (Nrm__V1__Event *const *)self->batch->emitted,
                              self->batch->n_emitted);
    routing_batch_reset(self); /* whatever happened: the next batch starts afresh */
    return st;
}

nrm_status_t routing_batch_sync(routing_t *self, nrm_tx_t *tx)
{
    routing_batch_t *b = self->batch;
    if (!b || b->n_states == 0)
        return NRM_OK;
    nrm_pgarray_t ids, services, states, mandatory, rules, reasons;
    nrm_pgarray_init(&ids);
    nrm_pgarray_init(&services);
    nrm_pgarray_init(&states);
    nrm_pgarray_init(&mandatory);
    nrm_pgarray_init(&rules);
    nrm_pgarray_init(&reasons);
    for (size_t i = 0; i < b->n_states; i++) {
        const s_state_row_t *r = &b->states[i];
        nrm_pgarray_text(&ids, r->case_id);
        nrm_pgarray_int(&services, r->service);
        nrm_pgarray_text(&states, r->state);
        nrm_pgarray_bool(&mandatory, r->mandatory);
        nrm_pgarray_text(&rules, r->rule_id);
        nrm_pgarray_text(&reasons, r->reason);
    }
    nrm_params_t p = {0};
    nrm_params_text(&p, nrm_pgarray_close(&ids));
    nrm_params_text(&p, nrm_pgarray_close(&services));
    nrm_params_text(&p, nrm_pgarray_close(&states));
    nrm_params_text(&p, nrm_pgarray_close(&mandatory));
    nrm_params_text(&p, nrm_pgarray_close(&rules));
    nrm_params_text(&p, nrm_pgarray_close(&reasons));
    nrm_params_int(&p, tx->now_ms);
    nrm_status_t st = nrm_db_exec(tx->db, "routing_states_many", &p, NULL, tx->err);
    nrm_pgarray_free(&ids);
    nrm_pgarray_free(&services);
    nrm_pgarray_free(&states);
    nrm_pgarray_free(&mandatory);
    nrm_pgarray_free(&rules);
    nrm_pgarray_free(&reasons);
    if (st != NRM_OK)
        return st;
    for (size_t i = 0; i < b->n_states; i++) {
        free(b->states[i].state);
        free(b->states[i].rule_id);
        free(b->states[i].reason);
    }
    b->n_states = 0;
    return NRM_OK;
}

bool routing_batch_hold_state(routing_t *self, const char *case_id, int service, const char *state,
                              bool mandatory, const char *rule_id, const char *reason)
{
    routing_batch_t *b = self->batch;
    if (!b || !b->active)
        return false;
    s_state_row_t *row = NULL;
    for (size_t i = 0; i < b->n_states && !row; i++) /* a later state of the same service wins */
        if (b->states[i].service == service && strcmp(b->states[i].case_id, case_id) == 0)
            row = &b->states[i];
    if (row) {
        free(row->state);
        free(row->rule_id);
        free(row->reason);
    } else {
        if (b->n_states == b->cap_states) {
            b->cap_states = b->cap_states ? 2 * b->cap_states : 64;
            b->states = nrm_xreallocarray(b->states, b->cap_states, sizeof *b->states);
        }
        row = &b->states[b->n_states++];
        snprintf(row->case_id, sizeof row->case_id, "%s", case_id);
        row->service = service;
    }
    row->state = nrm_xstrdup(state);
    row->mandatory = mandatory;
    row->rule_id = rule_id ? nrm_xstrdup(rule_id) : NULL;
    row->reason = reason ? nrm_xstrdup(reason) : NULL;
    return true;
}

nrm_status_t routing_emit(routing_t *self, nrm_tx_t *tx, const Nrm__V1__Event *ev)
{
    routing_batch_t *b = self->batch;
    if (!b || !b->active)
        return nrm_tx_emit(tx, (Nrm__V1__Event *)ev);
    /* an owned copy, with what nrm_tx_emit would take from the transaction now */
    Nrm__V1__Event copy = *ev;
    if (!copy.causation_id || !copy.causation_id[0])
        copy.causation_id = (char *)(tx->causation_id ? tx->causation_id : "");
    if (!copy.occurred_at_ms)
        copy.occurred_at_ms = tx->now_ms;
    size_t len = nrm__v1__event__get_packed_size(&copy);
    uint8_t *bytes = nrm_xmalloc(len ? len : 1);
    nrm__v1__event__pack(&copy, bytes);
    Nrm__V1__Event *held = nrm__v1__event__unpack(NULL, len, bytes);
    free(bytes);
    if (!held)
        return nrm_fail(tx->err, NRM_INTERNAL, NULL, "out of memory");
    if (b->n_emitted == b->cap_emitted) {
        b->cap_emitted = b->cap_emitted ? 2 * b->cap_emitted : 64;
        b->emitted = nrm_xreallocarray(b->emitted, b->cap_emitted, sizeof *b->emitted);
    }
    b->emitted[b->n_emitted++] = held; /* tx->emitted counts it when it is appended */
    return NRM_OK;
}

nrm_status_t routing_emit_body(routing_t *self, nrm_tx_t *tx, const char *case_id,
                               Nrm__V1__Event__BodyCase body, void *message)
{
    Nrm__V1__Event ev = NRM__V1__EVENT__INIT;
    ev.case_id = (char *)(case_id ? case_id : "");
    ev.body_case = body;
    ev.case_opened = message; /* every member of the body oneof shares this pointer slot */
    return routing_emit(self, tx, &ev);
}
