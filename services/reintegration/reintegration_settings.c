/* Settings of the service: follow-up offsets and window, the risk window, the scan's batch and
 * the country of identification, checked before they are adopted (at start and on SIGHUP). */
#include "nrm_log.h"
#include "nrm_validate.h"
#include "reintegration.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Parses the follow-up offsets (a JSON array of seconds, or the string "s1,s2,..." from the
 * environment) into self. Returns false when one is not a positive number or there are too
 * many. */
/* True when the offsets grow strictly: a follow-up records the first one not yet recorded
 * (reint_fu_next), so the n-th falls due after the one before it. */
static bool s_offsets_rise(const reint_t *self)
{
    for (int i = 1; i < self->n_offsets; i++)
        if (self->offsets_ms[i] <= self->offsets_ms[i - 1])
            return false;
    return self->n_offsets > 0;
}

static bool s_offsets_parse(reint_t *self, nrm_config_t *config)
{
    static const int64_t dflt[] = {3 * REINT_MONTH_S, 6 * REINT_MONTH_S, 12 * REINT_MONTH_S};
    const char *path = "reintegration.followup_offsets_s";
    const char *text = nrm_config_string(config, path, NULL);
    json_t *list = nrm_config_get(config, path);
    self->n_offsets = 0;
    if (text) {
        char buf[256];
        snprintf(buf, sizeof buf, "%s", text);
        char *save = NULL;
        for (char *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
            char *end = NULL;
            long long v = strtoll(t, &end, 10);
            if (!end || *end || v <= 0 || self->n_offsets >= REINT_MAX_FOLLOWUPS)
                return false;
            self->offsets_ms[self->n_offsets++] = (int64_t)v * REINT_MS_PER_S;
        }
        return s_offsets_rise(self);
    }
    if (!list) {
        for (size_t i = 0; i < sizeof dflt / sizeof dflt[0]; i++)
            self->offsets_ms[self->n_offsets++] = dflt[i] * REINT_MS_PER_S;
        return true;
    }
    if (!json_is_array(list) || json_array_size(list) == 0 ||
        json_array_size(list) > REINT_MAX_FOLLOWUPS)
        return false;
    size_t i;
    json_t *item;
    json_array_foreach(list, i, item)
    {
        if (!json_is_integer(item) || json_integer_value(item) <= 0)
            return false;
        self->offsets_ms[self->n_offsets++] = (int64_t)json_integer_value(item) * REINT_MS_PER_S;
    }
    return s_offsets_rise(self);
}

/* The country of identification: reintegration.country, else routing.policy.host_country,
 * else the prefix of the first configured region ("MA-04" -> "MA"). */
static void s_country(reint_t *self, nrm_config_t *config)
{
    const char *c = nrm_config_string(config, "reintegration.country", NULL);
    if (!c)
        c = nrm_config_string(config, "routing.policy.host_country", NULL);
    char prefix[REINT_COUNTRY_SIZE] = "";
    if (!c) {
        const char *code = json_string_value(
            json_object_get(json_array_get(nrm_config_get(config, "regions"), 0), "code"));
        if (code && strlen(code) > 2 && code[2] == '-')
            snprintf(prefix, sizeof prefix, "%.2s", code);
        c = prefix;
    }
    snprintf(self->country, sizeof self->country, "%s", c);
}

nrm_status_t reint_configure(void *ctx, nrm_config_t *config)
{
    reint_t *self = ctx;
    reint_t next = *self;
    const char *bad = NULL;
    if (!s_offsets_parse(&next, config))
        bad = "reintegration.followup_offsets_s";
    next.window_ms =
        nrm_config_int(config, "reintegration.followup_window_s", REINT_DEFAULT_WINDOW_S) *
        REINT_MS_PER_S;
    next.risk_window_ms =
        nrm_config_int(config, "reintegration.risk_window_s", REINT_DEFAULT_RISK_WINDOW_S) *
        REINT_MS_PER_S;
    next.scan_batch =
        (int)nrm_config_int(config, "reintegration.scan_batch", REINT_DEFAULT_SCAN_BATCH);
    if (!bad && next.window_ms <= 0)
        bad = "reintegration.followup_window_s";
    if (!bad && next.risk_window_ms < 0)
        bad = "reintegration.risk_window_s";
    if (!bad && next.scan_batch <= 0)
        bad = "reintegration.scan_batch";
    s_country(&next, config);
    nrm_error_t err;
    nrm_error_clear(&err);
    if (!bad && next.country[0] &&
        nrm_check_country(&err, "reintegration.country", next.country, true) != NRM_OK)
        bad = "reintegration.country";
    if (bad) {
        nrm_log_error("reintegration configuration refused", "{s:s}", "field", bad);
        return NRM_FAILED_PRECONDITION;
    }
    *self = next;
    nrm_log_info("reintegration configuration loaded", "{s:i, s:s}", "followups", next.n_offsets,
                 "country", next.country);
    return NRM_OK;
}
