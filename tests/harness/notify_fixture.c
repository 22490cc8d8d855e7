#include "notify_fixture.h"
#include "nrm_crypto.h"
#include "scenario.h"

#include <sodium.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define S_PATH_MAX 512
#define S_POLL_MS 20
#define S_NOTIFY_DATA_FILE "notify.json"

/* From the demonstration configuration: {"include": its data files but notify.json, as absolute
 * paths, "agencies": its agencies}. New reference. */
static json_t *s_demo(const char *source)
{
    char path[S_PATH_MAX];
    snprintf(path, sizeof path, "%s/deploy/demo/config.json", source);
    json_error_t jerr;
    json_t *demo = json_load_file(path, 0, &jerr);
    if (!demo) {
        fprintf(stderr, "notify_fixture: cannot read %s\n", path);
        abort();
    }
    json_t *list = json_array();
    size_t i;
    json_t *item;
    json_array_foreach(json_object_get(demo, "include"), i, item)
    {
        if (strcmp(json_string_value(item), S_NOTIFY_DATA_FILE) == 0)
            continue;
        snprintf(path, sizeof path, "%s/deploy/demo/%s", source, json_string_value(item));
        json_array_append_new(list, json_string(path));
    }
    json_t *result =
        json_pack("{s:o, s:O}", "include", list, "agencies", json_object_get(demo, "agencies"));
    json_decref(demo);
    return result;
}

void notify_fixture_config(harness_t *h, const notify_fixture_settings_t *s, json_t *extra)
{
    json_t *demo = s_demo(getenv("NRM_SOURCE_DIR"));
    harness_config_set(h, "include", json_incref(json_object_get(demo, "include")));
    json_t *agencies = json_deep_copy(json_object_get(demo, "agencies"));
    if (extra)
        json_array_extend(agencies, extra);
    json_decref(extra);
    harness_config_set(h, "agencies", agencies);
    json_decref(demo);
    harness_config_set(h, "notify.max_attempts", json_integer(s->max_attempts));
    harness_config_set(h, "notify.backoff_ms", json_integer(s->backoff_ms));
    harness_config_set(h, "notify.max_backoff_ms", json_integer(s->max_backoff_ms));
    harness_config_set(h, "notify.timeout_ms", json_integer(s->timeout_ms));
    harness_config_set(h, "notify.connect_timeout_ms", json_integer(s->timeout_ms));
    if (s->max_in_flight > 0)
        harness_config_set(h, "notify.max_in_flight", json_integer(s->max_in_flight));
    if (s->max_age_s > 0)
        harness_config_set(h, "notify.max_age_s", json_integer(s->max_age_s));
    harness_config_set(h, "notify.poll_ms", json_integer(S_POLL_MS * 2));
    harness_config_set(h, "notify.smtp.tls", json_string("none"));
    harness_config_set(h, "notify.smtp.from", json_string("nrm-notify@test.invalid"));
    if (s->smtp_url)
        harness_config_set(h, "notify.smtp.url", json_string(s->smtp_url));
    /* the test receivers listen on 127.0.0.1, which notify refuses unless allow-listed */
    harness_config_set(h, "notify.webhook_allow", json_pack("[s]", "127.0.0.1/32"));
    harness_config_set(h, "notify.grants", notify_fixture_grants());
}

json_t *notify_fixture_grants(void)
{
    static const char grants[] =
        "["
        "{\"agency_type\": \"COORDINATOR\", \"topics\": [\"\"]},"
        "{\"agency_id\": \"hotline-national\", \"topics\": [\"case.\"]},"
        "{\"agency_id\": \"police-ma-04\", \"topics\": [\"case.\"]},"
        "{\"agency_id\": \"police-ma-06\", \"topics\": [\"case.\"]},"
        "{\"agency_id\": \"iom-ma\", \"topics\": [\"case.\", \"referral.\"]}"
        "]";
    json_error_t jerr;
    json_t *parsed = json_loads(grants, 0, &jerr);
    if (!parsed)
        abort();
    return parsed;
}

Nrm__V1__Reply *notify_fixture_subscribe(harness_t *h, const char *sender, const char *agency,
                                         const char *channel, const char *address,
                                         const char *const *topics, const char *secret,
                                         char *subscription_id_out)
{
    Nrm__V1__UpsertSubscription u = NRM__V1__UPSERT_SUBSCRIPTION__INIT;
    u.agency_id = (char *)(agency ? agency : "");
    u.channel = (char *)channel;
    u.address = (char *)address;
    u.secret = (char *)(secret ? secret : "");
    size_t n = 0;
    while (topics && topics[n])
        n++;
    u.topics = (char **)topics;
    u.n_topics = n;
    Nrm__V1__Request req = NRM__V1__REQUEST__INIT;
    scenario_request(&req, NRM__V1__REQUEST__BODY_UPSERT_SUBSCRIPTION, &u);
    Nrm__V1__Reply *reply = harness_call(h, "notify", sender, &req);
    if (reply && subscription_id_out && reply->status == NRM__V1__STATUS__STATUS_OK &&
        reply->subscription_ref)
        snprintf(subscription_id_out, 65, "%s", reply->subscription_ref->subscription_id);
    return reply;
}

