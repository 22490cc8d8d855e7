/* Who hears what. Besides the subscribers that follow an event's topic, an event concerns:
 *
 *   topic                 provider  operator  reporting agencies  coordinator  case manager
 *   referral.created         x
 *   referral.accepted        x                      x
 *   referral.declined        x
 *   referral.expired         x                                         x
 *   referral.completed       x                      x
 *   referral.revoked         x                      x
 *   referral.unroutable                             x                  x
 *   referral.deadline_changed  x
 *   shelter.allocated                  x            x
 *   shelter.waitlisted                              x
 *   shelter.released                   x
 *   shelter.no_show                                 x                  x
 *   shelter.request_cancelled                       x
 *   case.closed                                     x
 *   case.manager_changed                            x
 *   case.link_alert                                                    x
 *   case.recovery_period_ending                                        x            x
 *   routing.agreement_ending                                           x
 *
 *   topic                           plan manager  coordinator
 *   reintegration.followup_due           x
 *   reintegration.followup_overdue                     x
 *   reintegration.risk_alert                           x
 *
 * The reporting agencies of a case come from case.opened (from the start), case.linked (from
 * the link on) and case.manager_changed (the new case manager, from then on); the provider of a
 * referral from referral.created; the case manager from the event naming it; the operator of an
 * allocation from shelter.allocated; the coordinators are the configured agencies of type
 * COORDINATOR; the plan manager is named by the follow-up event itself. Streams are consumed
 * independently, so an outcome may arrive before the report that makes an agency a reporter of
 * its case: outcomes are kept, and a reporting agency learnt late is given the outcomes it
 * should have heard. */
#include "notify.h"
#include "nrm_alloc.h"
#include "nrm_log.h"

#include <stdlib.h>
#include <string.h>

enum {
    S_PROVIDER = 1 << 0,
    S_OPERATOR = 1 << 1,
    S_REPORTERS = 1 << 2, /* an outcome of the case */
    S_COORDINATOR = 1 << 3,
    S_CASE_MANAGER = 1 << 4, /* the case manager the event names */
    S_PLAN_MANAGER = 1 << 5, /* the plan manager the follow-up event names */
};

typedef struct {
    Nrm__V1__Event__BodyCase body;
    unsigned roles;
} s_rule_t;

static const s_rule_t s_rules[] = {
    {NRM__V1__EVENT__BODY_REFERRAL_CREATED, S_PROVIDER},
    {NRM__V1__EVENT__BODY_REFERRAL_ACCEPTED, S_PROVIDER | S_REPORTERS},
    {NRM__V1__EVENT__BODY_REFERRAL_DECLINED, S_PROVIDER},
    {NRM__V1__EVENT__BODY_REFERRAL_EXPIRED, S_PROVIDER | S_COORDINATOR},
    {NRM__V1__EVENT__BODY_REFERRAL_COMPLETED, S_PROVIDER | S_REPORTERS},
    {NRM__V1__EVENT__BODY_REFERRAL_REVOKED, S_PROVIDER | S_REPORTERS},
    {NRM__V1__EVENT__BODY_REFERRAL_UNROUTABLE, S_REPORTERS | S_COORDINATOR},
    {NRM__V1__EVENT__BODY_REFERRAL_DEADLINE_CHANGED, S_PROVIDER},
    {NRM__V1__EVENT__BODY_SHELTER_ALLOCATED, S_OPERATOR | S_REPORTERS},
    {NRM__V1__EVENT__BODY_SHELTER_WAITLISTED, S_REPORTERS},
    {NRM__V1__EVENT__BODY_SHELTER_RELEASED, S_OPERATOR},
    {NRM__V1__EVENT__BODY_SHELTER_NO_SHOW, S_REPORTERS | S_COORDINATOR},
    {NRM__V1__EVENT__BODY_SHELTER_REQUEST_CANCELLED, S_REPORTERS},
    {NRM__V1__EVENT__BODY_CASE_CLOSED, S_REPORTERS},
    {NRM__V1__EVENT__BODY_CASE_MANAGER_CHANGED, S_REPORTERS},
    {NRM__V1__EVENT__BODY_CASE_LINK_ALERT, S_COORDINATOR}, /* about an agency: case_id empty */
    {NRM__V1__EVENT__BODY_RECOVERY_PERIOD_ENDING, S_CASE_MANAGER | S_COORDINATOR},
    {NRM__V1__EVENT__BODY_FOLLOWUP_DUE, S_PLAN_MANAGER},
    {NRM__V1__EVENT__BODY_FOLLOWUP_OVERDUE, S_COORDINATOR},
    {NRM__V1__EVENT__BODY_RISK_ALERT, S_COORDINATOR},
    {NRM__V1__EVENT__BODY_AGREEMENT_ENDING, S_COORDINATOR}, /* about an agreement: no case */
};

