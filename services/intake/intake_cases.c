/* Intake request handlers: open or link a case from a report, update, withdraw consent, close.
 * Changing a case is for its case manager and the coordinators (nrm_authz); a linked report
 * makes its agency a reporter, nothing more (intake_roles.c). */
#include "intake.h"
#include "nrm_alloc.h"
#include "nrm_authz.h"
#include "nrm_log.h"
#include "nrm_pgarray.h"
#include "nrm_validate.h"

#include <sodium.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define S_MAX_NEEDS 16
#define S_AAD_MAX 96
#define S_OPEN_DUP_COL 2 /* s_sql_open's first column of INTAKE_DUP_BLOCK_SQL */

/* A new case in one statement: the case (with its fields and time of identification), its
 * data key, the report, its agency among the case's reporters and case.opened, unless an open
 * case has the same identity hash (then nothing is written and no row is returned). The
 * rows are also the other open cases of its blocking hash ($25), those the duplicate check
 * compares (at most $26, oldest first; the statement's snapshot does not see the new case):
 * one row per candidate from column 2 on (intake_dup_find), or one row with NULLs there when
 * there is none, so that the check costs no statement of its own. */
static const char s_sql_open[] =
    "WITH c AS (INSERT INTO cases (case_id, identity_hash, region, reporting_agency_id, is_minor,"
    "   profile, exploitation_types, country_of_exploitation, needs, urgency, safety_risk,"
    "   consent_to_referral, consent_to_data_sharing, case_manager_agency_id, facts,"
    "   identified_at, blocking_hash)"
    "   VALUES ($1, $2, $3, $4, $5, $6, $7::int[], $8, $9::int[], $10, $11, $12, $13, $4, $14,"
    "   to_timestamp($15::bigint / 1000.0), $25)"
    "   ON CONFLICT (identity_hash) WHERE status = 'open' AND identity_hash IS NOT NULL"
    "   DO NOTHING RETURNING case_id),"
    " k AS (INSERT INTO case_keys (case_id, key_id, wrapped_key) SELECT case_id, $16, $17 FROM c),"
    " r AS (INSERT INTO reports (case_id, request_id, reporting_agency_id, region, identified_at,"
    "   linked, key_id, person_sealed, notes_sealed, sealed_under)"
    "   SELECT case_id, $18::uuid, $4, $3, to_timestamp($15::bigint / 1000.0), false, 0, $19, $20,"
    "   'case_key' FROM c),"
    " a AS (INSERT INTO case_agencies (case_id, agency_id) SELECT case_id, $4 FROM c"
    "   ON CONFLICT DO NOTHING),"
    " o AS (INSERT INTO outbox (event_id, topic, payload) SELECT $21::uuid, $22, $23 FROM c)"
    " SELECT c.case_id, pg_notify($24, ''), b.* FROM c LEFT JOIN LATERAL (" INTAKE_DUP_BLOCK_SQL
    ") b ON true ORDER BY b.opened_at, b.case_id";
static const char s_sql_find_open[] =
    "SELECT case_id FROM cases WHERE identity_hash = $1 AND status = 'open'";
static const char s_sql_load[] =
    "SELECT status, array_to_string(needs, ','), urgency, safety_risk, consent_to_referral,"
    " case_manager_agency_id, consent_to_data_sharing FROM cases WHERE case_id = $1 FOR UPDATE";
static const char s_sql_save[] =
    "UPDATE cases SET needs = $2::int[], urgency = $3, safety_risk = $4,"
    " consent_to_referral = $5, consent_to_data_sharing = $6, updated_at = now()"
    " WHERE case_id = $1";
static const char s_sql_close[] =
    "UPDATE cases SET status = 'closed', close_reason = $2, closed_at = now(), updated_at = now()"
    " WHERE case_id = $1";
static const char s_sql_is_reporter[] =
    "SELECT 1 FROM case_agencies WHERE case_id = $1 AND agency_id = $2";
