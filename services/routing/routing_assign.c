/* Decisions applied: which services a case gets, the provider chosen for each, the referral
 * created (or referral.unroutable when nobody is left), and shelter.requested for shelter. */
#include "routing.h"
#include "nrm_alloc.h"
#include "nrm_crypto.h"
#include "nrm_log.h"
#include "nrm_pgarray.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const char s_sql_lock[] = "SELECT pg_advisory_xact_lock(hashtext('nrm.routing.assign'))";
static const char s_sql_states[] = "SELECT service, state FROM case_services WHERE case_id = $1";
static const char s_sql_decision[] =
    "SELECT rule_id, reason, mandatory FROM case_services WHERE case_id = $1 AND service = $2";
/* a waiting need keeps the time it started waiting ($7) until it is routed */
static const char s_sql_set_state[] =
    "INSERT INTO case_services (case_id, service, state, mandatory, rule_id, reason,"
    " waiting_since_ms) VALUES ($1, $2, $3, $4, $5, $6,"
    " CASE WHEN $3 = 'waiting' THEN $7::bigint END) ON CONFLICT (case_id, service) DO UPDATE SET"
    " state = EXCLUDED.state, mandatory = EXCLUDED.mandatory, rule_id = EXCLUDED.rule_id,"
    " reason = EXCLUDED.reason, updated_at = now(), waiting_since_ms = CASE WHEN"
    " EXCLUDED.state = 'waiting' THEN coalesce(case_services.waiting_since_ms, $7::bigint) END";
/* per candidate, in the order given: open referrals (the provider's counter), already tried for
 * this case and service, the last attempt made for this case and service, and the agreement
 * with room that covers the service in region $4 on day $5 (NULL when none) */
static const char s_sql_candidates[] =
    "SELECT c.id, coalesce(p.open_count, 0),"
    " EXISTS (SELECT 1 FROM referrals t WHERE t.case_id = $2 AND t.service = $3"
    "   AND t.provider_id = c.id AND t.state IN ('declined', 'expired')),"
    " (SELECT coalesce(max(attempt), 0) FROM referrals a WHERE a.case_id = $2 AND a.service = $3),"
    " (SELECT g.agreement_id FROM agreements g WHERE g.provider_id = c.id"
    "   AND $3::int = ANY (g.services) AND (g.regions = '{}' OR $4::text = ANY (g.regions))"
    "   AND g.start_date <= $5::date AND g.end_date >= $5::date AND g.open_count < g.capacity"
    "   ORDER BY g.end_date, g.agreement_id LIMIT 1)"
    " FROM unnest($1::text[]) WITH ORDINALITY AS c(id, n)"
    " LEFT JOIN providers p ON p.provider_id = c.id ORDER BY c.n";
/* the same for every need of a batch's new cases at once ($1..$4: case, service, region and
 * the candidates' ids as an array literal, per need), rows by need then candidate order. Tried
 * is a probe of the need's referrals (LATERAL ... LIMIT 1): as an EXISTS subquery, the generic
 * plan read every declined and expired referral at each batch, a cost growing with them */
static const char s_sql_candidates_many[] =
    "SELECT n.k, c.id, coalesce(p.open_count, 0), tried.t IS NOT NULL,"
    " (SELECT coalesce(max(attempt), 0) FROM referrals a WHERE a.case_id = n.case_id"
    "   AND a.service = n.service),"
    " (SELECT g.agreement_id FROM agreements g WHERE g.provider_id = c.id"
    "   AND n.service = ANY (g.services) AND (g.regions = '{}' OR n.region = ANY (g.regions))"
    "   AND g.start_date <= $5::date AND g.end_date >= $5::date AND g.open_count < g.capacity"
    "   ORDER BY g.end_date, g.agreement_id LIMIT 1)"
    " FROM unnest($1::text[], $2::int[], $3::text[], $4::text[]) WITH ORDINALITY"
    "   AS n(case_id, service, region, ids, k)"
    " CROSS JOIN LATERAL unnest(n.ids::text[]) WITH ORDINALITY AS c(id, m)"
    " LEFT JOIN providers p ON p.provider_id = c.id"
    " LEFT JOIN LATERAL (SELECT true FROM referrals t WHERE t.case_id = n.case_id"
    "   AND t.service = n.service AND t.provider_id = c.id AND t.state IN ('declined', 'expired')"
    "   LIMIT 1) AS tried(t) ON true"
    " ORDER BY n.k, c.m";
static const char s_sql_insert[] =
    "INSERT INTO referrals (referral_id, case_id, service, attempt, provider_id, urgency,"
    " rule_id, reason, causation_id, created_ms, due_ms, agreement_id)"
    " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)"
    " ON CONFLICT DO NOTHING RETURNING referral_id";
