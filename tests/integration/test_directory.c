/* The agency directory at run time, against real nrm-intake, nrm-routing, nrm-shelter and
 * nrm-notify processes with CURVE: a partner the coordinator registers on intake can report at
 * once and is known to every service within a moment; deactivating it or removing its key is
 * refused everywhere within a short bound, also on a connection already open; only the
 * coordinator registers, bad entries change nothing, and a restarted service keeps what it
 * learnt. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "harness.h"
#include "notify_fixture.h"
#include "nrm_time.h"
#include "scenario.h"

#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#define OK NRM__V1__STATUS__STATUS_OK
#define UNAUTHENTICATED NRM__V1__STATUS__STATUS_UNAUTHENTICATED
#define DENIED NRM__V1__STATUS__STATUS_PERMISSION_DENIED
#define INVALID NRM__V1__STATUS__STATUS_INVALID_ARGUMENT
#define PRECONDITION NRM__V1__STATUS__STATUS_FAILED_PRECONDITION
#define CONFLICT NRM__V1__STATUS__STATUS_CONFLICT
#define NGO NRM__V1__AGENCY_TYPE__AGENCY_TYPE_NGO
#define B(name) NRM__V1__REQUEST__BODY_##name
#define KNOWN_WITHIN_MS 5000   /* a registration reaches every service */
#define REFUSED_WITHIN_MS 3000 /* a revocation reaches every service */
#define POLL_MS 50
#define DEFAULT_HEARTBEAT_MS 5000
#define SILENCE_MS 2000 /* how long "gets no answer" is watched */
#define SQL_MAX 512
#define FIELD_MAX 128

static harness_t *h;
static const char *const s_services[] = {"intake", "routing", "shelter", "notify"};
#define SERVICE_COUNT (sizeof s_services / sizeof s_services[0])

static int setup(void **state)
{
    h = harness_new("directory");
    notify_fixture_settings_t settings = {
        .max_attempts = 3, .backoff_ms = 100, .max_backoff_ms = 200, .timeout_ms = 1000};
    notify_fixture_config(h, &settings, NULL);
    /* the default heartbeat: the bounds below must not depend on a short one */
    harness_config_set(h, "heartbeat_ms", json_integer(DEFAULT_HEARTBEAT_MS));
    for (size_t i = 0; i < SERVICE_COUNT; i++)
        if (harness_start(h, s_services[i], 0) != 0)
            return -1;
    return 0;
}

static int teardown(void **state)
{
    harness_destroy(&h);
    return 0;
}

/* Sends UpsertAgency {id, NGO, keys, active} to intake as sender; returns the status and the
 * error field (field may be NULL). */
static Nrm__V1__Status s_upsert_as(const char *sender, const char *id, int type,
                                   const char *const *keys, size_t n, bool active, char *field)
{
    Nrm__V1__UpsertAgency u = NRM__V1__UPSERT_AGENCY__INIT;
    u.agency_id = (char *)id;
    u.type = (Nrm__V1__AgencyType)type;
    u.public_keys = (char **)keys;
    u.n_public_keys = n;
    u.active = active;
    u.name = "Partner organisation";
    Nrm__V1__Request req = NRM__V1__REQUEST__INIT;
    scenario_request(&req, B(UPSERT_AGENCY), &u);
    Nrm__V1__Reply *reply = harness_call(h, "intake", sender, &req);
    assert_non_null(reply);
    Nrm__V1__Status st = reply->status;
    if (field)
        snprintf(field, FIELD_MAX, "%s", reply->error_field);
    nrm__v1__reply__free_unpacked(reply, NULL);
    return st;
}

/* The coordinator registers id, an NGO, with the key of the identity of the same name. */
static void s_register(const char *id, bool active)
{
    const char *key = harness_public_key(h, id);
    assert_int_equal(s_upsert_as("coordinator", id, NGO, &key, 1, active, NULL), OK);
}

/* Submits a report of a new adult as agency to intake; returns the status, the case id in
 * case_id (size 64) when OK. */
