/* The maps the rules of notify_recipients.c need, read and kept once per consumer batch: the
 * reporting agencies of cases (case_agencies), the provider of each referral (referrals) and
 * the operator of each allocation (allocations). One statement per table and batch, each a
 * write and a read together: the read sees the table as it was before the batch (a statement's
 * snapshot does not see its own writes), and notify_recipients.c lays the batch's own writes
 * over it in the order of its events, as one statement per event did before.
 *
 * Duplicates within a batch are merged in memory as the per-event statements would have left
 * them: a referral (allocation) keeps the case (and shelter) of its first creation and the
 * provider (operator) of its last; a reporting agency of a case keeps the since_ms of its first
 * mention. The agencies the batch makes known (the insert's RETURNING) come with the outcomes
 * of their case stored before the batch from their since_ms on, so that they can be given
 * them. */
#include "notify.h"
#include "nrm_alloc.h"
#include "nrm_pgarray.h"

#include <stdlib.h>
#include <string.h>

static const char s_sql_referrals[] =
    "WITH w AS (SELECT * FROM unnest($1::text[], $2::text[], $3::text[])"
    "  AS w(referral_id, case_id, provider_agency_id)),"
    " up AS (INSERT INTO referrals (referral_id, case_id, provider_agency_id)"
    "  SELECT referral_id, case_id, provider_agency_id FROM w ON CONFLICT (referral_id)"
    "  DO UPDATE SET provider_agency_id = EXCLUDED.provider_agency_id)"
    " SELECT referral_id, provider_agency_id FROM referrals WHERE referral_id = ANY($4::text[])";
static const char s_sql_allocations[] =
    "WITH w AS (SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[])"
    "  AS w(allocation_id, case_id, shelter_id, operator_agency_id)),"
    " up AS (INSERT INTO allocations (allocation_id, case_id, shelter_id, operator_agency_id)"
    "  SELECT allocation_id, case_id, shelter_id, operator_agency_id FROM w"
    "  ON CONFLICT (allocation_id) DO UPDATE SET operator_agency_id = EXCLUDED.operator_agency_id)"
    " SELECT allocation_id, operator_agency_id FROM allocations"
    " WHERE allocation_id = ANY($5::text[])";
/* kind 0: a reporting agency known before the batch (of the cases in $4); 1: one the batch made
 * known; 2: a stored outcome of its case it is to be given (payload, in (stream, seq) order).
 * The stored outcomes are read FOR SHARE: the batch is about to make deliveries that send their
 * bodies, which notify_retention.c could otherwise delete meanwhile (it sees no pending delivery
 * of them until the batch commits); its FOR UPDATE SKIP LOCKED passes them by, and a body it has
 * locked first is deleted before this reads it (the agency then gets no delivery of it). */
static const char s_sql_case_agencies[] =
    "WITH w AS (SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[]) WITH ORDINALITY"
    "  AS w(case_id, agency_id, since_ms, k)),"
    " ins AS (INSERT INTO case_agencies (case_id, agency_id, since_ms)"
    "  SELECT case_id, agency_id, since_ms FROM w ORDER BY k ON CONFLICT DO NOTHING"
    "  RETURNING case_id, agency_id, since_ms),"
    " kept AS (SELECT i.case_id, i.agency_id, i.since_ms, e.payload, e.source_stream,"
    "  e.source_seq FROM ins i JOIN events e ON e.case_id = i.case_id AND e.outcome"
    "  AND e.occurred_at_ms >= i.since_ms FOR SHARE OF e)"
    " SELECT 0 AS kind, c.case_id, c.agency_id, c.since_ms, NULL::bytea AS payload,"
    "  ''::text AS stream, 0::bigint AS seq FROM case_agencies c WHERE c.case_id = ANY($4::text[])"
    " UNION ALL SELECT 1, i.case_id, i.agency_id, i.since_ms, NULL, '', 0 FROM ins i"
    " UNION ALL SELECT 2, k.case_id, k.agency_id, k.since_ms, k.payload, k.source_stream,"
    "  k.source_seq FROM kept k"
    " ORDER BY kind, case_id, agency_id, stream, seq";

