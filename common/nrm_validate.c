#include "nrm_validate.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

#define S_MAX_AGE_YEARS 150
#define S_MS_PER_S 1000

bool nrm_text_clean(const char *s)
{
    /* the smallest code point each sequence length may encode (shorter forms are overlong) */
    static const uint32_t s_min[] = {0, 0x80, 0x800, 0x10000};
    const unsigned char *p = (const unsigned char *)s;
    while (*p) {
        unsigned char c = *p;
        int extra = c < 0x80             ? 0
                    : (c & 0xE0) == 0xC0 ? 1
                    : (c & 0xF0) == 0xE0 ? 2
                    : (c & 0xF8) == 0xF0 ? 3
                                         : -1;
        if (extra < 0 || (c < 0x20 && c != '\t' && c != '\n') || c == 0x7F)
            return false;
        uint32_t cp = c & (0x7F >> extra);
        p++;
        for (int i = 0; i < extra; i++, p++) {
            if ((*p & 0xC0) != 0x80)
                return false;
            cp = (cp << 6) | (*p & 0x3F);
        }
        if (cp < s_min[extra] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
            return false; /* overlong, beyond Unicode, or a UTF-16 surrogate */
        if (cp >= 0x80 && cp < 0xA0)
            return false; /* C1 control character */
    }
    return true;
}

nrm_status_t nrm_check_text(nrm_error_t *err, const char *field, const char *s, size_t max,
                            bool required)
{
    if (!s || !s[0])
        return required ? nrm_fail(err, NRM_INVALID_ARGUMENT, field, "%s is required", field)
                        : NRM_OK;
    if (strlen(s) > max)
        return nrm_fail(err, NRM_INVALID_ARGUMENT, field, "%s is longer than %zu bytes", field,
                        max);
    if (!nrm_text_clean(s))
        return nrm_fail(err, NRM_INVALID_ARGUMENT, field,
                        "%s is not valid UTF-8 text or contains control characters", field);
    return NRM_OK;
}

nrm_status_t nrm_check_enum(nrm_error_t *err, const char *field,
                            const ProtobufCEnumDescriptor *desc, int value, bool allow_zero)
{
    if (value == 0 && allow_zero)
        return NRM_OK;
    if (value == 0 || !protobuf_c_enum_descriptor_get_value(desc, value))
        return nrm_fail(err, NRM_INVALID_ARGUMENT, field, "%s is not a valid %s", field,
                        desc->short_name);
    return NRM_OK;
}

nrm_status_t nrm_check_range(nrm_error_t *err, const char *field, int64_t value, int64_t lo,
                             int64_t hi)
{
    if (value < lo || value > hi)
        return nrm_fail(err, NRM_INVALID_ARGUMENT, field, "%s must be between %lld and %lld", field,
                        (long long)lo, (long long)hi);
    return NRM_OK;
}

/* True when s is exactly n characters from the set accepted by ok(). */
static bool s_shape(const char *s, size_t n, int (*ok)(int))
{
    if (strlen(s) != n)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!ok((unsigned char)s[i]))
            return false;
    return true;
}

static int s_upper(int c)
{
    return c >= 'A' && c <= 'Z';
}

static int s_lower(int c)
{
    return c >= 'a' && c <= 'z';
}

static int s_upper_or_digit(int c)
{
    return s_upper(c) || (c >= '0' && c <= '9');
}

nrm_status_t nrm_check_country(nrm_error_t *err, const char *field, const char *s, bool required)
{
    if ((!s || !s[0]) && !required)
        return NRM_OK;
    if (!s || !s_shape(s, 2, s_upper))
        return nrm_fail(err, NRM_INVALID_ARGUMENT, field,
                        "%s must be an ISO 3166-1 alpha-2 code (two capital letters)", field);
    return NRM_OK;
}

nrm_status_t nrm_check_language(nrm_error_t *err, const char *field, const char *s)
{
    if (!s || !s_shape(s, 2, s_lower))
        return nrm_fail(err, NRM_INVALID_ARGUMENT, field,
                        "%s must be an ISO 639-1 code (two small letters)", field);
    return NRM_OK;
}

nrm_status_t nrm_check_region_shape(nrm_error_t *err, const char *field, const char *s)
{
    size_t n = s ? strlen(s) : 0;
    bool ok = n >= 4 && n <= 6 && s_upper(s[0]) && s_upper(s[1]) && s[2] == '-';
    for (size_t i = 3; ok && i < n; i++)
        ok = s_upper_or_digit((unsigned char)s[i]);
    if (!ok)
        return nrm_fail(err, NRM_INVALID_ARGUMENT, field,
                        "%s must be an ISO 3166-2 code such as MA-04", field);
    return NRM_OK;
}

/* Days in month m of year y. */
static int s_days_in_month(int y, int m)
{
    static const int days[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    return m == 2 && leap ? 29 : days[m - 1];
}

/* The UTC calendar day of ms since the epoch. */
static void s_day_of(int64_t ms, int *y, int *m, int *d)
{
    time_t t = (time_t)(ms / S_MS_PER_S);
    struct tm tm;
    gmtime_r(&t, &tm);
    *y = tm.tm_year + 1900;
    *m = tm.tm_mon + 1;
    *d = tm.tm_mday;
}

int nrm_age_on(int y, int m, int d, int64_t at_ms)
{
    int ty, tm, td;
    s_day_of(at_ms, &ty, &tm, &td);
    int age = ty - y;
    if (tm < m || (tm == m && td < d))
        age--;
    return age;
}

nrm_status_t nrm_check_date(nrm_error_t *err, const char *field, const char *s, int64_t now_ms,
                            int *y_out, int *m_out, int *d_out)
{
    int y = 0, m = 0, d = 0, used = 0;
    bool shaped = s && strlen(s) == 10 && s[4] == '-' && s[7] == '-';
    for (int i = 0; shaped && i < 10; i++)
        shaped = i == 4 || i == 7 || (s[i] >= '0' && s[i] <= '9'); /* no signs or spaces */
    shaped = shaped && sscanf(s, "%4d-%2d-%2d%n", &y, &m, &d, &used) == 3 && used == 10;
    if (!shaped || m < 1 || m > 12 || d < 1 || d > s_days_in_month(y, m))
        return nrm_fail(err, NRM_INVALID_ARGUMENT, field, "%s must be a date YYYY-MM-DD", field);
    int ty, tm, td;
    s_day_of(now_ms, &ty, &tm, &td);
    if (y > ty || (y == ty && (m > tm || (m == tm && d > td))))
        return nrm_fail(err, NRM_INVALID_ARGUMENT, field, "%s is in the future", field);
    /* earlier than the same day S_MAX_AGE_YEARS years before today */
    int oy = y + S_MAX_AGE_YEARS;
    if (oy < ty || (oy == ty && (m < tm || (m == tm && d < td))))
        return nrm_fail(err, NRM_INVALID_ARGUMENT, field, "%s is implausibly old", field);
    if (y_out)
        *y_out = y;
    if (m_out)
        *m_out = m;
    if (d_out)
        *d_out = d;
    return NRM_OK;
}

const char *nrm_path_index(char *buf, size_t size, const char *prefix, size_t index)
{
    snprintf(buf, size, "%s[%zu]", prefix, index);
    return buf;
}
