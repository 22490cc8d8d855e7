#include "nrm_alloc.h"
#include "nrm_event.h"

#include <stdlib.h>
#include <string.h>

typedef struct {
    Nrm__V1__Event__BodyCase body;
    const char *topic;
} s_topic_t;

static const s_topic_t s_topics[] = {
    {NRM__V1__EVENT__BODY_CASE_OPENED, "case.opened"},
    {NRM__V1__EVENT__BODY_CASE_LINKED, "case.linked"},
    {NRM__V1__EVENT__BODY_CASE_UPDATED, "case.updated"},
    {NRM__V1__EVENT__BODY_CONSENT_WITHDRAWN, "case.consent_withdrawn"},
    {NRM__V1__EVENT__BODY_CASE_CLOSED, "case.closed"},
    {NRM__V1__EVENT__BODY_CASE_MANAGER_CHANGED, "case.manager_changed"},
    {NRM__V1__EVENT__BODY_CASE_LINK_ALERT, "case.link_alert"},
    {NRM__V1__EVENT__BODY_STATUS_DECIDED, "case.status_decided"},
    {NRM__V1__EVENT__BODY_RECOVERY_PERIOD_ENDING, "case.recovery_period_ending"},
    {NRM__V1__EVENT__BODY_IDENTITY_DISCLOSED, "case.identity_disclosed"},
    {NRM__V1__EVENT__BODY_IDENTITY_ERASED, "case.identity_erased"},
    {NRM__V1__EVENT__BODY_POSSIBLE_DUPLICATE, "case.possible_duplicate"},
    {NRM__V1__EVENT__BODY_REFERRAL_CREATED, "referral.created"},
    {NRM__V1__EVENT__BODY_REFERRAL_ACCEPTED, "referral.accepted"},
    {NRM__V1__EVENT__BODY_REFERRAL_DECLINED, "referral.declined"},
    {NRM__V1__EVENT__BODY_REFERRAL_EXPIRED, "referral.expired"},
    {NRM__V1__EVENT__BODY_REFERRAL_COMPLETED, "referral.completed"},
    {NRM__V1__EVENT__BODY_REFERRAL_REVOKED, "referral.revoked"},
    {NRM__V1__EVENT__BODY_REFERRAL_UNROUTABLE, "referral.unroutable"},
    {NRM__V1__EVENT__BODY_AGREEMENT_ENDING, "routing.agreement_ending"},
    {NRM__V1__EVENT__BODY_REFERRAL_DEADLINE_CHANGED, "referral.deadline_changed"},
    {NRM__V1__EVENT__BODY_SHELTER_REQUESTED, "shelter.requested"},
    {NRM__V1__EVENT__BODY_SHELTER_ALLOCATED, "shelter.allocated"},
    {NRM__V1__EVENT__BODY_SHELTER_WAITLISTED, "shelter.waitlisted"},
    {NRM__V1__EVENT__BODY_SHELTER_RELEASED, "shelter.released"},
    {NRM__V1__EVENT__BODY_SHELTER_CAPACITY_CHANGED, "shelter.capacity_changed"},
    {NRM__V1__EVENT__BODY_SHELTER_NO_SHOW, "shelter.no_show"},
    {NRM__V1__EVENT__BODY_SHELTER_REQUEST_WITHDRAWN, "shelter.request_withdrawn"},
    {NRM__V1__EVENT__BODY_SHELTER_REQUEST_CANCELLED, "shelter.request_cancelled"},
    {NRM__V1__EVENT__BODY_NOTIFICATION_DELIVERED, "notification.delivered"},
    {NRM__V1__EVENT__BODY_NOTIFICATION_FAILED, "notification.failed"},
    {NRM__V1__EVENT__BODY_PLAN_OPENED, "reintegration.plan_opened"},
    {NRM__V1__EVENT__BODY_GOAL_UPDATED, "reintegration.goal_updated"},
    {NRM__V1__EVENT__BODY_RETURN_UPDATED, "reintegration.return_updated"},
    {NRM__V1__EVENT__BODY_FOLLOWUP_DUE, "reintegration.followup_due"},
    {NRM__V1__EVENT__BODY_FOLLOWUP_OVERDUE, "reintegration.followup_overdue"},
    {NRM__V1__EVENT__BODY_FOLLOWUP_RECORDED, "reintegration.followup_recorded"},
    {NRM__V1__EVENT__BODY_PLAN_CLOSED, "reintegration.plan_closed"},
    {NRM__V1__EVENT__BODY_PLAN_SUSPENDED, "reintegration.plan_suspended"},
    {NRM__V1__EVENT__BODY_RISK_ALERT, "reintegration.risk_alert"},
    {NRM__V1__EVENT__BODY_AGENCY_UPSERTED, "directory.agency_upserted"},
    {NRM__V1__EVENT__BODY_STREAM_HEAD, NRM_TOPIC_STREAM_HEAD},
    {NRM__V1__EVENT__BODY_CONSUMER_QUARANTINED, "consumer.quarantined"},
};
#define S_TOPIC_COUNT (sizeof s_topics / sizeof s_topics[0])

const char *nrm_event_topic_of(Nrm__V1__Event__BodyCase body)
{
    for (size_t i = 0; i < S_TOPIC_COUNT; i++)
        if (s_topics[i].body == body)
            return s_topics[i].topic;
    return NULL;
}

Nrm__V1__Event__BodyCase nrm_event_body_of(const char *topic)
{
    for (size_t i = 0; topic && i < S_TOPIC_COUNT; i++)
        if (strcmp(s_topics[i].topic, topic) == 0)
            return s_topics[i].body;
    return NRM__V1__EVENT__BODY__NOT_SET;
}

uint8_t *nrm_event_pack(const Nrm__V1__Event *ev, size_t *len)
{
    *len = nrm__v1__event__get_packed_size(ev);
    uint8_t *buf = nrm_xmalloc(*len ? *len : 1);
    nrm__v1__event__pack(ev, buf);
    return buf;
}

Nrm__V1__Event *nrm_event_unpack(const void *data, size_t len)
{
    return nrm__v1__event__unpack(NULL, len, data);
}

bool nrm_topic_matches(const char *topic, const char *const *prefixes)
{
    if (!prefixes || !prefixes[0])
        return true;
    for (size_t i = 0; prefixes[i]; i++)
        if (strncmp(topic, prefixes[i], strlen(prefixes[i])) == 0)
            return true;
    return false;
}

/* Protobuf wire encoding of Event.seq: field 3, varint. */
#define S_SEQ_TAG ((3 << 3) | 0)
#define S_VARINT_MAX 10

uint8_t *nrm_event_with_seq(const uint8_t *stored, size_t len, int64_t seq, size_t *out_len)
{
    uint8_t *out = nrm_xmalloc(len + 1 + S_VARINT_MAX);
    memcpy(out, stored, len);
    size_t n = len;
    out[n++] = S_SEQ_TAG;
    uint64_t v = (uint64_t)seq;
    while (v >= 0x80) {
        out[n++] = (uint8_t)(v | 0x80);
        v >>= 7;
    }
    out[n++] = (uint8_t)v;
    *out_len = n;
    return out;
}
