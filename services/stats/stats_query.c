/* GetStatistics: checks the request against the measure's dimensions, authorizes it (the
 * coordinator, or a reader stats.readers grants the measure), runs the measure's statement
 * (cells, margins and total in one CUBE query), suppresses small cells with their complements,
 * withholds values computed from fewer than k observations (a rate's numerator suppressed as a
 * count), and answers the table: cells first, then margins, then the total. */
#include "nrm_alloc.h"
#include "nrm_authz.h"
#include "nrm_log.h"
#include "nrm_validate.h"
#include "stats.h"

#include <arpa/inet.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define S_VALUE_MAX 64
#define S_FIELD_MAX 96
#define S_COL_GROUPING 0
#define S_COL_KEYS 1
#define S_COL_COUNT (S_COL_KEYS + STATS_MAX_DIMS)
#define S_COL_VALUES (S_COL_COUNT + 1)

/* One entry of the answer: its cell and its values. */
typedef struct {
    stats_cell_t cell;
    double values[STATS_MAX_VALUES];
    bool value_null[STATS_MAX_VALUES];
    int64_t support[STATS_MAX_VALUES];
    int stars; /* margins: how many keys are "*" */
} s_entry_t;

/* Reads a float8 of a binary result. */
static double s_float(const PGresult *res, int row, int col)
{
    if (PQgetisnull(res, row, col) || PQgetlength(res, row, col) != 8)
        return 0;
    const unsigned char *b = (const unsigned char *)PQgetvalue(res, row, col);
    uint64_t bits = 0;
    for (int i = 0; i < 8; i++)
        bits = bits << 8 | b[i];
    double v;
    memcpy(&v, &bits, sizeof v);
    return v;
}

/* Checks the request: measure, dimensions, range, filters; fills *measure and filters. */
static nrm_status_t s_check(const Nrm__V1__GetStatistics *g, nrm_error_t *err,
                            const stats_measure_t **measure, json_t *filters, bool *expand)
{
    *measure = stats_measure(g->measure);
    if (!*measure)
        return nrm_fail(err, NRM_INVALID_ARGUMENT, "get_statistics.measure",
                        "unknown measure: cases, referrals, beds, occupancy, deliveries, plans");
    const stats_measure_t *m = *measure;
    char field[S_FIELD_MAX];
    if (g->n_dimensions > STATS_MAX_DIMS)
        return nrm_fail(err, NRM_INVALID_ARGUMENT, "get_statistics.dimensions",
                        "at most %d dimensions", STATS_MAX_DIMS);
    for (size_t i = 0; i < g->n_dimensions; i++) {
        nrm_path_index(field, sizeof field, "get_statistics.dimensions", i);
        if (!stats_measure_has(m, g->dimensions[i]))
            return nrm_fail(err, NRM_INVALID_ARGUMENT, field, "not a dimension of %s", m->name);
        for (size_t j = 0; j < i; j++)
            if (strcmp(g->dimensions[i], g->dimensions[j]) == 0)
                return nrm_fail(err, NRM_INVALID_ARGUMENT, field, "dimension given twice");
        *expand = *expand || strcmp(g->dimensions[i], "exploitation_type") == 0;
    }
    if (nrm_check_range(err, "get_statistics.from_ms", g->from_ms, 0, INT64_MAX) != NRM_OK ||
        nrm_check_range(err, "get_statistics.to_ms", g->to_ms, 0, INT64_MAX) != NRM_OK)
        return NRM_INVALID_ARGUMENT;
    if (g->to_ms && g->to_ms <= g->from_ms)
        return nrm_fail(err, NRM_INVALID_ARGUMENT, "get_statistics.to_ms",
                        "to_ms is after from_ms");
    for (size_t i = 0; i < g->n_filters; i++) {
        const Nrm__V1__StatisticsFilter *f = g->filters[i];
        char base[S_FIELD_MAX];
        nrm_path_index(base, sizeof base, "get_statistics.filters", i);
        snprintf(field, sizeof field, "%s.dimension", base);
        if (!stats_measure_has(m, f->dimension))
            return nrm_fail(err, NRM_INVALID_ARGUMENT, field, "not a dimension of %s", m->name);
        if (json_object_get(filters, f->dimension))
            return nrm_fail(err, NRM_INVALID_ARGUMENT, field, "dimension filtered twice");
        snprintf(field, sizeof field, "%s.value", base);
        if (nrm_check_text(err, field, f->value, S_VALUE_MAX, true) != NRM_OK)
            return NRM_INVALID_ARGUMENT;
        json_object_set_new(filters, f->dimension, json_string(f->value));
        *expand = *expand || strcmp(f->dimension, "exploitation_type") == 0;
    }
    return NRM_OK;
}