static const char s_sql_report[] =
    "WITH report AS (INSERT INTO reports (case_id, request_id, reporting_agency_id, region,"
    "   identified_at, linked, key_id, person_sealed, notes_sealed, sealed_under)"
    "   VALUES ($1, $2::uuid, $3, $4, to_timestamp($5::bigint / 1000.0), $6, 0, $7, $8,"
    "   'case_key'))"
    " INSERT INTO case_agencies (case_id, agency_id) VALUES ($1, $3) ON CONFLICT DO NOTHING";

void intake_prepare(nrm_db_t *db)
{
    nrm_db_statement(db, "intake_open", s_sql_open);
    nrm_db_statement(db, "intake_find_open", s_sql_find_open);
    nrm_db_statement(db, "intake_load", s_sql_load);
    nrm_db_statement(db, "intake_save", s_sql_save);
    nrm_db_statement(db, "intake_close", s_sql_close);
    nrm_db_statement(db, "intake_report", s_sql_report);
    nrm_db_statement(db, "intake_is_reporter", s_sql_is_reporter);
    intake_roles_prepare(db);
    intake_fields_prepare(db);
}

/* The state of a case that updates change. */
typedef struct {
    bool open;
    int needs[S_MAX_NEEDS];
    size_t n_needs;
    int urgency;
    int safety_risk;
    bool consent;
    bool data_sharing;               /* consent to data sharing */
    char manager[INTAKE_ID_MAX + 1]; /* the case-managing agency */
} s_case_t;

/* Adds a need unless present. Returns true when it was added. */
static bool s_add_need(s_case_t *c, int need)
{
    for (size_t i = 0; i < c->n_needs; i++)
        if (c->needs[i] == need)
            return false;
    if (c->n_needs == S_MAX_NEEDS)
        return false;
    c->needs[c->n_needs++] = need;
    return true;
}

/* The PostgreSQL array literal of n ints ({"1","2"}, for an int[] cast); the caller frees it. */
static char *s_array_text(const int *v, size_t n)
{
    nrm_pgarray_t a;
    nrm_pgarray_init(&a);
    for (size_t i = 0; i < n; i++)
        nrm_pgarray_int(&a, v[i]);
    return nrm_pgarray_take(&a);
}

/* Loads (and locks) a case. NOT_FOUND names field when there is no such case. */
static nrm_status_t s_load(nrm_tx_t *tx, const char *case_id, const char *field, s_case_t *c)
{
    nrm_params_t p = {0};
    nrm_params_text(&p, case_id);
    PGresult *res = NULL;
    nrm_status_t st = nrm_db_exec(tx->db, "intake_load", &p, &res, tx->err);
    if (st != NRM_OK)
        return st;
    if (PQntuples(res) != 1) {
        PQclear(res);
        return nrm_fail(tx->err, NRM_NOT_FOUND, field, "no such case");
    }
    memset(c, 0, sizeof *c);
    c->open = strcmp(nrm_db_text(res, 0, 0), "open") == 0;
    char *needs = nrm_xstrdup(nrm_db_text(res, 0, 1));
    char *save = NULL;
    for (char *t = strtok_r(needs, ",", &save); t; t = strtok_r(NULL, ",", &save))
        s_add_need(c, atoi(t));
    free(needs);
    c->urgency = (int)nrm_db_int(res, 0, 2);
    c->safety_risk = (int)nrm_db_int(res, 0, 3);
    c->consent = nrm_db_int(res, 0, 4) != 0;
    snprintf(c->manager, sizeof c->manager, "%s", nrm_db_text(res, 0, 5));
    c->data_sharing = nrm_db_int(res, 0, 6) != 0;
    PQclear(res);
    return NRM_OK;
}

