/* The measures GetStatistics answers: for each, the SQL source of its rows (a time t_ms and
 * one text column per dimension), its count and its values. The statements are built once at
 * start from this table (never from a request): one per measure and number of dimensions,
 * grouping by CUBE so that the cells, every margin and the total come from one query. The
 * dimensions a request names are parameters ($1-$3) choosing columns by name; its time range
 * $4-$5; its filters $6 (a JSON object dimension -> value); for cases $7 (true: one row per
 * exploitation type, when that dimension is used). */
#include "nrm_alloc.h"
#include "stats.h"

#include <stdio.h>
#include <string.h>

#define S_SQL_MAX 8192

static const char *const s_case_dims[] = {
    "month",       "year",        "region", "exploitation_type",       "gender", "age_band",
    "nationality", "agency_type", "minor",  "country_of_exploitation", NULL};
static const char *const s_referral_dims[] = {"month",   "year",           "region", "service",
                                              "outcome", "decline_reason", NULL};
static const char *const s_bed_dims[] = {"month",      "year",      "region",
                                         "waitlisted", "allocated", NULL};
static const char *const s_occupancy_dims[] = {"month", "year", "region", NULL};
static const char *const s_delivery_dims[] = {"month", "year", "topic", "outcome", NULL};
static const char *const s_plan_dims[] = {"month", "year", "region", "kind", "outcome", NULL};

#define S_MEDIAN(col) "percentile_cont(0.5) WITHIN GROUP (ORDER BY " col ")"
#define S_P90(col) "percentile_cont(0.9) WITHIN GROUP (ORDER BY " col ")"
#define S_RATE(cond) "avg((" cond ")::int)"
/* a rate's support is its numerator: rate x count gives it back, so it is withheld (with its
 * complements) as the count it is would be */
#define S_RATE_SUPPORT(cond) "count(*) FILTER (WHERE " cond ")"

static const stats_measure_t s_measures[] = {
    {"cases",
     "SELECT c.opened_ms AS t_ms, c.month, c.year, c.region, x.exploitation_type, c.gender,"
     " c.age_band, c.nationality, c.agency_type, c.minor, c.country_of_exploitation"
     " FROM cases c CROSS JOIN LATERAL unnest(CASE WHEN NOT $7::bool THEN ARRAY['*']"
     " WHEN cardinality(c.exploitation_types) = 0 THEN ARRAY['UNKNOWN']"
     " ELSE c.exploitation_types END) AS x(exploitation_type)",
     "count(*)",
     true,
     s_case_dims,
     {{0}},
     0},
    {"referrals",
     "SELECT r.created_ms AS t_ms, r.month, r.year, coalesce(c.region, 'UNKNOWN') AS region,"
     " r.service, r.outcome, r.decline_reason, r.accepted_ms - r.created_ms AS accept_ms"
     " FROM referrals r LEFT JOIN cases c ON c.case_id = r.case_id",
     "count(*)",
     false,
     s_referral_dims,
     {{"acceptance_median_ms", S_MEDIAN("accept_ms"), "count(accept_ms)"},
      {"acceptance_p90_ms", S_P90("accept_ms"), "count(accept_ms)"},
      {"declined_rate", S_RATE("outcome = 'declined'"), S_RATE_SUPPORT("outcome = 'declined'")},
      {"expired_rate", S_RATE("outcome = 'expired'"), S_RATE_SUPPORT("outcome = 'expired'")},
      {"unroutable_rate", S_RATE("outcome = 'unroutable'"),
       S_RATE_SUPPORT("outcome = 'unroutable'")}},
     5},
    {"beds",
     "SELECT r.at_ms AS t_ms, r.month, r.year, r.region,"
     " (w.case_id IS NOT NULL)::text AS waitlisted, (a.at_ms IS NOT NULL)::text AS allocated,"
     " a.at_ms - r.at_ms AS wait_ms, a.at_ms - c.opened_ms AS to_bed_ms"
     " FROM bed_events r LEFT JOIN cases c ON c.case_id = r.case_id"
     " LEFT JOIN LATERAL (SELECT min(e.at_ms) AS at_ms FROM bed_events e"
     "   WHERE e.case_id = r.case_id AND e.kind = 'allocated' AND e.at_ms >= r.at_ms"
     "   HAVING min(e.at_ms) IS NOT NULL) a ON true"
     " LEFT JOIN LATERAL (SELECT e.case_id FROM bed_events e WHERE e.case_id = r.case_id"
     "   AND e.kind = 'waitlisted' AND e.at_ms >= r.at_ms LIMIT 1) w ON true"
     " WHERE r.kind = 'requested'",
     "count(*)",
     false,
     s_bed_dims,
     {{"waiting_median_ms", S_MEDIAN("wait_ms"), "count(wait_ms)"},
      {"waiting_p90_ms", S_P90("wait_ms"), "count(wait_ms)"},
      {"identification_to_bed_median_ms", S_MEDIAN("to_bed_ms"), "count(to_bed_ms)"},
      {"identification_to_bed_p90_ms", S_P90("to_bed_ms"), "count(to_bed_ms)"}},
     4},
    {"occupancy",
     "SELECT o.at_ms AS t_ms, o.month, o.year, coalesce(s.region, 'UNKNOWN') AS region,"
     " o.capacity, o.occupied FROM occupancy o LEFT JOIN shelters s ON s.shelter_id ="
     " o.shelter_id",
     "count(*)",
     false,
     s_occupancy_dims,
     {{"occupancy_rate", "avg(occupied::float8 / nullif(capacity, 0))", NULL},
      {"mean_occupied", "avg(occupied)", NULL},
      {"mean_capacity", "avg(capacity)", NULL}},
     3},
    {"deliveries",
     "SELECT d.day_ms AS t_ms, d.month, d.year, d.topic, d.outcome, d.n, d.attempts"
     " FROM deliveries d",
     "sum(n)",
     false,
     s_delivery_dims,
     {{"mean_attempts", "sum(attempts)::float8 / nullif(sum(n), 0)", NULL},
      {"failed_rate", "sum(n) FILTER (WHERE outcome = 'failed')::float8 / nullif(sum(n), 0)",
       "coalesce(sum(n) FILTER (WHERE outcome = 'failed'), 0)"}},
     2},
    {"plans",
     "SELECT p.opened_ms AS t_ms, p.month, p.year, coalesce(c.region, 'UNKNOWN') AS region,"
     " p.kind, p.outcome, p.closed_ms - p.opened_ms AS open_ms"
     " FROM plans p LEFT JOIN cases c ON c.case_id = p.case_id",
     "count(*)",
     false,
     s_plan_dims,
     {{"duration_median_ms", S_MEDIAN("open_ms"), "count(open_ms)"}},
     1},
};
#define S_MEASURES (sizeof s_measures / sizeof s_measures[0])

