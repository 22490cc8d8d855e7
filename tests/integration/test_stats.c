/* The statistics service against real intake, routing, shelter, notify, reintegration and stats
 * processes: reports are submitted through intake, every stream flows to nrm-stats, and
 * - the tables equal a recount of the raw streams (Fetch of every stream, counted here);
 * - a small cell stays hidden when an attacker subtracts published cells from margins and
 *   totals, line after line, for as long as any line has a single unknown;
 * - the export is k-anonymous;
 * - the coordinator reads everything, a reader what stats.readers grants, others nothing. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "harness.h"
#include "nrm_json.h"
#include "nrm_time.h"
#include "routing_scenario.h"
#include "scenario.h"

#include <stdio.h>
#include <string.h>

#define REPORTER "police-ma-04"
#define READER_ID "iom-ma"      /* granted referrals only, by id */
#define STRANGER "consulate-ng" /* granted nothing */
#define WAIT_MS 60000
#define K 11
#define WITHHELD -1.0 /* a value withheld (STATS_WITHHELD) */
#define MAX_ROWS 512

#define B(name) NRM__V1__REQUEST__BODY_##name
#define OK NRM__V1__STATUS__STATUS_OK
#define DENIED NRM__V1__STATUS__STATUS_PERMISSION_DENIED

static harness_t *h;

/* The people reported: per region, how many women and men (a small cell: MA-02's men). */
static const struct {
    const char *region;
    int women, men;
} s_population[] = {{"MA-01", 14, 11}, {"MA-02", 12, 2}, {"MA-06", 13, 12}};

/* Submits one report of a person (distinct names and dates of birth: no linking). */
static void s_report(const char *region, bool man, int n)
{
    char name[64], dob[16];
    snprintf(name, sizeof name, "Test Person %c %d", man ? 'M' : 'F', n);
    snprintf(dob, sizeof dob, "19%02d-%02d-%02d", 60 + n % 40, 1 + n % 12, 1 + n % 28);
    scenario_report_t s;
    scenario_adult_woman(&s, region, name, dob);
    if (man)
        s.profile.gender = NRM__V1__GENDER__GENDER_MALE;
    s.profile.age_years = 18 + n % 40;
    Nrm__V1__Reply *r = harness_call(h, "intake", REPORTER, &s.request);
    assert_non_null(r);
    assert_int_equal(r->status, OK);
    nrm__v1__reply__free_unpacked(r, NULL);
}

/* Waits until stats has applied each stream up to its head, and the heads no longer move: a
 * stream may grow while another is applied (routing follows shelter's outcomes), so a pass
 * is repeated until one finds every head where the pass before left it. */
static void s_caught_up(void)
{
    static const char *const streams[] = {"intake", "routing", "shelter", "notify",
                                          "reintegration"};
    enum { STREAMS = sizeof streams / sizeof *streams };
    size_t heads[STREAMS] = {0};
    bool moved = true;
    for (int pass = 0; moved && pass < 20; pass++) {
        moved = false;
        for (size_t i = 0; i < STREAMS; i++) {
            Nrm__V1__Event **events = NULL;
            size_t n = harness_fetch_all(h, streams[i], &events);
            for (size_t e = 0; e < n; e++)
                nrm__v1__event__free_unpacked(events[e], NULL);
            free(events);
            moved = moved || n != heads[i];
            heads[i] = n;
            char sql[200];
            snprintf(sql, sizeof sql,
                     "SELECT least(coalesce(max(seq), 0), %zu) FROM stats.checkpoints"
                     " WHERE stream = '%s'",
                     n, streams[i]);
            long long got = harness_wait_sql(h, sql, (long long)n, WAIT_MS);
            if (got != (long long)n)
                fprintf(stderr, "stats stopped at %lld of %zu events of stream %s\n", got, n,
                        streams[i]);
            assert_int_equal(got, (long long)n);
        }
    }
    assert_false(moved);
}

static int setup(void **state)
{
    h = harness_new("stats");
    json_t *readers = json_pack("[{s:s, s:[s]}]", "agency_id", READER_ID, "measures", "referrals");
    harness_config_set(h, "stats.readers", readers);
    harness_config_set(h, "stats.k", json_integer(1)); /* the recount first: nothing hidden */
    const char *services[] = {"intake", "routing", "shelter", "notify", "reintegration", "stats"};
    for (size_t i = 0; i < sizeof services / sizeof *services; i++)
        if (harness_start(h, services[i], 0) != 0)
            return -1;
    int n = 0;
    for (size_t r = 0; r < sizeof s_population / sizeof *s_population; r++) {
        for (int w = 0; w < s_population[r].women; w++)
            s_report(s_population[r].region, false, n++);
        for (int m = 0; m < s_population[r].men; m++)
            s_report(s_population[r].region, true, n++);
    }
    s_caught_up();
    return 0;
}