static const char s_sql_reporter_add[] =
    "INSERT INTO case_agencies (case_id, agency_id, since_ms) VALUES ($1, $2, $3)"
    " ON CONFLICT DO NOTHING RETURNING since_ms";
static const char s_sql_reporters[] =
    "SELECT agency_id FROM case_agencies WHERE case_id = $1 AND since_ms <= $2"
    " ORDER BY agency_id";
static const char s_sql_referral_add[] =
    "INSERT INTO referrals (referral_id, case_id, provider_agency_id) VALUES ($1, $2, $3)"
    " ON CONFLICT (referral_id) DO UPDATE SET provider_agency_id = EXCLUDED.provider_agency_id";
static const char s_sql_referral_provider[] =
    "SELECT provider_agency_id FROM referrals WHERE referral_id = $1";
static const char s_sql_allocation_add[] =
    "INSERT INTO allocations (allocation_id, case_id, shelter_id, operator_agency_id)"
    " VALUES ($1, $2, $3, $4) ON CONFLICT (allocation_id) DO UPDATE"
    " SET operator_agency_id = EXCLUDED.operator_agency_id";
static const char s_sql_allocation_operator[] =
    "SELECT operator_agency_id FROM allocations WHERE allocation_id = $1";
static const char s_sql_outcomes_since[] =
    "SELECT payload FROM events WHERE case_id = $1 AND outcome AND occurred_at_ms >= $2"
    " ORDER BY source_stream, source_seq";

void notify_recipients_prepare(nrm_db_t *db)
{
    nrm_db_statement(db, "notify_reporter_add", s_sql_reporter_add);
    nrm_db_statement(db, "notify_reporters", s_sql_reporters);
    nrm_db_statement(db, "notify_referral_add", s_sql_referral_add);
    nrm_db_statement(db, "notify_referral_provider", s_sql_referral_provider);
    nrm_db_statement(db, "notify_allocation_add", s_sql_allocation_add);
    nrm_db_statement(db, "notify_allocation_operator", s_sql_allocation_operator);
    nrm_db_statement(db, "notify_outcomes_since", s_sql_outcomes_since);
}

/* The agencies concerned by one event: distinct ids, owned. */
typedef struct {
    char **ids;
    size_t n;
    size_t cap;
} s_agencies_t;

/* Adds id (copied) unless empty or present. */
static void s_agencies_add(s_agencies_t *a, const char *id)
{
    if (!id || !id[0])
        return;
    for (size_t i = 0; i < a->n; i++)
        if (strcmp(a->ids[i], id) == 0)
            return;
    if (a->n == a->cap) {
        size_t cap = a->cap ? a->cap * 2 : 8;
        char **ids = nrm_xreallocarray(a->ids, cap, sizeof *ids);
        a->ids = ids;
        a->cap = cap;
    }
    a->ids[a->n] = nrm_xstrdup(id);
    a->n++;
}

/* Frees the ids. */
static void s_agencies_clear(s_agencies_t *a)
{
    for (size_t i = 0; i < a->n; i++)
        free(a->ids[i]);
    free(a->ids);
    memset(a, 0, sizeof *a);
}

