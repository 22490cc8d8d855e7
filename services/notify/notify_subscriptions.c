/* Subscriptions: an agency's webhook or mailbox, the topic prefixes it follows beyond what
 * concerns it, and the secret its webhooks are signed with. They come from UpsertSubscription
 * (the agency itself or a coordinator) and from the configuration ("subscriptions": entries in
 * the request's JSON form, plus "secret_env" or "secret_file" to keep the secret out of the
 * file), seeded at start and on reload. A webhook's address is checked by
 * notify_destination.c, its topics by the grants of notify_grants.c (an agency without one may
 * only have subscriptions without topics: it hears what concerns it). A secret is stored sealed
 * (notify_secrets.c) and never returned, logged or published. */
#include "notify.h"
#include "nrm_alloc.h"
#include "nrm_authz.h"
#include "nrm_crypto.h"
#include "nrm_json.h"
#include "nrm_log.h"
#include "nrm_pgarray.h"
#include "nrm_validate.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define S_FIELD_MAX (NRM_ERROR_FIELD_MAX + 32)
#define S_EMAIL_LOCAL_MAX 64
#define S_ORIGIN_API "api"
#define S_ORIGIN_CONFIG "config"

static const char s_sql_find[] =
    "SELECT agency_id, origin, secret_sealed IS NOT NULL OR secret <> '' FROM subscriptions"
    " WHERE subscription_id = $1 FOR UPDATE";
static const char s_sql_upsert[] =
    "INSERT INTO subscriptions (subscription_id, agency_id, channel, address, topics,"
    " secret_sealed, secret_key_id, origin) VALUES ($1, $2, $3, $4, $5::text[], $6, $7, $8)"
    " ON CONFLICT (subscription_id) DO UPDATE SET agency_id = EXCLUDED.agency_id,"
    " channel = EXCLUDED.channel, address = EXCLUDED.address, topics = EXCLUDED.topics,"
    " secret_sealed = CASE WHEN EXCLUDED.secret_sealed IS NULL THEN subscriptions.secret_sealed"
    "  ELSE EXCLUDED.secret_sealed END,"
    " secret_key_id = CASE WHEN EXCLUDED.secret_sealed IS NULL THEN subscriptions.secret_key_id"
    "  ELSE EXCLUDED.secret_key_id END,"
    " origin = EXCLUDED.origin, active = true, updated_at = now()";
static const char s_sql_retire[] =
    "UPDATE subscriptions SET active = false, updated_at = now()"
    " WHERE origin = 'config' AND active AND NOT (subscription_id = ANY ($1::text[]))";

void notify_subscriptions_prepare(nrm_db_t *db)
{
    nrm_db_statement(db, "notify_subscription_find", s_sql_find);
    nrm_db_statement(db, "notify_subscription_upsert", s_sql_upsert);
    nrm_db_statement(db, "notify_subscription_retire", s_sql_retire);
}

/* Writes "prefix.name" into buf (truncated to size). Returns buf. */
static const char *s_path(char *buf, size_t size, const char *prefix, const char *name)
{
    if (snprintf(buf, size, "%s.%s", prefix, name) >= (int)size)
        buf[size - 1] = '\0';
    return buf;
}

/* True for an id of 1..NOTIFY_ID_MAX letters, digits and . _ : - */
static bool s_id_valid(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > NOTIFY_ID_MAX)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!isalnum((unsigned char)s[i]) && !strchr("._:-", s[i]))
            return false;
    return true;
}

/* True when prefix starts at least one topic notify delivers (not notification.*, stream.head). */
static bool s_topic_deliverable(const char *prefix)
{
    const ProtobufCMessageDescriptor *desc = &nrm__v1__event__descriptor;
    for (unsigned i = 0; i < desc->n_fields; i++) {
        const ProtobufCFieldDescriptor *f = &desc->fields[i];
        if (!(f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF))
            continue;
        const char *topic = nrm_event_topic_of((Nrm__V1__Event__BodyCase)f->id);
        if (!topic || strncmp(topic, "notification.", strlen("notification.")) == 0 ||
            strcmp(topic, NRM_TOPIC_STREAM_HEAD) == 0)
            continue;
        if (strncmp(topic, prefix, strlen(prefix)) == 0)
            return true;
    }
    return false;
}

