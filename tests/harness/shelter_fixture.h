/* Helpers for the shelter tests: a shelter network of the test's own in place of the
 * demonstration one, reports of the people the eligibility rules are about, and the outcome of
 * a case's shelter request as the shelter service published it. */
#ifndef NRM_SHELTER_FIXTURE_H
#define NRM_SHELTER_FIXTURE_H

#include <stdbool.h>
#include "harness.h"
#include "nrm/v1/api.pb-c.h"
#include "scenario.h"

#define SHELTER_FIXTURE_WAIT_MS 15000
#define SHELTER_FIXTURE_ID 72
#define SHELTER_FIXTURE_LANGUAGES 10

/* One shelter of a test network; languages as "ar,fr". */
typedef struct {
    const char *id;
    const char *operator_id;
    const char *region;
    int capacity;
    Nrm__V1__ShelterPopulation population;
    int min_age;
    int max_age;
    bool accepts_children;
    bool accessible;
    const char *languages;
} shelter_fixture_t;

/* One women's shelter of one bed in MA-04 (w04-women, operated by op-wait-test), for the
 * waitlist's tests. */
extern const shelter_fixture_t shelter_fixture_one_bed;

/* Replaces the demonstration shelters of h's configuration by list (n entries), registering
 * each operator_id as a SHELTER_OPERATOR agency, with beds held hold_s seconds and holds checked
 * every check_ms. The other demonstration data files stay. Call before starting services. */
void shelter_fixture_use(harness_t *h, const shelter_fixture_t *list, size_t n, int hold_s,
                         int check_ms);

/* Starts intake, routing and shelter (instance 0 each), the path of a report to a bed. 0, or -1
 * when one does not start. */
int shelter_fixture_start(harness_t *h);

/* An UpsertShelter with its parts, ready to send (like scenario_report_t). */
typedef struct {
    Nrm__V1__Request request;
    Nrm__V1__UpsertShelter upsert;
    char *languages[SHELTER_FIXTURE_LANGUAGES];
    char codes[SHELTER_FIXTURE_LANGUAGES][3];
} shelter_fixture_upsert_t;

/* Fills s with an UpsertShelter of f (active), wrapped in s->request. */
void shelter_fixture_upsert(shelter_fixture_upsert_t *s, const shelter_fixture_t *f);

/* A report of an adult woman (scenario_adult_woman) identified in region, called full_name,
 * speaking only language (NULL keeps the scenario's), with no date of birth so that
 * profile.age_years counts; the caller adjusts the profile further. */
void shelter_fixture_person(scenario_report_t *s, const char *region, const char *full_name,
                            const char *language);

/* Submits a report to intake as agency; returns the case id in case_id (SHELTER_FIXTURE_ID).
 * Returns 0, or -1 when intake did not answer OK. */
int shelter_fixture_submit(harness_t *h, scenario_report_t *s, const char *agency,
                           char case_id[SHELTER_FIXTURE_ID]);

/* Submits n reports to intake as agency, many in flight at once, and waits for every reply.
 * case_ids[i] receives the case id of reports[i] ("" when refused). Returns how many were OK. */
size_t shelter_fixture_submit_many(harness_t *h, scenario_report_t *reports, size_t n,
                                   const char *agency, char (*case_ids)[SHELTER_FIXTURE_ID]);

/* The latest shelter.allocated or shelter.waitlisted event about case_id on the shelter stream,
 * waited for up to timeout_ms until there is one (want NOT_SET) or until the latest is of the
 * body want. Returns it (caller frees with nrm__v1__event__free_unpacked) or NULL. */
Nrm__V1__Event *shelter_fixture_outcome(harness_t *h, const char *case_id,
                                        Nrm__V1__Event__BodyCase want, int timeout_ms);

/* The allocation id of case_id's live allocation (held or occupied) into out. Returns 0, or -1
 * when the case has none. */
int shelter_fixture_allocation_of(harness_t *h, const char *case_id, char out[SHELTER_FIXTURE_ID]);

/* Waits until every event the shelter service has committed is sequenced, so that a Fetch sees
 * them all (the publisher numbers them just after their transaction commits). */
void shelter_fixture_settle(harness_t *h);

/* Every event of topic on the shelter stream (settled first), in order; returns the count and
 * stores them in *events (caller frees each and the array). */
size_t shelter_fixture_events(harness_t *h, const char *topic, Nrm__V1__Event ***events);

/* Frees what shelter_fixture_events returned. */
void shelter_fixture_events_free(Nrm__V1__Event **events, size_t n);

/* Runs sql on the test database of the harness named name, without aborting on failure:
 * returns the SQLSTATE of the error in state ("" on success). */
void shelter_fixture_sqlstate(const char *name, const char *sql, char state[6]);

#endif