static Nrm__V1__Status s_report(const char *agency, const char *name, char *case_id)
{
    scenario_report_t s;
    scenario_adult_woman(&s, "MA-06", name, "1990-04-02");
    Nrm__V1__Reply *reply = harness_call(h, "intake", agency, &s.request);
    assert_non_null(reply);
    Nrm__V1__Status st = reply->status;
    if (case_id && st == OK)
        snprintf(case_id, 64, "%s", reply->case_ref->case_id);
    nrm__v1__reply__free_unpacked(reply, NULL);
    return st;
}

/* A request of the agency about case_id (NULL: its own things) to service: intake GetCase,
 * routing ListReferrals, shelter ListAllocations, notify ListDeliveries. Returns the status. */
static Nrm__V1__Status s_probe(const char *service, const char *agency, const char *case_id)
{
    Nrm__V1__Request req = NRM__V1__REQUEST__INIT;
    Nrm__V1__GetCase get = NRM__V1__GET_CASE__INIT;
    Nrm__V1__ListReferrals referrals = NRM__V1__LIST_REFERRALS__INIT;
    Nrm__V1__ListAllocations allocations = NRM__V1__LIST_ALLOCATIONS__INIT;
    Nrm__V1__ListDeliveries deliveries = NRM__V1__LIST_DELIVERIES__INIT;
    get.case_id = referrals.case_id = allocations.case_id = (char *)(case_id ? case_id : "");
    if (strcmp(service, "intake") == 0)
        scenario_request(&req, B(GET_CASE), &get);
    else if (strcmp(service, "routing") == 0)
        scenario_request(&req, B(LIST_REFERRALS), &referrals);
    else if (strcmp(service, "shelter") == 0)
        scenario_request(&req, B(LIST_ALLOCATIONS), &allocations);
    else
        scenario_request(&req, B(LIST_DELIVERIES), &deliveries);
    Nrm__V1__Reply *reply = harness_call(h, service, agency, &req);
    assert_non_null(reply);
    Nrm__V1__Status st = reply->status;
    nrm__v1__reply__free_unpacked(reply, NULL);
    return st;
}

/* Waits until the service's copy of the directory holds id as active (or not). Returns the
 * milliseconds it took, or -1. */
static long long s_wait_copy(const char *service, const char *id, bool active)
{
    char sql[SQL_MAX];
    snprintf(sql, sizeof sql,
             "SELECT count(*) FROM %s.directory_agencies WHERE agency_id = '%s' AND active = %s",
             service, id, active ? "true" : "false");
    int64_t start = nrm_mono_ms();
    if (harness_wait_sql(h, sql, 1, KNOWN_WITHIN_MS) != 1)
        return -1;
    return nrm_mono_ms() - start;
}

/* Sends the probe to service until it is refused UNAUTHENTICATED; returns the milliseconds it
 * took, or -1 after bound_ms. */
static long long s_wait_refused(const char *service, const char *agency, const char *case_id,
                                int bound_ms)
{
    int64_t start = nrm_mono_ms();
    while (nrm_mono_ms() - start < bound_ms) {
        if (s_probe(service, agency, case_id) == UNAUTHENTICATED)
            return nrm_mono_ms() - start;
        usleep(POLL_MS * 1000);
    }
    return -1;
}

/* The rows of intake's directory and its directory events, as "rows/events". */
static void s_intake_directory(char *out, size_t size)
{
    snprintf(
        out, size, "%lld/%lld",
        harness_sql_int(h, "SELECT count(*) FROM intake.directory_agencies"),
        harness_sql_int(h, "SELECT count(*) FROM intake.outbox WHERE topic LIKE 'directory.%'"));
}

