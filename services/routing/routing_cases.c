/* Intake's case events applied to routing's copy of the case: opened, updated, consent
 * withdrawn, closed; and who the case manager and the reporters are (opened, linked, manager
 * changed), for the reads that show a case to them. Each event is applied once per case (its intake
 * sequence is compared with the case's last applied one), so a replay from sequence 1 changes
 * nothing. A batch of events is applied at a time: its new cases in one statement, its parties
 * in one statement each, then every event in order (a case saved per event: the next event of
 * the case in the batch reads it back, locked). */
#include "routing.h"
#include "nrm_alloc.h"
#include "nrm_log.h"
#include "nrm_pgarray.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* the batch's opened cases, in their order; those already known (a replay) are left alone */
static const char s_sql_insert[] =
    "INSERT INTO cases (case_id, region, is_minor, profile, exploitation_types, needs, urgency,"
    " safety_risk, consent_to_referral, last_seq, screening)"
    " SELECT u.case_id, u.region, u.is_minor, decode(u.profile, 'hex'), u.types::int[],"
    " u.needs::int[], u.urgency, u.safety_risk, u.consent, u.last_seq, u.screening"
    " FROM unnest($1::text[], $2::text[], $3::bool[], $4::text[], $5::text[], $6::text[],"
    " $7::int[], $8::int[], $9::bool[], $10::bigint[], $11::int[]) WITH ORDINALITY"
    " AS u(case_id, region, is_minor, profile, types, needs, urgency, safety_risk, consent,"
    " last_seq, screening, n) ORDER BY u.n"
    " ON CONFLICT (case_id) DO NOTHING RETURNING case_id";
static const char s_sql_load[] =
    "SELECT status, region, is_minor, profile, array_to_string(exploitation_types, ','),"
    " array_to_string(needs, ','), urgency, safety_risk, consent_to_referral, last_seq,"
    " screening FROM cases WHERE case_id = $1 FOR UPDATE";
static const char s_sql_save[] =
    "UPDATE cases SET status = $2, needs = $3::int[], urgency = $4, safety_risk = $5,"
    " consent_to_referral = $6, last_seq = $7, screening = $8, updated_at = now()"
    " WHERE case_id = $1";

/* The parties of a case: idempotent, so that a replay of intake's stream from 1 fills in cases
 * stored before routing knew them (and never puts back an earlier case manager). */
static const char s_sql_manager[] =
    "UPDATE cases c SET case_manager = u.manager, manager_seq = u.seq"
    " FROM (SELECT DISTINCT ON (case_id) case_id, manager, seq"
    "       FROM unnest($1::text[], $2::text[], $3::bigint[]) AS u(case_id, manager, seq)"
    "       ORDER BY case_id, seq DESC) u"
    " WHERE c.case_id = u.case_id AND c.manager_seq < u.seq";
static const char s_sql_reporter[] =
    "INSERT INTO case_reporters (case_id, agency_id)"
    " SELECT DISTINCT u.case_id, u.agency_id FROM unnest($1::text[], $2::text[])"
    " AS u(case_id, agency_id) WHERE EXISTS (SELECT 1 FROM cases c WHERE c.case_id = u.case_id)"
    " ON CONFLICT DO NOTHING";

void routing_cases_prepare(nrm_db_t *db)
{
    nrm_db_statement(db, "routing_case_manager", s_sql_manager);
    nrm_db_statement(db, "routing_case_reporter", s_sql_reporter);
    nrm_db_statement(db, "routing_case_insert", s_sql_insert);
    nrm_db_statement(db, "routing_case_load", s_sql_load);
    nrm_db_statement(db, "routing_case_save", s_sql_save);
}

void routing_case_release(routing_case_t *c)
{
    if (c->profile)
        nrm__v1__profile__free_unpacked(c->profile, NULL);
    c->profile = NULL;
}

/* Returns a copy of profile (an empty one for NULL or unreadable bytes); caller frees with
 * nrm__v1__profile__free_unpacked. NULL only when out of memory. */
static Nrm__V1__Profile *s_profile_from_bytes(const uint8_t *data, size_t len)
{
    Nrm__V1__Profile *p = nrm__v1__profile__unpack(NULL, len, data);
    static const uint8_t empty[1];
    return p ? p : nrm__v1__profile__unpack(NULL, 0, empty);
}