/* Saves the changeable state of a case. */
static nrm_status_t s_save(nrm_tx_t *tx, const char *case_id, const s_case_t *c)
{
    char *needs = s_array_text(c->needs, c->n_needs);
    nrm_params_t p = {0};
    nrm_params_text(&p, case_id);
    nrm_params_text(&p, needs);
    nrm_params_int(&p, c->urgency);
    nrm_params_int(&p, c->safety_risk);
    nrm_params_bool(&p, c->consent);
    nrm_params_bool(&p, c->data_sharing);
    nrm_status_t st = nrm_db_exec(tx->db, "intake_save", &p, NULL, tx->err);
    free(needs);
    return st;
}

/* Emits case.updated with the case's state (and its identification fields). */
static nrm_status_t s_emit_updated(nrm_tx_t *tx, const char *case_id, const s_case_t *c,
                                   intake_ident_t *ident)
{
    Nrm__V1__CaseUpdated body = NRM__V1__CASE_UPDATED__INIT;
    body.facts = &ident->fields.msg;
    body.screening = &ident->screened.msg;
    body.needs = (Nrm__V1__ServiceType *)c->needs;
    body.n_needs = c->n_needs;
    body.urgency = (Nrm__V1__Urgency)c->urgency;
    body.safety_risk = (Nrm__V1__SafetyRisk)c->safety_risk;
    body.consent_to_referral = c->consent;
    body.consent_to_data_sharing = c->data_sharing;
    return nrm_tx_emit_body(tx, case_id, NRM__V1__EVENT__BODY_CASE_UPDATED, &body);
}

/* The sender's relations to a loaded case: its case manager, one of its reporters. */
static nrm_status_t s_relations(nrm_call_t *call, const char *case_id, const s_case_t *c,
                                unsigned *relations)
{
    *relations = strcmp(c->manager, call->agency_id) == 0 ? NRM_ROLE_CASE_MANAGER : 0;
    nrm_params_t p = {0};
    nrm_params_text(&p, case_id);
    nrm_params_text(&p, call->agency_id);
    PGresult *res = NULL;
    nrm_status_t st = nrm_db_exec(call->tx.db, "intake_is_reporter", &p, &res, call->tx.err);
    if (st != NRM_OK)
        return st;
    if (PQntuples(res) == 1)
        *relations |= NRM_ROLE_REPORTER;
    PQclear(res);
    return NRM_OK;
}

/* Loads (and locks) an open case the sender may change, as the matrix says (its case manager
 * or a coordinator): PERMISSION_DENIED (for an unknown case too, nrm_authz_not_found), then
 * NOT_FOUND, then FAILED_PRECONDITION for a closed case, all naming field. */
static nrm_status_t s_load_for_change(nrm_call_t *call, const char *case_id, const char *field,
                                      s_case_t *c)
{
    nrm_status_t st = s_load(&call->tx, case_id, field, c);
    if (st == NRM_NOT_FOUND)
        return nrm_authz_not_found(call, field, "no such case");
    if (st != NRM_OK)
        return st;
    unsigned relations = 0;
    if ((st = s_relations(call, case_id, c, &relations)) != NRM_OK)
        return st;
    if ((st = nrm_authz_check(call, relations)) != NRM_OK)
        return st;
    if (!c->open)
        return nrm_fail(call->tx.err, NRM_FAILED_PRECONDITION, field, "the case is closed");
    call->subject_id = case_id;
    return NRM_OK;
}

/* The report's identifying data sealed under key, bound to case_id: *person and *notes
 * malloc'd (caller frees, also on failure). Returns OK or INTERNAL. */
