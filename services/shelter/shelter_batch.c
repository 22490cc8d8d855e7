/* The routing stream's consumer, set-based: apply gathers a batch's shelter.requested in memory;
 * flush places them all at once in the batch's transaction. Under the beds lock (taken before
 * anything is read, so the free beds read are the truth until commit), one statement reads the
 * state of every case, one remembers every request (bed_requests), one reads the shelters; the
 * choices are made in memory in the batch's order (as one event at a time would make them)
 * against those free beds; then one statement holds
 * the beds and inserts the allocations, one inserts the waitlist entries (their positions from
 * the kept counts of waitlist_ranks), and one appends every event to the outbox. The database
 * still refuses to overbook (the conditional update and the CHECK): a batch that would is
 * rolled back whole. */
#include "nrm_alloc.h"
#include "nrm_crypto.h"
#include "nrm_log.h"
#include "shelter.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A need's columns as jsonb_to_recordset reads them (see s_need_json). */
#define S_NEED_RECORD                                                                              \
    "case_id text, request_event_id uuid, region text, urgency int, safety_risk int,"              \
    " is_minor boolean, age_years int, gender int, languages text[], disability boolean,"          \
    " children int, beds int, requested_at_ms bigint"
#define S_NEED_INSERT                                                                              \
    "case_id, request_event_id, region, urgency, safety_risk, is_minor, age_years, gender,"        \
    " languages, disability, children, beds, requested_at_ms"

/* Each case of the batch (row n of the result for element n): closed, holds a bed, waits.
 * Each is a probe of the case's row (LATERAL ... LIMIT 1): as EXISTS subqueries, the generic
 * plan (it estimates 100 cases a batch) hashed the whole waitlist at every batch, a cost
 * growing with every person waiting. */
static const char s_sql_states[] =
    "SELECT c.t IS NOT NULL, a.t IS NOT NULL, w.t IS NOT NULL"
    " FROM jsonb_array_elements_text($1::jsonb) WITH ORDINALITY AS x(case_id, n)"
    " LEFT JOIN LATERAL (SELECT true FROM closed_cases c WHERE c.case_id = x.case_id LIMIT 1)"
    "  AS c(t) ON true"
    " LEFT JOIN LATERAL (SELECT true FROM allocations a WHERE a.case_id = x.case_id"
    "  AND a.state <> 'released' LIMIT 1) AS a(t) ON true"
    " LEFT JOIN LATERAL (SELECT true FROM waitlist w WHERE w.case_id = x.case_id"
    "  AND w.state = 'waiting' LIMIT 1) AS w(t) ON true"
    " ORDER BY x.n";
/* the newest request of each case (i: its place in the batch) */
static const char s_sql_remember[] = "INSERT INTO bed_requests (" S_NEED_INSERT ")"
                                     " SELECT DISTINCT ON (case_id) " S_NEED_INSERT
                                     " FROM jsonb_to_recordset($1::jsonb) AS x(" S_NEED_RECORD
                                     ", i int) ORDER BY case_id, i DESC" SHELTER_REMEMBER_CONFLICT;
/* the holds, per shelter, only where the beds are free; returns the shelters held and the
 * shelters asked (equal, or the batch is rolled back) */
static const char s_sql_allocate[] =
    "WITH a AS MATERIALIZED (SELECT * FROM jsonb_to_recordset($1::jsonb) AS x(allocation_id text,"
    " case_id text, shelter_id text, beds int, hold_until_ms bigint, reason text,"
    " request_event_id uuid)),"
    " d AS (SELECT shelter_id, sum(beds)::int AS beds FROM a GROUP BY shelter_id),"
    " h AS (UPDATE shelters s SET held = s.held + d.beds, updated_at = now() FROM d"
    " WHERE s.shelter_id = d.shelter_id AND s.active AND s.occupied + s.held + d.beds <= s.capacity"
    " RETURNING s.shelter_id),"
    " i AS (INSERT INTO allocations (allocation_id, case_id, shelter_id, beds, state,"
    " hold_until_ms, reason, request_event_id) SELECT allocation_id, case_id, shelter_id, beds,"
    " 'held', hold_until_ms, reason, request_event_id FROM a)"
    " SELECT (SELECT count(*) FROM h)::int, (SELECT count(*) FROM d)::int";
