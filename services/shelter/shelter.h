/* The shelter-allocation service: every shelter and every bed, allocation of beds to the cases
 * routing asks shelter for, holds until arrival, and the waitlist of those no bed could take.
 *
 * It learns about a person only from shelter.requested (categorical facts, the case id in the
 * envelope) and publishes shelter.* events; nothing identifying reaches it. Capacity is guarded
 * by the database (a CHECK and conditional updates), never by this process's memory, so several
 * instances may share one schema; a transaction-scoped advisory lock (shelter_lock_beds) orders
 * their bed-changing transactions so that they never deadlock and the queue keeps its order.
 *
 * Decisions:
 * - Eligibility: a minor (under 18, or of unknown age) goes only to a minors' shelter whose age
 *   range fits, and an adult shelter cannot take anyone under 18 (refused at UpsertShelter); a
 *   woman to a women's or mixed shelter, or a family shelter when her children are with her; a
 *   man to a men's or mixed shelter; an adult of another or unknown gender to a mixed shelter.
 * - Capacity below the beds in use is refused (FAILED_PRECONDITION, upsert_shelter.capacity):
 *   to wind a shelter down, make it inactive (nothing new is allocated there) and lower its
 *   capacity as people leave.
 * - The waitlist is served first-fit in queue order: a freed bed goes to the first entry it fits,
 *   even when an entry ahead needs more beds or another kind of shelter.
 * - A request for a case that holds a bed or waits for one, or whose case is closed, changes
 *   nothing. An arrival may be confirmed while the bed is still held, even a little late.
 * - shelter.capacity_changed is published whenever a shelter's capacity or occupied beds change
 *   (seeding, UpsertShelter, arrival, release of an occupied bed).
 * - The configuration seeds shelters the database does not know, at start; afterwards the
 *   database is the truth and UpsertShelter the way to change it.
 * - GetOccupancy: per shelter, waitlist counts the waiting requests it could take; the total
 *   counts the waiting requests identified in the region asked about (all when none).
 * - The last request of each case is kept (bed_requests): RequestBed repeats it after a
 *   no_show, as a new request at the back of its urgency. Withdrawn by routing (consent), a
 *   waitlist place or a hold not yet occupied is cancelled; a confirmed stay is never touched. */
#ifndef SHELTER_H
#define SHELTER_H

#include "nrm_config.h"
#include "nrm_consumer.h"
#include "nrm_migrate.h"
#include "nrm_server.h"

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

extern const nrm_migration_t shelter_migrations[];
extern const size_t shelter_migrations_count;

#define SHELTER_ID_MAX 64 /* shelter, agency and case ids, bytes */
#define SHELTER_NAME_MAX 200
#define SHELTER_REGION_MAX 16
#define SHELTER_MAX_LANGUAGES 10
#define SHELTER_LANGUAGE_SIZE 3 /* two letters and a NUL */
#define SHELTER_MAX_CAPACITY 10000
#define SHELTER_MAX_AGE 120
#define SHELTER_ADULT_AGE 18
#define SHELTER_MAX_BEDS 21 /* one person and at most twenty accompanying children */
#define SHELTER_REASON_MAX 256
#define SHELTER_UUID_SIZE 37
#define SHELTER_MS_PER_S 1000
#define SHELTER_DEFAULT_HOLD_S 86400
#define SHELTER_DEFAULT_CHECK_MS 1000

typedef struct shelter_batch_t shelter_batch_t;

/* The service's state: settings, and what the consumers gather during one batch (written at its
 * end, in its transaction). Everything else lives in the database. */
#define SHELTER_PASS_KEY_BYTES 32

typedef struct {
    nrm_config_t *config;   /* borrowed; replaced on reload */
    int64_t hold_ms;        /* how long a bed is held for an arrival (shelter.hold_s) */
    shelter_batch_t *batch; /* routing consumer: the batch's requests (shelter_batch.c) */
    json_t *managers;       /* intake consumer: the batch's case managers (shelter_cases.c) */
    /* the last serving pass that found no one a free bed fits (shelter_waitlist.c) */
    bool fruitless_known;
    uint8_t fruitless_pass[SHELTER_PASS_KEY_BYTES];
    /* beds this instance gave back, in the pass key: within one transaction (a consumer batch) a
     * bed taken and given back leaves the shelter row's version as it was */
    uint64_t beds_returned;
} shelter_t;

/* A shelter as allocation sees it (one row of shelters). */
typedef struct {
    char id[SHELTER_ID_MAX + 1];
    char operator_id[SHELTER_ID_MAX + 1];
    char region[SHELTER_REGION_MAX + 1];
    int capacity;
    int occupied;
    int held;
    int population; /* Nrm__V1__ShelterPopulation */
    int min_age;
    int max_age;
    bool accepts_children;
    bool accessible;
    bool active;
    char languages[SHELTER_MAX_LANGUAGES][SHELTER_LANGUAGE_SIZE];
    size_t n_languages;
    int64_t version; /* the row version's transaction (xmin): any change of the row changes it */
} shelter_row_t;

