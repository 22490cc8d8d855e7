/* Intake's case events applied to routing's copy of the case: opened, updated, consent
 * withdrawn, closed; and who the case manager and the reporters are (opened, linked, manager
 * changed), for the reads that show a case to them. Each event is applied once per case (its intake
 * sequence is compared with the case's last applied one), so a replay from sequence 1 changes
 * nothing. */
#include "routing.h"
#include "nrm_alloc.h"
#include "nrm_log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define S_LIST_TEXT 128 /* an int[] as text: at most a few dozen small values */

static const char s_sql_insert[] =
    "INSERT INTO cases (case_id, region, is_minor, profile, exploitation_types, needs, urgency,"
    " safety_risk, consent_to_referral, last_seq, screening)"
    " VALUES ($1, $2, $3, $4, $5::int[], $6::int[], $7, $8, $9, $10, $11)"
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
    "UPDATE cases SET case_manager = $2, manager_seq = $3 WHERE case_id = $1 AND manager_seq < $3";
static const char s_sql_reporter[] =
    "INSERT INTO case_reporters (case_id, agency_id) SELECT $1, $2"
    " WHERE EXISTS (SELECT 1 FROM cases WHERE case_id = $1) ON CONFLICT DO NOTHING";

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
    char buf[S_LIST_TEXT];
    snprintf(buf, sizeof buf, "%s", text);
    routing_set_t set = 0;
    char *save = NULL;
    for (char *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        int v = atoi(t);
        if (v > 0 && v < (int)(sizeof set * 8))
            ROUTING_SET_ADD(set, v);
    }
    return set;
}

/* Writes a set as a PostgreSQL array literal ("{1,4}"). */
static void s_set_text(routing_set_t set, char *buf, size_t size)
{
    size_t used = (size_t)snprintf(buf, size, "{");
    for (int v = 1; v < (int)(sizeof set * 8) && used < size; v++)
        if (ROUTING_SET_HAS(set, v))
            used += (size_t)snprintf(buf + used, size - used, used > 1 ? ",%d" : "%d", v);
    if (used < size)
        snprintf(buf + used, size - used, "}");
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
    char needs[S_LIST_TEXT];
    s_set_text(c->needs, needs, sizeof needs);
    nrm_params_t p = {0};
    nrm_params_text(&p, c->case_id);
    nrm_params_text(&p, c->open ? "open" : "closed");
    nrm_params_text(&p, needs);
    nrm_params_int(&p, c->urgency);
    nrm_params_int(&p, c->safety_risk);
    nrm_params_bool(&p, c->consent);
    nrm_params_int(&p, c->last_seq);
    nrm_params_int(&p, c->screening);
    return nrm_db_exec(tx->db, "routing_case_save", &p, NULL, tx->err);
}

/* The ScreeningOutcome value an event carries (not screened when it carries none). */
static int s_screening_of(const Nrm__V1__Screening *s)
{
    return s && s->outcome ? (int)s->outcome
                           : NRM__V1__SCREENING_OUTCOME__SCREENING_OUTCOME_NOT_SCREENED;
}

/* Records that agency manages the case from intake sequence seq on (unless a later event named
 * another), and/or reports on it; "" or NULL is skipped. */
static nrm_status_t s_parties(nrm_tx_t *tx, const char *case_id, const char *manager,
                              const char *reporter, int64_t seq)
{
    nrm_status_t st = NRM_OK;
    if (manager && manager[0]) {
        nrm_params_t p = {0};
        nrm_params_text(&p, case_id);
        nrm_params_text(&p, manager);
        nrm_params_int(&p, seq);
        st = nrm_db_exec(tx->db, "routing_case_manager", &p, NULL, tx->err);
    }
    if (st == NRM_OK && reporter && reporter[0]) {
        nrm_params_t p = {0};
        nrm_params_text(&p, case_id);
        nrm_params_text(&p, reporter);
        st = nrm_db_exec(tx->db, "routing_case_reporter", &p, NULL, tx->err);
    }
    return st;
}