/* Serialises a profile into a malloc'd buffer (caller frees); *len gets its size. */
static uint8_t *s_profile_bytes(const Nrm__V1__Profile *p, size_t *len)
{
    *len = nrm__v1__profile__get_packed_size(p);
    uint8_t *buf = nrm_xmalloc(*len ? *len : 1);
    nrm__v1__profile__pack(p, buf);
    return buf;
}

/* A set of enum values from a list, ignoring values out of range. */
static routing_set_t s_set_of(const int *values, size_t n)
{
    routing_set_t set = 0;
    for (size_t i = 0; i < n; i++)
        if (values[i] > 0 && values[i] < (int)(sizeof set * 8))
            ROUTING_SET_ADD(set, values[i]);
    return set;
}

/* A set written as "1,2,3" (array_to_string) read back. */
static routing_set_t s_set_of_text(const char *text)
{
    char *buf = nrm_xstrdup(text);
    routing_set_t set = 0;
    char *save = NULL;
    for (char *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        int v = atoi(t);
        if (v > 0 && v < (int)(sizeof set * 8))
            ROUTING_SET_ADD(set, v);
    }
    free(buf);
    return set;
}

/* Writes a set, in increasing order, into the array a (initialised here: the caller closes and
 * frees it), for an int[] cast ({"1","4"}). */
static void s_set_array(routing_set_t set, nrm_pgarray_t *a)
{
    nrm_pgarray_init(a);
    for (int v = 1; v < (int)(sizeof set * 8); v++)
        if (ROUTING_SET_HAS(set, v))
            nrm_pgarray_int(a, v);
}

/* Appends the literal of a set as one text element of the array a (its quotes escaped by
 * nrm_pgarray_text), for a statement that casts each element with ::int[]. */
static void s_set_element(nrm_pgarray_t *a, routing_set_t set)
{
    nrm_pgarray_t inner;
    s_set_array(set, &inner);
    nrm_pgarray_text(a, nrm_pgarray_close(&inner));
    nrm_pgarray_free(&inner);
}

nrm_status_t routing_case_load(nrm_tx_t *tx, const char *case_id, const char *field,
                               routing_case_t *c)
{
    memset(c, 0, sizeof *c);
    nrm_params_t p = {0};
    nrm_params_text(&p, case_id);
    PGresult *res = NULL;
    nrm_status_t st = nrm_db_exec(tx->db, "routing_case_load", &p, &res, tx->err);
    if (st != NRM_OK)
        return st;
    if (PQntuples(res) != 1) {
        PQclear(res);
        return nrm_fail(tx->err, NRM_NOT_FOUND, field, "no such case");
    }
    snprintf(c->case_id, sizeof c->case_id, "%s", case_id);
    c->open = strcmp(nrm_db_text(res, 0, 0), "open") == 0;
    snprintf(c->region, sizeof c->region, "%s", nrm_db_text(res, 0, 1));
    c->is_minor = nrm_db_int(res, 0, 2) != 0;
    size_t len = 0;
    const uint8_t *bytes = nrm_db_bytes(res, 0, 3, &len);
    c->profile = s_profile_from_bytes(bytes, len);
    c->exploitation = s_set_of_text(nrm_db_text(res, 0, 4));
    c->needs = s_set_of_text(nrm_db_text(res, 0, 5));
    c->urgency = (int)nrm_db_int(res, 0, 6);
    c->safety_risk = (int)nrm_db_int(res, 0, 7);
    c->consent = nrm_db_int(res, 0, 8) != 0;
    c->last_seq = nrm_db_int(res, 0, 9);
    c->screening = (int)nrm_db_int(res, 0, 10);
    PQclear(res);
    return c->profile ? NRM_OK : nrm_fail(tx->err, NRM_INTERNAL, NULL, "out of memory");
}

