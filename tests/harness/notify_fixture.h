/* Helpers shared by the notification tests: configuring notify in a harness, subscribing
 * through its api, checking signatures, and reading its tables. */
#ifndef NOTIFY_FIXTURE_H
#define NOTIFY_FIXTURE_H

#include <stdbool.h>
#include "harness.h"
#include "notify_sinks.h"

#define NOTIFY_FIXTURE_WAIT_MS 15000

/* Delivery settings a test chooses (the rest keep their defaults). */
typedef struct {
    int max_attempts;
    int backoff_ms;
    int max_backoff_ms;
    int timeout_ms;
    int max_age_s;        /* 0: default */
    int max_in_flight;    /* 0: default */
    const char *smtp_url; /* NULL: none */
} notify_fixture_settings_t;

/* Configures h for notify: the demonstration data files except notify.json (a test brings its
 * own subscriptions), the settings given, a short poll period, SMTP without TLS, webhooks to
 * 127.0.0.1 allowed (notify.webhook_allow: the receivers listen there) and the grants of
 * notify_fixture_grants. extra_agencies (a JSON array, stolen; may be NULL) is appended to the
 * demonstration agencies. A test of the allow-list or the grants sets its own afterwards
 * (harness_config_set replaces them). */
void notify_fixture_config(harness_t *h, const notify_fixture_settings_t *settings,
                           json_t *extra_agencies);

/* The grants the delivery tests rely on (new reference): coordinators every topic (the
 * default), and the agencies those tests subscribe to topics: hotline-national, police-ma-04
 * and police-ma-06 "case.", iom-ma "case." and "referral.". */
json_t *notify_fixture_grants(void);

/* Upserts a subscription through notify's api as sender (agency may be NULL: the sender's own).
 * topics is NULL-terminated (NULL: none). Returns the Reply (caller frees); subscription_id_out
 * (65 bytes, may be NULL) receives the id on OK. */
Nrm__V1__Reply *notify_fixture_subscribe(harness_t *h, const char *sender, const char *agency,
                                         const char *channel, const char *address,
                                         const char *const *topics, const char *secret,
                                         char *subscription_id_out);

/* Like notify_fixture_subscribe, asserting OK (aborts otherwise); returns nothing. */
void notify_fixture_subscribe_ok(harness_t *h, const char *agency, const char *channel,
                                 const char *address, const char *const *topics, const char *secret,
                                 char subscription_id_out[65]);

/* A new receiver in mode (slow_ms for NOTIFY_RECEIVER_SLOW) and agency's webhook subscription
 * to the one topic given, at the receiver's path suffix and signed with secret, asserting OK;
 * subscription_id_out (65 bytes) receives its id. Returns the receiver (caller destroys). */
notify_receiver_t *notify_fixture_hook(harness_t *h, const char *agency,
                                       notify_receiver_mode_t mode, int slow_ms, const char *suffix,
                                       const char *topic, const char *secret,
                                       char subscription_id_out[65]);

/* Submits a report of a new adult woman (name, dob) in region as agency, aborting unless intake
 * answers OK. Returns the case id (caller frees). */
char *notify_fixture_report(harness_t *h, const char *agency, const char *region, const char *name,
                            const char *dob);

/* True when r's X-NRM-Signature is sha256=<hex HMAC-SHA256(secret, body)>. */
bool notify_fixture_signature_ok(const notify_request_t *r, const char *secret);

/* The indices of the receiver's requests whose path is path, in arrival order; returns how many
 * (at most max). */
size_t notify_fixture_requests_at(notify_receiver_t *r, const char *path, size_t *indices,
                                  size_t max);

/* How many of the receiver's requests at /hook/<agency> are the CloudEvent of topic about
 * case_id. With secret, *all_signed (may be NULL) tells whether each of them was signed with it
 * (notify_fixture_signature_ok). */
size_t notify_fixture_heard(notify_receiver_t *r, const char *agency, const char *topic,
                            const char *case_id, const char *secret, bool *all_signed);

/* Waits until the SQL count equals want; returns the last value seen. */
long long notify_fixture_wait(harness_t *h, const char *sql, long long want);

/* The URL of receiver r with suffix appended to its path ("http://127.0.0.1:p/hook/<suffix>"),
 * into out (256 bytes). */
const char *notify_fixture_url(notify_receiver_t *r, const char *suffix, char out[256]);

#endif