static void
test_a_partner_registered_at_run_time_reports_at_once_and_manages_its_case_everywhere(void **state)
{
    s_register("partner-ngo-1", true);
    char case_id[64];
    assert_int_equal(s_report("partner-ngo-1", "Directory Person Amal", case_id), OK);
    assert_int_equal(s_probe("intake", "partner-ngo-1", case_id), OK); /* its case manager */
    for (size_t i = 1; i < SERVICE_COUNT; i++) {
        long long ms = s_wait_copy(s_services[i], "partner-ngo-1", true);
        assert_true(ms >= 0);
        printf("directory: partner-ngo-1 in %s's directory after %lld ms\n", s_services[i], ms);
    }
    /* routing and shelter learn the case manager from case.opened: wait for the case there */
    char sql[SQL_MAX];
    snprintf(sql, sizeof sql,
             "SELECT (SELECT count(*) FROM routing.cases WHERE case_id = '%s') +"
             " (SELECT count(*) FROM shelter.case_managers WHERE case_id = '%s')",
             case_id, case_id);
    assert_true(harness_wait_sql(h, sql, 2, KNOWN_WITHIN_MS) >= 2);
    usleep(500 * 1000); /* the copy is put in force within 200 ms of its commit */
    for (size_t i = 1; i < SERVICE_COUNT; i++)
        assert_int_equal(s_probe(s_services[i], "partner-ngo-1", case_id), OK);
}

static void
test_a_deactivated_partner_is_refused_by_every_service_on_its_open_connections(void **state)
{
    s_register("partner-ngo-2", true);
    char case_id[64];
    assert_int_equal(s_report("partner-ngo-2", "Directory Person Basma", case_id), OK);
    for (size_t i = 1; i < SERVICE_COUNT; i++)
        assert_true(s_wait_copy(s_services[i], "partner-ngo-2", true) >= 0);
    usleep(500 * 1000);
    for (size_t i = 0; i < SERVICE_COUNT; i++) /* a connection to each is open now */
        assert_int_not_equal(s_probe(s_services[i], "partner-ngo-2", NULL), UNAUTHENTICATED);
    const char *key = harness_public_key(h, "partner-ngo-2");
    assert_int_equal(s_upsert_as("coordinator", "partner-ngo-2", NGO, &key, 1, false, NULL), OK);
    assert_int_equal(s_probe("intake", "partner-ngo-2", case_id), UNAUTHENTICATED); /* at once */
    for (size_t i = 1; i < SERVICE_COUNT; i++) {
        long long ms = s_wait_refused(s_services[i], "partner-ngo-2", NULL, REFUSED_WITHIN_MS);
        printf("directory: partner-ngo-2 refused by %s %lld ms after its deactivation\n",
               s_services[i], ms);
        assert_true(ms >= 0);
    }
    assert_int_equal(s_report("partner-ngo-2", "Directory Person Basma Two", NULL),
                     UNAUTHENTICATED);
}

static void
test_a_key_removed_from_a_partner_is_refused_while_its_other_key_still_works(void **state)
{
    /* two keys during a rotation: the old one's identity "partner-ngo-3-old" sends as the
     * partner through a client of its own */
    const char *keys[] = {harness_public_key(h, "partner-ngo-3"),
                          harness_public_key(h, "partner-ngo-3-old")};
    assert_int_equal(s_upsert_as("coordinator", "partner-ngo-3", NGO, keys, 2, true, NULL), OK);
    assert_true(s_wait_copy("routing", "partner-ngo-3", true) >= 0);
    usleep(500 * 1000);
    nrm_client_t *old[2] = {harness_client_new(h, "intake", 0, "partner-ngo-3-old"),
                            harness_client_new(h, "routing", 0, "partner-ngo-3-old")};
    Nrm__V1__ListReferrals list = NRM__V1__LIST_REFERRALS__INIT;
    Nrm__V1__Request req = NRM__V1__REQUEST__INIT;
    scenario_request(&req, B(LIST_REFERRALS), &list);
    req.agency_id = "partner-ngo-3";
    nrm_error_t err;
    Nrm__V1__Reply *reply = nrm_client_call(old[1], &req, HARNESS_TIMEOUT_MS, &err);
    assert_non_null(reply);
    assert_int_equal(reply->status, OK);
    nrm__v1__reply__free_unpacked(reply, NULL);
    assert_int_equal(s_upsert_as("coordinator", "partner-ngo-3", NGO, keys, 1, true, NULL), OK);
    /* intake at once, routing within the bound, on the connections already open */
    Nrm__V1__GetCase get = NRM__V1__GET_CASE__INIT;
    get.case_id = "none";
    Nrm__V1__Request at_intake = NRM__V1__REQUEST__INIT;
    scenario_request(&at_intake, B(GET_CASE), &get);
    at_intake.agency_id = "partner-ngo-3";
    reply = nrm_client_call(old[0], &at_intake, HARNESS_TIMEOUT_MS, &err);
    assert_non_null(reply);
    assert_int_equal(reply->status, UNAUTHENTICATED);
    nrm__v1__reply__free_unpacked(reply, NULL);
    int64_t start = nrm_mono_ms();
    Nrm__V1__Status st = OK;
    while (st != UNAUTHENTICATED && nrm_mono_ms() - start < REFUSED_WITHIN_MS) {
        scenario_request(&req, B(LIST_REFERRALS), &list);
        req.agency_id = "partner-ngo-3";
        reply = nrm_client_call(old[1], &req, HARNESS_TIMEOUT_MS, &err);
        assert_non_null(reply);
        st = reply->status;
        nrm__v1__reply__free_unpacked(reply, NULL);
        if (st != UNAUTHENTICATED)
            usleep(POLL_MS * 1000);
    }
    printf("directory: a removed key refused by routing %lld ms after the change\n",
           (long long)(nrm_mono_ms() - start));
    assert_int_equal(st, UNAUTHENTICATED);
    assert_int_equal(s_probe("routing", "partner-ngo-3", NULL), OK); /* the key it kept */
    nrm_client_destroy(&old[0]);
    nrm_client_destroy(&old[1]);
}

