/* nrm_config: the one JSON configuration file, with environment overrides.
 *
 * A setting is named by its dotted path ("services.intake.api"). Any string or integer
 * setting can be overridden by the environment variable NRM_ followed by the path upper-cased
 * with every other character turned into '_' (NRM_SERVICES_INTAKE_API). Regions, agencies,
 * providers, shelters and deadlines are data in the file, never in code.
 *
 * The file may list data files to merge in, "include": ["routing.json", ...] (relative to its
 * own directory): their objects merge into the root, arrays with the same key concatenate
 * (so a providers file can add its agencies), and a scalar set twice is an error. */
#ifndef NRM_CONFIG_H
#define NRM_CONFIG_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include "nrm_error.h"

typedef struct nrm_config_t nrm_config_t;

/* Loads and checks the file at path. Returns a new configuration (caller destroys), or NULL
 * with err set (FAILED_PRECONDITION, message giving the file position of a syntax error). */
nrm_config_t *nrm_config_load(const char *path, nrm_error_t *err);

/* Frees the configuration and sets *self to NULL. Safe on NULL. Pointers it handed out die. */
void nrm_config_destroy(nrm_config_t **self);

/* Returns the string at path (environment first), or dflt. The pointer lives as long as self. */
const char *nrm_config_string(nrm_config_t *self, const char *path, const char *dflt);

/* Returns the integer at path (environment first), or dflt when absent or not an integer. */
int64_t nrm_config_int(nrm_config_t *self, const char *path, int64_t dflt);

/* Returns the JSON value at path (no environment override), borrowed from self, or NULL. */
json_t *nrm_config_get(const nrm_config_t *self, const char *path);

/* Returns true when code is one of the "regions" of the configuration. */
bool nrm_config_region_known(const nrm_config_t *self, const char *code);

/* Returns the agency with this id (an object, borrowed from self until the directory is
 * replaced), or NULL: an "agencies" entry of the file first, else an active run-time agency of
 * the directory (nrm_config_set_directory). */
json_t *nrm_config_agency(const nrm_config_t *self, const char *agency_id);

/* Returns the "agencies" entry of the file with this id (borrowed), or NULL: never a run-time
 * agency. For settings that must not depend on the directory (routing's providers). */
json_t *nrm_config_file_agency(const nrm_config_t *self, const char *agency_id);

/* The agencies known, for iteration: those of the file, then the run-time ones whose id the
 * file does not list. n receives the count; nrm_config_agency_at(self, i) for i < n returns
 * each (borrowed like nrm_config_agency). */
size_t nrm_config_agency_count(const nrm_config_t *self);
json_t *nrm_config_agency_at(const nrm_config_t *self, size_t i);

/* Replaces the run-time agencies (the active entries of the agency directory, in the shape of
 * the file's: {"id", "type", "public_keys", "name", "source": "directory"}), taking the caller's
 * reference to agencies (an array; NULL clears). Entries whose id the file lists are shadowed:
 * the file wins. Pointers handed out from the previous directory die. */
void nrm_config_set_directory(nrm_config_t *self, json_t *agencies);

/* The run-time agencies as set (borrowed), or NULL. */
json_t *nrm_config_directory(const nrm_config_t *self);

/* Returns the agency's type name without prefix ("COORDINATOR", "NGO", ...), or NULL. */
const char *nrm_config_agency_type(const nrm_config_t *self, const char *agency_id);

/* The path the configuration was loaded from. */
const char *nrm_config_path(const nrm_config_t *self);

#endif
