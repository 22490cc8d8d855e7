/* The integration test harness: a private database per test on the test cluster, real service
 * processes started from the build tree, real sockets to talk to them.
 *
 * The cluster is started once per ctest run (fixture "pg"); its socket directory and port come
 * from NRM_TEST_PGHOST and NRM_TEST_PGPORT (both may be comma-separated lists, libpq's
 * multi-host form, with NRM_TEST_PGATTRS such as "target_session_attrs=read-write" added to every
 * connection string: tests that start clusters of their own set them). Each harness creates
 * database t_<name>, a keyring, and a configuration (the demonstration one, with endpoints on ports
 * of its own, a short heartbeat and any overrides the test sets) in a temporary directory, removed
 * on destroy along with every process the harness started. Service logs go to files the test can
 * search. */
#ifndef NRM_HARNESS_H
#define NRM_HARNESS_H

#include <jansson.h>
#include <libpq-fe.h>
#include <stdbool.h>
#include "nrm/v1/api.pb-c.h"
#include "nrm_auth.h"
#include "nrm_client.h"
#include "nrm_error.h"

#define HARNESS_TIMEOUT_MS 10000
#define HARNESS_MAX_INSTANCES 4

typedef struct harness_t harness_t;
typedef struct harness_sub_t harness_sub_t;

/* Returns a new harness for the named test (letters, digits, '_'); aborts on failure. */
harness_t *harness_new(const char *name);

/* Stops every process (SIGKILL), drops nothing (the database stays for post-mortems), removes
 * the temporary directory. Sets *self to NULL. */
void harness_destroy(harness_t **self);

/* Sets a configuration value (dotted path; the value is stolen). Applies to services started
 * afterwards. */
void harness_config_set(harness_t *self, const char *path, json_t *value);

/* Starts instance `instance` (0..3) of service; waits until it answers Ping with a database.
 * Instances after 0 get their own api/events ports. Returns 0, or -1 (after printing its log). */
int harness_start(harness_t *self, const char *service, int instance);

/* Sends signal to the instance and, for SIGKILL/SIGTERM, waits for it to end. Returns the exit
 * status as from waitpid, or -1. An instance that does not exit 0 at SIGTERM gets the tail of
 * its log printed. */
int harness_signal(harness_t *self, const char *service, int instance, int signal);

/* The api and events endpoints of an instance, for tests that open their own sockets. */
const char *harness_api(harness_t *self, const char *service, int instance);
const char *harness_events(harness_t *self, const char *service, int instance);

/* Sends req to instance 0 of service as agency and returns the Reply (caller frees with
 * nrm__v1__reply__free_unpacked), or NULL on timeout. request_id is generated when empty. */
Nrm__V1__Reply *harness_call(harness_t *self, const char *service, const char *agency,
                             Nrm__V1__Request *req);
Nrm__V1__Reply *harness_call_at(harness_t *self, const char *service, int instance,
                                const char *agency, Nrm__V1__Request *req);

/* The value of a gauge in the Pong of service's instance 0 (name, its label label_name with
 * value label_value; "" and "" for a gauge without a label), or -1 when the Pong has no such
 * series or none came. */
int64_t harness_gauge(harness_t *self, const char *service, const char *name,
                      const char *label_name, const char *label_value);

/* The value of a counter (name) in the Pong of service's instance 0, or -1 when it has none. */
int64_t harness_counter(harness_t *self, const char *service, const char *name);

/* Every service and every agency of the configuration gets a CURVE key pair when a service is
 * started; requests go out under the key of the agency they name (agency_id, or the harness's
 * own identity, the coordinator). An identity is an agency id or "service:<name>"; a key made
 * for a name the configuration does not list is a stranger's and gets no session. */

/* The Z85 public key of identity (made on first use; borrowed). */
const char *harness_public_key(harness_t *self, const char *identity);

/* The path of identity's certificate file (its secret beside it as "<path>_secret"), for
 * nrmctl --cert. Valid until the next call. */
const char *harness_cert_file(harness_t *self, const char *identity);

/* Fills curve to reach service as identity (the cert is borrowed from the harness; NULL, plain
 * text, when NRM_SECURITY_CURVE=false is set for the whole run). */
void harness_curve(harness_t *self, const char *service, const char *identity, nrm_curve_t *curve);

/* Sets the public keys of an agency of the main configuration (keys, a JSON array of Z85
 * strings, is stolen), for services started or reloaded afterwards. */
void harness_agency_keys(harness_t *self, const char *agency, json_t *keys);

/* Writes the configuration again and sends SIGHUP to the instance (it reloads). */
void harness_reload(harness_t *self, const char *service, int instance);

/* The process id of a running instance, or 0. */
int harness_pid(harness_t *self, const char *service, int instance);

/* A new client of an instance speaking as identity (caller destroys). */
nrm_client_t *harness_client_new(harness_t *self, const char *service, int instance,
                                 const char *identity);

/* Runs SQL as the superuser on the test database; returns the result (caller PQclears); aborts
 * on error. harness_sql_int returns the first column of the first row as an integer. */
PGresult *harness_sql(harness_t *self, const char *sql);
long long harness_sql_int(harness_t *self, const char *sql);

/* harness_sql_int of a printf-style statement (at most 4 KiB). */
long long harness_sql_intf(harness_t *self, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Restarts the PostgreSQL cluster (fast stop, start). stop/start separately for outages. */
void harness_pg_stop(harness_t *self);
void harness_pg_start(harness_t *self);

/* True when the instance's log file contains needle. */
bool harness_log_contains(harness_t *self, const char *service, int instance, const char *needle);

/* The number of lines of the instance's log that contain needle, and also `also` unless NULL. */
int harness_log_lines(harness_t *self, const char *service, int instance, const char *needle,
                      const char *also);

/* Subscribes to the events socket of an instance (all topics) and records every frame. */
harness_sub_t *harness_subscribe(harness_t *self, const char *service, int instance);
void harness_sub_destroy(harness_sub_t **sub);

/* Waits for the next event whose topic starts with prefix (skipping others and stream.head),
 * up to timeout_ms. Returns it (caller frees with nrm__v1__event__free_unpacked) or NULL. */
Nrm__V1__Event *harness_sub_next(harness_sub_t *sub, const char *prefix, int timeout_ms);

/* True when any frame received so far (topics and bodies, raw bytes) contains needle. */
bool harness_sub_saw_bytes(harness_sub_t *sub, const char *needle);

/* Reads the whole stream of service with Fetch from seq 1. Returns the number of events and
 * stores them in *events (caller frees each and the array). */
size_t harness_fetch_all(harness_t *self, const char *service, Nrm__V1__Event ***events);

/* Milliseconds to sleep in polling loops, and a helper to poll a SQL count until it equals
 * want (returns the last value seen). */
long long harness_wait_sql(harness_t *self, const char *sql, long long want, int timeout_ms);

/* The harness's temporary directory (for files a test writes). */
const char *harness_dir(const harness_t *self);

#endif
