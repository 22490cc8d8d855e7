/* The referral-routing service: every need of every case reaches a provider who can serve it, in
 * time, or the coordinator knows at once.
 *
 * Routing keeps its own copy of what it routes on (region, categorical profile, needs, urgency,
 * consent, status), taken from intake's case.* events; a JSON policy decides which services a
 * case gets; a directory of providers (both from the configuration) says who can serve them.
 * Each referral is then followed: accepted, declined or expired (then the next provider),
 * completed, or revoked. Shelter is not a provider referral: it becomes shelter.requested for
 * the shelter service, whose answers routing follows (a no_show becomes shelter.no_show for the
 * coordinator). A raised urgency brings pending deadlines forward, never back. Nothing
 * identifying is stored, published or logged; responders' notes are not stored at all. */
#ifndef ROUTING_H
#define ROUTING_H

#include <stdbool.h>
#include <stdint.h>
#include "nrm/v1/events.pb-c.h"
#include "nrm_config.h"
#include "nrm_migrate.h"
#include "nrm_server.h"

extern const nrm_migration_t routing_migrations[];
extern const size_t routing_migrations_count;

#define ROUTING_ID_MAX 65      /* case and referral ids: 64 bytes and the terminator */
#define ROUTING_REGION_MAX 17  /* ISO 3166-2 code and the terminator */
#define ROUTING_REASON_MAX 480 /* a referral's human-readable reason */
#define ROUTING_ADULT_AGE 18   /* a person younger is a child */
#define ROUTING_MAX_AGE 120
#define ROUTING_NOTE_MAX 2000      /* RespondToReferral.note: checked, never stored */
#define ROUTING_SERVICE_LIMIT 9    /* ServiceType values are below this */
#define ROUTING_MAX_CANDIDATES 128 /* providers considered for one referral */

/* A set of enum values (ServiceType, ExploitationType, Gender): bit v for value v. */
typedef uint32_t routing_set_t;
#define ROUTING_SET_HAS(set, v) (((set) >> (unsigned)(v)) & 1u)
#define ROUTING_SET_ADD(set, v) ((set) |= (1u << (unsigned)(v)))

/* A case as routing knows it. */
typedef struct {
    char case_id[ROUTING_ID_MAX];
    bool open;
    char region[ROUTING_REGION_MAX];
    bool is_minor;
    Nrm__V1__Profile *profile;  /* owned (routing_case_release); never NULL once loaded */
    routing_set_t needs;        /* ServiceType values stated */
    routing_set_t exploitation; /* ExploitationType values */
    int urgency;                /* Urgency value */
    int safety_risk;            /* SafetyRisk value */
    int screening;              /* ScreeningOutcome value (1: not screened) */
    bool consent;               /* consent to referral */
    int64_t last_seq;           /* intake sequence of the last event applied to the case */
    bool just_opened;           /* stored by this transaction: nothing decided or referred yet */
} routing_case_t;

/* One provider of the directory. */
typedef struct {
    char *id;               /* an agency id of the configuration */
    char *name;             /* the agency's name */
    char *agency_type;      /* the agency's type ("NGO", ...) */
    routing_set_t services; /* ServiceType values offered */
    bool national;          /* serves every region */
    char **regions;         /* regions served (also listed when national) */
    size_t n_regions;
    routing_set_t genders; /* Gender values accepted; 0 for everyone */
    int min_age;
    int max_age;
    char **languages; /* ISO 639-1 codes spoken */
    size_t n_languages;
    bool must_share_language; /* serves only people who speak one of its languages */
    int max_open;             /* most open (pending or accepted) referrals at once */
    bool active;              /* routed to (an inactive provider keeps its open referrals) */
} routing_provider_t;

typedef struct routing_directory_t routing_directory_t;
typedef struct routing_policy_t routing_policy_t;
typedef struct routing_batch_t routing_batch_t;
typedef struct routing_prefetch_t routing_prefetch_t;

/* What the policy says about one service for one case. */
typedef enum {
    ROUTING_SKIP,     /* not referred */
    ROUTING_REFER,    /* referred once the person consents */
    ROUTING_MANDATORY /* referred with or without consent */
} routing_verdict_t;

