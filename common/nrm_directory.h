/* nrm_directory: agencies and their public keys registered at run time, known to every service.
 *
 * The coordinator registers an agency on the registrar (intake: UpsertAgency), which writes it
 * in its schema's directory_agencies (bus migration 004) and publishes directory.agency_upserted
 * on its stream in the same transaction. Every other service consumes those events (checkpoint
 * "intake/directory", beside its other checkpoints) into its own directory_agencies. Each
 * process rebuilds, from its table, the run-time agencies of its configuration
 * (nrm_config_set_directory: every agency lookup and authorization sees them) and its CURVE key
 * table (nrm_auth_reload): at start, right after an api batch or consumer batch that wrote the
 * table, and at least every second (another instance on the same schema may have written it).
 * A removed key or a deactivated agency is then refused on the next request, also on a
 * connection already open, and the events socket is bound again as on SIGHUP.
 *
 * Agencies of the configuration file stay and win: a run-time entry whose id the file lists is
 * refused by the registrar and, if the file gains that id later, shadowed; a key that the file
 * gives an agency stays with it. nrm_service runs all of this; services only read agencies
 * through nrm_config_agency, nrm_config_agency_type and nrm_config_agency_at. */
#ifndef NRM_DIRECTORY_H
#define NRM_DIRECTORY_H

#include <jansson.h>
#include <stdbool.h>
#include "nrm/v1/events.pb-c.h"
#include "nrm_outbox.h"

#define NRM_DIRECTORY_REGISTRAR "intake"
#define NRM_DIRECTORY_TOPIC_PREFIX "directory."
#define NRM_DIRECTORY_CHECKPOINT "intake/directory"
#define NRM_DIRECTORY_MAX_KEYS 4
#define NRM_DIRECTORY_SOURCE_FILE "configuration"
#define NRM_DIRECTORY_SOURCE_RUNTIME "directory"

typedef struct nrm_directory_t nrm_directory_t;

/* Returns a new directory reading and writing through db (borrowed). */
nrm_directory_t *nrm_directory_new(nrm_db_t *db);

/* Frees self, sets *self to NULL. Safe on NULL. */
void nrm_directory_destroy(nrm_directory_t **self);

/* Writes agency (validated by the caller) as the registrar, in tx, and publishes
 * directory.agency_upserted. *revision (may be NULL) receives the entry's new revision (1 for
 * a new agency). Returns OK or the database's failure. */
nrm_status_t nrm_directory_register(nrm_directory_t *self, nrm_tx_t *tx,
                                    const Nrm__V1__Agency *agency, int64_t *revision);

/* nrm_apply_fn for the registrar's stream (ctx: the directory): stores the entry of a
 * directory.agency_upserted unless a newer revision is stored. Other events are ignored. */
nrm_status_t nrm_directory_apply(void *ctx, nrm_tx_t *tx, const Nrm__V1__Event *ev);

/* Notes that the table may have changed (the next nrm_directory_refresh reads it). */
void nrm_directory_touch(nrm_directory_t *self);

/* True when a write was made since the last refresh, or when a periodic check is due. */
bool nrm_directory_due(const nrm_directory_t *self);

/* Outside a transaction: reads the table when it changed since the last read (always when
 * force). Returns 1 and *agencies (a new array of the active entries, in the shape of the
 * configuration's agencies, caller owns) when it changed, 0 when not, -1 when the database
 * cannot say (nothing changes; retried later). */
int nrm_directory_refresh(nrm_directory_t *self, bool force, json_t **agencies);

/* Inside tx: the agency holding key in the table other than agency_id, into holder (size
 * bytes), "" when none. Returns OK or the database's failure. */
nrm_status_t nrm_directory_key_holder(nrm_tx_t *tx, const char *key, const char *agency_id,
                                      char *holder, size_t size);

/* Inside tx: the table's entries in agency_id order (inactive ones too when include_inactive)
 * into *res (caller PQclears); columns: agency_id, type name, public keys separated by spaces,
 * active, name, revision. Returns OK or the database's failure. */
nrm_status_t nrm_directory_rows(nrm_tx_t *tx, bool include_inactive, PGresult **res);

/* The AgencyType name without its prefix ("NGO"), or NULL for UNSPECIFIED or unknown values. */
const char *nrm_directory_type_name(Nrm__V1__AgencyType type);

/* The AgencyType of a name without prefix, or UNSPECIFIED. */
Nrm__V1__AgencyType nrm_directory_type_of(const char *name);

#endif