/* Orders entries: cells, then margins, then the total; by keys within each. */
static int s_order(const void *a, const void *b)
{
    const s_entry_t *x = a, *y = b;
    if (x->stars != y->stars)
        return x->stars - y->stars;
    for (int d = 0; d < STATS_MAX_DIMS && x->cell.keys[d]; d++) {
        int c = strcmp(x->cell.keys[d], y->cell.keys[d]);
        if (c)
            return c;
    }
    return 0;
}

/* Withholds the values computed from too few observations: a median from fewer than k; a
 * rate whose numerator is a small count, suppressed with its complements like the counts. */
static void s_withhold(s_entry_t *e, size_t n, int ndims, const stats_measure_t *m, int k)
{
    stats_cell_t *numerators = nrm_xcalloc(n ? n : 1, sizeof *numerators);
    for (int v = 0; v < m->n_values; v++) {
        if (!m->values[v].support)
            continue;
        bool additive = strstr(m->values[v].name, "_rate") != NULL;
        for (size_t i = 0; i < n; i++) {
            numerators[i] = e[i].cell;
            numerators[i].count = e[i].support[v];
        }
        if (additive)
            stats_suppress(numerators, n, ndims, k);
        for (size_t i = 0; i < n; i++)
            if (additive ? numerators[i].suppressed : e[i].support[v] < k)
                e[i].value_null[v] = true;
    }
    free(numerators);
}

/* Fills the reply's table from the entries. */
static void s_reply(nrm_call_t *call, const stats_measure_t *m, const Nrm__V1__GetStatistics *g,
                    s_entry_t *e, size_t n, int k, int suppressed)
{
    Nrm__V1__StatisticsTable *t = nrm_call_alloc(call, sizeof *t);
    nrm__v1__statistics_table__init(t);
    t->measure = nrm_call_strdup(call, m->name);
    t->n_dimensions = g->n_dimensions;
    t->dimensions = g->dimensions; /* borrowed from the request, which outlives the reply */
    t->value_names = nrm_call_alloc(call, sizeof *t->value_names * (size_t)(m->n_values + 1));
    for (int v = 0; v < m->n_values; v++)
        t->value_names[t->n_value_names++] = (char *)m->values[v].name;
    t->rows = nrm_call_alloc(call, sizeof *t->rows * (n ? n : 1));
    for (size_t i = 0; i < n; i++) {
        Nrm__V1__StatisticsRow *r = nrm_call_alloc(call, sizeof *r);
        nrm__v1__statistics_row__init(r);
        r->keys = nrm_call_alloc(call, sizeof *r->keys * (g->n_dimensions + 1));
        for (size_t d = 0; d < g->n_dimensions; d++)
            r->keys[r->n_keys++] = nrm_call_strdup(call, e[i].cell.keys[d]);
        r->suppressed = e[i].cell.suppressed;
        if (!r->suppressed) {
            r->count = e[i].cell.count;
            r->values = nrm_call_alloc(call, sizeof *r->values * (size_t)(m->n_values + 1));
            for (int v = 0; v < m->n_values; v++)
                r->values[r->n_values++] = e[i].value_null[v] ? STATS_WITHHELD : e[i].values[v];
        }
        t->rows[t->n_rows++] = r;
    }
    t->k = k;
    t->suppressed = suppressed;
    call->reply->result_case = NRM__V1__REPLY__RESULT_STATISTICS_TABLE;
    call->reply->statistics_table = t;
}

