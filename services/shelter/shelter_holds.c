/* Holds and their ends: an arrival confirmed, a bed released by its operator, a hold expired
 * (no_show), a case closed. Every freed bed goes to the waitlist in the same transaction. */
#include "nrm_authz.h"
#include "nrm_log.h"
#include "nrm_validate.h"
#include "shelter.h"

#include <stdio.h>
#include <string.h>

#define S_EXPIRE_BATCH 200 /* holds expired per timer run; the rest on the next run */
#define S_STATE_MAX 16
#define S_NO_SHOW "no_show"
#define S_CASE_CLOSED "case_closed"
#define S_WITHDRAWN_DEFAULT "consent_withdrawn"
#define S_CODE_MAX 32

/* What ReleaseBed may give as its reason: short codes, never free text. */
static const char *const s_release_reasons[] = {"departed", "transferred", "no_show",
                                                "declined", "other",       NULL};

static const char s_sql_load[] =
    "SELECT a.case_id, a.shelter_id, a.beds, a.state, s.operator_agency_id FROM allocations a"
    " JOIN shelters s USING (shelter_id) WHERE a.allocation_id = $1 FOR UPDATE OF a";
static const char s_sql_confirm[] =
    "UPDATE allocations SET state = 'occupied', confirmed_at = now() WHERE allocation_id = $1";
static const char s_sql_arrive[] =
    "UPDATE shelters SET held = held - $2, occupied = occupied + $2, updated_at = now()"
    " WHERE shelter_id = $1 RETURNING capacity, occupied";
static const char s_sql_release[] =
    "UPDATE allocations SET state = 'released', release_reason = $2, released_at = now()"
    " WHERE allocation_id = $1";
static const char s_sql_free[] =
    "UPDATE shelters SET held = held - CASE WHEN $3 THEN 0 ELSE $2 END,"
    " occupied = occupied - CASE WHEN $3 THEN $2 ELSE 0 END, updated_at = now()"
    " WHERE shelter_id = $1 RETURNING capacity, occupied";
/* taken under the beds lock; SKIP LOCKED keeps two expiring instances apart even without it */
static const char s_sql_overdue[] =
    "SELECT allocation_id, case_id, shelter_id, beds FROM allocations"
    " WHERE state = 'held' AND hold_until_ms <= $1 ORDER BY hold_until_ms, allocation_id"
    " LIMIT $2 FOR UPDATE SKIP LOCKED";
/* the earliest hold's end, one probe of allocations_holds (as EXISTS with "<= $1" the generic
 * plan may read every row: routing_referrals.c) */
static const char s_sql_any_overdue[] =
    "SELECT coalesce(min(hold_until_ms) <= $1, false) FROM allocations WHERE state = 'held'";
static const char s_sql_case_live[] =
    "SELECT allocation_id, shelter_id, beds, state FROM allocations"
    " WHERE case_id = $1 AND state <> 'released' ORDER BY allocation_id FOR UPDATE";
static const char s_sql_case_held[] =
    "SELECT allocation_id, shelter_id, beds FROM allocations"
    " WHERE case_id = $1 AND state = 'held' ORDER BY allocation_id FOR UPDATE";
static const char s_sql_closed[] =
    "INSERT INTO closed_cases (case_id) VALUES ($1) ON CONFLICT DO NOTHING";

void shelter_holds_prepare(nrm_db_t *db)
{
    nrm_db_statement(db, "holds_load", s_sql_load);
    nrm_db_statement(db, "holds_confirm", s_sql_confirm);
    nrm_db_statement(db, "holds_arrive", s_sql_arrive);
    nrm_db_statement(db, "holds_release", s_sql_release);
    nrm_db_statement(db, "holds_free", s_sql_free);
    nrm_db_statement(db, "holds_any_overdue", s_sql_any_overdue);
    nrm_db_statement(db, "holds_overdue", s_sql_overdue);
    nrm_db_statement(db, "holds_case_live", s_sql_case_live);
    nrm_db_statement(db, "holds_closed", s_sql_closed);
    nrm_db_statement(db, "holds_case_held", s_sql_case_held);
}

/* One allocation, as its ends need it. */
typedef struct {
    char allocation_id[SHELTER_ID_MAX + 1];
    char case_id[SHELTER_ID_MAX + 1];
    char shelter_id[SHELTER_ID_MAX + 1];
    int beds;
    bool occupied; /* arrival confirmed (else held) */
} s_allocation_t;

/* Releases a live allocation: its beds go back to the shelter, shelter.released says why, and
 * shelter.capacity_changed follows when occupied beds were freed. The waitlist is served by
 * the caller. */