/* The rule of an event body, or NULL when it concerns nobody in particular. */
static const s_rule_t *s_rule_of(Nrm__V1__Event__BodyCase body)
{
    for (size_t i = 0; i < sizeof s_rules / sizeof s_rules[0]; i++)
        if (s_rules[i].body == body)
            return &s_rules[i];
    return NULL;
}

/* Runs a one-parameter lookup whose first column is an agency id and adds every row's. */
static nrm_status_t s_add_looked_up(nrm_tx_t *tx, const char *stmt, const char *key,
                                    s_agencies_t *who)
{
    nrm_params_t p = {0};
    nrm_params_text(&p, key);
    PGresult *res = NULL;
    nrm_status_t st = nrm_db_exec(tx->db, stmt, &p, &res, tx->err);
    if (st != NRM_OK)
        return st;
    for (int i = 0; i < PQntuples(res); i++)
        s_agencies_add(who, nrm_db_text(res, i, 0));
    PQclear(res);
    return NRM_OK;
}

/* The provider of a referral event: named by the event, or remembered from its creation. */
static nrm_status_t s_add_provider(nrm_tx_t *tx, const Nrm__V1__Event *ev, s_agencies_t *who)
{
    switch (ev->body_case) {
    case NRM__V1__EVENT__BODY_REFERRAL_CREATED:
        s_agencies_add(who, ev->referral_created->provider_agency_id);
        return NRM_OK;
    case NRM__V1__EVENT__BODY_REFERRAL_ACCEPTED:
        s_agencies_add(who, ev->referral_accepted->provider_agency_id);
        return NRM_OK;
    case NRM__V1__EVENT__BODY_REFERRAL_DECLINED:
        s_agencies_add(who, ev->referral_declined->provider_agency_id);
        return NRM_OK;
    case NRM__V1__EVENT__BODY_REFERRAL_EXPIRED:
        s_agencies_add(who, ev->referral_expired->provider_agency_id);
        return NRM_OK;
    case NRM__V1__EVENT__BODY_REFERRAL_DEADLINE_CHANGED:
        s_agencies_add(who, ev->referral_deadline_changed->provider_agency_id);
        return NRM_OK;
    case NRM__V1__EVENT__BODY_REFERRAL_COMPLETED:
        return s_add_looked_up(tx, "notify_referral_provider", ev->referral_completed->referral_id,
                               who);
    case NRM__V1__EVENT__BODY_REFERRAL_REVOKED:
        return s_add_looked_up(tx, "notify_referral_provider", ev->referral_revoked->referral_id,
                               who);
    default:
        return NRM_OK;
    }
}

/* The operator of the shelter of an allocation event. */
static nrm_status_t s_add_operator(nrm_tx_t *tx, const Nrm__V1__Event *ev, s_agencies_t *who)
{
    if (ev->body_case == NRM__V1__EVENT__BODY_SHELTER_ALLOCATED)
        s_agencies_add(who, ev->shelter_allocated->operator_agency_id);
    else if (ev->body_case == NRM__V1__EVENT__BODY_SHELTER_RELEASED)
        return s_add_looked_up(tx, "notify_allocation_operator",
                               ev->shelter_released->allocation_id, who);
    return NRM_OK;
}

/* The agencies that reported the case before the event occurred. */
static nrm_status_t s_add_reporters(nrm_tx_t *tx, const Nrm__V1__Event *ev, s_agencies_t *who)
{
    if (!ev->case_id || !ev->case_id[0])
        return NRM_OK;
    nrm_params_t p = {0};
    nrm_params_text(&p, ev->case_id);
    nrm_params_int(&p, ev->occurred_at_ms);
    PGresult *res = NULL;
    nrm_status_t st = nrm_db_exec(tx->db, "notify_reporters", &p, &res, tx->err);
    if (st != NRM_OK)
        return st;
    for (int i = 0; i < PQntuples(res); i++)
        s_agencies_add(who, nrm_db_text(res, i, 0));
    PQclear(res);
    return NRM_OK;
}

