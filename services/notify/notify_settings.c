/* The delivery settings: attempts, age, backoff, timeouts, the SMTP relay and the templates,
 * the webhook allow-list (notify_destination.c) and the grants (notify_grants.c). */
#include "notify.h"
#include "nrm_alloc.h"

#include <sodium.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define S_DEFAULT_MAX_ATTEMPTS 10
#define S_DEFAULT_MAX_AGE_S 86400
#define S_DEFAULT_BACKOFF_MS 1000
#define S_DEFAULT_MAX_BACKOFF_MS 600000
#define S_DEFAULT_TIMEOUT_MS 10000
#define S_DEFAULT_CONNECT_TIMEOUT_MS 5000
#define S_DEFAULT_MAX_IN_FLIGHT 64
#define S_DEFAULT_POLL_MS 500
#define S_LEASE_MARGIN_MS 2000
#define S_MS_PER_S 1000
#define S_SECRET_FILE_MAX 512

#define S_DEFAULT_SUBJECT "[NRM] {{topic}} - case {{case_id}}"
#define S_DEFAULT_BODY                                                                             \
    "The national referral mechanism has an event for your agency ({{agency_id}}).\n"              \
    "\n"                                                                                           \
    "{{summary}}\n"                                                                                \
    "\n"                                                                                           \
    "Event:    {{topic}}\n"                                                                        \
    "Case:     {{case_id}}\n"                                                                      \
    "Occurred: {{time}}\n"                                                                         \
    "{{details}}"                                                                                  \
    "\n"                                                                                           \
    "Please consult the system for the case. This message carries no personal data; do not\n"      \
    "reply with any.\n"                                                                            \
    "Reference: {{delivery_id}} (event {{event_id}}, {{stream}} #{{seq}})\n"

/* An integer setting within [lo, hi]. */
typedef struct {
    const char *path;
    int64_t dflt;
    int64_t lo;
    int64_t hi;
} s_int_setting_t;

/* Reads one integer setting into *out. Returns OK or FAILED_PRECONDITION naming it. */
static nrm_status_t s_int(nrm_config_t *config, const s_int_setting_t *s, int64_t *out,
                          nrm_error_t *err)
{
    *out = nrm_config_int(config, s->path, s->dflt);
    if (*out < s->lo || *out > s->hi)
        return nrm_fail(err, NRM_FAILED_PRECONDITION, s->path, "%s must be from %lld to %lld",
                        s->path, (long long)s->lo, (long long)s->hi);
    return NRM_OK;
}

char *notify_read_secret(const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return NULL;
    char buf[S_SECRET_FILE_MAX];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r'))
        buf[--n] = '\0';
    char *copy = nrm_xstrdup(buf);
    sodium_memzero(buf, sizeof buf);
    return copy;
}