static int teardown(void **state)
{
    harness_destroy(&h);
    return 0;
}

/* Asks stats for a table as agency. Caller frees the reply. */
static Nrm__V1__Reply *s_table(const char *agency, const char *measure, const char *d1,
                               const char *d2)
{
    Nrm__V1__GetStatistics g = NRM__V1__GET_STATISTICS__INIT;
    char *dims[2] = {(char *)d1, (char *)d2};
    g.measure = (char *)measure;
    g.dimensions = dims;
    g.n_dimensions = d2 ? 2 : d1 ? 1 : 0;
    Nrm__V1__Request req = NRM__V1__REQUEST__INIT;
    scenario_request(&req, B(GET_STATISTICS), &g);
    Nrm__V1__Reply *r = harness_call(h, "stats", agency, &req);
    assert_non_null(r);
    return r;
}

/* The row of t with these keys ("*" a margin), or NULL. */
static const Nrm__V1__StatisticsRow *s_row(const Nrm__V1__StatisticsTable *t, const char *k1,
                                           const char *k2)
{
    for (size_t i = 0; i < t->n_rows; i++) {
        const Nrm__V1__StatisticsRow *r = t->rows[i];
        if (r->n_keys >= 1 && strcmp(r->keys[0], k1) == 0 &&
            (!k2 || (r->n_keys == 2 && strcmp(r->keys[1], k2) == 0)))
            return r;
    }
    return NULL;
}

/* Sets k and reloads stats; waits until the next answer uses it. */
static void s_set_k(int k)
{
    harness_config_set(h, "stats.k", json_integer(k));
    harness_reload(h, "stats", 0);
    for (int i = 0; i < 100; i++) {
        Nrm__V1__Reply *r = s_table("coordinator", "cases", NULL, NULL);
        int got = r->status == OK ? r->statistics_table->k : -1;
        nrm__v1__reply__free_unpacked(r, NULL);
        if (got == k)
            return;
        zclock_sleep(100);
        if (i % 20 == 19) /* a reload that read the file while it was being written */
            harness_reload(h, "stats", 0);
    }
    fail_msg("stats did not adopt k = %d", k);
}

static void test_case_counts_by_region_and_gender_equal_a_recount_of_intakes_stream(void **state)
{
    s_set_k(1);
    Nrm__V1__Event **events = NULL;
    size_t n = harness_fetch_all(h, "intake", &events);
    Nrm__V1__Reply *r = s_table("coordinator", "cases", "region", "gender");
    assert_int_equal(r->status, OK);
    const Nrm__V1__StatisticsTable *t = r->statistics_table;
    assert_int_equal(t->suppressed, 0);
    long long opened = 0;
    for (size_t c = 0; c < t->n_rows; c++) {
        const Nrm__V1__StatisticsRow *row = t->rows[c];
        long long recount = 0;
        for (size_t e = 0; e < n; e++) {
            const Nrm__V1__Event *ev = events[e];
            if (ev->body_case != NRM__V1__EVENT__BODY_CASE_OPENED)
                continue;
            const char *gender = ev->case_opened->profile->gender == NRM__V1__GENDER__GENDER_MALE
                                     ? "MALE"
                                     : "FEMALE";
            bool region = strcmp(row->keys[0], "*") == 0 ||
                          strcmp(row->keys[0], ev->case_opened->region) == 0;
            bool sex = strcmp(row->keys[1], "*") == 0 || strcmp(row->keys[1], gender) == 0;
            recount += region && sex;
        }
        assert_int_equal(row->count, recount);
        if (strcmp(row->keys[0], "*") == 0 && strcmp(row->keys[1], "*") == 0)
            opened = row->count;
    }
    assert_int_equal(opened, 64); /* every person reported */
    for (size_t e = 0; e < n; e++)
        nrm__v1__event__free_unpacked(events[e], NULL);
    free(events);
    nrm__v1__reply__free_unpacked(r, NULL);
}