static nrm_status_t s_seal_report(nrm_call_t *call, const char *case_id,
                                  const uint8_t key[NRM_DATA_KEY_BYTES], uint8_t **person,
                                  size_t *person_len, uint8_t **notes, size_t *notes_len)
{
    const Nrm__V1__SubmitReport *r = call->request->submit_report;
    Nrm__V1__PersonalData empty = NRM__V1__PERSONAL_DATA__INIT;
    const Nrm__V1__PersonalData *data = r->person ? r->person : &empty;
    size_t plen = nrm__v1__personal_data__get_packed_size(data);
    uint8_t *plain = nrm_xmalloc(plen ? plen : 1);
    nrm__v1__personal_data__pack(data, plain);
    char aad[S_AAD_MAX];
    snprintf(aad, sizeof aad, "%s%s", INTAKE_REPORT_AAD, case_id);
    int sealed = nrm_seal_with(key, plain, plen, aad, person, person_len) ||
                 nrm_seal_with(key, r->notes, strlen(r->notes), aad, notes, notes_len);
    sodium_memzero(plain, plen);
    free(plain);
    return sealed ? nrm_fail(call->tx.err, NRM_INTERNAL, NULL, "sealing failed") : NRM_OK;
}

/* Seals the report's identifying data under the (existing) case's data key (intake_keys.c) and
 * stores the report as linked, and its agency among the case's reporting agencies. */
static nrm_status_t s_store_linked_report(intake_t *self, nrm_call_t *call, const char *case_id)
{
    const Nrm__V1__SubmitReport *r = call->request->submit_report;
    uint8_t key[NRM_DATA_KEY_BYTES];
    nrm_status_t st = intake_case_key_for_sealing(self, &call->tx, case_id, key);
    if (st != NRM_OK)
        return st;
    uint8_t *person_sealed = NULL, *notes_sealed = NULL;
    size_t person_len = 0, notes_len = 0;
    st = s_seal_report(call, case_id, key, &person_sealed, &person_len, &notes_sealed, &notes_len);
    sodium_memzero(key, sizeof key);
    if (st == NRM_OK) {
        nrm_params_t p = {0};
        nrm_params_text(&p, case_id);
        nrm_params_text(&p, call->request->request_id);
        nrm_params_text(&p, call->agency_id);
        nrm_params_text(&p, r->region);
        nrm_params_int(&p, r->identified_at_ms);
        nrm_params_bool(&p, true);
        nrm_params_bytes(&p, person_sealed, person_len);
        nrm_params_bytes(&p, notes_sealed, notes_len);
        st = nrm_db_exec(call->tx.db, "intake_report", &p, NULL, call->tx.err);
    }
    free(person_sealed);
    free(notes_sealed);
    return st;
}

/* What a new case is made of, prepared before its one statement (s_open). */
typedef struct {
    uint8_t *profile, *facts, *wrapped, *person, *notes; /* owned */
    size_t profile_len, facts_len, wrapped_len, person_len, notes_len;
    uint32_t key_id;
    nrm_event_row_t opened; /* case.opened */
    bool has_event;
} s_new_case_t;

static void s_new_case_free(nrm_tx_t *tx, s_new_case_t *n, bool written)
{
    free(n->profile);
    free(n->facts);
    free(n->wrapped);
    free(n->person);
    free(n->notes);
    if (n->has_event)
        nrm_tx_event_row_done(tx, &n->opened, written);
}

/* Packs case.opened for the new case into n->opened. */
static nrm_status_t s_opened_event(nrm_call_t *call, const char *case_id,
                                   const intake_facts_t *facts, Nrm__V1__Profile *profile,
                                   const s_case_t *c, intake_ident_t *ident, s_new_case_t *n)
{
    const Nrm__V1__SubmitReport *r = call->request->submit_report;
    Nrm__V1__CaseOpened body = NRM__V1__CASE_OPENED__INIT;
    body.facts = &ident->fields.msg;
    body.screening = &ident->screened.msg;
    body.status = (Nrm__V1__TraffickingStatus)ident->status;
    body.recovery_period_ends_at_ms = ident->recovery_ends_at_ms;
    body.reporting_agency_id = (char *)call->agency_id;
    body.region = r->region;
    body.profile = profile;
    body.is_minor = facts->is_minor;
    body.exploitation_types = r->exploitation_types;
    body.n_exploitation_types = r->n_exploitation_types;
    body.country_of_exploitation = r->country_of_exploitation;
    body.needs = (Nrm__V1__ServiceType *)c->needs;
    body.n_needs = c->n_needs;
    body.urgency = (Nrm__V1__Urgency)c->urgency;
    body.safety_risk = (Nrm__V1__SafetyRisk)c->safety_risk;
    body.consent_to_referral = c->consent;
    Nrm__V1__Event ev = NRM__V1__EVENT__INIT;
    ev.case_id = (char *)case_id;
    ev.body_case = NRM__V1__EVENT__BODY_CASE_OPENED;
    ev.case_opened = &body;
    nrm_status_t st = nrm_tx_event_row(&call->tx, &ev, &n->opened);
    n->has_event = st == NRM_OK;
    return st;
}

