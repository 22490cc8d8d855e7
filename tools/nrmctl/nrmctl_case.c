/* nrmctl_case: the case command: one view of a case assembled from the three services that
 * hold a part of it: intake's record (GetCase), routing's referrals (ListReferrals), shelter's
 * allocations (ListAllocations) and the case's timeline (its events in each stream, read with
 * Fetch by the common stream reader). A part the sender may not see, or a service that does not
 * answer it, leaves that part out and is named under "missing"; the rest is still shown.
 *
 *   case CASE_ID [--text]
 *
 * JSON (default): {"caseId", "case", "referrals": [...], "allocations": [...], "timeline":
 * [...], "missing": [{"part", "service", "status"}]}; --text: the same, to be read. */
#include "nrmctl_commands.h"
#include "nrmctl_lists.h"
#include "nrmctl_stream.h"
#include "nrm_alloc.h"
#include "nrm_json.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define S_TIMELINE_SERVICES 3
#define S_TIME_TEXT 32

static const char *const s_timeline_services[S_TIMELINE_SERVICES] = {"intake", "routing",
                                                                     "shelter"};

/* The view being assembled. */
typedef struct {
    const char *case_id;
    json_t *view;    /* the JSON document */
    json_t *missing; /* borrowed from view */
    int rc;          /* the worst exit code of the parts */
} s_case_t;

/* Records that a part could not be had from service, and why. */
static void s_missing(s_case_t *c, const char *part, const char *service, const char *status,
                      int rc)
{
    json_array_append_new(c->missing, json_pack("{s:s, s:s, s:s}", "part", part, "service", service,
                                                "status", status));
    c->rc = nrmctl_exit_worse(c->rc, rc == NRMCTL_EXIT_OK ? NRMCTL_EXIT_STATUS : rc);
}

/* The case's record from intake. */
static void s_record(nrmctl_t *ctl, s_case_t *c)
{
    Nrm__V1__GetCase get = NRM__V1__GET_CASE__INIT;
    get.case_id = (char *)c->case_id;
    Nrm__V1__Request req = NRM__V1__REQUEST__INIT;
    req.body_case = NRM__V1__REQUEST__BODY_GET_CASE;
    req.get_case = &get;
    Nrm__V1__Reply *reply = NULL;
    int rc = nrmctl_call(ctl, "intake", &req, &reply);
    if (rc != NRMCTL_EXIT_OK) {
        s_missing(c, "case", "intake", nrm_status_name(NRM_UNAVAILABLE), rc);
    } else if (reply->status != NRM_OK || reply->result_case != NRM__V1__REPLY__RESULT_CASE_VIEW) {
        s_missing(
            c, "case", "intake",
            nrm_status_name(reply->status != NRM_OK ? (nrm_status_t)reply->status : NRM_INTERNAL),
            NRMCTL_EXIT_STATUS);
    } else {
        json_object_set_new(c->view, "case", nrm_json_from_message(&reply->case_view->base));
    }
    if (reply)
        nrm__v1__reply__free_unpacked(reply, NULL);
}

/* Appends a row to the JSON array arg (nrmctl_row_fn). */
static int s_keep_row(const ProtobufCMessage *row, void *arg)
{
    json_array_append_new(arg, nrm_json_from_message(row));
    return NRMCTL_EXIT_OK;
}

/* One list part (every page) into view[part]. */
static void s_list(nrmctl_t *ctl, s_case_t *c, const char *part, const char *service,
                   Nrm__V1__Request *req, char **page_token, nrmctl_rows_fn rows_of)
{
    json_t *rows = json_array();
    Nrm__V1__Status status;
    int rc = nrmctl_list_pages(ctl, "case", service, req, page_token, true, rows_of, s_keep_row,
                               rows, &status);
    json_object_set_new(c->view, part, rows);
    if (rc != NRMCTL_EXIT_OK)
        s_missing(c, part, service, nrm_status_name((nrm_status_t)status), rc);
}

/* The case's referrals and allocations. */
static void s_lists(nrmctl_t *ctl, s_case_t *c)
{
    Nrm__V1__ListReferrals referrals = NRM__V1__LIST_REFERRALS__INIT;
    referrals.case_id = (char *)c->case_id;
    Nrm__V1__Request req = NRM__V1__REQUEST__INIT;
    req.body_case = NRM__V1__REQUEST__BODY_LIST_REFERRALS;
    req.list_referrals = &referrals;
    s_list(ctl, c, "referrals", "routing", &req, &referrals.page_token, nrmctl_referral_rows);
    Nrm__V1__ListAllocations allocations = NRM__V1__LIST_ALLOCATIONS__INIT;
    allocations.case_id = (char *)c->case_id;
    Nrm__V1__Request areq = NRM__V1__REQUEST__INIT;
    areq.body_case = NRM__V1__REQUEST__BODY_LIST_ALLOCATIONS;
    areq.list_allocations = &allocations;
    s_list(ctl, c, "allocations", "shelter", &areq, &allocations.page_token,
           nrmctl_allocation_rows);
}