static void test_only_the_coordinator_registers_an_agency(void **state)
{
    char before[64], after[64], field[FIELD_MAX];
    s_intake_directory(before, sizeof before);
    const char *key = harness_public_key(h, "partner-ngo-9");
    assert_int_equal(s_upsert_as("ngo-ma-07", "partner-ngo-9", NGO, &key, 1, true, field), DENIED);
    assert_string_equal(field, "upsert_agency");
    Nrm__V1__ListAgencies l = NRM__V1__LIST_AGENCIES__INIT;
    Nrm__V1__Request req = NRM__V1__REQUEST__INIT;
    scenario_request(&req, B(LIST_AGENCIES), &l);
    Nrm__V1__Reply *reply = harness_call(h, "intake", "police-ma-04", &req);
    assert_non_null(reply);
    assert_int_equal(reply->status, DENIED);
    nrm__v1__reply__free_unpacked(reply, NULL);
    s_intake_directory(after, sizeof after);
    assert_string_equal(before, after);
}

static void test_a_bad_entry_is_refused_with_its_field_and_changes_nothing(void **state)
{
    char before[64], after[64], field[FIELD_MAX];
    s_intake_directory(before, sizeof before);
    const char *good = harness_public_key(h, "partner-ngo-8");
    const char *bad_key[] = {good, "not-a-z85-key"};
    assert_int_equal(s_upsert_as("coordinator", "partner-ngo-8", NGO, bad_key, 2, true, field),
                     INVALID);
    assert_string_equal(field, "upsert_agency.public_keys[1]");
    assert_int_equal(s_upsert_as("coordinator", "partner-ngo-8", 99, &good, 1, true, field),
                     INVALID);
    assert_string_equal(field, "upsert_agency.type");
    assert_int_equal(s_upsert_as("coordinator", "partner-ngo-8", 0, &good, 1, true, field),
                     INVALID);
    assert_string_equal(field, "upsert_agency.type");
    assert_int_equal(s_upsert_as("coordinator", "", NGO, &good, 1, true, field), INVALID);
    assert_string_equal(field, "upsert_agency.agency_id");
    assert_int_equal(s_upsert_as("coordinator", "service:routing", NGO, &good, 1, true, field),
                     INVALID);
    assert_string_equal(field, "upsert_agency.agency_id");
    /* the configuration file's agencies are changed there; another's key is not taken */
    assert_int_equal(s_upsert_as("coordinator", "ngo-ma-07", NGO, &good, 1, true, field),
                     PRECONDITION);
    assert_string_equal(field, "upsert_agency.agency_id");
    const char *taken = harness_public_key(h, "police-ma-04");
    assert_int_equal(s_upsert_as("coordinator", "partner-ngo-8", NGO, &taken, 1, true, field),
                     CONFLICT);
    assert_string_equal(field, "upsert_agency.public_keys[0]");
    s_intake_directory(after, sizeof after);
    assert_string_equal(before, after);
}