static const char s_sql_open_providers[] =
    "SELECT r.provider_id, s.mandatory FROM referrals r JOIN case_services s"
    " ON s.case_id = r.case_id AND s.service = r.service"
    " WHERE r.case_id = $1 AND r.service <> $2 AND r.state IN ('pending', 'accepted')";

/* Where a service of a case stands (case_services.state; S_NONE when not decided yet). */
typedef enum {
    S_NONE,
    S_AWAITING_CONSENT,
    S_REFERRED,
    S_SHELTER_REQUESTED,
    S_UNROUTABLE, /* before issue 12: such needs wait now */
    S_COMPLETED,
    S_NOT_REFERRED,
    S_CLOSED,
    S_WAITING, /* nobody could take it: routed when a place frees (routing_waiting.c) */
    S_STATE_COUNT
} s_state_t;

static const char *const s_state_names[S_STATE_COUNT] = {
    "",           "awaiting_consent", "referred",     "shelter_requested",
    "unroutable", "completed",        "not_referred", "closed",
    "waiting"};

/* The order services are decided in: mandatory protection first, interpretation last (it
 * depends on the providers chosen for the others). */
static const int s_order[] = {
    NRM__V1__SERVICE_TYPE__SERVICE_TYPE_CHILD_PROTECTION,
    NRM__V1__SERVICE_TYPE__SERVICE_TYPE_SHELTER,
    NRM__V1__SERVICE_TYPE__SERVICE_TYPE_MEDICAL,
    NRM__V1__SERVICE_TYPE__SERVICE_TYPE_PSYCHOSOCIAL,
    NRM__V1__SERVICE_TYPE__SERVICE_TYPE_LEGAL_AID,
    NRM__V1__SERVICE_TYPE__SERVICE_TYPE_RETURN_ASSISTANCE,
    NRM__V1__SERVICE_TYPE__SERVICE_TYPE_REINTEGRATION,
    NRM__V1__SERVICE_TYPE__SERVICE_TYPE_INTERPRETATION,
};
#define S_ORDER_COUNT (sizeof s_order / sizeof s_order[0])

/* What is known about the candidates for one referral. */
typedef struct {
    const routing_provider_t *providers[ROUTING_MAX_CANDIDATES];
    int64_t open[ROUTING_MAX_CANDIDATES];
    bool tried[ROUTING_MAX_CANDIDATES];
    char agreement[ROUTING_MAX_CANDIDATES][ROUTING_ID_MAX]; /* "" when none with room */
    size_t count;                                           /* eligible providers */
    size_t offering; /* providers offering the service at all */
    int last_attempt;
} s_candidates_t;

void routing_assign_prepare(nrm_db_t *db)
{
    nrm_db_statement(db, "routing_lock", s_sql_lock);
    nrm_db_statement(db, "routing_states", s_sql_states);
    nrm_db_statement(db, "routing_decision", s_sql_decision);
    nrm_db_statement(db, "routing_set_state", s_sql_set_state);
    nrm_db_statement(db, "routing_candidates", s_sql_candidates);
    nrm_db_statement(db, "routing_candidates_many", s_sql_candidates_many);
    nrm_db_statement(db, "routing_insert", s_sql_insert);
    nrm_db_statement(db, "routing_open_providers", s_sql_open_providers);
}

nrm_status_t routing_lock(routing_t *self, nrm_tx_t *tx)
{
    if (routing_batch_locked(self)) /* once per consumer batch: the directory is current */
        return NRM_OK;
    nrm_status_t st = nrm_db_exec_later(tx->db, "routing_lock", NULL, tx->err);
    /* after a reload, until the timer's seeding commits: seed first (idempotent) */
    if (st == NRM_OK && self->seed_pending && !self->seeding)
        st = routing_seed_providers(self, tx);
    if (st == NRM_OK)
        st = routing_directory_refresh(self, tx);
    if (st == NRM_OK)
        routing_batch_set_locked(self);
    return st;
}

/* Records where a service of the case stands, with the rule that decided it and why (held
 * until the batch's end or the next read of case_services during a consumer batch). */
static nrm_status_t s_set_state(routing_t *self, nrm_tx_t *tx, const char *case_id, int service,
                                s_state_t state, bool mandatory, const char *rule_id,
                                const char *reason)
{
    if (routing_batch_hold_state(self, case_id, service, s_state_names[state], mandatory, rule_id,
                                 reason))
        return NRM_OK;
    nrm_params_t p = {0};
    nrm_params_text(&p, case_id);
    nrm_params_int(&p, service);
    nrm_params_text(&p, s_state_names[state]);
    nrm_params_bool(&p, mandatory);
    nrm_params_text(&p, rule_id);
    nrm_params_text(&p, reason);
    nrm_params_int(&p, tx->now_ms);
    return nrm_db_exec(tx->db, "routing_set_state", &p, NULL, tx->err);
}

