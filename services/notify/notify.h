/* The notification service: every agency concerned by an event hears about it, reliably.
 *
 * notify consumes the intake, routing and shelter streams. For each event it decides who hears
 * it (notify_recipients.c: the subscribers that follow its topic, and the agencies it concerns:
 * the provider of a referral, the operator of a shelter, the reporting agencies of the case, the
 * coordinator; subscriptions in notify_subscriptions.c), once per consumer batch: the maps it
 * needs (reporting agencies, providers, operators) are read and kept with one statement per
 * table (notify_maps.c) and the rest is decided in memory. It writes one delivery row per
 * recipient subscription in the same transaction as the consumer's checkpoint
 * (notify_deliveries.c): a consumer batch's deliveries, notification.failed events and kept
 * events are gathered in memory and written at its end with one statement per table. The sender
 * (notify_sender.c) claims due rows and sends them with libcurl's multi interface driven by the
 * reactor, as signed CloudEvents webhooks (notify_webhook.c) or plain-text emails (notify_email.c),
 * and records each outcome with its notification.delivered / notification.failed event; failures
 * are retried with exponential backoff and jitter until the attempts or the age run out (dead
 * letter). Events carry no identifying data and nothing here adds any. */
#ifndef NOTIFY_H
#define NOTIFY_H

#include <curl/curl.h>
#include <czmq.h>
#include <stdbool.h>
#include <stdint.h>
#include "nrm_crypto.h"
#include "nrm_migrate.h"
#include "nrm_service.h"

struct sockaddr;

extern const nrm_migration_t notify_migrations[];
extern const size_t notify_migrations_count;

#define NOTIFY_ID_MAX 64     /* subscription and agency ids */
#define NOTIFY_TOPIC_MAX 64  /* one topic prefix */
#define NOTIFY_MAX_TOPICS 16 /* prefixes per subscription */
#define NOTIFY_URL_MAX 2048  /* webhook address */
#define NOTIFY_EMAIL_MAX 254 /* email address (RFC 5321 path limit) */
#define NOTIFY_SECRET_MIN 16 /* webhook secret, bytes */
#define NOTIFY_SECRET_MAX 256
#define NOTIFY_LIST_DEFAULT 100 /* ListDeliveries without max */
#define NOTIFY_LIST_MAX 1000
#define NOTIFY_ERROR_MAX 160 /* last_error of a delivery */
#define NOTIFY_CHANNEL_WEBHOOK "webhook"
#define NOTIFY_CHANNEL_EMAIL "email"
#define NOTIFY_COORDINATOR "COORDINATOR"

typedef struct notify_allow_t notify_allow_t;   /* notify_destination.c */
typedef struct notify_grants_t notify_grants_t; /* notify_grants.c */

/* How deliveries are made and retried ("notify" in the configuration). Owns its strings, its
 * allow-list and its grants. */
typedef struct {
    int max_attempts;       /* attempts before the dead letter */
    int64_t max_age_ms;     /* age (from the creation or an operator's retry) likewise */
    int backoff_ms;         /* first retry delay; doubles per attempt, with jitter */
    int max_backoff_ms;     /* ceiling of the delay */
    int timeout_ms;         /* whole transfer */
    int connect_timeout_ms; /* connection only */
    int max_in_flight;      /* transfers at once */
    int poll_ms;            /* how often due retries are looked for */
    int64_t lease_ms;       /* a claimed delivery is due again after this (sender died) */
    char *smtp_url;         /* "smtp://host:port" or "smtps://..." */
    char *smtp_from;
    char *smtp_username; /* "" for none */
    char *smtp_password; /* secret: never logged */
    char *smtp_tls;      /* "none", "try" or "required" */
    char *email_subject; /* templates, see notify_email.c */
    char *email_body;
    notify_allow_t *webhook_allow; /* "notify.webhook_allow" */
    notify_grants_t *grants;       /* "notify.grants" */
} notify_settings_t;