static void test_the_coordinator_lists_the_file_and_the_directory_agencies(void **state)
{
    s_register("partner-ngo-5", true);
    Nrm__V1__ListAgencies l = NRM__V1__LIST_AGENCIES__INIT;
    Nrm__V1__Request req = NRM__V1__REQUEST__INIT;
    scenario_request(&req, B(LIST_AGENCIES), &l);
    Nrm__V1__Reply *reply = harness_call(h, "intake", "coordinator", &req);
    assert_non_null(reply);
    assert_int_equal(reply->status, OK);
    bool file = false, runtime = false;
    for (size_t i = 0; i < reply->agency_list->n_agencies; i++) {
        const Nrm__V1__Agency *a = reply->agency_list->agencies[i];
        if (strcmp(a->agency_id, "police-ma-04") == 0)
            file = strcmp(a->source, "configuration") == 0 && a->n_public_keys == 1;
        if (strcmp(a->agency_id, "partner-ngo-5") == 0)
            runtime = strcmp(a->source, "directory") == 0 && a->type == NGO && a->active &&
                      a->n_public_keys == 1 &&
                      strcmp(a->public_keys[0], harness_public_key(h, "partner-ngo-5")) == 0;
    }
    nrm__v1__reply__free_unpacked(reply, NULL);
    assert_true(file);
    assert_true(runtime);
}

static void test_a_restarted_service_keeps_the_run_time_agencies_without_the_registrar(void **state)
{
    s_register("partner-ngo-4", true);
    assert_true(s_wait_copy("routing", "partner-ngo-4", true) >= 0);
    assert_true(s_wait_copy("shelter", "partner-ngo-4", true) >= 0);
    assert_int_equal(harness_signal(h, "intake", 0, SIGTERM), 0);
    assert_int_equal(harness_signal(h, "routing", 0, SIGTERM), 0);
    assert_int_equal(harness_start(h, "routing", 0), 0);
    assert_int_equal(s_probe("routing", "partner-ngo-4", NULL), OK);
    assert_int_equal(harness_start(h, "intake", 0), 0);
    assert_int_equal(s_report("partner-ngo-4", "Directory Person Dalia", NULL), OK);
    /* the deactivated one stays refused after the restart: a new connection with its key gets
     * no session at all */
    nrm_client_t *revoked = harness_client_new(h, "routing", 0, "partner-ngo-2");
    Nrm__V1__Ping ping = NRM__V1__PING__INIT;
    Nrm__V1__Request req = NRM__V1__REQUEST__INIT;
    scenario_request(&req, B(PING), &ping);
    nrm_error_t err;
    Nrm__V1__Reply *reply = nrm_client_call(revoked, &req, SILENCE_MS, &err);
    if (reply)
        nrm__v1__reply__free_unpacked(reply, NULL);
    assert_null(reply);
    assert_true(harness_log_contains(h, "routing", 0, "unknown key"));
    nrm_client_destroy(&revoked);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(
            test_a_partner_registered_at_run_time_reports_at_once_and_manages_its_case_everywhere),
        cmocka_unit_test(
            test_a_deactivated_partner_is_refused_by_every_service_on_its_open_connections),
        cmocka_unit_test(
            test_a_key_removed_from_a_partner_is_refused_while_its_other_key_still_works),
        cmocka_unit_test(test_only_the_coordinator_registers_an_agency),
        cmocka_unit_test(test_a_bad_entry_is_refused_with_its_field_and_changes_nothing),
        cmocka_unit_test(test_the_coordinator_lists_the_file_and_the_directory_agencies),
        cmocka_unit_test(
            test_a_restarted_service_keeps_the_run_time_agencies_without_the_registrar),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
