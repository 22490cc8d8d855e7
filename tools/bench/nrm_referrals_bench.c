/* nrm-referrals-bench: ListReferrals latency, one client, request after request, for the ways
 * agencies ask: the coordinator's first page, overdue and pending filters, a provider's inbox
 * (first page, and walking its pages), a case manager's cases, one case, an agency with no
 * referral at all. A benchmark, not a test: it asserts nothing about time.
 *
 *   nrm-referrals-bench --endpoint E --server-key Z85 --certs DIR --case-prefix P --cases N
 *                       [--requests R]
 *
 * DIR holds the agencies' certificates (DIR/<agency>.cert, as deploy/certify.sh writes them);
 * case ids are P1 .. PN. Prints one JSON line per scenario: {"scenario", "agency", "requests",
 * "ok", "rows_mean", "p50_ms", "p99_ms", "max_ms"}. */
#include "nrm_alloc.h"
#include "nrm_client.h"
#include "nrm_crypto.h"
#include "nrm_time.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define S_DEFAULT_REQUESTS 200
#define S_TIMEOUT_MS 30000
#define S_PATH_MAX 512
#define S_ID_MAX 80
#define S_TOKEN_MAX 256
#define S_US_PER_MS 1000.0
#define S_PERCENT 100
#define S_P99 99

/* One way of asking. */
typedef struct {
    const char *name;
    const char *agency;
    bool overdue;
    const char *state; /* NULL: any */
    bool one_case;     /* a random case of the bench's */
    int case_every;    /* with one_case: only cases numbered k * case_every + 1 (0: any) */
    bool walk_pages;   /* each request asks for the page after the previous one */
    int page_size;     /* 0: the default */
} s_scenario_t;

/* police-ma-04 manages the cases numbered 9k + 1 (tools/bench/referrals.sh) */
#define S_MANAGER_EVERY 9

static const s_scenario_t s_scenarios[] = {
    {"coordinator_first_page", "coordinator", false, NULL, false, 0, false, 0},
    {"coordinator_overdue", "coordinator", true, NULL, false, 0, false, 0},
    {"coordinator_one_case", "coordinator", false, NULL, true, 0, false, 0},
    {"provider_inbox_first_page", "legal-aid-ma-04", false, NULL, false, 0, false, 0},
    {"provider_inbox_pending", "legal-aid-ma-04", false, "pending", false, 0, false, 0},
    {"provider_inbox_walk_pages", "legal-aid-ma-04", false, NULL, false, 0, true, 0},
    {"case_manager_first_page", "police-ma-04", false, NULL, false, 0, false, 0},
    {"case_manager_one_case", "police-ma-04", false, NULL, true, S_MANAGER_EVERY, false, 0},
    {"agency_without_referrals", "iom-ma", false, NULL, false, 0, false, 0},
};

/* Settings from the command line. */
typedef struct {
    const char *endpoint;
    const char *server_key;
    const char *certs;
    const char *case_prefix;
    int cases;
    int requests;
} s_settings_t;