/* A topic prefix: lower-case letters, '_' and '.', starting a deliverable topic. */
static nrm_status_t s_check_topic(nrm_error_t *err, const char *field, const char *t)
{
    size_t n = strlen(t);
    if (n == 0 || n > NOTIFY_TOPIC_MAX)
        return nrm_fail(err, NRM_INVALID_ARGUMENT, field, "a topic prefix has 1 to %d characters",
                        NOTIFY_TOPIC_MAX);
    for (size_t i = 0; i < n; i++)
        if (!islower((unsigned char)t[i]) && t[i] != '_' && t[i] != '.')
            return nrm_fail(err, NRM_INVALID_ARGUMENT, field,
                            "a topic prefix has lower-case letters, '_' and '.' only");
    if (!s_topic_deliverable(t))
        return nrm_fail(err, NRM_INVALID_ARGUMENT, field,
                        "the prefix matches no topic notify delivers (case.*, referral.*, "
                        "shelter.*, reintegration.*)");
    return NRM_OK;
}

/* local@domain: an unquoted local part, dot-separated domain labels of letters, digits, '-'. */
static bool s_email_valid(const char *address)
{
    const char *at = strchr(address, '@');
    if (!at || strchr(at + 1, '@') || at == address || (size_t)(at - address) > S_EMAIL_LOCAL_MAX)
        return false;
    for (const char *p = address; p < at; p++)
        if (!isalnum((unsigned char)*p) && !strchr(".!#$%&'*+/=?^_`{|}~-", *p))
            return false;
    const char *domain = at + 1;
    size_t label = 0;
    for (const char *p = domain;; p++) {
        if (*p == '.' || *p == '\0') {
            if (label == 0)
                return false;
            if (*p == '\0')
                return true;
            label = 0;
        } else if (isalnum((unsigned char)*p) || *p == '-') {
            label++;
        } else {
            return false;
        }
    }
}

nrm_status_t notify_check_subscription(const Nrm__V1__UpsertSubscription *s, nrm_config_t *config,
                                       const notify_settings_t *settings, const char *prefix,
                                       bool has_secret, nrm_error_t *err)
{
    char field[S_FIELD_MAX];
    if (nrm_check_text(err, s_path(field, sizeof field, prefix, "subscription_id"),
                       s->subscription_id, NOTIFY_ID_MAX, false) != NRM_OK ||
        nrm_check_text(err, s_path(field, sizeof field, prefix, "agency_id"), s->agency_id,
                       NOTIFY_ID_MAX, true) != NRM_OK ||
        nrm_check_text(err, s_path(field, sizeof field, prefix, "channel"), s->channel,
                       NOTIFY_ID_MAX, true) != NRM_OK ||
        nrm_check_text(err, s_path(field, sizeof field, prefix, "address"), s->address,
                       NOTIFY_URL_MAX, true) != NRM_OK)
        return NRM_INVALID_ARGUMENT;
    if (s->subscription_id[0] && !s_id_valid(s->subscription_id))
        return nrm_fail(err, NRM_INVALID_ARGUMENT,
                        s_path(field, sizeof field, prefix, "subscription_id"),
                        "subscription_id has 1 to %d letters, digits and . _ : -", NOTIFY_ID_MAX);
    if (!nrm_config_agency(config, s->agency_id))
        return nrm_fail(err, NRM_INVALID_ARGUMENT, s_path(field, sizeof field, prefix, "agency_id"),
                        "agency_id is not a configured agency");
    bool webhook = strcmp(s->channel, NOTIFY_CHANNEL_WEBHOOK) == 0;
    if (!webhook && strcmp(s->channel, NOTIFY_CHANNEL_EMAIL) != 0)
        return nrm_fail(err, NRM_INVALID_ARGUMENT, s_path(field, sizeof field, prefix, "channel"),
                        "channel must be webhook or email");
    s_path(field, sizeof field, prefix, "address");
    notify_dest_t dest = webhook ? notify_destination_check_url(settings->webhook_allow, s->address)
                                 : NOTIFY_DEST_OK;
    if (dest == NOTIFY_DEST_INVALID)
        return nrm_fail(err, NRM_INVALID_ARGUMENT, field,
                        "a webhook address is an http or https URL of at most %d characters",
                        NOTIFY_URL_MAX);
    if (dest == NOTIFY_DEST_REFUSED)
        return nrm_fail(
            err, NRM_INVALID_ARGUMENT, field,
            "a webhook may not carry user-info nor go to a loopback, link-local,"
            " private, shared, unique-local, multicast or unspecified address or to"
            " localhost, in any spelling; internal receivers need notify.webhook_allow");
    if (!webhook && (strlen(s->address) > NOTIFY_EMAIL_MAX || !s_email_valid(s->address)))
        return nrm_fail(err, NRM_INVALID_ARGUMENT, field, "an email address is local@domain");
    if (s->n_topics > NOTIFY_MAX_TOPICS)
        return nrm_fail(err, NRM_INVALID_ARGUMENT, s_path(field, sizeof field, prefix, "topics"),
                        "at most %d topic prefixes", NOTIFY_MAX_TOPICS);
    for (size_t i = 0; i < s->n_topics; i++) {
        char base[S_FIELD_MAX];
        nrm_path_index(field, sizeof field, s_path(base, sizeof base, prefix, "topics"), i);
        if (s_check_topic(err, field, s->topics[i]) != NRM_OK)
            return NRM_INVALID_ARGUMENT;
    }
    s_path(field, sizeof field, prefix, "secret");
    size_t secret = strlen(s->secret);
    if (!nrm_text_clean(s->secret) || secret > NOTIFY_SECRET_MAX ||
        (secret > 0 && secret < NOTIFY_SECRET_MIN))
        return nrm_fail(err, NRM_INVALID_ARGUMENT, field, "a secret has %d to %d bytes",
                        NOTIFY_SECRET_MIN, NOTIFY_SECRET_MAX);
    if (webhook && secret == 0 && !has_secret)
        return nrm_fail(err, NRM_INVALID_ARGUMENT, field,
                        "a webhook needs a secret (%d to %d bytes) to sign its bodies",
                        NOTIFY_SECRET_MIN, NOTIFY_SECRET_MAX);
    return NRM_OK;
}

