/* Shelter allocation against real PostgreSQL and real nrm-intake, nrm-routing and nrm-shelter
 * processes: the demonstration network is seeded, shelters are validated and guarded by their
 * operators, each person reported goes to a shelter that may take them, a high-risk victim is
 * sheltered away from where they were found, and beds are confirmed, released and freed. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "harness.h"
#include "nrm_crypto.h"
#include "scenario.h"
#include "shelter_fixture.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#define WAIT_MS SHELTER_FIXTURE_WAIT_MS
#define DEMO_SHELTERS 23
#define DEMO_REGIONS 12
#define SQL_MAX 512
#define HOLD_S 86400
#define CHECK_MS 1000

#define WOMEN NRM__V1__SHELTER_POPULATION__SHELTER_POPULATION_WOMEN
#define MEN NRM__V1__SHELTER_POPULATION__SHELTER_POPULATION_MEN
#define MINORS NRM__V1__SHELTER_POPULATION__SHELTER_POPULATION_MINORS
#define FAMILIES NRM__V1__SHELTER_POPULATION__SHELTER_POPULATION_FAMILIES
#define MIXED NRM__V1__SHELTER_POPULATION__SHELTER_POPULATION_MIXED
#define STATUS(name) NRM__V1__STATUS__STATUS_##name

/* The test network: Rabat (MA-04) has a shelter for each rule of the matrix; Casablanca
 * (MA-06) and Marrakech (MA-07) have a women's shelter each. */
static const shelter_fixture_t s_network[] = {
    {"t04-minors-teen", "op-rabat-test", "MA-04", 4, MINORS, 12, 17, false, false, "ar,fr"},
    {"t04-minors-young", "op-rabat-test", "MA-04", 4, MINORS, 0, 11, false, false, "ar,fr"},
    {"t04-women-ar", "op-rabat-test", "MA-04", 4, WOMEN, 18, 120, false, false, "ar"},
    {"t04-women-fr", "op-rabat-test", "MA-04", 4, WOMEN, 18, 120, false, false, "fr"},
    {"t04-women-en", "op-rabat-test", "MA-04", 4, WOMEN, 18, 120, false, false, "en"},
    {"t04-families", "op-rabat-test", "MA-04", 6, FAMILIES, 18, 120, true, false, "ar,fr"},
    {"t04-men", "op-men-test", "MA-04", 4, MEN, 18, 120, false, false, "ar,fr"},
    {"t04-mixed-access", "op-rabat-test", "MA-04", 4, MIXED, 18, 120, false, true, "es"},
    {"t06-women", "op-casa-test", "MA-06", 4, WOMEN, 18, 120, false, false, "ar,fr,en"},
    {"t07-women", "op-marrakech-test", "MA-07", 2, WOMEN, 18, 120, false, false, "ar,fr,en"},
};
#define NETWORK_SIZE (sizeof s_network / sizeof *s_network)

static harness_t *h;

/* ---- helpers ---- */

/* Sends req to shelter as agency and checks the status and (for failures) the field. Returns
 * the reply (caller frees). */
static Nrm__V1__Reply *s_call(const char *agency, Nrm__V1__Request *req, int status,
                              const char *field)
{
    req->request_id = "";
    Nrm__V1__Reply *reply = harness_call(h, "shelter", agency, req);
    assert_non_null(reply);
    if ((int)reply->status != status)
        fprintf(stderr, "unexpected reply: %d %s %s\n", reply->status, reply->error_field,
                reply->error_message);
    assert_int_equal(reply->status, status);
    if (field)
        assert_string_equal(reply->error_field, field);
    return reply;
}

/* True when needle occurs in the len bytes at data. */
static bool s_contains(const uint8_t *data, size_t len, const char *needle)
{
    size_t n = strlen(needle);
    for (size_t i = 0; i + n <= len; i++)
        if (memcmp(data + i, needle, n) == 0)
            return true;
    return false;
}

/* GetOccupancy of region as agency; asserts OK. Caller frees. */
static Nrm__V1__Reply *s_occupancy_as(const char *agency, const char *region)
{
    Nrm__V1__GetOccupancy g = NRM__V1__GET_OCCUPANCY__INIT;
    g.region = (char *)region;
    Nrm__V1__Request req = NRM__V1__REQUEST__INIT;
    scenario_request(&req, NRM__V1__REQUEST__BODY_GET_OCCUPANCY, &g);
    Nrm__V1__Reply *reply = s_call(agency, &req, STATUS(OK), NULL);
    assert_int_equal(reply->result_case, NRM__V1__REPLY__RESULT_OCCUPANCY);
    return reply;
}

