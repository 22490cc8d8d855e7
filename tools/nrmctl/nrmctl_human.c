/* nrmctl_human: one line of text per event, a formatter per topic (see nrmctl_human.h). */
#define _GNU_SOURCE /* open_memstream */
#include "nrmctl_human.h"
#include "nrm_event.h"
#include "nrm_json.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define S_MS_PER_S 1000
#define S_TOPIC_WIDTH 22 /* topics are padded to this width (a few are longer) */
#define S_TIME_MAX 32

/* Writes the essentials of one event's body to out. */
typedef void (*s_format_fn)(FILE *out, const Nrm__V1__Event *ev);

/* The short name of enum value number of desc, or the number. */
static void s_enum(FILE *out, const ProtobufCEnumDescriptor *desc, int number)
{
    const char *name = nrm_json_enum_short_name(desc, number);
    if (name)
        fputs(name, out);
    else
        fprintf(out, "%d", number);
}

/* The short name of enum value number of desc in lower case ("urgent"). */
static void s_enum_lower(FILE *out, const ProtobufCEnumDescriptor *desc, int number)
{
    const char *name = nrm_json_enum_short_name(desc, number);
    if (!name) {
        fprintf(out, "%d", number);
        return;
    }
    for (const char *c = name; *c; c++)
        fputc(*c >= 'A' && *c <= 'Z' ? *c - 'A' + 'a' : (*c == '_' ? ' ' : *c), out);
}

/* A list of enum values of desc joined by commas; "-" when empty. */
static void s_enums(FILE *out, const ProtobufCEnumDescriptor *desc, size_t n, const int *values)
{
    if (n == 0)
        fputc('-', out);
    for (size_t i = 0; i < n; i++) {
        if (i)
            fputc(',', out);
        s_enum(out, desc, values[i]);
    }
}

/* An id shortened to NRMCTL_HUMAN_ID_CHARS characters; "-" when empty. */
static void s_id(FILE *out, const char *id)
{
    if (!id || !id[0])
        fputc('-', out);
    else
        fprintf(out, "%.*s", NRMCTL_HUMAN_ID_CHARS, id);
}

/* A text field; "-" when empty. */
static const char *s_text(const char *text)
{
    return text && text[0] ? text : "-";
}

/* Local time of ms as HH:MM when it falls on today, else YYYY-MM-DD HH:MM. */
static void s_when(FILE *out, int64_t ms)
{
    time_t at = (time_t)(ms / S_MS_PER_S), now = time(NULL);
    struct tm tm_at, tm_now;
    char text[S_TIME_MAX];
    localtime_r(&at, &tm_at);
    localtime_r(&now, &tm_now);
    bool today = tm_at.tm_year == tm_now.tm_year && tm_at.tm_yday == tm_now.tm_yday;
    strftime(text, sizeof text, today ? "%H:%M" : "%Y-%m-%d %H:%M", &tm_at);
    fputs(text, out);
}

/* --- One formatter per topic ---------------------------------------------------------------- */

static void s_case_opened(FILE *out, const Nrm__V1__Event *ev)
{
    const Nrm__V1__CaseOpened *b = ev->case_opened;
    fprintf(out, "%s %s ", s_text(b->region), b->is_minor ? "minor" : "adult");
    if (b->profile && b->profile->gender)
        s_enum_lower(out, &nrm__v1__gender__descriptor, b->profile->gender);
    else
        fputs("gender?", out);
    fputc(' ', out);
    s_enums(out, &nrm__v1__exploitation_type__descriptor, b->n_exploitation_types,
            (const int *)b->exploitation_types);
    fputs(" needs ", out);
    s_enums(out, &nrm__v1__service_type__descriptor, b->n_needs, (const int *)b->needs);
    fputc(' ', out);
    s_enum_lower(out, &nrm__v1__urgency__descriptor, b->urgency);
    fputs(" risk ", out);
    s_enum_lower(out, &nrm__v1__safety_risk__descriptor, b->safety_risk);
    fprintf(out, " by %s", s_text(b->reporting_agency_id));
}

