/* Email: a plain-text message from the templates notify.email.subject and notify.email.body,
 * sent through the SMTP relay notify.smtp.* with libcurl. The templates know a closed set of
 * placeholders, all ids, codes and times from the event: {{topic}}, {{case_id}}, {{event_id}},
 * {{stream}}, {{seq}}, {{time}}, {{delivery_id}}, {{agency_id}}, {{summary}} (one sentence per
 * topic) and {{details}} (lines for a fixed list of the body's ids and codes: never a profile,
 * a reason or any free text). Events carry no identifying data, and mail is less protected than
 * a signed webhook, so an email says what happened and where to look, not more. */
#include "notify.h"
#include "nrm_alloc.h"
#include "nrm_json.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define S_OPEN "{{"
#define S_CLOSE "}}"
#define S_NAME_MAX 32
#define S_LINE_MAX 256
#define S_NUMBER_MAX 24
#define S_INITIAL_CAPACITY 1024

static const char *const s_placeholders[] = {"topic",   "case_id", "event_id",    "stream",
                                             "seq",     "time",    "delivery_id", "agency_id",
                                             "summary", "details", NULL};

typedef struct {
    const char *topic;
    const char *sentence;
} s_summary_t;

static const s_summary_t s_summaries[] = {
    {"case.opened", "A case was opened."},
    {"case.linked", "Another agency reported the person of this case; the report joined it."},
    {"case.updated", "The case was updated."},
    {"case.consent_withdrawn",
     "Consent was withdrawn: to referral (open referrals are revoked), or to"
     " data sharing only (referrals stay)."},
    {"case.identity_disclosed", "The identity of the person was disclosed to an agency."},
    {"case.identity_erased", "The identity of the person was erased."},
    {"case.closed", "The case was closed."},
    {"referral.created", "A referral awaits an answer from the provider."},
    {"referral.accepted", "A referral was accepted."},
    {"referral.declined", "A referral was declined."},
    {"referral.expired", "A referral expired without an answer."},
    {"referral.completed", "A referral was completed."},
    {"referral.revoked", "A referral was revoked."},
    {"referral.unroutable", "No provider is left for a needed service: the coordinator must act."},
    {"routing.agreement_ending", "A partnership agreement ends within 30 days."},
    {"shelter.requested", "A shelter place was requested."},
    {"shelter.allocated", "A shelter place was allocated."},
    {"shelter.waitlisted", "The request for a shelter place was waitlisted."},
    {"shelter.released", "A shelter place was released."},
    {"shelter.capacity_changed", "The capacity of a shelter changed."},
};

/* The body fields an email may show (proto3 JSON names) and their labels. */
typedef struct {
    const char *key;
    const char *label;
} s_detail_t;

static const s_detail_t s_details[] = {
    {"referralId", "Referral"},
    {"allocationId", "Allocation"},
    {"shelterId", "Shelter"},
    {"service", "Service"},
    {"region", "Region"},
    {"urgency", "Urgency"},
    {"providerAgencyId", "Provider"},
    {"operatorAgencyId", "Shelter operator"},
    {"reportingAgencyId", "Reporting agency"},
    {"declineReason", "Decline reason"},
    {"serviceDelivered", "Service delivered"},
    {"attempt", "Attempt"},
    {"beds", "Beds"},
    {"position", "Waitlist position"},
    {"capacity", "Capacity"},
    {"occupied", "Occupied"},
    {"dueMs", "Answer due"},
    {"holdUntilMs", "Held until"},
};

/* A growing text. */
typedef struct {
    char *data;
    size_t len;
    size_t cap;
} s_text_t;

/* Appends n bytes of s. Aborts when out of memory. */
static void s_append(s_text_t *t, const char *s, size_t n)
{
    if (t->len + n + 1 > t->cap) {
        size_t cap = t->cap ? t->cap : S_INITIAL_CAPACITY;
        while (t->len + n + 1 > cap)
            cap *= 2;
        char *data = nrm_xrealloc(t->data, cap);
        t->data = data;
        t->cap = cap;
    }
    memcpy(t->data + t->len, s, n);
    t->len += n;
    t->data[t->len] = '\0';
}

/* Appends a C string. */
static void s_add(s_text_t *t, const char *s)
{
    s_append(t, s, strlen(s));
}

/* Appends text with every line ending turned into CRLF. */
static void s_add_crlf(s_text_t *t, const char *s)
{
    for (; *s; s++) {
        if (*s == '\r')
            continue;
        if (*s == '\n')
            s_append(t, "\r\n", 2);
        else
            s_append(t, s, 1);
    }
}

