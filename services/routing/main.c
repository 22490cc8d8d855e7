/* nrm-routing: refers every need of every case to a provider who can serve it, follows each
 * referral to its outcome (or tells the coordinator nobody is left), and asks the shelter
 * service for beds. */
#include "routing.h"
#include "nrm_log.h"
#include "nrm_service.h"

#define S_EXPIRY_CHECK_MS 1000    /* how often overdue referrals are looked for */
#define S_EXPIRE_BATCH 100        /* overdue referrals expired per run */
#define S_DIRECTORY_CHECK_MS 1000 /* seeding after SIGHUP, agreement warnings, waiting needs */
#define S_WAITING_BATCH 50        /* waiting needs examined per pass */

static const char *const s_case_topics[] = {"case.", NULL};
static const char *const s_shelter_topics[] = {"shelter.allocated", "shelter.waitlisted",
                                               "shelter.released", "shelter.request_cancelled",
                                               NULL};

/* Checks the configuration's providers and loads the policy from config into self (ctx),
 * replacing the old one only when both are valid (at start-up and on SIGHUP); the providers
 * are then seeded into the providers table (at start by s_seed, after a reload by the
 * directory timer) and the directory reloaded from it. Returns OK, or FAILED_PRECONDITION
 * after logging what is wrong; self is then unchanged. */
static nrm_status_t s_configure(void *ctx, nrm_config_t *config)
{
    routing_t *self = ctx;
    nrm_error_t err;
    nrm_error_clear(&err);
    routing_policy_t *policy = routing_providers_check_config(config, &err) == NRM_OK
                                   ? routing_policy_load(config, &err)
                                   : NULL;
    if (!policy) {
        nrm_log_error("routing configuration refused", "{s:s, s:s}", "field", err.field, "message",
                      err.message);
        return NRM_FAILED_PRECONDITION;
    }
    bool reload = self->policy != NULL;
    routing_policy_destroy(&self->policy);
    self->policy = policy;
    self->config = config;
    self->require_agreement = nrm_config_int(config, "routing.require_agreement", 0) != 0 ||
                              json_is_true(nrm_config_get(config, "routing.require_agreement"));
    self->directory_version = -1; /* reloaded before the next routing: agency names may change */
    self->seed_pending = reload;
    nrm_log_info("routing configuration loaded", "{s:I, s:b}", "providers",
                 (json_int_t)json_array_size(nrm_config_get(config, "providers")),
                 "require_agreement", self->require_agreement);
    return NRM_OK;
}

int main(int argc, char **argv)
{
    int exit_code = 0;
    nrm_service_t *service = nrm_service_new("routing", argc, argv, routing_migrations,
                                             routing_migrations_count, &exit_code);
    if (!service)
        return exit_code;
    nrm_config_t *config = nrm_service_config(service);
    routing_t routing = {
        .expire_batch = (int)nrm_config_int(config, "routing.expire_batch", S_EXPIRE_BATCH),
        .waiting_batch = (int)nrm_config_int(config, "routing.waiting_batch", S_WAITING_BATCH),
        .directory_version = -1,
        .referrals_created = nrm_service_counter(service, "referrals_created"),
        .referrals_unroutable = nrm_service_counter(service, "referrals_unroutable"),
        .referrals_expired = nrm_service_counter(service, "referrals_expired"),
        .shelters_requested = nrm_service_counter(service, "shelters_requested"),
        .shelter_no_shows = nrm_service_counter(service, "shelter_no_shows"),
        .batch = routing_batch_new(),
    };
    if (s_configure(&routing, config) != NRM_OK) {
        routing_batch_destroy(&routing.batch);
        nrm_service_destroy(&service);
        return 2;
    }
    nrm_db_t *db = nrm_service_db(service);
    routing_cases_prepare(db);
    routing_assign_prepare(db);
    routing_referrals_prepare(db);
    routing_list_prepare(db);
    routing_directory_prepare(db);
    routing_providers_prepare(db);
    routing_agreements_prepare(db);
    routing_waiting_prepare(db);
    nrm_service_on_start(service, routing_seed_providers, &routing);
    routing_shelter_prepare(db);
    routing_deadlines_prepare(db);
    routing_batch_prepare(db);

    nrm_service_handle(service, NRM__V1__REQUEST__BODY_RESPOND_TO_REFERRAL, NRM_HANDLER_WRITE,
                       routing_respond, &routing);
    nrm_service_handle(service, NRM__V1__REQUEST__BODY_COMPLETE_REFERRAL, NRM_HANDLER_WRITE,
                       routing_complete, &routing);
    nrm_service_handle(service, NRM__V1__REQUEST__BODY_LIST_REFERRALS, NRM_HANDLER_READ,
                       routing_list_referrals, &routing);
    nrm_service_handle(service, NRM__V1__REQUEST__BODY_UPSERT_PROVIDER, NRM_HANDLER_WRITE,
                       routing_upsert_provider, &routing);
    nrm_service_handle(service, NRM__V1__REQUEST__BODY_LIST_PROVIDERS, NRM_HANDLER_READ,
                       routing_list_providers, &routing);
    nrm_service_handle(service, NRM__V1__REQUEST__BODY_UPSERT_AGREEMENT, NRM_HANDLER_WRITE,
                       routing_upsert_agreement, &routing);
    nrm_service_handle(service, NRM__V1__REQUEST__BODY_LIST_AGREEMENTS, NRM_HANDLER_READ,
                       routing_list_agreements, &routing);
    /* both streams a batch at a time: events gathered, then applied with set-based writes */
    nrm_service_consume_batches(service, "intake", s_case_topics, routing_batch_gather,
                                routing_flush_case_events, routing_batch_reset, &routing);
    /* where each bed stands (no_show): followed when a shelter service is configured */
    if (nrm_config_string(config, "services.shelter.api_connect", NULL) &&
        nrm_config_string(config, "services.shelter.events_connect", NULL))
        nrm_service_consume_batches(service, "shelter", s_shelter_topics, routing_batch_gather,
                                    routing_flush_shelter_events, routing_batch_reset, &routing);
    else
        nrm_log_warn("no shelter service configured: no_show is not followed", NULL);
    nrm_service_every(service,
                      (int)nrm_config_int(config, "routing.expiry_check_ms", S_EXPIRY_CHECK_MS),
                      routing_expire_overdue, &routing);
    nrm_service_every(
        service, (int)nrm_config_int(config, "routing.directory_check_ms", S_DIRECTORY_CHECK_MS),
        routing_directory_tick, &routing);
    nrm_service_on_reload(service, s_configure, &routing);

    exit_code = nrm_service_run(service);

    routing_batch_destroy(&routing.batch);
    routing_directory_destroy(&routing.directory);
    routing_policy_destroy(&routing.policy);
    nrm_service_destroy(&service);
    return exit_code;
}