/* The configured coordinators. */
static void s_add_coordinators(notify_t *self, s_agencies_t *who)
{
    nrm_config_t *config = nrm_service_config(self->service);
    size_t n = nrm_config_agency_count(config);
    for (size_t i = 0; i < n; i++) {
        json_t *agency = nrm_config_agency_at(config, i);
        const char *type = json_string_value(json_object_get(agency, "type"));
        if (type && strcmp(type, NOTIFY_COORDINATOR) == 0)
            s_agencies_add(who, json_string_value(json_object_get(agency, "id")));
    }
}

/* Every agency the event concerns under its rule. */
static nrm_status_t s_concerned(notify_t *self, nrm_tx_t *tx, const Nrm__V1__Event *ev,
                                const s_rule_t *rule, s_agencies_t *who)
{
    nrm_status_t st = NRM_OK;
    if (rule->roles & S_PROVIDER)
        st = s_add_provider(tx, ev, who);
    if (st == NRM_OK && (rule->roles & S_OPERATOR))
        st = s_add_operator(tx, ev, who);
    if (st == NRM_OK && (rule->roles & S_REPORTERS))
        st = s_add_reporters(tx, ev, who);
    if (st == NRM_OK && (rule->roles & S_COORDINATOR))
        s_add_coordinators(self, who);
    if (rule->roles & S_CASE_MANAGER &&
        ev->body_case == NRM__V1__EVENT__BODY_RECOVERY_PERIOD_ENDING)
        s_agencies_add(who, ev->recovery_period_ending->case_manager_agency_id);
    if (rule->roles & S_PLAN_MANAGER && ev->body_case == NRM__V1__EVENT__BODY_FOLLOWUP_DUE)
        s_agencies_add(who, ev->followup_due->manager_agency_id);
    return st;
}

/* A reporting agency learnt from an event: who, and from when it hears the case's outcomes. */
typedef struct {
    const char *agency_id; /* NULL when none was learnt */
    int64_t since_ms;
} s_learnt_t;

/* Remembers a reporting agency of a case. Sets *learnt when it was not known yet. */
static nrm_status_t s_remember_reporter(nrm_tx_t *tx, const char *case_id, const char *agency,
                                        int64_t since_ms, s_learnt_t *learnt)
{
    nrm_params_t p = {0};
    nrm_params_text(&p, case_id);
    nrm_params_text(&p, agency);
    nrm_params_int(&p, since_ms);
    PGresult *res = NULL;
    nrm_status_t st = nrm_db_exec(tx->db, "notify_reporter_add", &p, &res, tx->err);
    if (st != NRM_OK)
        return st;
    if (PQntuples(res) == 1)
        *learnt = (s_learnt_t){agency, since_ms};
    PQclear(res);
    return NRM_OK;
}

/* Keeps the maps the rules need: reporting agencies, providers, operators. */
static nrm_status_t s_remember(nrm_tx_t *tx, const Nrm__V1__Event *ev, s_learnt_t *learnt)
{
    nrm_params_t p = {0};
    switch (ev->body_case) {
    case NRM__V1__EVENT__BODY_CASE_OPENED:
        /* the first reporter hears every outcome, whatever the clocks of other services say */
        return s_remember_reporter(tx, ev->case_id, ev->case_opened->reporting_agency_id, 0,
                                   learnt);
    case NRM__V1__EVENT__BODY_CASE_LINKED:
        return s_remember_reporter(tx, ev->case_id, ev->case_linked->reporting_agency_id,
                                   ev->occurred_at_ms, learnt);
    case NRM__V1__EVENT__BODY_CASE_MANAGER_CHANGED:
        return s_remember_reporter(tx, ev->case_id,
                                   ev->case_manager_changed->case_manager_agency_id,
                                   ev->occurred_at_ms, learnt);
    case NRM__V1__EVENT__BODY_REFERRAL_CREATED:
        nrm_params_text(&p, ev->referral_created->referral_id);
        nrm_params_text(&p, ev->case_id);
        nrm_params_text(&p, ev->referral_created->provider_agency_id);
        return nrm_db_exec(tx->db, "notify_referral_add", &p, NULL, tx->err);
    case NRM__V1__EVENT__BODY_SHELTER_ALLOCATED:
        nrm_params_text(&p, ev->shelter_allocated->allocation_id);
        nrm_params_text(&p, ev->case_id);
        nrm_params_text(&p, ev->shelter_allocated->shelter_id);
        nrm_params_text(&p, ev->shelter_allocated->operator_agency_id);
        return nrm_db_exec(tx->db, "notify_allocation_add", &p, NULL, tx->err);
    default:
        return NRM_OK;
    }
}