/* Prepares everything a new case case_id is written with: its profile, its fields (ident),
 * a fresh data key and the report sealed under it, and case.opened. */
static nrm_status_t s_new_case(intake_t *self, nrm_call_t *call, const char *case_id,
                               const intake_facts_t *facts, Nrm__V1__Profile *profile,
                               const s_case_t *c, intake_ident_t *ident, s_new_case_t *n)
{
    n->profile_len = nrm__v1__profile__get_packed_size(profile);
    n->profile = nrm_xmalloc(n->profile_len ? n->profile_len : 1);
    nrm__v1__profile__pack(profile, n->profile);
    intake_ident_opening(self, call, facts->is_minor, ident, &n->facts, &n->facts_len);
    uint8_t key[NRM_DATA_KEY_BYTES];
    if (intake_case_key_new(self, case_id, key, &n->wrapped, &n->wrapped_len, &n->key_id) != 0)
        return nrm_fail(call->tx.err, NRM_INTERNAL, NULL, "wrapping a data key failed");
    nrm_status_t st =
        s_seal_report(call, case_id, key, &n->person, &n->person_len, &n->notes, &n->notes_len);
    sodium_memzero(key, sizeof key);
    if (st == NRM_OK)
        st = s_opened_event(call, case_id, facts, profile, c, ident, n);
    return st;
}

/* Opens case_id from the report in one statement (s_sql_open) unless an open case has the
 * same identity hash. On OK, *opened says whether the case was created (with its key, its
 * report, its reporter and case.opened); otherwise nothing was written. When it was, *rows is
 * the statement's result (the caller PQclears it): the candidates of the duplicate check, at
 * most dup_limit, from column S_OPEN_DUP_COL on. */
static nrm_status_t s_open(nrm_call_t *call, const intake_facts_t *facts, const char *hash,
                           const char *blocking, int dup_limit, const s_case_t *c,
                           const char *case_id, s_new_case_t *n, bool *opened, PGresult **rows)
{
    const Nrm__V1__SubmitReport *r = call->request->submit_report;
    char *types = s_array_text((const int *)r->exploitation_types, r->n_exploitation_types);
    char *needs = s_array_text(c->needs, c->n_needs);
    nrm_params_t p = {0};
    nrm_params_text(&p, case_id);
    nrm_params_text(&p, hash[0] ? hash : NULL);
    nrm_params_text(&p, r->region);
    nrm_params_text(&p, call->agency_id);
    nrm_params_bool(&p, facts->is_minor);
    nrm_params_bytes(&p, n->profile, n->profile_len);
    nrm_params_text(&p, types);
    nrm_params_text(&p, r->country_of_exploitation);
    nrm_params_text(&p, needs);
    nrm_params_int(&p, c->urgency);
    nrm_params_int(&p, c->safety_risk);
    nrm_params_bool(&p, c->consent);
    nrm_params_bool(&p, r->consent_to_data_sharing);
    nrm_params_bytes(&p, n->facts, n->facts_len);
    nrm_params_int(&p, r->identified_at_ms);
    nrm_params_int(&p, n->key_id);
    nrm_params_bytes(&p, n->wrapped, n->wrapped_len);
    nrm_params_text(&p, call->request->request_id);
    nrm_params_bytes(&p, n->person, n->person_len);
    nrm_params_bytes(&p, n->notes, n->notes_len);
    nrm_params_text(&p, n->opened.event_id);
    nrm_params_text(&p, n->opened.topic);
    nrm_params_bytes(&p, n->opened.payload, n->opened.len);
    nrm_params_text(&p, n->opened.channel);
    nrm_params_text(&p, blocking[0] ? blocking : NULL);
    nrm_params_int(&p, dup_limit);
    PGresult *res = NULL;
    nrm_status_t st = nrm_db_exec(call->tx.db, "intake_open", &p, &res, call->tx.err);
    free(types);
    free(needs);
    if (st != NRM_OK)
        return st;
    *opened = PQntuples(res) > 0;
    if (*opened)
        *rows = res;
    else
        PQclear(res);
    return NRM_OK;
}