typedef struct {
    routing_verdict_t verdict;
    const char *rule_id;   /* borrowed from the policy: copy before the configuration reloads */
    const char *reason;    /* idem */
    bool for_language_gap; /* the deciding rule asked for a language gap */
} routing_decision_t;

/* A waiting need's place in the order waiting needs are served in (routing_waiting.c): the
 * most urgent first, then the longest waiting, then by case id (bytes) and service. */
typedef struct {
    bool set; /* false: none (the page after the first, from the first's end) */
    int urgency;
    int64_t since_ms;
    char case_id[ROUTING_ID_MAX];
    int service;
} routing_waiting_key_t;

/* The service's state, shared by its handlers, consumer and timer. */
typedef struct {
    routing_directory_t *directory; /* owned; replaced when the providers table changes */
    int64_t directory_version;      /* the providers table's version the directory is of */
    routing_policy_t *policy;       /* owned; replaced on reload */
    nrm_config_t *config;           /* borrowed: the configuration in force */
    bool require_agreement;         /* routing.require_agreement */
    bool seed_pending;              /* the configuration's providers are to be seeded: every
                                       routing_lock seeds until the timer's seeding commits */
    bool seeding;                   /* routing_seed_providers is running */
    int waiting_batch;              /* waiting needs examined per pass and page */
    /* where the next pass's second page of waiting needs starts (routing_serve_waiting) */
    routing_waiting_key_t waiting_next;
    int64_t waiting_checked_ms; /* when waiting needs were last looked at by the timer */
    int expire_batch;           /* overdue referrals expired per timer run */
    int64_t *referrals_created; /* counters shown in Pong (owned by the service) */
    int64_t *referrals_unroutable;
    int64_t *referrals_expired;
    int64_t *shelters_requested;
    int64_t *shelter_no_shows;
    routing_batch_t *batch;       /* owned: what the consumer batch in hand gathered and holds */
    routing_prefetch_t *prefetch; /* owned: candidates loaded for the batch in hand, or NULL */
} routing_t;

/* routing_batch.c: set-based work per consumer batch. The consumers gather their batch's events
 * (routing_batch_gather, nrm_apply_fn) and work in flush between routing_batch_begin and
 * routing_batch_end: meanwhile the assignment lock is taken once, referrals, case_services
 * states and emitted events are held in memory and written in one statement each (referrals and
 * states also whenever something reads them: routing_batch_sync). Outside a batch nothing is
 * held. */
routing_batch_t *routing_batch_new(void);
void routing_batch_destroy(routing_batch_t **self);
void routing_batch_prepare(nrm_db_t *db);

/* nrm_apply_fn: keeps the event (borrowed from the consumer until flush returns). */
nrm_status_t routing_batch_gather(void *ctx, nrm_tx_t *tx, const Nrm__V1__Event *ev);

/* nrm_reset_fn: drops what a failed batch gathered and held. */
void routing_batch_reset(void *ctx);

/* The events gathered, in their order (borrowed). Returns their count. */
size_t routing_batch_events(const routing_t *self, const Nrm__V1__Event *const **events);

/* From now until routing_batch_end, states and events are held. */
void routing_batch_begin(routing_t *self);

/* Writes what is held (when st is OK) and ends the batch's holding whatever st; returns st or
 * the write's failure. */
nrm_status_t routing_batch_end(routing_t *self, nrm_tx_t *tx, nrm_status_t st);

/* True when the batch in hand already holds the assignment lock; routing_lock marks it. */
bool routing_batch_locked(const routing_t *self);
void routing_batch_set_locked(routing_t *self);

/* Writes the held referrals and case_services states (one statement each). Call before reading
 * referrals, case_services or the open counts their triggers keep (providers, agreements).
 * CONFLICT when a held referral's attempt existed already (a replay the batch could not see):
 * the batch fails, and the next one writes each referral at once, as outside a batch, so that
 * the attempt that exists is found before its referral.created is made. */
nrm_status_t routing_batch_sync(routing_t *self, nrm_tx_t *tx);

/* Writes the held referrals alone (one statement), as routing_batch_sync: before reading
 * referrals or the open counts without case_services. */
nrm_status_t routing_batch_sync_referrals(routing_t *self, nrm_tx_t *tx);