/* The cases of the batch whose reporting agencies it writes or reads, locked for the rest of
 * the transaction before the statement above reads anything: a batch giving an outcome of a
 * case to its reporting agencies and a batch making one of them known (another stream, maybe
 * another instance) would otherwise each read the case before the other committed, and the
 * agency would never be told. Whichever locks the case first commits before the other's
 * statement takes its snapshot, so the second sees the first's rows: the outcome stored (and
 * given late), or the agency known (and told). Keys are pairs (S_CASE_LOCK_CLASS, a 32-bit hash
 * of the case id), apart from the single bigint keys of every other advisory lock of the
 * services; they come sorted and distinct (s_case_lock_keys) and are taken in that order, so
 * two batches cannot wait for each other (two cases sharing a key merely share a lock). */
#define S_CASE_LOCK_CLASS 0x6e746679 /* "ntfy" */
static const char s_sql_lock_cases[] = "SELECT pg_advisory_xact_lock($1::int, k)"
                                       " FROM unnest($2::int[]) WITH ORDINALITY AS u(k, i)"
                                       " ORDER BY i";

void notify_maps_prepare(nrm_db_t *db)
{
    nrm_db_statement(db, "notify_maps_referrals", s_sql_referrals);
    nrm_db_statement(db, "notify_maps_allocations", s_sql_allocations);
    nrm_db_statement(db, "notify_maps_case_agencies", s_sql_case_agencies);
    nrm_db_statement(db, "notify_maps_lock_cases", s_sql_lock_cases);
}

/* A growing list of rows: up to four strings (borrowed from the batch's events), a number and the
 * position of the event that gave them. */
typedef struct {
    const char **cols[4];
    int64_t *nums;
    size_t *at;
    size_t n;
    size_t cap;
} s_rows_t;

/* Appends a row of up to four strings, a number and a position. */
static void s_rows_add(s_rows_t *r, const char *a, const char *b, const char *c, const char *d,
                       int64_t num, size_t at)
{
    if (r->n == r->cap) {
        r->cap = r->cap ? r->cap * 2 : 16;
        for (size_t k = 0; k < 4; k++)
            r->cols[k] = nrm_xreallocarray(r->cols[k], r->cap, sizeof *r->cols[k]);
        r->nums = nrm_xreallocarray(r->nums, r->cap, sizeof *r->nums);
        r->at = nrm_xreallocarray(r->at, r->cap, sizeof *r->at);
    }
    const char *v[4] = {a, b, c, d};
    for (size_t k = 0; k < 4; k++)
        r->cols[k][r->n] = v[k] ? v[k] : "";
    r->nums[r->n] = num;
    r->at[r->n] = at;
    r->n++;
}

/* The row whose first column is key (and second key2 unless NULL), or r->n. */
static size_t s_rows_find(const s_rows_t *r, const char *key, const char *key2)
{
    for (size_t i = 0; i < r->n; i++)
        if (strcmp(r->cols[0][i], key) == 0 && (!key2 || strcmp(r->cols[1][i], key2) == 0))
            return i;
    return r->n;
}

static void s_rows_free(s_rows_t *r)
{
    for (size_t k = 0; k < 4; k++)
        free(r->cols[k]);
    free(r->nums);
    free(r->at);
    memset(r, 0, sizeof *r);
}

/* A PostgreSQL text[] literal of column k of r (malloc'd). */
static char *s_column(const s_rows_t *r, size_t k)
{
    return nrm_pgarray_of_texts((char *const *)r->cols[k], r->n);
}

/* Adds the (key, agency) pairs of res (columns 0 and 1) to *out (copied). */
static void s_pairs_of(const PGresult *res, notify_map_pair_t **out, size_t *n)
{
    int rows = PQntuples(res);
    *out = nrm_xcalloc(rows ? (size_t)rows : 1, sizeof **out);
    for (int i = 0; i < rows; i++)
        (*out)[(*n)++] = (notify_map_pair_t){nrm_xstrdup(nrm_db_text(res, i, 0)),
                                             nrm_xstrdup(nrm_db_text(res, i, 1))};
}