/* The open case with identity hash hash into case_id; UNAVAILABLE ("retry") when it was closed
 * since the insert found it. */
static nrm_status_t s_find_open(nrm_call_t *call, const char *hash, char case_id[37])
{
    nrm_params_t f = {0};
    nrm_params_text(&f, hash);
    PGresult *res = NULL;
    nrm_status_t st = nrm_db_exec(call->tx.db, "intake_find_open", &f, &res, call->tx.err);
    if (st != NRM_OK)
        return st;
    if (PQntuples(res) != 1) {
        PQclear(res);
        /* the matching case was closed between the insert and the lookup: retry the request */
        return nrm_fail(call->tx.err, NRM_UNAVAILABLE, NULL, "case changed meanwhile, retry");
    }
    snprintf(case_id, 37, "%s", nrm_db_text(res, 0, 0));
    PQclear(res);
    return NRM_OK;
}

/* A linked report: record it, merge what it adds to the case, tell the stream. */
static nrm_status_t s_link(intake_t *self, nrm_call_t *call, const char *case_id,
                           const s_case_t *reported)
{
    const Nrm__V1__SubmitReport *r = call->request->submit_report;
    s_case_t c;
    nrm_status_t st = s_load(&call->tx, case_id, "submit_report", &c);
    if (st != NRM_OK)
        return st;
    intake_ident_t ident;
    bool changed = false;
    st = intake_ident_update(self, call, case_id, r->facts, r->screening_answers,
                             r->n_screening_answers, &ident, &changed);
    if (st != NRM_OK)
        return st;
    for (size_t i = 0; i < reported->n_needs; i++)
        changed |= s_add_need(&c, reported->needs[i]);
    if (reported->urgency > c.urgency) {
        c.urgency = reported->urgency;
        changed = true;
    }
    if (reported->safety_risk > c.safety_risk) {
        c.safety_risk = reported->safety_risk;
        changed = true;
    }
    Nrm__V1__CaseLinked body = NRM__V1__CASE_LINKED__INIT;
    body.reporting_agency_id = (char *)call->agency_id;
    body.region = r->region;
    st = nrm_tx_emit_body(&call->tx, case_id, NRM__V1__EVENT__BODY_CASE_LINKED, &body);
    if (st == NRM_OK)
        st = intake_link_noted(call, case_id);
    if (st == NRM_OK && changed)
        st = s_save(&call->tx, case_id, &c);
    if (st == NRM_OK && changed)
        st = s_emit_updated(&call->tx, case_id, &c, &ident);
    return st;
}

