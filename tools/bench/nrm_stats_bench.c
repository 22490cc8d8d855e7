/* nrm-stats-bench: GetStatistics latency, one client (the coordinator), request after request,
 * for typical tables: cases by month, by month and region, by region and exploitation type,
 * by age band and gender with a filter; referrals by service with their acceptance times. A
 * benchmark, not a test: it asserts nothing about time.
 *
 *   nrm-stats-bench --endpoint E --server-key Z85 --cert FILE [--requests R]
 *
 * Prints one JSON line per table: {"table", "requests", "ok", "rows", "p50_ms", "p99_ms",
 * "max_ms"}. */
#include "nrm_alloc.h"
#include "nrm_client.h"
#include "nrm_crypto.h"
#include "nrm_time.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define S_DEFAULT_REQUESTS 50
#define S_TIMEOUT_MS 120000
#define S_US_PER_MS 1000.0
#define S_PERCENT 100
#define S_P99 99

typedef struct {
    const char *name;
    const char *measure;
    const char *dims[3];
    const char *filter_dim, *filter_value;
} s_table_t;

static const s_table_t s_tables[] = {
    {"cases by month", "cases", {"month"}, NULL, NULL},
    {"cases by month x region", "cases", {"month", "region"}, NULL, NULL},
    {"cases by region x exploitation type", "cases", {"region", "exploitation_type"}, NULL, NULL},
    {"cases by age band x gender, one region", "cases", {"age_band", "gender"}, "region", "MA-04"},
    {"referrals by service (acceptance median, p90)", "referrals", {"service"}, NULL, NULL},
};

static int s_compare(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

static double s_percentile_ms(const int64_t *sorted, int n, int p)
{
    return (double)sorted[(int)((long long)(n - 1) * p / S_PERCENT)] / S_US_PER_MS;
}

int main(int argc, char **argv)
{
    const char *endpoint = NULL, *server_key = NULL, *cert = NULL;
    int requests = S_DEFAULT_REQUESTS;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "--endpoint") == 0)
            endpoint = argv[i + 1];
        else if (strcmp(argv[i], "--server-key") == 0)
            server_key = argv[i + 1];
        else if (strcmp(argv[i], "--cert") == 0)
            cert = argv[i + 1];
        else if (strcmp(argv[i], "--requests") == 0)
            requests = atoi(argv[i + 1]);
    }
    if (!endpoint || !server_key || !cert || requests < 1) {
        fprintf(stderr, "usage: nrm-stats-bench --endpoint E --server-key Z85 --cert FILE "
                        "[--requests R]\n");
        return 2;
    }
    nrm_crypto_init();
    nrm_error_t err;
    nrm_curve_t curve = {0};
    snprintf(curve.server_key, sizeof curve.server_key, "%s", server_key);
    if (!(curve.cert = nrm_auth_load_cert(cert, &err))) {
        fprintf(stderr, "nrm-stats-bench: %s\n", err.message);
        return 1;
    }
    nrm_client_t *client = nrm_client_new(endpoint, "", &curve);
    int64_t *latency = nrm_xcalloc((size_t)requests, sizeof *latency);
    for (size_t t = 0; t < sizeof s_tables / sizeof s_tables[0]; t++) {
        const s_table_t *table = &s_tables[t];
        int ok = 0;
        size_t rows = 0;
        for (int i = 0; i < requests; i++) {
            Nrm__V1__GetStatistics g = NRM__V1__GET_STATISTICS__INIT;
            Nrm__V1__StatisticsFilter f = NRM__V1__STATISTICS_FILTER__INIT;
            Nrm__V1__StatisticsFilter *fp[1] = {&f};
            g.measure = (char *)table->measure;
            g.dimensions = (char **)table->dims;
            while (g.n_dimensions < 3 && table->dims[g.n_dimensions])
                g.n_dimensions++;
            if (table->filter_dim) {
                f.dimension = (char *)table->filter_dim;
                f.value = (char *)table->filter_value;
                g.filters = fp;
                g.n_filters = 1;
            }
            Nrm__V1__Request req = NRM__V1__REQUEST__INIT;
            req.body_case = NRM__V1__REQUEST__BODY_GET_STATISTICS;
            req.get_statistics = &g;
            int64_t started = nrm_mono_us();
            Nrm__V1__Reply *reply = nrm_client_call(client, &req, S_TIMEOUT_MS, &err);
            latency[i] = nrm_mono_us() - started;
            if (reply && reply->status == NRM__V1__STATUS__STATUS_OK &&
                reply->result_case == NRM__V1__REPLY__RESULT_STATISTICS_TABLE) {
                ok++;
                rows = reply->statistics_table->n_rows;
            } else if (reply && i == 0)
                fprintf(stderr, "nrm-stats-bench: %s: status %d %s\n", table->name,
                        (int)reply->status, reply->error_message);
            if (reply)
                nrm__v1__reply__free_unpacked(reply, NULL);
        }
        qsort(latency, (size_t)requests, sizeof *latency, s_compare);
        printf("{\"table\":\"%s\",\"requests\":%d,\"ok\":%d,\"rows\":%zu,\"p50_ms\":%.2f,"
               "\"p99_ms\":%.2f,\"max_ms\":%.2f}\n",
               table->name, requests, ok, rows, s_percentile_ms(latency, requests, S_PERCENT / 2),
               s_percentile_ms(latency, requests, S_P99),
               s_percentile_ms(latency, requests, S_PERCENT));
        fflush(stdout);
    }
    free(latency);
    nrm_client_destroy(&client);
    zcert_destroy(&curve.cert);
    return 0;
}