/* GetOccupancy of region as the coordinator (who sees every shelter). Caller frees. */
static Nrm__V1__Reply *s_occupancy(const char *region)
{
    return s_occupancy_as("coordinator", region);
}

/* The state of one shelter in an Occupancy reply (asserts it is there). */
static const Nrm__V1__ShelterState *s_find(const Nrm__V1__Reply *reply, const char *id)
{
    for (size_t i = 0; i < reply->occupancy->n_shelters; i++)
        if (strcmp(reply->occupancy->shelters[i]->shelter_id, id) == 0)
            return reply->occupancy->shelters[i];
    fail_msg("shelter %s not in the occupancy", id);
    return NULL;
}

/* A count from SQL with one %s argument. */
static long long s_count(const char *fmt, const char *arg)
{
    char sql[SQL_MAX];
    snprintf(sql, sizeof sql, fmt, arg);
    return harness_sql_int(h, sql);
}

/* Reports s and waits for its shelter outcome, which must be an allocation in shelter_id.
 * Returns the shelter.allocated event (caller frees); case_id receives the case. */
static Nrm__V1__Event *s_expect_bed(scenario_report_t *s, const char *agency,
                                    const char *shelter_id, char case_id[SHELTER_FIXTURE_ID])
{
    assert_int_equal(shelter_fixture_submit(h, s, agency, case_id), 0);
    Nrm__V1__Event *ev =
        shelter_fixture_outcome(h, case_id, NRM__V1__EVENT__BODY__NOT_SET, WAIT_MS);
    assert_non_null(ev);
    assert_int_equal(ev->body_case, NRM__V1__EVENT__BODY_SHELTER_ALLOCATED);
    assert_string_equal(ev->shelter_allocated->shelter_id, shelter_id);
    assert_string_equal(ev->stream, "shelter");
    return ev;
}

/* ---- the demonstration network (shelter alone) ---- */

static int demo_setup(void **state)
{
    h = harness_new("shelter_demo");
    return harness_start(h, "shelter", 0);
}

static int teardown(void **state)
{
    harness_destroy(&h);
    return 0;
}

static void test_demo_network_is_seeded_in_every_region_and_once(void **state)
{
    Nrm__V1__Reply *all = s_occupancy("");
    assert_int_equal(all->occupancy->n_shelters, DEMO_SHELTERS);
    bool region_seen[DEMO_REGIONS + 1] = {false};
    bool population_seen[MIXED + 1] = {false};
    for (size_t i = 0; i < all->occupancy->n_shelters; i++) {
        const Nrm__V1__ShelterState *s = all->occupancy->shelters[i];
        assert_non_null(strstr(s->name, "(demo)"));
        assert_true(s->active);
        assert_true(s->capacity > 0);
        assert_int_equal(s->occupied + s->held, 0);
        int region = 0;
        assert_int_equal(sscanf(s->region, "MA-%d", &region), 1);
        region_seen[region] = true;
        population_seen[s->population] = true;
    }
    for (int r = 1; r <= DEMO_REGIONS; r++)
        assert_true(region_seen[r]);
    assert_true(population_seen[WOMEN] && population_seen[MEN] && population_seen[MINORS] &&
                population_seen[FAMILIES]);
    assert_int_equal(harness_sql_int(h, "SELECT count(*) FROM shelter.shelters WHERE seeded"),
                     DEMO_SHELTERS);
    assert_int_equal(harness_sql_int(h, "SELECT count(*) FROM shelter.outbox"
                                        " WHERE topic = 'shelter.capacity_changed'"),
                     DEMO_SHELTERS);
    nrm__v1__reply__free_unpacked(all, NULL);

    /* a restart seeds nothing twice and overwrites nothing */
    PQclear(harness_sql(h, "UPDATE shelter.shelters SET capacity = 99"
                           " WHERE shelter_id = 'ma06-men-casablanca'"));
    assert_true(WIFEXITED(harness_signal(h, "shelter", 0, SIGTERM)));
    assert_int_equal(harness_start(h, "shelter", 0), 0);
    assert_int_equal(harness_sql_int(h, "SELECT count(*) FROM shelter.shelters"), DEMO_SHELTERS);
    assert_int_equal(harness_sql_int(h, "SELECT capacity FROM shelter.shelters"
                                        " WHERE shelter_id = 'ma06-men-casablanca'"),
                     99);
    assert_int_equal(harness_sql_int(h, "SELECT count(*) FROM shelter.outbox"), DEMO_SHELTERS);
}

