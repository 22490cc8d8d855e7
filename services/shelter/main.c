/* nrm-shelter: knows every bed. Seeds shelters from the configuration, allocates beds to the
 * cases routing asks shelter for (or waitlists them), holds beds until arrival, releases them,
 * and publishes shelter.* events. */
#include "nrm_log.h"
#include "nrm_service.h"
#include "shelter.h"

/* Topics consumed from routing and intake. */
static const char *const s_routing_topics[] = {"shelter.requested", "shelter.request_withdrawn",
                                               NULL};
static const char *const s_intake_topics[] = {"case.closed", "case.opened", "case.manager_changed",
                                              NULL};

int main(int argc, char **argv)
{
    int exit_code = 0;
    nrm_service_t *service = nrm_service_new("shelter", argc, argv, shelter_migrations,
                                             shelter_migrations_count, &exit_code);
    if (!service)
        return exit_code;

    /* the configured shelters and settings are checked before anything starts */
    shelter_t shelter = {0};
    if (shelter_configure(&shelter, nrm_service_config(service)) != NRM_OK) {
        nrm_service_destroy(&service);
        return 2;
    }
    nrm_db_t *db = nrm_service_db(service);
    shelter_registry_prepare(db);
    shelter_allocate_prepare(db);
    shelter_waitlist_prepare(db);
    shelter_holds_prepare(db);
    shelter_list_prepare(db);
    shelter_cases_prepare(db);
    shelter_requests_prepare(db);
    shelter_batch_prepare(db);
    shelter.batch = shelter_batch_new();
    nrm_service_on_start(service, shelter_seed, &shelter);
    nrm_service_on_reload(service, shelter_configure, &shelter);

    nrm_service_handle(service, NRM__V1__REQUEST__BODY_UPSERT_SHELTER, NRM_HANDLER_WRITE,
                       shelter_upsert, &shelter);
    nrm_service_handle(service, NRM__V1__REQUEST__BODY_GET_OCCUPANCY, NRM_HANDLER_READ,
                       shelter_get_occupancy, &shelter);
    nrm_service_handle(service, NRM__V1__REQUEST__BODY_LIST_ALLOCATIONS, NRM_HANDLER_READ,
                       shelter_list_allocations, &shelter);
    nrm_service_handle(service, NRM__V1__REQUEST__BODY_CONFIRM_ARRIVAL, NRM_HANDLER_WRITE,
                       shelter_confirm_arrival, &shelter);
    nrm_service_handle(service, NRM__V1__REQUEST__BODY_RELEASE_BED, NRM_HANDLER_WRITE,
                       shelter_release_bed, &shelter);
    nrm_service_handle(service, NRM__V1__REQUEST__BODY_REQUEST_BED, NRM_HANDLER_WRITE,
                       shelter_request_bed, &shelter);

    /* both consumers gather per batch and write at its end (shelter_batch.c, shelter_cases.c) */
    nrm_service_consume_batches(service, "routing", s_routing_topics, shelter_routing_apply,
                                shelter_routing_flush, shelter_routing_reset, &shelter);
    nrm_service_consume_batches(service, "intake", s_intake_topics, shelter_on_case_event,
                                shelter_cases_flush, shelter_cases_reset, &shelter);

    int check_ms = (int)nrm_config_int(nrm_service_config(service), "shelter.expiry_check_ms",
                                       SHELTER_DEFAULT_CHECK_MS);
    nrm_service_every(service, check_ms, shelter_expire_holds, &shelter);
    /* every region with a shelter or someone waiting, from the kept counts (shelter 005) */
    nrm_service_gauge(service, "waitlist_length", "region",
                      "SELECT region, coalesce(w.n, 0)::bigint FROM (SELECT DISTINCT region FROM "
                      "shelters) s FULL JOIN (SELECT region, sum(waiting) AS n FROM waitlist_ranks "
                      "GROUP BY region HAVING sum(waiting) > 0) w USING (region)");

    exit_code = nrm_service_run(service);
    nrm_service_destroy(&service);
    shelter_batch_free(&shelter.batch);
    json_decref(shelter.managers);
    return exit_code;
}
