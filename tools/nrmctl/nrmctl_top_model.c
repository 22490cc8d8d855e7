/* nrmctl_top_model: the counting behind top (see nrmctl_top_model.h). */
#include "nrmctl_top_model.h"
#include "nrm_alloc.h"
#include "nrm_error.h"
#include "nrm_event.h"
#include "nrm_time.h"

#include <czmq.h>
#include <stdlib.h>
#include <string.h>

#define S_SERVICE_LIMIT 16 /* ServiceType values counted; others count as unspecified */
#define S_RECENT_MIN 16    /* first allocation of a topic's recent timestamps */
#define S_NOT_CONFIGURED "not configured"
#define S_COORDINATOR_ONLY "coordinator only"
#define S_DELIVERED_TOPIC "notification.delivered"
#define S_FAILED_TOPIC "notification.failed"

/* One topic: how many events, and the times of those of the last minute. */
typedef struct {
    int64_t total;
    int64_t *recent; /* occurred_at_ms of recent events, unordered */
    size_t n_recent;
    size_t room;
} s_topic_t;

/* What is known of a case: its region once case.opened was seen, and the referral events
 * about it that came before (counted in the region when it is known). */
typedef struct {
    char *region;
    int64_t waiting;
} s_case_t;

/* An open referral. */
typedef struct {
    int service;
    bool accepted;
    int64_t due_ms;
} s_referral_t;

/* The answer of one kind of request per refresh: the JSON to show, or why there is none. */
typedef struct {
    json_t *value;
    const char *error; /* static */
} s_answer_t;

struct nrmctl_top_model_t {
    zhashx_t *topics;    /* topic -> s_topic_t */
    zhashx_t *regions;   /* region -> int64_t count */
    zhashx_t *cases;     /* case id -> s_case_t */
    zhashx_t *referrals; /* referral id -> s_referral_t, open ones only */
    bool service_seen[S_SERVICE_LIMIT];
    s_answer_t shelters;
    s_answer_t failed;
};

/* Frees an s_topic_t (a zhashx destructor). */
static void s_topic_destroy(void **item)
{
    s_topic_t *topic = *item;
    if (topic)
        free(topic->recent);
    free(topic);
    *item = NULL;
}

/* Frees an s_case_t (a zhashx destructor). */
static void s_case_destroy(void **item)
{
    s_case_t *c = *item;
    if (c)
        free(c->region);
    free(c);
    *item = NULL;
}

/* Frees a plain malloc'd item (a zhashx destructor). */
static void s_free(void **item)
{
    free(*item);
    *item = NULL;
}

/* Returns a new table whose items are freed by destructor, or NULL. */
static zhashx_t *s_table(zhashx_destructor_fn destructor)
{
    zhashx_t *table = zhashx_new();
    if (table)
        zhashx_set_destructor(table, destructor);
    return table;
}

/* Public: every table empty, no answer yet. */
nrmctl_top_model_t *nrmctl_top_model_new(void)
{
    nrmctl_top_model_t *self = nrm_xcalloc(1, sizeof *self);
    self->topics = s_table(s_topic_destroy);
    self->regions = s_table(s_free);
    self->cases = s_table(s_case_destroy);
    self->referrals = s_table(s_free);
    self->shelters.error = self->failed.error = nrm_status_name(NRM_UNAVAILABLE);
    if (!self->topics || !self->regions || !self->cases || !self->referrals)
        nrmctl_top_model_destroy(&self);
    return self;
}

/* Public: the tables and the answers. */
void nrmctl_top_model_destroy(nrmctl_top_model_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    nrmctl_top_model_t *self = *self_p;
    zhashx_destroy(&self->topics);
    zhashx_destroy(&self->regions);
    zhashx_destroy(&self->cases);
    zhashx_destroy(&self->referrals);
    json_decref(self->shelters.value);
    json_decref(self->failed.value);
    free(self);
    *self_p = NULL;
}

/* Adds n events to region's count. Returns 0, or -1 when out of memory. */
static int s_count_region(nrmctl_top_model_t *self, const char *region, int64_t n)
{
    if (!region || !region[0] || n == 0)
        return 0;
    int64_t *count = zhashx_lookup(self->regions, region);
    if (!count) {
        count = nrm_xcalloc(1, sizeof *count);
        if (zhashx_insert(self->regions, region, count) != 0) {
            free(count);
            return -1;
        }
    }
    *count += n;
    return 0;
}

