/* nrmctl_stats: the statistics commands: a table (GetStatistics) and the case-level export
 * (ExportCases), as proto3 JSON or CSV.
 *
 *   stats MEASURE [--by DIM[,DIM[,DIM]]] [--from T] [--to T] [--filter DIM=VALUE]... [--csv]
 *   stats export [--from T] [--to T] [--csv]
 *
 * T is milliseconds since the epoch or a UTC date YYYY-MM-DD. */
#include "nrmctl_commands.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define S_SERVICE "stats"
#define S_MAX_DIMS 3
#define S_MAX_FILTERS 16
#define S_ARG_MAX 256
#define S_MS_PER_S 1000

/* Parses T (ms, or YYYY-MM-DD at 00:00 UTC) into *ms. Returns false when it is neither. */
static bool s_time(const char *text, int64_t *ms)
{
    int y = 0, m = 0, d = 0;
    char tail = 0;
    if (sscanf(text, "%4d-%2d-%2d%c", &y, &m, &d, &tail) == 3 && m >= 1 && m <= 12 && d >= 1 &&
        d <= 31) {
        struct tm tm = {.tm_year = y - 1900, .tm_mon = m - 1, .tm_mday = d};
        *ms = (int64_t)timegm(&tm) * S_MS_PER_S;
        return *ms >= 0;
    }
    return nrmctl_parse_int(text, 0, INT64_MAX, ms);
}

/* Writes one CSV field (quoted when it needs to be), then sep. */
static void s_csv(const char *field, char sep)
{
    if (strpbrk(field, ",\"\n")) {
        putchar('"');
        for (const char *p = field; *p; p++) {
            if (*p == '"')
                putchar('"');
            putchar(*p);
        }
        putchar('"');
    } else
        fputs(field, stdout);
    putchar(sep);
}

/* Prints a table as CSV: the dimensions, count, suppressed, then the values (empty when
 * suppressed or withheld). */
static void s_table_csv(const Nrm__V1__StatisticsTable *t)
{
    for (size_t d = 0; d < t->n_dimensions; d++)
        s_csv(t->dimensions[d], ',');
    fputs("count,suppressed", stdout);
    for (size_t v = 0; v < t->n_value_names; v++)
        printf(",%s", t->value_names[v]);
    putchar('\n');
    for (size_t i = 0; i < t->n_rows; i++) {
        const Nrm__V1__StatisticsRow *r = t->rows[i];
        for (size_t d = 0; d < r->n_keys; d++)
            s_csv(r->keys[d], ',');
        if (r->suppressed)
            fputs(",true", stdout);
        else
            printf("%lld,false", (long long)r->count);
        for (size_t v = 0; v < t->n_value_names; v++) {
            if (v < r->n_values && r->values[v] >= 0)
                printf(",%.6g", r->values[v]);
            else
                putchar(',');
        }
        putchar('\n');
    }
}

/* Prints the export as CSV with the CTDC column names. */
static void s_export_csv(const Nrm__V1__CaseExport *x)
{
    puts("yearOfRegistration,gender,ageBroad,majorityStatus,citizenship,CountryOfExploitation,"
         "typeOfExploitConcatenated,isForcedLabour,isSexualExploit,isOtherExploit,Datasource");
    for (size_t i = 0; i < x->n_records; i++) {
        const Nrm__V1__CaseRecord *r = x->records[i];
        s_csv(r->year_of_registration, ',');
        s_csv(r->gender, ',');
        s_csv(r->age_broad, ',');
        s_csv(r->majority_status, ',');
        s_csv(r->citizenship, ',');
        s_csv(r->country_of_exploitation, ',');
        s_csv(r->type_of_exploit_concatenated, ',');
        printf("%d,%d,%d,", r->is_forced_labour, r->is_sexual_exploit, r->is_other_exploit);
        s_csv(r->data_source, '\n');
    }
}