/* A referral to create (borrowed strings; agreement_id NULL for none). */
typedef struct {
    const char *referral_id, *case_id, *provider_id, *rule_id, *reason, *causation_id,
        *agreement_id;
    int service, attempt, urgency;
    int64_t created_ms, due_ms;
} routing_referral_t;

/* Holds a referral to create (copied) and returns true, or returns false outside a batch or
 * when the batch writes each referral at once (the caller inserts it and learns whether the
 * attempt is new). */
bool routing_batch_hold_referral(routing_t *self, const routing_referral_t *r);

/* Holds a state of a service of a case (strings copied; a later one for the same service
 * replaces it) and returns true, or returns false outside a batch (the caller writes it). */
bool routing_batch_hold_state(routing_t *self, const char *case_id, int service, const char *state,
                              bool mandatory, const char *rule_id, const char *reason);

/* nrm_tx_emit and nrm_tx_emit_body, held until the batch ends (in order) during a batch. */
nrm_status_t routing_emit(routing_t *self, nrm_tx_t *tx, const Nrm__V1__Event *ev);
nrm_status_t routing_emit_body(routing_t *self, nrm_tx_t *tx, const char *case_id,
                               Nrm__V1__Event__BodyCase body, void *message);

/* routing_directory.c: the directory (routing's copy of the providers table), eligibility. */

/* Checks a provider (a request's or a configuration entry's): OK, or status bad with err naming
 * prefix.field. */
nrm_status_t routing_provider_check(const Nrm__V1__UpsertProvider *u, nrm_config_t *config,
                                    const char *prefix, nrm_status_t bad, nrm_error_t *err);

/* The configuration's providers[i] as a message (an entry without "active" is active), or NULL
 * with err (FAILED_PRECONDITION naming providers[i].field). Caller frees with
 * protobuf_c_message_free_unpacked. */
Nrm__V1__UpsertProvider *routing_provider_from_config(json_t *entry, size_t i, nrm_error_t *err);

/* Checks every entry of the configuration's "providers" (ids unique): OK or
 * FAILED_PRECONDITION naming the offending entry. */
nrm_status_t routing_providers_check_config(nrm_config_t *config, nrm_error_t *err);

/* Reloads self->directory from the providers table when the table's version is not the one
 * the directory is of (or there is none yet). Call under the assignment lock. */
nrm_status_t routing_directory_refresh(routing_t *self, nrm_tx_t *tx);
void routing_directory_prepare(nrm_db_t *db);
void routing_directory_destroy(routing_directory_t **self);
size_t routing_directory_size(const routing_directory_t *self);

/* The provider with this id (borrowed from self), or NULL. */
const routing_provider_t *routing_directory_find(const routing_directory_t *self, const char *id);

/* Fills out (at most max) with the providers eligible for service for the case (service
 * offered, region or national, gender, age, shared language when the provider needs one),
 * those serving the case's region first, then national ones; by id within each. Returns the
 * count; *offering (may be NULL) receives how many providers offer the service at all. */
size_t routing_directory_eligible(const routing_directory_t *self, const routing_case_t *c,
                                  int service, const routing_provider_t **out, size_t max,
                                  size_t *offering);

/* True when the provider serves the region by name (not only through national coverage). */
bool routing_provider_in_region(const routing_provider_t *p, const char *region);

/* True when the provider speaks one of the person's languages, or the person has none listed. */
bool routing_provider_speaks_with(const routing_provider_t *p, const Nrm__V1__Profile *profile);

/* The name of a ServiceType value without its prefix ("LEGAL_AID"), or "UNKNOWN". Static. */
const char *routing_service_name(int service);

/* The value of an enum member named without its prefix ("LEGAL_AID" in ServiceType), or -1. */
int routing_enum_value(const ProtobufCEnumDescriptor *desc, const char *prefix, const char *name);

/* routing_policy.c: which services a case gets, and the acceptance deadlines. */

/* Returns the policy of config's "routing.policy", with the deadlines of
 * "routing.policy.deadlines_s" overridden by "routing.deadlines_s" (or NRM_ROUTING_DEADLINES_S_*),
 * or NULL with err (FAILED_PRECONDITION naming the offending rule). Caller destroys. */