static int s_compare(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

/* The p-th percentile (0-100) of n sorted values, in milliseconds. */
static double s_percentile_ms(const int64_t *sorted, int n, int p)
{
    return (double)sorted[(int)((long long)(n - 1) * p / S_PERCENT)] / S_US_PER_MS;
}

/* Runs one scenario and prints its line. Returns 0, or -1 when the certificate is missing. */
static int s_run(const s_settings_t *s, const s_scenario_t *sc)
{
    char path[S_PATH_MAX];
    snprintf(path, sizeof path, "%s/%s.cert", s->certs, sc->agency);
    nrm_error_t err;
    nrm_curve_t curve = {0};
    snprintf(curve.server_key, sizeof curve.server_key, "%s", s->server_key);
    if (!(curve.cert = nrm_auth_load_cert(path, &err))) {
        fprintf(stderr, "nrm-referrals-bench: %s\n", err.message);
        return -1;
    }
    nrm_client_t *client = nrm_client_new(s->endpoint, "", &curve);
    int64_t *latency = nrm_xcalloc((size_t)s->requests, sizeof *latency);
    long long rows = 0;
    int ok = 0;
    char token[S_TOKEN_MAX] = "";
    unsigned seed = 1;
    for (int i = 0; i < s->requests; i++) {
        char case_id[S_ID_MAX] = "";
        int every = sc->case_every > 0 ? sc->case_every : 1;
        if (sc->one_case)
            snprintf(case_id, sizeof case_id, "%s%d", s->case_prefix,
                     1 + every * (int)(rand_r(&seed) % (unsigned)(s->cases / every)));
        char *states[] = {(char *)sc->state};
        Nrm__V1__ListReferrals list = NRM__V1__LIST_REFERRALS__INIT;
        list.overdue_only = sc->overdue;
        list.case_id = case_id;
        list.state = states;
        list.n_state = sc->state ? 1 : 0;
        list.page_size = sc->page_size;
        list.page_token = token;
        Nrm__V1__Request req = NRM__V1__REQUEST__INIT;
        req.body_case = NRM__V1__REQUEST__BODY_LIST_REFERRALS;
        req.list_referrals = &list;
        int64_t started = nrm_mono_us();
        Nrm__V1__Reply *reply = nrm_client_call(client, &req, S_TIMEOUT_MS, &err);
        latency[i] = nrm_mono_us() - started;
        if (reply && reply->status == NRM__V1__STATUS__STATUS_OK &&
            reply->result_case == NRM__V1__REPLY__RESULT_REFERRAL_LIST) {
            ok++;
            rows += (long long)reply->referral_list->n_referrals;
            if (sc->walk_pages)
                snprintf(token, sizeof token, "%s", reply->referral_list->next_page_token);
        }
        if (reply)
            nrm__v1__reply__free_unpacked(reply, NULL);
    }
    qsort(latency, (size_t)s->requests, sizeof *latency, s_compare);
    printf("{\"scenario\":\"%s\",\"agency\":\"%s\",\"requests\":%d,\"ok\":%d,\"rows_mean\":%.1f,"
           "\"p50_ms\":%.2f,\"p99_ms\":%.2f,\"max_ms\":%.2f}\n",
           sc->name, sc->agency, s->requests, ok, (double)rows / s->requests,
           s_percentile_ms(latency, s->requests, S_PERCENT / 2),
           s_percentile_ms(latency, s->requests, S_P99),
           s_percentile_ms(latency, s->requests, S_PERCENT));
    fflush(stdout);
    free(latency);
    nrm_client_destroy(&client);
    zcert_destroy(&curve.cert);
    return 0;
}

int main(int argc, char **argv)
{
    s_settings_t s = {.requests = S_DEFAULT_REQUESTS};
    for (int i = 1; i + 1 < argc; i += 2) {
        const char *o = argv[i], *v = argv[i + 1];
        if (strcmp(o, "--endpoint") == 0)
            s.endpoint = v;
        else if (strcmp(o, "--server-key") == 0)
            s.server_key = v;
        else if (strcmp(o, "--certs") == 0)
            s.certs = v;
        else if (strcmp(o, "--case-prefix") == 0)
            s.case_prefix = v;
        else if (strcmp(o, "--cases") == 0)
            s.cases = atoi(v);
        else if (strcmp(o, "--requests") == 0)
            s.requests = atoi(v);
    }
    if (!s.endpoint || !s.server_key || !s.certs || !s.case_prefix || s.cases < 1 ||
        s.requests < 1) {
        fprintf(stderr, "usage: nrm-referrals-bench --endpoint E --server-key Z85 --certs DIR "
                        "--case-prefix P --cases N [--requests R]\n");
        return 2;
    }
    nrm_crypto_init();
    int rc = 0;
    for (size_t i = 0; i < sizeof s_scenarios / sizeof s_scenarios[0]; i++)
        rc |= s_run(&s, &s_scenarios[i]);
    return rc ? 1 : 0;
}