static nrm_status_t s_release(shelter_t *self, nrm_tx_t *tx, const s_allocation_t *a,
                              const char *reason)
{
    nrm_params_t p = {0};
    nrm_params_text(&p, a->allocation_id);
    nrm_params_text(&p, reason);
    nrm_status_t st = nrm_db_exec(tx->db, "holds_release", &p, NULL, tx->err);
    nrm_params_t f = {0};
    nrm_params_text(&f, a->shelter_id);
    nrm_params_int(&f, a->beds);
    nrm_params_bool(&f, a->occupied);
    PGresult *res = NULL;
    if (st == NRM_OK)
        st = nrm_db_exec(tx->db, "holds_free", &f, &res, tx->err);
    if (st != NRM_OK)
        return st;
    self->beds_returned++;
    int capacity = (int)nrm_db_int(res, 0, 0), occupied = (int)nrm_db_int(res, 0, 1);
    PQclear(res);
    Nrm__V1__ShelterReleased body = NRM__V1__SHELTER_RELEASED__INIT;
    body.allocation_id = (char *)a->allocation_id;
    body.shelter_id = (char *)a->shelter_id;
    body.reason = (char *)reason;
    st = nrm_tx_emit_body(tx, a->case_id, NRM__V1__EVENT__BODY_SHELTER_RELEASED, &body);
    if (st == NRM_OK && a->occupied)
        st = shelter_emit_capacity(tx, a->shelter_id, capacity, occupied);
    return st;
}

/* Loads and locks the allocation a request names, for whom the matrix lets (its shelter's
 * operator, a coordinator). Fails PERMISSION_DENIED (before NOT_FOUND: only a coordinator
 * learns that an allocation does not exist), NOT_FOUND or, for a released allocation,
 * FAILED_PRECONDITION. */
static nrm_status_t s_load_for_operator(nrm_call_t *call, const char *allocation_id,
                                        const char *field, s_allocation_t *a)
{
    if (nrm_check_text(call->tx.err, field, allocation_id, SHELTER_ID_MAX, true) != NRM_OK)
        return NRM_INVALID_ARGUMENT;
    nrm_params_t p = {0};
    nrm_params_text(&p, allocation_id);
    PGresult *res = NULL;
    nrm_status_t st = shelter_lock_beds(&call->tx);
    if (st == NRM_OK)
        st = nrm_db_exec(call->tx.db, "holds_load", &p, &res, call->tx.err);
    if (st != NRM_OK)
        return st;
    if (PQntuples(res) != 1) {
        PQclear(res);
        return nrm_authz_not_found(call, field, "no such allocation");
    }
    memset(a, 0, sizeof *a);
    snprintf(a->allocation_id, sizeof a->allocation_id, "%s", allocation_id);
    snprintf(a->case_id, sizeof a->case_id, "%s", nrm_db_text(res, 0, 0));
    snprintf(a->shelter_id, sizeof a->shelter_id, "%s", nrm_db_text(res, 0, 1));
    a->beds = (int)nrm_db_int(res, 0, 2);
    char state[S_STATE_MAX];
    snprintf(state, sizeof state, "%s", nrm_db_text(res, 0, 3));
    bool is_operator = strcmp(nrm_db_text(res, 0, 4), call->agency_id) == 0;
    PQclear(res);
    if ((st = nrm_authz_check(call, is_operator ? NRM_ROLE_SHELTER_OPERATOR : 0)) != NRM_OK)
        return st;
    call->subject_id = nrm_call_strdup(call, allocation_id);
    if (strcmp(state, "released") == 0)
        return nrm_fail(call->tx.err, NRM_FAILED_PRECONDITION, field,
                        "the allocation was already released");
    a->occupied = strcmp(state, "occupied") == 0;
    return NRM_OK;
}

/* Sets the reply of a request about an allocation. */
static void s_reply(nrm_call_t *call, const char *allocation_id, const char *state)
{
    Nrm__V1__AllocationRef *ref = nrm_call_alloc(call, sizeof *ref);
    nrm__v1__allocation_ref__init(ref);
    ref->allocation_id = nrm_call_strdup(call, allocation_id);
    ref->state = nrm_call_strdup(call, state);
    call->reply->result_case = NRM__V1__REPLY__RESULT_ALLOCATION_REF;
    call->reply->allocation_ref = ref;
}