routing_policy_t *routing_policy_load(nrm_config_t *config, nrm_error_t *err);
void routing_policy_destroy(routing_policy_t **self);

/* Decides service for the case with the first rule that applies; language_gap says whether a
 * provider chosen for the case speaks none of the person's languages. No rule: ROUTING_SKIP
 * with the rule id "no-rule". */
void routing_policy_decide(const routing_policy_t *self, const routing_case_t *c, int service,
                           bool language_gap, routing_decision_t *out);

/* True when a rule about service looks at the language gap (so it must be computed). */
bool routing_policy_uses_language_gap(const routing_policy_t *self, int service);

/* Milliseconds a provider has to accept a referral of this Urgency. */
int64_t routing_policy_deadline_ms(const routing_policy_t *self, int urgency);

/* routing_cases.c: intake's case events applied to routing's copy of the case. */

/* The consumer of intake's stream, a batch at a time (nrm_flush_fn after routing_batch_gather;
 * ctx is the routing_t): the batch's new cases in one statement, their parties in one each,
 * then each event in order. Each event is applied once per case: an event not newer than the
 * case's last applied sequence changes nothing. */
nrm_status_t routing_flush_case_events(void *ctx, nrm_tx_t *tx);

/* Loads the case (locking its row) into c. NOT_FOUND (naming field) when unknown. On OK the
 * caller releases c. */
nrm_status_t routing_case_load(nrm_tx_t *tx, const char *case_id, const char *field,
                               routing_case_t *c);

/* Frees what c owns. Safe on a zeroed case. */
void routing_case_release(routing_case_t *c);

void routing_cases_prepare(nrm_db_t *db);

/* routing_assign.c: decisions applied, providers chosen, referrals created. */

/* Takes the assignment lock: every transaction that may create referrals or change their
 * state takes it first, so provider caps hold across instances and lock order is one. Then
 * brings the directory up to date with the providers table. */
nrm_status_t routing_lock(routing_t *self, nrm_tx_t *tx);

/* Decides every service of the open case not decided yet (or waiting for consent or for a rule
 * to apply) and acts: a referral to the best provider (referral.created, or
 * referral.unroutable when nobody is left), shelter.requested, or a wait for consent. */
nrm_status_t routing_route_case(routing_t *self, nrm_tx_t *tx, const routing_case_t *c);

/* Refers service of the case to the next eligible provider (attempt + 1), after the previous
 * one declined or let the deadline pass; referral.unroutable when nobody is left (the need then
 * waits). */
nrm_status_t routing_reassign(routing_t *self, nrm_tx_t *tx, const routing_case_t *c, int service);

/* Refers a waiting need of the case to the best provider now eligible (referral.created), or
 * leaves it waiting without a word. *routed tells which. */
nrm_status_t routing_refer_waiting(routing_t *self, nrm_tx_t *tx, const routing_case_t *c,
                                   int service, bool *routed);

/* Loads in one statement the candidates of every service the policy may refer for the n cases
 * (just stored by the consumer batch in hand, none routed yet): routing them then asks nothing
 * more of the database about candidates, the choice made in memory on the counters as they
 * were plus the referrals made since (a need is asked on its own when a referral since used an
 * agreement among its candidates'). Dropped at the batch's end (routing_batch_end). */
nrm_status_t routing_prefetch_candidates(routing_t *self, nrm_tx_t *tx, const routing_case_t *cases,
                                         size_t n);

/* Forgets the prefetched candidates: call before anything changes a referral's state other than
 * creating one (then every need asks on its own). */
void routing_prefetch_drop(routing_t *self);

void routing_assign_prepare(nrm_db_t *db);

/* routing_referrals.c: answers, outcomes, expiry and revocation of referrals. */

/* RespondToReferral and CompleteReferral (nrm_handler_fn; ctx is the routing_t). */
nrm_status_t routing_respond(void *ctx, nrm_call_t *call);
nrm_status_t routing_complete(void *ctx, nrm_call_t *call);

/* Timer (nrm_timer_fn): expires pending referrals past their deadline (referral.expired) and
 * refers each service on; safe with several instances. */
nrm_status_t routing_expire_overdue(void *ctx, nrm_tx_t *tx);

