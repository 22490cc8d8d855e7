/* nrm_service: the life of a service, so that a service is its handlers and nothing else.
 *
 * nrm_service_new reads the command line (--config FILE) and the configuration, and prepares
 * logging, crypto and the database handle. The service then installs request handlers, stream
 * consumers and timers, and nrm_service_run does the rest: wait for the database, apply the
 * bus and service migrations, put the agency directory in force (nrm_directory: every service
 * but intake follows intake's directory events), run the start job (nrm_service_on_start),
 * bind the api (ROUTER) and events (PUB) sockets, answer Ping and Fetch, publish the outbox,
 * consume, run timers, reload the configuration on SIGHUP, and on SIGTERM or SIGINT finish the
 * batch in hand and return 0.
 *
 * Settings read (services.<name>.*): api, events (bind endpoints), api_connect, events_connect
 * (how others reach it), db_user, db_password or db_password_file; top level: database.conninfo,
 * heartbeat_ms, max_request_bytes, log_level, idempotency_window_s (stored replies are deleted
 * that long after the request, default 7 days; 0 keeps them). */
#ifndef NRM_SERVICE_H
#define NRM_SERVICE_H

#include "nrm_config.h"
#include "nrm_consumer.h"
#include "nrm_db.h"
#include "nrm_migrate.h"
#include "nrm_server.h"

typedef struct nrm_service_t nrm_service_t;

/* Work run periodically in its own transaction; OK commits, anything else rolls back. */
typedef nrm_status_t (*nrm_timer_fn)(void *ctx, nrm_tx_t *tx);

/* Called after SIGHUP with the new configuration (borrowed; the old one dies after the call).
 * Return OK to accept it; anything else keeps the old configuration. */
typedef nrm_status_t (*nrm_reload_fn)(void *ctx, nrm_config_t *config);

/* Returns a new service called name (also its stream and schema), or NULL after printing why
 * (bad arguments, unreadable configuration). *exit_code is set for the caller to return: 0 for
 * --help and --version, 2 for bad usage or configuration. migrations (count entries) are the
 * service's own, applied after the bus tables. */
nrm_service_t *nrm_service_new(const char *name, int argc, char **argv,
                               const nrm_migration_t *migrations, size_t count, int *exit_code);

/* Frees everything, sets *self to NULL. Safe on NULL. */
void nrm_service_destroy(nrm_service_t **self);

/* Borrowed accessors. The configuration changes on reload: do not keep the pointer. */
nrm_config_t *nrm_service_config(nrm_service_t *self);
nrm_db_t *nrm_service_db(nrm_service_t *self);
const char *nrm_service_name(const nrm_service_t *self);

/* Installs the handler of a request body (before run). */
void nrm_service_handle(nrm_service_t *self, Nrm__V1__Request__BodyCase body,
                        nrm_handler_kind_t kind, nrm_handler_fn fn, void *ctx);

/* Consumes the stream of service `source` (endpoints from its configuration), applying events
 * whose topics start with one of prefixes (NULL-terminated, must outlive the service; NULL for
 * all). Before run. */
void nrm_service_consume(nrm_service_t *self, const char *source, const char *const *prefixes,
                         nrm_apply_fn apply, void *ctx);

/* The same, for a consumer that gathers a batch's effects in apply and writes them in flush
 * (one statement per table and batch); reset drops what a failed batch gathered. */
void nrm_service_consume_batches(nrm_service_t *self, const char *source,
                                 const char *const *prefixes, nrm_apply_fn apply,
                                 nrm_flush_fn flush, nrm_reset_fn reset, void *ctx);

/* Lets consumer.partitions (ConsumerSettings) partition this service's consumers by case_id
 * (nrm_consumer.h), so that several instances apply one stream in parallel: for a service whose
 * apply is safe for different cases in concurrent transactions. Before run. */
void nrm_service_allow_partitions(nrm_service_t *self);

/* Runs fn every period_ms in a transaction (before run). */
void nrm_service_every(nrm_service_t *self, int period_ms, nrm_timer_fn fn, void *ctx);

/* Runs fn once in its own transaction when the service starts, after the migrations and before
 * the sockets, consumers and timers (before run): for data seeded from the configuration. The
 * service does not start until fn has committed: a failure is logged and retried every second
 * (a database outage), and SIGTERM during the wait stops the service. */
void nrm_service_on_start(nrm_service_t *self, nrm_timer_fn fn, void *ctx);

/* Calls fn after each configuration reload (before run). */
void nrm_service_on_reload(nrm_service_t *self, nrm_reload_fn fn, void *ctx);

/* The service's agency directory (borrowed; lives until destroy): the registrar writes it with
 * nrm_directory_register; nrm_service keeps it in force (nrm_directory.h). */
typedef struct nrm_directory_t nrm_directory_t;
nrm_directory_t *nrm_service_directory(nrm_service_t *self);

/* The service's reactor (borrowed; lives until destroy), for a service that watches sockets or
 * file descriptors of its own (zloop_poller) or sets one-shot timers (zloop_timer) outside the
 * transactions of nrm_service_every. Handlers on it run on the service's thread, between
 * requests and batches: no transaction is open when they start. */
zloop_t *nrm_service_loop(nrm_service_t *self);

/* Adds a named counter shown in Pong (name must be a literal). Returns a pointer to bump:
 * inside a transaction with nrm_db_count_on_commit, so that only what commits is counted. */
int64_t *nrm_service_counter(nrm_service_t *self, const char *name);

/* Adds a gauge reported in Pong (and by the gateway's /metrics as nrm_<name>), refreshed every
 * metrics_refresh_ms (default 5000) by sql, which returns rows (label value, bigint value);
 * label_name "" for a gauge without label (one row). Literals only (before run). */
void nrm_service_gauge(nrm_service_t *self, const char *name, const char *label_name,
                       const char *sql);

/* Runs until SIGTERM or SIGINT. Returns the process exit code (0 after a clean stop). */
int nrm_service_run(nrm_service_t *self);

/* Builds the libpq connection string of a service from the configuration into a malloc'd
 * string (caller frees): database.conninfo plus the service's role and password. */
char *nrm_service_conninfo(nrm_config_t *config, const char *name);

#endif
