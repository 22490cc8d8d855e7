/* Webhooks: an HTTP POST whose body is a CloudEvents 1.0 event in structured JSON mode
 *   {"specversion": "1.0", "id": <event_id>, "source": "/nrm/<stream>", "type": <topic>,
 *    "subject": <case_id>, "time": <RFC 3339>, "datacontenttype": "application/json",
 *    "data": <the event body in proto3 JSON>}
 * signed with X-NRM-Signature: sha256=<hex HMAC-SHA256(secret, body)> and identified by
 * X-NRM-Delivery: <delivery_id>, the same on every attempt so that receivers drop duplicates.
 * A 2xx answer within the timeout is a delivery; redirects are not followed, proxies from the
 * environment are not used, and the address connected to is checked by
 * notify_destination_address_allowed (libcurl's open-socket callback, after name resolution).
 * A failure is recorded as "HTTP <status>", "connection failed" (whatever went wrong on the
 * way: refused, unreachable, timed out, TLS) or "destination refused", never finer, so that
 * last_error cannot be used to scan the network behind notify. */
#include "notify.h"
#include "nrm_json.h"

#include <sodium.h>

#include <sys/socket.h>

#include <stdio.h>
#include <string.h>
#include <time.h>

#define S_HEADER_MAX 256
#define S_MS_PER_S 1000
#define S_DATE_MAX 24 /* "YYYY-MM-DDTHH:MM:SS" and some */
#define S_HTTP_OK_LOW 200
#define S_HTTP_OK_HIGH 299
#define S_SIGNATURE_PREFIX "sha256="
#define S_CONTENT_TYPE "Content-Type: application/cloudevents+json; charset=utf-8"

const ProtobufCMessage *notify_event_body(const Nrm__V1__Event *ev)
{
    const ProtobufCFieldDescriptor *f =
        protobuf_c_message_descriptor_get_field(&nrm__v1__event__descriptor, ev->body_case);
    if (!f || f->type != PROTOBUF_C_TYPE_MESSAGE)
        return NULL;
    return *(const ProtobufCMessage *const *)((const char *)ev + f->offset);
}