/* One delivery claimed for an attempt, with what its transfer needs. Owned by the sender. */
typedef struct {
    char *delivery_id;
    char *claim_id;
    char *subscription_id;
    char *agency_id;
    char *channel;
    char *topic;
    char *source_stream;
    int64_t source_seq;
    char *case_id;
    char *event_id;
    int attempts;       /* counting this one */
    int64_t started_ms; /* start of the age window */
    char *address;      /* NULL when the subscription has gone */
    char *secret;       /* opened from its sealed form at the claim; wiped on destroy */
    Nrm__V1__Event *event;
    const notify_settings_t *settings; /* borrowed (the service's, outlives the transfer) */
    bool refused;                      /* the destination's address was refused */
    bool secret_unreadable;            /* the sealed secret did not open (unknown key) */
    /* the transfer */
    CURL *easy;
    struct curl_slist *headers;
    struct curl_slist *recipients;
    char *body;
    size_t body_len;
    size_t body_sent;
    /* the outcome */
    bool ok;
    char error[NOTIFY_ERROR_MAX];
} notify_delivery_t;

typedef struct notify_sender_t notify_sender_t;

/* (position, agency id) pairs: the agencies one gathered event concerns. Ids owned. */
typedef struct {
    int64_t *at; /* 1-based position of the event in its batch */
    char **ids;
    size_t n;
    size_t cap;
} notify_pairs_t;

/* One consumed event whose deliveries wait for the end of its batch (strings owned). */
typedef struct {
    char *stream;
    int64_t seq;
    char *topic;
    char *case_id;
    char *event_id;
    int64_t occurred_at_ms;
    bool outcome;        /* an outcome of its case: kept even without deliveries */
    char *payload_hex;   /* the packed event, hex (NULL for a late outcome: stored already) */
    bool has_rows;       /* the write made deliveries for it */
    char *late_agency;   /* a kept outcome given to this reporting agency learnt late, or NULL */
    size_t concerned_to; /* its pairs end there in concerned (they start where the last ended) */
    size_t broad_to;     /* likewise in broad */
} notify_gathered_t;

/* The deliveries of a consumer batch, gathered in memory by notify_apply and written with one
 * statement per table by notify_flush (notify_deliveries_gather / _write). */
typedef struct {
    notify_gathered_t *events;
    size_t n;
    size_t cap;
    notify_pairs_t concerned; /* the agencies each event concerns (may repeat) */
    notify_pairs_t broad;     /* the agencies whose grants deliver it by topic */
} notify_batch_t;

/* The service's state, shared by handlers, consumers, the sender and timers. */
typedef struct {
    nrm_service_t *service;     /* borrowed */
    notify_settings_t settings; /* owned */
    notify_sender_t *sender;    /* owned */
    nrm_keyring_t *keyring;     /* owned: seals and opens webhook secrets */
    bool seeded;                /* the configured subscriptions are committed */
    bool db_trouble;            /* the last turn of the sender failed (logged once) */
    int64_t *created;           /* counters shown in Pong (this instance, since start) */
    int64_t *undeliverable;
    int64_t *delivered;
    int64_t *failed;
    int64_t *attempted;
    int64_t *retried;
    int64_t *in_flight;            /* a gauge: transfers running now */
    zhash_t *undeliverable_logged; /* agency_id -> when its undeliverable ones were last
                                    * logged and how many since (owned; made at the first) */
    notify_batch_t batch;      /* the consumer batch being applied (one at a time: one reactor) */
    Nrm__V1__Event **received; /* copies of the batch's events, resolved at its end (owned) */
    size_t n_received;
    size_t cap_received;
} notify_t;

/* notify_maps.c: the case, referral and allocation maps, one statement per table and batch */

/* A key (referral or allocation id) and its agency (provider or operator). Owned. */
typedef struct {
    char *key;
    char *agency_id;
} notify_map_pair_t;

