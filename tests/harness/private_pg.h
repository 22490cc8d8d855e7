/* A private PostgreSQL cluster for one test, for tests that stop, kill or fail over the server
 * and so must not share the fixture's cluster: a primary, optionally with a streaming standby
 * that the primary waits for on every commit (synchronous_standby_names = '*'), so that a
 * commit the primary acknowledged survives the loss of the primary.
 *
 * The clusters listen only on their unix sockets (no TCP port is taken). Starting sets the
 * environment the harness reads (NRM_TEST_PGDIR, NRM_TEST_PGHOST, NRM_TEST_PGPORT, and with a
 * standby both servers in libpq's multi-host form plus NRM_TEST_PGATTRS =
 * "target_session_attrs=read-write"), so a harness made afterwards, and the services it starts,
 * connect to it. Everything is done by tests/pg-cluster.sh, as an unprivileged user when root. */
#ifndef NRM_PRIVATE_PG_H
#define NRM_PRIVATE_PG_H

#include <stdbool.h>

#define PRIVATE_PG_PATH 256

typedef struct {
    char dir[PRIVATE_PG_PATH];     /* holds primary/ and standby/ */
    char primary[PRIVATE_PG_PATH]; /* the cluster directories for pg-cluster.sh */
    char standby[PRIVATE_PG_PATH];
    int port;
    bool has_standby;
} private_pg_t;

/* Creates and starts the cluster(s) for the test name and sets the environment. Aborts on
 * failure. */
void private_pg_start(private_pg_t *pg, const char *name, bool with_standby);

/* Kills the primary as a crash would (immediate stop: no shutdown checkpoint, clients cut). */
void private_pg_kill_primary(private_pg_t *pg);

/* Promotes the standby to primary (returns once it accepts writes). */
void private_pg_promote(private_pg_t *pg);

/* Stops whatever still runs and removes the directory (kept when NRM_TEST_KEEP is set). */
void private_pg_destroy(private_pg_t *pg);

#endif
