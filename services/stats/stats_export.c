/* ExportCases: the case-level data set in the shape of the CTDC/HTCDS public data (categorical
 * fields only), k-anonymous: every record is equal to at least k-1 others in all its fields
 * (the quasi-identifiers age, gender, citizenship, year, exploitation types, and also country
 * of exploitation and data source). Ages and dates are generalised step by step (CTDC age bands
 * and years; wide bands; two-year periods; minor or adult; the whole period) until the records
 * in classes smaller than k are at most stats.export_max_drop of all; those are left out. */
#include "nrm_alloc.h"
#include "nrm_log.h"
#include "nrm_validate.h"
#include "stats.h"

#include <czmq.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define S_FIELD 48
#define S_KEY 512

static const char s_sql_export[] =
    "SELECT year, gender, age_band, minor, nationality,"
    " array_to_string(ARRAY(SELECT t FROM unnest(exploitation_types) t ORDER BY t), ';'),"
    " country_of_exploitation, agency_type"
    " FROM cases WHERE ($1::int8 = 0 OR opened_ms >= $1) AND ($2::int8 = 0 OR opened_ms < $2)";

typedef enum { S_AGE_CTDC, S_AGE_WIDE, S_AGE_MAJORITY } s_age_level_t;
typedef enum { S_DATE_YEAR, S_DATE_TWO_YEARS, S_DATE_ALL } s_date_level_t;

static const struct {
    s_age_level_t age;
    s_date_level_t date;
} s_levels[] = {{S_AGE_CTDC, S_DATE_YEAR},
                {S_AGE_WIDE, S_DATE_YEAR},
                {S_AGE_WIDE, S_DATE_TWO_YEARS},
                {S_AGE_MAJORITY, S_DATE_TWO_YEARS},
                {S_AGE_MAJORITY, S_DATE_ALL}};
static const char *const s_age_names[] = {"ctdc", "wide", "majority"};
static const char *const s_date_names[] = {"year", "two_years", "all"};

/* One case as exported, before generalisation. */
typedef struct {
    int year;
    char gender[S_FIELD];
    char age_band[S_FIELD];
    bool minor;
    char citizenship[S_FIELD];
    char types[S_KEY];
    char country[S_FIELD];
    char source[S_FIELD];
    char key[S_KEY * 2]; /* the record's class at the level tried */
} s_case_t;

void stats_export_prepare(nrm_db_t *db)
{
    nrm_db_statement(db, "stats_export", s_sql_export);
}

/* The age of a case at an age level. Static. */
static const char *s_age(const s_case_t *c, s_age_level_t level)
{
    static const struct {
        const char *band, *wide;
    } wide[] = {{"0--8", "0--17"},    {"9--17", "0--17"},   {"18--20", "18--29"},
                {"21--23", "18--29"}, {"24--26", "18--29"}, {"27--29", "18--29"},
                {"30--38", "30--47"}, {"39--47", "30--47"}, {"48+", "48+"}};
    if (level == S_AGE_CTDC)
        return c->age_band;
    if (level == S_AGE_WIDE) {
        for (size_t i = 0; i < sizeof wide / sizeof wide[0]; i++)
            if (strcmp(wide[i].band, c->age_band) == 0)
                return wide[i].wide;
        return "unknown";
    }
    return c->minor ? "Minor" : strcmp(c->age_band, "unknown") == 0 ? "unknown" : "Adult";
}

/* The CTDC majority status of a case. Static. */
static const char *s_majority(const s_case_t *c)
{
    return c->minor ? "Minor" : strcmp(c->age_band, "unknown") == 0 ? "Unknown" : "Adult";
}

/* The year of a case at a date level into buf. */
static const char *s_year(const s_case_t *c, s_date_level_t level, int first, int last, char *buf,
                          size_t size)
{
    if (level == S_DATE_YEAR)
        snprintf(buf, size, "%d", c->year);
    else if (level == S_DATE_TWO_YEARS)
        snprintf(buf, size, "%d-%d", c->year - c->year % 2, c->year - c->year % 2 + 1);
    else
        snprintf(buf, size, "%d-%d", first, last);
    return buf;
}

/* Sets each case's class key at level, counts the classes; returns the cases in classes
 * smaller than k. */
static size_t s_classes(s_case_t *cases, size_t n, size_t level, int first, int last, int k,
                        zhash_t **classes)
{
    zhash_destroy(classes);
    zhash_t *counts = *classes = zhash_new();
    for (size_t i = 0; i < n; i++) {
        char year[24];
        snprintf(cases[i].key, sizeof cases[i].key, "%s|%s|%s|%s|%s|%s|%s|%s",
                 s_majority(&cases[i]), s_age(&cases[i], s_levels[level].age),
                 s_year(&cases[i], s_levels[level].date, first, last, year, sizeof year),
                 cases[i].gender, cases[i].citizenship, cases[i].types, cases[i].country,
                 cases[i].source);
        size_t *count = zhash_lookup(counts, cases[i].key);
        if (!count) {
            count = nrm_xcalloc(1, sizeof *count);
            zhash_insert(counts, cases[i].key, count);
            zhash_freefn(counts, cases[i].key, free);
        }
        (*count)++;
    }
    size_t small = 0;
    for (size_t i = 0; i < n; i++)
        small += *(size_t *)zhash_lookup(counts, cases[i].key) < (size_t)k;
    return small;
}