/* The summary sentence of a topic. Static. */
static const char *s_summary(const char *topic)
{
    for (size_t i = 0; i < sizeof s_summaries / sizeof s_summaries[0]; i++)
        if (strcmp(s_summaries[i].topic, topic) == 0)
            return s_summaries[i].sentence;
    return "An event occurred.";
}

/* Appends one "Label: value" line per allowed field the event's body has. */
static void s_add_details(s_text_t *t, const Nrm__V1__Event *ev)
{
    const ProtobufCMessage *body = notify_event_body(ev);
    json_t *data = body ? nrm_json_from_message(body) : NULL;
    for (size_t i = 0; data && i < sizeof s_details / sizeof s_details[0]; i++) {
        json_t *v = json_object_get(data, s_details[i].key);
        char value[S_LINE_MAX], line[2 * S_LINE_MAX];
        size_t key_len = strlen(s_details[i].key);
        bool time_ms = key_len > 2 && strcmp(s_details[i].key + key_len - 2, "Ms") == 0;
        if (json_is_string(v) && time_ms)
            notify_time_text(strtoll(json_string_value(v), NULL, 10), value);
        else if (json_is_string(v))
            snprintf(value, sizeof value, "%s", json_string_value(v));
        else if (json_is_integer(v))
            snprintf(value, sizeof value, "%lld", (long long)json_integer_value(v));
        else if (json_is_boolean(v))
            snprintf(value, sizeof value, "%s", json_is_true(v) ? "yes" : "no");
        else
            continue;
        snprintf(line, sizeof line, "%s: %s\n", s_details[i].label, value);
        s_add(t, line);
    }
    json_decref(data);
}

/* Appends the value of placeholder name for d. */
static void s_add_value(s_text_t *t, const char *name, const notify_delivery_t *d)
{
    const Nrm__V1__Event *ev = d->event;
    char buf[S_NUMBER_MAX + NOTIFY_TIME_MAX];
    if (strcmp(name, "topic") == 0)
        s_add(t, d->topic);
    else if (strcmp(name, "case_id") == 0)
        s_add(t, d->case_id[0] ? d->case_id : "-");
    else if (strcmp(name, "event_id") == 0)
        s_add(t, d->event_id);
    else if (strcmp(name, "stream") == 0)
        s_add(t, d->source_stream);
    else if (strcmp(name, "delivery_id") == 0)
        s_add(t, d->delivery_id);
    else if (strcmp(name, "agency_id") == 0)
        s_add(t, d->agency_id);
    else if (strcmp(name, "summary") == 0)
        s_add(t, s_summary(d->topic));
    else if (strcmp(name, "seq") == 0) {
        snprintf(buf, sizeof buf, "%lld", (long long)d->source_seq);
        s_add(t, buf);
    } else if (strcmp(name, "time") == 0 && ev) {
        notify_time_text(ev->occurred_at_ms, buf);
        s_add(t, buf);
    } else if (strcmp(name, "details") == 0 && ev) {
        s_add_details(t, ev);
    }
}

/* Renders template for d into out; with out NULL (and d NULL) only checks it. Returns false at
 * the first unknown or unterminated placeholder, its name copied into bad. */
static bool s_render(const char *template, const notify_delivery_t *d, s_text_t *out,
                     char bad[S_NAME_MAX])
{
    const char *p = template;
    for (;;) {
        const char *open = strstr(p, S_OPEN);
        if (!open) {
            if (out)
                s_add(out, p);
            return true;
        }
        if (out)
            s_append(out, p, (size_t)(open - p));
        const char *name = open + strlen(S_OPEN);
        const char *close = strstr(name, S_CLOSE);
        size_t n = close ? (size_t)(close - name) : 0;
        char key[S_NAME_MAX];
        snprintf(key, sizeof key, "%.*s", (int)(n < sizeof key ? n : sizeof key - 1), name);
        bool known = false;
        for (size_t i = 0; close && n < sizeof key && s_placeholders[i]; i++)
            known |= strcmp(key, s_placeholders[i]) == 0;
        if (!known) {
            snprintf(bad, S_NAME_MAX, "%s", close ? key : "(unterminated)");
            return false;
        }
        if (out)
            s_add_value(out, key, d);
        p = close + strlen(S_CLOSE);
    }
}