/* A reporting agency of a case. Owned. */
typedef struct {
    char *case_id;
    char *agency_id;
    int64_t since_ms;      /* hears the case's outcomes that occurred from then on */
    size_t at;             /* made known by the batch's event at this index (learnt ones) */
    Nrm__V1__Event **kept; /* learnt ones: its case's outcomes stored before the batch, from
                              since_ms on, in (stream, seq) order */
    size_t n_kept;
} notify_reporter_t;

/* What the maps said about a batch: the stored values its events look up, as they were before
 * it, and the reporting agencies it made known. */
typedef struct {
    notify_map_pair_t *providers; /* of the referrals the batch looks up */
    size_t n_providers;
    notify_map_pair_t *operators; /* of the allocations the batch looks up */
    size_t n_operators;
    notify_reporter_t *known; /* of the cases whose outcomes are in the batch */
    size_t n_known;
    notify_reporter_t *learnt; /* first named by the batch, written by notify_maps_sync */
    size_t n_learnt;
} notify_maps_t;

void notify_maps_prepare(nrm_db_t *db);

/* Writes in tx what the n events of a batch (in order) tell the maps, and reads into *m (zeroed
 * first; the caller clears it, also on failure) what they need, with at most one statement per
 * table, none for a table the batch does not touch. Returns OK or the database's failure. */
nrm_status_t notify_maps_sync(nrm_tx_t *tx, Nrm__V1__Event *const *events, size_t n,
                              notify_maps_t *m);

/* The agency of key among n pairs (borrowed), or NULL. */
const char *notify_maps_find(const notify_map_pair_t *pairs, size_t n, const char *key);

/* Frees what notify_maps_sync read and zeroes *m. */
void notify_maps_clear(notify_maps_t *m);

/* True when ev is an outcome of its case, heard by the case's reporting agencies. */
bool notify_concerns_reporters(const Nrm__V1__Event *ev);

/* notify_settings.c */

/* Reads the settings from config into *out (zeroed first; strings copied). Returns OK, or
 * FAILED_PRECONDITION with err naming the setting ("notify.max_attempts"). */
nrm_status_t notify_settings_load(nrm_config_t *config, notify_settings_t *out, nrm_error_t *err);

/* Frees the strings, allow-list and grants of settings, wiping the SMTP password, and zeroes
 * it. */
void notify_settings_clear(notify_settings_t *settings);

/* Reads a small secret file (up to 511 bytes) into a malloc'd string without its trailing
 * newline; NULL when it cannot be read. The caller wipes and frees it. */
char *notify_read_secret(const char *path);

/* notify_recipients.c: who hears what, and the maps behind it */

void notify_recipients_prepare(nrm_db_t *db);

/* Consumer of every stream (nrm_apply_fn; ctx is the notify_t): keeps a copy of the event for
 * the end of the batch (seeding the subscriptions first after a reload). */
nrm_status_t notify_apply(void *ctx, nrm_tx_t *tx, const Nrm__V1__Event *ev);

/* End of a consumer batch (nrm_flush_fn): keeps the maps and reads what the batch needs of them
 * (notify_maps_sync), decides in memory who hears each event, then writes the deliveries,
 * notification.failed events and kept events, one statement per table, in the batch's
 * transaction. */
nrm_status_t notify_flush(void *ctx, nrm_tx_t *tx);

/* Start of a consumer batch (nrm_reset_fn): drops what a failed batch gathered. */
void notify_reset(void *ctx);

/* notify_subscriptions.c: subscriptions from requests and from the configuration */

void notify_subscriptions_prepare(nrm_db_t *db);

/* Checks a subscription (from a request or the configuration; field paths start with prefix).
 * has_secret says a secret is already stored for it. Returns OK or INVALID_ARGUMENT. */
nrm_status_t notify_check_subscription(const Nrm__V1__UpsertSubscription *s, nrm_config_t *config,
                                       const notify_settings_t *settings, const char *prefix,
                                       bool has_secret, nrm_error_t *err);