nrm_status_t shelter_confirm_arrival(void *ctx, nrm_call_t *call)
{
    const Nrm__V1__ConfirmArrival *c = call->request->confirm_arrival;
    s_allocation_t a;
    nrm_status_t st =
        s_load_for_operator(call, c->allocation_id, "confirm_arrival.allocation_id", &a);
    if (st != NRM_OK)
        return st;
    if (!a.occupied) {
        /* a late arrival is welcome while the bed is still held */
        nrm_params_t p = {0};
        nrm_params_text(&p, a.allocation_id);
        st = nrm_db_exec(call->tx.db, "holds_confirm", &p, NULL, call->tx.err);
        nrm_params_t s = {0};
        nrm_params_text(&s, a.shelter_id);
        nrm_params_int(&s, a.beds);
        PGresult *res = NULL;
        if (st == NRM_OK)
            st = nrm_db_exec(call->tx.db, "holds_arrive", &s, &res, call->tx.err);
        if (st == NRM_OK)
            st = shelter_emit_capacity(&call->tx, a.shelter_id, (int)nrm_db_int(res, 0, 0),
                                       (int)nrm_db_int(res, 0, 1));
        PQclear(res);
    }
    if (st == NRM_OK)
        s_reply(call, a.allocation_id, "occupied");
    return st;
}

/* True when reason is one of the accepted release codes. */
static bool s_release_reason_known(const char *reason)
{
    for (size_t i = 0; s_release_reasons[i]; i++)
        if (strcmp(reason, s_release_reasons[i]) == 0)
            return true;
    return false;
}

nrm_status_t shelter_release_bed(void *ctx, nrm_call_t *call)
{
    shelter_t *self = ctx;
    const Nrm__V1__ReleaseBed *r = call->request->release_bed;
    if (nrm_check_text(call->tx.err, "release_bed.allocation_id", r->allocation_id, SHELTER_ID_MAX,
                       true) != NRM_OK)
        return NRM_INVALID_ARGUMENT;
    if (!s_release_reason_known(r->reason))
        return nrm_fail(call->tx.err, NRM_INVALID_ARGUMENT, "release_bed.reason",
                        "reason must be one of departed, transferred, no_show, declined, other");
    s_allocation_t a;
    nrm_status_t st = s_load_for_operator(call, r->allocation_id, "release_bed.allocation_id", &a);
    if (st == NRM_OK)
        st = s_release(self, &call->tx, &a, r->reason);
    if (st == NRM_OK)
        st = shelter_waitlist_serve(self, &call->tx);
    if (st == NRM_OK)
        s_reply(call, a.allocation_id, "released");
    return st;
}

/* Releases the holds past their time (no_show), at most a batch of them. */
static nrm_status_t s_expire(shelter_t *self, nrm_tx_t *tx)
{
    nrm_params_t p = {0};
    nrm_params_int(&p, tx->now_ms);
    PGresult *res = NULL;
    nrm_status_t st = nrm_db_exec(tx->db, "holds_any_overdue", &p, &res, tx->err);
    bool any = st == NRM_OK && nrm_db_int(res, 0, 0) != 0;
    PQclear(res);
    res = NULL;
    if (!any)
        return st;
    nrm_params_int(&p, S_EXPIRE_BATCH);
    st = shelter_lock_beds(tx);
    if (st == NRM_OK)
        st = nrm_db_exec(tx->db, "holds_overdue", &p, &res, tx->err);
    if (st != NRM_OK)
        return st;
    int expired = PQntuples(res);
    for (int i = 0; i < expired && st == NRM_OK; i++) {
        s_allocation_t a = {.beds = (int)nrm_db_int(res, i, 3), .occupied = false};
        snprintf(a.allocation_id, sizeof a.allocation_id, "%s", nrm_db_text(res, i, 0));
        snprintf(a.case_id, sizeof a.case_id, "%s", nrm_db_text(res, i, 1));
        snprintf(a.shelter_id, sizeof a.shelter_id, "%s", nrm_db_text(res, i, 2));
        st = s_release(self, tx, &a, S_NO_SHOW);
    }
    PQclear(res);
    if (st == NRM_OK && expired)
        nrm_log_info("holds expired", "{s:i}", "released", expired);
    return st;
}

nrm_status_t shelter_expire_holds(void *ctx, nrm_tx_t *tx)
{
    shelter_t *self = ctx;
    nrm_status_t st = s_expire(self, tx);
    /* also a sweep: no free bed stays unoffered to the queue, whatever freed it */
    return st == NRM_OK ? shelter_waitlist_serve(self, tx) : st;
}