/* The referrals the batch creates (merged per id) and looks up, in one statement. */
static nrm_status_t s_sync_referrals(nrm_tx_t *tx, Nrm__V1__Event *const *events, size_t n,
                                     notify_maps_t *m)
{
    s_rows_t w = {0}, look = {0};
    for (size_t i = 0; i < n; i++) {
        const Nrm__V1__Event *ev = events[i];
        if (ev->body_case == NRM__V1__EVENT__BODY_REFERRAL_CREATED) {
            const Nrm__V1__ReferralCreated *c = ev->referral_created;
            size_t k = s_rows_find(&w, c->referral_id ? c->referral_id : "", NULL);
            if (k == w.n) /* the first creation's case, the last one's provider */
                s_rows_add(&w, c->referral_id, ev->case_id, c->provider_agency_id, NULL, 0, i);
            else
                w.cols[2][k] = c->provider_agency_id ? c->provider_agency_id : "";
        } else if (ev->body_case == NRM__V1__EVENT__BODY_REFERRAL_COMPLETED) {
            s_rows_add(&look, ev->referral_completed->referral_id, NULL, NULL, NULL, 0, i);
        } else if (ev->body_case == NRM__V1__EVENT__BODY_REFERRAL_REVOKED) {
            s_rows_add(&look, ev->referral_revoked->referral_id, NULL, NULL, NULL, 0, i);
        }
    }
    nrm_status_t st = NRM_OK;
    if (w.n + look.n > 0) {
        char *arrays[] = {s_column(&w, 0), s_column(&w, 1), s_column(&w, 2), s_column(&look, 0)};
        nrm_params_t p = {0};
        for (size_t k = 0; k < 4; k++)
            nrm_params_text(&p, arrays[k]);
        PGresult *res = NULL;
        st = nrm_db_exec(tx->db, "notify_maps_referrals", &p, &res, tx->err);
        if (st == NRM_OK)
            s_pairs_of(res, &m->providers, &m->n_providers);
        PQclear(res);
        for (size_t k = 0; k < 4; k++)
            free(arrays[k]);
    }
    s_rows_free(&w);
    s_rows_free(&look);
    return st;
}

/* The allocations the batch makes (merged per id) and looks up, in one statement. */
static nrm_status_t s_sync_allocations(nrm_tx_t *tx, Nrm__V1__Event *const *events, size_t n,
                                       notify_maps_t *m)
{
    s_rows_t w = {0}, look = {0};
    for (size_t i = 0; i < n; i++) {
        const Nrm__V1__Event *ev = events[i];
        if (ev->body_case == NRM__V1__EVENT__BODY_SHELTER_ALLOCATED) {
            const Nrm__V1__ShelterAllocated *a = ev->shelter_allocated;
            size_t k = s_rows_find(&w, a->allocation_id ? a->allocation_id : "", NULL);
            if (k == w.n)
                s_rows_add(&w, a->allocation_id, ev->case_id, a->shelter_id, a->operator_agency_id,
                           0, i);
            else
                w.cols[3][k] = a->operator_agency_id ? a->operator_agency_id : "";
        } else if (ev->body_case == NRM__V1__EVENT__BODY_SHELTER_RELEASED) {
            s_rows_add(&look, ev->shelter_released->allocation_id, NULL, NULL, NULL, 0, i);
        }
    }
    nrm_status_t st = NRM_OK;
    if (w.n + look.n > 0) {
        char *arrays[] = {s_column(&w, 0), s_column(&w, 1), s_column(&w, 2), s_column(&w, 3),
                          s_column(&look, 0)};
        nrm_params_t p = {0};
        for (size_t k = 0; k < 5; k++)
            nrm_params_text(&p, arrays[k]);
        PGresult *res = NULL;
        st = nrm_db_exec(tx->db, "notify_maps_allocations", &p, &res, tx->err);
        if (st == NRM_OK)
            s_pairs_of(res, &m->operators, &m->n_operators);
        PQclear(res);
        for (size_t k = 0; k < 5; k++)
            free(arrays[k]);
    }
    s_rows_free(&w);
    s_rows_free(&look);
    return st;
}

/* The reporting agency an event makes known (case.opened from the start, case.linked and
 * case.manager_changed from then on), or NULL. */
