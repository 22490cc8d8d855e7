/* Names that match as people write them: the linking hash over the name's key, the blocking
 * hash, and the start job that re-hashes the stored cases once per normalisation version. */
#include "intake.h"
#include "intake_names.h"
#include "nrm_alloc.h"
#include "nrm_log.h"
#include "nrm_wipe.h"
#include "nrm_pgarray.h"

#include <sodium.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define S_BATCH 500
#define S_LOCK_KEY 0x6e726d6e /* pg advisory lock of the re-hash ("nrmn") */

static const char s_sql_lock[] = "SELECT pg_advisory_xact_lock($1)";
static const char s_sql_version[] = "SELECT 1 FROM name_versions WHERE version = $1";
static const char s_sql_version_insert[] =
    "INSERT INTO name_versions (version, cases) VALUES ($1, $2)";
/* each non-erased case after $1 with its first report and its profile */
static const char s_sql_cases[] =
    "SELECT c.case_id, c.status = 'open', c.profile,"
    " (extract(epoch FROM c.opened_at) * 1000000)::bigint, r.sealed_under, r.key_id,"
    " r.person_sealed, k.key_id, k.wrapped_key"
    " FROM cases c CROSS JOIN LATERAL (SELECT sealed_under, key_id, person_sealed FROM reports"
    "   WHERE case_id = c.case_id ORDER BY received_at, report_id LIMIT 1) r"
    " LEFT JOIN case_keys k ON k.case_id = c.case_id"
    " WHERE c.identity_erased_at IS NULL AND c.case_id > $1 ORDER BY c.case_id LIMIT $2";
/* the cases were read without a lock: one erased since (another instance, the retention timer)
 * keeps no hash; the update waits for the erasure's commit and then sees it */
static const char s_sql_clear[] =
    "UPDATE cases SET identity_hash = NULL FROM unnest($1::text[]) AS u(case_id)"
    " WHERE cases.case_id = u.case_id AND cases.identity_erased_at IS NULL";
static const char s_sql_rehash[] =
    "UPDATE cases SET identity_hash = u.identity_hash, blocking_hash = u.blocking_hash"
    " FROM unnest($1::text[], $2::text[], $3::text[]) AS u(case_id, identity_hash, blocking_hash)"
    " WHERE cases.case_id = u.case_id AND cases.identity_erased_at IS NULL";
/* the newer ($1) of two open cases now sharing a hash, proposed against the older ($2) */
static const char s_sql_propose[] =
    "INSERT INTO duplicate_pairs (case_id, other_case_id, score) VALUES ($1, $2, $3)"
    " ON CONFLICT DO NOTHING RETURNING 1";

void intake_dedup_prepare(nrm_db_t *db)
{
    nrm_db_statement(db, "intake_names_lock", s_sql_lock);
    nrm_db_statement(db, "intake_names_version", s_sql_version);
    nrm_db_statement(db, "intake_names_version_insert", s_sql_version_insert);
    nrm_db_statement(db, "intake_names_cases", s_sql_cases);
    nrm_db_statement(db, "intake_names_clear", s_sql_clear);
    nrm_db_statement(db, "intake_names_rehash", s_sql_rehash);
    nrm_db_statement(db, "intake_dup_propose", s_sql_propose);
}

void intake_identity_hash(const intake_t *self, const char *full_name, const char *date_of_birth,
                          const char *nationality, char out[65])
{
    out[0] = '\0';
    if (!full_name || !full_name[0] ||
        ((!date_of_birth || !date_of_birth[0]) && (!nationality || !nationality[0])))
        return;
    /* validation admits only UTF-8; a name ICU still refuses is hashed as written */
    char *key = intake_names_key(self->names, full_name);
    nrm_identity_hash(self->keys, key && key[0] ? key : full_name, date_of_birth, nationality, out);
    if (key) {
        sodium_memzero(key, strlen(key));
        free(key);
    }
}

void intake_blocking_hash(const intake_t *self, const char *date_of_birth, const char *nationality,
                          char out[65])
{
    out[0] = '\0';
    if (!date_of_birth || !date_of_birth[0] || !nationality || !nationality[0])
        return;
    /* the identity hash with no name: an identity hash always has one, so the two never meet */
    nrm_identity_hash(self->keys, "", date_of_birth, nationality, out);
}

/* One case's new hashes. */
typedef struct {
    char case_id[37];
    bool open;
    int64_t opened_us;
    char identity[65];
    char blocking[65];
} s_rehashed_t;