/* Saves what events change in a case. */
static nrm_status_t s_save(nrm_tx_t *tx, const routing_case_t *c)
{
    nrm_pgarray_t needs;
    s_set_array(c->needs, &needs);
    nrm_params_t p = {0};
    nrm_params_text(&p, c->case_id);
    nrm_params_text(&p, c->open ? "open" : "closed");
    nrm_params_text(&p, nrm_pgarray_close(&needs));
    nrm_params_int(&p, c->urgency);
    nrm_params_int(&p, c->safety_risk);
    nrm_params_bool(&p, c->consent);
    nrm_params_int(&p, c->last_seq);
    nrm_params_int(&p, c->screening);
    nrm_status_t st = nrm_db_exec(tx->db, "routing_case_save", &p, NULL, tx->err);
    nrm_pgarray_free(&needs);
    return st;
}

/* The ScreeningOutcome value an event carries (not screened when it carries none). */
static int s_screening_of(const Nrm__V1__Screening *s)
{
    return s && s->outcome ? (int)s->outcome
                           : NRM__V1__SCREENING_OUTCOME__SCREENING_OUTCOME_NOT_SCREENED;
}

/* The case a case.opened event describes, into c (c->profile owned: routing_case_release),
 * and its profile's bytes into *profile (malloc'd, caller frees; *len their size). OK, or
 * INTERNAL when out of memory (nothing owned then). */
static nrm_status_t s_case_of_opened(nrm_tx_t *tx, const Nrm__V1__Event *ev, routing_case_t *c,
                                     uint8_t **profile, size_t *len)
{
    const Nrm__V1__CaseOpened *o = ev->case_opened;
    *c = (routing_case_t){
        .open = true, .is_minor = o->is_minor, .last_seq = ev->seq, .just_opened = true};
    snprintf(c->case_id, sizeof c->case_id, "%s", ev->case_id);
    snprintf(c->region, sizeof c->region, "%s", o->region);
    c->needs = s_set_of((const int *)o->needs, o->n_needs);
    c->exploitation = s_set_of((const int *)o->exploitation_types, o->n_exploitation_types);
    c->urgency = o->urgency ? (int)o->urgency : NRM__V1__URGENCY__URGENCY_ROUTINE;
    c->safety_risk = (int)o->safety_risk;
    c->consent = o->consent_to_referral;
    c->screening = s_screening_of(o->screening);
    static const Nrm__V1__Profile empty = NRM__V1__PROFILE__INIT;
    *profile = s_profile_bytes(o->profile ? o->profile : &empty, len);
    c->profile = s_profile_from_bytes(*profile, *len);
    if (c->profile)
        return NRM_OK;
    free(*profile);
    *profile = NULL;
    return nrm_fail(tx->err, NRM_INTERNAL, NULL, "out of memory");
}

/* Stores the cases of the batch's case.opened events (n of them, cases[i] from opened[i]) in
 * one statement; inserted[i] tells whether opened[i] stored its case (false for a replay, and
 * for a second opening of one case in the batch). */
static nrm_status_t s_insert_cases(nrm_tx_t *tx, const Nrm__V1__Event *const *opened,
                                   const routing_case_t *cases, uint8_t *const *profiles,
                                   const size_t *lens, size_t n, bool *inserted)
{
    enum { ID, REGION, MINOR, PROFILE, TYPES, NEEDS, URGENCY, RISK, CONSENT, SEQ, SCREENING, COLS };
    nrm_pgarray_t a[COLS];
    for (int k = 0; k < COLS; k++)
        nrm_pgarray_init(&a[k]);
    for (size_t i = 0; i < n; i++) {
        const routing_case_t *c = &cases[i];
        nrm_pgarray_text(&a[ID], c->case_id);
        nrm_pgarray_text(&a[REGION], c->region);
        nrm_pgarray_bool(&a[MINOR], c->is_minor);
        nrm_pgarray_hex(&a[PROFILE], profiles[i], lens[i]);
        s_set_element(&a[TYPES], c->exploitation);
        s_set_element(&a[NEEDS], c->needs);
        nrm_pgarray_int(&a[URGENCY], c->urgency);
        nrm_pgarray_int(&a[RISK], c->safety_risk);
        nrm_pgarray_bool(&a[CONSENT], c->consent);
        nrm_pgarray_int(&a[SEQ], c->last_seq);
        nrm_pgarray_int(&a[SCREENING], c->screening);
    }
    nrm_params_t p = {0};
    for (int k = 0; k < COLS; k++)
        nrm_params_text(&p, nrm_pgarray_close(&a[k]));
    PGresult *res = NULL;
    nrm_status_t st = nrm_db_exec(tx->db, "routing_case_insert", &p, &res, tx->err);
    for (int k = 0; k < COLS; k++)
        nrm_pgarray_free(&a[k]);
    for (size_t i = 0; i < n; i++)
        inserted[i] = false;
    for (int row = 0; st == NRM_OK && row < PQntuples(res); row++) {
        const char *id = nrm_db_text(res, row, 0);
        for (size_t i = 0; i < n; i++)
            if (strcmp(opened[i]->case_id, id) == 0) {
                inserted[i] = true; /* the first opening of the case in the batch */
                break;
            }
    }
    PQclear(res);
    return st;
}