static const char *s_reporter_named(const Nrm__V1__Event *ev, int64_t *since_ms)
{
    *since_ms = ev->occurred_at_ms;
    switch (ev->body_case) {
    case NRM__V1__EVENT__BODY_CASE_OPENED:
        *since_ms = 0; /* the first reporter hears every outcome, whatever other clocks say */
        return ev->case_opened->reporting_agency_id;
    case NRM__V1__EVENT__BODY_CASE_LINKED:
        return ev->case_linked->reporting_agency_id;
    case NRM__V1__EVENT__BODY_CASE_MANAGER_CHANGED:
        return ev->case_manager_changed->case_manager_agency_id;
    default:
        return NULL;
    }
}

/* Reads one row of the case_agencies statement into m (kind 0, 1 or 2). w: the batch's writes,
 * to find the position of a learnt agency's first mention. */
static nrm_status_t s_case_agency_row(nrm_tx_t *tx, const PGresult *res, int r, const s_rows_t *w,
                                      notify_maps_t *m)
{
    int kind = (int)nrm_db_int(res, r, 0);
    const char *case_id = nrm_db_text(res, r, 1), *agency = nrm_db_text(res, r, 2);
    int64_t since = nrm_db_int(res, r, 3);
    if (kind == 0) {
        m->known[m->n_known++] =
            (notify_reporter_t){nrm_xstrdup(case_id), nrm_xstrdup(agency), since, 0, NULL, 0};
        return NRM_OK;
    }
    if (kind == 1) {
        size_t k = s_rows_find(w, case_id, agency);
        m->learnt[m->n_learnt++] = (notify_reporter_t){
            nrm_xstrdup(case_id), nrm_xstrdup(agency), since, k < w->n ? w->at[k] : 0, NULL, 0};
        return NRM_OK;
    }
    notify_reporter_t *l = NULL; /* rows come ordered: the learnt ones first */
    for (size_t i = 0; !l && i < m->n_learnt; i++)
        if (strcmp(m->learnt[i].case_id, case_id) == 0 &&
            strcmp(m->learnt[i].agency_id, agency) == 0)
            l = &m->learnt[i];
    size_t len = 0;
    const uint8_t *payload = nrm_db_bytes(res, r, 4, &len);
    Nrm__V1__Event *outcome = nrm_event_unpack(payload, len);
    if (!l || !outcome) {
        if (outcome)
            nrm__v1__event__free_unpacked(outcome, NULL);
        return nrm_fail(tx->err, NRM_INTERNAL, NULL, "stored event unreadable");
    }
    l->kept = nrm_xreallocarray(l->kept, l->n_kept + 1, sizeof *l->kept);
    l->kept[l->n_kept++] = outcome;
    return NRM_OK;
}

#define S_FNV_OFFSET 2166136261u /* FNV-1a, 32 bits */
#define S_FNV_PRIME 16777619u

/* The lock key of a case: FNV-1a of its id, as a signed 32-bit value (PostgreSQL's int). */
static int64_t s_case_lock_key(const char *case_id)
{
    uint32_t hash = S_FNV_OFFSET;
    for (const unsigned char *p = (const unsigned char *)case_id; *p; p++)
        hash = (hash ^ *p) * S_FNV_PRIME;
    int32_t key;
    memcpy(&key, &hash, sizeof key);
    return key;
}

