/* Each case's data key: made with the case's first report, kept wrapped by the keyring's active
 * key in case_keys, unwrapped for sealing new reports and for disclosure, destroyed by erasure.
 * The start job re-wraps keys after a keyring rotation and moves reports sealed directly under
 * the keyring (the format before data keys) to their case's key. */
#include "intake.h"
#include "nrm_log.h"

#include <sodium.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define S_KEY_AAD "intake.case_key:"
#define S_BATCH 500

static const char s_sql_lock_case[] =
    "SELECT identity_erased_at IS NOT NULL FROM cases WHERE case_id = $1 FOR UPDATE";
static const char s_sql_key_load[] = "SELECT key_id, wrapped_key FROM case_keys WHERE case_id = $1";
static const char s_sql_key_insert[] =
    "INSERT INTO case_keys (case_id, key_id, wrapped_key) VALUES ($1, $2, $3)";
static const char s_sql_key_stale[] =
    "SELECT case_id, key_id, wrapped_key FROM case_keys WHERE key_id <> $1 AND case_id > $2"
    " ORDER BY case_id LIMIT $3 FOR UPDATE SKIP LOCKED";
static const char s_sql_key_rewrap[] =
    "UPDATE case_keys SET key_id = $2, wrapped_key = $3, wrapped_at = now() WHERE case_id = $1";
static const char s_sql_old_reports[] =
    "SELECT report_id, case_id, key_id, person_sealed, notes_sealed FROM reports"
    " WHERE sealed_under = 'keyring' AND report_id > $1 ORDER BY report_id LIMIT $2"
    " FOR UPDATE SKIP LOCKED";
static const char s_sql_report_reseal[] =
    "UPDATE reports SET sealed_under = 'case_key', key_id = 0, person_sealed = $2,"
    " notes_sealed = $3 WHERE report_id = $1";

void intake_keys_prepare(nrm_db_t *db)
{
    nrm_db_statement(db, "intake_key_lock_case", s_sql_lock_case);
    nrm_db_statement(db, "intake_key_load", s_sql_key_load);
    nrm_db_statement(db, "intake_key_insert", s_sql_key_insert);
    nrm_db_statement(db, "intake_key_stale", s_sql_key_stale);
    nrm_db_statement(db, "intake_key_rewrap", s_sql_key_rewrap);
    nrm_db_statement(db, "intake_key_old_reports", s_sql_old_reports);
    nrm_db_statement(db, "intake_key_report_reseal", s_sql_report_reseal);
}

/* The AAD binding a wrapped key to its case. */
static void s_key_aad(const char *case_id, char aad[INTAKE_AAD_MAX])
{
    snprintf(aad, INTAKE_AAD_MAX, "%s%s", S_KEY_AAD, case_id);
}

/* Unwraps a wrapped key into key. Returns 0 or -1 (unknown keyring key, forged bytes). */
static int s_unwrap(const intake_t *self, const char *case_id, uint32_t key_id,
                    const uint8_t *wrapped, size_t len, uint8_t key[NRM_DATA_KEY_BYTES])
{
    char aad[INTAKE_AAD_MAX];
    s_key_aad(case_id, aad);
    uint8_t *plain = NULL;
    size_t plain_len = 0;
    if (nrm_open(self->keys, key_id, wrapped, len, aad, &plain, &plain_len) != 0)
        return -1;
    int rc = plain_len == NRM_DATA_KEY_BYTES ? 0 : -1;
    if (rc == 0)
        memcpy(key, plain, NRM_DATA_KEY_BYTES);
    sodium_memzero(plain, plain_len);
    free(plain);
    return rc;
}

/* Wraps key under the keyring's active key: *wrapped malloc'd (caller frees). 0 or -1. */
static int s_wrap(const intake_t *self, const char *case_id, const uint8_t key[NRM_DATA_KEY_BYTES],
                  uint8_t **wrapped, size_t *len, uint32_t *key_id)
{
    char aad[INTAKE_AAD_MAX];
    s_key_aad(case_id, aad);
    return nrm_seal(self->keys, key, NRM_DATA_KEY_BYTES, aad, wrapped, len, key_id);
}

int intake_case_key_unwrap(const intake_t *self, const char *case_id, uint32_t key_id,
                           const uint8_t *wrapped, size_t len, uint8_t key[NRM_DATA_KEY_BYTES])
{
    return s_unwrap(self, case_id, key_id, wrapped, len, key);
}