static void s_case_linked(FILE *out, const Nrm__V1__Event *ev)
{
    fprintf(out, "new report by %s in %s", s_text(ev->case_linked->reporting_agency_id),
            s_text(ev->case_linked->region));
}

static void s_case_updated(FILE *out, const Nrm__V1__Event *ev)
{
    const Nrm__V1__CaseUpdated *b = ev->case_updated;
    fputs("needs ", out);
    s_enums(out, &nrm__v1__service_type__descriptor, b->n_needs, (const int *)b->needs);
    fputc(' ', out);
    s_enum_lower(out, &nrm__v1__urgency__descriptor, b->urgency);
    fputs(" risk ", out);
    s_enum_lower(out, &nrm__v1__safety_risk__descriptor, b->safety_risk);
}

static void s_consent_withdrawn(FILE *out, const Nrm__V1__Event *ev)
{
    fputs(ev->consent_withdrawn->data_sharing_only ? "consent to data sharing withdrawn"
                                                   : "consent withdrawn",
          out);
}

static void s_case_closed(FILE *out, const Nrm__V1__Event *ev)
{
    fprintf(out, "closed: %s", s_text(ev->case_closed->reason));
}

static void s_manager_changed(FILE *out, const Nrm__V1__Event *ev)
{
    fprintf(out, "case manager %s", s_text(ev->case_manager_changed->case_manager_agency_id));
}

static void s_link_alert(FILE *out, const Nrm__V1__Event *ev)
{
    const Nrm__V1__CaseLinkAlert *b = ev->case_link_alert;
    fprintf(out, "%s linked %d reports in %d s", s_text(b->agency_id), b->links, b->window_s);
}

static void s_possible_duplicate(FILE *out, const Nrm__V1__Event *ev)
{
    const Nrm__V1__PossibleDuplicate *b = ev->possible_duplicate;
    fprintf(out, "possibly the same person as case %s (score %.2f)", s_text(b->other_case_id),
            b->score);
}

static void s_status_decided(FILE *out, const Nrm__V1__Event *ev)
{
    const Nrm__V1__StatusDecided *b = ev->status_decided;
    s_enum(out, &nrm__v1__trafficking_status__descriptor, b->status);
    fputs(" (was ", out);
    s_enum(out, &nrm__v1__trafficking_status__descriptor, b->previous_status);
    fprintf(out, ") by %s, decision %d", s_text(b->decided_by_agency_id), b->decision);
}

static void s_recovery_ending(FILE *out, const Nrm__V1__Event *ev)
{
    fputs("recovery period ends ", out);
    s_when(out, ev->recovery_period_ending->ends_at_ms);
    fprintf(out, ", manager %s", s_text(ev->recovery_period_ending->case_manager_agency_id));
}

static void s_identity_disclosed(FILE *out, const Nrm__V1__Event *ev)
{
    fprintf(out, "identity disclosed to %s", s_text(ev->identity_disclosed->agency_id));
}

static void s_identity_erased(FILE *out, const Nrm__V1__Event *ev)
{
    fprintf(out, "identity erased: %s", s_text(ev->identity_erased->reason));
}

static void s_referral_created(FILE *out, const Nrm__V1__Event *ev)
{
    const Nrm__V1__ReferralCreated *b = ev->referral_created;
    s_enum(out, &nrm__v1__service_type__descriptor, b->service);
    fprintf(out, " -> %s due ", s_text(b->provider_agency_id));
    s_when(out, b->due_ms);
    fputc(' ', out);
    s_enum_lower(out, &nrm__v1__urgency__descriptor, b->urgency);
    if (b->attempt > 1)
        fprintf(out, " attempt %d", b->attempt);
    fputs(" ref ", out);
    s_id(out, b->referral_id);
}