nrm_status_t stats_get_statistics(void *ctx, nrm_call_t *call)
{
    stats_t *self = ctx;
    const Nrm__V1__GetStatistics *g = call->request->get_statistics;
    nrm_error_t *err = call->tx.err;
    const stats_measure_t *m = NULL;
    bool expand = false;
    json_t *filters = json_object();
    nrm_status_t st = s_check(g, err, &m, filters, &expand);
    if (st == NRM_OK) {
        call->subject_id = m->name;
        unsigned relations = stats_reader_may(self, call, m->name) ? NRM_ROLE_STATS_READER : 0;
        st = nrm_authz_check(call, relations);
    }
    char *filter_text = st == NRM_OK ? json_dumps(filters, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
    json_decref(filters);
    if (st != NRM_OK)
        return st;
    if (!filter_text)
        nrm_oom("stats filters");
    int ndims = (int)g->n_dimensions;
    nrm_params_t p = {0};
    for (int d = 0; d < STATS_MAX_DIMS; d++)
        nrm_params_text(&p, d < ndims ? g->dimensions[d] : "");
    nrm_params_int(&p, g->from_ms);
    nrm_params_int(&p, g->to_ms);
    nrm_params_text(&p, filter_text);
    if (m->expands)
        nrm_params_bool(&p, expand);
    PGresult *res = NULL;
    /* planned for these parameters: the dimension CASEs and the filters fold to constants
     * (a generic plan evaluates them on every row, about three times slower) */
    st = nrm_db_sql(call->tx.db, "SET LOCAL plan_cache_mode = force_custom_plan", err);
    if (st == NRM_OK)
        st = nrm_db_exec(call->tx.db, stats_measure_statement(m, ndims), &p, &res, err);
    free(filter_text);
    if (st != NRM_OK)
        return st;
    size_t n = (size_t)PQntuples(res);
    if (n > (size_t)self->max_cells) {
        PQclear(res);
        return nrm_fail(err, NRM_FAILED_PRECONDITION, "get_statistics.dimensions",
                        "the table would have more than %d cells: use fewer dimensions or a "
                        "filter",
                        self->max_cells);
    }
    s_entry_t *e = nrm_call_alloc(call, sizeof *e * (n ? n : 1));
    for (size_t i = 0; i < n; i++) {
        int row = (int)i;
        int grouping = (int)nrm_db_int(res, row, S_COL_GROUPING);
        for (int d = 0; d < ndims; d++) {
            bool margin = (grouping >> (ndims - 1 - d)) & 1;
            e[i].cell.keys[d] =
                margin ? STATS_ALL : nrm_call_strdup(call, nrm_db_text(res, row, S_COL_KEYS + d));
            e[i].stars += margin;
        }
        e[i].cell.count = nrm_db_int(res, row, S_COL_COUNT);
        for (int v = 0; v < m->n_values; v++) {
            int col = S_COL_VALUES + 2 * v;
            e[i].value_null[v] = PQgetisnull(res, row, col);
            e[i].values[v] = s_float(res, row, col);
            e[i].support[v] = nrm_db_int(res, row, col + 1);
        }
    }
    PQclear(res);
    if (n == 0) { /* nothing at all: the total is a count of 0, published */
        n = 1;
        for (int d = 0; d < ndims; d++)
            e[0].cell.keys[d] = STATS_ALL;
        e[0].stars = ndims;
        for (int v = 0; v < m->n_values; v++)
            e[0].value_null[v] = true;
    }
    stats_cell_t *cells = nrm_xcalloc(n, sizeof *cells);
    for (size_t i = 0; i < n; i++)
        cells[i] = e[i].cell;
    int suppressed = stats_suppress(cells, n, ndims, self->k);
    for (size_t i = 0; i < n; i++)
        e[i].cell = cells[i];
    free(cells);
    s_withhold(e, n, ndims, m, self->k);
    qsort(e, n, sizeof *e, s_order);
    s_reply(call, m, g, e, n, self->k, suppressed);
    nrm_db_count_on_commit(call->tx.db, self->tables_answered, 1);
    return NRM_OK;
}
