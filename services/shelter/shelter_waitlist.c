/* The waitlist: requests no bed could take yet, ordered by urgency then time, served whenever
 * beds may have become free (release, expiry, capacity change, and a periodic sweep). */
#include "nrm_alloc.h"
#include "nrm_log.h"
#include "shelter.h"

#include <sodium.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* waiting entries a serving pass reads at first; the rest only while beds remain free */
#define S_SERVE_SCAN 1000

#define S_QUEUE_ORDER " ORDER BY urgency DESC, requested_at_ms, entry_id"

/* The position counts the waiting entries ahead: higher urgency, or same urgency and earlier
 * (entry_id breaks ties in time in the order the requests were applied). */
static const char s_sql_add[] =
    "WITH ins AS (INSERT INTO waitlist (case_id, request_event_id, region, urgency, safety_risk,"
    " is_minor, age_years, gender, languages, disability, children, beds, requested_at_ms,"
    " reason) VALUES ($1, $2::uuid, $3, $4, $5, $6, $7, $8, $9::text[], $10, $11, $12, $13, $14)"
    " RETURNING entry_id, urgency, requested_at_ms)"
    " SELECT (1 + count(w.entry_id))::int FROM ins LEFT JOIN waitlist w ON w.state = 'waiting'"
    " AND (w.urgency > ins.urgency OR (w.urgency = ins.urgency"
    " AND (w.requested_at_ms, w.entry_id) < (ins.requested_at_ms, ins.entry_id)))";
static const char s_sql_worth_serving[] =
    "SELECT EXISTS (SELECT 1 FROM shelters WHERE active AND occupied + held < capacity)"
    " AND EXISTS (SELECT 1 FROM waitlist WHERE state = 'waiting')";
static const char s_sql_queue[] =
    "SELECT entry_id, " SHELTER_NEED_COLUMNS " FROM waitlist WHERE state = 'waiting'" S_QUEUE_ORDER
    " LIMIT $1";
/* the queue after its first $1 entries still waiting (0: all of it) */
static const char s_sql_queue_from[] =
    "SELECT entry_id, " SHELTER_NEED_COLUMNS " FROM waitlist WHERE state = 'waiting'" S_QUEUE_ORDER
    " OFFSET $1";
/* only an entry about to get a bed is locked, and only while still waiting (the beds lock
 * already orders the instances; SKIP LOCKED keeps this deadlock-free even without it) */
static const char s_sql_take[] =
    "SELECT 1 FROM waitlist WHERE entry_id = $1 AND state = 'waiting' FOR UPDATE SKIP LOCKED";
static const char s_sql_served[] =
    "UPDATE waitlist SET state = 'allocated', updated_at = now() WHERE entry_id = $1";
static const char s_sql_cancel[] = "UPDATE waitlist SET state = 'cancelled', updated_at = now()"
                                   " WHERE case_id = $1 AND state = 'waiting' RETURNING entry_id";

void shelter_waitlist_prepare(nrm_db_t *db)
{
    nrm_db_statement(db, "waitlist_add", s_sql_add);
    nrm_db_statement(db, "waitlist_worth_serving", s_sql_worth_serving);
    nrm_db_statement(db, "waitlist_queue", s_sql_queue);
    nrm_db_statement(db, "waitlist_queue_from", s_sql_queue_from);
    nrm_db_statement(db, "waitlist_take", s_sql_take);
    nrm_db_statement(db, "waitlist_served", s_sql_served);
    nrm_db_statement(db, "waitlist_cancel", s_sql_cancel);
}

nrm_status_t shelter_waitlist_add(nrm_tx_t *tx, const shelter_need_t *need, const char *reason,
                                  int *position)
{
    shelter_need_text_t text;
    nrm_params_t p = {0};
    shelter_need_params(&p, need, &text);
    nrm_params_text(&p, reason);
    PGresult *res = NULL;
    nrm_status_t st = nrm_db_exec(tx->db, "waitlist_add", &p, &res, tx->err);
    if (st != NRM_OK)
        return st;
    Nrm__V1__ShelterWaitlisted body = NRM__V1__SHELTER_WAITLISTED__INIT;
    body.position = (int32_t)nrm_db_int(res, 0, 0);
    body.reason = (char *)reason;
    PQclear(res);
    if (position)
        *position = body.position;
    nrm_log_debug("request waitlisted", "{s:s, s:i}", "case_id", need->case_id, "position",
                  body.position);
    return nrm_tx_emit_body(tx, need->case_id, NRM__V1__EVENT__BODY_SHELTER_WAITLISTED, &body);
}

