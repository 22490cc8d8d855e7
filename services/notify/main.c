/* nrm-notify: tells every agency concerned by an event, by webhook or email, reliably. */
#include "notify.h"
#include "nrm_log.h"

#include <stdio.h>

#define S_RETENTION_CHECK_MS 1000 /* how often expired notification bodies are looked for */

/* After SIGHUP: take the new settings and seed its subscriptions, or keep the old ones. */
static nrm_status_t s_on_reload(void *ctx, nrm_config_t *config)
{
    notify_t *self = ctx;
    notify_settings_t fresh;
    nrm_error_t err;
    if (notify_settings_load(config, &fresh, &err) != NRM_OK) {
        nrm_log_error("notify settings refused", "{s:s, s:s}", "field", err.field, "message",
                      err.message);
        return NRM_FAILED_PRECONDITION;
    }
    if (notify_check_configured(config, &fresh, &err) != NRM_OK) {
        nrm_log_error("subscriptions refused", "{s:s, s:s}", "field", err.field, "message",
                      err.message);
        notify_settings_clear(&fresh);
        return NRM_FAILED_PRECONDITION;
    }
    notify_settings_clear(&self->settings);
    self->settings = fresh;
    self->seeded = false; /* the sender seeds them at once; consumers meanwhile too */
    notify_sender_wake(self->sender);
    return NRM_OK;
}

/* The start job: the secrets still stored in clear are sealed, then the configured
 * subscriptions are seeded, in one transaction. */
static nrm_status_t s_on_start(void *ctx, nrm_tx_t *tx)
{
    nrm_status_t st = notify_secrets_seal_clear(ctx, tx);
    return st == NRM_OK ? notify_seed_subscriptions(ctx, tx) : st;
}

int main(int argc, char **argv)
{
    int exit_code = 0;
    nrm_service_t *service = nrm_service_new("notify", argc, argv, notify_migrations,
                                             notify_migrations_count, &exit_code);
    if (!service)
        return exit_code;
    nrm_error_t err;
    nrm_fail(&err, NRM_INTERNAL, "", "libcurl failed to start");
    nrm_config_t *config = nrm_service_config(service);
    notify_t notify = {.service = service, .seeded = true}; /* seeded by the start job */
    bool ok = curl_global_init(CURL_GLOBAL_DEFAULT) == CURLE_OK &&
              notify_settings_load(config, &notify.settings, &err) == NRM_OK &&
              notify_check_configured(config, &notify.settings, &err) == NRM_OK;
    if (ok) { /* the keyring intake uses seals the webhook secrets */
        notify.keyring = nrm_keyring_load(nrm_config_string(config, "crypto.keys_file", ""), &err);
        if (!notify.keyring)
            snprintf(err.field, sizeof err.field, "crypto.keys_file");
        ok = notify.keyring != NULL;
    }
    if (!ok) {
        nrm_log_error("configuration refused", "{s:s, s:s}", "field", err.field, "message",
                      err.message);
        notify_settings_clear(&notify.settings);
        nrm_service_destroy(&service);
        curl_global_cleanup();
        return 2;
    }
    notify.created = nrm_service_counter(service, "deliveries_created");
    notify.undeliverable = nrm_service_counter(service, "deliveries_undeliverable");
    notify.attempted = nrm_service_counter(service, "delivery_attempts");
    notify.delivered = nrm_service_counter(service, "deliveries_delivered");
    notify.failed = nrm_service_counter(service, "deliveries_failed");
    notify.retried = nrm_service_counter(service, "deliveries_retried");
    notify.in_flight = nrm_service_counter(service, "deliveries_in_flight");
    nrm_db_t *db = nrm_service_db(service);
    notify_recipients_prepare(db);
    notify_subscriptions_prepare(db);
    notify_deliveries_prepare(db);
    notify_secrets_prepare(db);
    notify_retention_prepare(db);

    nrm_service_handle(service, NRM__V1__REQUEST__BODY_UPSERT_SUBSCRIPTION, NRM_HANDLER_WRITE,
                       notify_upsert_subscription, &notify);
    nrm_service_handle(service, NRM__V1__REQUEST__BODY_LIST_DELIVERIES, NRM_HANDLER_READ,
                       notify_list_deliveries, &notify);
    nrm_service_handle(service, NRM__V1__REQUEST__BODY_RETRY_DELIVERY, NRM_HANDLER_WRITE,
                       notify_retry_delivery, &notify);
    nrm_service_allow_partitions(service); /* consumer.partitions: per case, in parallel */
    /* every stream but our own: notification.* events are never notified */
    static const char *const sources[] = {"intake", "routing", "shelter", "reintegration"};
    for (size_t i = 0; i < sizeof sources / sizeof sources[0]; i++) {
        char path[64];
        snprintf(path, sizeof path, "services.%s", sources[i]);
        if (nrm_config_get(nrm_service_config(service), path)) /* reintegration is optional */
            nrm_service_consume_batches(service, sources[i], NULL, notify_apply, notify_flush,
                                        notify_reset, &notify);
    }
    nrm_service_every(service, S_RETENTION_CHECK_MS, notify_retention_expire, &notify);
    /* kept counts (notify/003): the changes appended since the last refresh are folded in */
    nrm_service_gauge(service, "deliveries", "state",
                      "WITH moved AS (DELETE FROM delivery_count_changes RETURNING state, n),"
                      " folded AS (INSERT INTO delivery_counts AS c (state, n)"
                      "  SELECT state, sum(n) FROM moved GROUP BY state"
                      "  ON CONFLICT (state) DO UPDATE SET n = c.n + EXCLUDED.n RETURNING state, n)"
                      " SELECT s.state, coalesce(f.n, c.n, 0)::bigint FROM unnest(ARRAY['pending',"
                      " 'delivered', 'failed', 'undeliverable']) AS s(state)"
                      " LEFT JOIN folded f ON f.state = s.state"
                      " LEFT JOIN delivery_counts c ON c.state = s.state");
    nrm_service_on_start(service, s_on_start, &notify);
    nrm_service_on_reload(service, s_on_reload, &notify);
    notify.sender = notify_sender_new(&notify, nrm_service_loop(service));

    exit_code = notify.sender ? nrm_service_run(service) : 1;

    notify_sender_destroy(&notify.sender);
    notify_reset(&notify);
    notify_settings_clear(&notify.settings);
    nrm_keyring_destroy(&notify.keyring);
    zhash_destroy(&notify.undeliverable_logged);
    nrm_service_destroy(&service);
    curl_global_cleanup();
    return exit_code;
}
