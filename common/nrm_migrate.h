/* nrm_migrate: versioned schema migrations, applied at start-up under an advisory lock.
 *
 * A migration is named "<set>/<file>.sql" and applied at most once per schema, in the order of
 * the list, each in its own transaction together with its row in schema_migrations. Several
 * instances starting at once serialise on the lock; the later ones find nothing left to do. */
#ifndef NRM_MIGRATE_H
#define NRM_MIGRATE_H

#include <stddef.h>
#include "nrm_db.h"

typedef struct {
    const char *name;
    const char *sql;
} nrm_migration_t;

/* The bus tables every schema carries (outbox, stream_head, requests, checkpoints, audit_log). */
extern const nrm_migration_t bus_migrations[];
extern const size_t bus_migrations_count;

/* Applies, in order, the migrations of list not yet recorded in db's schema. Returns OK, or the
 * failing status with err naming the migration; a failed migration leaves no trace. */
nrm_status_t nrm_migrate(nrm_db_t *db, const nrm_migration_t *list, size_t count, nrm_error_t *err);

#endif