/* Loads where each service of the case stands into states (indexed by ServiceType value). */
static nrm_status_t s_load_states(routing_t *self, nrm_tx_t *tx, const char *case_id,
                                  s_state_t states[ROUTING_SERVICE_LIMIT])
{
    for (int i = 0; i < ROUTING_SERVICE_LIMIT; i++)
        states[i] = S_NONE;
    nrm_status_t st = routing_batch_sync(self, tx);
    if (st != NRM_OK)
        return st;
    nrm_params_t p = {0};
    nrm_params_text(&p, case_id);
    PGresult *res = NULL;
    st = nrm_db_exec(tx->db, "routing_states", &p, &res, tx->err);
    if (st != NRM_OK)
        return st;
    for (int row = 0; row < PQntuples(res); row++) {
        int64_t service = nrm_db_int(res, row, 0);
        const char *name = nrm_db_text(res, row, 1);
        for (int s = 1; s < S_STATE_COUNT && service > 0 && service < ROUTING_SERVICE_LIMIT; s++)
            if (strcmp(name, s_state_names[s]) == 0)
                states[service] = (s_state_t)s;
    }
    PQclear(res);
    return NRM_OK;
}

/* Writes the PostgreSQL array literal of the candidates' ids into a malloc'd string. */
static char *s_id_array(const s_candidates_t *cand)
{
    nrm_pgarray_t ids;
    nrm_pgarray_init(&ids);
    for (size_t i = 0; i < cand->count; i++)
        nrm_pgarray_text(&ids, cand->providers[i]->id);
    return nrm_pgarray_take(&ids);
}

/* Writes the UTC day of ms ("YYYY-MM-DD") into day. */
static void s_day(int64_t ms, char day[16])
{
    time_t t = (time_t)(ms / 1000);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(day, 16, "%Y-%m-%d", &tm);
}

/* One need whose candidates were loaded with the batch's others: rows first..first+count-1 of
 * the prefetch's result. */
typedef struct {
    char case_id[ROUTING_ID_MAX];
    int service;
    int first, count;
    bool used; /* looked up once: its attempts may have moved since */
} s_need_t;

/* The candidates of a batch's new cases, loaded in one statement, and what the batch changed
 * in the counters since: referrals made per provider, agreements referred under. */
struct routing_prefetch_t {
    PGresult *res;
    s_need_t *needs;
    size_t n_needs, next;               /* next: where the next lookup starts */
    const routing_provider_t **made_to; /* one entry per referral made since */
    char (*agreements)[ROUTING_ID_MAX]; /* one entry per referral made under an agreement */
    size_t n_made, n_agreements, cap_made, cap_agreements;
};

void routing_prefetch_drop(routing_t *self)
{
    routing_prefetch_t *f = self->prefetch;
    if (!f)
        return;
    PQclear(f->res);
    free(f->needs);
    free(f->made_to);
    free(f->agreements);
    free(f);
    self->prefetch = NULL;
}

/* Writes the PostgreSQL array literal of the candidates' ids into a malloc'd string. */
static char *s_id_array(const s_candidates_t *cand);

/* Writes the UTC day of ms ("YYYY-MM-DD") into day. */
static void s_day(int64_t ms, char day[16]);

/* True when the policy may refer service for the case (with or without a language gap). */
static bool s_may_refer(const routing_t *self, const routing_case_t *c, int service)
{
    routing_decision_t d;
    routing_policy_decide(self->policy, c, service, false, &d);
    if (d.verdict != ROUTING_SKIP)
        return true;
    routing_policy_decide(self->policy, c, service, true, &d);
    return d.verdict != ROUTING_SKIP;
}