/* Checks the "subscriptions" of a configuration (shapes, agencies, secrets, destinations under
 * settings' allow-list, topics under its grants). Returns OK, or FAILED_PRECONDITION with err
 * naming the entry ("subscriptions[2].address"). */
nrm_status_t notify_check_configured(nrm_config_t *config, const notify_settings_t *settings,
                                     nrm_error_t *err);

/* Upserts the configured subscriptions (secrets sealed) and deactivates configured ones no
 * longer listed, in tx (nrm_timer_fn; ctx is the notify_t). Idempotent. */
nrm_status_t notify_seed_subscriptions(void *ctx, nrm_tx_t *tx);

/* UpsertSubscription handler (the agency itself or a coordinator) -> SubscriptionRef. */
nrm_status_t notify_upsert_subscription(void *ctx, nrm_call_t *call);

/* notify_secrets.c: webhook secrets sealed at rest with the keyring */

void notify_secrets_prepare(nrm_db_t *db);

/* notify_retention.c: a timer job deleting the bodies of events none of whose deliveries can be
 * sent again, once older than notify.delivered_retention_s (0, the default: kept for ever). */
void notify_retention_prepare(nrm_db_t *db);
nrm_status_t notify_retention_expire(void *ctx, nrm_tx_t *tx);

/* Seals secret (NUL-terminated) for subscription_id (the AAD) with the active key: *sealed is
 * malloc'd (caller frees), *len its size, *key_id the key. Returns OK, or INTERNAL in err. */
nrm_status_t notify_secret_seal(const nrm_keyring_t *keyring, const char *subscription_id,
                                const char *secret, uint8_t **sealed, size_t *len, uint32_t *key_id,
                                nrm_error_t *err);

/* Opens what notify_secret_seal made. Returns a malloc'd NUL-terminated secret (the caller wipes
 * and frees it), or NULL when the key is unknown or the data was tampered with. */
char *notify_secret_open(const nrm_keyring_t *keyring, const char *subscription_id,
                         const uint8_t *sealed, size_t len, uint32_t key_id);

/* Seals, in tx, every secret still stored in clear (rows written before sealing existed) and
 * empties the clear column. Idempotent; safe with several instances. */
nrm_status_t notify_secrets_seal_clear(notify_t *self, nrm_tx_t *tx);

/* notify_destination.c: where webhooks may go */

/* What a destination check says. */
typedef enum {
    NOTIFY_DEST_OK,      /* allowed */
    NOTIFY_DEST_INVALID, /* not an http(s) URL with a host */
    NOTIFY_DEST_REFUSED, /* user-info, or an internal address or name not allow-listed */
} notify_dest_t;

/* Reads "notify.webhook_allow" into *out (caller destroys). Returns OK, or FAILED_PRECONDITION
 * naming the bad entry ("notify.webhook_allow[1]"). */
nrm_status_t notify_allow_load(nrm_config_t *config, notify_allow_t **out, nrm_error_t *err);

/* Frees an allow-list and sets *self to NULL. Safe on NULL. */
void notify_allow_destroy(notify_allow_t **self);

/* Checks a webhook URL before it is stored: its scheme, user-info and host (never resolved;
 * numeric hosts in any spelling). allow may be NULL (nothing listed). */
notify_dest_t notify_destination_check_url(const notify_allow_t *allow, const char *address);

/* True when a webhook may connect to the address (AF_INET or AF_INET6): public, or in a block
 * of the allow-list (host names of the list do not count here). allow may be NULL. */
bool notify_destination_address_allowed(const notify_allow_t *allow, const struct sockaddr *sa);

/* notify_grants.c: need to know */

/* Reads "notify.grants" (default: COORDINATOR agencies, every topic) into *out (caller
 * destroys). Returns OK, or FAILED_PRECONDITION naming the bad entry ("notify.grants[0].topics").
 */
nrm_status_t notify_grants_load(nrm_config_t *config, notify_grants_t **out, nrm_error_t *err);

/* Frees the grants and sets *self to NULL. Safe on NULL. */
void notify_grants_destroy(notify_grants_t **self);