/* Revokes the open referrals of a case (referral.revoked with reason): all of them, or only
 * those made under consent when consented_only. Their services go back to waiting for consent
 * (consented_only) or are closed. */
nrm_status_t routing_revoke_open(routing_t *self, nrm_tx_t *tx, const char *case_id,
                                 bool consented_only, const char *reason);

void routing_referrals_prepare(nrm_db_t *db);

/* routing_waiting.c: needs that wait for a place. */

/* Routes the oldest most urgent waiting needs that a provider can now take, one
 * referral.created each: a pass examines the first self->waiting_batch in that order and, when
 * there were as many and a provider still has room, the next page from where the last pass's
 * second page ended (from the first page's end when that is further, or after a second page
 * that was not full), so that
 * needs behind waiting_batch others that no provider with room will take (its ages, genders,
 * languages, agreements) are examined in turn too. Rows locked, SKIP LOCKED. Call under the
 * assignment lock, after whatever may have freed or added a place. */
nrm_status_t routing_serve_waiting(routing_t *self, nrm_tx_t *tx);

/* Timer (nrm_timer_fn): seeds the configuration's providers after a reload, serves waiting
 * needs now and then (an agreement that starts today), and warns of agreements ending. */
nrm_status_t routing_directory_tick(void *ctx, nrm_tx_t *tx);
void routing_waiting_prepare(nrm_db_t *db);

/* routing_providers.c: UpsertProvider, ListProviders (nrm_handler_fn; ctx is the routing_t),
 * and the seeding of the configuration's providers (at start: nrm_timer_fn). */
nrm_status_t routing_upsert_provider(void *ctx, nrm_call_t *call);
nrm_status_t routing_list_providers(void *ctx, nrm_call_t *call);
nrm_status_t routing_seed_providers(void *ctx, nrm_tx_t *tx);
void routing_providers_prepare(nrm_db_t *db);

/* routing_agreements.c: UpsertAgreement, ListAgreements (nrm_handler_fn; ctx is the
 * routing_t), and routing.agreement_ending 30 days before an agreement ends, once. */
nrm_status_t routing_upsert_agreement(void *ctx, nrm_call_t *call);
nrm_status_t routing_list_agreements(void *ctx, nrm_call_t *call);
nrm_status_t routing_warn_agreements(routing_t *self, nrm_tx_t *tx);
void routing_agreements_prepare(nrm_db_t *db);

/* routing_list.c: ListReferrals (nrm_handler_fn, a read; ctx unused): the referrals the sender
 * may see, filtered, in pages. */
nrm_status_t routing_list_referrals(void *ctx, nrm_call_t *call);
void routing_list_prepare(nrm_db_t *db);

/* routing_shelter.c: the shelter service's answers about the case's SHELTER need. */

/* The consumer of the shelter stream, a batch at a time (nrm_flush_fn after
 * routing_batch_gather; ctx is the routing_t): records where each case's bed stands (one
 * statement per batch) and publishes shelter.no_show when a hold ended without an arrival. */
nrm_status_t routing_flush_shelter_events(void *ctx, nrm_tx_t *tx);

/* Withdraws the case's consented (not mandatory) shelter request: its service waits for consent
 * again and shelter.request_withdrawn (with reason) tells the shelter service to cancel a
 * waitlist place or an unconfirmed hold. Nothing when no such request is pending. */
nrm_status_t routing_shelter_withdraw(routing_t *self, nrm_tx_t *tx, const char *case_id,
                                      const char *reason);

void routing_shelter_prepare(nrm_db_t *db);

/* routing_deadlines.c: a raised urgency brings the deadlines of the case's pending referrals
 * forward to now + the new urgency's deadline (never later), referral.deadline_changed each. */
nrm_status_t routing_urgency_raised(routing_t *self, nrm_tx_t *tx, const routing_case_t *c,
                                    int urgency);
void routing_deadlines_prepare(nrm_db_t *db);

/* routing_validate.c: checks of the requests, before anything is read or changed. */
nrm_status_t routing_check_respond(const Nrm__V1__RespondToReferral *r, nrm_error_t *err);
nrm_status_t routing_check_complete(const Nrm__V1__CompleteReferral *c, nrm_error_t *err);

#endif