nrm_status_t routing_prefetch_candidates(routing_t *self, nrm_tx_t *tx, const routing_case_t *cases,
                                         size_t n)
{
    routing_prefetch_drop(self);
    routing_prefetch_t *f = nrm_xcalloc(1, sizeof *f);
    f->needs = nrm_xcalloc(n * S_ORDER_COUNT + 1, sizeof *f->needs);
    s_candidates_t *cand = nrm_xcalloc(1, sizeof *cand);
    nrm_pgarray_t ids, services, regions, lists;
    nrm_pgarray_init(&ids);
    nrm_pgarray_init(&services);
    nrm_pgarray_init(&regions);
    nrm_pgarray_init(&lists);
    int rows = 0;
    for (size_t i = 0; i < n; i++)
        for (size_t j = 0; j < S_ORDER_COUNT; j++) {
            const routing_case_t *c = &cases[i];
            int service = s_order[j];
            if (service == NRM__V1__SERVICE_TYPE__SERVICE_TYPE_SHELTER ||
                !s_may_refer(self, c, service))
                continue;
            cand->count = routing_directory_eligible(self->directory, c, service, cand->providers,
                                                     ROUTING_MAX_CANDIDATES, NULL);
            if (cand->count == 0)
                continue;
            s_need_t *need = &f->needs[f->n_needs++];
            snprintf(need->case_id, sizeof need->case_id, "%s", c->case_id);
            need->service = service;
            need->first = rows;
            need->count = (int)cand->count;
            rows += (int)cand->count;
            char *list = s_id_array(cand);
            nrm_pgarray_text(&ids, c->case_id);
            nrm_pgarray_int(&services, service);
            nrm_pgarray_text(&regions, c->region);
            nrm_pgarray_text(&lists, list);
            free(list);
        }
    free(cand);
    nrm_status_t st = routing_batch_sync_referrals(self, tx); /* the batch's referrals count */
    if (st == NRM_OK && f->n_needs > 0) {
        char day[16];
        s_day(tx->now_ms, day);
        nrm_params_t p = {0};
        nrm_params_text(&p, nrm_pgarray_close(&ids));
        nrm_params_text(&p, nrm_pgarray_close(&services));
        nrm_params_text(&p, nrm_pgarray_close(&regions));
        nrm_params_text(&p, nrm_pgarray_close(&lists));
        nrm_params_text(&p, day);
        st = nrm_db_exec(tx->db, "routing_candidates_many", &p, &f->res, tx->err);
        if (st == NRM_OK && PQntuples(f->res) != rows)
            f->n_needs = 0; /* a provider listed twice, or gone: every need asks on its own */
    }
    nrm_pgarray_free(&ids);
    nrm_pgarray_free(&services);
    nrm_pgarray_free(&regions);
    nrm_pgarray_free(&lists);
    self->prefetch = f;
    if (st != NRM_OK)
        routing_prefetch_drop(self);
    return st;
}

/* Fills cand (its providers set) from the prefetch when it holds the need, unused, with the same
 * candidates, and no referral since was made under one of their agreements (which may be full
 * now); the open counts get the referrals made since. Returns whether it did. */
static bool s_from_prefetch(routing_t *self, const routing_case_t *c, int service,
                            s_candidates_t *cand)
{
    routing_prefetch_t *f = self->prefetch;
    s_need_t *need = NULL;
    /* needs are looked up mostly in the order they were loaded: start after the last one */
    for (size_t j = 0; f && j < f->n_needs && !need; j++) {
        size_t i = (f->next + j) % f->n_needs;
        if (f->needs[i].service == service && strcmp(f->needs[i].case_id, c->case_id) == 0) {
            need = &f->needs[i];
            f->next = i + 1;
        }
    }
    if (!need || need->used || need->count != (int)cand->count)
        return false;
    need->used = true;
    for (size_t i = 0; i < cand->count; i++) {
        int row = need->first + (int)i;
        if (strcmp(nrm_db_text(f->res, row, 1), cand->providers[i]->id) != 0)
            return false;
        const char *agreement = nrm_db_text(f->res, row, 5);
        for (size_t k = 0; agreement[0] && k < f->n_agreements; k++)
            if (strcmp(f->agreements[k], agreement) == 0)
                return false;
        int64_t made = 0;
        for (size_t k = 0; k < f->n_made; k++)
            made += f->made_to[k] == cand->providers[i];
        cand->open[i] = nrm_db_int(f->res, row, 2) + made;
        cand->tried[i] = nrm_db_int(f->res, row, 3) != 0;
        cand->last_attempt = (int)nrm_db_int(f->res, row, 4);
        snprintf(cand->agreement[i], sizeof cand->agreement[i], "%s", agreement);
    }
    return true;
}

/* Notes a referral made to p (under agreement, "" for none) for the prefetch's counters. */
static void s_prefetch_note(routing_t *self, const routing_provider_t *p, const char *agreement)
{
    routing_prefetch_t *f = self->prefetch;
    if (!f)
        return;
    if (f->n_made == f->cap_made) {
        f->cap_made = f->cap_made ? 2 * f->cap_made : 32;
        f->made_to = nrm_xreallocarray(f->made_to, f->cap_made, sizeof *f->made_to);
    }
    f->made_to[f->n_made++] = p;
    if (!agreement[0])
        return;
    if (f->n_agreements == f->cap_agreements) {
        f->cap_agreements = f->cap_agreements ? 2 * f->cap_agreements : 32;
        f->agreements = nrm_xreallocarray(f->agreements, f->cap_agreements, sizeof *f->agreements);
    }
    snprintf(f->agreements[f->n_agreements++], ROUTING_ID_MAX, "%s", agreement);
}

/* Fills cand with the eligible providers for service of the case, their open referrals,
 * whether each was already tried for this case and service, and the agreement it would be
 * referred under. */
