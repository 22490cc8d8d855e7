#include "nrm_log.h"

#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

static char s_service[64] = "nrm";
static nrm_log_level_t s_min_level = NRM_LOG_INFO;
static const char *const s_level_names[] = {"debug", "info", "warn", "error"};

void nrm_log_init(const char *service, const char *level)
{
    snprintf(s_service, sizeof s_service, "%s", service ? service : "nrm");
    s_min_level = NRM_LOG_INFO;
    for (int i = NRM_LOG_DEBUG; level && i <= NRM_LOG_ERROR; i++)
        if (strcmp(level, s_level_names[i]) == 0)
            s_min_level = (nrm_log_level_t)i;
}

/* Writes the current UTC time with milliseconds into buf. */
static void s_timestamp(char *buf, size_t size)
{
    struct timeval tv;
    gettimeofday(&tv, NULL);
    struct tm tm;
    gmtime_r(&tv.tv_sec, &tm);
    char base[32];
    strftime(base, sizeof base, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(buf, size, "%s.%03dZ", base, (int)(tv.tv_usec / 1000));
}

void nrm_log(nrm_log_level_t level, const char *msg, const char *fields, ...)
{
    if (level < s_min_level)
        return;
    json_t *line = NULL;
    if (fields) {
        va_list ap;
        va_start(ap, fields);
        line = json_vpack_ex(NULL, 0, fields, ap);
        va_end(ap);
    }
    if (!line)
        line = json_object();
    char ts[40];
    s_timestamp(ts, sizeof ts);
    json_t *head = json_pack("{s:s, s:s, s:s, s:s}", "ts", ts, "level", s_level_names[level],
                             "service", s_service, "msg", msg ? msg : "");
    json_object_update_missing(head, line);
    char *text = json_dumps(head, JSON_COMPACT | JSON_PRESERVE_ORDER);
    if (text) {
        fprintf(stderr, "%s\n", text);
        free(text);
    }
    json_decref(head);
    json_decref(line);
}