static void
test_referral_counts_by_service_and_outcome_equal_a_recount_of_routings_stream(void **state)
{
    s_set_k(1);
    Nrm__V1__Event **events = NULL;
    size_t n = harness_fetch_all(h, "routing", &events);
    Nrm__V1__Reply *r = s_table("coordinator", "referrals", "service", NULL);
    assert_int_equal(r->status, OK);
    const Nrm__V1__StatisticsTable *t = r->statistics_table;
    assert_true(t->n_rows >= 2);
    for (size_t c = 0; c < t->n_rows; c++) {
        const Nrm__V1__StatisticsRow *row = t->rows[c];
        long long recount = 0;
        for (size_t e = 0; e < n; e++) {
            const Nrm__V1__Event *ev = events[e];
            int service = ev->body_case == NRM__V1__EVENT__BODY_REFERRAL_CREATED
                              ? (int)ev->referral_created->service
                          : ev->body_case == NRM__V1__EVENT__BODY_REFERRAL_UNROUTABLE
                              ? (int)ev->referral_unroutable->service
                              : -1;
            if (service < 0)
                continue;
            const char *name =
                protobuf_c_enum_descriptor_get_value(&nrm__v1__service_type__descriptor, service)
                    ->name;
            recount += strcmp(row->keys[0], "*") == 0 ||
                       strcmp(row->keys[0], name + strlen("SERVICE_TYPE_")) == 0;
        }
        assert_int_equal(row->count, recount);
    }
    nrm__v1__reply__free_unpacked(r, NULL);
    /* the bed requests equal routing's shelter.requested */
    long long requested = 0;
    for (size_t e = 0; e < n; e++)
        requested += events[e]->body_case == NRM__V1__EVENT__BODY_SHELTER_REQUESTED;
    r = s_table("coordinator", "beds", NULL, NULL);
    assert_int_equal(r->status, OK);
    assert_int_equal(r->statistics_table->rows[0]->count, requested);
    nrm__v1__reply__free_unpacked(r, NULL);
    for (size_t e = 0; e < n; e++)
        nrm__v1__event__free_unpacked(events[e], NULL);
    free(events);
}

/* The total of a table (measure by dim, total row "*"), or -1. */
static long long s_total(const char *measure, const char *dim)
{
    Nrm__V1__Reply *r = s_table("coordinator", measure, dim, NULL);
    long long total = -1;
    for (size_t i = 0; r->status == OK && i < r->statistics_table->n_rows; i++) {
        const Nrm__V1__StatisticsRow *row = r->statistics_table->rows[i];
        if (row->n_keys == 1 && strcmp(row->keys[0], "*") == 0)
            total = row->count;
    }
    nrm__v1__reply__free_unpacked(r, NULL);
    return total;
}

/* How many events of service's stream have the body. */
static long long s_recount(const char *service, Nrm__V1__Event__BodyCase body)
{
    Nrm__V1__Event **events = NULL;
    size_t n = harness_fetch_all(h, service, &events);
    long long count = 0;
    for (size_t e = 0; e < n; e++) {
        count += events[e]->body_case == body;
        nrm__v1__event__free_unpacked(events[e], NULL);
    }
    free(events);
    return count;
}

static void test_occupancy_deliveries_and_plans_equal_a_recount_of_their_streams(void **state)
{
    s_set_k(1);
    long long snapshots = s_recount("shelter", NRM__V1__EVENT__BODY_SHELTER_CAPACITY_CHANGED);
    assert_true(snapshots > 0); /* beds were allocated to the people who needed one */
    assert_int_equal(s_total("occupancy", "month"), snapshots);
    assert_int_equal(s_total("deliveries", "month"),
                     s_recount("notify", NRM__V1__EVENT__BODY_NOTIFICATION_DELIVERED) +
                         s_recount("notify", NRM__V1__EVENT__BODY_NOTIFICATION_FAILED));
    assert_int_equal(s_total("plans", "month"),
                     s_recount("reintegration", NRM__V1__EVENT__BODY_PLAN_OPENED));
    /* every allocation answered a request: as many requests were allocated a bed */
    Nrm__V1__Reply *r = s_table("coordinator", "beds", "allocated", NULL);
    assert_int_equal(r->status, OK);
    const Nrm__V1__StatisticsRow *allocated = s_row(r->statistics_table, "true", NULL);
    assert_non_null(allocated);
    assert_int_equal(allocated->count,
                     s_recount("shelter", NRM__V1__EVENT__BODY_SHELTER_ALLOCATED));
    nrm__v1__reply__free_unpacked(r, NULL);
}

/* The attack: every line (a row or a column with its margin) with one unknown entry gives it
 * back by subtraction; repeat while that finds anything. Returns how many suppressed entries
 * were recovered. keys[i][d] and counts[i] describe the table, known[i] what was published. */