/* Records who manages and who reports on the batch's cases, one statement each: the reporting
 * agency of case.opened (also its first manager) and case.linked, the manager of
 * case.manager_changed (the latest sequence wins, never an earlier one; unknown cases and ""
 * are skipped). Idempotent, so that a replay fills in cases stored before routing knew them. */
static nrm_status_t s_parties(nrm_tx_t *tx, const Nrm__V1__Event *const *events, size_t n)
{
    nrm_pgarray_t m_ids, m_agencies, m_seqs, r_ids, r_agencies;
    nrm_pgarray_init(&m_ids);
    nrm_pgarray_init(&m_agencies);
    nrm_pgarray_init(&m_seqs);
    nrm_pgarray_init(&r_ids);
    nrm_pgarray_init(&r_agencies);
    for (size_t i = 0; i < n; i++) {
        const Nrm__V1__Event *ev = events[i];
        const char *manager = NULL, *reporter = NULL;
        if (ev->body_case == NRM__V1__EVENT__BODY_CASE_OPENED)
            manager = reporter = ev->case_opened->reporting_agency_id;
        else if (ev->body_case == NRM__V1__EVENT__BODY_CASE_LINKED)
            reporter = ev->case_linked->reporting_agency_id;
        else if (ev->body_case == NRM__V1__EVENT__BODY_CASE_MANAGER_CHANGED)
            manager = ev->case_manager_changed->case_manager_agency_id;
        if (manager && manager[0]) {
            nrm_pgarray_text(&m_ids, ev->case_id);
            nrm_pgarray_text(&m_agencies, manager);
            nrm_pgarray_int(&m_seqs, ev->seq);
        }
        if (reporter && reporter[0]) {
            nrm_pgarray_text(&r_ids, ev->case_id);
            nrm_pgarray_text(&r_agencies, reporter);
        }
    }
    nrm_status_t st = NRM_OK;
    if (m_ids.count > 0) {
        nrm_params_t p = {0};
        nrm_params_text(&p, nrm_pgarray_close(&m_ids));
        nrm_params_text(&p, nrm_pgarray_close(&m_agencies));
        nrm_params_text(&p, nrm_pgarray_close(&m_seqs));
        st = nrm_db_exec_later(tx->db, "routing_case_manager", &p, tx->err);
    }
    if (st == NRM_OK && r_ids.count > 0) {
        nrm_params_t p = {0};
        nrm_params_text(&p, nrm_pgarray_close(&r_ids));
        nrm_params_text(&p, nrm_pgarray_close(&r_agencies));
        st = nrm_db_exec_later(tx->db, "routing_case_reporter", &p, tx->err);
    }
    nrm_pgarray_free(&m_ids);
    nrm_pgarray_free(&m_agencies);
    nrm_pgarray_free(&m_seqs);
    nrm_pgarray_free(&r_ids);
    nrm_pgarray_free(&r_agencies);
    return st;
}

/* Loads the case an event is about. *fresh is false when there is nothing to apply: the case
 * is unknown, closed, or already saw this event. */
