#include "private_pg.h"

#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#define S_CMD 1024
#define S_SYNC_WAIT_S 30

/* Runs a command of tests/pg-cluster.sh (or any shell command); aborts when it fails. */
static void s_run(const char *cmd)
{
    int rc = system(cmd);
    if (rc != 0) {
        fprintf(stderr, "private_pg: command failed (%d): %s\n", rc, cmd);
        abort();
    }
}

static const char *s_script(void)
{
    static char path[PRIVATE_PG_PATH];
    const char *source = getenv("NRM_SOURCE_DIR");
    if (!source) {
        fprintf(stderr, "private_pg: NRM_SOURCE_DIR must be set\n");
        abort();
    }
    snprintf(path, sizeof path, "%s/tests/pg-cluster.sh", source);
    return path;
}

void private_pg_start(private_pg_t *pg, const char *name, bool with_standby)
{
    const char *base = getenv("NRM_TEST_PGPORT");
    pg->port = base ? atoi(base) : 5432; /* a socket name only: nothing listens on TCP */
    pg->has_standby = with_standby;
    snprintf(pg->dir, sizeof pg->dir, "/tmp/nrm-pg-%s-XXXXXX", name);
    if (!mkdtemp(pg->dir) || chmod(pg->dir, 0755) != 0) { /* the cluster's user must enter it */
        fprintf(stderr, "private_pg: cannot create %s\n", pg->dir);
        abort();
    }
    snprintf(pg->primary, sizeof pg->primary, "%s/primary", pg->dir);
    snprintf(pg->standby, sizeof pg->standby, "%s/standby", pg->dir);
    setenv("PG_CLUSTER_LISTEN", "", 1);
    char cmd[S_CMD];
    snprintf(cmd, sizeof cmd, "%s start %s %d >/dev/null", s_script(), pg->primary, pg->port);
    s_run(cmd);
    char host[2 * PRIVATE_PG_PATH + 16], port[32];
    snprintf(host, sizeof host, "%s/sock", pg->primary);
    snprintf(port, sizeof port, "%d", pg->port);
    if (with_standby) {
        snprintf(cmd, sizeof cmd, "%s standby %s %s %d >/dev/null", s_script(), pg->standby,
                 pg->primary, pg->port + 1);
        s_run(cmd);
        /* from now on every commit waits for the standby; the standby, cloned before, does not
         * carry the setting, so once promoted it commits alone */
        snprintf(cmd, sizeof cmd,
                 "psql -X -q -h %s/sock -p %d -U postgres -c \"ALTER SYSTEM SET "
                 "synchronous_standby_names = '*'\" -c 'SELECT pg_reload_conf()' >/dev/null",
                 pg->primary, pg->port);
        s_run(cmd);
        snprintf(cmd, sizeof cmd,
                 "for i in $(seq %d); do [ \"$(psql -X -At -h %s/sock -p %d -U postgres -c "
                 "\"SELECT count(*) FROM pg_stat_replication WHERE sync_state = 'sync'\")\" = 1 ] "
                 "&& exit 0; sleep 0.2; done; exit 1",
                 S_SYNC_WAIT_S * 5, pg->primary, pg->port);
        s_run(cmd);
        snprintf(host, sizeof host, "%s/sock,%s/sock", pg->primary, pg->standby);
        snprintf(port, sizeof port, "%d,%d", pg->port, pg->port + 1);
        setenv("NRM_TEST_PGATTRS", "target_session_attrs=read-write", 1);
    }
    setenv("NRM_TEST_PGDIR", pg->primary, 1);
    setenv("NRM_TEST_PGHOST", host, 1);
    setenv("NRM_TEST_PGPORT", port, 1);
}

void private_pg_kill_primary(private_pg_t *pg)
{
    char cmd[S_CMD];
    snprintf(cmd, sizeof cmd, "%s kill %s >/dev/null", s_script(), pg->primary);
    s_run(cmd);
}

void private_pg_promote(private_pg_t *pg)
{
    char cmd[S_CMD];
    snprintf(cmd, sizeof cmd, "%s promote %s >/dev/null", s_script(), pg->standby);
    s_run(cmd);
}

void private_pg_destroy(private_pg_t *pg)
{
    if (!pg->dir[0])
        return;
    char cmd[S_CMD];
    snprintf(cmd, sizeof cmd, "%s stop %s >/dev/null 2>&1; %s stop %s >/dev/null 2>&1", s_script(),
             pg->primary, s_script(), pg->standby);
    if (system(cmd) != 0)
        fprintf(stderr, "private_pg: could not stop %s\n", pg->dir);
    if (!getenv("NRM_TEST_KEEP")) {
        snprintf(cmd, sizeof cmd, "rm -rf %s", pg->dir);
        if (system(cmd) != 0)
            fprintf(stderr, "private_pg: could not remove %s\n", pg->dir);
    }
    pg->dir[0] = '\0';
}
