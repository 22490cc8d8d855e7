/* libFuzzer target: the configuration loader (common/nrm_config). The input is written as a
 * configuration file in a directory of its own and loaded (JSON syntax, "include"s, merging,
 * the checks of the loader); a configuration that loads is then read the way services read it
 * (settings by dotted path, regions, agencies and their types) and checked by the services'
 * checks of their sections that need no database: shelter's shelters and settings, notify's
 * settings and configured subscriptions, intake's screening checklist and status deciders,
 * reintegration's settings. */
#include "intake.h"
#include "notify.h"
#include "nrm_config.h"
#include "nrm_log.h"
#include "reintegration.h"
#include "shelter.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

static char s_dir[64];
static char s_path[128];

/* Removes the file and its directory when the fuzzer exits. */
static void s_cleanup(void)
{
    unlink(s_path);
    rmdir(s_dir);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    nrm_log_init("fuzz", "error");
    /* in memory where there is a tmpfs: a file written per input would otherwise wait on disk */
    snprintf(s_dir, sizeof s_dir, "%s/nrm-fuzz-config-XXXXXX",
             access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp");
    if (!mkdtemp(s_dir))
        abort();
    snprintf(s_path, sizeof s_path, "%s/config.json", s_dir);
    atexit(s_cleanup);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    FILE *f = fopen(s_path, "wb");
    if (!f)
        abort();
    if (size && fwrite(data, 1, size, f) != size)
        abort();
    fclose(f);
    nrm_error_t err;
    nrm_config_t *config = nrm_config_load(s_path, &err);
    if (!config)
        return 0;
    static const char *const paths[] = {"database.conninfo",
                                        "services.intake.api",
                                        "heartbeat_ms",
                                        "regions",
                                        "agencies",
                                        "services",
                                        "",
                                        "."};
    for (size_t i = 0; i < sizeof paths / sizeof paths[0]; i++) {
        (void)nrm_config_string(config, paths[i], NULL);
        (void)nrm_config_int(config, paths[i], 0);
        (void)nrm_config_get(config, paths[i]);
    }
    (void)nrm_config_region_known(config, "MA-06");
    (void)nrm_config_agency(config, "coordinator");
    (void)nrm_config_agency_type(config, "coordinator");
    (void)nrm_config_agency_type(config, "police-ma-06");
    (void)shelter_check_config(config, &err);
    notify_settings_t settings;
    if (notify_settings_load(config, &settings, &err) == NRM_OK)
        (void)notify_check_configured(config, &settings, &err);
    notify_settings_clear(&settings);
    intake_screening_t *screening = intake_screening_load(config, &err);
    intake_screening_destroy(&screening);
    (void)intake_status_check_config(config, &err);
    int64_t counter = 0;
    reint_t reint = {
        .plans_opened = &counter, .followups_due = &counter, .followups_overdue = &counter};
    (void)reint_configure(&reint, config);
    nrm_config_destroy(&config);
    return 0;
}