/* the entries in the batch's order (i); for each, the waiting entries ahead of it before the batch:
 * those of higher or equal urgency (waitlist_ranks, kept by triggers) but for those of equal
 * urgency requested later. Those are counted only when the latest request waiting at that
 * urgency (one probe of waitlist_queue, backwards) is later than the entry's, which is rare:
 * counted always, the generic plan could scan every waiting entry (it estimates a third of them
 * match, and finds none), a cost growing with the waitlist */
static const char s_sql_waitlist[] =
    "WITH v AS MATERIALIZED (SELECT * FROM jsonb_to_recordset($1::jsonb) AS x(" S_NEED_RECORD
    ", reason text, i int)),"
    " ins AS (INSERT INTO waitlist (" S_NEED_INSERT ", reason) SELECT " S_NEED_INSERT ", reason"
    " FROM v ORDER BY i)"
    " SELECT ((SELECT coalesce(sum(r.waiting), 0) FROM waitlist_ranks r WHERE r.urgency >= "
    "v.urgency)"
    " - CASE WHEN (SELECT max(w.requested_at_ms) FROM waitlist w WHERE w.state = 'waiting'"
    "   AND w.urgency = v.urgency) <= v.requested_at_ms IS NOT FALSE THEN 0"
    "   ELSE (SELECT count(*) FROM waitlist w WHERE w.state = 'waiting' AND w.urgency = v.urgency"
    "   AND w.requested_at_ms > v.requested_at_ms) END)::int FROM v ORDER BY v.i";

/* What becomes of one gathered request. */
typedef enum { S_IGNORED, S_ALLOCATED, S_WAITLISTED } s_outcome_t;

typedef struct {
    shelter_need_t need;
    bool place;          /* to be allocated or waitlisted (not closed, not already served) */
    s_outcome_t outcome; /* decided by s_decide */
    shelter_row_t *row;  /* the shelter chosen (S_ALLOCATED) */
    char allocation_id[SHELTER_UUID_SIZE];
    char reason[SHELTER_REASON_MAX];
    int position; /* S_WAITLISTED: 1-based */
} s_item_t;

struct shelter_batch_t {
    s_item_t *items;
    size_t n, cap;
};

shelter_batch_t *shelter_batch_new(void)
{
    return nrm_xcalloc(1, sizeof(shelter_batch_t));
}

void shelter_batch_free(shelter_batch_t **batch)
{
    if (!batch || !*batch)
        return;
    free((*batch)->items);
    free(*batch);
    *batch = NULL;
}

void shelter_batch_prepare(nrm_db_t *db)
{
    nrm_db_statement(db, "batch_states", s_sql_states);
    nrm_db_statement(db, "batch_remember", s_sql_remember);
    nrm_db_statement(db, "batch_allocate", s_sql_allocate);
    nrm_db_statement(db, "batch_waitlist", s_sql_waitlist);
}

/* need as one JSON object of S_NEED_RECORD's columns, with i. Never NULL. */
static json_t *s_need_json(const shelter_need_t *need, size_t i)
{
    json_t *langs = json_array();
    for (size_t k = 0; langs && k < need->n_languages; k++)
        json_array_append_new(langs, json_string(need->languages[k]));
    json_t *o = json_pack("{s:s, s:s, s:s, s:i, s:i, s:b, s:o, s:i, s:o, s:b, s:i, s:i, s:I, s:I}",
                          "case_id", need->case_id, "request_event_id", need->request_event_id,
                          "region", need->region, "urgency", need->urgency, "safety_risk",
                          need->safety_risk, "is_minor", need->is_minor, "age_years",
                          need->age_known ? json_integer(need->age_years) : json_null(), "gender",
                          need->gender, "languages", langs, "disability", need->disability,
                          "children", need->children, "beds", need->beds, "requested_at_ms",
                          (json_int_t)need->requested_at_ms, "i", (json_int_t)i);
    if (!o)
        nrm_oom("shelter batch");
    return o;
}