/* What one request for a bed needs: categorical facts only, never identifying data. */
typedef struct {
    char case_id[SHELTER_ID_MAX + 1];
    char request_event_id[SHELTER_UUID_SIZE]; /* the shelter.requested that asked */
    char region[SHELTER_REGION_MAX + 1];      /* of identification */
    int urgency;                              /* Nrm__V1__Urgency, never UNSPECIFIED */
    int safety_risk;                          /* Nrm__V1__SafetyRisk */
    bool is_minor;
    bool age_known;
    int age_years; /* when age_known */
    int gender;    /* Nrm__V1__Gender */
    char languages[SHELTER_MAX_LANGUAGES][SHELTER_LANGUAGE_SIZE];
    size_t n_languages;
    bool disability;
    int children;
    int beds; /* 1 + children, all in one shelter */
    int64_t requested_at_ms;
} shelter_need_t;

/* ---- shelter_registry.c: shelters, seeding from the configuration, occupancy ---- */

/* Register the statements of each file on db (once, before run). */
void shelter_registry_prepare(nrm_db_t *db);
void shelter_allocate_prepare(nrm_db_t *db);
void shelter_waitlist_prepare(nrm_db_t *db);
void shelter_holds_prepare(nrm_db_t *db);
void shelter_list_prepare(nrm_db_t *db);
void shelter_cases_prepare(nrm_db_t *db);
void shelter_requests_prepare(nrm_db_t *db);
void shelter_batch_prepare(nrm_db_t *db);

/* Checks an UpsertShelter; field paths start with prefix ("upsert_shelter", "shelters[2]").
 * Returns OK or INVALID_ARGUMENT naming the field. Touches nothing. */
nrm_status_t shelter_check(const Nrm__V1__UpsertShelter *u, nrm_config_t *config,
                           const char *prefix, nrm_error_t *err);

/* Checks the configuration's "shelters" list (field paths "shelters[i].capacity") and the
 * "shelter" settings. Returns OK or INVALID_ARGUMENT; touches nothing. */
nrm_status_t shelter_check_config(nrm_config_t *config, nrm_error_t *err);

/* Reload hook (nrm_reload_fn; ctx is the shelter_t): checks config and, when it is valid,
 * adopts it and its settings ("shelter.hold_s"). Also used once at start. */
nrm_status_t shelter_configure(void *ctx, nrm_config_t *config);

/* Start job (nrm_timer_fn; ctx is the shelter_t): inserts the configured shelters the database
 * does not know yet (shelter.capacity_changed for each); never overwrites a known one. */
nrm_status_t shelter_seed(void *ctx, nrm_tx_t *tx);

/* Takes the beds lock for the rest of the transaction (re-entrant). Every transaction that
 * changes beds, allocations or the waitlist takes it before its first row lock, so the
 * transactions of several instances never deadlock on shelter rows and the queue is served in
 * its exact order. Overbooking is refused by the database whether or not it is held. */
nrm_status_t shelter_lock_beds(nrm_tx_t *tx);

/* Parses a comma-separated list of ISO 639-1 codes ("ar,fr") into out (at most max; anything
 * that is not two lower-case letters is skipped). Returns the number kept. */
size_t shelter_languages_parse(const char *csv, char out[][SHELTER_LANGUAGE_SIZE], size_t max);

/* Writes languages as a PostgreSQL text[] literal ("{ar,fr}") into buf. */
void shelter_languages_literal(const char langs[][SHELTER_LANGUAGE_SIZE], size_t n, char *buf,
                               size_t size);

/* Text a need's parameters borrow (see shelter_need_params): kept by the caller until the
 * statement has run. */
typedef struct {
    char languages[64];
    char age[NRM_DB_NUMBER_MAX];
} shelter_need_text_t;

/* Adds a need's columns to p, in the order the waitlist and bed_requests tables share:
 * case_id, request_event_id, region, urgency, safety_risk, is_minor, age (NULL when unknown),
 * gender, languages, disability, children, beds, requested_at_ms. Strings are borrowed from
 * need and text. */
void shelter_need_params(nrm_params_t *p, const shelter_need_t *need, shelter_need_text_t *text);

/* Loads the active shelters, ordered by id, into *rows (malloc'd, caller frees). */
nrm_status_t shelter_load_active(nrm_tx_t *tx, shelter_row_t **rows, size_t *n);