/* case.opened: a new case is stored and routed; a known one (a replay) changes nothing. */
static nrm_status_t s_opened(routing_t *self, nrm_tx_t *tx, const Nrm__V1__Event *ev)
{
    const Nrm__V1__CaseOpened *o = ev->case_opened;
    routing_case_t c = {
        .open = true, .is_minor = o->is_minor, .last_seq = ev->seq, .just_opened = true};
    snprintf(c.case_id, sizeof c.case_id, "%s", ev->case_id);
    snprintf(c.region, sizeof c.region, "%s", o->region);
    c.needs = s_set_of((const int *)o->needs, o->n_needs);
    c.exploitation = s_set_of((const int *)o->exploitation_types, o->n_exploitation_types);
    c.urgency = o->urgency ? (int)o->urgency : NRM__V1__URGENCY__URGENCY_ROUTINE;
    c.safety_risk = (int)o->safety_risk;
    c.consent = o->consent_to_referral;
    c.screening = s_screening_of(o->screening);
    static const Nrm__V1__Profile empty = NRM__V1__PROFILE__INIT;
    size_t len = 0;
    uint8_t *profile = s_profile_bytes(o->profile ? o->profile : &empty, &len);
    c.profile = profile ? s_profile_from_bytes(profile, len) : NULL;
    if (!c.profile) {
        free(profile);
        return nrm_fail(tx->err, NRM_INTERNAL, NULL, "out of memory");
    }
    char types[S_LIST_TEXT], needs[S_LIST_TEXT];
    s_set_text(c.exploitation, types, sizeof types);
    s_set_text(c.needs, needs, sizeof needs);
    nrm_params_t p = {0};
    nrm_params_text(&p, c.case_id);
    nrm_params_text(&p, c.region);
    nrm_params_bool(&p, c.is_minor);
    nrm_params_bytes(&p, profile, len);
    nrm_params_text(&p, types);
    nrm_params_text(&p, needs);
    nrm_params_int(&p, c.urgency);
    nrm_params_int(&p, c.safety_risk);
    nrm_params_bool(&p, c.consent);
    nrm_params_int(&p, c.last_seq);
    nrm_params_int(&p, c.screening);
    PGresult *res = NULL;
    nrm_status_t st = nrm_db_exec(tx->db, "routing_case_insert", &p, &res, tx->err);
    free(profile);
    bool inserted = st == NRM_OK && PQntuples(res) == 1;
    PQclear(res);
    if (st == NRM_OK) /* a replay too: fills in a case stored before routing knew its parties */
        st = s_parties(tx, c.case_id, o->reporting_agency_id, o->reporting_agency_id, ev->seq);
    if (st == NRM_OK && inserted)
        st = routing_route_case(self, tx, &c);
    routing_case_release(&c);
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
        st = routing_revoke_open(tx, c->case_id, true, "consent_withdrawn");
    return st == NRM_OK ? routing_route_case(self, tx, c) : st;
}

nrm_status_t routing_apply_case_event(void *ctx, nrm_tx_t *tx, const Nrm__V1__Event *ev)
{
    routing_t *self = ctx;
    /* case.linked and case.manager_changed: who may read the case (what changes in the case
     * comes as case.updated); case.link_alert and bodies newer than this code: skipped */
    bool parties = ev->body_case == NRM__V1__EVENT__BODY_CASE_LINKED ||
                   ev->body_case == NRM__V1__EVENT__BODY_CASE_MANAGER_CHANGED;
    bool known = parties || ev->body_case == NRM__V1__EVENT__BODY_CASE_OPENED ||
                 ev->body_case == NRM__V1__EVENT__BODY_CASE_UPDATED ||
                 ev->body_case == NRM__V1__EVENT__BODY_CONSENT_WITHDRAWN ||
                 ev->body_case == NRM__V1__EVENT__BODY_CASE_CLOSED;
    if (!known)
        return NRM_OK;
    if (!ev->case_id || !ev->case_id[0] || strlen(ev->case_id) >= ROUTING_ID_MAX) {
        nrm_log_warn("case event without a usable case id", "{s:I}", "seq", (json_int_t)ev->seq);
        return NRM_OK;
    }
    nrm_status_t st = routing_lock(self, tx); /* before any row lock: one lock order everywhere */
    if (st != NRM_OK)
        return st;
    if (ev->body_case == NRM__V1__EVENT__BODY_CASE_OPENED)
        return s_opened(self, tx, ev);
    if (ev->body_case == NRM__V1__EVENT__BODY_CASE_LINKED)
        return s_parties(tx, ev->case_id, NULL, ev->case_linked->reporting_agency_id, ev->seq);
    if (ev->body_case == NRM__V1__EVENT__BODY_CASE_MANAGER_CHANGED)
        return s_parties(tx, ev->case_id, ev->case_manager_changed->case_manager_agency_id, NULL,
                         ev->seq);
    routing_case_t c;
    bool fresh = false;
    st = s_load_for_event(tx, ev, &c, &fresh);
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
            st = routing_revoke_open(tx, c.case_id, true, "consent_withdrawn");
        if (st == NRM_OK) /* what mandatory referrals still need (an interpreter) stays */
            st = routing_route_case(self, tx, &c);
        break;
    default: /* case.closed */
        c.open = false;
        st = s_save(tx, &c);
        if (st == NRM_OK)
            st = routing_revoke_open(tx, c.case_id, false, "case_closed");
        break;
    }
    routing_case_release(&c);
    /* revoked referrals free places that waiting needs may take */
    bool freed = ev->body_case == NRM__V1__EVENT__BODY_CASE_CLOSED ||
                 ev->body_case == NRM__V1__EVENT__BODY_CONSENT_WITHDRAWN;
    return st == NRM_OK && freed ? routing_serve_waiting(self, tx) : st;
}
