/* nrm_gauges: gauges a service reports in its Pong, each refreshed from the database by one
 * query (a timer of nrm_service: Ping is answered without the database, so it reports the
 * values of the last refresh).
 *
 * A gauge query returns rows (label value text, value bigint); with no label name it returns
 * one row whose first column is ignored. A label value seen once and absent from a later
 * refresh reports 0 (a series does not vanish). Used by one thread (the service's). */
#ifndef NRM_GAUGES_H
#define NRM_GAUGES_H

#include "nrm_db.h"
#include "nrm_server.h"

typedef struct nrm_gauges_t nrm_gauges_t;

/* Returns an empty set. Never NULL (aborts when out of memory). */
nrm_gauges_t *nrm_gauges_new(void);

/* Frees the set, sets *self to NULL. Safe on NULL. */
void nrm_gauges_destroy(nrm_gauges_t **self);

/* Adds the gauge name (label label_name, "" for none) computed by sql, registered on db as a
 * named statement. name, label_name and sql must outlive self (string literals). */
void nrm_gauges_add(nrm_gauges_t *self, nrm_db_t *db, const char *name, const char *label_name,
                    const char *sql);

/* True when at least one gauge was added. */
bool nrm_gauges_any(const nrm_gauges_t *self);

/* Runs every query (inside the caller's transaction) and keeps the values. */
nrm_status_t nrm_gauges_refresh(nrm_gauges_t *self, nrm_db_t *db, nrm_error_t *err);

/* Adds the values of the last refresh to pong (memory from call). */
void nrm_gauges_pong(const nrm_gauges_t *self, nrm_call_t *call, Nrm__V1__Pong *pong);

#endif
