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
 *   case.possible_duplicate                                            x
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
    {NRM__V1__EVENT__BODY_CASE_LINK_ALERT, S_COORDINATOR},    /* about an agency: case_id empty */
    {NRM__V1__EVENT__BODY_POSSIBLE_DUPLICATE, S_COORDINATOR}, /* the coordinator decides */
    {NRM__V1__EVENT__BODY_RECOVERY_PERIOD_ENDING, S_CASE_MANAGER | S_COORDINATOR},
    {NRM__V1__EVENT__BODY_FOLLOWUP_DUE, S_PLAN_MANAGER},
    {NRM__V1__EVENT__BODY_FOLLOWUP_OVERDUE, S_COORDINATOR},
    {NRM__V1__EVENT__BODY_RISK_ALERT, S_COORDINATOR},
    {NRM__V1__EVENT__BODY_AGREEMENT_ENDING, S_COORDINATOR}, /* about an agreement: no case */
};

void notify_recipients_prepare(nrm_db_t *db)
{
    notify_maps_prepare(db);
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

bool notify_concerns_reporters(const Nrm__V1__Event *ev)
{
    const s_rule_t *rule = s_rule_of(ev->body_case);
    return rule && (rule->roles & S_REPORTERS);
}

/* A protobuf string, never NULL. */
static const char *s_text(const char *s)
{
    return s ? s : "";
}

/* What the events of a batch are resolved against (all borrowed but the coordinators). */
typedef struct {
    notify_t *self;
    Nrm__V1__Event *const *events; /* the batch, in order */
    size_t n;
    const notify_maps_t *maps; /* as before the batch, and the agencies it made known */
    s_agencies_t coordinators; /* the configured agencies of type COORDINATOR (owned) */
} s_scope_t;

/* The provider of a referral as the event at position at knows it: from the batch's last
 * referral.created before it, or else as stored before the batch. */
static const char *s_provider_at(const s_scope_t *sc, size_t at, const char *referral_id)
{
    for (size_t j = at; j-- > 0;) {
        const Nrm__V1__Event *e = sc->events[j];
        if (e->body_case == NRM__V1__EVENT__BODY_REFERRAL_CREATED &&
            strcmp(s_text(e->referral_created->referral_id), s_text(referral_id)) == 0)
            return e->referral_created->provider_agency_id;
    }
    return notify_maps_find(sc->maps->providers, sc->maps->n_providers, s_text(referral_id));
}

/* The operator of an allocation as the event at position at knows it (likewise). */
static const char *s_operator_at(const s_scope_t *sc, size_t at, const char *allocation_id)
{
    for (size_t j = at; j-- > 0;) {
        const Nrm__V1__Event *e = sc->events[j];
        if (e->body_case == NRM__V1__EVENT__BODY_SHELTER_ALLOCATED &&
            strcmp(s_text(e->shelter_allocated->allocation_id), s_text(allocation_id)) == 0)
            return e->shelter_allocated->operator_agency_id;
    }
    return notify_maps_find(sc->maps->operators, sc->maps->n_operators, s_text(allocation_id));
}

/* The provider of a referral event: named by the event, or remembered from its creation. */
static void s_add_provider(const s_scope_t *sc, size_t at, const Nrm__V1__Event *ev,
                           s_agencies_t *who)
{
    switch (ev->body_case) {
    case NRM__V1__EVENT__BODY_REFERRAL_CREATED:
        s_agencies_add(who, ev->referral_created->provider_agency_id);
        break;
    case NRM__V1__EVENT__BODY_REFERRAL_ACCEPTED:
        s_agencies_add(who, ev->referral_accepted->provider_agency_id);
        break;
    case NRM__V1__EVENT__BODY_REFERRAL_DECLINED:
        s_agencies_add(who, ev->referral_declined->provider_agency_id);
        break;
    case NRM__V1__EVENT__BODY_REFERRAL_EXPIRED:
        s_agencies_add(who, ev->referral_expired->provider_agency_id);
        break;
    case NRM__V1__EVENT__BODY_REFERRAL_DEADLINE_CHANGED:
        s_agencies_add(who, ev->referral_deadline_changed->provider_agency_id);
        break;
    case NRM__V1__EVENT__BODY_REFERRAL_COMPLETED:
        s_agencies_add(who, s_provider_at(sc, at, ev->referral_completed->referral_id));
        break;
    case NRM__V1__EVENT__BODY_REFERRAL_REVOKED:
        s_agencies_add(who, s_provider_at(sc, at, ev->referral_revoked->referral_id));
        break;
    default:
        break;
    }
}

/* The operator of the shelter of an allocation event. */
static void s_add_operator(const s_scope_t *sc, size_t at, const Nrm__V1__Event *ev,
                           s_agencies_t *who)
{
    if (ev->body_case == NRM__V1__EVENT__BODY_SHELTER_ALLOCATED)
        s_agencies_add(who, ev->shelter_allocated->operator_agency_id);
    else if (ev->body_case == NRM__V1__EVENT__BODY_SHELTER_RELEASED)
        s_agencies_add(who, s_operator_at(sc, at, ev->shelter_released->allocation_id));
}

static int s_id_cmp(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* The agencies that reported the case before the event at position at occurred: known before
 * the batch, or made known by it up to this event (in agency id order). */
static void s_add_reporters(const s_scope_t *sc, size_t at, const Nrm__V1__Event *ev,
                            s_agencies_t *who)
{
    const char *case_id = s_text(ev->case_id);
    const notify_maps_t *m = sc->maps;
    if (!case_id[0])
        return;
    const char **ids = nrm_xcalloc(m->n_known + m->n_learnt + 1, sizeof *ids);
    size_t n = 0;
    for (size_t i = 0; i < m->n_known; i++)
        if (strcmp(m->known[i].case_id, case_id) == 0 && m->known[i].since_ms <= ev->occurred_at_ms)
            ids[n++] = m->known[i].agency_id;
    for (size_t i = 0; i < m->n_learnt; i++)
        if (m->learnt[i].at <= at && strcmp(m->learnt[i].case_id, case_id) == 0 &&
            m->learnt[i].since_ms <= ev->occurred_at_ms)
            ids[n++] = m->learnt[i].agency_id;
    qsort(ids, n, sizeof *ids, s_id_cmp);
    for (size_t i = 0; i < n; i++)
        s_agencies_add(who, ids[i]);
    free(ids);
}

/* Every agency the event at position at concerns under its rule. */
static void s_concerned(const s_scope_t *sc, size_t at, const s_rule_t *rule, s_agencies_t *who)
{
    const Nrm__V1__Event *ev = sc->events[at];
    if (rule->roles & S_PROVIDER)
        s_add_provider(sc, at, ev, who);
    if (rule->roles & S_OPERATOR)
        s_add_operator(sc, at, ev, who);
    if (rule->roles & S_REPORTERS)
        s_add_reporters(sc, at, ev, who);
    if (rule->roles & S_COORDINATOR)
        for (size_t i = 0; i < sc->coordinators.n; i++)
            s_agencies_add(who, sc->coordinators.ids[i]);
    if (rule->roles & S_CASE_MANAGER &&
        ev->body_case == NRM__V1__EVENT__BODY_RECOVERY_PERIOD_ENDING)
        s_agencies_add(who, ev->recovery_period_ending->case_manager_agency_id);
    if (rule->roles & S_PLAN_MANAGER && ev->body_case == NRM__V1__EVENT__BODY_FOLLOWUP_DUE)
        s_agencies_add(who, ev->followup_due->manager_agency_id);
}

/* The configured coordinators, into who. */
static void s_coordinators(notify_t *self, s_agencies_t *who)
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

/* Orders events by (stream, seq), as the stored outcomes were read. */
static int s_stream_order(const void *a, const void *b)
{
    const Nrm__V1__Event *x = *(const Nrm__V1__Event *const *)a;
    const Nrm__V1__Event *y = *(const Nrm__V1__Event *const *)b;
    int c = strcmp(s_text(x->stream), s_text(y->stream));
    return c ? c : (x->seq > y->seq) - (x->seq < y->seq);
}

/* Gathers, right after the event that made a reporting agency known, the outcomes of its case
 * it should have heard: stored before the batch, or earlier in the batch up to that event (the
 * table held both when each event had its own statements), in (stream, seq) order. */
static void s_gather_late(const s_scope_t *sc, const notify_reporter_t *l, notify_batch_t *b)
{
    const Nrm__V1__Event **list = nrm_xcalloc(l->n_kept + l->at + 1, sizeof *list);
    size_t n = 0;
    for (size_t k = 0; k < l->n_kept; k++)
        list[n++] = l->kept[k];
    for (size_t j = 0; j <= l->at && j < sc->n; j++) {
        const Nrm__V1__Event *e = sc->events[j];
        if (notify_concerns_reporters(e) && strcmp(s_text(e->case_id), l->case_id) == 0 &&
            e->occurred_at_ms >= l->since_ms)
            list[n++] = e;
    }
    qsort(list, n, sizeof *list, s_stream_order);
    char *agency = l->agency_id;
    for (size_t k = 0; k < n; k++)
        if (k == 0 || s_stream_order(&list[k - 1], &list[k]) != 0)
            notify_deliveries_gather(sc->self, b, list[k], &agency, 1, true, agency);
    free(list);
}

/* Gathers the deliveries of every event of the batch in b, in the order one event at a time
 * made them: each event's, then after an event that made a reporting agency known, the kept
 * outcomes given to it. */
static void s_gather_batch(notify_t *self, const notify_maps_t *maps, notify_batch_t *b)
{
    s_scope_t sc = {self, self->received, self->n_received, maps, {0}};
    s_coordinators(self, &sc.coordinators);
    for (size_t i = 0; i < sc.n; i++) {
        const s_rule_t *rule = s_rule_of(sc.events[i]->body_case);
        s_agencies_t who = {0};
        if (rule)
            s_concerned(&sc, i, rule, &who);
        notify_deliveries_gather(self, b, sc.events[i], who.ids, who.n,
                                 rule && (rule->roles & S_REPORTERS), NULL);
        s_agencies_clear(&who);
        for (size_t k = 0; k < maps->n_learnt; k++)
            if (maps->learnt[k].at == i)
                s_gather_late(&sc, &maps->learnt[k], b);
    }
    s_agencies_clear(&sc.coordinators);
}

/* Frees the events received for the batch. */
static void s_received_clear(notify_t *self)
{
    for (size_t i = 0; i < self->n_received; i++)
        nrm__v1__event__free_unpacked(self->received[i], NULL);
    free(self->received);
    self->received = NULL;
    self->n_received = self->cap_received = 0;
}

nrm_status_t notify_apply(void *ctx, nrm_tx_t *tx, const Nrm__V1__Event *ev)
{
    notify_t *self = ctx;
    if (!self->seeded) { /* a reloaded configuration not yet seeded on its own: seed here too */
        nrm_status_t st = notify_seed_subscriptions(self, tx);
        if (st != NRM_OK)
            return st;
    }
    /* a copy, resolved with the rest of the batch at its end (notify_flush) */
    size_t len = 0;
    uint8_t *packed = nrm_event_pack(ev, &len);
    Nrm__V1__Event *copy = nrm_event_unpack(packed, len);
    free(packed);
    if (!copy)
        return nrm_fail(tx->err, NRM_INTERNAL, NULL, "event not copied");
    if (self->n_received == self->cap_received) {
        self->cap_received = self->cap_received ? self->cap_received * 2 : 64;
        self->received =
            nrm_xreallocarray(self->received, self->cap_received, sizeof *self->received);
    }
    self->received[self->n_received++] = copy;
    return NRM_OK;
}

nrm_status_t notify_flush(void *ctx, nrm_tx_t *tx)
{
    notify_t *self = ctx;
    notify_maps_t maps;
    nrm_status_t st = notify_maps_sync(tx, self->received, self->n_received, &maps);
    if (st == NRM_OK)
        s_gather_batch(self, &maps, &self->batch);
    int created = 0;
    if (st == NRM_OK)
        st = notify_deliveries_write(self, tx, &self->batch, &created);
    notify_maps_clear(&maps);
    notify_reset(self);
    if (st == NRM_OK && created > 0) /* sent once this transaction commits */
        st = notify_sender_claim_in(self->sender, tx);
    return st;
}

void notify_reset(void *ctx)
{
    notify_t *self = ctx;
    notify_batch_clear(&self->batch);
    s_received_clear(self);
}
