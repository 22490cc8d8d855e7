/* Need to know: what an agency may follow beyond the events that concern it.
 *
 * Every agency hears what concerns it (notify_recipients.c: its referrals, its shelters, the
 * cases it reported) through any subscription it has, topics or none. Following topics broadly
 * ("case.", "referral.created") takes a grant of the configuration, "notify.grants": a list of
 * nrm.v1.SubscriptionGrant in JSON ({"agency_type": "COORDINATOR", "topics": [""]},
 * {"agency_id": "iom-ma", "topics": ["case.opened"], "regions": ["MA-04"]}). Without the
 * setting, COORDINATOR agencies may follow every topic and nobody else any.
 *
 * Grants are checked twice: an UpsertSubscription (or a configured subscription) whose topics no
 * grant of its agency covers is refused; and when an event's deliveries are made, a
 * subscription's topics deliver it only to an agency whose grants cover the event's topic and,
 * for a regional grant, its region (so a grant withdrawn by a reload, or a subscription stored
 * before grants existed, never hears more than it may). A delivery owed only by a subscription's
 * topics is checked a third time when it is claimed for an attempt, and again when an operator
 * retries it: one made under a grant that a reload withdrew meanwhile is dead-lettered unsent
 * (notify_deliveries.c). */
#include "notify.h"
#include "nrm_alloc.h"
#include "nrm_json.h"
#include "nrm_validate.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define S_SETTING "notify.grants"
#define S_TYPE_PREFIX "AGENCY_TYPE_"
#define S_TYPE_MAX 64
#define S_FIELD_MAX (NRM_ERROR_FIELD_MAX + 32)
#define S_REGION_FIELD "region"

struct notify_grants_t {
    Nrm__V1__SubscriptionGrant **items; /* owned */
    size_t n;
};

/* True when type is the name of an AgencyType without its prefix ("NGO"). */
static bool s_type_known(const char *type)
{
    char name[S_TYPE_MAX];
    if (snprintf(name, sizeof name, "%s%s", S_TYPE_PREFIX, type) >= (int)sizeof name ||
        strcmp(type, "UNSPECIFIED") == 0)
        return false;
    return protobuf_c_enum_descriptor_get_value_by_name(&nrm__v1__agency_type__descriptor, name) !=
           NULL;
}

/* A granted topic prefix: "" (every topic) or lower-case letters, '_' and '.'. */
static bool s_prefix_valid(const char *t)
{
    if (strlen(t) > NOTIFY_TOPIC_MAX)
        return false;
    for (const char *p = t; *p; p++)
        if (!islower((unsigned char)*p) && *p != '_' && *p != '.')
            return false;
    return true;
}

/* Checks grant i against the configuration. Returns OK or FAILED_PRECONDITION naming it. */
static nrm_status_t s_check(const Nrm__V1__SubscriptionGrant *g, size_t i, nrm_config_t *config,
                            nrm_error_t *err)
{
    char base[S_FIELD_MAX], field[S_FIELD_MAX];
    nrm_path_index(base, sizeof base, S_SETTING, i);
    bool by_id = g->agency_id[0] != '\0', by_type = g->agency_type[0] != '\0';
    if (by_id == by_type)
        return nrm_fail(err, NRM_FAILED_PRECONDITION, base,
                        "a grant names either agency_id or agency_type");
    snprintf(field, sizeof field, "%s.agency_id", base);
    if (by_id && !nrm_config_agency(config, g->agency_id))
        return nrm_fail(err, NRM_FAILED_PRECONDITION, field,
                        "agency_id is not a configured agency");
    snprintf(field, sizeof field, "%s.agency_type", base);
    if (by_type && !s_type_known(g->agency_type))
        return nrm_fail(err, NRM_FAILED_PRECONDITION, field,
                        "agency_type is an agency type (COORDINATOR, NGO, ...)");
    snprintf(field, sizeof field, "%s.topics", base);
    if (g->n_topics == 0)
        return nrm_fail(err, NRM_FAILED_PRECONDITION, field,
                        "a grant lists topic prefixes (\"\" for every topic)");
    for (size_t t = 0; t < g->n_topics; t++)
        if (!s_prefix_valid(g->topics[t]))
            return nrm_fail(err, NRM_FAILED_PRECONDITION,
                            nrm_path_index(base, sizeof base, field, t),
                            "a granted topic prefix has lower-case letters, '_' and '.' only");
    nrm_path_index(base, sizeof base, S_SETTING, i);
    snprintf(field, sizeof field, "%s.regions", base);
    for (size_t r = 0; r < g->n_regions; r++)
        if (!nrm_config_region_known(config, g->regions[r]))
            return nrm_fail(err, NRM_FAILED_PRECONDITION,
                            nrm_path_index(base, sizeof base, field, r),
                            "a granted region is one of the configured regions");
    return NRM_OK;
}

/* Parses one grant from JSON (a copy without "_comment"). NULL with err naming the entry. */
static Nrm__V1__SubscriptionGrant *s_parse(const json_t *entry, size_t i, nrm_error_t *err)
{
    char base[S_FIELD_MAX];
    nrm_path_index(base, sizeof base, S_SETTING, i);
    if (!json_is_object(entry)) {
        nrm_fail(err, NRM_FAILED_PRECONDITION, base, "a grant is an object");
        return NULL;
    }
    json_t *copy = json_deep_copy(entry);
    if (!copy) {
        nrm_fail(err, NRM_FAILED_PRECONDITION, base, "out of memory");
        return NULL;
    }
    json_object_del(copy, "_comment");
    nrm_error_t inner;
    Nrm__V1__SubscriptionGrant *g = (Nrm__V1__SubscriptionGrant *)nrm_json_to_message(
        &nrm__v1__subscription_grant__descriptor, copy, &inner);
    json_decref(copy);
    if (!g) {
        char field[S_FIELD_MAX + NRM_ERROR_FIELD_MAX];
        if (inner.field[0])
            snprintf(field, sizeof field, "%s.%s", base, inner.field);
        else
            snprintf(field, sizeof field, "%s", base);
        nrm_fail(err, NRM_FAILED_PRECONDITION, field, "not a grant: %s", inner.message);
    }
    return g;
}

