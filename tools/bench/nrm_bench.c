/* nrm-bench: submits N reports to intake from C concurrent clients and prints throughput and
 * acknowledgement latency. A benchmark, not a test: it asserts nothing about time.
 *
 *   nrm-bench --endpoint tcp://127.0.0.1:7101 [--reports N] [--clients C] [--agency ID]
 *             [--region R] [--shelter] [--rate PER_S] [--log FILE]
 *
 * --shelter adds SHELTER to the needs (so routing asks shelter for a bed); --rate paces the
 * clients to PER_S reports per second in all, evenly spaced: one every 1/PER_S s, each client
 * every C/PER_S s, client c starting c/PER_S s after the first (default: as fast as they are
 * acknowledged); --log writes one line per acknowledged report, "CASE_ID SUBMITTED_MS" (wall
 * clock, milliseconds with a fraction), for tools/bench/e2e.sh to match against its webhook
 * receiver's log.
 *
 * Prints one line of JSON: {"reports":N,"clients":C,"ok":K,"seconds":S,"reports_per_s":R,
 * "ack_p50_ms":..,"ack_p99_ms":..,"ack_max_ms":..}. Each report is a new, fictitious person. */
#include "nrm_alloc.h"
#include "nrm_client.h"
#include "nrm_crypto.h"
#include "nrm_time.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define S_DEFAULT_REPORTS 2000
#define S_DEFAULT_CLIENTS 8
#define S_TIMEOUT_MS 30000
#define S_NAME_MAX 64
#define S_US_PER_MS 1000.0
#define S_PERCENT 100

typedef struct {
    const char *endpoint;
    const char *agency;
    const nrm_curve_t *curve; /* NULL: plain text */
    const char *region;
    bool shelter;         /* SHELTER among the needs */
    int64_t interval_us;  /* pacing between this client's reports; 0: none */
    int64_t first_due_us; /* when paced: the monotonic time of its first report */
    FILE *log;            /* NULL: no per-report log (shared; writes under s_log_lock) */
    int first;            /* number of this client's first report */
    int count;            /* reports this client sends */
    int64_t *latency_us;  /* one slot per report (owned by main) */
    int ok;
} s_worker_t;

static pthread_mutex_t s_log_lock = PTHREAD_MUTEX_INITIALIZER;

/* Wall-clock time in milliseconds with a fraction (for matching against another process). */
static double s_wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

/* Sleeps until the monotonic time due_us (no-op when it has passed). */
static void s_sleep_until(int64_t due_us)
{
    int64_t left = due_us - nrm_mono_us();
    if (left > 0) {
        struct timespec ts = {(time_t)(left / 1000000), (long)(left % 1000000) * 1000};
        nanosleep(&ts, NULL);
    }
}

/* Sends this worker's reports one after the other, timing each acknowledgement. */
static void *s_work(void *arg)
{
    s_worker_t *w = arg;
    nrm_client_t *client = nrm_client_new(w->endpoint, w->agency, w->curve);
    int64_t due = w->first_due_us;
    for (int i = 0; i < w->count; i++) {
        if (w->interval_us > 0) {
            s_sleep_until(due);
            due += w->interval_us;
        }
        char name[S_NAME_MAX];
        snprintf(name, sizeof name, "Bench Person %d-%lld", w->first + i, (long long)nrm_now_ms());
        char *languages[] = {"ar", "fr"};
        Nrm__V1__ServiceType needs[] = {NRM__V1__SERVICE_TYPE__SERVICE_TYPE_MEDICAL,
                                        NRM__V1__SERVICE_TYPE__SERVICE_TYPE_LEGAL_AID,
                                        NRM__V1__SERVICE_TYPE__SERVICE_TYPE_SHELTER};
        /* dates of birth spread over 30 years (adults), as in a real population: intake
         * compares a new case with the open cases of the same date of birth and nationality */
        unsigned spread = (unsigned)(w->first + i) * 2654435761u;
        char dob[16];
        snprintf(dob, sizeof dob, "%u-%02u-%02u", 1971 + spread % 30, 1 + (spread / 30) % 12,
                 1 + (spread / 360) % 28);
        Nrm__V1__PersonalData person = NRM__V1__PERSONAL_DATA__INIT;
        person.full_name = name;
        person.date_of_birth = dob;
        Nrm__V1__Profile profile = NRM__V1__PROFILE__INIT;
        profile.age_years = 32;
        profile.gender = NRM__V1__GENDER__GENDER_MALE;
        profile.nationality = "SN";
        profile.languages = languages;
        profile.n_languages = 2;
        Nrm__V1__SubmitReport report = NRM__V1__SUBMIT_REPORT__INIT;
        report.region = (char *)w->region;
        report.identified_at_ms = nrm_now_ms() - 1;
        report.person = &person;
        report.profile = &profile;
        report.needs = needs;
        report.n_needs = w->shelter ? 3 : 2;
        report.urgency = NRM__V1__URGENCY__URGENCY_URGENT;
        report.consent_to_referral = 1;
        Nrm__V1__Request req = NRM__V1__REQUEST__INIT;
        req.body_case = NRM__V1__REQUEST__BODY_SUBMIT_REPORT;
        req.submit_report = &report;
        nrm_error_t err;
        double submitted_ms = s_wall_ms();
        int64_t started = nrm_mono_us();
        Nrm__V1__Reply *reply = nrm_client_call(client, &req, S_TIMEOUT_MS, &err);
        w->latency_us[i] = nrm_mono_us() - started;
        if (reply && reply->status == NRM__V1__STATUS__STATUS_OK) {
            w->ok++;
            if (w->log && reply->result_case == NRM__V1__REPLY__RESULT_CASE_REF) {
                pthread_mutex_lock(&s_log_lock);
                fprintf(w->log, "%s %.3f\n", reply->case_ref->case_id, submitted_ms);
                pthread_mutex_unlock(&s_log_lock);
            }
        }
        if (reply)
            nrm__v1__reply__free_unpacked(reply, NULL);
    }
    nrm_client_destroy(&client);
    return NULL;
}

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