/* Returns the entry of case_id, made (without region) when it is new; NULL when out of memory. */
static s_case_t *s_case(nrmctl_top_model_t *self, const char *case_id)
{
    s_case_t *c = zhashx_lookup(self->cases, case_id);
    if (c)
        return c;
    c = nrm_xcalloc(1, sizeof *c);
    if (zhashx_insert(self->cases, case_id, c) != 0) {
        free(c);
        return NULL;
    }
    return c;
}

/* case.opened: the case's region, and the events that waited for it. */
static int s_case_opened(nrmctl_top_model_t *self, const char *case_id, const char *region)
{
    if (s_count_region(self, region, 1) != 0)
        return -1;
    if (!case_id[0])
        return 0;
    s_case_t *c = s_case(self, case_id);
    if (!c)
        return -1;
    if (!c->region) {
        c->region = nrm_xstrdup(region);
    }
    int64_t waiting = c->waiting;
    c->waiting = 0;
    return s_count_region(self, c->region, waiting);
}

/* A referral.* event: counted in its case's region, or kept until the case shows up. */
static int s_case_event(nrmctl_top_model_t *self, const char *case_id)
{
    if (!case_id[0])
        return 0;
    s_case_t *c = s_case(self, case_id);
    if (!c)
        return -1;
    if (c->region)
        return s_count_region(self, c->region, 1);
    c->waiting++;
    return 0;
}

/* referral.created: a pending referral. */
static int s_referral_created(nrmctl_top_model_t *self, const Nrm__V1__ReferralCreated *created)
{
    s_referral_t *r = nrm_xcalloc(1, sizeof *r);
    int service = (int)created->service;
    r->service = service > 0 && service < S_SERVICE_LIMIT ? service : 0;
    r->due_ms = created->due_ms;
    self->service_seen[r->service] = true;
    zhashx_update(self->referrals, created->referral_id, r);
    return 0;
}

/* Follows the state of open referrals: accepted, or ended (and forgotten). */
static void s_referral_moved(nrmctl_top_model_t *self, const Nrm__V1__Event *ev)
{
    switch (ev->body_case) {
    case NRM__V1__EVENT__BODY_REFERRAL_ACCEPTED: {
        s_referral_t *r = zhashx_lookup(self->referrals, ev->referral_accepted->referral_id);
        if (r)
            r->accepted = true;
        break;
    }
    case NRM__V1__EVENT__BODY_REFERRAL_DECLINED:
        zhashx_delete(self->referrals, ev->referral_declined->referral_id);
        break;
    case NRM__V1__EVENT__BODY_REFERRAL_DEADLINE_CHANGED: {
        /* a raised urgency: overdue from the new deadline on */
        s_referral_t *r =
            zhashx_lookup(self->referrals, ev->referral_deadline_changed->referral_id);
        if (r)
            r->due_ms = ev->referral_deadline_changed->due_ms;
        break;
    }
    case NRM__V1__EVENT__BODY_REFERRAL_EXPIRED:
        zhashx_delete(self->referrals, ev->referral_expired->referral_id);
        break;
    case NRM__V1__EVENT__BODY_REFERRAL_COMPLETED:
        zhashx_delete(self->referrals, ev->referral_completed->referral_id);
        break;
    case NRM__V1__EVENT__BODY_REFERRAL_REVOKED:
        zhashx_delete(self->referrals, ev->referral_revoked->referral_id);
        break;
    default:
        break;
    }
}

/* Counts ev under its topic (and among the recent ones when it is). Returns 0, or -1. */
static int s_count_topic(nrmctl_top_model_t *self, const Nrm__V1__Event *ev)
{
    const char *name = ev->topic && ev->topic[0] ? ev->topic : nrm_event_topic_of(ev->body_case);
    if (!name)
        return 0;
    s_topic_t *topic = zhashx_lookup(self->topics, name);
    if (!topic) {
        topic = nrm_xcalloc(1, sizeof *topic);
        if (zhashx_insert(self->topics, name, topic) != 0) {
            free(topic);
            return -1;
        }
    }
    topic->total++;
    if (ev->occurred_at_ms < nrm_now_ms() - NRMCTL_TOP_WINDOW_MS)
        return 0;
    if (topic->n_recent == topic->room) {
        size_t room = topic->room ? topic->room * 2 : S_RECENT_MIN;
        int64_t *recent = nrm_xreallocarray(topic->recent, room, sizeof *recent);
        topic->recent = recent;
        topic->room = room;
    }
    topic->recent[topic->n_recent++] = ev->occurred_at_ms;
    return 0;
}