static void test_occupancy_is_answered_per_region(void **state)
{
    Nrm__V1__Reply *reply = s_occupancy("MA-06");
    assert_true(reply->occupancy->n_shelters >= 3);
    for (size_t i = 0; i < reply->occupancy->n_shelters; i++)
        assert_string_equal(reply->occupancy->shelters[i]->region, "MA-06");
    assert_int_equal(reply->occupancy->waitlist, 0);
    nrm__v1__reply__free_unpacked(reply, NULL);

    Nrm__V1__GetOccupancy g = NRM__V1__GET_OCCUPANCY__INIT;
    g.region = "MA-99";
    Nrm__V1__Request req = NRM__V1__REQUEST__INIT;
    scenario_request(&req, NRM__V1__REQUEST__BODY_GET_OCCUPANCY, &g);
    nrm__v1__reply__free_unpacked(
        s_call("police-ma-04", &req, STATUS(INVALID_ARGUMENT), "get_occupancy.region"), NULL);
}

static void test_an_operator_sees_the_occupancy_of_its_own_shelters_only(void **state)
{
    Nrm__V1__Reply *reply = s_occupancy_as("shelter-op-casa", "");
    assert_true(reply->occupancy->n_shelters >= 1);
    for (size_t i = 0; i < reply->occupancy->n_shelters; i++)
        assert_string_equal(reply->occupancy->shelters[i]->operator_agency_id, "shelter-op-casa");
    nrm__v1__reply__free_unpacked(reply, NULL);
    Nrm__V1__GetOccupancy g = NRM__V1__GET_OCCUPANCY__INIT;
    g.region = "";
    Nrm__V1__Request req = NRM__V1__REQUEST__INIT;
    scenario_request(&req, NRM__V1__REQUEST__BODY_GET_OCCUPANCY, &g);
    nrm__v1__reply__free_unpacked(
        s_call("police-ma-04", &req, STATUS(PERMISSION_DENIED), "get_occupancy"), NULL);
}

/* One invalid shelter: how it is broken and the field the reply must name. */
typedef struct {
    const char *what;
    const char *field;
    void (*breaks)(Nrm__V1__UpsertShelter *u);
} s_invalid_t;

/* Ways to break a valid shelter, one field each. */
static void s_no_name(Nrm__V1__UpsertShelter *u)
{
    u->name = "";
}
static void s_bad_id(Nrm__V1__UpsertShelter *u)
{
    u->shelter_id = "shelter one/../x";
}
static void s_negative_capacity(Nrm__V1__UpsertShelter *u)
{
    u->capacity = -3;
}
static void s_huge_capacity(Nrm__V1__UpsertShelter *u)
{
    u->capacity = 1000000;
}
static void s_unknown_region(Nrm__V1__UpsertShelter *u)
{
    u->region = "MA-13";
}
static void s_police_operator(Nrm__V1__UpsertShelter *u)
{
    u->operator_agency_id = "police-ma-04";
}
static void s_no_population(Nrm__V1__UpsertShelter *u)
{
    u->population = 0;
}
static void s_adult_shelter_for_children(Nrm__V1__UpsertShelter *u)
{
    u->min_age = 16;
}
static void s_minors_shelter_for_adults(Nrm__V1__UpsertShelter *u)
{
    u->population = MINORS;
    u->min_age = 0;
    u->max_age = 25;
}
static void s_ages_reversed(Nrm__V1__UpsertShelter *u)
{
    u->max_age = 17;
    u->min_age = 30;
}
static void s_bad_language(Nrm__V1__UpsertShelter *u)
{
    u->languages[1] = "Arabic";
}

static void test_invalid_shelters_are_refused_with_the_field_named(void **state)
{
    static const s_invalid_t cases[] = {
        {"no name", "upsert_shelter.name", s_no_name},
        {"id with slashes and spaces", "upsert_shelter.shelter_id", s_bad_id},
        {"negative capacity", "upsert_shelter.capacity", s_negative_capacity},
        {"absurd capacity", "upsert_shelter.capacity", s_huge_capacity},
        {"unknown region", "upsert_shelter.region", s_unknown_region},
        {"operator not a shelter operator", "upsert_shelter.operator_agency_id", s_police_operator},
        {"no population", "upsert_shelter.population", s_no_population},
        {"adult shelter taking 16-year-olds", "upsert_shelter.min_age",
         s_adult_shelter_for_children},
        {"minors' shelter taking adults", "upsert_shelter.max_age", s_minors_shelter_for_adults},
        {"age range reversed", "upsert_shelter.max_age", s_ages_reversed},
        {"language not ISO 639-1", "upsert_shelter.languages[1]", s_bad_language},
    };
    long long shelters = harness_sql_int(h, "SELECT count(*) FROM shelter.shelters");
    long long events = harness_sql_int(h, "SELECT count(*) FROM shelter.outbox");
    long long refused = harness_sql_int(h, "SELECT count(*) FROM shelter.audit_log"
                                           " WHERE status = 'INVALID_ARGUMENT'");
    static const shelter_fixture_t valid = {
        "ma04-new-women", "shelter-op-rabat", "MA-04", 8, WOMEN, 18, 120, true, true, "ar,fr"};
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        shelter_fixture_upsert_t u;
        shelter_fixture_upsert(&u, &valid);
        cases[i].breaks(&u.upsert);
        print_message("  %s -> %s\n", cases[i].what, cases[i].field);
        nrm__v1__reply__free_unpacked(
            s_call("coordinator", &u.request, STATUS(INVALID_ARGUMENT), cases[i].field), NULL);
    }
    /* nothing changed */
    assert_int_equal(harness_sql_int(h, "SELECT count(*) FROM shelter.shelters"), shelters);
    assert_int_equal(harness_sql_int(h, "SELECT count(*) FROM shelter.outbox"), events);
    assert_int_equal(harness_sql_int(h, "SELECT count(*) FROM shelter.audit_log"
                                        " WHERE status = 'INVALID_ARGUMENT'"),
                     refused + (long long)(sizeof cases / sizeof *cases));
}