/* Keeps the events of the case (nrmctl_event_fn; arg is the s_case_t). */
static int s_timeline_event(const Nrm__V1__Event *ev, void *arg)
{
    s_case_t *c = arg;
    if (ev->case_id && strcmp(ev->case_id, c->case_id) == 0)
        json_array_append_new(json_object_get(c->view, "timeline"),
                              nrm_json_from_message(&ev->base));
    return 0;
}

/* occurredAtMs of an event's JSON (a string, as 64-bit integers are). */
static int64_t s_occurred(const json_t *ev)
{
    const char *ms = json_string_value(json_object_get(ev, "occurredAtMs"));
    return ms ? strtoll(ms, NULL, 10) : 0;
}

static int s_by_time(const void *a, const void *b)
{
    int64_t x = s_occurred(*(json_t *const *)a), y = s_occurred(*(json_t *const *)b);
    return x < y ? -1 : x > y;
}

/* Sorts the timeline by the time events happened (each stream's order kept for ties). */
static void s_sort_timeline(json_t *timeline)
{
    size_t n = json_array_size(timeline);
    if (n < 2)
        return;
    json_t **events = nrm_xcalloc(n, sizeof *events);
    for (size_t i = 0; i < n; i++)
        events[i] = json_incref(json_array_get(timeline, i));
    /* insertion sort: stable, and a case has a few dozen events */
    for (size_t i = 1; i < n; i++)
        for (size_t k = i; k > 0 && s_by_time(&events[k - 1], &events[k]) > 0; k--) {
            json_t *t = events[k];
            events[k] = events[k - 1];
            events[k - 1] = t;
        }
    json_array_clear(timeline);
    for (size_t i = 0; i < n; i++)
        json_array_append_new(timeline, events[i]);
    free(events);
}

/* The case's events from each stream, from sequence 1 to the head. */
static void s_timeline(nrmctl_t *ctl, s_case_t *c)
{
    json_object_set_new(c->view, "timeline", json_array());
    nrm_stream_t *streams[2 * S_TIMELINE_SERVICES] = {0};
    int n = 0;
    int rc =
        nrmctl_streams_open(ctl, "case", s_timeline_services, S_TIMELINE_SERVICES, streams, &n);
    nrm_stream_sink_t sink = {
        .on_event = s_timeline_event, .on_problem = nrmctl_stream_problem, .arg = c};
    for (int i = 0; i < n; i++) {
        if (rc == NRMCTL_EXIT_OK && !nrm_stream_start_from(streams[i], 1, &sink)) {
            const char *why = nrm_stream_failure(streams[i]);
            s_missing(c, "timeline", nrm_stream_name(streams[i]),
                      why ? why : nrm_status_name(NRM_UNAVAILABLE),
                      why && strcmp(why, nrm_status_name(NRM_UNAVAILABLE)) != 0
                          ? NRMCTL_EXIT_STATUS
                          : NRMCTL_EXIT_UNAVAILABLE);
        }
        nrm_stream_destroy(&streams[i]);
    }
    if (rc != NRMCTL_EXIT_OK)
        s_missing(c, "timeline", "intake, routing, shelter", "no endpoints", rc);
    s_sort_timeline(json_object_get(c->view, "timeline"));
}

/* A time in milliseconds since the epoch as "YYYY-MM-DD HH:MM:SSZ" (UTC) into buf. */
static const char *s_time(const char *ms, char *buf, size_t size)
{
    time_t t = ms ? (time_t)(strtoll(ms, NULL, 10) / 1000) : 0;
    struct tm tm;
    if (!ms || !gmtime_r(&t, &tm) || strftime(buf, size, "%Y-%m-%d %H:%M:%SZ", &tm) == 0)
        snprintf(buf, size, "-");
    return buf;
}

/* A string member of obj, or dflt. */
static const char *s_str(const json_t *obj, const char *key, const char *dflt)
{
    const char *s = json_string_value(json_object_get(obj, key));
    return s ? s : dflt;
}

/* A JSON array of strings joined by ", " on out, or "-". */
static void s_print_list(FILE *out, const json_t *list)
{
    size_t i;
    json_t *item;
    if (json_array_size(list) == 0)
        fputs("-", out);
    json_array_foreach(list, i, item) fprintf(out, "%s%s", i ? ", " : "", json_string_value(item));
}