static void s_referral_accepted(FILE *out, const Nrm__V1__Event *ev)
{
    fprintf(out, "by %s ref ", s_text(ev->referral_accepted->provider_agency_id));
    s_id(out, ev->referral_accepted->referral_id);
}

static void s_referral_declined(FILE *out, const Nrm__V1__Event *ev)
{
    const Nrm__V1__ReferralDeclined *b = ev->referral_declined;
    fprintf(out, "by %s: ", s_text(b->provider_agency_id));
    s_enum(out, &nrm__v1__decline_reason__descriptor, b->decline_reason);
    fputs(" ref ", out);
    s_id(out, b->referral_id);
}

static void s_referral_expired(FILE *out, const Nrm__V1__Event *ev)
{
    fprintf(out, "%s did not answer ref ", s_text(ev->referral_expired->provider_agency_id));
    s_id(out, ev->referral_expired->referral_id);
}

static void s_deadline_changed(FILE *out, const Nrm__V1__Event *ev)
{
    const Nrm__V1__ReferralDeadlineChanged *b = ev->referral_deadline_changed;
    fprintf(out, "ref ");
    s_id(out, b->referral_id);
    fprintf(out, " to %s now due ", s_text(b->provider_agency_id));
    s_when(out, b->due_ms);
    fprintf(out, " (was ");
    s_when(out, b->previous_due_ms);
    fprintf(out, ")");
}

static void s_referral_completed(FILE *out, const Nrm__V1__Event *ev)
{
    const Nrm__V1__ReferralCompleted *b = ev->referral_completed;
    fputs(b->service_delivered ? "service delivered" : "service not delivered", out);
    if (b->reason && b->reason[0])
        fprintf(out, ": %s", b->reason);
    fputs(" ref ", out);
    s_id(out, b->referral_id);
}

static void s_referral_revoked(FILE *out, const Nrm__V1__Event *ev)
{
    fprintf(out, "revoked: %s ref ", s_text(ev->referral_revoked->reason));
    s_id(out, ev->referral_revoked->referral_id);
}

static void s_referral_unroutable(FILE *out, const Nrm__V1__Event *ev)
{
    s_enum(out, &nrm__v1__service_type__descriptor, ev->referral_unroutable->service);
    fprintf(out, ": %s", s_text(ev->referral_unroutable->reason));
}

static void s_shelter_requested(FILE *out, const Nrm__V1__Event *ev)
{
    const Nrm__V1__ShelterRequested *b = ev->shelter_requested;
    fprintf(out, "%d bed%s in %s %s ", b->beds, b->beds == 1 ? "" : "s", s_text(b->region),
            b->is_minor ? "minor" : "adult");
    s_enum_lower(out, &nrm__v1__urgency__descriptor, b->urgency);
    fputs(" risk ", out);
    s_enum_lower(out, &nrm__v1__safety_risk__descriptor, b->safety_risk);
}

static void s_shelter_allocated(FILE *out, const Nrm__V1__Event *ev)
{
    const Nrm__V1__ShelterAllocated *b = ev->shelter_allocated;
    fprintf(out, "shelter %s (%s) %d bed%s hold until ", s_text(b->shelter_id),
            s_text(b->operator_agency_id), b->beds, b->beds == 1 ? "" : "s");
    s_when(out, b->hold_until_ms);
}

static void s_shelter_waitlisted(FILE *out, const Nrm__V1__Event *ev)
{
    fprintf(out, "waitlist position %d: %s", ev->shelter_waitlisted->position,
            s_text(ev->shelter_waitlisted->reason));
}

static void s_shelter_released(FILE *out, const Nrm__V1__Event *ev)
{
    fprintf(out, "shelter %s released: %s", s_text(ev->shelter_released->shelter_id),
            s_text(ev->shelter_released->reason));
}

static void s_no_show(FILE *out, const Nrm__V1__Event *ev)
{
    fprintf(out, "no arrival at shelter %s: no bed and no request now (request-bed asks again)",
            s_text(ev->shelter_no_show->shelter_id));
}