/* The CTDC spelling of a gender. Static. */
static const char *s_gender(const char *g)
{
    return strcmp(g, "FEMALE") == 0  ? "Female"
           : strcmp(g, "MALE") == 0  ? "Male"
           : strcmp(g, "OTHER") == 0 ? "Other"
                                     : "Unknown";
}

/* One exported record of a case at level. */
static Nrm__V1__CaseRecord *s_record(nrm_call_t *call, const s_case_t *c, size_t level, int first,
                                     int last)
{
    Nrm__V1__CaseRecord *r = nrm_call_alloc(call, sizeof *r);
    nrm__v1__case_record__init(r);
    char year[24];
    r->year_of_registration =
        nrm_call_strdup(call, s_year(c, s_levels[level].date, first, last, year, sizeof year));
    r->gender = (char *)s_gender(c->gender);
    r->age_broad = nrm_call_strdup(call, s_age(c, s_levels[level].age));
    r->majority_status = (char *)s_majority(c);
    r->citizenship =
        nrm_call_strdup(call, strcmp(c->citizenship, "UNKNOWN") ? c->citizenship : "00");
    r->type_of_exploit_concatenated = nrm_call_strdup(call, c->types);
    r->is_forced_labour = strstr(c->types, "FORCED_LABOUR") != NULL;
    r->is_sexual_exploit = strstr(c->types, "SEXUAL_EXPLOITATION") != NULL;
    char rest[S_KEY];
    snprintf(rest, sizeof rest, "%s", c->types);
    char *save = NULL;
    for (char *t = strtok_r(rest, ";", &save); t; t = strtok_r(NULL, ";", &save))
        r->is_other_exploit =
            r->is_other_exploit || (strcmp(t, "FORCED_LABOUR") && strcmp(t, "SEXUAL_EXPLOITATION"));
    r->country_of_exploitation = nrm_call_strdup(call, c->country);
    r->data_source = nrm_call_strdup(call, c->source);
    return r;
}

nrm_status_t stats_export_cases(void *ctx, nrm_call_t *call)
{
    stats_t *self = ctx;
    const Nrm__V1__ExportCases *x = call->request->export_cases;
    nrm_error_t *err = call->tx.err;
    if (nrm_check_range(err, "export_cases.from_ms", x->from_ms, 0, INT64_MAX) != NRM_OK ||
        nrm_check_range(err, "export_cases.to_ms", x->to_ms, 0, INT64_MAX) != NRM_OK)
        return NRM_INVALID_ARGUMENT;
    if (x->to_ms && x->to_ms <= x->from_ms)
        return nrm_fail(err, NRM_INVALID_ARGUMENT, "export_cases.to_ms", "to_ms is after from_ms");
    call->subject_id = "cases";
    nrm_params_t p = {0};
    nrm_params_int(&p, x->from_ms);
    nrm_params_int(&p, x->to_ms);
    PGresult *res = NULL;
    nrm_status_t st = nrm_db_exec(call->tx.db, "stats_export", &p, &res, err);
    if (st != NRM_OK)
        return st;
    size_t n = (size_t)PQntuples(res);
    s_case_t *cases = nrm_xcalloc(n ? n : 1, sizeof *cases);
    int first = 0, last = 0;
    for (size_t i = 0; i < n; i++) {
        int row = (int)i;
        s_case_t *c = &cases[i];
        c->year = atoi(nrm_db_text(res, row, 0));
        snprintf(c->gender, sizeof c->gender, "%s", nrm_db_text(res, row, 1));
        snprintf(c->age_band, sizeof c->age_band, "%s", nrm_db_text(res, row, 2));
        c->minor = strcmp(nrm_db_text(res, row, 3), "true") == 0;
        snprintf(c->citizenship, sizeof c->citizenship, "%s", nrm_db_text(res, row, 4));
        snprintf(c->types, sizeof c->types, "%s", nrm_db_text(res, row, 5));
        snprintf(c->country, sizeof c->country, "%s", nrm_db_text(res, row, 6));
        snprintf(c->source, sizeof c->source, "%s", nrm_db_text(res, row, 7));
        first = i == 0 || c->year < first ? c->year : first;
        last = i == 0 || c->year > last ? c->year : last;
    }
    PQclear(res);
    zhash_t *counts = NULL;
    size_t levels = sizeof s_levels / sizeof s_levels[0], level = 0;
    for (; level < levels; level++) {
        size_t small = s_classes(cases, n, level, first, last, self->k, &counts);
        if ((double)small <= self->export_max_drop * (double)n || level == levels - 1)
            break;
    }
    Nrm__V1__CaseExport *out = nrm_call_alloc(call, sizeof *out);
    nrm__v1__case_export__init(out);
    out->records = nrm_call_alloc(call, sizeof *out->records * (n ? n : 1));
    for (size_t i = 0; i < n; i++) {
        if (*(size_t *)zhash_lookup(counts, cases[i].key) < (size_t)self->k)
            out->dropped++;
        else
            out->records[out->n_records++] = s_record(call, &cases[i], level, first, last);
    }
    zhash_destroy(&counts);
    free(cases);
    out->k = self->k;
    out->age_level = (char *)s_age_names[s_levels[level].age];
    out->date_level = (char *)s_date_names[s_levels[level].date];
    call->reply->result_case = NRM__V1__REPLY__RESULT_CASE_EXPORT;
    call->reply->case_export = out;
    return NRM_OK;
}
