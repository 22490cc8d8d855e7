/* Set-based work per consumer batch (issue 14 §5). Routing's consumers gather a batch's events
 * in apply and do the work in flush, inside the batch's transaction: the assignment lock and
 * the directory's version once per batch, and what the events write to case_services and the
 * outbox held in memory and written in one statement per table, and so are the referrals it
 * creates. A statement that reads referrals or case_services first writes what is held
 * (routing_batch_sync), so the events of one case in one batch see each other's effects in
 * their order; events are emitted in the order they were made. Outside a batch (handlers,
 * timers) every write goes to the database at once. */
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

/* the referrals held, in the order they were made; a row whose attempt exists already (its
 * (case, service, attempt), or an open referral of its case and service) is not inserted and
 * not returned */
static const char s_sql_referrals_many[] =
    "INSERT INTO referrals (referral_id, case_id, service, attempt, provider_id, urgency,"
    " rule_id, reason, causation_id, created_ms, due_ms, agreement_id)"
    " SELECT * FROM unnest($1::text[], $2::text[], $3::int[], $4::int[], $5::text[], $6::int[],"
    " $7::text[], $8::text[], $9::text[], $10::bigint[], $11::bigint[], $12::text[])"
    " ON CONFLICT DO NOTHING RETURNING referral_id";

/* One referral held for the batch (strings owned; agreement_id NULL for none). */
typedef struct {
    char referral_id[37];
    char case_id[ROUTING_ID_MAX];
    char *provider_id, *rule_id, *reason, *causation_id, *agreement_id;
    int service, attempt, urgency;
    int64_t created_ms, due_ms;
} s_referral_row_t;

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
    s_referral_row_t *referrals; /* referrals not inserted yet, in order */
    size_t n_referrals, cap_referrals;
    Nrm__V1__Event **emitted; /* events not appended to the outbox yet (owned copies) */
    size_t n_emitted, cap_emitted;
    bool active; /* flush is running: writes are held */
    bool locked; /* the assignment lock is held by this batch's transaction */
    bool direct; /* a held referral's attempt existed: until a batch commits, none is held */
};

void routing_batch_prepare(nrm_db_t *db)
{
    nrm_db_statement(db, "routing_states_many", s_sql_states_many);
    nrm_db_statement(db, "routing_referrals_many", s_sql_referrals_many);
}

routing_batch_t *routing_batch_new(void)
{
    return nrm_xcalloc(1, sizeof(routing_batch_t));
}

/* Drops the held referrals. */
static void s_drop_referrals(routing_batch_t *b)
{
    for (size_t i = 0; i < b->n_referrals; i++) {
        free(b->referrals[i].provider_id);
        free(b->referrals[i].rule_id);
        free(b->referrals[i].reason);
        free(b->referrals[i].causation_id);
        free(b->referrals[i].agreement_id);
    }
    b->n_referrals = 0;
}

/* Drops what is held (rows and events); the gathered events stay. */
static void s_drop_held(routing_batch_t *b)
{
    s_drop_referrals(b);
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
    free((*self)->referrals);
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
    if (st == NRM_OK)
        self->batch->direct = false; /* the batch redone at once went through */
    routing_batch_reset(self);       /* whatever happened: the next batch starts afresh */
    return st;
}

/* Inserts the held referrals (one statement). CONFLICT when one was not new (see
 * routing_batch_sync). */
static nrm_status_t s_sync_referrals(routing_batch_t *b, nrm_tx_t *tx)
{
    if (b->n_referrals == 0)
        return NRM_OK;
    enum {
        ID,
        CASE,
        SERVICE,
        ATTEMPT,
        PROVIDER,
        URGENCY,
        RULE,
        REASON,
        CAUSE,
        CREATED,
        DUE,
        AGREEMENT,
        COLS
    };
    nrm_pgarray_t a[COLS];
    for (int k = 0; k < COLS; k++)
        nrm_pgarray_init(&a[k]);
    for (size_t i = 0; i < b->n_referrals; i++) {
        const s_referral_row_t *r = &b->referrals[i];
        nrm_pgarray_text(&a[ID], r->referral_id);
        nrm_pgarray_text(&a[CASE], r->case_id);
        nrm_pgarray_int(&a[SERVICE], r->service);
        nrm_pgarray_int(&a[ATTEMPT], r->attempt);
        nrm_pgarray_text(&a[PROVIDER], r->provider_id);
        nrm_pgarray_int(&a[URGENCY], r->urgency);
        nrm_pgarray_text(&a[RULE], r->rule_id);
        nrm_pgarray_text(&a[REASON], r->reason);
        nrm_pgarray_text(&a[CAUSE], r->causation_id);
        nrm_pgarray_int(&a[CREATED], r->created_ms);
        nrm_pgarray_int(&a[DUE], r->due_ms);
        nrm_pgarray_text(&a[AGREEMENT], r->agreement_id);
    }
    nrm_params_t p = {0};
    for (int k = 0; k < COLS; k++)
        nrm_params_text(&p, nrm_pgarray_close(&a[k]));
    PGresult *res = NULL;
    nrm_status_t st = nrm_db_exec(tx->db, "routing_referrals_many", &p, &res, tx->err);
    for (int k = 0; k < COLS; k++)
        nrm_pgarray_free(&a[k]);
    if (st != NRM_OK)
        return st;
    bool all_new = PQntuples(res) == (int)b->n_referrals;
    PQclear(res);
    if (!all_new) {
        b->direct = true;
        return nrm_fail(tx->err, NRM_CONFLICT, NULL,
                        "a referral attempt of the batch existed already: the batch is made "
                        "again with each referral written at once");
    }
    s_drop_referrals(b);
    return NRM_OK;
}

bool routing_batch_hold_referral(routing_t *self, const routing_referral_t *r)
{
    routing_batch_t *b = self->batch;
    if (!b || !b->active || b->direct)
        return false;
    if (b->n_referrals == b->cap_referrals) {
        b->cap_referrals = b->cap_referrals ? 2 * b->cap_referrals : 64;
        b->referrals = nrm_xreallocarray(b->referrals, b->cap_referrals, sizeof *b->referrals);
    }
    s_referral_row_t *row = &b->referrals[b->n_referrals++];
    snprintf(row->referral_id, sizeof row->referral_id, "%s", r->referral_id);
    snprintf(row->case_id, sizeof row->case_id, "%s", r->case_id);
    row->provider_id = nrm_xstrdup(r->provider_id);
    row->rule_id = nrm_xstrdup(r->rule_id ? r->rule_id : "");
    row->reason = nrm_xstrdup(r->reason ? r->reason : "");
    row->causation_id = nrm_xstrdup(r->causation_id ? r->causation_id : "");
    row->agreement_id = r->agreement_id ? nrm_xstrdup(r->agreement_id) : NULL;
    row->service = r->service;
    row->attempt = r->attempt;
    row->urgency = r->urgency;
    row->created_ms = r->created_ms;
    row->due_ms = r->due_ms;
    return true;
}

nrm_status_t routing_batch_sync_referrals(routing_t *self, nrm_tx_t *tx)
{
    return self->batch ? s_sync_referrals(self->batch, tx) : NRM_OK;
}

nrm_status_t routing_batch_sync(routing_t *self, nrm_tx_t *tx)
{
    routing_batch_t *b = self->batch;
    nrm_status_t held = routing_batch_sync_referrals(self, tx);
    if (held != NRM_OK)
        return held;
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
    nrm_status_t st = nrm_db_exec_later(tx->db, "routing_states_many", &p, tx->err);
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