/* Public: one event into every count it belongs to. */
int nrmctl_top_model_add(const Nrm__V1__Event *ev, void *arg)
{
    nrmctl_top_model_t *self = arg;
    if (s_count_topic(self, ev) != 0)
        return -1;
    const char *case_id = ev->case_id ? ev->case_id : "";
    switch (ev->body_case) {
    case NRM__V1__EVENT__BODY_CASE_OPENED:
        return s_case_opened(self, case_id, ev->case_opened->region);
    case NRM__V1__EVENT__BODY_CASE_LINKED:
        return s_count_region(self, ev->case_linked->region, 1);
    case NRM__V1__EVENT__BODY_SHELTER_ALLOCATED:
        return s_count_region(self, ev->shelter_allocated->region, 1);
    case NRM__V1__EVENT__BODY_REFERRAL_CREATED:
        if (s_referral_created(self, ev->referral_created) != 0)
            return -1;
        return s_case_event(self, case_id);
    case NRM__V1__EVENT__BODY_REFERRAL_ACCEPTED:
    case NRM__V1__EVENT__BODY_REFERRAL_DECLINED:
    case NRM__V1__EVENT__BODY_REFERRAL_EXPIRED:
    case NRM__V1__EVENT__BODY_REFERRAL_COMPLETED:
    case NRM__V1__EVENT__BODY_REFERRAL_REVOKED:
    case NRM__V1__EVENT__BODY_REFERRAL_UNROUTABLE:
    case NRM__V1__EVENT__BODY_REFERRAL_DEADLINE_CHANGED:
        s_referral_moved(self, ev);
        return s_case_event(self, case_id);
    default:
        return 0;
    }
}

/* Replaces an answer by value (owned) or by the reason there is none. */
static void s_answer(s_answer_t *answer, json_t *value, const char *error)
{
    json_decref(answer->value);
    answer->value = value;
    answer->error = value ? NULL : error;
}

/* Why a reply carries no usable result: unavailable, coordinator only, or its status. */
static const char *s_why(const Nrm__V1__Reply *reply)
{
    if (!reply)
        return nrm_status_name(NRM_UNAVAILABLE);
    if (reply->status == NRM_PERMISSION_DENIED)
        return S_COORDINATOR_ONLY;
    return nrm_status_name(reply->status == NRM_OK ? NRM_INTERNAL : reply->status);
}

/* Adds one shelter to the counts of a region (or of all): shelters, capacity of the active
 * ones, occupied, held, free beds. */
static void s_add_shelter(json_t *counts, const Nrm__V1__ShelterState *s)
{
    int free_beds = s->active ? s->capacity - s->occupied - s->held : 0;
    const char *keys[] = {"shelters", "capacity", "occupied", "held", "free"};
    const json_int_t add[] = {1, s->active ? s->capacity : 0, s->occupied, s->held,
                              free_beds > 0 ? free_beds : 0};
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
        json_t *value = json_object_get(counts, keys[i]);
        if (value)
            json_integer_set(value, json_integer_value(value) + add[i]);
        else
            json_object_set_new(counts, keys[i], json_integer(add[i]));
    }
}

/* Public: shelters per region, all of them, and the waitlist. */
void nrmctl_top_model_set_occupancy(nrmctl_top_model_t *self, const Nrm__V1__Reply *reply)
{
    if (!reply || reply->status != NRM_OK ||
        reply->result_case != NRM__V1__REPLY__RESULT_OCCUPANCY) {
        s_answer(&self->shelters, NULL, s_why(reply));
        return;
    }
    const Nrm__V1__Occupancy *occupancy = reply->occupancy;
    json_t *regions = json_object(), *total = json_object();
    for (size_t i = 0; regions && total && i < occupancy->n_shelters; i++) {
        const Nrm__V1__ShelterState *s = occupancy->shelters[i];
        json_t *counts = json_object_get(regions, s->region);
        if (!counts) {
            counts = json_object();
            json_object_set_new(regions, s->region, counts);
        }
        s_add_shelter(counts, s);
        s_add_shelter(total, s);
    }
    json_t *value = json_pack("{s:o*, s:o*, s:i}", "regions", regions, "total", total, "waitlist",
                              (int)occupancy->waitlist);
    s_answer(&self->shelters, value, nrm_status_name(NRM_INTERNAL));
}

/* Public: the number of failed deliveries. */
void nrmctl_top_model_set_failed(nrmctl_top_model_t *self, const Nrm__V1__Reply *reply)
{
    if (!reply || reply->status != NRM_OK ||
        reply->result_case != NRM__V1__REPLY__RESULT_DELIVERY_LIST) {
        s_answer(&self->failed, NULL, s_why(reply));
        return;
    }
    s_answer(&self->failed, json_integer((json_int_t)reply->delivery_list->n_deliveries),
             nrm_status_name(NRM_INTERNAL));
}