/* Sends req to stats; prints the Reply as JSON, or its result as CSV. Returns the exit code. */
static int s_send(nrmctl_t *ctl, Nrm__V1__Request *req, bool csv)
{
    Nrm__V1__Reply *reply = NULL;
    int rc = nrmctl_call(ctl, S_SERVICE, req, &reply);
    if (rc != NRMCTL_EXIT_OK)
        return rc;
    if (csv && reply->result_case == NRM__V1__REPLY__RESULT_STATISTICS_TABLE)
        s_table_csv(reply->statistics_table);
    else if (csv && reply->result_case == NRM__V1__REPLY__RESULT_CASE_EXPORT)
        s_export_csv(reply->case_export);
    else
        rc = nrmctl_print_reply(reply);
    if (fflush(stdout) != 0) {
        nrmctl_error("cannot write to the standard output");
        rc = NRMCTL_EXIT_USAGE;
    }
    nrm__v1__reply__free_unpacked(reply, NULL);
    return rc;
}

/* Public: stats MEASURE [OPTIONS] | stats export [OPTIONS] */
int nrmctl_stats(nrmctl_t *ctl, int argc, char **argv)
{
    if (argc < 2 || argv[1][0] == '-')
        return nrmctl_usage_error(argv[0], "stats needs a MEASURE (or export)");
    bool export = strcmp(argv[1], "export") == 0, csv = false;
    Nrm__V1__GetStatistics get = NRM__V1__GET_STATISTICS__INIT;
    Nrm__V1__ExportCases exp = NRM__V1__EXPORT_CASES__INIT;
    char by[S_ARG_MAX] = "";
    char *dims[S_MAX_DIMS];
    Nrm__V1__StatisticsFilter filters[S_MAX_FILTERS];
    Nrm__V1__StatisticsFilter *filter_ptrs[S_MAX_FILTERS];
    char filter_text[S_MAX_FILTERS][S_ARG_MAX];
    get.measure = argv[1];
    for (int i = 2; i < argc; i++) {
        const char *option = argv[i];
        if (strcmp(option, "--csv") == 0) {
            csv = true;
            continue;
        }
        if (i + 1 >= argc)
            return nrmctl_usage_error(argv[0], "option %s needs a value", option);
        const char *value = argv[++i];
        if (strcmp(option, "--from") == 0 || strcmp(option, "--to") == 0) {
            int64_t ms = 0;
            if (!s_time(value, &ms))
                return nrmctl_usage_error(argv[0], "%s is ms since the epoch or YYYY-MM-DD",
                                          option);
            *(strcmp(option, "--from") == 0 ? &get.from_ms : &get.to_ms) = ms;
        } else if (strcmp(option, "--by") == 0 && !export) {
            snprintf(by, sizeof by, "%s", value);
            get.n_dimensions = 0;
            char *save = NULL;
            for (char *d = strtok_r(by, ",", &save); d; d = strtok_r(NULL, ",", &save)) {
                if (get.n_dimensions == S_MAX_DIMS)
                    return nrmctl_usage_error(argv[0], "--by takes at most %d dimensions",
                                              S_MAX_DIMS);
                dims[get.n_dimensions++] = d;
            }
            get.dimensions = dims;
        } else if (strcmp(option, "--filter") == 0 && !export) {
            if (get.n_filters == S_MAX_FILTERS)
                return nrmctl_usage_error(argv[0], "at most %d filters", S_MAX_FILTERS);
            size_t f = get.n_filters;
            snprintf(filter_text[f], sizeof filter_text[f], "%s", value);
            char *eq = strchr(filter_text[f], '=');
            if (!eq || eq == filter_text[f])
                return nrmctl_usage_error(argv[0], "--filter is DIM=VALUE");
            *eq = '\0';
            nrm__v1__statistics_filter__init(&filters[f]);
            filters[f].dimension = filter_text[f];
            filters[f].value = eq + 1;
            filter_ptrs[f] = &filters[f];
            get.filters = filter_ptrs;
            get.n_filters++;
        } else
            return nrmctl_usage_error(argv[0], "unknown argument %s", option);
    }
    Nrm__V1__Request req = NRM__V1__REQUEST__INIT;
    if (export) {
        exp.from_ms = get.from_ms;
        exp.to_ms = get.to_ms;
        req.body_case = NRM__V1__REQUEST__BODY_EXPORT_CASES;
        req.export_cases = &exp;
    } else {
        req.body_case = NRM__V1__REQUEST__BODY_GET_STATISTICS;
        req.get_statistics = &get;
    }
    return s_send(ctl, &req, csv);
}