/* The case record, to be read. */
static void s_print_record(FILE *out, const json_t *k)
{
    char t[S_TIME_TEXT];
    fprintf(out, "  state %s, region %s, urgency %s, safety risk %s, minor %s\n",
            s_str(k, "state", "-"), s_str(k, "region", "-"), s_str(k, "urgency", "-"),
            s_str(k, "safetyRisk", "-"),
            json_is_true(json_object_get(k, "isMinor")) ? "yes" : "no");
    fprintf(out, "  case manager %s; reporters ", s_str(k, "caseManagerAgencyId", "-"));
    s_print_list(out, json_object_get(k, "reporterAgencyIds"));
    fprintf(out, "\n  needs ");
    s_print_list(out, json_object_get(k, "needs"));
    fprintf(out, "\n  consent to referral %s, to data sharing %s; opened %s\n",
            json_is_true(json_object_get(k, "consentToReferral")) ? "yes" : "no",
            json_is_true(json_object_get(k, "consentToDataSharing")) ? "yes" : "no",
            s_time(s_str(k, "openedAtMs", NULL), t, sizeof t));
}

/* The view, to be read (--text). */
static void s_print_text(FILE *out, const s_case_t *c)
{
    const json_t *v = c->view;
    char t[S_TIME_TEXT];
    size_t i;
    json_t *row;
    fprintf(out, "Case %s\n", c->case_id);
    const json_t *record = json_object_get(v, "case");
    if (record)
        s_print_record(out, record);
    const json_t *referrals = json_object_get(v, "referrals");
    fprintf(out, "Referrals (%zu)\n", json_array_size(referrals));
    json_array_foreach(referrals, i, row)
    {
        fprintf(out, "  %-18s %-9s attempt %" JSON_INTEGER_FORMAT "  %s  due %s  [%s]\n",
                s_str(row, "service", "-"), s_str(row, "state", "-"),
                json_integer_value(json_object_get(row, "attempt")),
                s_str(row, "providerAgencyId", "-"), s_time(s_str(row, "dueMs", NULL), t, sizeof t),
                s_str(row, "ruleId", "-"));
    }
    const json_t *allocations = json_object_get(v, "allocations");
    fprintf(out, "Allocations (%zu)\n", json_array_size(allocations));
    json_array_foreach(allocations, i, row)
    {
        fprintf(out, "  %-9s shelter %s (operator %s), beds %" JSON_INTEGER_FORMAT,
                s_str(row, "state", "-"), s_str(row, "shelterId", "-"),
                s_str(row, "operatorAgencyId", "-"),
                json_integer_value(json_object_get(row, "beds")));
        if (json_object_get(row, "waitlistPosition"))
            fprintf(out, ", waitlist place %" JSON_INTEGER_FORMAT,
                    json_integer_value(json_object_get(row, "waitlistPosition")));
        fprintf(out, "\n");
    }
    const json_t *timeline = json_object_get(v, "timeline");
    fprintf(out, "Timeline (%zu)\n", json_array_size(timeline));
    json_array_foreach(timeline, i, row)
    {
        fprintf(out, "  %s  %-8s %s\n", s_time(s_str(row, "occurredAtMs", NULL), t, sizeof t),
                s_str(row, "stream", "-"), s_str(row, "topic", "-"));
    }
    if (json_array_size(c->missing) > 0) {
        fprintf(out, "Missing\n");
        json_array_foreach(c->missing, i, row)
        {
            fprintf(out, "  %s from %s: %s\n", s_str(row, "part", "-"), s_str(row, "service", "-"),
                    s_str(row, "status", "-"));
        }
    }
    fflush(out);
}

/* Public: case CASE_ID [--text]. */
int nrmctl_case(nrmctl_t *ctl, int argc, char **argv)
{
    const char *case_id = NULL;
    bool text = false;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--text") == 0)
            text = true;
        else if (argv[i][0] == '-' || case_id)
            return nrmctl_usage_error(argv[0], "unknown argument %s", argv[i]);
        else
            case_id = argv[i];
    }
    if (!case_id || !case_id[0])
        return nrmctl_usage_error(argv[0], "a CASE_ID is needed");
    if (!nrmctl_config(ctl))
        return NRMCTL_EXIT_USAGE;
    s_case_t c = {case_id, json_object(), json_array(), NRMCTL_EXIT_OK};
    json_object_set_new(c.view, "caseId", json_string(case_id));
    s_record(ctl, &c);
    s_lists(ctl, &c);
    s_timeline(ctl, &c);
    json_object_set(c.view, "missing", c.missing);
    if (text)
        s_print_text(stdout, &c);
    else if (nrmctl_print_json(c.view) != 0)
        c.rc = nrmctl_exit_worse(c.rc, NRMCTL_EXIT_USAGE);
    json_decref(c.missing);
    json_decref(c.view);
    return c.rc;
}