/* Runs statement name with the JSON text of rows as $1 (rows is consumed). */
static nrm_status_t s_exec_json(nrm_tx_t *tx, const char *name, json_t *rows, PGresult **res)
{
    char *text = json_dumps(rows, JSON_COMPACT);
    json_decref(rows);
    if (!text)
        nrm_oom("shelter batch");
    nrm_params_t p = {0};
    nrm_params_text(&p, text);
    nrm_status_t st = nrm_db_exec(tx->db, name, &p, res, tx->err);
    free(text);
    return st;
}

/* Reads the state of every case and sets place: a closed case is ignored, so is a case that
 * holds a bed or waits, or that an earlier request of this batch is placing. Every request of
 * a case not closed is remembered (the newest wins). */
static nrm_status_t s_states_and_remember(nrm_tx_t *tx, shelter_batch_t *b)
{
    json_t *ids = json_array();
    for (size_t i = 0; i < b->n; i++)
        if (!ids || json_array_append_new(ids, json_string(b->items[i].need.case_id)) != 0)
            nrm_oom("shelter batch");
    PGresult *res = NULL;
    nrm_status_t st = s_exec_json(tx, "batch_states", ids, &res);
    if (st != NRM_OK)
        return st;
    json_t *remember = json_array();
    if (!remember)
        nrm_oom("shelter batch");
    for (size_t i = 0; i < b->n; i++) {
        s_item_t *it = &b->items[i];
        bool closed = nrm_db_int(res, (int)i, 0) != 0;
        bool served = nrm_db_int(res, (int)i, 1) != 0 || nrm_db_int(res, (int)i, 2) != 0;
        for (size_t j = 0; j < i && !served; j++)
            served = b->items[j].place && strcmp(b->items[j].need.case_id, it->need.case_id) == 0;
        if (closed) {
            nrm_log_info("shelter request ignored", "{s:s, s:s}", "case_id", it->need.case_id,
                         "why", "case closed");
            continue;
        }
        /* the newest request is the one RequestBed repeats (and it clears a withdrawal) */
        json_array_append_new(remember, s_need_json(&it->need, i));
        if (served)
            nrm_log_info("shelter request ignored", "{s:s, s:s}", "case_id", it->need.case_id,
                         "why", "case already holds a bed or waits for one");
        it->place = !served;
    }
    PQclear(res);
    if (json_array_size(remember) == 0) {
        json_decref(remember);
        return NRM_OK;
    }
    return s_exec_json(tx, "batch_remember", remember, NULL);
}

/* True when waitlisted item a is ahead of item b in the queue: higher urgency, or the same and
 * requested earlier or at the same time (a came first in the batch, so its entry id is lower). */
static bool s_ahead(const s_item_t *a, const s_item_t *b)
{
    return a->need.urgency > b->need.urgency ||
           (a->need.urgency == b->need.urgency &&
            a->need.requested_at_ms <= b->need.requested_at_ms);
}

/* Decides, in the batch's order (as one event at a time would), a shelter or a waitlist place for
 * each of the n items of q against the free beds of rows (updated as beds are taken). */
static void s_decide(s_item_t **q, size_t n, shelter_row_t *rows, size_t nrows)
{
    for (size_t i = 0; i < n; i++) {
        size_t eligible = 0;
        q[i]->row =
            shelter_choose(&q[i]->need, rows, nrows, q[i]->reason, sizeof q[i]->reason, &eligible);
        if (q[i]->row) {
            q[i]->outcome = S_ALLOCATED;
            nrm_uuid_v4(q[i]->allocation_id);
        } else {
            q[i]->outcome = S_WAITLISTED;
            shelter_waitlist_reason(eligible, q[i]->reason, sizeof q[i]->reason);
        }
    }
}