static nrm_status_t s_load_candidates(routing_t *self, nrm_tx_t *tx, const routing_case_t *c,
                                      int service, s_candidates_t *cand)
{
    cand->count = routing_directory_eligible(self->directory, c, service, cand->providers,
                                             ROUTING_MAX_CANDIDATES, &cand->offering);
    cand->last_attempt = 0;
    if (cand->count == 0 || s_from_prefetch(self, c, service, cand))
        return NRM_OK;
    nrm_status_t st = routing_batch_sync_referrals(self, tx); /* the batch's referrals count */
    if (st != NRM_OK)
        return st;
    char *ids = s_id_array(cand);
    nrm_params_t p = {0};
    nrm_params_text(&p, ids);
    nrm_params_text(&p, c->case_id);
    nrm_params_int(&p, service);
    nrm_params_text(&p, c->region);
    char day[16];
    s_day(tx->now_ms, day);
    nrm_params_text(&p, day);
    PGresult *res = NULL;
    st = nrm_db_exec(tx->db, "routing_candidates", &p, &res, tx->err);
    free(ids);
    if (st != NRM_OK)
        return st;
    for (size_t i = 0; i < cand->count && (int)i < PQntuples(res); i++) {
        cand->open[i] = nrm_db_int(res, (int)i, 1);
        cand->tried[i] = nrm_db_int(res, (int)i, 2) != 0;
        cand->last_attempt = (int)nrm_db_int(res, (int)i, 3);
        snprintf(cand->agreement[i], sizeof cand->agreement[i], "%s", nrm_db_text(res, (int)i, 4));
    }
    PQclear(res);
    return NRM_OK;
}

/* The best candidate: not tried, below its cap, under a valid agreement with room when the
 * configuration asks for one; serving the region before national coverage,
 * then fewest open referrals, then id (the order of the list within each coverage). Returns
 * its index or -1. */
static int s_pick(const routing_t *self, const routing_case_t *c, const s_candidates_t *cand)
{
    int best = -1;
    bool best_local = false;
    for (size_t i = 0; i < cand->count; i++) {
        const routing_provider_t *p = cand->providers[i];
        if (cand->tried[i] || cand->open[i] >= p->max_open)
            continue;
        if (self->require_agreement && !cand->agreement[i][0])
            continue; /* no valid agreement with room covers this service here today */
        bool local = routing_provider_in_region(p, c->region);
        if (best < 0 || (local && !best_local) ||
            (local == best_local && cand->open[i] < cand->open[best])) {
            best = (int)i;
            best_local = local;
        }
    }
    return best;
}

/* Cuts a UTF-8 sequence that snprintf truncated off the end of s, so that the text stays valid
 * for the database and for clients' protobuf parsers. */
static void s_utf8_trim(char *s)
{
    size_t n = strlen(s), lead = n;
    while (lead > 0 && ((unsigned char)s[lead - 1] & 0xC0) == 0x80)
        lead--; /* back over continuation bytes to the sequence's first byte */
    if (lead == 0)
        return;
    unsigned char c = (unsigned char)s[lead - 1];
    size_t want = c < 0x80 ? 1 : (c & 0xE0) == 0xC0 ? 2 : (c & 0xF0) == 0xE0 ? 3 : 4;
    if (n - (lead - 1) < want)
        s[lead - 1] = '\0';
}

/* Publishes referral.unroutable for service of the case, saying why nobody is left. */
static nrm_status_t s_unroutable(routing_t *self, nrm_tx_t *tx, const routing_case_t *c,
                                 int service, const s_candidates_t *cand)
{
    size_t tried = 0, full = 0, unagreed = 0;
    for (size_t i = 0; i < cand->count; i++) {
        tried += cand->tried[i];
        full += !cand->tried[i] && cand->open[i] >= cand->providers[i]->max_open;
        unagreed += !cand->tried[i] && cand->open[i] < cand->providers[i]->max_open &&
                    self->require_agreement && !cand->agreement[i][0];
    }
    char reason[ROUTING_REASON_MAX];
    snprintf(reason, sizeof reason,
             "no provider left for %s in %s: %zu offer it, %zu eligible for this person, "
             "%zu already tried, %zu at their cap of open referrals, %zu without a valid "
             "agreement; the need waits for a place, the coordinator must act",
             routing_service_name(service), c->region, cand->offering, cand->count, tried, full,
             unagreed);
    Nrm__V1__ReferralUnroutable body = NRM__V1__REFERRAL_UNROUTABLE__INIT;
    body.service = (Nrm__V1__ServiceType)service;
    body.reason = reason;
    nrm_log_warn("referral unroutable", "{s:s, s:s, s:s, s:I, s:I}", "case_id", c->case_id,
                 "service_type", routing_service_name(service), "region", c->region, "eligible",
                 (json_int_t)cand->count, "tried", (json_int_t)tried);
    nrm_db_count_on_commit(tx->db, self->referrals_unroutable, 1);
    return routing_emit_body(self, tx, c->case_id, NRM__V1__EVENT__BODY_REFERRAL_UNROUTABLE, &body);
}