/* Opens the first report of row i (s_sql_cases, with the case's wrapped data key) and computes
 * its case's hashes into r.
 * -1 when the report cannot be opened (logged by case id; the case keeps its hashes). */
static int s_rehash_one(intake_t *self, nrm_tx_t *tx, const PGresult *res, int i, s_rehashed_t *r,
                        nrm_status_t *st)
{
    snprintf(r->case_id, sizeof r->case_id, "%s", nrm_db_text(res, i, 0));
    r->open = nrm_db_int(res, i, 1) != 0;
    r->opened_us = nrm_db_int(res, i, 3);
    Nrm__V1__PersonalData *person = NULL;
    int rc = intake_first_person_open(self, res, i, 4, r->case_id, &person, tx->err);
    if (rc == -2)
        *st = NRM_INTERNAL;
    if (rc == -1)
        nrm_log_error("names: a first report cannot be opened: the case keeps its hashes", "{s:s}",
                      "case_id", r->case_id);
    if (rc != 0)
        return -1;
    size_t profile_len = 0;
    const uint8_t *profile_bytes = nrm_db_bytes(res, i, 2, &profile_len);
    Nrm__V1__Profile *profile = nrm__v1__profile__unpack(NULL, profile_len, profile_bytes);
    const char *nationality = profile ? profile->nationality : "";
    r->identity[0] = r->blocking[0] = '\0';
    if (person) {
        intake_identity_hash(self, person->full_name, person->date_of_birth, nationality,
                             r->identity);
        intake_blocking_hash(self, person->date_of_birth, nationality, r->blocking);
        nrm__v1__personal_data__free_unpacked(person, &nrm_wipe_allocator);
    }
    if (profile)
        nrm__v1__profile__free_unpacked(profile, NULL);
    return 0;
}

/* Order: identity hash, open cases first, then the oldest opened first. */
static int s_by_hash(const void *a, const void *b)
{
    const s_rehashed_t *x = a, *y = b;
    int c = strcmp(x->identity, y->identity);
    if (c != 0)
        return c;
    if (x->open != y->open)
        return x->open ? -1 : 1;
    if (x->opened_us != y->opened_us)
        return x->opened_us < y->opened_us ? -1 : 1;
    return strcmp(x->case_id, y->case_id);
}

/* Appends value to the array a, or a NULL element when value is "". */
static void s_append(nrm_pgarray_t *a, const char *value)
{
    nrm_pgarray_text(a, value[0] ? value : NULL);
}

/* Runs one statement over rows [from, to) of all: the clear (ids only) or the re-hash. */
static nrm_status_t s_update(nrm_tx_t *tx, const s_rehashed_t *all, size_t from, size_t to,
                             bool clear)
{
    nrm_pgarray_t ids, hashes, blocks;
    nrm_pgarray_init(&ids);
    nrm_pgarray_init(&hashes);
    nrm_pgarray_init(&blocks);
    for (size_t i = from; i < to; i++) {
        s_append(&ids, all[i].case_id);
        s_append(&hashes, all[i].identity);
        s_append(&blocks, all[i].blocking);
    }
    nrm_params_t p = {0};
    nrm_params_text(&p, nrm_pgarray_close(&ids));
    if (!clear) {
        nrm_params_text(&p, nrm_pgarray_close(&hashes));
        nrm_params_text(&p, nrm_pgarray_close(&blocks));
    }
    nrm_status_t st = nrm_db_exec(tx->db, clear ? "intake_names_clear" : "intake_names_rehash", &p,
                                  NULL, tx->err);
    nrm_pgarray_free(&ids);
    nrm_pgarray_free(&hashes);
    nrm_pgarray_free(&blocks);
    return st;
}

nrm_status_t intake_dup_propose(nrm_tx_t *tx, const char *case_id, const char *other_case_id,
                                double score)
{
    char text[32];
    snprintf(text, sizeof text, "%.6f", score);
    nrm_params_t p = {0};
    nrm_params_text(&p, case_id);
    nrm_params_text(&p, other_case_id);
    nrm_params_text(&p, text);
    PGresult *res = NULL;
    nrm_status_t st = nrm_db_exec(tx->db, "intake_dup_propose", &p, &res, tx->err);
    if (st != NRM_OK)
        return st;
    bool fresh = PQntuples(res) == 1;
    PQclear(res);
    if (!fresh)
        return NRM_OK;
    Nrm__V1__PossibleDuplicate body = NRM__V1__POSSIBLE_DUPLICATE__INIT;
    body.other_case_id = (char *)other_case_id;
    body.score = score;
    return nrm_tx_emit_body(tx, case_id, NRM__V1__EVENT__BODY_POSSIBLE_DUPLICATE, &body);
}