void shelter_need_read(const PGresult *res, int i, shelter_need_t *need)
{
    memset(need, 0, sizeof *need);
    snprintf(need->case_id, sizeof need->case_id, "%s", nrm_db_text(res, i, 1));
    snprintf(need->request_event_id, sizeof need->request_event_id, "%s", nrm_db_text(res, i, 2));
    snprintf(need->region, sizeof need->region, "%s", nrm_db_text(res, i, 3));
    need->urgency = (int)nrm_db_int(res, i, 4);
    need->safety_risk = (int)nrm_db_int(res, i, 5);
    need->is_minor = nrm_db_int(res, i, 6) != 0;
    need->age_known = !nrm_db_is_null(res, i, 7);
    need->age_years = (int)nrm_db_int(res, i, 7);
    need->gender = (int)nrm_db_int(res, i, 8);
    need->n_languages =
        shelter_languages_parse(nrm_db_text(res, i, 9), need->languages, SHELTER_MAX_LANGUAGES);
    need->disability = nrm_db_int(res, i, 10) != 0;
    need->children = (int)nrm_db_int(res, i, 11);
    need->beds = (int)nrm_db_int(res, i, 12);
    need->requested_at_ms = nrm_db_int(res, i, 13);
}

nrm_status_t shelter_waitlist_load(nrm_tx_t *tx, shelter_need_t **needs, size_t *n)
{
    *needs = NULL;
    *n = 0;
    PGresult *res = NULL;
    nrm_params_t p = {0};
    nrm_params_int(&p, 0);
    nrm_status_t st = nrm_db_exec(tx->db, "waitlist_queue_from", &p, &res, tx->err);
    if (st != NRM_OK)
        return st;
    int rows = PQntuples(res);
    *needs = nrm_xcalloc((size_t)(rows ? rows : 1), sizeof **needs);
    for (int i = 0; i < rows; i++)
        shelter_need_read(res, i, &(*needs)[i]);
    *n = (size_t)rows;
    PQclear(res);
    return NRM_OK;
}

/* True when any of the rows still has a free bed. */
static bool s_any_free(const shelter_row_t *rows, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (rows[i].active && rows[i].occupied + rows[i].held < rows[i].capacity)
            return true;
    return false;
}

/* True when one of the rows could take need now (eligible, with its beds free). */
static bool s_fits_somewhere(const shelter_row_t *rows, size_t n, const shelter_need_t *need)
{
    for (size_t i = 0; i < n; i++)
        if (rows[i].active && rows[i].capacity - rows[i].occupied - rows[i].held >= need->beds &&
            shelter_eligible(&rows[i], need))
            return true;
    return false;
}

/* Sets *worth when a serving pass could do anything: a free bed somewhere and someone waiting. */
static nrm_status_t s_worth_serving(nrm_tx_t *tx, bool *worth)
{
    PGresult *res = NULL;
    nrm_status_t st = nrm_db_exec(tx->db, "waitlist_worth_serving", NULL, &res, tx->err);
    if (st == NRM_OK)
        *worth = nrm_db_int(res, 0, 0) != 0;
    PQclear(res);
    return st;
}

/* What a serving pass depends on: the active shelters as loaded, with their row versions (free
 * beds and all that eligibility reads). A pass that served nobody stays fruitless while no
 * shelter has changed since: an entry made since joined the queue under the beds lock, refused
 * by these very beds; an entry leaving the queue makes no one else fit. The versions tell a
 * bed taken and given back (the same counts) from no change: between the two, someone may have
 * joined the queue whom the bed now fits. Within one transaction the versions stay the same, so
 * the beds this instance gave back (returned) count too. */
static void s_pass_key(const shelter_row_t *rows, size_t n, uint64_t returned,
                       uint8_t key[SHELTER_PASS_KEY_BYTES])
{
    crypto_generichash_state h;
    crypto_generichash_init(&h, NULL, 0, SHELTER_PASS_KEY_BYTES);
    crypto_generichash_update(&h, (const uint8_t *)&returned, sizeof returned);
    for (size_t i = 0; i < n; i++) {
        const shelter_row_t *r = &rows[i];
        int numbers[] = {
            r->capacity, r->occupied,         r->held,       r->population, r->min_age,
            r->max_age,  r->accepts_children, r->accessible, r->active,     (int)r->n_languages};
        crypto_generichash_update(&h, (const uint8_t *)r->id, strlen(r->id) + 1);
        crypto_generichash_update(&h, (const uint8_t *)r->region, strlen(r->region) + 1);
        crypto_generichash_update(&h, (const uint8_t *)numbers, sizeof numbers);
        crypto_generichash_update(&h, (const uint8_t *)&r->version, sizeof r->version);
        for (size_t l = 0; l < r->n_languages; l++)
            crypto_generichash_update(&h, (const uint8_t *)r->languages[l],
                                      strlen(r->languages[l]) + 1);
    }
    crypto_generichash_final(&h, key, SHELTER_PASS_KEY_BYTES);
}

/* Locks a waiting entry for serving. *taken is false when it is no longer waiting or another
 * transaction holds it. */
static nrm_status_t s_take(nrm_tx_t *tx, int64_t entry_id, bool *taken)
{
    nrm_params_t p = {0};
    nrm_params_int(&p, entry_id);
    PGresult *res = NULL;
    nrm_status_t st = nrm_db_exec(tx->db, "waitlist_take", &p, &res, tx->err);
    *taken = st == NRM_OK && PQntuples(res) == 1;
    PQclear(res);
    return st;
}