nrm_status_t intake_submit_report(void *ctx, nrm_call_t *call)
{
    intake_t *self = ctx;
    const Nrm__V1__SubmitReport *r = call->request->submit_report;
    intake_facts_t facts;
    if (intake_check_report(r, call->config, call->tx.now_ms, &facts, call->tx.err) != NRM_OK ||
        intake_ident_check_report(self, r, call->tx.now_ms, call->tx.err) != NRM_OK)
        return NRM_INVALID_ARGUMENT;
    s_case_t c = {.open = true,
                  .urgency = r->urgency ? (int)r->urgency : NRM__V1__URGENCY__URGENCY_ROUTINE,
                  .safety_risk = r->safety_risk ? (int)r->safety_risk
                                                : NRM__V1__SAFETY_RISK__SAFETY_RISK_MEDIUM,
                  .consent = r->consent_to_referral};
    for (size_t i = 0; i < r->n_needs; i++)
        s_add_need(&c, r->needs[i]);
    /* the published profile: the age from the date of birth when there is one */
    Nrm__V1__Profile profile = *r->profile;
    profile.base.unknown_fields = NULL; /* stored and published: only the fields it knows */
    profile.base.n_unknown_fields = 0;
    profile.age_unknown = !facts.has_age;
    profile.age_years = facts.has_age ? facts.age_years : 0;
    profile.age_estimated =
        facts.has_age && !facts.age_from_birth_date && r->profile->age_estimated;
    char hash[65] = "", blocking[65] = "";
    const Nrm__V1__PersonalData *person = r->person;
    if (person) {
        intake_identity_hash(self, person->full_name, person->date_of_birth, profile.nationality,
                             hash);
        intake_blocking_hash(self, person->date_of_birth, profile.nationality, blocking);
    }
    char case_id[37];
    nrm_uuid_v4(case_id);
    bool opened = false;
    PGresult *rows = NULL;
    /* the name the duplicate check compares, when the report has a block to compare it in */
    char *dup_key = person && blocking[0] ? intake_dup_key(self, person->full_name) : NULL;
    intake_ident_t ident;
    s_new_case_t n = {0};
    nrm_status_t st = s_new_case(self, call, case_id, &facts, &profile, &c, &ident, &n);
    if (st == NRM_OK)
        st = s_open(call, &facts, hash, blocking, dup_key ? self->dup_max_candidates : 0, &c,
                    case_id, &n, &opened, &rows);
    s_new_case_free(&call->tx, &n, st == NRM_OK && opened);
    if (st == NRM_OK && opened) /* the answers and their outcome (none: the defaults) */
        st = intake_ident_open_answers(self, call, case_id, facts.is_minor);
    if (st == NRM_OK && opened && dup_key) /* the open cases of its block with a similar name */
        st = intake_dup_find(self, call, case_id, dup_key, rows, S_OPEN_DUP_COL);
    PQclear(rows);
    intake_dup_key_free(dup_key);
    if (st == NRM_OK && !opened && (st = s_find_open(call, hash, case_id)) == NRM_OK &&
        (st = s_store_linked_report(self, call, case_id)) == NRM_OK)
        st = s_link(self, call, case_id, &c);
    if (st != NRM_OK)
        return st;
    Nrm__V1__CaseRef *ref = intake_reply_case(call, case_id);
    ref->linked = !opened;
    call->subject_id = ref->case_id;
    return NRM_OK;
}

Nrm__V1__CaseRef *intake_reply_case(nrm_call_t *call, const char *case_id)
{
    Nrm__V1__CaseRef *ref = nrm_call_alloc(call, sizeof *ref);
    nrm__v1__case_ref__init(ref);
    ref->case_id = nrm_call_strdup(call, case_id);
    call->reply->result_case = NRM__V1__REPLY__RESULT_CASE_REF;
    call->reply->case_ref = ref;
    return ref;
}