/* True when a grant of the agency (by id or its configured type) covers the topic prefix. */
bool notify_grants_cover(const notify_grants_t *self, nrm_config_t *config, const char *agency_id,
                         const char *prefix);

/* The configured agencies whose grants deliver ev broadly (its topic, and its region for a
 * regional grant): a malloc'd array (caller frees the array only: the ids are borrowed from
 * config), *n its length. Aborts when out of memory. */
char **notify_grants_broad(const notify_grants_t *self, nrm_config_t *config,
                           const Nrm__V1__Event *ev, size_t *n);

/* True when a grant of the agency (by id or its configured type) delivers ev broadly: its topic,
 * and its region for a regional grant (as notify_grants_broad decides for one agency). */
bool notify_grants_deliver(const notify_grants_t *self, nrm_config_t *config, const char *agency_id,
                           const Nrm__V1__Event *ev);

/* The region an event's body carries (case.opened, shelter.allocated, ...), or "". Borrowed. */
const char *notify_event_region(const Nrm__V1__Event *ev);

/* notify_deliveries.c: rows, states, retries and backoff, dead letters */

void notify_deliveries_prepare(nrm_db_t *db);

/* Gathers ev in b for notify_deliveries_write: the agencies concerned (n ids, may repeat; copied),
 * the agencies its grants deliver it to by topic, and whether it is an outcome of its case.
 * late_agency (copied) is NULL for an event of the batch; for a kept outcome given to a reporting
 * agency learnt late, that agency (the event is then not stored again). */
void notify_deliveries_gather(notify_t *self, notify_batch_t *b, const Nrm__V1__Event *ev,
                              char *const *agencies, size_t n, bool outcome,
                              const char *late_agency);

/* Writes in tx what b gathered, in its order, as one event at a time did: one delivery per
 * active subscription of the agencies concerned and per subscription following the event's topic
 * (an agency without any subscription gets one 'undeliverable' row and a notification.failed
 * event); an event is stored when it has deliveries or is an outcome of its case; replays create
 * nothing. One statement per table (deliveries, outbox, events) for all, none for a table with
 * nothing to write; clears b whatever happens. *created receives the number of pending
 * deliveries made. */
nrm_status_t notify_deliveries_write(notify_t *self, nrm_tx_t *tx, notify_batch_t *b, int *created);

/* Frees what b gathered and zeroes it. */
void notify_batch_clear(notify_batch_t *b);

/* Claims up to max due deliveries (oldest due first) for an attempt in the open transaction tx
 * and appends them to out (the caller owns them); *claimed receives how many, counted as
 * attempts when tx commits. A due delivery whose subscription is retired, gone, or now has
 * another agency or channel than the delivery is not claimed: it is dead-lettered in tx without
 * an attempt (notification.failed, its reason in last_error), counted as failed on commit. */
nrm_status_t notify_deliveries_claim(notify_t *self, nrm_tx_t *tx, int max, zlist_t *out,
                                     int *claimed);

/* One turn of the sender, in one transaction: records the outcomes of finished attempts (done:
 * zlist of notify_delivery_t) with their events (delivered, retried later, or dead-lettered),
 * then claims up to max due deliveries for an attempt and appends them to out (the caller owns
 * them). Returns how many were claimed, having destroyed and removed every item of done; or -1
 * when the database fails, leaving done as it was and claiming nothing. */
int notify_deliveries_turn(notify_t *self, nrm_db_t *db, zlist_t *done, int max, zlist_t *out);

/* Gives the claims of unfinished attempts back (due now), at shutdown. Best effort. */
void notify_deliveries_release(notify_t *self, nrm_db_t *db, zlist_t *unfinished);

/* The delay before attempt attempts+1: backoff_ms * 2^(attempts-1), capped, with jitter
 * (uniform in its upper half). */
int64_t notify_backoff_ms(const notify_settings_t *settings, int attempts);