static int s_int64_cmp(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

/* The lock keys of the case ids in column 0 of a and b, sorted and distinct, into keys (room
 * for a->n + b->n); returns how many. */
static size_t s_case_lock_keys(const s_rows_t *a, const s_rows_t *b, int64_t *keys)
{
    size_t n = 0;
    for (size_t i = 0; i < a->n; i++)
        keys[n++] = s_case_lock_key(a->cols[0][i]);
    for (size_t i = 0; i < b->n; i++)
        keys[n++] = s_case_lock_key(b->cols[0][i]);
    qsort(keys, n, sizeof *keys, s_int64_cmp);
    size_t distinct = 0;
    for (size_t i = 0; i < n; i++)
        if (distinct == 0 || keys[distinct - 1] != keys[i])
            keys[distinct++] = keys[i];
    return distinct;
}

/* Locks, in tx, the cases whose reporting agencies the batch writes (w) or reads (cases):
 * deferred, it goes with the next statement, before it (nrm_db_exec_later). */
static nrm_status_t s_lock_cases(nrm_tx_t *tx, const s_rows_t *w, const s_rows_t *cases)
{
    int64_t *keys = nrm_xcalloc(w->n + cases->n + 1, sizeof *keys);
    size_t n = s_case_lock_keys(w, cases, keys);
    char *array = nrm_pgarray_of_ints(keys, n);
    nrm_params_t p = {0};
    nrm_params_int(&p, S_CASE_LOCK_CLASS);
    nrm_params_text(&p, array);
    nrm_status_t st = nrm_db_exec_later(tx->db, "notify_maps_lock_cases", &p, tx->err);
    free(array);
    free(keys);
    return st;
}

/* The reporting agencies the batch names (merged per case and agency), written; those known
 * before it for the cases in need, read; and the stored outcomes for the newly known. The cases
 * are locked first (s_lock_cases). */
static nrm_status_t s_sync_case_agencies(nrm_tx_t *tx, Nrm__V1__Event *const *events, size_t n,
                                         notify_maps_t *m)
{
    s_rows_t w = {0}, cases = {0};
    for (size_t i = 0; i < n; i++) {
        int64_t since = 0;
        const char *agency = s_reporter_named(events[i], &since);
        const char *case_id = events[i]->case_id ? events[i]->case_id : "";
        if (agency && s_rows_find(&w, case_id, agency) == w.n)
            s_rows_add(&w, case_id, agency, NULL, NULL, since, i);
        if (case_id[0] && notify_concerns_reporters(events[i]) &&
            s_rows_find(&cases, case_id, NULL) == cases.n)
            s_rows_add(&cases, case_id, NULL, NULL, NULL, 0, i);
    }
    nrm_status_t st = NRM_OK;
    if (w.n + cases.n > 0) {
        char *arrays[] = {s_column(&w, 0), s_column(&w, 1), nrm_pgarray_of_ints(w.nums, w.n),
                          s_column(&cases, 0)};
        nrm_params_t p = {0};
        for (size_t k = 0; k < 4; k++)
            nrm_params_text(&p, arrays[k]);
        PGresult *res = NULL;
        st = s_lock_cases(tx, &w, &cases);
        if (st == NRM_OK)
            st = nrm_db_exec(tx->db, "notify_maps_case_agencies", &p, &res, tx->err);
        int rows = st == NRM_OK ? PQntuples(res) : 0;
        m->known = nrm_xcalloc(rows ? (size_t)rows : 1, sizeof *m->known);
        m->learnt = nrm_xcalloc(rows ? (size_t)rows : 1, sizeof *m->learnt);
        for (int r = 0; st == NRM_OK && r < rows; r++)
            st = s_case_agency_row(tx, res, r, &w, m);
        PQclear(res);
        for (size_t k = 0; k < 4; k++)
            free(arrays[k]);
    }
    s_rows_free(&w);
    s_rows_free(&cases);
    return st;
}

nrm_status_t notify_maps_sync(nrm_tx_t *tx, Nrm__V1__Event *const *events, size_t n,
                              notify_maps_t *m)
{
    memset(m, 0, sizeof *m);
    nrm_status_t st = s_sync_referrals(tx, events, n, m);
    if (st == NRM_OK)
        st = s_sync_allocations(tx, events, n, m);
    if (st == NRM_OK)
        st = s_sync_case_agencies(tx, events, n, m);
    return st;
}

const char *notify_maps_find(const notify_map_pair_t *pairs, size_t n, const char *key)
{
    for (size_t i = 0; key && i < n; i++)
        if (strcmp(pairs[i].key, key) == 0)
            return pairs[i].agency_id;
    return NULL;
}

/* Frees the strings and stored outcomes of n reporters and the array. */
static void s_reporters_free(notify_reporter_t *r, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(r[i].case_id);
        free(r[i].agency_id);
        for (size_t k = 0; k < r[i].n_kept; k++)
            nrm__v1__event__free_unpacked(r[i].kept[k], NULL);
        free(r[i].kept);
    }
    free(r);
}

/* Frees n pairs and the array. */
static void s_map_pairs_free(notify_map_pair_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(p[i].key);
        free(p[i].agency_id);
    }
    free(p);
}

void notify_maps_clear(notify_maps_t *m)
{
    s_map_pairs_free(m->providers, m->n_providers);
    s_map_pairs_free(m->operators, m->n_operators);
    s_reporters_free(m->known, m->n_known);
    s_reporters_free(m->learnt, m->n_learnt);
    memset(m, 0, sizeof *m);
}
