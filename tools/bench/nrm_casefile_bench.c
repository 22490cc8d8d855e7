/* nrm-casefile-bench: latency of the case file's reads, one request at a time from one client.
 * A benchmark, not a test: it asserts nothing about time.
 *
 *   nrm-casefile-bench --endpoint tcp://127.0.0.1:7101 --cases FILE [--requests N]
 *                      [--agency ID | --cert FILE --server-key Z85] [--region R]
 *
 * FILE holds case ids, one a line (GetCase asks for them in turn). Prints one line of JSON per
 * measurement: {"op":"get_case",...,"requests":N,"ok":K,"p50_ms":..,"p99_ms":..,"max_ms":..}
 * for GetCase, ListCases' first page (no filter, then region + open_only), and ListCases
 * following next_page_token page after page. */
#include "nrm_alloc.h"
#include "nrm_client.h"
#include "nrm_crypto.h"
#include "nrm_time.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define S_DEFAULT_REQUESTS 2000
#define S_TIMEOUT_MS 30000
#define S_ID_MAX 64
#define S_MAX_CASES 100000
#define S_TOKEN_MAX 256
#define S_PAGE_SIZE 50
#define S_US_PER_MS 1000.0
#define S_PERCENT 100

typedef struct {
    nrm_client_t *client;
    char (*ids)[S_ID_MAX + 1];
    int n_ids;
    const char *region;
} s_bench_t;