void notify_fixture_subscribe_ok(harness_t *h, const char *agency, const char *channel,
                                 const char *address, const char *const *topics, const char *secret,
                                 char subscription_id_out[65])
{
    Nrm__V1__Reply *reply = notify_fixture_subscribe(h, agency, NULL, channel, address, topics,
                                                     secret, subscription_id_out);
    if (!reply || reply->status != NRM__V1__STATUS__STATUS_OK) {
        fprintf(stderr, "notify_fixture: subscription refused: %s %s\n",
                reply ? reply->error_field : "no reply", reply ? reply->error_message : "");
        abort();
    }
    nrm__v1__reply__free_unpacked(reply, NULL);
}

notify_receiver_t *notify_fixture_hook(harness_t *h, const char *agency,
                                       notify_receiver_mode_t mode, int slow_ms, const char *suffix,
                                       const char *topic, const char *secret,
                                       char subscription_id_out[65])
{
    notify_receiver_t *receiver = notify_receiver_new();
    notify_receiver_set_mode(receiver, mode, slow_ms);
    char url[256];
    const char *topics[] = {topic, NULL};
    notify_fixture_subscribe_ok(h, agency, "webhook", notify_fixture_url(receiver, suffix, url),
                                topics, secret, subscription_id_out);
    return receiver;
}

bool notify_fixture_signature_ok(const notify_request_t *r, const char *secret)
{
    char *header = notify_request_header(r, "X-NRM-Signature");
    unsigned char mac[crypto_auth_hmacsha256_BYTES];
    crypto_auth_hmacsha256_state state;
    crypto_auth_hmacsha256_init(&state, (const unsigned char *)secret, strlen(secret));
    crypto_auth_hmacsha256_update(&state, (const unsigned char *)r->body, r->body_len);
    crypto_auth_hmacsha256_final(&state, mac);
    char expected[sizeof mac * 2 + 8] = "sha256=";
    sodium_bin2hex(expected + strlen("sha256="), sizeof mac * 2 + 1, mac, sizeof mac);
    bool ok = header && strcmp(header, expected) == 0;
    free(header);
    return ok;
}

size_t notify_fixture_requests_at(notify_receiver_t *r, const char *path, size_t *indices,
                                  size_t max)
{
    size_t found = 0, total = notify_receiver_count(r);
    for (size_t i = 0; i < total && found < max; i++) {
        notify_request_t *req = notify_receiver_request(r, i);
        if (req && strcmp(req->path, path) == 0)
            indices[found++] = i;
        notify_request_free(&req);
    }
    return found;
}

size_t notify_fixture_heard(notify_receiver_t *r, const char *agency, const char *topic,
                            const char *case_id, const char *secret, bool *all_signed)
{
    char path[128], type[128], subject[128];
    snprintf(path, sizeof path, "/hook/%s", agency);
    snprintf(type, sizeof type, "\"type\":\"%s\"", topic);
    snprintf(subject, sizeof subject, "\"subject\":\"%s\"", case_id);
    size_t found = 0, total = notify_receiver_count(r);
    if (all_signed)
        *all_signed = true;
    for (size_t i = 0; i < total; i++) {
        notify_request_t *req = notify_receiver_request(r, i);
        if (req && strcmp(req->path, path) == 0 && strstr(req->body, type) &&
            strstr(req->body, subject)) {
            found++;
            if (secret && all_signed && !notify_fixture_signature_ok(req, secret))
                *all_signed = false;
        }
        notify_request_free(&req);
    }
    return found;
}

long long notify_fixture_wait(harness_t *h, const char *sql, long long want)
{
    return harness_wait_sql(h, sql, want, NOTIFY_FIXTURE_WAIT_MS);
}

const char *notify_fixture_url(notify_receiver_t *r, const char *suffix, char out[256])
{
    snprintf(out, 256, "%s/%s", notify_receiver_url(r), suffix);
    return out;
}

char *notify_fixture_report(harness_t *h, const char *agency, const char *region, const char *name,
                            const char *dob)
{
    scenario_report_t s;
    scenario_adult_woman(&s, region, name, dob);
    Nrm__V1__Reply *reply = harness_call(h, "intake", agency, &s.request);
    if (!reply || reply->status != NRM__V1__STATUS__STATUS_OK) {
        fprintf(stderr, "notify_fixture: report refused (%s)\n",
                reply ? reply->error_message : "no reply");
        abort();
    }
    char *case_id = strdup(reply->case_ref->case_id);
    nrm__v1__reply__free_unpacked(reply, NULL);
    if (!case_id)
        abort();
    return case_id;
}