/* Frees a delivery, its transfer handle included (the sender removes the handle from its multi
 * handle first), wiping the secret; sets *d to NULL. Safe on NULL. */
void notify_delivery_destroy(notify_delivery_t **d);

/* ListDeliveries handler (coordinators) -> DeliveryList. */
nrm_status_t notify_list_deliveries(void *ctx, nrm_call_t *call);

/* RetryDelivery handler (coordinators): a failed delivery is pending again, from attempt 1;
 * FAILED_PRECONDITION when its subscription could no longer carry it (see the claim). */
nrm_status_t notify_retry_delivery(void *ctx, nrm_call_t *call);

/* notify_webhook.c */

/* The body message of an event (CaseOpened, ...), borrowed from ev, or NULL when unset. */
const ProtobufCMessage *notify_event_body(const Nrm__V1__Event *ev);

/* ms since the epoch as RFC 3339 UTC with milliseconds ("2024-05-01T09:30:00.250Z"). */
#define NOTIFY_TIME_MAX 32
void notify_time_text(int64_t ms, char out[NOTIFY_TIME_MAX]);

/* The CloudEvents 1.0 JSON body of the delivery's event (malloc'd, caller frees; *len its
 * size), or NULL when out of memory. */
char *notify_webhook_body(const notify_delivery_t *d, size_t *len);

/* "sha256=" and the lowercase hex HMAC-SHA256 of body under secret, into out. */
#define NOTIFY_SIGNATURE_MAX 80
void notify_webhook_signature(const char *secret, const char *body, size_t len,
                              char out[NOTIFY_SIGNATURE_MAX]);

/* Prepares d's HTTP POST on a new easy handle (d->easy). Returns 0, or -1 with d->error set. */
int notify_webhook_prepare(notify_delivery_t *d, const notify_settings_t *settings);

/* Reads how d's finished transfer went (2xx within the timeout) into d->ok and d->error: "HTTP
 * <status>", "connection failed" or "destination refused", nothing finer (an error must not
 * tell an open port from a closed one). */
void notify_webhook_outcome(notify_delivery_t *d, CURLcode result);

/* notify_email.c */

/* Checks that the templates use known placeholders only. Returns OK or FAILED_PRECONDITION. */
nrm_status_t notify_email_check_templates(const notify_settings_t *settings, nrm_error_t *err);

/* The whole message (headers and plain-text body, CRLF lines) of d (malloc'd; *len its size). */
char *notify_email_message(const notify_delivery_t *d, const notify_settings_t *settings,
                           size_t *len);

/* Prepares d's SMTP transfer on a new easy handle (d->easy). Returns 0, or -1 with d->error. */
int notify_email_prepare(notify_delivery_t *d, const notify_settings_t *settings);

/* Reads how d's finished transfer went (accepted by the relay) into d->ok and d->error. */
void notify_email_outcome(notify_delivery_t *d, CURLcode result);

/* notify_sender.c */

/* Returns a sender driving its transfers from loop (borrowed), or NULL. */
notify_sender_t *notify_sender_new(notify_t *notify, zloop_t *loop);

/* At a stop (after the reactor): lets the transfers in flight finish for a few seconds at
 * most, records what finished, gives back the claims of what did not (due again at once), frees
 * the sender and sets *self to NULL. Safe on NULL. */
void notify_sender_destroy(notify_sender_t **self);

/* Asks the sender to look for due deliveries (and record outcomes) very soon. */
void notify_sender_wake(notify_sender_t *self);

/* Claims, in the consumer's open transaction tx that has just made deliveries, as many due
 * deliveries as there is room in flight for (notify.max_in_flight): their transfers start once
 * tx commits, and they are dropped when it does not (their claims go with it). What there is no
 * room for is claimed by the sender's turns as transfers finish. Safe on NULL (claims nothing).
 * Returns OK or the claim's failure (the transaction's then). */
nrm_status_t notify_sender_claim_in(notify_sender_t *self, nrm_tx_t *tx);

#endif