/* Fails err with status naming prefix.topics unless a grant of the subscription's agency covers
 * every topic prefix it asks for (none asked: nothing to cover, the agency hears only what
 * concerns it). */
static nrm_status_t s_check_grants(const Nrm__V1__UpsertSubscription *s, nrm_config_t *config,
                                   const notify_settings_t *settings, const char *prefix,
                                   nrm_status_t status, nrm_error_t *err)
{
    for (size_t i = 0; i < s->n_topics; i++)
        if (!notify_grants_cover(settings->grants, config, s->agency_id, s->topics[i])) {
            char field[S_FIELD_MAX];
            return nrm_fail(err, status, s_path(field, sizeof field, prefix, "topics"),
                            "the agency may follow only what concerns it (no topics) unless"
                            " notify.grants grants it these topics");
        }
    return NRM_OK;
}

/* Builds the subscription of configured entry i (caller frees with
 * protobuf_c_message_free_unpacked), its secret taken from "secret_env" or "secret_file" when
 * given. Returns NULL with err naming the field ("subscriptions[i].address"). */
static Nrm__V1__UpsertSubscription *s_configured(json_t *entry, size_t i, nrm_error_t *err)
{
    char prefix[S_FIELD_MAX];
    nrm_path_index(prefix, sizeof prefix, "subscriptions", i);
    if (!json_is_object(entry)) {
        nrm_fail(err, NRM_FAILED_PRECONDITION, prefix, "a subscription is an object");
        return NULL;
    }
    json_t *copy = json_deep_copy(entry);
    const char *env = json_string_value(json_object_get(copy, "secret_env"));
    const char *file = json_string_value(json_object_get(copy, "secret_file"));
    char *secret = env && getenv(env) ? nrm_xstrdup(getenv(env))
                   : file             ? notify_read_secret(file)
                                      : NULL;
    bool missing = (env || file) && !secret;
    if (secret)
        json_object_set_new(copy, "secret", json_string(secret));
    if (secret)
        memset(secret, 0, strlen(secret));
    free(secret);
    json_object_del(copy, "secret_env");
    json_object_del(copy, "secret_file");
    json_object_del(copy, "_comment");
    Nrm__V1__UpsertSubscription *s = NULL;
    if (missing) {
        char field[S_FIELD_MAX];
        nrm_fail(err, NRM_FAILED_PRECONDITION, s_path(field, sizeof field, prefix, "secret"),
                 "the variable or file named for the secret gives none");
    } else {
        s = (Nrm__V1__UpsertSubscription *)nrm_json_to_message(
            &nrm__v1__upsert_subscription__descriptor, copy, err);
        if (!s) {
            nrm_error_t inner = *err;
            char field[S_FIELD_MAX + NRM_ERROR_FIELD_MAX];
            if (inner.field[0])
                snprintf(field, sizeof field, "%s.%s", prefix, inner.field);
            else
                snprintf(field, sizeof field, "%s", prefix);
            nrm_fail(err, NRM_FAILED_PRECONDITION, field, "not a subscription: %s", inner.message);
        }
    }
    json_decref(copy);
    return s;
}