nrm_status_t shelter_on_case_closed(void *ctx, nrm_tx_t *tx, const Nrm__V1__Event *ev)
{
    shelter_t *self = ctx;
    if (ev->body_case != NRM__V1__EVENT__BODY_CASE_CLOSED || !ev->case_id || !ev->case_id[0] ||
        strlen(ev->case_id) > SHELTER_ID_MAX)
        return NRM_OK;
    nrm_params_t p = {0};
    nrm_params_text(&p, ev->case_id);
    PGresult *res = NULL;
    nrm_status_t st = shelter_lock_beds(tx);
    if (st == NRM_OK)
        st = nrm_db_exec(tx->db, "holds_closed", &p, NULL, tx->err);
    if (st == NRM_OK)
        st = nrm_db_exec(tx->db, "holds_case_live", &p, &res, tx->err);
    if (st != NRM_OK)
        return st;
    int live = PQntuples(res);
    for (int i = 0; i < live && st == NRM_OK; i++) {
        s_allocation_t a = {.beds = (int)nrm_db_int(res, i, 2)};
        snprintf(a.allocation_id, sizeof a.allocation_id, "%s", nrm_db_text(res, i, 0));
        snprintf(a.case_id, sizeof a.case_id, "%s", ev->case_id);
        snprintf(a.shelter_id, sizeof a.shelter_id, "%s", nrm_db_text(res, i, 1));
        a.occupied = strcmp(nrm_db_text(res, i, 3), "occupied") == 0;
        st = s_release(self, tx, &a, S_CASE_CLOSED);
    }
    PQclear(res);
    if (st == NRM_OK)
        st = shelter_waitlist_cancel(tx, ev->case_id, NULL);
    return st == NRM_OK && live ? shelter_waitlist_serve(self, tx) : st;
}

/* Publishes shelter.request_cancelled (allocation_id and shelter_id "" for a waitlist place). */
static nrm_status_t s_emit_cancelled(nrm_tx_t *tx, const char *case_id, const char *allocation_id,
                                     const char *shelter_id, const char *reason)
{
    Nrm__V1__ShelterRequestCancelled body = NRM__V1__SHELTER_REQUEST_CANCELLED__INIT;
    body.allocation_id = (char *)allocation_id;
    body.shelter_id = (char *)shelter_id;
    body.reason = (char *)reason;
    return nrm_tx_emit_body(tx, case_id, NRM__V1__EVENT__BODY_SHELTER_REQUEST_CANCELLED, &body);
}

/* The reason code of a withdrawal: the event's when it is a short clean code, else the default. */
static void s_withdraw_reason(const Nrm__V1__ShelterRequestWithdrawn *w, char *buf, size_t size)
{
    const char *r = w && w->reason ? w->reason : "";
    bool code = r[0] && strlen(r) < S_CODE_MAX;
    for (const char *c = r; code && *c; c++)
        code = (*c >= 'a' && *c <= 'z') || *c == '_';
    snprintf(buf, size, "%s", code ? r : S_WITHDRAWN_DEFAULT);
}

nrm_status_t shelter_on_request_withdrawn(void *ctx, nrm_tx_t *tx, const Nrm__V1__Event *ev)
{
    shelter_t *self = ctx;
    if (ev->body_case != NRM__V1__EVENT__BODY_SHELTER_REQUEST_WITHDRAWN || !ev->case_id ||
        !ev->case_id[0] || strlen(ev->case_id) > SHELTER_ID_MAX)
        return NRM_OK;
    char reason[S_CODE_MAX];
    s_withdraw_reason(ev->shelter_request_withdrawn, reason, sizeof reason);
    nrm_params_t p = {0};
    nrm_params_text(&p, ev->case_id);
    PGresult *res = NULL;
    nrm_status_t st = shelter_lock_beds(tx);
    if (st == NRM_OK)
        st = shelter_request_withdraw(tx, ev->case_id);
    if (st == NRM_OK)
        st = nrm_db_exec(tx->db, "holds_case_held", &p, &res, tx->err);
    if (st != NRM_OK)
        return st;
    /* only a hold not yet occupied: a confirmed stay stays */
    int held = PQntuples(res);
    for (int i = 0; i < held && st == NRM_OK; i++) {
        s_allocation_t a = {.beds = (int)nrm_db_int(res, i, 2), .occupied = false};
        snprintf(a.allocation_id, sizeof a.allocation_id, "%s", nrm_db_text(res, i, 0));
        snprintf(a.case_id, sizeof a.case_id, "%s", ev->case_id);
        snprintf(a.shelter_id, sizeof a.shelter_id, "%s", nrm_db_text(res, i, 1));
        st = s_release(self, tx, &a, reason);
        if (st == NRM_OK)
            st = s_emit_cancelled(tx, ev->case_id, a.allocation_id, a.shelter_id, reason);
    }
    PQclear(res);
    bool waiting = false;
    if (st == NRM_OK)
        st = shelter_waitlist_cancel(tx, ev->case_id, &waiting);
    if (st == NRM_OK && waiting)
        st = s_emit_cancelled(tx, ev->case_id, "", "", reason);
    if (st == NRM_OK)
        nrm_log_info("shelter request withdrawn", "{s:s, s:i, s:b}", "case_id", ev->case_id,
                     "holds_cancelled", held, "waitlist_cancelled", waiting);
    /* the freed beds go to the next in the queue in the same transaction */
    return st == NRM_OK && held ? shelter_waitlist_serve(self, tx) : st;
}