/* Reads and re-hashes every non-erased case into *all (*count). */
static nrm_status_t s_collect(intake_t *self, nrm_tx_t *tx, s_rehashed_t **all, size_t *count)
{
    size_t cap = S_BATCH;
    *all = nrm_xcalloc(cap, sizeof **all);
    *count = 0;
    char after[37] = "";
    for (;;) {
        nrm_params_t p = {0};
        nrm_params_text(&p, after);
        nrm_params_int(&p, S_BATCH);
        PGresult *res = NULL;
        nrm_status_t st = nrm_db_exec(tx->db, "intake_names_cases", &p, &res, tx->err);
        if (st != NRM_OK)
            return st;
        int rows = PQntuples(res);
        for (int i = 0; i < rows && st == NRM_OK; i++) {
            snprintf(after, sizeof after, "%s", nrm_db_text(res, i, 0));
            if (*count == cap) {
                cap *= 2;
                *all = nrm_xreallocarray(*all, cap, sizeof **all);
            }
            if (s_rehash_one(self, tx, res, i, &(*all)[*count], &st) == 0)
                (*count)++;
        }
        PQclear(res);
        if (st != NRM_OK || rows < S_BATCH)
            return st;
    }
}

nrm_status_t intake_names_start(void *ctx, nrm_tx_t *tx)
{
    intake_t *self = ctx;
    nrm_params_t p = {0};
    nrm_params_int(&p, S_LOCK_KEY);
    nrm_status_t st = nrm_db_exec(tx->db, "intake_names_lock", &p, NULL, tx->err);
    PGresult *res = NULL;
    nrm_params_t v = {0};
    nrm_params_int(&v, INTAKE_NAMES_VERSION);
    if (st != NRM_OK ||
        (st = nrm_db_exec(tx->db, "intake_names_version", &v, &res, tx->err)) != NRM_OK)
        return st;
    bool done = PQntuples(res) > 0;
    PQclear(res);
    if (done)
        return NRM_OK;
    s_rehashed_t *all = NULL;
    size_t count = 0;
    st = s_collect(self, tx, &all, &count);
    if (st != NRM_OK) {
        free(all);
        return st;
    }
    qsort(all, count, sizeof *all, s_by_hash);
    /* of open cases sharing a hash, the oldest keeps it; each newer one loses it (reports then
     * link to the oldest) and is proposed as its duplicate */
    size_t *newer = nrm_xcalloc(count ? count : 1, sizeof *newer),
           *older = nrm_xcalloc(count ? count : 1, sizeof *older), pairs = 0;
    for (size_t i = 0; i < count;) {
        size_t j = i + 1;
        while (j < count && all[i].open && all[j].open && all[i].identity[0] &&
               strcmp(all[i].identity, all[j].identity) == 0) {
            newer[pairs] = j;
            older[pairs++] = i;
            j++;
        }
        i = j;
    }
    for (size_t k = 0; k < pairs; k++)
        all[newer[k]].identity[0] = '\0';
    /* clear first, so that no new hash meets an old one of a case not yet updated */
    for (size_t from = 0; st == NRM_OK && from < count; from += S_BATCH)
        st = s_update(tx, all, from, from + S_BATCH < count ? from + S_BATCH : count, true);
    for (size_t from = 0; st == NRM_OK && from < count; from += S_BATCH)
        st = s_update(tx, all, from, from + S_BATCH < count ? from + S_BATCH : count, false);
    for (size_t k = 0; st == NRM_OK && k < pairs; k++)
        st = intake_dup_propose(tx, all[newer[k]].case_id, all[older[k]].case_id, 1.0);
    nrm_params_t r = {0};
    nrm_params_int(&r, INTAKE_NAMES_VERSION);
    nrm_params_int(&r, (int64_t)count);
    if (st == NRM_OK)
        st = nrm_db_exec(tx->db, "intake_names_version_insert", &r, NULL, tx->err);
    if (st == NRM_OK)
        nrm_log_info("names: cases re-hashed", "{s:i, s:I, s:I}", "version", INTAKE_NAMES_VERSION,
                     "cases", (json_int_t)count, "proposed", (json_int_t)pairs);
    free(newer);
    free(older);
    free(all);
    return st;
}