/* The statement names and texts, built once. */
static char s_names[S_MEASURES][STATS_MAX_DIMS + 1][64];
static char *s_sql[S_MEASURES][STATS_MAX_DIMS + 1];

const stats_measure_t *stats_measures(size_t *n)
{
    *n = S_MEASURES;
    return s_measures;
}

const stats_measure_t *stats_measure(const char *name)
{
    for (size_t i = 0; name && i < S_MEASURES; i++)
        if (strcmp(s_measures[i].name, name) == 0)
            return &s_measures[i];
    return NULL;
}

bool stats_measure_has(const stats_measure_t *m, const char *dim)
{
    for (size_t i = 0; dim && m->dims[i]; i++)
        if (strcmp(m->dims[i], dim) == 0)
            return true;
    return false;
}

const char *stats_measure_statement(const stats_measure_t *m, int ndims)
{
    return s_names[m - s_measures][ndims];
}

/* Appends text to buf (of S_SQL_MAX bytes) at *used; aborts when it does not fit (the table
 * above is too big: found on the first start of any build). */
static void s_put(char *buf, size_t *used, const char *fmt, const char *arg)
{
    int n = snprintf(buf + *used, S_SQL_MAX - *used, fmt, arg);
    if (n < 0 || (size_t)n >= S_SQL_MAX - *used)
        nrm_oom("stats statement");
    *used += (size_t)n;
}

/* The column chosen by parameter $param among m's dimensions. */
static void s_choose(char *buf, size_t *used, const stats_measure_t *m, int param)
{
    char head[32];
    snprintf(head, sizeof head, "CASE $%d::text", param);
    s_put(buf, used, "%s", head);
    for (size_t i = 0; m->dims[i]; i++) {
        s_put(buf, used, " WHEN '%s'", m->dims[i]);
        s_put(buf, used, " THEN s.%s", m->dims[i]);
    }
    s_put(buf, used, " ELSE ''%s END", "");
}

/* Builds the statement of m over ndims dimensions. */
static char *s_build(const stats_measure_t *m, int ndims)
{
    char *buf = nrm_xmalloc(S_SQL_MAX);
    size_t used = 0;
    static const char *const d[] = {"d1", "d2", "d3"};
    s_put(buf, &used, "SELECT %s", ndims == 0 ? "0" : "GROUPING(");
    for (int i = 0; i < ndims; i++)
        s_put(buf, &used, i ? ", %s" : "%s", d[i]);
    s_put(buf, &used, "%s::int4", ndims ? ")" : "");
    for (int i = 0; i < STATS_MAX_DIMS; i++)
        s_put(buf, &used, i < ndims ? ", %s" : ", NULL::text", d[i]);
    s_put(buf, &used, ", (%s)::int8", m->count);
    for (int v = 0; v < m->n_values; v++) {
        s_put(buf, &used, ", (%s)::float8", m->values[v].expr);
        s_put(buf, &used, ", (%s)::int8", m->values[v].support ? m->values[v].support : "0");
    }
    s_put(buf, &used, " FROM (SELECT %s", "");
    for (int i = 0; i < STATS_MAX_DIMS; i++) {
        s_choose(buf, &used, m, i + 1);
        s_put(buf, &used, " AS %s, ", d[i]);
    }
    s_put(buf, &used, "s.* FROM (%s) s", m->source);
    s_put(buf, &used, " WHERE ($4::int8 = 0 OR s.t_ms >= $4) AND ($5::int8 = 0 OR s.t_ms < $5)%s",
          "");
    for (size_t i = 0; m->dims[i]; i++) {
        s_put(buf, &used, " AND ($6::jsonb->>'%s' IS NULL", m->dims[i]);
        s_put(buf, &used, " OR s.%s", m->dims[i]);
        s_put(buf, &used, " = $6::jsonb->>'%s')", m->dims[i]);
    }
    s_put(buf, &used, ") x GROUP BY %s", ndims == 0 ? "()" : "CUBE (");
    for (int i = 0; i < ndims; i++)
        s_put(buf, &used, i ? ", %s" : "%s", d[i]);
    s_put(buf, &used, "%s", ndims ? ")" : "");
    return buf;
}

void stats_measures_prepare(nrm_db_t *db)
{
    for (size_t m = 0; m < S_MEASURES; m++)
        for (int n = 0; n <= STATS_MAX_DIMS; n++) {
            if (!s_sql[m][n]) {
                snprintf(s_names[m][n], sizeof s_names[m][n], "stats_%s_%d", s_measures[m].name, n);
                s_sql[m][n] = s_build(&s_measures[m], n);
            }
            nrm_db_statement(db, s_names[m][n], s_sql[m][n]);
        }
}