nrm_status_t intake_update_case(void *ctx, nrm_call_t *call)
{
    intake_t *self = ctx;
    const Nrm__V1__UpdateCase *u = call->request->update_case;
    if (intake_check_update(u, call->tx.err) != NRM_OK ||
        intake_ident_check_update(self, u, call->tx.now_ms, call->tx.err) != NRM_OK)
        return NRM_INVALID_ARGUMENT;
    s_case_t c;
    nrm_status_t st = s_load_for_change(call, u->case_id, "update_case.case_id", &c);
    if (st != NRM_OK)
        return st;
    intake_ident_t ident;
    bool changed = false;
    st = intake_ident_update(self, call, u->case_id, u->facts, u->screening_answers,
                             u->n_screening_answers, &ident, &changed);
    if (st != NRM_OK)
        return st;
    for (size_t i = 0; i < u->n_add_needs; i++)
        changed |= s_add_need(&c, u->add_needs[i]);
    if (u->urgency && (int)u->urgency != c.urgency) {
        c.urgency = u->urgency;
        changed = true;
    }
    if (u->safety_risk && (int)u->safety_risk != c.safety_risk) {
        c.safety_risk = u->safety_risk;
        changed = true;
    }
    if (u->consent_to_referral && !c.consent) {
        c.consent = true;
        changed = true;
    }
    if (u->consent_to_data_sharing && !c.data_sharing) {
        c.data_sharing = true;
        changed = true;
    }
    if (changed && (st = s_save(&call->tx, u->case_id, &c)) == NRM_OK)
        st = s_emit_updated(&call->tx, u->case_id, &c, &ident);
    if (st == NRM_OK)
        intake_reply_case(call, u->case_id);
    return st;
}

nrm_status_t intake_withdraw_consent(void *ctx, nrm_call_t *call)
{
    const Nrm__V1__WithdrawConsent *w = call->request->withdraw_consent;
    if (nrm_check_text(call->tx.err, "withdraw_consent.case_id", w->case_id, 64, true) != NRM_OK)
        return NRM_INVALID_ARGUMENT;
    s_case_t c;
    nrm_status_t st = s_load_for_change(call, w->case_id, "withdraw_consent.case_id", &c);
    if (st != NRM_OK)
        return st;
    /* consent to referral goes with consent to data sharing; data_sharing_only keeps it */
    if (!w->data_sharing_only)
        c.consent = false;
    c.data_sharing = false;
    st = s_save(&call->tx, w->case_id, &c);
    Nrm__V1__ConsentWithdrawn body = NRM__V1__CONSENT_WITHDRAWN__INIT;
    body.data_sharing_only = w->data_sharing_only;
    if (st == NRM_OK)
        st = nrm_tx_emit_body(&call->tx, w->case_id, NRM__V1__EVENT__BODY_CONSENT_WITHDRAWN, &body);
    if (st == NRM_OK)
        intake_reply_case(call, w->case_id);
    return st;
}

nrm_status_t intake_case_close(nrm_call_t *call, const char *case_id, const char *reason,
                               const char *duplicate_of)
{
    nrm_params_t p = {0};
    nrm_params_text(&p, case_id);
    nrm_params_text(&p, reason);
    nrm_status_t st = nrm_db_exec(call->tx.db, "intake_close", &p, NULL, call->tx.err);
    Nrm__V1__CaseClosed body = NRM__V1__CASE_CLOSED__INIT;
    body.reason = (char *)reason;
    body.duplicate_of_case_id = (char *)(duplicate_of ? duplicate_of : "");
    if (st == NRM_OK)
        st = nrm_tx_emit_body(&call->tx, case_id, NRM__V1__EVENT__BODY_CASE_CLOSED, &body);
    return st;
}

nrm_status_t intake_close_case(void *ctx, nrm_call_t *call)
{
    const Nrm__V1__CloseCase *cl = call->request->close_case;
    if (intake_check_close(cl, call->tx.err) != NRM_OK)
        return NRM_INVALID_ARGUMENT;
    s_case_t c;
    nrm_status_t st = s_load_for_change(call, cl->case_id, "close_case.case_id", &c);
    if (st == NRM_OK) /* the recovery and reflection period */
        st = intake_recovery_check_close(call, cl->case_id, cl->reason);
    if (st != NRM_OK)
        return st;
    st = intake_case_close(call, cl->case_id, cl->reason, NULL);
    if (st == NRM_OK)
        intake_reply_case(call, cl->case_id);
    return st;
}
