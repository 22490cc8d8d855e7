/* nrm-stats: the national statistics. Follows every stream exactly once (intake, routing,
 * shelter, notify, reintegration: those the configuration lists), keeps categorical facts in its
 * own schema, one statement per table and batch, and answers GetStatistics (tables with small cells
 * suppressed) and ExportCases (a k-anonymous case-level data set). It publishes no events of its
 * own. */
#include "nrm_log.h"
#include "nrm_service.h"
#include "stats.h"

#include <stdio.h>

/* The topics each stream contributes. */
static const char *const s_intake_topics[] = {"case.opened", NULL};
static const char *const s_routing_topics[] = {"referral.", "shelter.requested", NULL};
static const char *const s_shelter_topics[] = {"shelter.allocated", "shelter.waitlisted",
                                               "shelter.capacity_changed", NULL};
static const char *const s_notify_topics[] = {"notification.", NULL};
static const char *const s_reintegration_topics[] = {"reintegration.plan_opened",
                                                     "reintegration.plan_closed", NULL};

int main(int argc, char **argv)
{
    int exit_code = 0;
    nrm_service_t *service =
        nrm_service_new("stats", argc, argv, stats_migrations, stats_migrations_count, &exit_code);
    if (!service)
        return exit_code;

    /* the settings are checked before anything starts */
    stats_t stats = {
        .service = service,
        .batch = stats_batch_new(),
        .events_applied = nrm_service_counter(service, "events_applied"),
        .tables_answered = nrm_service_counter(service, "tables_answered"),
    };
    if (stats_configure(&stats, nrm_service_config(service)) != NRM_OK) {
        stats_batch_destroy(&stats.batch);
        nrm_service_destroy(&service);
        return 2;
    }
    nrm_db_t *db = nrm_service_db(service);
    stats_batch_prepare(db);
    stats_measures_prepare(db);
    stats_export_prepare(db);
    nrm_service_on_reload(service, stats_configure, &stats);

    nrm_service_handle(service, NRM__V1__REQUEST__BODY_GET_STATISTICS, NRM_HANDLER_READ,
                       stats_get_statistics, &stats);
    nrm_service_handle(service, NRM__V1__REQUEST__BODY_EXPORT_CASES, NRM_HANDLER_READ,
                       stats_export_cases, &stats);

    static const struct {
        const char *source;
        const char *const *topics;
    } streams[] = {{"intake", s_intake_topics},
                   {"routing", s_routing_topics},
                   {"shelter", s_shelter_topics},
                   {"notify", s_notify_topics},
                   {"reintegration", s_reintegration_topics}};
    for (size_t i = 0; i < sizeof streams / sizeof streams[0]; i++) {
        char path[64];
        snprintf(path, sizeof path, "services.%s", streams[i].source);
        if (!nrm_config_get(nrm_service_config(service), path)) { /* a deployment without it */
            nrm_log_info("stream not configured: not followed", "{s:s}", "stream",
                         streams[i].source);
            continue;
        }
        nrm_service_consume_batches(service, streams[i].source, streams[i].topics, stats_apply,
                                    stats_flush, stats_reset, &stats);
    }

    exit_code = nrm_service_run(service);
    nrm_service_destroy(&service);
    stats_batch_destroy(&stats.batch);
    stats_settings_free(&stats);
    return exit_code;
}