/* Creates the referral r: held by the batch in hand (*created true: the batch's write tells
 * whether it was new, see routing_batch_sync), or inserted at once (*created tells). */
static nrm_status_t s_insert(routing_t *self, nrm_tx_t *tx, const routing_referral_t *r,
                             bool *created)
{
    *created = routing_batch_hold_referral(self, r);
    if (*created)
        return NRM_OK;
    nrm_params_t q = {0};
    nrm_params_text(&q, r->referral_id);
    nrm_params_text(&q, r->case_id);
    nrm_params_int(&q, r->service);
    nrm_params_int(&q, r->attempt);
    nrm_params_text(&q, r->provider_id);
    nrm_params_int(&q, r->urgency);
    nrm_params_text(&q, r->rule_id);
    nrm_params_text(&q, r->reason);
    nrm_params_text(&q, r->causation_id);
    nrm_params_int(&q, r->created_ms);
    nrm_params_int(&q, r->due_ms);
    nrm_params_text(&q, r->agreement_id);
    PGresult *res = NULL;
    nrm_status_t st = nrm_db_exec(tx->db, "routing_insert", &q, &res, tx->err);
    if (st != NRM_OK)
        return st;
    *created = PQntuples(res) == 1;
    PQclear(res);
    return NRM_OK;
}

/* Creates the referral of service to the provider (s_insert) and publishes referral.created. */
static nrm_status_t s_create(routing_t *self, nrm_tx_t *tx, const routing_case_t *c, int service,
                             const routing_decision_t *d, const s_candidates_t *cand, int pick)
{
    const routing_provider_t *p = cand->providers[pick];
    bool local = routing_provider_in_region(p, c->region);
    size_t tried = 0;
    for (size_t i = 0; i < cand->count; i++)
        tried += cand->tried[i];
    char reason[ROUTING_REASON_MAX], referral_id[37];
    snprintf(reason, sizeof reason,
             "%s. %s to %s [%s]: %s; %lld of %d open referrals; %zu provider(s) tried before",
             d->reason, routing_service_name(service), p->id, p->name,
             local ? "serves the region" : "national coverage", (long long)cand->open[pick],
             p->max_open, tried);
    s_utf8_trim(reason);
    nrm_uuid_v4(referral_id);
    int attempt = cand->last_attempt + 1;
    int64_t due_ms = tx->now_ms + routing_policy_deadline_ms(self->policy, c->urgency);
    routing_referral_t r = {.referral_id = referral_id,
                            .case_id = c->case_id,
                            .provider_id = p->id,
                            .rule_id = d->rule_id,
                            .reason = reason,
                            .causation_id = tx->causation_id ? tx->causation_id : "",
                            .agreement_id = cand->agreement[pick][0] ? cand->agreement[pick] : NULL,
                            .service = service,
                            .attempt = attempt,
                            .urgency = c->urgency,
                            .created_ms = tx->now_ms,
                            .due_ms = due_ms};
    bool created = false;
    nrm_status_t st = s_insert(self, tx, &r, &created);
    if (st != NRM_OK)
        return st;
    if (!created) /* this attempt exists already: it was made before, nothing to add */
        return NRM_OK;
    s_prefetch_note(self, p, cand->agreement[pick]); /* the counters the triggers just moved */
    Nrm__V1__ReferralCreated body = NRM__V1__REFERRAL_CREATED__INIT;
    body.referral_id = referral_id;
    body.service = (Nrm__V1__ServiceType)service;
    body.provider_agency_id = p->id;
    body.urgency = (Nrm__V1__Urgency)c->urgency;
    body.due_ms = due_ms;
    body.attempt = attempt;
    body.rule_id = (char *)d->rule_id;
    body.reason = reason;
    nrm_db_count_on_commit(tx->db, self->referrals_created, 1);
    return routing_emit_body(self, tx, c->case_id, NRM__V1__EVENT__BODY_REFERRAL_CREATED, &body);
}

/* Refers service of the case to the best candidate not tried yet (attempt + 1), or publishes
 * referral.unroutable and lets the need wait (quietly, without an event or a change, when
 * quiet: it waits already); records the service's new state. *chosen receives the provider,
 * or NULL when nobody was left. */