static void test_the_coordinator_registers_a_shelter_and_its_operator_may_change_it(void **state)
{
    static const shelter_fixture_t rabat = {"ma04-new-families",
                                            "shelter-op-rabat",
                                            "MA-04",
                                            10,
                                            FAMILIES,
                                            18,
                                            120,
                                            true,
                                            true,
                                            "ar,fr"};
    shelter_fixture_upsert_t u;
    shelter_fixture_upsert(&u, &rabat);
    /* no operator registers a shelter, not even in its own name (the coordinator decides who
     * takes part); another operator may not change it later either */
    nrm__v1__reply__free_unpacked(s_call("shelter-op-casa", &u.request, STATUS(PERMISSION_DENIED),
                                         "upsert_shelter.shelter_id"),
                                  NULL);
    nrm__v1__reply__free_unpacked(s_call("shelter-op-rabat", &u.request, STATUS(PERMISSION_DENIED),
                                         "upsert_shelter.shelter_id"),
                                  NULL);
    Nrm__V1__Reply *created = s_call("coordinator", &u.request, STATUS(OK), NULL);
    assert_int_equal(created->result_case, NRM__V1__REPLY__RESULT_SHELTER_REF);
    assert_string_equal(created->shelter_ref->shelter_id, "ma04-new-families");
    nrm__v1__reply__free_unpacked(created, NULL);
    u.upsert.capacity = 12;
    nrm__v1__reply__free_unpacked(s_call("shelter-op-casa", &u.request, STATUS(PERMISSION_DENIED),
                                         "upsert_shelter.shelter_id"),
                                  NULL);
    nrm__v1__reply__free_unpacked(
        s_call("police-ma-04", &u.request, STATUS(PERMISSION_DENIED), "upsert_shelter.shelter_id"),
        NULL);
    /* the operator may not hand it to someone else; the coordinator may */
    u.upsert.operator_agency_id = "shelter-op-casa";
    nrm__v1__reply__free_unpacked(s_call("shelter-op-rabat", &u.request, STATUS(PERMISSION_DENIED),
                                         "upsert_shelter.operator_agency_id"),
                                  NULL);
    u.upsert.operator_agency_id = "shelter-op-rabat";
    nrm__v1__reply__free_unpacked(s_call("shelter-op-rabat", &u.request, STATUS(OK), NULL), NULL);
    u.upsert.capacity = 14;
    nrm__v1__reply__free_unpacked(s_call("coordinator", &u.request, STATUS(OK), NULL), NULL);
    assert_int_equal(harness_sql_int(h, "SELECT capacity FROM shelter.shelters"
                                        " WHERE shelter_id = 'ma04-new-families'"),
                     14);
    /* each capacity change was announced: created (10), 12, 14 */
    assert_int_equal(harness_sql_int(h, "SELECT count(*) FROM shelter.outbox"
                                        " WHERE topic = 'shelter.capacity_changed'"),
                     DEMO_SHELTERS + 3);
}

static void test_a_shelter_configuration_with_a_bad_field_is_refused_at_start(void **state)
{
    assert_true(WIFEXITED(harness_signal(h, "shelter", 0, SIGTERM)));
    harness_config_set(h, "shelters",
                       json_pack("[{s:s, s:s, s:s, s:s, s:i, s:s, s:i, s:i, s:b}]", "shelterId",
                                 "broken", "name", "Broken (demo)", "operatorAgencyId",
                                 "shelter-op-rabat", "region", "MA-04", "capacity", -1,
                                 "population", "SHELTER_POPULATION_WOMEN", "minAge", 18, "maxAge",
                                 120, "active", 1));
    assert_int_equal(harness_start(h, "shelter", 0), -1);
    assert_true(harness_log_contains(h, "shelter", 0, "shelters[0].capacity"));
}