/* Public: no answer is expected from service. */
void nrmctl_top_model_not_configured(nrmctl_top_model_t *self, const char *service)
{
    s_answer(strcmp(service, "shelter") == 0 ? &self->shelters : &self->failed, NULL,
             S_NOT_CONFIGURED);
}

/* Forgets the recent times of topic older than since; returns how many are left. */
static int64_t s_recent(s_topic_t *topic, int64_t since)
{
    size_t kept = 0;
    for (size_t i = 0; i < topic->n_recent; i++)
        if (topic->recent[i] >= since)
            topic->recent[kept++] = topic->recent[i];
    topic->n_recent = kept;
    return (int64_t)kept;
}

/* {TOPIC: {"total", "lastMinute"}}, forgetting what left the window. */
static json_t *s_topics(nrmctl_top_model_t *self, int64_t now_ms)
{
    json_t *topics = json_object();
    for (s_topic_t *t = zhashx_first(self->topics); topics && t; t = zhashx_next(self->topics))
        json_object_set_new(topics, zhashx_cursor(self->topics),
                            json_pack("{s:I, s:I}", "total", (json_int_t)t->total, "lastMinute",
                                      (json_int_t)s_recent(t, now_ms - NRMCTL_TOP_WINDOW_MS)));
    return topics;
}

/* {REGION: N}. */
static json_t *s_regions(nrmctl_top_model_t *self)
{
    json_t *regions = json_object();
    for (int64_t *n = zhashx_first(self->regions); regions && n; n = zhashx_next(self->regions))
        json_object_set_new(regions, zhashx_cursor(self->regions), json_integer((json_int_t)*n));
    return regions;
}

/* {SERVICE: {"pending", "accepted", "overdue"}} for every service referred to so far. */
static json_t *s_open_referrals(nrmctl_top_model_t *self, int64_t now_ms)
{
    json_int_t pending[S_SERVICE_LIMIT] = {0}, accepted[S_SERVICE_LIMIT] = {0},
               overdue[S_SERVICE_LIMIT] = {0};
    for (s_referral_t *r = zhashx_first(self->referrals); r; r = zhashx_next(self->referrals)) {
        accepted[r->service] += r->accepted;
        pending[r->service] += !r->accepted;
        overdue[r->service] += !r->accepted && r->due_ms > 0 && r->due_ms < now_ms;
    }
    json_t *open = json_object();
    for (int service = 0; open && service < S_SERVICE_LIMIT; service++) {
        if (!self->service_seen[service])
            continue;
        const ProtobufCEnumValue *value =
            protobuf_c_enum_descriptor_get_value(&nrm__v1__service_type__descriptor, service);
        json_object_set_new(open, value ? value->name : "SERVICE_TYPE_UNSPECIFIED",
                            json_pack("{s:I, s:I, s:I}", "pending", pending[service], "accepted",
                                      accepted[service], "overdue", overdue[service]));
    }
    return open;
}

/* The answer as JSON: its value, or {"error": WHY}. */
static json_t *s_answer_json(const s_answer_t *answer)
{
    if (answer->value)
        return json_incref(answer->value);
    return json_pack("{s:s}", "error", answer->error);
}

/* {"failed": N or null, "failedError": WHY, "deliveredPerMinute", "failedPerMinute"}. */
static json_t *s_deliveries(nrmctl_top_model_t *self)
{
    s_topic_t *delivered = zhashx_lookup(self->topics, S_DELIVERED_TOPIC);
    s_topic_t *failed = zhashx_lookup(self->topics, S_FAILED_TOPIC);
    json_t *deliveries = json_pack(
        "{s:O*, s:I, s:I}", "failed", self->failed.value ? self->failed.value : json_null(),
        "deliveredPerMinute", (json_int_t)(delivered ? delivered->n_recent : 0), "failedPerMinute",
        (json_int_t)(failed ? failed->n_recent : 0));
    if (deliveries && !self->failed.value)
        json_object_set_new(deliveries, "failedError", json_string(self->failed.error));
    return deliveries;
}

/* Public: counts only, as JSON. */
json_t *nrmctl_top_model_snapshot(nrmctl_top_model_t *self, int64_t now_ms)
{
    json_t *topics = s_topics(self, now_ms); /* first: it prunes the recent times */
    return json_pack("{s:o*, s:o*, s:o*, s:o*, s:o*}", "topics", topics, "regions", s_regions(self),
                     "openReferrals", s_open_referrals(self, now_ms), "shelters",
                     s_answer_json(&self->shelters), "deliveries", s_deliveries(self));
}