nrm_status_t intake_case_key_load(intake_t *self, nrm_tx_t *tx, const char *case_id,
                                  uint8_t key[NRM_DATA_KEY_BYTES], bool *found)
{
    *found = false;
    nrm_params_t p = {0};
    nrm_params_text(&p, case_id);
    PGresult *res = NULL;
    nrm_status_t st = nrm_db_exec(tx->db, "intake_key_load", &p, &res, tx->err);
    if (st != NRM_OK)
        return st;
    if (PQntuples(res) == 1) {
        size_t len = 0;
        const uint8_t *wrapped = nrm_db_bytes(res, 0, 1, &len);
        if (s_unwrap(self, case_id, (uint32_t)nrm_db_int(res, 0, 0), wrapped, len, key) != 0)
            st = nrm_fail(tx->err, NRM_INTERNAL, NULL, "a case's data key cannot be unwrapped");
        else
            *found = true;
    }
    PQclear(res);
    return st;
}

int intake_case_key_new(const intake_t *self, const char *case_id, uint8_t key[NRM_DATA_KEY_BYTES],
                        uint8_t **wrapped, size_t *len, uint32_t *key_id)
{
    nrm_data_key_new(key);
    if (s_wrap(self, case_id, key, wrapped, len, key_id) == 0)
        return 0;
    sodium_memzero(key, NRM_DATA_KEY_BYTES);
    return -1;
}

/* Makes, wraps and stores a new data key for the case. */
static nrm_status_t s_key_create(intake_t *self, nrm_tx_t *tx, const char *case_id,
                                 uint8_t key[NRM_DATA_KEY_BYTES])
{
    nrm_data_key_new(key);
    uint8_t *wrapped = NULL;
    size_t len = 0;
    uint32_t key_id = 0;
    if (s_wrap(self, case_id, key, &wrapped, &len, &key_id) != 0) {
        sodium_memzero(key, NRM_DATA_KEY_BYTES);
        return nrm_fail(tx->err, NRM_INTERNAL, NULL, "wrapping a data key failed");
    }
    nrm_params_t p = {0};
    nrm_params_text(&p, case_id);
    nrm_params_int(&p, key_id);
    nrm_params_bytes(&p, wrapped, len);
    nrm_status_t st = nrm_db_exec(tx->db, "intake_key_insert", &p, NULL, tx->err);
    free(wrapped);
    if (st != NRM_OK)
        sodium_memzero(key, NRM_DATA_KEY_BYTES);
    return st;
}

nrm_status_t intake_case_key_for_sealing(intake_t *self, nrm_tx_t *tx, const char *case_id,
                                         uint8_t key[NRM_DATA_KEY_BYTES])
{
    /* the case row's lock orders this against an erasure of the same case */
    nrm_params_t p = {0};
    nrm_params_text(&p, case_id);
    PGresult *res = NULL;
    nrm_status_t st = nrm_db_exec(tx->db, "intake_key_lock_case", &p, &res, tx->err);
    if (st != NRM_OK)
        return st;
    bool erased = PQntuples(res) != 1 || nrm_db_int(res, 0, 0) != 0;
    PQclear(res);
    if (erased) /* the report linked to a case whose identity is gone: a retry opens a new one */
        return nrm_fail(tx->err, NRM_UNAVAILABLE, NULL, "case changed meanwhile, retry");
    bool found = false;
    st = intake_case_key_load(self, tx, case_id, key, &found);
    if (st == NRM_OK && !found)
        st = s_key_create(self, tx, case_id, key);
    return st;
}

/* Wraps again, under the active key, the data keys wrapped under another. Returns the status;
 * a key that cannot be unwrapped (its keyring key is gone) is logged and left. */
static nrm_status_t s_rewrap_keys(intake_t *self, nrm_tx_t *tx, int *rewrapped)
{
    char after[INTAKE_ID_MAX + 1] = "";
    for (;;) {
        nrm_params_t p = {0};
        nrm_params_int(&p, nrm_keyring_active_id(self->keys));
        nrm_params_text(&p, after);
        nrm_params_int(&p, S_BATCH);
        PGresult *res = NULL;
        nrm_status_t st = nrm_db_exec(tx->db, "intake_key_stale", &p, &res, tx->err);
        if (st != NRM_OK)
            return st;
        int rows = PQntuples(res);
        for (int i = 0; i < rows && st == NRM_OK; i++) {
            const char *case_id = nrm_db_text(res, i, 0);
            snprintf(after, sizeof after, "%s", case_id);
            size_t len = 0;
            const uint8_t *old = nrm_db_bytes(res, i, 2, &len);
            uint8_t key[NRM_DATA_KEY_BYTES], *wrapped = NULL;
            size_t wrapped_len = 0;
            uint32_t key_id = 0;
            if (s_unwrap(self, case_id, (uint32_t)nrm_db_int(res, i, 1), old, len, key) != 0) {
                nrm_log_error("a data key cannot be unwrapped: is a keyring key missing?",
                              "{s:s, s:I}", "case_id", case_id, "key_id",
                              (json_int_t)nrm_db_int(res, i, 1));
                continue;
            }
            int wrap_rc = s_wrap(self, case_id, key, &wrapped, &wrapped_len, &key_id);
            sodium_memzero(key, sizeof key);
            if (wrap_rc != 0) {
                st = nrm_fail(tx->err, NRM_INTERNAL, NULL, "wrapping a data key failed");
                break;
            }
            nrm_params_t u = {0};
            nrm_params_text(&u, case_id);
            nrm_params_int(&u, key_id);
            nrm_params_bytes(&u, wrapped, wrapped_len);
            st = nrm_db_exec(tx->db, "intake_key_rewrap", &u, NULL, tx->err);
            free(wrapped);
            *rewrapped += st == NRM_OK;
        }
        PQclear(res);
        if (st != NRM_OK || rows < S_BATCH)
            return st;
    }
}