/* ---- allocation through intake and routing ---- */

static int flow_setup(void **state)
{
    h = harness_new("shelter");
    shelter_fixture_use(h, s_network, NETWORK_SIZE, HOLD_S, CHECK_MS);
    if (harness_start(h, "intake", 0) != 0 || harness_start(h, "routing", 0) != 0)
        return -1;
    return harness_start(h, "shelter", 0);
}

static void test_eligibility_matrix(void **state)
{
    char case_id[SHELTER_FIXTURE_ID];
    scenario_report_t s;
    Nrm__V1__Event *ev;

    /* a 15-year-old girl: the teenagers' home, never a women's shelter or the small children's */
    shelter_fixture_person(&s, "MA-04", "Salma Teen Matrix", "ar");
    s.profile.age_years = 15;
    ev = s_expect_bed(&s, "police-ma-04", "t04-minors-teen", case_id);
    nrm__v1__event__free_unpacked(ev, NULL);

    /* a 9-year-old boy: the young children's home */
    shelter_fixture_person(&s, "MA-04", "Yassine Child Matrix", "ar");
    s.profile.age_years = 9;
    s.profile.gender = NRM__V1__GENDER__GENDER_MALE;
    ev = s_expect_bed(&s, "police-ma-04", "t04-minors-young", case_id);
    nrm__v1__event__free_unpacked(ev, NULL);

    /* a woman with two children: three beds in the family shelter */
    shelter_fixture_person(&s, "MA-04", "Mother Two Children Matrix", "fr");
    s.profile.accompanying_children = 2;
    ev = s_expect_bed(&s, "hospital-ma-04", "t04-families", case_id);
    assert_int_equal(ev->shelter_allocated->beds, 3);
    nrm__v1__event__free_unpacked(ev, NULL);

    /* a man: the men's shelter */
    shelter_fixture_person(&s, "MA-04", "Adult Man Matrix", "fr");
    s.profile.gender = NRM__V1__GENDER__GENDER_MALE;
    s.profile.age_years = 34;
    ev = s_expect_bed(&s, "police-ma-04", "t04-men", case_id);
    nrm__v1__event__free_unpacked(ev, NULL);

    /* a wheelchair user: the only accessible shelter, though it speaks none of her languages */
    shelter_fixture_person(&s, "MA-04", "Wheelchair User Matrix", "en");
    s.profile.disability = 1;
    ev = s_expect_bed(&s, "hospital-ma-04", "t04-mixed-access", case_id);
    assert_non_null(strstr(ev->shelter_allocated->reason, "no_language_match"));
    nrm__v1__event__free_unpacked(ev, NULL);

    /* Arabic, French and English speakers: the women's shelter that speaks their language */
    static const char *const speakers[][2] = {
        {"ar", "t04-women-ar"}, {"fr", "t04-women-fr"}, {"en", "t04-women-en"}};
    for (size_t i = 0; i < sizeof speakers / sizeof *speakers; i++) {
        char name[64];
        snprintf(name, sizeof name, "Speaker %s Matrix", speakers[i][0]);
        shelter_fixture_person(&s, "MA-04", name, speakers[i][0]);
        ev = s_expect_bed(&s, "police-ma-04", speakers[i][1], case_id);
        assert_non_null(strstr(ev->shelter_allocated->reason, "same_region; language_match"));
        assert_string_equal(ev->shelter_allocated->operator_agency_id, "op-rabat-test");
        assert_string_equal(ev->shelter_allocated->region, "MA-04");
        assert_int_equal(ev->shelter_allocated->beds, 1);
        assert_true(ev->shelter_allocated->hold_until_ms > ev->occurred_at_ms);
        nrm__v1__event__free_unpacked(ev, NULL);
    }
    /* the database agrees, and no shelter holds more than it has */
    assert_int_equal(harness_sql_int(h, "SELECT count(*) FROM shelter.allocations"), 8);
    assert_int_equal(harness_sql_int(h, "SELECT count(*) FROM shelter.shelters"
                                        " WHERE occupied + held > capacity"),
                     0);
    assert_int_equal(harness_sql_int(h, "SELECT held FROM shelter.shelters"
                                        " WHERE shelter_id = 't04-families'"),
                     3);
}