static void s_request_withdrawn(FILE *out, const Nrm__V1__Event *ev)
{
    fprintf(out, "shelter request withdrawn: %s", s_text(ev->shelter_request_withdrawn->reason));
}

static void s_request_cancelled(FILE *out, const Nrm__V1__Event *ev)
{
    const Nrm__V1__ShelterRequestCancelled *b = ev->shelter_request_cancelled;
    if (b->allocation_id && b->allocation_id[0])
        fprintf(out, "hold at shelter %s cancelled: %s", s_text(b->shelter_id), s_text(b->reason));
    else
        fprintf(out, "waitlist place cancelled: %s", s_text(b->reason));
}

static void s_capacity_changed(FILE *out, const Nrm__V1__Event *ev)
{
    const Nrm__V1__ShelterCapacityChanged *b = ev->shelter_capacity_changed;
    fprintf(out, "shelter %s %d/%d beds occupied", s_text(b->shelter_id), b->occupied, b->capacity);
}

static void s_delivered(FILE *out, const Nrm__V1__Event *ev)
{
    const Nrm__V1__NotificationDelivered *b = ev->notification_delivered;
    fprintf(out, "%s %s to %s (%s #%lld) attempt %d", s_text(b->topic), s_text(b->subscription_id),
            s_text(b->agency_id), s_text(b->source_stream), (long long)b->source_seq, b->attempts);
}

static void s_failed(FILE *out, const Nrm__V1__Event *ev)
{
    const Nrm__V1__NotificationFailed *b = ev->notification_failed;
    fprintf(out, "%s %s to %s after %d attempts: %s", s_text(b->topic), s_text(b->subscription_id),
            s_text(b->agency_id), b->attempts, s_text(b->last_error));
}

static void s_plan_opened(FILE *out, const Nrm__V1__Event *ev)
{
    const Nrm__V1__PlanOpened *b = ev->plan_opened;
    fputs("plan ", out);
    s_id(out, b->plan_id);
    fputc(' ', out);
    s_enum(out, &nrm__v1__plan_kind__descriptor, b->kind);
    fprintf(out, " manager %s, %d follow-ups", s_text(b->manager_agency_id), b->followups);
}

static void s_goal_updated(FILE *out, const Nrm__V1__Event *ev)
{
    const Nrm__V1__GoalUpdated *b = ev->goal_updated;
    fputs("plan ", out);
    s_id(out, b->plan_id);
    fputs(" goal ", out);
    s_enum(out, &nrm__v1__goal_domain__descriptor, b->domain);
    fprintf(out, " %d/%d achieved, %d abandoned", b->achieved, b->milestones, b->abandoned);
}

static void s_return_updated(FILE *out, const Nrm__V1__Event *ev)
{
    const Nrm__V1__ReturnUpdated *b = ev->return_updated;
    fputs("plan ", out);
    s_id(out, b->plan_id);
    fprintf(out, " return to %s%s%s%s", s_text(b->country_of_return),
            b->travel_documents_obtained ? " documents" : "",
            b->departure_confirmed ? " departed" : "", b->arrival_confirmed ? " arrived" : "");
}

/* Follow-ups due and overdue share their fields. */
static void s_followup(FILE *out, const char *plan_id, int number, int64_t due_ms,
                       const char *manager)
{
    fputs("plan ", out);
    s_id(out, plan_id);
    fprintf(out, " follow-up %d due ", number);
    s_when(out, due_ms);
    fprintf(out, " manager %s", s_text(manager));
}

static void s_followup_due(FILE *out, const Nrm__V1__Event *ev)
{
    const Nrm__V1__FollowUpDue *b = ev->followup_due;
    s_followup(out, b->plan_id, b->number, b->due_ms, b->manager_agency_id);
}

static void s_followup_overdue(FILE *out, const Nrm__V1__Event *ev)
{
    const Nrm__V1__FollowUpOverdue *b = ev->followup_overdue;
    s_followup(out, b->plan_id, b->number, b->due_ms, b->manager_agency_id);
}