/* Holds the beds and inserts the allocations of q's S_ALLOCATED items in one statement. */
static nrm_status_t s_write_allocations(shelter_t *self, nrm_tx_t *tx, s_item_t **q, size_t n)
{
    json_t *rows = json_array();
    if (!rows)
        nrm_oom("shelter batch");
    for (size_t i = 0; i < n; i++) {
        if (q[i]->outcome != S_ALLOCATED)
            continue;
        json_t *o =
            json_pack("{s:s, s:s, s:s, s:i, s:I, s:s, s:s}", "allocation_id", q[i]->allocation_id,
                      "case_id", q[i]->need.case_id, "shelter_id", q[i]->row->id, "beds",
                      q[i]->need.beds, "hold_until_ms", (json_int_t)(tx->now_ms + self->hold_ms),
                      "reason", q[i]->reason, "request_event_id", q[i]->need.request_event_id);
        if (!o || json_array_append_new(rows, o) != 0)
            nrm_oom("shelter batch");
    }
    if (json_array_size(rows) == 0) {
        json_decref(rows);
        return NRM_OK;
    }
    PGresult *res = NULL;
    nrm_status_t st = s_exec_json(tx, "batch_allocate", rows, &res);
    if (st != NRM_OK)
        return st;
    int64_t held = nrm_db_int(res, 0, 0), asked = nrm_db_int(res, 0, 1);
    PQclear(res);
    if (held != asked)
        return nrm_fail(tx->err, NRM_UNAVAILABLE, NULL,
                        "beds changed under the batch (%lld of %lld shelters held)",
                        (long long)held, (long long)asked);
    return NRM_OK;
}

/* Inserts q's S_WAITLISTED items in the batch's order in one statement and sets their positions:
 * 1 + the entries ahead that waited before the batch + the batch's earlier entries ahead (as if
 * each had been added alone, in turn). */
static nrm_status_t s_write_waitlist(nrm_tx_t *tx, s_item_t **q, size_t n)
{
    json_t *rows = json_array();
    if (!rows)
        nrm_oom("shelter batch");
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        if (q[i]->outcome != S_WAITLISTED)
            continue;
        json_t *o = s_need_json(&q[i]->need, k++);
        if (json_object_set_new(o, "reason", json_string(q[i]->reason)) != 0 ||
            json_array_append_new(rows, o) != 0)
            nrm_oom("shelter batch");
    }
    if (k == 0) {
        json_decref(rows);
        return NRM_OK;
    }
    PGresult *res = NULL;
    nrm_status_t st = s_exec_json(tx, "batch_waitlist", rows, &res);
    if (st != NRM_OK)
        return st;
    k = 0;
    for (size_t i = 0; i < n; i++) {
        if (q[i]->outcome != S_WAITLISTED)
            continue;
        int64_t ahead = nrm_db_int(res, (int)k++, 0);
        for (size_t j = 0; j < i; j++)
            ahead += q[j]->outcome == S_WAITLISTED && s_ahead(q[j], q[i]);
        q[i]->position = (int)(1 + ahead);
    }
    PQclear(res);
    return NRM_OK;
}

/* Appends shelter.allocated or shelter.waitlisted for each of q's n items, in the batch's order,
 * in one statement; each is caused by its request. */
static nrm_status_t s_emit(shelter_t *self, nrm_tx_t *tx, s_item_t **q, size_t n)
{
    Nrm__V1__Event *evs = nrm_xcalloc(n, sizeof *evs);
    Nrm__V1__Event **ptrs = nrm_xcalloc(n, sizeof *ptrs);
    Nrm__V1__ShelterAllocated *alloc = nrm_xcalloc(n, sizeof *alloc);
    Nrm__V1__ShelterWaitlisted *wait = nrm_xcalloc(n, sizeof *wait);
    for (size_t i = 0; i < n; i++) {
        s_item_t *it = q[i];
        evs[i] = (Nrm__V1__Event)NRM__V1__EVENT__INIT;
        evs[i].case_id = it->need.case_id;
        evs[i].causation_id = it->need.request_event_id;
        if (it->outcome == S_ALLOCATED) {
            alloc[i] = (Nrm__V1__ShelterAllocated)NRM__V1__SHELTER_ALLOCATED__INIT;
            alloc[i].allocation_id = it->allocation_id;
            alloc[i].shelter_id = it->row->id;
            alloc[i].operator_agency_id = it->row->operator_id;
            alloc[i].region = it->row->region;
            alloc[i].beds = it->need.beds;
            alloc[i].hold_until_ms = tx->now_ms + self->hold_ms;
            alloc[i].reason = it->reason;
            evs[i].body_case = NRM__V1__EVENT__BODY_SHELTER_ALLOCATED;
            evs[i].shelter_allocated = &alloc[i];
        } else {
            wait[i] = (Nrm__V1__ShelterWaitlisted)NRM__V1__SHELTER_WAITLISTED__INIT;
            wait[i].position = it->position;
            wait[i].reason = it->reason;
            evs[i].body_case = NRM__V1__EVENT__BODY_SHELTER_WAITLISTED;
            evs[i].shelter_waitlisted = &wait[i];
        }
        ptrs[i] = &evs[i];
    }
    nrm_status_t st = nrm_tx_emit_many(tx, ptrs, n);
    free(wait);
    free(alloc);
    free(ptrs);
    free(evs);
    return st;
}