static int s_compare(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

/* The p-th percentile (0-100) of n sorted values, in milliseconds. */
static double s_percentile_ms(const int64_t *sorted, int n, int p)
{
    int index = (int)((long long)(n - 1) * p / S_PERCENT);
    return (double)sorted[index] / S_US_PER_MS;
}

/* Prints the figures of one measurement (latency is sorted in place). */
static void s_print(const char *op, int64_t *latency, int n, int ok, double rows_per_reply)
{
    qsort(latency, (size_t)n, sizeof *latency, s_compare);
    printf("{\"op\":\"%s\",\"requests\":%d,\"ok\":%d,\"rows_per_reply\":%.1f,\"p50_ms\":%.2f,"
           "\"p99_ms\":%.2f,\"max_ms\":%.2f}\n",
           op, n, ok, rows_per_reply, s_percentile_ms(latency, n, 50),
           s_percentile_ms(latency, n, 99), s_percentile_ms(latency, n, S_PERCENT));
    fflush(stdout);
}

/* Sends req, timing it; returns the reply (caller frees) or NULL, *us the latency. */
static Nrm__V1__Reply *s_timed(s_bench_t *b, Nrm__V1__Request *req, int64_t *us)
{
    nrm_error_t err;
    req->request_id = "";
    int64_t started = nrm_mono_us();
    Nrm__V1__Reply *reply = nrm_client_call(b->client, req, S_TIMEOUT_MS, &err);
    *us = nrm_mono_us() - started;
    return reply;
}

/* GetCase for n case ids in turn, printed as op. */
static void s_get_case(s_bench_t *b, const char *op, int n, int64_t *latency)
{
    int ok = 0;
    for (int i = 0; i < n; i++) {
        Nrm__V1__GetCase g = NRM__V1__GET_CASE__INIT;
        g.case_id = b->ids[i % b->n_ids];
        Nrm__V1__Request req = NRM__V1__REQUEST__INIT;
        req.body_case = NRM__V1__REQUEST__BODY_GET_CASE;
        req.get_case = &g;
        Nrm__V1__Reply *r = s_timed(b, &req, &latency[i]);
        ok += r && r->status == NRM__V1__STATUS__STATUS_OK && r->case_view;
        if (r)
            nrm__v1__reply__free_unpacked(r, NULL);
    }
    s_print(op, latency, n, ok, 1.0);
}

/* ListCases n times: the first page (paging false) or page after page (paging true, starting
 * again from the first page at the end). */
static void s_list(s_bench_t *b, const char *op, const char *region, bool open_only, bool paging,
                   int n, int64_t *latency)
{
    char token[S_TOKEN_MAX] = "";
    int ok = 0;
    long long rows = 0;
    for (int i = 0; i < n; i++) {
        Nrm__V1__ListCases l = NRM__V1__LIST_CASES__INIT;
        l.region = (char *)region;
        l.open_only = open_only;
        l.page_size = S_PAGE_SIZE;
        l.page_token = token;
        Nrm__V1__Request req = NRM__V1__REQUEST__INIT;
        req.body_case = NRM__V1__REQUEST__BODY_LIST_CASES;
        req.list_cases = &l;
        Nrm__V1__Reply *r = s_timed(b, &req, &latency[i]);
        if (r && r->status == NRM__V1__STATUS__STATUS_OK && r->case_list) {
            ok++;
            rows += (long long)r->case_list->n_cases;
            snprintf(token, sizeof token, "%s", paging ? r->case_list->next_page_token : "");
        }
        if (r)
            nrm__v1__reply__free_unpacked(r, NULL);
    }
    s_print(op, latency, n, ok, ok ? (double)rows / ok : 0);
}

/* Reads up to S_MAX_CASES ids from path into b. Returns 0 or -1. */
static int s_read_ids(s_bench_t *b, const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    b->ids = nrm_xcalloc(S_MAX_CASES, sizeof *b->ids);
    char line[S_ID_MAX + 2];
    while (b->ids && b->n_ids < S_MAX_CASES && fgets(line, sizeof line, f)) {
        line[strcspn(line, "\r\n")] = '\0';
        if (line[0])
            snprintf(b->ids[b->n_ids++], S_ID_MAX + 1, "%s", line);
    }
    fclose(f);
    return b->n_ids > 0 ? 0 : -1;
}

static void s_usage(void)
{
    fprintf(stderr, "usage: nrm-casefile-bench --endpoint ENDPOINT --cases FILE [--requests N]\n"
                    "       [--agency ID | --cert FILE --server-key Z85] [--region R]\n");
}

int main(int argc, char **argv)
{
    const char *endpoint = NULL, *agency = "coordinator", *cert_file = NULL, *cases = NULL;
    s_bench_t b = {.region = "MA-06"};
    nrm_curve_t curve = {0};
    int requests = S_DEFAULT_REQUESTS;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--endpoint") == 0 && i + 1 < argc)
            endpoint = argv[++i];
        else if (strcmp(argv[i], "--cases") == 0 && i + 1 < argc)
            cases = argv[++i];
        else if (strcmp(argv[i], "--requests") == 0 && i + 1 < argc)
            requests = atoi(argv[++i]);
        else if (strcmp(argv[i], "--agency") == 0 && i + 1 < argc)
            agency = argv[++i];
        else if (strcmp(argv[i], "--region") == 0 && i + 1 < argc)
            b.region = argv[++i];
        else if (strcmp(argv[i], "--cert") == 0 && i + 1 < argc)
            cert_file = argv[++i];
        else if (strcmp(argv[i], "--server-key") == 0 && i + 1 < argc)
            snprintf(curve.server_key, sizeof curve.server_key, "%s", argv[++i]);
        else {
            s_usage();
            return 2;
        }
    }
    if (!endpoint || !cases || requests < 1 || s_read_ids(&b, cases) != 0) {
        s_usage();
        free(b.ids);
        return 2;
    }
    nrm_crypto_init();
    nrm_error_t err;
    if (cert_file && !(curve.cert = nrm_auth_load_cert(cert_file, &err))) {
        fprintf(stderr, "nrm-casefile-bench: %s\n", err.message);
        free(b.ids);
        return 2;
    }
    b.client = nrm_client_new(endpoint, curve.cert ? "" : agency, curve.cert ? &curve : NULL);
    int64_t *latency = nrm_xcalloc((size_t)requests, sizeof *latency);
    int warmup = requests / 10 > 0 ? requests / 10 : 1;
    s_get_case(&b, "get_case_warmup", warmup, latency); /* connections, caches */
    s_get_case(&b, "get_case", requests, latency);
    s_list(&b, "list_cases_first_page", "", false, false, requests, latency);
    s_list(&b, "list_cases_region_open_first_page", b.region, true, false, requests, latency);
    s_list(&b, "list_cases_paging", "", false, true, requests, latency);
    free(latency);
    free(b.ids);
    nrm_client_destroy(&b.client);
    zcert_destroy(&curve.cert);
    return 0;
}