static nrm_status_t s_refer(routing_t *self, nrm_tx_t *tx, const routing_case_t *c, int service,
                            const routing_decision_t *d, bool quiet,
                            const routing_provider_t **chosen)
{
    s_candidates_t *cand = nrm_xcalloc(1, sizeof *cand);
    nrm_status_t st = s_load_candidates(self, tx, c, service, cand);
    int pick = st == NRM_OK ? s_pick(self, c, cand) : -1;
    *chosen = pick >= 0 ? cand->providers[pick] : NULL;
    if (st == NRM_OK && pick < 0 && quiet) {
        free(cand);
        return NRM_OK;
    }
    if (st == NRM_OK)
        st = pick >= 0 ? s_create(self, tx, c, service, d, cand, pick)
                       : s_unroutable(self, tx, c, service, cand);
    free(cand);
    if (st != NRM_OK)
        return st;
    return s_set_state(self, tx, c->case_id, service, pick >= 0 ? S_REFERRED : S_WAITING,
                       d->verdict == ROUTING_MANDATORY, d->rule_id, d->reason);
}

/* Publishes shelter.requested for the case: one bed, plus one per accompanying child. */
static nrm_status_t s_request_shelter(routing_t *self, nrm_tx_t *tx, const routing_case_t *c,
                                      const routing_decision_t *d)
{
    Nrm__V1__ShelterRequested body = NRM__V1__SHELTER_REQUESTED__INIT;
    body.profile = c->profile;
    body.is_minor = c->is_minor;
    body.region = (char *)c->region;
    body.safety_risk = (Nrm__V1__SafetyRisk)c->safety_risk;
    body.urgency = (Nrm__V1__Urgency)c->urgency;
    body.beds = 1 + (c->profile->accompanying_children > 0 ? c->profile->accompanying_children : 0);
    nrm_status_t st =
        routing_emit_body(self, tx, c->case_id, NRM__V1__EVENT__BODY_SHELTER_REQUESTED, &body);
    if (st == NRM_OK)
        nrm_db_count_on_commit(tx->db, self->shelters_requested, 1);
    return st == NRM_OK
               ? s_set_state(self, tx, c->case_id, NRM__V1__SERVICE_TYPE__SERVICE_TYPE_SHELTER,
                             S_SHELTER_REQUESTED, d->verdict == ROUTING_MANDATORY, d->rule_id,
                             d->reason)
               : st;
}

/* Whether providers chosen for the case speak none of the person's languages. */
typedef struct {
    bool known;     /* computed (only when a rule asks) */
    bool any;       /* a provider of an open referral (not an interpreter) speaks none */
    bool mandatory; /* such a provider serves a mandatory referral */
} s_gap_t;

/* Computes the language gap of the case from its open referrals (interpreters aside). */
static nrm_status_t s_language_gap(routing_t *self, nrm_tx_t *tx, const routing_case_t *c,
                                   s_gap_t *gap)
{
    *gap = (s_gap_t){.known = true};
    if (c->profile->n_languages == 0)
        return NRM_OK;
    nrm_status_t st = routing_batch_sync(self, tx);
    if (st != NRM_OK)
        return st;
    nrm_params_t p = {0};
    nrm_params_text(&p, c->case_id);
    nrm_params_int(&p, NRM__V1__SERVICE_TYPE__SERVICE_TYPE_INTERPRETATION);
    PGresult *res = NULL;
    st = nrm_db_exec(tx->db, "routing_open_providers", &p, &res, tx->err);
    if (st != NRM_OK)
        return st;
    for (int row = 0; row < PQntuples(res); row++) {
        const routing_provider_t *provider =
            routing_directory_find(self->directory, nrm_db_text(res, row, 0));
        if (!provider || routing_provider_speaks_with(provider, c->profile))
            continue;
        gap->any = true;
        gap->mandatory |= nrm_db_int(res, row, 1) != 0;
    }
    PQclear(res);
    return NRM_OK;
}

/* Acts on the policy's decision about one service of the case, given where it stands and the
 * language gap. A mandatory decision made for a language gap is mandatory only when the gap is
 * a mandatory referral's: otherwise it is made and revoked with the consented referrals it
 * serves (d is changed to say so). *chosen receives the provider of a referral made now (else
 * NULL). */
static nrm_status_t s_act(routing_t *self, nrm_tx_t *tx, const routing_case_t *c, int service,
                          s_state_t state, routing_decision_t *d, const s_gap_t *gap,
                          const routing_provider_t **chosen)
{
    *chosen = NULL;
    /* interpreting for consented referrals only: made and revoked with them, not alone */
    if (d->verdict == ROUTING_MANDATORY && d->for_language_gap && !gap->mandatory)
        d->verdict = ROUTING_REFER;
    if (d->verdict == ROUTING_SKIP) {
        /* a stated need the policy refuses is recorded, with the rule that refused it */
        if (state == S_NOT_REFERRED || (state == S_NONE && !ROUTING_SET_HAS(c->needs, service)))
            return NRM_OK;
        return s_set_state(self, tx, c->case_id, service, S_NOT_REFERRED, false, d->rule_id,
                           d->reason);
    }
    if (d->verdict == ROUTING_REFER && !c->consent)
        return state == S_AWAITING_CONSENT
                   ? NRM_OK
                   : s_set_state(self, tx, c->case_id, service, S_AWAITING_CONSENT, false,
                                 d->rule_id, d->reason);
    if (service == NRM__V1__SERVICE_TYPE__SERVICE_TYPE_SHELTER)
        return s_request_shelter(self, tx, c, d);
    return s_refer(self, tx, c, service, d, false, chosen);
}

