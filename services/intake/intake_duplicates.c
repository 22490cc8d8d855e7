/* Possible duplicates: a new case compared with the open cases of its block (same date of birth
 * and nationality) on the decrypted names, and the coordinator's ResolveDuplicate. */
#include "intake.h"
#include "intake_names.h"
#include "nrm_json.h"
#include "nrm_log.h"
#include "nrm_wipe.h"
#include "nrm_validate.h"

#include <sodium.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define S_CANDIDATES_DEFAULT 50
#define S_CANDIDATES_LIMIT 1000
#define S_THRESHOLD_DEFAULT 0.85
#define S_FIELD_MAX 96

static const char s_sql_pair[] =
    "SELECT (SELECT state FROM duplicate_pairs WHERE case_id = $1 AND other_case_id = $2"
    "   FOR UPDATE),"
    " (SELECT status = 'open' FROM cases WHERE case_id = $1),"
    " EXISTS (SELECT 1 FROM cases WHERE case_id = $2)";
static const char s_sql_resolve[] =
    "UPDATE duplicate_pairs SET state = $3, resolved_at = now(), resolved_by = $4"
    " WHERE case_id = $1 AND other_case_id = $2";

void intake_duplicates_prepare(nrm_db_t *db)
{
    nrm_db_statement(db, "intake_dup_pair", s_sql_pair);
    nrm_db_statement(db, "intake_dup_resolve", s_sql_resolve);
}

nrm_status_t intake_names_configure(void *ctx, nrm_config_t *config)
{
    intake_t *self = ctx;
    char field[S_FIELD_MAX];
    Nrm__V1__IntakeNamesSettings *s = (Nrm__V1__IntakeNamesSettings *)nrm_json_section_to_message(
        &nrm__v1__intake_names_settings__descriptor, nrm_config_get(config, "intake.names"),
        "intake.names", field, sizeof field);
    const char *bad = NULL;
    if (!s)
        bad = field;
    else if (s->duplicate_threshold < 0 || s->duplicate_threshold > 1)
        bad = "intake.names.duplicate_threshold";
    else if (s->max_candidates < 0 || s->max_candidates > S_CANDIDATES_LIMIT)
        bad = "intake.names.max_candidates";
    if (bad) {
        nrm_log_error("names configuration refused", "{s:s}", "field", bad);
        if (s)
            protobuf_c_message_free_unpacked(&s->base, NULL);
        return NRM_FAILED_PRECONDITION;
    }
    self->dup_threshold = s->duplicate_threshold > 0 ? s->duplicate_threshold : S_THRESHOLD_DEFAULT;
    self->dup_max_candidates = s->max_candidates > 0 ? s->max_candidates : S_CANDIDATES_DEFAULT;
    protobuf_c_message_free_unpacked(&s->base, NULL);
    nrm_log_info("names configuration loaded", "{s:f, s:i}", "duplicate_threshold",
                 self->dup_threshold, "max_candidates", self->dup_max_candidates);
    return NRM_OK;
}

/* The name key of the first report of row i (INTAKE_DUP_BLOCK_SQL's columns from col on),
 * malloc'd; NULL when it cannot be opened or has no name. */
static char *s_candidate_key(intake_t *self, nrm_call_t *call, const PGresult *res, int i, int col,
                             nrm_status_t *st)
{
    const char *case_id = nrm_db_text(res, i, col);
    Nrm__V1__PersonalData *person = NULL;
    int rc = intake_first_person_open(self, res, i, col + 1, case_id, &person, call->tx.err);
    if (rc == -2)
        *st = NRM_INTERNAL;
    if (rc == -1)
        nrm_log_warn("names: a first report cannot be opened: not compared", "{s:s}", "case_id",
                     case_id);
    if (rc != 0)
        return NULL;
    char *name_key =
        person && person->full_name[0] ? intake_names_key(self->names, person->full_name) : NULL;
    if (person)
        nrm__v1__personal_data__free_unpacked(person, &nrm_wipe_allocator);
    return name_key;
}

void intake_dup_key_free(char *key)
{
    if (key) {
        sodium_memzero(key, strlen(key));
        free(key);
    }
}

char *intake_dup_key(intake_t *self, const char *full_name)
{
    if (!full_name || !full_name[0])
        return NULL;
    char *key = intake_names_key(self->names, full_name);
    if (key && !key[0]) {
        intake_dup_key_free(key);
        return NULL;
    }
    return key;
}

nrm_status_t intake_dup_find(intake_t *self, nrm_call_t *call, const char *case_id, const char *key,
                             const PGresult *res, int col)
{
    nrm_status_t st = NRM_OK;
    double threshold = self->dup_threshold;
    for (int i = 0; i < PQntuples(res) && st == NRM_OK; i++) {
        if (PQgetisnull(res, i, col))
            continue; /* the row of a block with no other open case */
        char *other = s_candidate_key(self, call, res, i, col, &st);
        if (!other)
            continue;
        double score = intake_names_similarity(key, other);
        intake_dup_key_free(other);
        if (score >= threshold && score < 1.0)
            st = intake_dup_propose(&call->tx, case_id, nrm_db_text(res, i, col), score);
    }
    return st;
}

nrm_status_t intake_resolve_duplicate(void *ctx, nrm_call_t *call)
{
    (void)ctx;
    const Nrm__V1__ResolveDuplicate *r = call->request->resolve_duplicate;
    nrm_error_t *err = call->tx.err;
    if (nrm_check_text(err, "resolve_duplicate.case_id", r->case_id, INTAKE_ID_MAX, true) !=
            NRM_OK ||
        nrm_check_text(err, "resolve_duplicate.other_case_id", r->other_case_id, INTAKE_ID_MAX,
                       true) != NRM_OK)
        return NRM_INVALID_ARGUMENT;
    /* coordinators only: the server has decided it (nrm_authz, a request about no object) */
    nrm_params_t p = {0};
    nrm_params_text(&p, r->case_id);
    nrm_params_text(&p, r->other_case_id);
    PGresult *res = NULL;
    nrm_status_t st = nrm_db_exec(call->tx.db, "intake_dup_pair", &p, &res, err);
    if (st != NRM_OK)
        return st;
    bool proposed = !PQgetisnull(res, 0, 0) && strcmp(nrm_db_text(res, 0, 0), "proposed") == 0;
    bool known = !PQgetisnull(res, 0, 1), open = known && nrm_db_int(res, 0, 1) != 0;
    bool other_known = nrm_db_int(res, 0, 2) != 0;
    PQclear(res);
    if (!known)
        return nrm_fail(err, NRM_NOT_FOUND, "resolve_duplicate.case_id", "no such case");
    if (!other_known)
        return nrm_fail(err, NRM_NOT_FOUND, "resolve_duplicate.other_case_id", "no such case");
    if (!proposed)
        return nrm_fail(err, NRM_FAILED_PRECONDITION, "resolve_duplicate.other_case_id",
                        "this pair was never proposed or is already resolved");
    if (r->confirm && !open)
        return nrm_fail(err, NRM_FAILED_PRECONDITION, "resolve_duplicate.case_id",
                        "the case is closed");
    call->subject_id = r->case_id;
    nrm_params_text(&p, r->confirm ? "confirmed" : "dismissed");
    nrm_params_text(&p, call->agency_id);
    st = nrm_db_exec(call->tx.db, "intake_dup_resolve", &p, NULL, err);
    if (st == NRM_OK && r->confirm)
        st = intake_case_close(call, r->case_id, "duplicate", r->other_case_id);
    if (st != NRM_OK)
        return st;
    intake_reply_case(call, r->case_id);
    return NRM_OK;
}