static void test_a_shelter_may_not_stop_taking_people_like_those_holding_its_beds(void **state)
{
    char case_id[SHELTER_FIXTURE_ID];
    scenario_report_t s;
    shelter_fixture_person(&s, "MA-04", "Nadia Teen Rules", "ar");
    s.profile.age_years = 16;
    Nrm__V1__Event *ev = s_expect_bed(&s, "police-ma-04", "t04-minors-teen", case_id);
    nrm__v1__event__free_unpacked(ev, NULL);
    /* its operator would make the teenagers' home a women's shelter while a girl holds a bed */
    shelter_fixture_upsert_t u;
    shelter_fixture_upsert(&u, &s_network[0]);
    assert_string_equal(u.upsert.shelter_id, "t04-minors-teen");
    u.upsert.population = NRM__V1__SHELTER_POPULATION__SHELTER_POPULATION_WOMEN;
    u.upsert.min_age = 18;
    u.upsert.max_age = 120;
    nrm__v1__reply__free_unpacked(s_call("op-rabat-test", &u.request, STATUS(FAILED_PRECONDITION),
                                         "upsert_shelter.population"),
                                  NULL);
    assert_int_equal(harness_sql_int(h, "SELECT population FROM shelter.shelters"
                                        " WHERE shelter_id = 't04-minors-teen'"),
                     MINORS);
    /* a change that still takes her is made */
    shelter_fixture_upsert(&u, &s_network[0]);
    u.upsert.max_age = 18 - 1;
    u.upsert.min_age = 13;
    nrm__v1__reply__free_unpacked(s_call("op-rabat-test", &u.request, STATUS(OK), NULL), NULL);
}

static void test_high_risk_victim_from_ma06_is_sheltered_outside_ma06(void **state)
{
    char case_id[SHELTER_FIXTURE_ID];
    scenario_report_t s;
    /* at medium risk, a woman found in Casablanca stays close: the Casablanca shelter */
    shelter_fixture_person(&s, "MA-06", "Medium Risk Casablanca", "en");
    Nrm__V1__Event *ev = s_expect_bed(&s, "police-ma-06", "t06-women", case_id);
    assert_non_null(strstr(ev->shelter_allocated->reason, "same_region"));
    nrm__v1__event__free_unpacked(ev, NULL);

    /* at high risk, she is taken away from the region, though Casablanca has free beds */
    shelter_fixture_person(&s, "MA-06", "High Risk Casablanca", "en");
    s.report.safety_risk = NRM__V1__SAFETY_RISK__SAFETY_RISK_HIGH;
    assert_int_equal(shelter_fixture_submit(h, &s, "police-ma-06", case_id), 0);
    ev = shelter_fixture_outcome(h, case_id, NRM__V1__EVENT__BODY__NOT_SET, WAIT_MS);
    assert_non_null(ev);
    assert_int_equal(ev->body_case, NRM__V1__EVENT__BODY_SHELTER_ALLOCATED);
    assert_string_not_equal(ev->shelter_allocated->region, "MA-06");
    assert_non_null(strstr(ev->shelter_allocated->reason, "high_risk_outside_region"));
    assert_true(s_count("SELECT capacity - occupied - held FROM shelter.shelters"
                        " WHERE shelter_id = '%s'",
                        "t06-women") > 0);
    /* the reason is stored with the allocation */
    assert_int_equal(s_count("SELECT count(*) FROM shelter.allocations WHERE case_id = '%s'"
                             " AND reason LIKE 'high_risk_outside_region%%'",
                             case_id),
                     1);
    nrm__v1__event__free_unpacked(ev, NULL);
}

/* The allocation id of the live allocation of a case (asserts there is one). */
static void s_allocation_of(const char *case_id, char out[SHELTER_FIXTURE_ID])
{
    char sql[SQL_MAX];
    snprintf(sql, sizeof sql,
             "SELECT allocation_id FROM shelter.allocations WHERE case_id = '%s'"
             " AND state <> 'released'",
             case_id);
    PGresult *res = harness_sql(h, sql);
    assert_int_equal(PQntuples(res), 1);
    snprintf(out, SHELTER_FIXTURE_ID, "%s", PQgetvalue(res, 0, 0));
    PQclear(res);
}