static void s_followup_recorded(FILE *out, const Nrm__V1__Event *ev)
{
    const Nrm__V1__FollowUpRecorded *b = ev->followup_recorded;
    fputs("plan ", out);
    s_id(out, b->plan_id);
    fprintf(out, " follow-up %d %s%s%s%s by %s", b->number,
            b->contact_made ? "contact made" : "no contact", b->safe_housing ? ", housed" : "",
            b->income ? ", income" : "", b->retrafficking_risk ? ", RE-TRAFFICKING RISK" : "",
            s_text(b->reporting_agency_id));
}

static void s_plan_closed(FILE *out, const Nrm__V1__Event *ev)
{
    fputs("plan ", out);
    s_id(out, ev->plan_closed->plan_id);
    fputc(' ', out);
    s_enum(out, &nrm__v1__plan_outcome__descriptor, ev->plan_closed->outcome);
}

static void s_plan_suspended(FILE *out, const Nrm__V1__Event *ev)
{
    fputs("plan ", out);
    s_id(out, ev->plan_suspended->plan_id);
    fputs(ev->plan_suspended->suspended ? " suspended" : " resumed", out);
}

static void s_risk_alert(FILE *out, const Nrm__V1__Event *ev)
{
    const Nrm__V1__RiskAlert *b = ev->risk_alert;
    fputs("plan ", out);
    s_id(out, b->plan_id);
    fprintf(out, " (%s) %s by %s", s_text(b->plan_state), s_text(b->reason),
            s_text(b->reporting_agency_id));
}

/* Every topic with its formatter. */
static const struct {
    Nrm__V1__Event__BodyCase body;
    s_format_fn format;
} s_formats[] = {
    {NRM__V1__EVENT__BODY_CASE_OPENED, s_case_opened},
    {NRM__V1__EVENT__BODY_CASE_LINKED, s_case_linked},
    {NRM__V1__EVENT__BODY_CASE_UPDATED, s_case_updated},
    {NRM__V1__EVENT__BODY_CONSENT_WITHDRAWN, s_consent_withdrawn},
    {NRM__V1__EVENT__BODY_CASE_CLOSED, s_case_closed},
    {NRM__V1__EVENT__BODY_CASE_MANAGER_CHANGED, s_manager_changed},
    {NRM__V1__EVENT__BODY_CASE_LINK_ALERT, s_link_alert},
    {NRM__V1__EVENT__BODY_POSSIBLE_DUPLICATE, s_possible_duplicate},
    {NRM__V1__EVENT__BODY_STATUS_DECIDED, s_status_decided},
    {NRM__V1__EVENT__BODY_RECOVERY_PERIOD_ENDING, s_recovery_ending},
    {NRM__V1__EVENT__BODY_IDENTITY_DISCLOSED, s_identity_disclosed},
    {NRM__V1__EVENT__BODY_IDENTITY_ERASED, s_identity_erased},
    {NRM__V1__EVENT__BODY_REFERRAL_CREATED, s_referral_created},
    {NRM__V1__EVENT__BODY_REFERRAL_ACCEPTED, s_referral_accepted},
    {NRM__V1__EVENT__BODY_REFERRAL_DECLINED, s_referral_declined},
    {NRM__V1__EVENT__BODY_REFERRAL_EXPIRED, s_referral_expired},
    {NRM__V1__EVENT__BODY_REFERRAL_COMPLETED, s_referral_completed},
    {NRM__V1__EVENT__BODY_REFERRAL_REVOKED, s_referral_revoked},
    {NRM__V1__EVENT__BODY_REFERRAL_UNROUTABLE, s_referral_unroutable},
    {NRM__V1__EVENT__BODY_REFERRAL_DEADLINE_CHANGED, s_deadline_changed},
    {NRM__V1__EVENT__BODY_SHELTER_REQUESTED, s_shelter_requested},
    {NRM__V1__EVENT__BODY_SHELTER_ALLOCATED, s_shelter_allocated},
    {NRM__V1__EVENT__BODY_SHELTER_WAITLISTED, s_shelter_waitlisted},
    {NRM__V1__EVENT__BODY_SHELTER_RELEASED, s_shelter_released},
    {NRM__V1__EVENT__BODY_SHELTER_CAPACITY_CHANGED, s_capacity_changed},
    {NRM__V1__EVENT__BODY_SHELTER_NO_SHOW, s_no_show},
    {NRM__V1__EVENT__BODY_SHELTER_REQUEST_WITHDRAWN, s_request_withdrawn},
    {NRM__V1__EVENT__BODY_SHELTER_REQUEST_CANCELLED, s_request_cancelled},
    {NRM__V1__EVENT__BODY_NOTIFICATION_DELIVERED, s_delivered},
    {NRM__V1__EVENT__BODY_NOTIFICATION_FAILED, s_failed},
    {NRM__V1__EVENT__BODY_PLAN_OPENED, s_plan_opened},
    {NRM__V1__EVENT__BODY_GOAL_UPDATED, s_goal_updated},
    {NRM__V1__EVENT__BODY_RETURN_UPDATED, s_return_updated},
    {NRM__V1__EVENT__BODY_FOLLOWUP_DUE, s_followup_due},
    {NRM__V1__EVENT__BODY_FOLLOWUP_OVERDUE, s_followup_overdue},
    {NRM__V1__EVENT__BODY_FOLLOWUP_RECORDED, s_followup_recorded},
    {NRM__V1__EVENT__BODY_PLAN_CLOSED, s_plan_closed},
    {NRM__V1__EVENT__BODY_PLAN_SUSPENDED, s_plan_suspended},
    {NRM__V1__EVENT__BODY_RISK_ALERT, s_risk_alert},
};