static void s_usage(void)
{
    fprintf(stderr, "usage: nrm-bench --endpoint ENDPOINT [--reports N] [--clients C] "
                    "[--agency ID] [--cert FILE --server-key Z85] [--region R] [--shelter] "
                    "[--rate PER_S] [--log FILE]\n");
}

int main(int argc, char **argv)
{
    const char *endpoint = NULL, *agency = "hotline-national", *cert_file = NULL;
    nrm_curve_t curve = {0};
    const char *region = "MA-06", *log_file = NULL;
    bool shelter = false;
    double rate = 0;
    int reports = S_DEFAULT_REPORTS, clients = S_DEFAULT_CLIENTS;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--endpoint") == 0 && i + 1 < argc)
            endpoint = argv[++i];
        else if (strcmp(argv[i], "--reports") == 0 && i + 1 < argc)
            reports = atoi(argv[++i]);
        else if (strcmp(argv[i], "--clients") == 0 && i + 1 < argc)
            clients = atoi(argv[++i]);
        else if (strcmp(argv[i], "--agency") == 0 && i + 1 < argc)
            agency = argv[++i];
        else if (strcmp(argv[i], "--cert") == 0 && i + 1 < argc)
            cert_file = argv[++i];
        else if (strcmp(argv[i], "--region") == 0 && i + 1 < argc)
            region = argv[++i];
        else if (strcmp(argv[i], "--shelter") == 0)
            shelter = true;
        else if (strcmp(argv[i], "--rate") == 0 && i + 1 < argc)
            rate = atof(argv[++i]);
        else if (strcmp(argv[i], "--log") == 0 && i + 1 < argc)
            log_file = argv[++i];
        else if (strcmp(argv[i], "--server-key") == 0 && i + 1 < argc)
            snprintf(curve.server_key, sizeof curve.server_key, "%s", argv[++i]);
        else {
            s_usage();
            return 2;
        }
    }
    if (!endpoint || reports < 1 || clients < 1 || clients > reports || rate < 0) {
        s_usage();
        return 2;
    }
    nrm_crypto_init();
    nrm_error_t err;
    if (cert_file && !(curve.cert = nrm_auth_load_cert(cert_file, &err))) {
        fprintf(stderr, "nrm-bench: %s\n", err.message);
        return 2;
    }
    if (curve.cert)
        agency = ""; /* the key says who is speaking */
    FILE *log = NULL;
    if (log_file && !(log = fopen(log_file, "w"))) {
        fprintf(stderr, "nrm-bench: cannot write %s\n", log_file);
        return 2;
    }
    zsys_init(); /* once, before the threads: CZMQ's global state is not set up thread-safely */
    int64_t *latency = nrm_xcalloc((size_t)reports, sizeof *latency);
    s_worker_t *workers = nrm_xcalloc((size_t)clients, sizeof *workers);
    pthread_t *threads = nrm_xcalloc((size_t)clients, sizeof *threads);
    int64_t interval_us = rate > 0 ? (int64_t)(1e6 * clients / rate) : 0;
    int64_t started = nrm_mono_us();
    for (int c = 0, first = 0; c < clients; c++) {
        int count = reports / clients + (c < reports % clients);
        workers[c] = (s_worker_t){.endpoint = endpoint,
                                  .agency = agency,
                                  .curve = curve.cert ? &curve : NULL,
                                  .region = region,
                                  .shelter = shelter,
                                  .interval_us = interval_us,
                                  .first_due_us = started + interval_us * c / clients,
                                  .log = log,
                                  .first = first,
                                  .count = count,
                                  .latency_us = latency + first};
        first += count;
        pthread_create(&threads[c], NULL, s_work, &workers[c]);
    }
    int ok = 0;
    for (int c = 0; c < clients; c++) {
        pthread_join(threads[c], NULL);
        ok += workers[c].ok;
    }
    double seconds = (double)(nrm_mono_us() - started) / 1e6;
    qsort(latency, (size_t)reports, sizeof *latency, s_compare);
    printf("{\"reports\":%d,\"clients\":%d,\"ok\":%d,\"seconds\":%.3f,\"reports_per_s\":%.1f,"
           "\"ack_p50_ms\":%.2f,\"ack_p99_ms\":%.2f,\"ack_max_ms\":%.2f}\n",
           reports, clients, ok, seconds, ok / seconds, s_percentile_ms(latency, reports, 50),
           s_percentile_ms(latency, reports, 99), s_percentile_ms(latency, reports, S_PERCENT));
    if (log)
        fclose(log);
    free(latency);
    free(workers);
    zcert_destroy(&curve.cert);
    free(threads);
    return ok == reports ? 0 : 1;
}