/* Offers the free beds of rows to the queue entries of res, in queue order; counts in *served
 * the entries allocated and in *skipped those another transaction holds. */
static nrm_status_t s_serve_queue(shelter_t *self, nrm_tx_t *tx, const PGresult *res,
                                  shelter_row_t *rows, size_t n, int *served, int *skipped)
{
    nrm_status_t st = NRM_OK;
    for (int i = 0; i < PQntuples(res) && st == NRM_OK && s_any_free(rows, n); i++) {
        shelter_need_t need;
        shelter_need_read(res, i, &need);
        if (!s_fits_somewhere(rows, n, &need))
            continue;
        int64_t entry_id = nrm_db_int(res, i, 0);
        bool taken = false, allocated = false;
        size_t eligible = 0;
        st = s_take(tx, entry_id, &taken);
        if (st == NRM_OK && !taken)
            (*skipped)++;
        if (st == NRM_OK && taken)
            st = shelter_allocate(self, tx, &need, rows, n, true, &allocated, &eligible);
        if (st != NRM_OK || !allocated)
            continue;
        nrm_params_t p = {0};
        nrm_params_int(&p, entry_id);
        st = nrm_db_exec(tx->db, "waitlist_served", &p, NULL, tx->err);
        (*served)++;
    }
    return st;
}

nrm_status_t shelter_waitlist_serve(shelter_t *self, nrm_tx_t *tx)
{
    bool worth = false;
    nrm_status_t st = s_worth_serving(tx, &worth);
    if (st != NRM_OK || !worth)
        return st;
    shelter_row_t *rows = NULL;
    size_t n = 0;
    st = shelter_lock_beds(tx);
    if (st == NRM_OK)
        st = shelter_load_active(tx, &rows, &n);
    uint8_t key[SHELTER_PASS_KEY_BYTES];
    if (st == NRM_OK)
        s_pass_key(rows, n, self->beds_returned, key);
    if (st != NRM_OK ||
        (self->fruitless_known && sodium_memcmp(key, self->fruitless_pass, sizeof key) == 0)) {
        free(rows);
        return st; /* nothing changed since a pass that found no one a free bed fits */
    }
    /* the head of the queue, then, while beds remain free, the rest: no entry is out of reach */
    int served = 0, skipped = 0;
    PGresult *res = NULL;
    nrm_params_t p = {0};
    nrm_params_int(&p, S_SERVE_SCAN);
    st = nrm_db_exec(tx->db, "waitlist_queue", &p, &res, tx->err);
    if (st == NRM_OK)
        st = s_serve_queue(self, tx, res, rows, n, &served, &skipped);
    if (st == NRM_OK && PQntuples(res) == S_SERVE_SCAN && s_any_free(rows, n)) {
        PQclear(res);
        res = NULL;
        /* the head's entries served are no longer waiting: the rest starts that much sooner */
        nrm_params_t rest = {0};
        nrm_params_int(&rest, S_SERVE_SCAN - served);
        st = nrm_db_exec(tx->db, "waitlist_queue_from", &rest, &res, tx->err);
        if (st == NRM_OK)
            st = s_serve_queue(self, tx, res, rows, n, &served, &skipped);
    }
    PQclear(res);
    free(rows);
    if (st == NRM_OK && served)
        nrm_log_info("waitlist served", "{s:i}", "allocated", served);
    /* remembered only when the whole queue was offered the beds and no one took one */
    self->fruitless_known = st == NRM_OK && served == 0 && skipped == 0;
    if (self->fruitless_known)
        memcpy(self->fruitless_pass, key, sizeof key);
    return st;
}

nrm_status_t shelter_waitlist_cancel(nrm_tx_t *tx, const char *case_id, bool *cancelled)
{
    nrm_params_t p = {0};
    nrm_params_text(&p, case_id);
    PGresult *res = NULL;
    nrm_status_t st = nrm_db_exec(tx->db, "waitlist_cancel", &p, &res, tx->err);
    if (cancelled)
        *cancelled = st == NRM_OK && PQntuples(res) > 0;
    PQclear(res);
    return st;
}

void shelter_need_params(nrm_params_t *p, const shelter_need_t *need, shelter_need_text_t *text)
{
    shelter_languages_literal(need->languages, need->n_languages, text->languages,
                              sizeof text->languages);
    snprintf(text->age, sizeof text->age, "%d", need->age_years);
    nrm_params_text(p, need->case_id);
    nrm_params_text(p, need->request_event_id);
    nrm_params_text(p, need->region);
    nrm_params_int(p, need->urgency);
    nrm_params_int(p, need->safety_risk);
    nrm_params_bool(p, need->is_minor);
    nrm_params_text(p, need->age_known ? text->age : NULL);
    nrm_params_int(p, need->gender);
    nrm_params_text(p, text->languages);
    nrm_params_bool(p, need->disability);
    nrm_params_int(p, need->children);
    nrm_params_int(p, need->beds);
    nrm_params_int(p, need->requested_at_ms);
}
