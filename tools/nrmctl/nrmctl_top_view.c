/* nrmctl_top_view: one screen of top (see nrmctl_top_view.h). */
#include "nrmctl_top_view.h"
#include "nrm_alloc.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define S_ANSI_HOME "\033[H"
#define S_ANSI_CLEAR_LINE "\033[K"
#define S_ANSI_CLEAR_BELOW "\033[J"
#define S_ANSI_ENTER "\033[?1049h\033[?25l" /* alternate screen, cursor hidden */
#define S_ANSI_LEAVE "\033[?25h\033[?1049l"
#define S_MS_PER_S 1000
#define S_TIME_TEXT 32
#define S_SERVICE_PREFIX "SERVICE_TYPE_"
#define S_LINE_MAX 160

#define S_CUT_TEXT "  ... (a taller window shows more)"

/* Where a screen is being drawn. */
typedef struct {
    FILE *out;
    bool ansi;
    int rows_left; /* lines that still fit, the last one kept for S_CUT_TEXT; -1: no limit */
    bool cut;      /* a line did not fit */
} s_screen_t;

/* Writes one line (each clears the rest of its terminal line), unless the screen is full. */
static void s_line(s_screen_t *screen, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void s_line(s_screen_t *screen, const char *fmt, ...)
{
    if (screen->rows_left == 0 || screen->cut) {
        screen->cut = true;
        return;
    }
    char line[S_LINE_MAX];
    va_list args;
    va_start(args, fmt);
    vsnprintf(line, sizeof line, fmt, args);
    va_end(args);
    fprintf(screen->out, "%s%s\n", line, screen->ansi ? S_ANSI_CLEAR_LINE : "");
    if (screen->rows_left > 0)
        screen->rows_left--;
}

/* Orders two keys (for qsort). */
static int s_key_order(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Returns the keys of object, sorted, in a malloc'd array (caller frees; the keys are
 * borrowed); *n gets their number. NULL when there are none or no memory. */
static const char **s_sorted_keys(const json_t *object, size_t *n)
{
    *n = 0;
    size_t size = json_object_size(object);
    const char **keys = size ? nrm_xcalloc(size, sizeof *keys) : NULL;
    if (!keys)
        return NULL;
    const char *key;
    json_t *value;
    json_object_foreach((json_t *)object, key, value)
    {
        keys[(*n)++] = key;
    }
    qsort(keys, *n, sizeof *keys, s_key_order);
    return keys;
}

/* The integer member key of object (0 when missing). */
static json_int_t s_int(const json_t *object, const char *key)
{
    return json_integer_value(json_object_get(object, key));
}

/* EVENTS BY TOPIC: total and last minute. */
static void s_draw_topics(s_screen_t *screen, const json_t *topics)
{
    s_line(screen, "%-34s %10s %10s", "EVENTS BY TOPIC", "total", "last 60 s");
    size_t n = 0;
    const char **keys = s_sorted_keys(topics, &n);
    for (size_t i = 0; i < n; i++) {
        const json_t *t = json_object_get(topics, keys[i]);
        s_line(screen, "  %-32s %10" JSON_INTEGER_FORMAT " %10" JSON_INTEGER_FORMAT, keys[i],
               s_int(t, "total"), s_int(t, "lastMinute"));
    }
    if (n == 0)
        s_line(screen, "  (no event yet)");
    free(keys);
}

/* EVENTS BY REGION. */
static void s_draw_regions(s_screen_t *screen, const json_t *regions)
{
    s_line(screen, "%-34s %10s", "EVENTS BY REGION", "events");
    size_t n = 0;
    const char **keys = s_sorted_keys(regions, &n);
    for (size_t i = 0; i < n; i++)
        s_line(screen, "  %-32s %10" JSON_INTEGER_FORMAT, keys[i],
               json_integer_value(json_object_get(regions, keys[i])));
    free(keys);
}

/* OPEN REFERRALS by service: pending, accepted, overdue. */
static void s_draw_referrals(s_screen_t *screen, const json_t *open)
{
    s_line(screen, "%-34s %10s %10s %10s", "OPEN REFERRALS", "pending", "accepted", "overdue");
    size_t n = 0;
    const char **keys = s_sorted_keys(open, &n);
    for (size_t i = 0; i < n; i++) {
        const json_t *r = json_object_get(open, keys[i]);
        const char *name = keys[i];
        if (strncmp(name, S_SERVICE_PREFIX, strlen(S_SERVICE_PREFIX)) == 0)
            name += strlen(S_SERVICE_PREFIX);
        s_line(screen,
               "  %-32s %10" JSON_INTEGER_FORMAT " %10" JSON_INTEGER_FORMAT
               " %10" JSON_INTEGER_FORMAT,
               name, s_int(r, "pending"), s_int(r, "accepted"), s_int(r, "overdue"));
    }
    free(keys);
}

/* One row of shelter counts. */
static void s_shelter_row(s_screen_t *screen, const char *label, const json_t *c)
{
    s_line(screen,
           "  %-20s %9" JSON_INTEGER_FORMAT " %9" JSON_INTEGER_FORMAT " %9" JSON_INTEGER_FORMAT
           " %9" JSON_INTEGER_FORMAT " %9" JSON_INTEGER_FORMAT,
           label, s_int(c, "shelters"), s_int(c, "capacity"), s_int(c, "occupied"),
           s_int(c, "held"), s_int(c, "free"));
}

/* SHELTERS by region, all regions, the waitlist (or why they are not known). */
static void s_draw_shelters(s_screen_t *screen, const json_t *shelters)
{
    s_line(screen, "%-22s %9s %9s %9s %9s %9s", "SHELTERS", "shelters", "capacity", "occupied",
           "held", "free");
    const json_t *error = json_object_get(shelters, "error");
    if (error) {
        s_line(screen, "  %s", json_string_value(error));
        return;
    }
    const json_t *regions = json_object_get(shelters, "regions");
    size_t n = 0;
    const char **keys = s_sorted_keys(regions, &n);
    for (size_t i = 0; i < n; i++)
        s_shelter_row(screen, keys[i], json_object_get(regions, keys[i]));
    free(keys);
    s_shelter_row(screen, "all regions", json_object_get(shelters, "total"));
    s_line(screen, "  waitlist: %" JSON_INTEGER_FORMAT, s_int(shelters, "waitlist"));
}

/* DELIVERIES: failed (or why not known), per minute. */
static void s_draw_deliveries(s_screen_t *screen, const json_t *deliveries)
{
    char failed[S_LINE_MAX];
    const json_t *count = json_object_get(deliveries, "failed");
    if (json_is_integer(count))
        snprintf(failed, sizeof failed, "%" JSON_INTEGER_FORMAT, json_integer_value(count));
    else
        snprintf(failed, sizeof failed, "%s",
                 json_string_value(json_object_get(deliveries, "failedError")));
    s_line(screen, "DELIVERIES");
    s_line(screen,
           "  failed (dead letters): %s   delivered/min: %" JSON_INTEGER_FORMAT
           "   failed/min: %" JSON_INTEGER_FORMAT,
           failed, s_int(deliveries, "deliveredPerMinute"), s_int(deliveries, "failedPerMinute"));
}

/* Public: the whole screen. */
int nrmctl_top_view_draw(FILE *out, const json_t *snapshot, bool ansi, int rows,
                         int64_t interval_ms, int64_t now_ms)
{
    s_screen_t screen = {out, ansi, ansi && rows > 1 ? rows - 1 : -1, false};
    time_t now = (time_t)(now_ms / S_MS_PER_S);
    struct tm tm;
    char when[S_TIME_TEXT] = "";
    if (gmtime_r(&now, &tm))
        strftime(when, sizeof when, "%Y-%m-%d %H:%M:%S UTC", &tm);
    if (ansi)
        fputs(S_ANSI_HOME, out);
    s_line(&screen, "nrmctl top   %s   every %lld ms   q or Ctrl-C quits", when,
           (long long)interval_ms);
    s_line(&screen, "%s", "");
    s_draw_topics(&screen, json_object_get(snapshot, "topics"));
    s_line(&screen, "%s", "");
    s_draw_regions(&screen, json_object_get(snapshot, "regions"));
    s_line(&screen, "%s", "");
    s_draw_referrals(&screen, json_object_get(snapshot, "openReferrals"));
    s_line(&screen, "%s", "");
    s_draw_shelters(&screen, json_object_get(snapshot, "shelters"));
    s_line(&screen, "%s", "");
    s_draw_deliveries(&screen, json_object_get(snapshot, "deliveries"));
    if (screen.cut)
        fputs(S_CUT_TEXT S_ANSI_CLEAR_LINE, out); /* on the last row: no newline to scroll */
    fputs(ansi ? S_ANSI_CLEAR_BELOW : "\n", out);
    return fflush(out) == 0 && !ferror(out) ? 0 : -1;
}

/* Public: alternate screen, no cursor. */
void nrmctl_top_view_enter(FILE *out)
{
    fputs(S_ANSI_ENTER, out);
    fflush(out);
}

/* Public: the normal screen back. */
void nrmctl_top_view_leave(FILE *out)
{
    fputs(S_ANSI_LEAVE, out);
    fflush(out);
}
