/* nrm_gauges: gauges refreshed from the database (see nrm_gauges.h). */
#include "nrm_gauges.h"
#include "nrm_alloc.h"
#include "nrm_log.h"

#include <stdlib.h>
#include <string.h>

#define S_MAX_QUERIES 8
#define S_MAX_VALUES 128 /* (gauge, label value) pairs kept; more are not reported */
#define S_LABEL_MAX 64

typedef struct {
    const char *name;
    const char *label_name;
    char statement[64];
} s_query_t;

typedef struct {
    int query;
    char label_value[S_LABEL_MAX];
    int64_t value;
} s_value_t;

struct nrm_gauges_t {
    s_query_t queries[S_MAX_QUERIES];
    int n_queries;
    s_value_t values[S_MAX_VALUES];
    int n_values;
    bool full_logged;
};

nrm_gauges_t *nrm_gauges_new(void)
{
    return nrm_xcalloc(1, sizeof(nrm_gauges_t));
}

void nrm_gauges_destroy(nrm_gauges_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    free(*self_p);
    *self_p = NULL;
}

void nrm_gauges_add(nrm_gauges_t *self, nrm_db_t *db, const char *name, const char *label_name,
                    const char *sql)
{
    if (self->n_queries >= S_MAX_QUERIES) {
        nrm_log_error("too many gauges", "{s:i}", "max", S_MAX_QUERIES);
        abort();
    }
    s_query_t *q = &self->queries[self->n_queries];
    *q = (s_query_t){name, label_name, ""};
    snprintf(q->statement, sizeof q->statement, "gauge_%d", self->n_queries);
    self->n_queries++;
    nrm_db_statement(db, q->statement, sql);
}

bool nrm_gauges_any(const nrm_gauges_t *self)
{
    return self->n_queries > 0;
}

/* The value slot of (query, label), a new one when absent, or NULL when the table is full. */
static s_value_t *s_slot(nrm_gauges_t *self, int query, const char *label)
{
    for (int i = 0; i < self->n_values; i++)
        if (self->values[i].query == query && strcmp(self->values[i].label_value, label) == 0)
            return &self->values[i];
    if (self->n_values >= S_MAX_VALUES) {
        if (!self->full_logged)
            nrm_log_warn("too many gauge series: the rest are not reported", "{s:i}", "max",
                         S_MAX_VALUES);
        self->full_logged = true;
        return NULL;
    }
    s_value_t *v = &self->values[self->n_values++];
    v->query = query;
    snprintf(v->label_value, sizeof v->label_value, "%s", label);
    v->value = 0;
    return v;
}

nrm_status_t nrm_gauges_refresh(nrm_gauges_t *self, nrm_db_t *db, nrm_error_t *err)
{
    for (int q = 0; q < self->n_queries; q++) {
        PGresult *res = NULL;
        nrm_status_t st = nrm_db_exec(db, self->queries[q].statement, NULL, &res, err);
        if (st != NRM_OK)
            return st;
        for (int i = 0; i < self->n_values; i++)
            if (self->values[i].query == q)
                self->values[i].value = 0;
        bool labelled = self->queries[q].label_name[0] != '\0';
        for (int row = 0; row < PQntuples(res) && (labelled || row < 1); row++) {
            s_value_t *v = s_slot(self, q, labelled ? nrm_db_text(res, row, 0) : "");
            if (v)
                v->value = nrm_db_int(res, row, 1);
        }
        PQclear(res);
    }
    return NRM_OK;
}

void nrm_gauges_pong(const nrm_gauges_t *self, nrm_call_t *call, Nrm__V1__Pong *pong)
{
    if (self->n_values == 0)
        return;
    pong->gauges = nrm_call_alloc(call, (size_t)self->n_values * sizeof *pong->gauges);
    for (int i = 0; i < self->n_values; i++) {
        const s_value_t *v = &self->values[i];
        Nrm__V1__ServiceGauge *g = nrm_call_alloc(call, sizeof *g);
        nrm__v1__service_gauge__init(g);
        g->name = (char *)self->queries[v->query].name;
        g->label_name = (char *)self->queries[v->query].label_name;
        g->label_value = (char *)v->label_value;
        g->value = v->value;
        pong->gauges[pong->n_gauges++] = g;
    }
}