nrm_status_t routing_route_case(routing_t *self, nrm_tx_t *tx, const routing_case_t *c)
{
    if (!c->open)
        return NRM_OK;
    s_state_t states[ROUTING_SERVICE_LIMIT] = {S_NONE};
    nrm_status_t st = c->just_opened ? NRM_OK : s_load_states(self, tx, c->case_id, states);
    /* a case opened just now has no referral yet: no gap until this pass makes one */
    s_gap_t gap = {.known = c->just_opened};
    for (size_t i = 0; st == NRM_OK && i < S_ORDER_COUNT; i++) {
        int service = s_order[i];
        s_state_t state = states[service];
        if (state != S_NONE && state != S_AWAITING_CONSENT && state != S_NOT_REFERRED)
            continue; /* decided and acted on */
        if (!gap.known && routing_policy_uses_language_gap(self->policy, service))
            st = s_language_gap(self, tx, c, &gap);
        routing_decision_t d;
        routing_policy_decide(self->policy, c, service, gap.any, &d);
        const routing_provider_t *chosen = NULL;
        if (st == NRM_OK)
            st = s_act(self, tx, c, service, state, &d, &gap, &chosen);
        /* a gap known before this referral: add what the new provider brings to it */
        if (chosen && gap.known && service != NRM__V1__SERVICE_TYPE__SERVICE_TYPE_INTERPRETATION &&
            !routing_provider_speaks_with(chosen, c->profile)) {
            gap.any = true;
            gap.mandatory |= d.verdict == ROUTING_MANDATORY;
        }
    }
    return st;
}

/* Loads the decision recorded for service of the case into d (rule_id and reason are copied
 * into the caller's buffers). */
static nrm_status_t s_load_decision(routing_t *self, nrm_tx_t *tx, const routing_case_t *c,
                                    int service, routing_decision_t *d,
                                    char rule_id[ROUTING_REASON_MAX],
                                    char reason[ROUTING_REASON_MAX])
{
    nrm_status_t st = routing_batch_sync(self, tx);
    if (st != NRM_OK)
        return st;
    nrm_params_t p = {0};
    nrm_params_text(&p, c->case_id);
    nrm_params_int(&p, service);
    PGresult *res = NULL;
    st = nrm_db_exec(tx->db, "routing_decision", &p, &res, tx->err);
    if (st != NRM_OK)
        return st;
    if (PQntuples(res) != 1) {
        PQclear(res);
        return nrm_fail(tx->err, NRM_INTERNAL, NULL, "referral without a decision");
    }
    /* the rule that decided the service goes on deciding it */
    snprintf(rule_id, ROUTING_REASON_MAX, "%s", nrm_db_text(res, 0, 0));
    snprintf(reason, ROUTING_REASON_MAX, "%s", nrm_db_text(res, 0, 1));
    *d = (routing_decision_t){nrm_db_int(res, 0, 2) ? ROUTING_MANDATORY : ROUTING_REFER, rule_id,
                              reason, false};
    PQclear(res);
    return NRM_OK;
}

nrm_status_t routing_reassign(routing_t *self, nrm_tx_t *tx, const routing_case_t *c, int service)
{
    if (!c->open)
        return NRM_OK;
    char rule_id[ROUTING_REASON_MAX], reason[ROUTING_REASON_MAX];
    routing_decision_t d;
    nrm_status_t st = s_load_decision(self, tx, c, service, &d, rule_id, reason);
    const routing_provider_t *chosen = NULL;
    if (st == NRM_OK)
        st = s_refer(self, tx, c, service, &d, false, &chosen);
    /* a new provider may not speak the person's language: interpretation may be due now */
    return st == NRM_OK ? routing_route_case(self, tx, c) : st;
}

nrm_status_t routing_refer_waiting(routing_t *self, nrm_tx_t *tx, const routing_case_t *c,
                                   int service, bool *routed)
{
    *routed = false;
    if (!c->open)
        return NRM_OK;
    char rule_id[ROUTING_REASON_MAX], reason[ROUTING_REASON_MAX];
    routing_decision_t d;
    nrm_status_t st = s_load_decision(self, tx, c, service, &d, rule_id, reason);
    const routing_provider_t *chosen = NULL;
    if (st == NRM_OK)
        st = s_refer(self, tx, c, service, &d, true, &chosen);
    *routed = st == NRM_OK && chosen;
    /* as after a reassignment: interpretation may be due for the new provider */
    return st == NRM_OK && chosen ? routing_route_case(self, tx, c) : st;
}