/* Emits shelter.capacity_changed with a shelter's capacity and occupied beds. */
nrm_status_t shelter_emit_capacity(nrm_tx_t *tx, const char *shelter_id, int capacity,
                                   int occupied);

/* Request handlers (nrm_handler_fn; ctx is the shelter_t). */
nrm_status_t shelter_upsert(void *ctx, nrm_call_t *call);
nrm_status_t shelter_get_occupancy(void *ctx, nrm_call_t *call);

/* shelter_list.c: ListAllocations (nrm_handler_fn, a read; ctx unused): a case's or a shelter's
 * allocations and waitlist places, as the sender may see them, in pages. */
nrm_status_t shelter_list_allocations(void *ctx, nrm_call_t *call);

/* ---- shelter_allocate.c: eligibility, choice, allocation ---- */

/* True when the shelter may take the person and those with them (ignores free beds). */
bool shelter_eligible(const shelter_row_t *s, const shelter_need_t *need);
/* The UpsertShelter field of the first rule of s that need fails ("population", "min_age",
 * "max_age", "accepts_children", "accessible"), or NULL when s may take the person. Static. */
const char *shelter_unfit_rule(const shelter_row_t *s, const shelter_need_t *need);

/* Tries to allocate beds to need among rows (free counts updated on success), choosing as the
 * rules say and holding the bed with a conditional update. On OK, *allocated tells whether a
 * bed was found; when not, *eligible_count tells how many shelters could take the person at all.
 * from_waitlist marks promotions in the published reason. Emits shelter.allocated. */
nrm_status_t shelter_allocate(shelter_t *self, nrm_tx_t *tx, const shelter_need_t *need,
                              shelter_row_t *rows, size_t n, bool from_waitlist, bool *allocated,
                              size_t *eligible_count);

/* Reads the request of a shelter.requested event into need. Returns false when the event cannot
 * be acted on (no case, region or event id: nothing to allocate to). Missing facts are read on
 * the safe side: no profile or no known age means a presumed minor. */
bool shelter_need_from_event(const Nrm__V1__Event *ev, int64_t now_ms, shelter_need_t *need);

/* Chooses the shelter for need among rows as shelter_allocate does, in memory only: returns the
 * chosen row (its held count raised by need's beds) or NULL, with why in reason; the caller
 * holds the beds lock, read rows after taking it and writes the hold. *eligible_count as in
 * shelter_allocate. */
shelter_row_t *shelter_choose(const shelter_need_t *need, shelter_row_t *rows, size_t n,
                              char *reason, size_t size, size_t *eligible_count);

/* The waitlist reason of a need no bed could take, given how many shelters were eligible. */
void shelter_waitlist_reason(size_t eligible, char *buf, size_t size);

/* Tells whether the case is closed and whether it holds (or occupies) a bed or waits for one. */
nrm_status_t shelter_case_state(nrm_tx_t *tx, const char *case_id, bool *closed, bool *served);

/* Allocates a bed to need or, when none is free, puts it on the waitlist (shelter.allocated or
 * shelter.waitlisted). *allocated tells which; *position (may be NULL) receives the waitlist
 * place (0 when allocated). The caller holds the beds lock and checked the case's state. */
nrm_status_t shelter_place_need(shelter_t *self, nrm_tx_t *tx, const shelter_need_t *need,
                                bool *allocated, int *position);

/* ---- shelter_waitlist.c ---- */

/* The columns a shelter_need_t is read from (waitlist and bed_requests have them all), in
 * shelter_need_read's order after one leading column. */
#define SHELTER_NEED_COLUMNS                                                                       \
    "case_id, request_event_id::text, region, urgency, safety_risk, is_minor, age_years,"          \
    " gender, array_to_string(languages, ','), disability, children, beds, requested_at_ms"

/* Reads row i of res (one leading column, then SHELTER_NEED_COLUMNS) into need. */
void shelter_need_read(const PGresult *res, int i, shelter_need_t *need);

/* Puts need on the waitlist and emits shelter.waitlisted with its 1-based position, also given
 * in *position (may be NULL). */
nrm_status_t shelter_waitlist_add(nrm_tx_t *tx, const shelter_need_t *need, const char *reason,
                                  int *position);

/* Serves the waitlist in order (urgency, then time) while any shelter has a free bed: each
 * entry a bed is found for is allocated (shelter.allocated). Safe with several instances. */
nrm_status_t shelter_waitlist_serve(shelter_t *self, nrm_tx_t *tx);

/* Takes a case off the waitlist (case closed, request withdrawn); *cancelled (may be NULL)
 * tells whether it was waiting. */
nrm_status_t shelter_waitlist_cancel(nrm_tx_t *tx, const char *case_id, bool *cancelled);

/* Loads the waiting needs (region of identification "" for all) into *needs (malloc'd, caller
 * frees), in queue order. */