void notify_time_text(int64_t ms, char out[NOTIFY_TIME_MAX])
{
    if (ms < 0)
        ms = 0;
    time_t seconds = (time_t)(ms / S_MS_PER_S);
    struct tm tm;
    gmtime_r(&seconds, &tm);
    char date[S_DATE_MAX];
    strftime(date, sizeof date, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(out, NOTIFY_TIME_MAX, "%.20s.%03uZ", date, (unsigned)(ms % S_MS_PER_S));
}

char *notify_webhook_body(const notify_delivery_t *d, size_t *len)
{
    const Nrm__V1__Event *ev = d->event;
    char source[S_HEADER_MAX], time_text[NOTIFY_TIME_MAX];
    snprintf(source, sizeof source, "/nrm/%s", ev->stream);
    notify_time_text(ev->occurred_at_ms, time_text);
    const ProtobufCMessage *body = notify_event_body(ev);
    json_t *data = body ? nrm_json_from_message(body) : json_object();
    json_t *root = json_object();
    if (!data || !root) {
        json_decref(data);
        json_decref(root);
        return NULL;
    }
    json_object_set_new(root, "specversion", json_string("1.0"));
    json_object_set_new(root, "id", json_string(ev->event_id));
    json_object_set_new(root, "source", json_string(source));
    json_object_set_new(root, "type", json_string(ev->topic));
    if (ev->case_id && ev->case_id[0])
        json_object_set_new(root, "subject", json_string(ev->case_id));
    json_object_set_new(root, "time", json_string(time_text));
    json_object_set_new(root, "datacontenttype", json_string("application/json"));
    json_object_set_new(root, "data", data);
    char *text = json_dumps(root, JSON_COMPACT);
    json_decref(root);
    if (text)
        *len = strlen(text);
    return text;
}

void notify_webhook_signature(const char *secret, const char *body, size_t len,
                              char out[NOTIFY_SIGNATURE_MAX])
{
    unsigned char mac[crypto_auth_hmacsha256_BYTES];
    crypto_auth_hmacsha256_state state;
    crypto_auth_hmacsha256_init(&state, (const unsigned char *)secret, strlen(secret));
    crypto_auth_hmacsha256_update(&state, (const unsigned char *)body, len);
    crypto_auth_hmacsha256_final(&state, mac);
    sodium_memzero(&state, sizeof state);
    size_t prefix = strlen(S_SIGNATURE_PREFIX);
    memcpy(out, S_SIGNATURE_PREFIX, prefix);
    sodium_bin2hex(out + prefix, NOTIFY_SIGNATURE_MAX - prefix, mac, sizeof mac);
}

/* Drops whatever the receiver answers. */
static size_t s_discard(char *data, size_t size, size_t n, void *arg)
{
    (void)data;
    (void)arg;
    return size * n;
}

/* Appends the header "name: value" (or the line name when value is NULL) to d->headers.
 * Returns 0 or -1. */
static int s_header(notify_delivery_t *d, const char *name, const char *value)
{
    char line[S_HEADER_MAX];
    if (value && snprintf(line, sizeof line, "%s: %s", name, value) >= (int)sizeof line)
        return -1;
    struct curl_slist *more = curl_slist_append(d->headers, value ? line : name);
    if (!more)
        return -1;
    d->headers = more;
    return 0;
}

/* libcurl's open-socket callback: a socket for the address curl resolved and is about to
 * connect to, or CURL_SOCKET_BAD (curl then reports a connection failure) when the address is
 * refused; the delivery (clientp) remembers the refusal. */
static curl_socket_t s_open_socket(void *clientp, curlsocktype purpose,
                                   struct curl_sockaddr *address)
{
    notify_delivery_t *d = clientp;
    if (purpose != CURLSOCKTYPE_IPCXN ||
        !notify_destination_address_allowed(d->settings->webhook_allow, &address->addr)) {
        d->refused = true;
        return CURL_SOCKET_BAD;
    }
    return socket(address->family, address->socktype, address->protocol);
}

int notify_webhook_prepare(notify_delivery_t *d, const notify_settings_t *s)
{
    if (!d->event) {
        snprintf(d->error, sizeof d->error, "the event to deliver is not stored");
        return -1;
    }
    if (d->secret_unreadable || !d->secret) {
        snprintf(d->error, sizeof d->error, "the webhook secret cannot be opened with the keyring");
        return -1;
    }
    d->settings = s;
    d->refused = false;
    d->body = notify_webhook_body(d, &d->body_len);
    d->easy = d->body ? curl_easy_init() : NULL;
    if (!d->easy) {
        snprintf(d->error, sizeof d->error, "out of memory");
        return -1;
    }
    char signature[NOTIFY_SIGNATURE_MAX], attempt[S_HEADER_MAX];
    notify_webhook_signature(d->secret, d->body, d->body_len, signature);
    snprintf(attempt, sizeof attempt, "%d", d->attempts);
    if (s_header(d, S_CONTENT_TYPE, NULL) != 0 ||
        s_header(d, "X-NRM-Delivery", d->delivery_id) != 0 ||
        s_header(d, "X-NRM-Signature", signature) != 0 ||
        s_header(d, "X-NRM-Attempt", attempt) != 0 || s_header(d, "Expect:", NULL) != 0) {
        snprintf(d->error, sizeof d->error, "out of memory");
        return -1;
    }
    CURL *e = d->easy;
    curl_easy_setopt(e, CURLOPT_URL, d->address);
    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(e, CURLOPT_POST, 1L);
    curl_easy_setopt(e, CURLOPT_POSTFIELDS, d->body);
    curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)d->body_len);
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, d->headers);
    curl_easy_setopt(e, CURLOPT_USERAGENT, "nrm-notify/" NRM_VERSION);
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long)s->timeout_ms);
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, (long)s->connect_timeout_ms);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, s_discard);
    curl_easy_setopt(e, CURLOPT_PRIVATE, d);
    curl_easy_setopt(e, CURLOPT_PROXY, "");
    curl_easy_setopt(e, CURLOPT_OPENSOCKETFUNCTION, s_open_socket);
    curl_easy_setopt(e, CURLOPT_OPENSOCKETDATA, d);
    return 0;
}

void notify_webhook_outcome(notify_delivery_t *d, CURLcode result)
{
    long status = 0;
    curl_easy_getinfo(d->easy, CURLINFO_RESPONSE_CODE, &status);
    d->ok = result == CURLE_OK && status >= S_HTTP_OK_LOW && status <= S_HTTP_OK_HIGH;
    if (result != CURLE_OK)
        snprintf(d->error, sizeof d->error, "%s",
                 d->refused ? "destination refused" : "connection failed");
    else if (!d->ok)
        snprintf(d->error, sizeof d->error, "HTTP %ld", status);
}
