/* The statistics service: follows every stream (intake, routing, shelter, notify,
 * reintegration) exactly once and keeps, in its own schema, categorical facts about cases,
 * referrals, beds, shelters' occupancy, notification deliveries and reintegration plans;
 * answers GetStatistics with tables whose small cells are suppressed (with complementary
 * suppression, so that margins and totals cannot give a cell back), and ExportCases with a
 * k-anonymous case-level data set in the shape of the CTDC/HTCDS public data.
 *
 * Nothing identifying is stored: a case is kept as its opaque case id (to join its later
 * events, never returned), region, month and year, gender, age band, nationality, exploitation
 * types, reporting agency type and whether a minor. Each consumer gathers a batch's facts in
 * memory and writes them in one statement per table (stats_batch_flush). */
#ifndef STATS_H
#define STATS_H

#include <stdbool.h>
#include <stdint.h>
#include "nrm/v1/api.pb-c.h"
#include "nrm/v1/events.pb-c.h"
#include "nrm_config.h"
#include "nrm_migrate.h"
#include "nrm_server.h"
#include "nrm_service.h"

extern const nrm_migration_t stats_migrations[];
extern const size_t stats_migrations_count;

#define STATS_DEFAULT_K 11
#define STATS_DEFAULT_MAX_CELLS 2000
#define STATS_DEFAULT_EXPORT_MAX_DROP 0.05
#define STATS_MAX_DIMS 3
#define STATS_MAX_VALUES 6
#define STATS_ALL "*"      /* the key of a margin: every value of the dimension */
#define STATS_WITHHELD -1. /* a value computed from fewer than k observations */

/* The service's state: its settings (adopted at start and on SIGHUP) and the batch being
 * gathered by the consumer on the call stack (one at a time: the reactor is single-threaded). */
typedef struct stats_batch_t stats_batch_t;
typedef struct {
    nrm_service_t *service; /* borrowed: its configuration names agencies' types */
    int k;
    int max_cells;
    double export_max_drop;
    Nrm__V1__StatsSettings *settings; /* owned; readers */
    stats_batch_t *batch;             /* owned */
    int64_t *events_applied;          /* counters shown in Pong (owned by the service) */
    int64_t *tables_answered;
} stats_t;

/* ---- stats_settings.c ---- */

/* Reload hook (nrm_reload_fn; ctx is the stats_t): reads the "stats" section as a StatsSettings
 * message and adopts it. FAILED_PRECONDITION after logging the field when it is not valid. */
nrm_status_t stats_configure(void *ctx, nrm_config_t *config);

/* True when the sender (not a coordinator) is granted measure by stats.readers. */
bool stats_reader_may(const stats_t *self, const nrm_call_t *call, const char *measure);

/* Frees the settings. */
void stats_settings_free(stats_t *self);

/* ---- stats_batch.c: the consumers ---- */

stats_batch_t *stats_batch_new(void);
void stats_batch_destroy(stats_batch_t **self);
void stats_batch_prepare(nrm_db_t *db);

/* Consumer of every stream (nrm_apply_fn; ctx is the stats_t): gathers the event's facts. */
nrm_status_t stats_apply(void *ctx, nrm_tx_t *tx, const Nrm__V1__Event *ev);
/* End of a batch (nrm_flush_fn): one statement per table with what was gathered. */
nrm_status_t stats_flush(void *ctx, nrm_tx_t *tx);
/* Start of a batch (nrm_reset_fn): drops what a failed batch gathered. */
void stats_reset(void *ctx);

/* The CTDC age band of an age ("0--8", ..., "48+"; "unknown" when age_unknown). Static. */
const char *stats_age_band(int age_years, bool age_unknown);

/* ---- stats_measures.c: the measures, their dimensions and their statements ---- */

typedef struct {
    const char *name;    /* "acceptance_median_ms" */
    const char *expr;    /* aggregate over the source's columns */
    const char *support; /* observations behind it (withheld below k), or NULL */
} stats_value_t;

typedef struct {
    const char *name;        /* "cases" */
    const char *source;      /* SELECT with t_ms and every dimension as a column */
    const char *count;       /* the count aggregate ("count(*)") */
    bool expands;            /* source takes $7: one row per exploitation type */
    const char *const *dims; /* NULL-terminated */
    stats_value_t values[STATS_MAX_VALUES];
    int n_values;
} stats_measure_t;

/* The measure called name, or NULL. Static. */
const stats_measure_t *stats_measure(const char *name);
/* The measures, *n receives the count. Static. */
const stats_measure_t *stats_measures(size_t *n);
/* True when dim is one of measure's dimensions. */
bool stats_measure_has(const stats_measure_t *m, const char *dim);
/* Registers the statements of every measure and every number of dimensions. */
void stats_measures_prepare(nrm_db_t *db);
/* The statement name of measure m grouped by ndims dimensions. Static. */
const char *stats_measure_statement(const stats_measure_t *m, int ndims);

/* ---- stats_suppress.c: small cells ---- */

typedef struct {
    const char *keys[STATS_MAX_DIMS]; /* STATS_ALL in a margin; borrowed */
    int64_t count;
    bool suppressed;
    bool primary; /* suppressed because below k (rather than to protect another cell) */
} stats_cell_t;

/* Suppresses every cell, margin or total whose count is below k (primary), then, until nothing
 * changes, in every line of the table (the entries that share the keys of all dimensions but
 * one, that dimension's margin included) with exactly one suppressed entry, the smallest other
 * entry (a cell before the margin); then, while the lines' equations taken together (any sum of
 * lines) still determine a suppressed entry, the smallest published entry of its lines: no
 * suppressed count is then given back by published ones. Returns the number of entries
 * suppressed. */
int stats_suppress(stats_cell_t *cells, size_t n, int ndims, int64_t k);

/* ---- stats_query.c, stats_export.c: the requests (nrm_handler_fn; ctx is the stats_t) ---- */

nrm_status_t stats_get_statistics(void *ctx, nrm_call_t *call);
nrm_status_t stats_export_cases(void *ctx, nrm_call_t *call);
void stats_export_prepare(nrm_db_t *db);

#endif