/* A topic without a formatter: its body (the event without its envelope) as compact JSON. */
static void s_generic(FILE *out, const Nrm__V1__Event *ev)
{
    static const char *const envelope[] = {"eventId", "stream",      "seq",  "occurredAtMs",
                                           "caseId",  "causationId", "topic"};
    json_t *json = nrm_json_from_message(&ev->base);
    for (size_t i = 0; json && i < sizeof envelope / sizeof envelope[0]; i++)
        json_object_del(json, envelope[i]);
    char *text = json ? json_dumps(json, JSON_COMPACT) : NULL;
    fputs(text ? text : "{}", out);
    free(text);
    json_decref(json);
}

/* Public: time, stream, topic, case, then the topic's formatter (or the generic one). */
char *nrmctl_human_line(const Nrm__V1__Event *ev, const char *stream, int stream_width)
{
    char *line = NULL;
    size_t size = 0;
    FILE *out = open_memstream(&line, &size);
    if (!out)
        return NULL;
    time_t at = (time_t)(ev->occurred_at_ms / S_MS_PER_S);
    struct tm tm_at;
    char clock[S_TIME_MAX];
    localtime_r(&at, &tm_at);
    strftime(clock, sizeof clock, "%H:%M:%S", &tm_at);
    const char *topic = ev->topic && ev->topic[0] ? ev->topic : nrm_event_topic_of(ev->body_case);
    fprintf(out, "%s %-*s %-*s ", clock, stream_width,
            s_text(ev->stream && ev->stream[0] ? ev->stream : stream), S_TOPIC_WIDTH,
            s_text(topic));
    fprintf(out, "%-*.*s ", NRMCTL_HUMAN_ID_CHARS, NRMCTL_HUMAN_ID_CHARS, s_text(ev->case_id));
    s_format_fn format = s_generic;
    for (size_t i = 0; i < sizeof s_formats / sizeof s_formats[0]; i++)
        if (s_formats[i].body == ev->body_case)
            format = s_formats[i].format;
    format(out, ev);
    if (fclose(out) != 0) {
        free(line);
        return NULL;
    }
    return line;
}