nrm_status_t notify_check_configured(nrm_config_t *config, const notify_settings_t *settings,
                                     nrm_error_t *err)
{
    json_t *list = nrm_config_get(config, "subscriptions");
    if (list && !json_is_array(list))
        return nrm_fail(err, NRM_FAILED_PRECONDITION, "subscriptions", "subscriptions is a list");
    size_t i;
    json_t *entry;
    json_array_foreach(list, i, entry)
    {
        Nrm__V1__UpsertSubscription *s = s_configured(entry, i, err);
        if (!s)
            return NRM_FAILED_PRECONDITION;
        char prefix[S_FIELD_MAX], field[S_FIELD_MAX];
        nrm_path_index(prefix, sizeof prefix, "subscriptions", i);
        nrm_status_t st = NRM_OK;
        if (!s->subscription_id[0])
            st = nrm_fail(err, NRM_FAILED_PRECONDITION,
                          s_path(field, sizeof field, prefix, "subscription_id"),
                          "a configured subscription needs its subscription_id");
        else if (notify_check_subscription(s, config, settings, prefix, false, err) != NRM_OK)
            st = err->status = NRM_FAILED_PRECONDITION;
        else
            st = s_check_grants(s, config, settings, prefix, NRM_FAILED_PRECONDITION, err);
        protobuf_c_message_free_unpacked(&s->base, NULL);
        if (st != NRM_OK)
            return st;
    }
    return NRM_OK;
}

/* Upserts one subscription of the given origin in tx, its secret (if any; none keeps the stored
 * one) sealed with keyring under the subscription id. */
static nrm_status_t s_upsert(nrm_tx_t *tx, const nrm_keyring_t *keyring,
                             const Nrm__V1__UpsertSubscription *s, const char *subscription_id,
                             const char *origin)
{
    uint8_t *sealed = NULL;
    size_t sealed_len = 0;
    uint32_t key_id = 0;
    if (s->secret[0] && notify_secret_seal(keyring, subscription_id, s->secret, &sealed,
                                           &sealed_len, &key_id, tx->err) != NRM_OK)
        return NRM_INTERNAL;
    char *topics = nrm_pgarray_of_texts((char *const *)s->topics, s->n_topics);
    nrm_params_t p = {0};
    nrm_params_text(&p, subscription_id);
    nrm_params_text(&p, s->agency_id);
    nrm_params_text(&p, s->channel);
    nrm_params_text(&p, s->address);
    nrm_params_text(&p, topics);
    if (sealed) {
        nrm_params_bytes(&p, sealed, sealed_len);
        nrm_params_int(&p, key_id);
    } else {
        nrm_params_text(&p, NULL);
        nrm_params_text(&p, NULL);
    }
    nrm_params_text(&p, origin);
    nrm_status_t st = nrm_db_exec(tx->db, "notify_subscription_upsert", &p, NULL, tx->err);
    free(topics);
    free(sealed);
    return st;
}

nrm_status_t notify_seed_subscriptions(void *ctx, nrm_tx_t *tx)
{
    notify_t *self = ctx;
    nrm_config_t *config = nrm_service_config(self->service);
    json_t *list = nrm_config_get(config, "subscriptions");
    size_t count = json_array_size(list);
    char **ids = nrm_xcalloc(count ? count : 1, sizeof *ids);
    nrm_status_t st = NRM_OK;
    size_t n = 0;
    for (size_t i = 0; st == NRM_OK && i < count; i++) {
        Nrm__V1__UpsertSubscription *s = s_configured(json_array_get(list, i), i, tx->err);
        if (!s) {
            st = NRM_FAILED_PRECONDITION;
            break;
        }
        ids[n++] = nrm_xstrdup(s->subscription_id);
        st = s_upsert(tx, self->keyring, s, s->subscription_id, S_ORIGIN_CONFIG);
        protobuf_c_message_free_unpacked(&s->base, NULL);
    }
    if (st == NRM_OK) {
        char *keep = nrm_pgarray_of_texts(ids, n);
        nrm_params_t p = {0};
        nrm_params_text(&p, keep);
        st = nrm_db_exec(tx->db, "notify_subscription_retire", &p, NULL, tx->err);
        free(keep);
    }
    for (size_t i = 0; i < n; i++)
        free(ids[i]);
    free(ids);
    if (st == NRM_OK)
        nrm_log_info("configured subscriptions seeded", "{s:I}", "subscriptions",
                     (json_int_t)count);
    return st;
}