nrm_status_t notify_grants_load(nrm_config_t *config, notify_grants_t **out, nrm_error_t *err)
{
    *out = NULL;
    json_t *list = nrm_config_get(config, S_SETTING);
    json_t *fallback = NULL;
    if (!list || json_is_null(list)) /* the default: coordinators everything, nobody else */
        list = fallback =
            json_pack("[{s:s, s:[s]}]", "agency_type", NOTIFY_COORDINATOR, "topics", "");
    if (!json_is_array(list)) {
        json_decref(fallback);
        return nrm_fail(err, NRM_FAILED_PRECONDITION, S_SETTING, "%s is a list of grants",
                        S_SETTING);
    }
    notify_grants_t *grants = nrm_xcalloc(1, sizeof *grants);
    size_t count = json_array_size(list);
    grants->items = nrm_xcalloc(count ? count : 1, sizeof *grants->items);
    nrm_status_t st = NRM_OK;
    for (size_t i = 0; st == NRM_OK && i < count; i++) {
        Nrm__V1__SubscriptionGrant *g = s_parse(json_array_get(list, i), i, err);
        if (!g) {
            st = NRM_FAILED_PRECONDITION;
            break;
        }
        grants->items[grants->n++] = g;
        st = s_check(g, i, config, err);
    }
    json_decref(fallback);
    if (st != NRM_OK) {
        notify_grants_destroy(&grants);
        return st;
    }
    *out = grants;
    return NRM_OK;
}

void notify_grants_destroy(notify_grants_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    notify_grants_t *self = *self_p;
    for (size_t i = 0; self->items && i < self->n; i++)
        protobuf_c_message_free_unpacked(&self->items[i]->base, NULL);
    free(self->items);
    free(self);
    *self_p = NULL;
}

/* True when grant g is for the agency (by id, or by its type; type may be NULL). */
static bool s_for(const Nrm__V1__SubscriptionGrant *g, const char *agency_id, const char *type)
{
    if (g->agency_id[0])
        return strcmp(g->agency_id, agency_id) == 0;
    return type && strcmp(g->agency_type, type) == 0;
}

/* True when one of g's prefixes starts topic (topic may itself be a prefix). */
static bool s_topic_granted(const Nrm__V1__SubscriptionGrant *g, const char *topic)
{
    for (size_t t = 0; t < g->n_topics; t++)
        if (strncmp(topic, g->topics[t], strlen(g->topics[t])) == 0)
            return true;
    return false;
}

/* True when g delivers events of region (any, for a grant without regions). */
static bool s_region_granted(const Nrm__V1__SubscriptionGrant *g, const char *region)
{
    if (g->n_regions == 0)
        return true;
    for (size_t r = 0; region && region[0] && r < g->n_regions; r++)
        if (strcmp(g->regions[r], region) == 0)
            return true;
    return false;
}

bool notify_grants_cover(const notify_grants_t *self, nrm_config_t *config, const char *agency_id,
                         const char *prefix)
{
    const char *type = nrm_config_agency_type(config, agency_id);
    for (size_t i = 0; self && i < self->n; i++)
        if (s_for(self->items[i], agency_id, type) && s_topic_granted(self->items[i], prefix))
            return true;
    return false;
}

/* True when a grant of the agency (of this type) delivers the topic in the region. */
static bool s_delivers(const notify_grants_t *self, const char *agency_id, const char *type,
                       const char *topic, const char *region)
{
    for (size_t i = 0; i < self->n; i++) {
        const Nrm__V1__SubscriptionGrant *g = self->items[i];
        if (s_for(g, agency_id, type) && s_topic_granted(g, topic) && s_region_granted(g, region))
            return true;
    }
    return false;
}

bool notify_grants_deliver(const notify_grants_t *self, nrm_config_t *config, const char *agency_id,
                           const Nrm__V1__Event *ev)
{
    return self && s_delivers(self, agency_id, nrm_config_agency_type(config, agency_id), ev->topic,
                              notify_event_region(ev));
}

char **notify_grants_broad(const notify_grants_t *self, nrm_config_t *config,
                           const Nrm__V1__Event *ev, size_t *n)
{
    *n = 0;
    size_t count = nrm_config_agency_count(config);
    char **ids = nrm_xcalloc(count ? count : 1, sizeof *ids);
    const char *region = notify_event_region(ev);
    for (size_t i = 0; self && i < count; i++) {
        json_t *agency = nrm_config_agency_at(config, i);
        const char *id = json_string_value(json_object_get(agency, "id"));
        const char *type = json_string_value(json_object_get(agency, "type"));
        if (id && s_delivers(self, id, type, ev->topic, region))
            ids[(*n)++] = (char *)id;
    }
    return ids;
}

const char *notify_event_region(const Nrm__V1__Event *ev)
{
    const ProtobufCMessage *body = notify_event_body(ev);
    if (!body)
        return "";
    const ProtobufCFieldDescriptor *f =
        protobuf_c_message_descriptor_get_field_by_name(body->descriptor, S_REGION_FIELD);
    if (!f || f->type != PROTOBUF_C_TYPE_STRING || f->label == PROTOBUF_C_LABEL_REPEATED)
        return "";
    const char *region = *(const char *const *)((const char *)body + f->offset);
    return region ? region : "";
}