static int s_margin_attack(const Nrm__V1__StatisticsTable *t, bool *known, long long *value)
{
    int recovered = 0;
    for (bool progress = true; progress;) {
        progress = false;
        for (int d = 0; d < 2; d++)
            for (size_t a = 0; a < t->n_rows; a++) {
                /* a is the margin of the line along d */
                if (strcmp(t->rows[a]->keys[d], "*") != 0)
                    continue;
                int unknown = 0;
                size_t which = 0;
                long long sum = 0;
                for (size_t b = 0; b < t->n_rows; b++) {
                    if (b == a || strcmp(t->rows[b]->keys[1 - d], t->rows[a]->keys[1 - d]) != 0 ||
                        strcmp(t->rows[b]->keys[d], "*") == 0)
                        continue;
                    if (known[b])
                        sum += value[b];
                    else {
                        unknown++;
                        which = b;
                    }
                }
                if (known[a] && unknown == 1) {
                    known[which] = true;
                    value[which] = value[a] - sum;
                    recovered++;
                    progress = true;
                } else if (!known[a] && unknown == 0) {
                    known[a] = true;
                    value[a] = sum;
                    recovered++;
                    progress = true;
                }
            }
    }
    return recovered;
}

static void test_a_small_cell_cannot_be_recovered_from_the_margins_and_totals(void **state)
{
    s_set_k(K);
    Nrm__V1__Reply *r = s_table("coordinator", "cases", "region", "gender");
    assert_int_equal(r->status, OK);
    const Nrm__V1__StatisticsTable *t = r->statistics_table;
    assert_int_equal(t->k, K);
    assert_true(t->n_rows <= MAX_ROWS);
    /* MA-02's two men are withheld, and so is what would give them away */
    const Nrm__V1__StatisticsRow *small = s_row(t, "MA-02", "MALE");
    assert_non_null(small);
    assert_true(small->suppressed);
    assert_int_equal(small->count, 0);
    assert_true(t->suppressed >= 4);
    static bool known[MAX_ROWS];
    static long long value[MAX_ROWS];
    for (size_t i = 0; i < t->n_rows; i++) {
        known[i] = !t->rows[i]->suppressed;
        value[i] = t->rows[i]->count;
        if (known[i]) /* nothing published is below k */
            assert_true(value[i] >= K);
    }
    assert_int_equal(s_margin_attack(t, known, value), 0);
    /* the published ones are true */
    const Nrm__V1__StatisticsRow *total = s_row(t, "*", "*");
    assert_false(total->suppressed);
    assert_int_equal(total->count, 64);
    nrm__v1__reply__free_unpacked(r, NULL);
}

/* Declines n of the referrals of region that are still pending, as their providers. */
static void s_decline(const char *region, int n)
{
    char sql[512];
    snprintf(sql, sizeof sql,
             "SELECT r.referral_id, r.provider_id FROM routing.referrals r JOIN routing.cases c"
             " USING (case_id) WHERE c.region = '%s' AND r.state = 'pending'"
             " ORDER BY r.referral_id LIMIT %d",
             region, n);
    PGresult *res = harness_sql(h, sql);
    assert_int_equal(PQntuples(res), n);
    for (int i = 0; i < n; i++) {
        Nrm__V1__Reply *r =
            routing_provider_respond(h, PQgetvalue(res, i, 1), PQgetvalue(res, i, 0),
                                     NRM__V1__REFERRAL_DECISION__REFERRAL_DECISION_DECLINE,
                                     NRM__V1__DECLINE_REASON__DECLINE_REASON_NO_CAPACITY, "");
        assert_non_null(r);
        assert_int_equal(r->status, OK);
        nrm__v1__reply__free_unpacked(r, NULL);
    }
    PQclear(res);
}

static void test_a_rate_never_gives_back_a_small_count(void **state)
{
    /* two declines in MA-02: declined_rate x count would give that 2 back */
    s_decline("MA-02", 2);
    s_caught_up();
    s_set_k(K);
    Nrm__V1__Reply *r = s_table(READER_ID, "referrals", "region", NULL);
    assert_int_equal(r->status, OK);
    const Nrm__V1__StatisticsTable *t = r->statistics_table;
    int checked = 0;
    for (size_t v = 0; v < t->n_value_names; v++) {
        if (!strstr(t->value_names[v], "_rate"))
            continue;
        for (size_t i = 0; i < t->n_rows; i++) {
            const Nrm__V1__StatisticsRow *row = t->rows[i];
            if (row->suppressed || row->values[v] == WITHHELD)
                continue;
            long long numerator = (long long)(row->values[v] * (double)row->count + 0.5);
            checked++;
            if (numerator != 0 && numerator < K)
                fail_msg("%s of %s is %.4f of %lld: %lld", t->value_names[v], row->keys[0],
                         row->values[v], (long long)row->count, numerator);
        }
    }
    assert_true(checked > 0);
    const Nrm__V1__StatisticsRow *ma02 = s_row(t, "MA-02", NULL);
    assert_non_null(ma02);
    assert_false(ma02->suppressed);
    for (size_t v = 0; v < t->n_value_names; v++)
        if (strcmp(t->value_names[v], "declined_rate") == 0)
            assert_true(ma02->values[v] == WITHHELD);
    nrm__v1__reply__free_unpacked(r, NULL);
}

