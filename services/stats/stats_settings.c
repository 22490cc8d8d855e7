/* Settings of the service: the "stats" section of the configuration, read as a StatsSettings
 * message (k, max_cells, export_max_drop, readers), checked before it is adopted. */
#include "nrm_json.h"
#include "nrm_log.h"
#include "nrm_validate.h"
#include "stats.h"

#include <stdio.h>
#include <string.h>

#define S_SETTING "stats"
#define S_FIELD_MAX 96

/* Checks one reader grant; returns the offending field (static buffer) or NULL. */
static const char *s_reader_bad(const Nrm__V1__StatsReader *r, size_t i)
{
    static char field[S_FIELD_MAX];
    char base[S_FIELD_MAX];
    nrm_path_index(base, sizeof base, "stats.readers", i);
    if (!r->agency_type[0] == !r->agency_id[0]) {
        snprintf(field, sizeof field, "%s", base);
        return field;
    }
    for (size_t m = 0; m < r->n_measures; m++)
        if (!stats_measure(r->measures[m])) {
            char at[S_FIELD_MAX];
            snprintf(at, sizeof at, "%s.measures", base);
            nrm_path_index(field, sizeof field, at, m);
            return field;
        }
    return NULL;
}

nrm_status_t stats_configure(void *ctx, nrm_config_t *config)
{
    stats_t *self = ctx;
    char field[S_FIELD_MAX];
    Nrm__V1__StatsSettings *s = (Nrm__V1__StatsSettings *)nrm_json_section_to_message(
        &nrm__v1__stats_settings__descriptor, nrm_config_get(config, S_SETTING), S_SETTING, field,
        sizeof field);
    const char *bad = NULL;
    if (!s)
        bad = field;
    else if (s->k < 0)
        bad = "stats.k";
    else if (s->max_cells < 0)
        bad = "stats.max_cells";
    else if (s->export_max_drop < 0 || s->export_max_drop >= 1)
        bad = "stats.export_max_drop";
    for (size_t i = 0; s && !bad && i < s->n_readers; i++)
        bad = s_reader_bad(s->readers[i], i);
    if (bad) {
        nrm_log_error("stats configuration refused", "{s:s}", "field", bad);
        if (s)
            protobuf_c_message_free_unpacked(&s->base, NULL);
        return NRM_FAILED_PRECONDITION;
    }
    stats_settings_free(self);
    self->settings = s;
    self->k = s->k ? s->k : STATS_DEFAULT_K;
    self->max_cells = s->max_cells ? s->max_cells : STATS_DEFAULT_MAX_CELLS;
    self->export_max_drop =
        s->export_max_drop > 0 ? s->export_max_drop : STATS_DEFAULT_EXPORT_MAX_DROP;
    nrm_log_info("stats configuration loaded", "{s:i, s:i}", "k", self->k, "readers",
                 (int)s->n_readers);
    return NRM_OK;
}

void stats_settings_free(stats_t *self)
{
    if (self->settings)
        protobuf_c_message_free_unpacked(&self->settings->base, NULL);
    self->settings = NULL;
}

/* True when type names the configured type (or its short name: "NGO" for "AGENCY_TYPE_NGO"). */
static bool s_type_is(const char *granted, const char *type)
{
    static const char prefix[] = "AGENCY_TYPE_";
    if (!type || !type[0])
        return false;
    if (strcmp(granted, type) == 0)
        return true;
    size_t n = sizeof prefix - 1;
    if (strncmp(granted, prefix, n) == 0 && strcmp(granted + n, type) == 0)
        return true;
    return strncmp(type, prefix, n) == 0 && strcmp(type + n, granted) == 0;
}

bool stats_reader_may(const stats_t *self, const nrm_call_t *call, const char *measure)
{
    for (size_t i = 0; self->settings && i < self->settings->n_readers; i++) {
        const Nrm__V1__StatsReader *r = self->settings->readers[i];
        bool who = r->agency_id[0] ? strcmp(r->agency_id, call->agency_id) == 0
                                   : s_type_is(r->agency_type, call->agency_type);
        if (!who)
            continue;
        if (r->n_measures == 0)
            return true;
        for (size_t m = 0; m < r->n_measures; m++)
            if (strcmp(r->measures[m], measure) == 0)
                return true;
    }
    return false;
}