nrm_status_t notify_email_check_templates(const notify_settings_t *s, nrm_error_t *err)
{
    char bad[S_NAME_MAX];
    if (strchr(s->email_subject, '\r') || strchr(s->email_subject, '\n'))
        return nrm_fail(err, NRM_FAILED_PRECONDITION, "notify.email.subject",
                        "the subject template is one line");
    if (!s_render(s->email_subject, NULL, NULL, bad))
        return nrm_fail(err, NRM_FAILED_PRECONDITION, "notify.email.subject",
                        "unknown placeholder {{%s}}", bad);
    if (!s_render(s->email_body, NULL, NULL, bad))
        return nrm_fail(err, NRM_FAILED_PRECONDITION, "notify.email.body",
                        "unknown placeholder {{%s}}", bad);
    return NRM_OK;
}

char *notify_email_message(const notify_delivery_t *d, const notify_settings_t *s, size_t *len)
{
    s_text_t msg = {0}, subject = {0}, body = {0};
    char bad[S_NAME_MAX], line[S_LINE_MAX + NOTIFY_EMAIL_MAX], date[S_LINE_MAX];
    s_render(s->email_subject, d, &subject, bad);
    s_render(s->email_body, d, &body, bad);
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(date, sizeof date, "%a, %d %b %Y %H:%M:%S +0000", &tm);
    snprintf(line, sizeof line, "Date: %s\r\nFrom: <%s>\r\nTo: <%s>\r\n", date, s->smtp_from,
             d->address);
    s_add(&msg, line);
    s_add(&msg, "Subject: ");
    s_add(&msg, subject.data ? subject.data : "");
    snprintf(line, sizeof line,
             "\r\nMessage-ID: <%s@nrm-notify>\r\nX-NRM-Delivery: %s\r\nMIME-Version: 1.0\r\n"
             "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n",
             d->delivery_id, d->delivery_id);
    s_add(&msg, line);
    s_add_crlf(&msg, body.data ? body.data : "");
    free(subject.data);
    free(body.data);
    *len = msg.len;
    return msg.data;
}

/* Hands curl the next part of the message. */
static size_t s_read(char *buf, size_t size, size_t n, void *arg)
{
    notify_delivery_t *d = arg;
    size_t room = size * n, left = d->body_len - d->body_sent;
    size_t chunk = left < room ? left : room;
    memcpy(buf, d->body + d->body_sent, chunk);
    d->body_sent += chunk;
    return chunk;
}

int notify_email_prepare(notify_delivery_t *d, const notify_settings_t *s)
{
    if (!d->event) {
        snprintf(d->error, sizeof d->error, "the event to deliver is not stored");
        return -1;
    }
    char path[NOTIFY_EMAIL_MAX + 3];
    snprintf(path, sizeof path, "<%s>", d->address);
    d->recipients = curl_slist_append(NULL, path);
    d->body = notify_email_message(d, s, &d->body_len);
    d->easy = d->recipients && d->body ? curl_easy_init() : NULL;
    if (!d->easy) {
        snprintf(d->error, sizeof d->error, "out of memory");
        return -1;
    }
    char from[NOTIFY_EMAIL_MAX + 3];
    snprintf(from, sizeof from, "<%s>", s->smtp_from);
    long tls = strcmp(s->smtp_tls, "none") == 0  ? (long)CURLUSESSL_NONE
               : strcmp(s->smtp_tls, "try") == 0 ? (long)CURLUSESSL_TRY
                                                 : (long)CURLUSESSL_ALL;
    CURL *e = d->easy;
    curl_easy_setopt(e, CURLOPT_URL, s->smtp_url);
    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "smtp,smtps");
    curl_easy_setopt(e, CURLOPT_USE_SSL, tls);
    curl_easy_setopt(e, CURLOPT_MAIL_FROM, from);
    curl_easy_setopt(e, CURLOPT_MAIL_RCPT, d->recipients);
    if (s->smtp_username[0]) {
        curl_easy_setopt(e, CURLOPT_USERNAME, s->smtp_username);
        curl_easy_setopt(e, CURLOPT_PASSWORD, s->smtp_password);
    }
    curl_easy_setopt(e, CURLOPT_UPLOAD, 1L);
    curl_easy_setopt(e, CURLOPT_READFUNCTION, s_read);
    curl_easy_setopt(e, CURLOPT_READDATA, d);
    curl_easy_setopt(e, CURLOPT_INFILESIZE_LARGE, (curl_off_t)d->body_len);
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long)s->timeout_ms);
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, (long)s->connect_timeout_ms);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_PRIVATE, d);
    return 0;
}

void notify_email_outcome(notify_delivery_t *d, CURLcode result)
{
    long code = 0;
    curl_easy_getinfo(d->easy, CURLINFO_RESPONSE_CODE, &code);
    d->ok = result == CURLE_OK;
    if (!d->ok)
        snprintf(d->error, sizeof d->error, "%s (SMTP %ld)", curl_easy_strerror(result), code);
}