static void test_the_export_is_k_anonymous_over_all_its_fields(void **state)
{
    s_set_k(K);
    Nrm__V1__ExportCases x = NRM__V1__EXPORT_CASES__INIT;
    Nrm__V1__Request req = NRM__V1__REQUEST__INIT;
    scenario_request(&req, B(EXPORT_CASES), &x);
    Nrm__V1__Reply *r = harness_call(h, "stats", "coordinator", &req);
    assert_non_null(r);
    assert_int_equal(r->status, OK);
    const Nrm__V1__CaseExport *e = r->case_export;
    assert_int_equal((int)e->n_records + e->dropped, 64);
    assert_true(e->n_records > 0);
    for (size_t i = 0; i < e->n_records; i++) {
        char *a = nrm_json_dumps_message(&e->records[i]->base);
        int same = 0;
        for (size_t j = 0; j < e->n_records; j++) {
            char *b = nrm_json_dumps_message(&e->records[j]->base);
            same += strcmp(a, b) == 0;
            free(b);
        }
        free(a);
        assert_true(same >= K);
    }
    nrm__v1__reply__free_unpacked(r, NULL);
}

static void test_the_coordinator_reads_everything_a_reader_its_measures_others_nothing(void **state)
{
    static const char *const measures[] = {"cases",     "referrals",  "beds",
                                           "occupancy", "deliveries", "plans"};
    for (size_t i = 0; i < sizeof measures / sizeof *measures; i++) {
        Nrm__V1__Reply *r = s_table("coordinator", measures[i], "month", NULL);
        assert_int_equal(r->status, OK);
        nrm__v1__reply__free_unpacked(r, NULL);
        r = s_table(READER_ID, measures[i], "month", NULL);
        assert_int_equal(r->status, strcmp(measures[i], "referrals") == 0 ? OK : DENIED);
        nrm__v1__reply__free_unpacked(r, NULL);
        r = s_table(STRANGER, measures[i], "month", NULL);
        assert_int_equal(r->status, DENIED);
        nrm__v1__reply__free_unpacked(r, NULL);
    }
    Nrm__V1__ExportCases x = NRM__V1__EXPORT_CASES__INIT;
    Nrm__V1__Request req = NRM__V1__REQUEST__INIT;
    scenario_request(&req, B(EXPORT_CASES), &x);
    Nrm__V1__Reply *r = harness_call(h, "stats", READER_ID, &req);
    assert_int_equal(r->status, DENIED);
    nrm__v1__reply__free_unpacked(r, NULL);
}

static void test_a_dimension_the_measure_does_not_have_is_refused_with_its_field(void **state)
{
    Nrm__V1__Reply *r = s_table("coordinator", "referrals", "service", "gender");
    assert_int_equal(r->status, NRM__V1__STATUS__STATUS_INVALID_ARGUMENT);
    assert_string_equal(r->error_field, "get_statistics.dimensions[1]");
    nrm__v1__reply__free_unpacked(r, NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_case_counts_by_region_and_gender_equal_a_recount_of_intakes_stream),
        cmocka_unit_test(
            test_referral_counts_by_service_and_outcome_equal_a_recount_of_routings_stream),
        cmocka_unit_test(test_occupancy_deliveries_and_plans_equal_a_recount_of_their_streams),
        cmocka_unit_test(test_a_small_cell_cannot_be_recovered_from_the_margins_and_totals),
        cmocka_unit_test(test_a_rate_never_gives_back_a_small_count),
        cmocka_unit_test(test_the_export_is_k_anonymous_over_all_its_fields),
        cmocka_unit_test(
            test_the_coordinator_reads_everything_a_reader_its_measures_others_nothing),
        cmocka_unit_test(test_a_dimension_the_measure_does_not_have_is_refused_with_its_field),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