/* Opens a field sealed under the keyring and seals it under key: *out malloc'd. 0 or -1. */
static int s_reseal(const intake_t *self, uint32_t key_id, const uint8_t *sealed, size_t len,
                    const char *aad, const uint8_t key[NRM_DATA_KEY_BYTES], uint8_t **out,
                    size_t *out_len)
{
    uint8_t *plain = NULL;
    size_t plain_len = 0;
    if (nrm_open(self->keys, key_id, sealed, len, aad, &plain, &plain_len) != 0)
        return -1;
    int rc = nrm_seal_with(key, plain, plain_len, aad, out, out_len);
    sodium_memzero(plain, plain_len);
    free(plain);
    return rc;
}

/* Re-seals one report sealed under the keyring under its case's data key. */
static nrm_status_t s_move_report(intake_t *self, nrm_tx_t *tx, const PGresult *res, int i)
{
    int64_t report_id = nrm_db_int(res, i, 0);
    const char *case_id = nrm_db_text(res, i, 1);
    uint32_t key_id = (uint32_t)nrm_db_int(res, i, 2);
    uint8_t key[NRM_DATA_KEY_BYTES];
    nrm_status_t st = intake_case_key_for_sealing(self, tx, case_id, key);
    if (st != NRM_OK)
        return st;
    char aad[INTAKE_AAD_MAX];
    snprintf(aad, sizeof aad, "%s%s", INTAKE_REPORT_AAD, case_id);
    size_t person_len = 0, notes_len = 0, new_person_len = 0, new_notes_len = 0;
    const uint8_t *person = nrm_db_bytes(res, i, 3, &person_len);
    const uint8_t *notes = nrm_db_bytes(res, i, 4, &notes_len);
    uint8_t *new_person = NULL, *new_notes = NULL;
    int rc = s_reseal(self, key_id, person, person_len, aad, key, &new_person, &new_person_len);
    if (rc == 0)
        rc = s_reseal(self, key_id, notes, notes_len, aad, key, &new_notes, &new_notes_len);
    sodium_memzero(key, sizeof key);
    if (rc != 0) {
        nrm_log_error("a sealed report cannot be opened with the keyring: left as it is",
                      "{s:I, s:s}", "report_id", (json_int_t)report_id, "case_id", case_id);
    } else {
        nrm_params_t p = {0};
        nrm_params_int(&p, report_id);
        nrm_params_bytes(&p, new_person, new_person_len);
        nrm_params_bytes(&p, new_notes, new_notes_len);
        st = nrm_db_exec(tx->db, "intake_key_report_reseal", &p, NULL, tx->err);
    }
    free(new_person);
    free(new_notes);
    return st;
}

/* Moves every report sealed under the keyring to its case's data key, a batch at a time. */
static nrm_status_t s_move_reports(intake_t *self, nrm_tx_t *tx, int *moved)
{
    int64_t after = 0;
    for (;;) {
        nrm_params_t p = {0};
        nrm_params_int(&p, after);
        nrm_params_int(&p, S_BATCH);
        PGresult *res = NULL;
        nrm_status_t st = nrm_db_exec(tx->db, "intake_key_old_reports", &p, &res, tx->err);
        if (st != NRM_OK)
            return st;
        int rows = PQntuples(res);
        for (int i = 0; i < rows && st == NRM_OK; i++) {
            after = nrm_db_int(res, i, 0);
            st = s_move_report(self, tx, res, i);
            *moved += st == NRM_OK;
        }
        PQclear(res);
        if (st != NRM_OK || rows < S_BATCH)
            return st;
    }
}

nrm_status_t intake_keys_start(void *ctx, nrm_tx_t *tx)
{
    intake_t *self = ctx;
    int rewrapped = 0, moved = 0;
    nrm_status_t st = s_rewrap_keys(self, tx, &rewrapped);
    if (st == NRM_OK)
        st = s_move_reports(self, tx, &moved);
    if (st == NRM_OK && (rewrapped || moved))
        nrm_log_info("data keys", "{s:i, s:i, s:I}", "keys_rewrapped", rewrapped,
                     "reports_moved_to_case_keys", moved, "active_key_id",
                     (json_int_t)nrm_keyring_active_id(self->keys));
    return st;
}