static void test_a_stranger_may_not_release_a_bed_its_operator_may(void **state)
{
    char case_id[SHELTER_FIXTURE_ID], allocation_id[SHELTER_FIXTURE_ID];
    scenario_report_t s;
    shelter_fixture_person(&s, "MA-07", "Release Test Marrakech", "fr");
    Nrm__V1__Event *ev = s_expect_bed(&s, "ngo-ma-07", "t07-women", case_id);
    nrm__v1__event__free_unpacked(ev, NULL);
    s_allocation_of(case_id, allocation_id);

    Nrm__V1__ReleaseBed rel = NRM__V1__RELEASE_BED__INIT;
    rel.allocation_id = allocation_id;
    rel.reason = "departed";
    Nrm__V1__Request req = NRM__V1__REQUEST__INIT;
    scenario_request(&req, NRM__V1__REQUEST__BODY_RELEASE_BED, &rel);
    /* another shelter's operator, the police, the NGO that reported her: all strangers here */
    static const char *const strangers[] = {"op-casa-test", "police-ma-04", "ngo-ma-07"};
    for (size_t i = 0; i < sizeof strangers / sizeof *strangers; i++)
        nrm__v1__reply__free_unpacked(
            s_call(strangers[i], &req, STATUS(PERMISSION_DENIED), "release_bed.allocation_id"),
            NULL);
    assert_int_equal(s_count("SELECT count(*) FROM shelter.allocations WHERE allocation_id = '%s'"
                             " AND state = 'held'",
                             allocation_id),
                     1);
    /* free text as a reason is refused: it could name someone */
    rel.reason = "she went back to her cousin Amina";
    nrm__v1__reply__free_unpacked(
        s_call("op-marrakech-test", &req, STATUS(INVALID_ARGUMENT), "release_bed.reason"), NULL);
    /* an allocation that does not exist: only a coordinator learns that, an operator or a
     * stranger is refused as for one of another shelter's */
    rel.allocation_id = "no-such-allocation";
    rel.reason = "departed";
    nrm__v1__reply__free_unpacked(
        s_call("coordinator", &req, STATUS(NOT_FOUND), "release_bed.allocation_id"), NULL);
    nrm__v1__reply__free_unpacked(
        s_call("op-marrakech-test", &req, STATUS(PERMISSION_DENIED), "release_bed.allocation_id"),
        NULL);
    nrm__v1__reply__free_unpacked(
        s_call("police-ma-04", &req, STATUS(PERMISSION_DENIED), "release_bed.allocation_id"), NULL);

    /* the operator confirms the arrival, may not shrink the shelter below it, then releases */
    Nrm__V1__ConfirmArrival conf = NRM__V1__CONFIRM_ARRIVAL__INIT;
    conf.allocation_id = allocation_id;
    Nrm__V1__Request creq = NRM__V1__REQUEST__INIT;
    scenario_request(&creq, NRM__V1__REQUEST__BODY_CONFIRM_ARRIVAL, &conf);
    nrm__v1__reply__free_unpacked(
        s_call("op-casa-test", &creq, STATUS(PERMISSION_DENIED), "confirm_arrival.allocation_id"),
        NULL);
    Nrm__V1__Reply *occ = s_occupancy("MA-07");
    const Nrm__V1__ShelterState *st = s_find(occ, "t07-women");
    int occupied = st->occupied, held = st->held;
    assert_true(held >= 1);
    nrm__v1__reply__free_unpacked(occ, NULL);
    Nrm__V1__Reply *confirmed = s_call("op-marrakech-test", &creq, STATUS(OK), NULL);
    assert_string_equal(confirmed->allocation_ref->state, "occupied");
    nrm__v1__reply__free_unpacked(confirmed, NULL);
    occ = s_occupancy("MA-07");
    st = s_find(occ, "t07-women");
    assert_int_equal(st->occupied, occupied + 1);
    assert_int_equal(st->held, held - 1);
    nrm__v1__reply__free_unpacked(occ, NULL);
    const shelter_fixture_t *t07 = &s_network[NETWORK_SIZE - 1];
    shelter_fixture_upsert_t shrink;
    shelter_fixture_upsert(&shrink, t07);
    shrink.upsert.capacity = 0;
    nrm__v1__reply__free_unpacked(s_call("op-marrakech-test", &shrink.request,
                                         STATUS(FAILED_PRECONDITION), "upsert_shelter.capacity"),
                                  NULL);

    rel.allocation_id = allocation_id;
    Nrm__V1__Reply *released = s_call("op-marrakech-test", &req, STATUS(OK), NULL);
    assert_string_equal(released->allocation_ref->state, "released");
    nrm__v1__reply__free_unpacked(released, NULL);
    Nrm__V1__Event **events = NULL;
    size_t n = shelter_fixture_events(h, "shelter.released", &events);
    assert_true(n >= 1);
    assert_string_equal(events[n - 1]->shelter_released->allocation_id, allocation_id);
    assert_string_equal(events[n - 1]->shelter_released->reason, "departed");
    assert_string_equal(events[n - 1]->case_id, case_id);
    shelter_fixture_events_free(events, n);
    occ = s_occupancy("MA-07");
    st = s_find(occ, "t07-women");
    assert_int_equal(st->occupied, occupied);
    assert_int_equal(st->held, held - 1);
    nrm__v1__reply__free_unpacked(occ, NULL);
    /* a released bed cannot be released again */
    nrm__v1__reply__free_unpacked(
        s_call("op-marrakech-test", &req, STATUS(FAILED_PRECONDITION), "release_bed.allocation_id"),
        NULL);
    assert_int_equal(harness_sql_int(h, "SELECT count(*) FROM shelter.audit_log WHERE status ="
                                        " 'PERMISSION_DENIED' AND kind = 'release_bed'"),
                     5); /* the three strangers, and two asking about no allocation */
}