/* The stored owner of a subscription, if any. */
typedef struct {
    bool exists;
    bool configured; /* managed by the configuration */
    bool has_secret;
    char agency_id[NOTIFY_ID_MAX + 1];
} s_existing_t;

/* Looks up (and locks) a subscription by id. */
static nrm_status_t s_find(nrm_tx_t *tx, const char *subscription_id, s_existing_t *out)
{
    memset(out, 0, sizeof *out);
    nrm_params_t p = {0};
    nrm_params_text(&p, subscription_id);
    PGresult *res = NULL;
    nrm_status_t st = nrm_db_exec(tx->db, "notify_subscription_find", &p, &res, tx->err);
    if (st != NRM_OK)
        return st;
    if (PQntuples(res) == 1) {
        out->exists = true;
        snprintf(out->agency_id, sizeof out->agency_id, "%s", nrm_db_text(res, 0, 0));
        out->configured = strcmp(nrm_db_text(res, 0, 1), S_ORIGIN_CONFIG) == 0;
        out->has_secret = nrm_db_int(res, 0, 2) != 0;
    }
    PQclear(res);
    return NRM_OK;
}

nrm_status_t notify_upsert_subscription(void *ctx, nrm_call_t *call)
{
    notify_t *self = ctx;
    const Nrm__V1__UpsertSubscription *req = call->request->upsert_subscription;
    nrm_error_t *err = call->tx.err;
    Nrm__V1__UpsertSubscription s = *req;
    if (!s.agency_id[0])
        s.agency_id = (char *)call->agency_id;
    if (nrm_check_text(err, "upsert_subscription.agency_id", s.agency_id, NOTIFY_ID_MAX, true) !=
        NRM_OK)
        return NRM_INVALID_ARGUMENT;
    char fresh[37];
    if (!s.subscription_id[0]) {
        nrm_uuid_v4(fresh);
        s.subscription_id = fresh;
    }
    if (!s_id_valid(s.subscription_id))
        return nrm_fail(err, NRM_INVALID_ARGUMENT, "upsert_subscription.subscription_id",
                        "subscription_id has 1 to %d letters, digits and . _ : -", NOTIFY_ID_MAX);
    s_existing_t existing;
    nrm_status_t st = s_find(&call->tx, s.subscription_id, &existing);
    if (st != NRM_OK)
        return st;
    /* the matrix: the subscription's agency is the one it names and, once it exists, owns it */
    bool names_itself = strcmp(s.agency_id, call->agency_id) == 0;
    bool owns = !existing.exists || strcmp(existing.agency_id, call->agency_id) == 0;
    st = nrm_authz_check_at(call, names_itself && owns ? NRM_ROLE_SUBSCRIPTION_AGENCY : 0,
                            names_itself ? "upsert_subscription.subscription_id"
                                         : "upsert_subscription.agency_id");
    if (st != NRM_OK)
        return st;
    if (existing.exists && existing.configured)
        return nrm_fail(err, NRM_FAILED_PRECONDITION, "upsert_subscription.subscription_id",
                        "the subscription is managed by the configuration");
    st = notify_check_subscription(&s, call->config, &self->settings, "upsert_subscription",
                                   existing.exists && existing.has_secret, err);
    if (st == NRM_OK)
        st = s_check_grants(&s, call->config, &self->settings, "upsert_subscription",
                            NRM_PERMISSION_DENIED, err);
    if (st == NRM_OK)
        st = s_upsert(&call->tx, self->keyring, &s, s.subscription_id, S_ORIGIN_API);
    if (st != NRM_OK)
        return st;
    Nrm__V1__SubscriptionRef *ref = nrm_call_alloc(call, sizeof *ref);
    nrm__v1__subscription_ref__init(ref);
    ref->subscription_id = nrm_call_strdup(call, s.subscription_id);
    call->reply->result_case = NRM__V1__REPLY__RESULT_SUBSCRIPTION_REF;
    call->reply->subscription_ref = ref;
    call->subject_id = ref->subscription_id;
    nrm_log_info("subscription upserted", "{s:s, s:s, s:s}", "subscription_id",
                 ref->subscription_id, "agency_id", s.agency_id, "channel", s.channel);
    return NRM_OK;
}