/* Gives a reporting agency learnt late the stored outcomes of the case it should have heard. */
static nrm_status_t s_late_outcomes(notify_t *self, nrm_tx_t *tx, const char *case_id,
                                    const s_learnt_t *learnt, int *created)
{
    nrm_params_t p = {0};
    nrm_params_text(&p, case_id);
    nrm_params_int(&p, learnt->since_ms);
    PGresult *res = NULL;
    nrm_status_t st = nrm_db_exec(tx->db, "notify_outcomes_since", &p, &res, tx->err);
    if (st != NRM_OK)
        return st;
    char *agency = (char *)learnt->agency_id;
    for (int i = 0; st == NRM_OK && i < PQntuples(res); i++) {
        size_t len = 0;
        const uint8_t *payload = nrm_db_bytes(res, i, 0, &len);
        Nrm__V1__Event *outcome = nrm_event_unpack(payload, len);
        if (!outcome) {
            st = nrm_fail(tx->err, NRM_INTERNAL, NULL, "stored event unreadable");
            break;
        }
        int made = 0;
        st = notify_deliveries_create(self, tx, outcome, &agency, 1, true, &made);
        *created += made;
        if (made > 0)
            nrm_log_info("outcome given to a reporting agency learnt late", "{s:s, s:s, s:I}",
                         "agency_id", agency, "source_stream", outcome->stream, "source_seq",
                         (json_int_t)outcome->seq);
        nrm__v1__event__free_unpacked(outcome, NULL);
    }
    PQclear(res);
    return st;
}

nrm_status_t notify_apply(void *ctx, nrm_tx_t *tx, const Nrm__V1__Event *ev)
{
    notify_t *self = ctx;
    nrm_status_t st = NRM_OK;
    if (!self->seeded) /* a reloaded configuration not yet seeded on its own: seed here too */
        st = notify_seed_subscriptions(self, tx);
    s_learnt_t learnt = {NULL, 0};
    if (st == NRM_OK)
        st = s_remember(tx, ev, &learnt);
    const s_rule_t *rule = s_rule_of(ev->body_case);
    s_agencies_t who = {0};
    if (st == NRM_OK && rule)
        st = s_concerned(self, tx, ev, rule, &who);
    int created = 0;
    if (st == NRM_OK) /* written at the end of the batch (notify_flush) */
        notify_deliveries_gather(self, &self->batch, ev, who.ids, who.n,
                                 rule && (rule->roles & S_REPORTERS));
    /* a reporting agency learnt late reads the kept outcomes: what the batch gathered so far
     * (this event included) is written first, in the order it had one event at a time */
    if (st == NRM_OK && learnt.agency_id)
        st = notify_deliveries_write(self, tx, &self->batch, &created);
    if (st == NRM_OK && learnt.agency_id)
        st = s_late_outcomes(self, tx, ev->case_id, &learnt, &created);
    s_agencies_clear(&who);
    if (st == NRM_OK && created > 0)
        notify_sender_wake(self->sender);
    return st;
}

nrm_status_t notify_flush(void *ctx, nrm_tx_t *tx)
{
    notify_t *self = ctx;
    int created = 0;
    nrm_status_t st = notify_deliveries_write(self, tx, &self->batch, &created);
    if (st == NRM_OK && created > 0)
        notify_sender_wake(self->sender);
    return st;
}

void notify_reset(void *ctx)
{
    notify_batch_clear(&((notify_t *)ctx)->batch);
}