static void test_closing_a_case_releases_its_beds(void **state)
{
    char case_id[SHELTER_FIXTURE_ID];
    scenario_report_t s;
    shelter_fixture_person(&s, "MA-06", "Closed Case Casablanca", "ar");
    Nrm__V1__Event *ev = s_expect_bed(&s, "police-ma-06", "t06-women", case_id);
    char allocation_id[SHELTER_FIXTURE_ID];
    snprintf(allocation_id, sizeof allocation_id, "%s", ev->shelter_allocated->allocation_id);
    nrm__v1__event__free_unpacked(ev, NULL);

    Nrm__V1__CloseCase close = NRM__V1__CLOSE_CASE__INIT;
    close.case_id = case_id;
    close.reason = "transferred";
    Nrm__V1__Request req = NRM__V1__REQUEST__INIT;
    scenario_request(&req, NRM__V1__REQUEST__BODY_CLOSE_CASE, &close);
    Nrm__V1__Reply *reply = harness_call(h, "intake", "coordinator", &req);
    assert_non_null(reply);
    assert_int_equal(reply->status, STATUS(OK));
    nrm__v1__reply__free_unpacked(reply, NULL);
    assert_int_equal(harness_wait_sql(h,
                                      "SELECT count(*) FROM shelter.allocations WHERE state ="
                                      " 'released' AND release_reason = 'case_closed'",
                                      1, WAIT_MS),
                     1);
    Nrm__V1__Event **events = NULL;
    size_t n = shelter_fixture_events(h, "shelter.released", &events);
    assert_true(n >= 1);
    assert_string_equal(events[n - 1]->shelter_released->allocation_id, allocation_id);
    assert_string_equal(events[n - 1]->shelter_released->reason, "case_closed");
    shelter_fixture_events_free(events, n);
}

static void test_nothing_identifying_reaches_the_shelter_stream_or_log(void **state)
{
    static const char *const secrets[] = {"Matrix",        "Casablanca",  "Amina",
                                          "PASS-A1234567", "600 000 111", "farm gate"};
    shelter_fixture_settle(h);
    Nrm__V1__Event **events = NULL;
    size_t n = harness_fetch_all(h, "shelter", &events);
    assert_true(n > 0);
    for (size_t i = 0; i < n; i++) {
        size_t len = nrm__v1__event__get_packed_size(events[i]);
        uint8_t *bytes = calloc(1, len + 1);
        nrm__v1__event__pack(events[i], bytes);
        for (size_t k = 0; k < sizeof secrets / sizeof *secrets; k++)
            assert_false(s_contains(bytes, len, secrets[k]));
        free(bytes);
        nrm__v1__event__free_unpacked(events[i], NULL);
    }
    free(events);
    for (size_t k = 0; k < sizeof secrets / sizeof *secrets; k++)
        assert_false(harness_log_contains(h, "shelter", 0, secrets[k]));
}

int main(void)
{
    const struct CMUnitTest demo[] = {
        cmocka_unit_test(test_demo_network_is_seeded_in_every_region_and_once),
        cmocka_unit_test(test_occupancy_is_answered_per_region),
        cmocka_unit_test(test_invalid_shelters_are_refused_with_the_field_named),
        cmocka_unit_test(test_an_operator_sees_the_occupancy_of_its_own_shelters_only),
        cmocka_unit_test(test_the_coordinator_registers_a_shelter_and_its_operator_may_change_it),
        cmocka_unit_test(test_a_shelter_configuration_with_a_bad_field_is_refused_at_start),
    };
    const struct CMUnitTest flow[] = {
        cmocka_unit_test(test_eligibility_matrix),
        cmocka_unit_test(test_a_shelter_may_not_stop_taking_people_like_those_holding_its_beds),
        cmocka_unit_test(test_high_risk_victim_from_ma06_is_sheltered_outside_ma06),
        cmocka_unit_test(test_a_stranger_may_not_release_a_bed_its_operator_may),
        cmocka_unit_test(test_closing_a_case_releases_its_beds),
        cmocka_unit_test(test_nothing_identifying_reaches_the_shelter_stream_or_log),
    };
    int failed = cmocka_run_group_tests_name("shelter_demo", demo, demo_setup, teardown);
    return failed + cmocka_run_group_tests_name("shelter_flow", flow, flow_setup, teardown);
}