/* Places the gathered requests (see the file's comment) and forgets them. */
static nrm_status_t s_place(shelter_t *self, nrm_tx_t *tx)
{
    shelter_batch_t *b = self->batch;
    if (b->n == 0)
        return NRM_OK;
    nrm_status_t st = shelter_lock_beds(tx);
    if (st == NRM_OK)
        st = s_states_and_remember(tx, b);
    s_item_t **q = nrm_xcalloc(b->n, sizeof *q);
    size_t nq = 0;
    for (size_t i = 0; i < b->n; i++)
        if (b->items[i].place)
            q[nq++] = &b->items[i];
    shelter_row_t *rows = NULL;
    size_t nrows = 0;
    if (st == NRM_OK && nq > 0) {
        st = shelter_load_active(tx, &rows, &nrows);
        if (st == NRM_OK)
            s_decide(q, nq, rows, nrows);
        if (st == NRM_OK)
            st = s_write_allocations(self, tx, q, nq);
        if (st == NRM_OK)
            st = s_write_waitlist(tx, q, nq);
        if (st == NRM_OK)
            st = s_emit(self, tx, q, nq);
    }
    if (st == NRM_OK && nq > 0)
        nrm_log_debug("shelter requests placed", "{s:I, s:I}", "requests", (json_int_t)b->n,
                      "placed", (json_int_t)nq);
    free(rows);
    free(q);
    b->n = 0;
    return st;
}

nrm_status_t shelter_routing_apply(void *ctx, nrm_tx_t *tx, const Nrm__V1__Event *ev)
{
    shelter_t *self = ctx;
    shelter_batch_t *b = self->batch;
    if (ev->body_case == NRM__V1__EVENT__BODY_SHELTER_REQUEST_WITHDRAWN) {
        /* what came before the withdrawal is placed first: the stream's order is kept */
        nrm_status_t st = s_place(self, tx);
        return st == NRM_OK ? shelter_on_request_withdrawn(ctx, tx, ev) : st;
    }
    if (ev->body_case != NRM__V1__EVENT__BODY_SHELTER_REQUESTED)
        return NRM_OK;
    if (b->n == b->cap) {
        b->cap = b->cap ? b->cap * 2 : 64;
        b->items = nrm_xrealloc(b->items, b->cap * sizeof *b->items);
    }
    s_item_t *it = &b->items[b->n];
    memset(it, 0, sizeof *it);
    if (!shelter_need_from_event(ev, tx->now_ms, &it->need)) {
        /* a poison event must not stop the stream: it is recorded and passed over */
        nrm_log_warn("shelter request ignored: malformed", "{s:s, s:I}", "stream", ev->stream,
                     "seq", (json_int_t)ev->seq);
        return NRM_OK;
    }
    b->n++;
    return NRM_OK;
}

nrm_status_t shelter_routing_flush(void *ctx, nrm_tx_t *tx)
{
    return s_place(ctx, tx);
}

void shelter_routing_reset(void *ctx)
{
    shelter_t *self = ctx;
    self->batch->n = 0;
}