static nrm_status_t s_load_for_event(nrm_tx_t *tx, const Nrm__V1__Event *ev, routing_case_t *c,
                                     bool *fresh)
{
    *fresh = false;
    nrm_status_t st = routing_case_load(tx, ev->case_id, NULL, c);
    if (st == NRM_NOT_FOUND) {
        nrm_error_clear(tx->err);
        nrm_log_warn("event about a case routing never saw", "{s:s, s:s, s:I}", "case_id",
                     ev->case_id, "topic", ev->topic, "seq", (json_int_t)ev->seq);
        return NRM_OK;
    }
    if (st != NRM_OK)
        return st;
    *fresh = c->open && ev->seq > c->last_seq;
    c->last_seq = ev->seq > c->last_seq ? ev->seq : c->last_seq;
    return NRM_OK;
}

/* case.updated: the case's needs, urgency, safety risk and consent as they now are. */
static nrm_status_t s_updated(routing_t *self, nrm_tx_t *tx, const Nrm__V1__Event *ev,
                              routing_case_t *c)
{
    const Nrm__V1__CaseUpdated *u = ev->case_updated;
    bool withdrawn = c->consent && !u->consent_to_referral;
    bool raised = u->urgency && (int)u->urgency > c->urgency;
    c->needs = s_set_of((const int *)u->needs, u->n_needs);
    if (u->urgency)
        c->urgency = (int)u->urgency;
    if (u->safety_risk)
        c->safety_risk = (int)u->safety_risk;
    c->consent = u->consent_to_referral;
    if (u->screening) /* absent from events of intakes older than the screening */
        c->screening = s_screening_of(u->screening);
    nrm_status_t st = s_save(tx, c);
    if (st == NRM_OK && raised) /* before new referrals: those get the new deadline anyway */
        st = routing_urgency_raised(self, tx, c, c->urgency);
    if (st == NRM_OK && withdrawn)
        st = routing_revoke_open(self, tx, c->case_id, true, "consent_withdrawn");
    return st == NRM_OK ? routing_route_case(self, tx, c) : st;
}

/* Applies case.updated, consent_withdrawn or case.closed to the case it is about. */
static nrm_status_t s_apply_to_case(routing_t *self, nrm_tx_t *tx, const Nrm__V1__Event *ev)
{
    routing_case_t c;
    bool fresh = false;
    nrm_status_t st = s_load_for_event(tx, ev, &c, &fresh);
    if (st != NRM_OK || !fresh) {
        routing_case_release(&c);
        return st;
    }
    switch (ev->body_case) {
    case NRM__V1__EVENT__BODY_CASE_UPDATED:
        st = s_updated(self, tx, ev, &c);
        break;
    case NRM__V1__EVENT__BODY_CONSENT_WITHDRAWN:
        /* withdrawal of consent to data sharing alone: intake stops disclosing, referrals stay
         * (the case is saved for its last sequence only) */
        if (ev->consent_withdrawn && ev->consent_withdrawn->data_sharing_only) {
            st = s_save(tx, &c);
            break;
        }
        c.consent = false;
        st = s_save(tx, &c);
        if (st == NRM_OK)
            st = routing_revoke_open(self, tx, c.case_id, true, "consent_withdrawn");
        if (st == NRM_OK) /* what mandatory referrals still need (an interpreter) stays */
            st = routing_route_case(self, tx, &c);
        break;
    default: /* case.closed */
        c.open = false;
        st = s_save(tx, &c);
        if (st == NRM_OK)
            st = routing_revoke_open(self, tx, c.case_id, false, "case_closed");
        break;
    }
    routing_case_release(&c);
    /* revoked referrals free places that waiting needs may take */
    bool freed = ev->body_case == NRM__V1__EVENT__BODY_CASE_CLOSED ||
                 ev->body_case == NRM__V1__EVENT__BODY_CONSENT_WITHDRAWN;
    return st == NRM_OK && freed ? routing_serve_waiting(self, tx) : st;
}

/* True for the events routing applies: case.opened, updated, consent_withdrawn, closed, linked
 * and manager_changed with a usable case id (case.link_alert and bodies newer than this code
 * are skipped). */