nrm_status_t shelter_waitlist_load(nrm_tx_t *tx, shelter_need_t **needs, size_t *n);

/* ---- shelter_holds.c: arrivals, releases, expiry, closed cases ---- */

/* Request handlers (nrm_handler_fn; ctx is the shelter_t). */
nrm_status_t shelter_confirm_arrival(void *ctx, nrm_call_t *call);
nrm_status_t shelter_release_bed(void *ctx, nrm_call_t *call);

/* Timer (nrm_timer_fn; ctx is the shelter_t): releases holds past hold_until_ms (no_show),
 * then serves the waitlist. */
nrm_status_t shelter_expire_holds(void *ctx, nrm_tx_t *tx);

/* Consumer of the intake stream (nrm_apply_fn; ctx is the shelter_t): case.closed releases the
 * case's beds and takes it off the waitlist. */
nrm_status_t shelter_on_case_closed(void *ctx, nrm_tx_t *tx, const Nrm__V1__Event *ev);

/* shelter.request_withdrawn applied (ctx is the shelter_t): the case's waitlist place or
 * unconfirmed hold is cancelled (shelter.released for a hold, then shelter.request_cancelled),
 * the freed beds go to the waitlist, and RequestBed is refused until routing asks again. A
 * confirmed stay is not touched: a person in a shelter is not put out by a withdrawal. */
nrm_status_t shelter_on_request_withdrawn(void *ctx, nrm_tx_t *tx, const Nrm__V1__Event *ev);

/* ---- shelter_requests.c: each case's last bed request, and asking again ---- */

/* The end of an INSERT INTO bed_requests that remembers a case's last request: a newer one
 * replaces the row and clears a withdrawal (shelter_requests.c one at a time, shelter_batch.c
 * per batch). */
#define SHELTER_REMEMBER_CONFLICT                                                                  \
    " ON CONFLICT (case_id) DO UPDATE SET request_event_id = EXCLUDED.request_event_id,"           \
    " region = EXCLUDED.region, urgency = EXCLUDED.urgency, safety_risk = EXCLUDED.safety_risk,"   \
    " is_minor = EXCLUDED.is_minor, age_years = EXCLUDED.age_years, gender = EXCLUDED.gender,"     \
    " languages = EXCLUDED.languages, disability = EXCLUDED.disability,"                           \
    " children = EXCLUDED.children, beds = EXCLUDED.beds,"                                         \
    " requested_at_ms = EXCLUDED.requested_at_ms, withdrawn = false, updated_at = now()"

/* Remembers need as the case's last request (a new shelter.requested clears a withdrawal). */
nrm_status_t shelter_request_remember(nrm_tx_t *tx, const shelter_need_t *need);

/* Marks the case's last request withdrawn (RequestBed refused until a new request). */
nrm_status_t shelter_request_withdraw(nrm_tx_t *tx, const char *case_id);

/* RequestBed (nrm_handler_fn; ctx is the shelter_t): the case manager or the coordinator asks
 * for a bed again with the case's last request's facts. */
nrm_status_t shelter_request_bed(void *ctx, nrm_call_t *call);

/* ---- shelter_batch.c: the routing stream's consumer, set-based per batch ---- */

/* The batch state (shelter_t.batch): new and free (safe on NULL). */
shelter_batch_t *shelter_batch_new(void);
void shelter_batch_free(shelter_batch_t **batch);

/* Consumer of the routing stream (nrm_service_consume_batches; ctx is the shelter_t).
 * apply gathers each shelter.requested in memory; a shelter.request_withdrawn first places
 * what was gathered, then is applied at once, so a request and its withdrawal keep their order.
 * flush places the gathered requests: under the beds lock, case states, remembered requests,
 * shelters, allocations (and their holds) and waitlist entries each in one statement, the
 * choices made in memory in the stream's order against the free beds read in the transaction
 * (the outcome, positions included, is what applying the events one at a time gives), the
 * events in one outbox statement. reset drops them. */
nrm_status_t shelter_routing_apply(void *ctx, nrm_tx_t *tx, const Nrm__V1__Event *ev);
nrm_status_t shelter_routing_flush(void *ctx, nrm_tx_t *tx);
void shelter_routing_reset(void *ctx);

/* shelter_cases.c: the consumer of intake's case.closed, case.opened and case.manager_changed
 * (nrm_service_consume_batches; ctx is the shelter_t): beds freed when a case closes (applied
 * at once), case managers gathered and written by flush in one statement; reset drops them. */
nrm_status_t shelter_on_case_event(void *ctx, nrm_tx_t *tx, const Nrm__V1__Event *ev);
nrm_status_t shelter_cases_flush(void *ctx, nrm_tx_t *tx);
void shelter_cases_reset(void *ctx);

#endif