nrm_status_t notify_settings_load(nrm_config_t *config, notify_settings_t *out, nrm_error_t *err)
{
    memset(out, 0, sizeof *out);
    static const s_int_setting_t ints[] = {
        {"notify.max_attempts", S_DEFAULT_MAX_ATTEMPTS, 1, 1000},
        {"notify.max_age_s", S_DEFAULT_MAX_AGE_S, 1, 30 * 86400},
        {"notify.backoff_ms", S_DEFAULT_BACKOFF_MS, 1, 3600000},
        {"notify.max_backoff_ms", S_DEFAULT_MAX_BACKOFF_MS, 1, 86400000},
        {"notify.timeout_ms", S_DEFAULT_TIMEOUT_MS, 50, 300000},
        {"notify.connect_timeout_ms", S_DEFAULT_CONNECT_TIMEOUT_MS, 50, 300000},
        {"notify.max_in_flight", S_DEFAULT_MAX_IN_FLIGHT, 1, 1024},
        {"notify.poll_ms", S_DEFAULT_POLL_MS, 10, 60000},
    };
    int64_t v[sizeof ints / sizeof ints[0]];
    for (size_t i = 0; i < sizeof ints / sizeof ints[0]; i++)
        if (s_int(config, &ints[i], &v[i], err) != NRM_OK)
            return NRM_FAILED_PRECONDITION;
    out->max_attempts = (int)v[0];
    out->max_age_ms = v[1] * S_MS_PER_S;
    out->backoff_ms = (int)v[2];
    out->max_backoff_ms = (int)v[3];
    out->timeout_ms = (int)v[4];
    out->connect_timeout_ms = (int)(v[5] < v[4] ? v[5] : v[4]);
    out->max_in_flight = (int)v[6];
    out->poll_ms = (int)v[7];
    out->lease_ms = (int64_t)out->timeout_ms * 2 + S_LEASE_MARGIN_MS;
    out->smtp_url =
        nrm_xstrdup(nrm_config_string(config, "notify.smtp.url", "smtp://127.0.0.1:25"));
    out->smtp_from =
        nrm_xstrdup(nrm_config_string(config, "notify.smtp.from", "nrm-notify@localhost"));
    out->smtp_username = nrm_xstrdup(nrm_config_string(config, "notify.smtp.username", ""));
    const char *file = nrm_config_string(config, "notify.smtp.password_file", NULL);
    out->smtp_password = file ? notify_read_secret(file)
                              : nrm_xstrdup(nrm_config_string(config, "notify.smtp.password", ""));
    out->smtp_tls = nrm_xstrdup(nrm_config_string(config, "notify.smtp.tls", "required"));
    out->email_subject =
        nrm_xstrdup(nrm_config_string(config, "notify.email.subject", S_DEFAULT_SUBJECT));
    out->email_body = nrm_xstrdup(nrm_config_string(config, "notify.email.body", S_DEFAULT_BODY));
    if (!out->smtp_password) {
        notify_settings_clear(out);
        return nrm_fail(err, NRM_FAILED_PRECONDITION, "notify.smtp.password_file",
                        "the SMTP password file cannot be read");
    }
    if (strpbrk(out->smtp_from, "\r\n<> ") || !strchr(out->smtp_from, '@')) {
        notify_settings_clear(out);
        return nrm_fail(err, NRM_FAILED_PRECONDITION, "notify.smtp.from",
                        "notify.smtp.from is a bare address (local@domain)");
    }
    if (strcmp(out->smtp_tls, "none") != 0 && strcmp(out->smtp_tls, "try") != 0 &&
        strcmp(out->smtp_tls, "required") != 0) {
        notify_settings_clear(out);
        return nrm_fail(err, NRM_FAILED_PRECONDITION, "notify.smtp.tls",
                        "notify.smtp.tls must be none, try or required");
    }
    if (strncmp(out->smtp_url, "smtp://", strlen("smtp://")) != 0 &&
        strncmp(out->smtp_url, "smtps://", strlen("smtps://")) != 0) {
        notify_settings_clear(out);
        return nrm_fail(err, NRM_FAILED_PRECONDITION, "notify.smtp.url",
                        "notify.smtp.url must start with smtp:// or smtps://");
    }
    if (notify_email_check_templates(out, err) != NRM_OK ||
        notify_allow_load(config, &out->webhook_allow, err) != NRM_OK ||
        notify_grants_load(config, &out->grants, err) != NRM_OK) {
        notify_settings_clear(out);
        return NRM_FAILED_PRECONDITION;
    }
    return NRM_OK;
}

void notify_settings_clear(notify_settings_t *s)
{
    if (s->smtp_password)
        sodium_memzero(s->smtp_password, strlen(s->smtp_password));
    free(s->smtp_url);
    free(s->smtp_from);
    free(s->smtp_username);
    free(s->smtp_password);
    free(s->smtp_tls);
    free(s->email_subject);
    free(s->email_body);
    notify_allow_destroy(&s->webhook_allow);
    notify_grants_destroy(&s->grants);
    memset(s, 0, sizeof *s);
}