static bool s_applies(const Nrm__V1__Event *ev)
{
    bool known = ev->body_case == NRM__V1__EVENT__BODY_CASE_LINKED ||
                 ev->body_case == NRM__V1__EVENT__BODY_CASE_MANAGER_CHANGED ||
                 ev->body_case == NRM__V1__EVENT__BODY_CASE_OPENED ||
                 ev->body_case == NRM__V1__EVENT__BODY_CASE_UPDATED ||
                 ev->body_case == NRM__V1__EVENT__BODY_CONSENT_WITHDRAWN ||
                 ev->body_case == NRM__V1__EVENT__BODY_CASE_CLOSED;
    if (!known)
        return false;
    if (!ev->case_id || !ev->case_id[0] || strlen(ev->case_id) >= ROUTING_ID_MAX) {
        nrm_log_warn("case event without a usable case id", "{s:I}", "seq", (json_int_t)ev->seq);
        return false;
    }
    return true;
}

/* The work of one batch (events: the n that apply): cases stored, parties recorded, then each
 * event in order (a new case routed, the others applied to their case). */
static nrm_status_t s_apply_batch(routing_t *self, nrm_tx_t *tx, const Nrm__V1__Event **events,
                                  size_t n)
{
    const Nrm__V1__Event **opened = nrm_xcalloc(n, sizeof *opened);
    routing_case_t *cases = nrm_xcalloc(n, sizeof *cases);
    uint8_t **profiles = nrm_xcalloc(n, sizeof *profiles);
    size_t *lens = nrm_xcalloc(n, sizeof *lens);
    bool *inserted = nrm_xcalloc(n, sizeof *inserted);
    size_t n_opened = 0;
    nrm_status_t st = routing_lock(self, tx); /* before any row lock: one lock order everywhere */
    for (size_t i = 0; st == NRM_OK && i < n; i++)
        if (events[i]->body_case == NRM__V1__EVENT__BODY_CASE_OPENED) {
            st = s_case_of_opened(tx, events[i], &cases[n_opened], &profiles[n_opened],
                                  &lens[n_opened]);
            if (st == NRM_OK)
                opened[n_opened++] = events[i];
        }
    if (st == NRM_OK && n_opened > 0)
        st = s_insert_cases(tx, opened, cases, profiles, lens, n_opened, inserted);
    size_t n_new = 0; /* the new cases first in cases, for the candidates of all their needs */
    routing_case_t *fresh = nrm_xcalloc(n_opened + 1, sizeof *fresh);
    for (size_t k = 0; st == NRM_OK && k < n_opened; k++)
        if (inserted[k])
            fresh[n_new++] = cases[k]; /* a shallow copy: cases[k] keeps the profile */
    if (st == NRM_OK && n_new > 0)
        st = routing_prefetch_candidates(self, tx, fresh, n_new);
    free(fresh);
    if (st == NRM_OK)
        st = s_parties(tx, events, n);
    for (size_t i = 0, k = 0; st == NRM_OK && i < n; i++) {
        const Nrm__V1__Event *ev = events[i];
        tx->causation_id = ev->event_id;
        if (ev->body_case == NRM__V1__EVENT__BODY_CASE_OPENED) {
            if (inserted[k])
                st = routing_route_case(self, tx, &cases[k]);
            k++;
        } else if (ev->body_case != NRM__V1__EVENT__BODY_CASE_LINKED &&
                   ev->body_case != NRM__V1__EVENT__BODY_CASE_MANAGER_CHANGED)
            st = s_apply_to_case(self, tx, ev);
    }
    for (size_t k = 0; k < n_opened; k++) {
        routing_case_release(&cases[k]);
        free(profiles[k]);
    }
    free(opened);
    free(cases);
    free(profiles);
    free(lens);
    free(inserted);
    return st;
}

nrm_status_t routing_flush_case_events(void *ctx, nrm_tx_t *tx)
{
    routing_t *self = ctx;
    const Nrm__V1__Event *const *gathered = NULL;
    size_t n = routing_batch_events(self, &gathered), used = 0;
    const Nrm__V1__Event **events = nrm_xcalloc(n ? n : 1, sizeof *events);
    for (size_t i = 0; i < n; i++)
        if (s_applies(gathered[i]))
            events[used++] = gathered[i];
    routing_batch_begin(self);
    nrm_status_t st = used > 0 ? s_apply_batch(self, tx, events, used) : NRM_OK;
    free(events);
    return routing_batch_end(self, tx, st);
}
