/* Erasure by crypto-shredding, data keys across keyring rotation and the upgrade from reports
 * sealed directly under the keyring, retention, and the expiry of stored replies, against a
 * real nrm-intake (restarted where the start job is under test). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "harness.h"
#include "nrm_crypto.h"
#include "routing_scenario.h"
#include "scenario.h"

#include <signal.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MANAGER "police-ma-04"
#define OK NRM__V1__STATUS__STATUS_OK
#define WAIT_MS 15000
#define SQL_MAX 4096
#define NAME_TEXT 64
#define AAD_TEXT 96
#define RETENTION_S 2
#define WINDOW_S 1

static harness_t *h;

static int setup(void **state)
{
    h = harness_new("erasure");
    harness_config_set(h, "intake.retention.erase_closed_after_s", json_integer(RETENTION_S));
    harness_config_set(h, "idempotency_window_s", json_integer(WINDOW_S));
    return harness_start(h, "intake", 0);
}

static int teardown(void **state)
{
    harness_destroy(&h);
    return 0;
}

/* The keyring the harness gave intake (caller destroys). */
static nrm_keyring_t *s_keyring(void)
{
    char path[512];
    snprintf(path, sizeof path, "%s/keys.json", harness_dir(h));
    nrm_error_t err;
    nrm_keyring_t *keys = nrm_keyring_load(path, &err);
    assert_non_null(keys);
    return keys;
}

/* Reports a new named person as MANAGER; fills name and case_id. */
static void s_report(char name[NAME_TEXT], char case_id[ROUTING_ID_TEXT])
{
    static int people;
    snprintf(name, NAME_TEXT, "Erasure Person %d Bouazza", ++people);
    scenario_report_t s;
    routing_person(&s, "MA-04", 28, NRM__V1__GENDER__GENDER_FEMALE, "CM", true);
    routing_person_named(&s, name, "1998-07-08");
    assert_int_equal(routing_submit(h, &s, MANAGER, case_id), OK);
}

/* Sends a request of body to intake as agency; returns the reply (caller frees). */
static Nrm__V1__Reply *s_call(const char *agency, Nrm__V1__Request__BodyCase body, void *msg)
{
    Nrm__V1__Request req = NRM__V1__REQUEST__INIT;
    scenario_request(&req, body, msg);
    Nrm__V1__Reply *r = harness_call(h, "intake", agency, &req);
    assert_non_null(r);
    return r;
}

/* EraseIdentity as the coordinator; returns the status. */
static Nrm__V1__Status s_erase(const char *case_id, const char *reason)
{
    Nrm__V1__EraseIdentity e = NRM__V1__ERASE_IDENTITY__INIT;
    e.case_id = (char *)case_id;
    e.reason = (char *)reason;
    Nrm__V1__Reply *r = s_call("coordinator", NRM__V1__REQUEST__BODY_ERASE_IDENTITY, &e);
    Nrm__V1__Status st = r->status;
    nrm__v1__reply__free_unpacked(r, NULL);
    return st;
}

/* GetIdentity as the case manager; returns the reply (caller frees). */
static Nrm__V1__Reply *s_identity(const char *case_id)
{
    Nrm__V1__GetIdentity g = NRM__V1__GET_IDENTITY__INIT;
    g.case_id = (char *)case_id;
    g.purpose = "case_management";
    return s_call(MANAGER, NRM__V1__REQUEST__BODY_GET_IDENTITY, &g);
}

/* Reads one bytea column (selected as hex with encode(..., 'hex')) of the first row; returns
 * malloc'd bytes (caller frees), NULL when there is no row. */
static uint8_t *s_bytes(const char *sql, size_t *len)
{
    PGresult *res = harness_sql(h, sql);
    uint8_t *out = NULL;
    if (PQntuples(res) == 1) {
        const char *hex = PQgetvalue(res, 0, 0);
        out = malloc(strlen(hex) / 2 + 1);
        sodium_hex2bin(out, strlen(hex) / 2 + 1, hex, strlen(hex), NULL, len, NULL);
    }
    PQclear(res);
    return out;
}

/* The case's data key, unwrapped with the keyring as intake does; false when it has none. */
static bool s_data_key(nrm_keyring_t *keys, const char *case_id, uint8_t key[NRM_DATA_KEY_BYTES])
{
    char sql[SQL_MAX], aad[AAD_TEXT];
    snprintf(sql, sizeof sql,
             "SELECT encode(wrapped_key, 'hex') FROM intake.case_keys WHERE case_id = '%s'",
             case_id);
    size_t len = 0;
    uint8_t *wrapped = s_bytes(sql, &len);
    if (!wrapped)
        return false;
    snprintf(sql, sizeof sql, "SELECT key_id FROM intake.case_keys WHERE case_id = '%s'", case_id);
    uint32_t key_id = (uint32_t)harness_sql_int(h, sql);
    snprintf(aad, sizeof aad, "intake.case_key:%s", case_id);
    uint8_t *plain = NULL;
    size_t plain_len = 0;
    assert_int_equal(nrm_open(keys, key_id, wrapped, len, aad, &plain, &plain_len), 0);
    assert_int_equal(plain_len, NRM_DATA_KEY_BYTES);
    memcpy(key, plain, NRM_DATA_KEY_BYTES);
    free(plain);
    free(wrapped);
    return true;
}

/* The first report's sealed person of the case (caller frees). */
static uint8_t *s_sealed_person(const char *case_id, size_t *len)
{
    char sql[SQL_MAX];
    snprintf(sql, sizeof sql,
             "SELECT encode(person_sealed, 'hex') FROM intake.reports WHERE case_id = '%s'"
             " ORDER BY report_id LIMIT 1",
             case_id);
    uint8_t *sealed = s_bytes(sql, len);
    assert_non_null(sealed);
    return sealed;
}

/* True when bytes open, with key or (key NULL) with any key of the keyring, to a PersonalData
 * naming name. */
static bool s_opens_to(nrm_keyring_t *keys, const uint8_t *key, const uint8_t *sealed, size_t len,
                       const char *case_id, const char *name)
{
    char aad[AAD_TEXT];
    snprintf(aad, sizeof aad, "intake.report:%s", case_id);
    uint8_t *plain = NULL;
    size_t plain_len = 0;
    int rc = -1;
    if (key)
        rc = nrm_open_with(key, sealed, len, aad, &plain, &plain_len);
    for (uint32_t id = 1; !key && rc != 0 && id <= nrm_keyring_active_id(keys); id++)
        rc = nrm_open(keys, id, sealed, len, aad, &plain, &plain_len);
    if (rc != 0)
        return false;
    Nrm__V1__PersonalData *p = nrm__v1__personal_data__unpack(NULL, plain_len, plain);
    bool named = p && strcmp(p->full_name, name) == 0;
    if (p)
        nrm__v1__personal_data__free_unpacked(p, NULL);
    free(plain);
    return named;
}

static void test_erasure_destroys_the_data_key_so_the_sealed_identity_cannot_be_opened(void **s)
{
    char name[NAME_TEXT], case_id[ROUTING_ID_TEXT], sql[SQL_MAX];
    s_report(name, case_id);
    nrm_keyring_t *keys = s_keyring();
    size_t len = 0;
    uint8_t *sealed = s_sealed_person(case_id, &len);
    uint8_t key[NRM_DATA_KEY_BYTES];
    /* before: the keyring opens the data key, the data key opens the identity */
    assert_true(s_data_key(keys, case_id, key));
    assert_true(s_opens_to(keys, key, sealed, len, case_id, name));
    assert_int_equal(s_erase(case_id, "subject_request"), OK);
    /* after: no data key left, the same bytes stay and nothing in the keyring opens them */
    uint8_t gone[NRM_DATA_KEY_BYTES];
    assert_false(s_data_key(keys, case_id, gone));
    size_t after_len = 0;
    uint8_t *after = s_sealed_person(case_id, &after_len);
    assert_int_equal(after_len, len);
    assert_memory_equal(after, sealed, len);
    assert_false(s_opens_to(keys, NULL, after, after_len, case_id, name));
    snprintf(sql, sizeof sql,
             "SELECT count(*) FROM intake.cases WHERE case_id = '%s' AND identity_hash IS NULL"
             " AND blocking_hash IS NULL"
             " AND identity_erased_at IS NOT NULL AND erase_reason = 'subject_request'",
             case_id);
    assert_int_equal(harness_sql_int(h, sql), 1);
    free(sealed);
    free(after);
    nrm_keyring_destroy(&keys);
}

static void test_an_erased_identity_is_not_found_and_the_categorical_record_stays(void **s)
{
    char name[NAME_TEXT], case_id[ROUTING_ID_TEXT];
    s_report(name, case_id);
    assert_int_equal(s_erase(case_id, "recorded_in_error"), OK);
    Nrm__V1__Reply *r = s_identity(case_id);
    assert_int_equal(r->status, NRM__V1__STATUS__STATUS_NOT_FOUND);
    assert_non_null(strstr(r->error_message, "erased"));
    assert_null(r->identity);
    nrm__v1__reply__free_unpacked(r, NULL);
    Nrm__V1__GetCase g = NRM__V1__GET_CASE__INIT;
    g.case_id = case_id;
    r = s_call(MANAGER, NRM__V1__REQUEST__BODY_GET_CASE, &g);
    assert_int_equal(r->status, OK);
    assert_true(r->case_view->identity_erased);
    assert_string_equal(r->case_view->region, "MA-04");
    assert_int_equal(r->case_view->report_count, 1);
    nrm__v1__reply__free_unpacked(r, NULL);
}

static void test_a_new_report_of_an_erased_person_opens_a_new_case(void **s)
{
    char name[NAME_TEXT], case_id[ROUTING_ID_TEXT], again[ROUTING_ID_TEXT];
    s_report(name, case_id);
    assert_int_equal(s_erase(case_id, "subject_request"), OK);
    scenario_report_t rep;
    routing_person(&rep, "MA-04", 28, NRM__V1__GENDER__GENDER_FEMALE, "CM", true);
    routing_person_named(&rep, name, "1998-07-08");
    assert_int_equal(routing_submit(h, &rep, "hotline-national", again), OK);
    assert_string_not_equal(again, case_id);
    Nrm__V1__Reply *r = s_identity(case_id);
    assert_int_equal(r->status, NRM__V1__STATUS__STATUS_NOT_FOUND);
    nrm__v1__reply__free_unpacked(r, NULL);
}

static void test_erasure_is_published_and_audited(void **s)
{
    char name[NAME_TEXT], case_id[ROUTING_ID_TEXT], sql[SQL_MAX];
    s_report(name, case_id);
    harness_sub_t *sub = harness_subscribe(h, "intake", 0);
    assert_int_equal(s_erase(case_id, "subject_request"), OK);
    Nrm__V1__Event *ev = harness_sub_next(sub, "case.identity_erased", WAIT_MS);
    assert_non_null(ev);
    assert_string_equal(ev->case_id, case_id);
    assert_string_equal(ev->identity_erased->reason, "subject_request");
    nrm__v1__event__free_unpacked(ev, NULL);
    harness_sub_destroy(&sub);
    snprintf(sql, sizeof sql,
             "SELECT count(*) FROM intake.audit_log WHERE kind = 'identity_erased'"
             " AND subject_id = '%s' AND agency_id = 'coordinator'",
             case_id);
    assert_int_equal(harness_sql_int(h, sql), 1);
}

static void test_erasing_twice_or_for_a_reason_that_is_no_code_is_refused(void **s)
{
    char name[NAME_TEXT], case_id[ROUTING_ID_TEXT];
    s_report(name, case_id);
    Nrm__V1__EraseIdentity e = NRM__V1__ERASE_IDENTITY__INIT;
    e.case_id = case_id;
    e.reason = "because";
    Nrm__V1__Reply *r = s_call("coordinator", NRM__V1__REQUEST__BODY_ERASE_IDENTITY, &e);
    assert_int_equal(r->status, NRM__V1__STATUS__STATUS_INVALID_ARGUMENT);
    assert_string_equal(r->error_field, "erase_identity.reason");
    nrm__v1__reply__free_unpacked(r, NULL);
    assert_int_equal(s_erase(case_id, "retention"), OK);
    assert_int_equal(s_erase(case_id, "retention"), NRM__V1__STATUS__STATUS_FAILED_PRECONDITION);
}

/* Stops intake (SIGTERM) and starts it again: its start job runs. */
static void s_restart_intake(void)
{
    assert_int_equal(harness_signal(h, "intake", 0, SIGTERM), 0);
    assert_int_equal(harness_start(h, "intake", 0), 0);
}

/* Rewrites the report of the case as intake wrote it before data keys: person and notes sealed
 * directly under the keyring's active key, and no data key for the case. */
static void s_rewrite_in_the_old_format(nrm_keyring_t *keys, const char *case_id)
{
    uint8_t key[NRM_DATA_KEY_BYTES];
    assert_true(s_data_key(keys, case_id, key));
    char aad[AAD_TEXT], sql[SQL_MAX];
    snprintf(aad, sizeof aad, "intake.report:%s", case_id);
    const char *columns[] = {"person_sealed", "notes_sealed"};
    char hex[2][1024];
    uint32_t key_id = 0;
    for (int c = 0; c < 2; c++) {
        snprintf(sql, sizeof sql,
                 "SELECT encode(%s, 'hex') FROM intake.reports WHERE case_id = '%s'", columns[c],
                 case_id);
        size_t len = 0, plain_len = 0, old_len = 0;
        uint8_t *sealed = s_bytes(sql, &len), *plain = NULL, *old = NULL;
        assert_int_equal(nrm_open_with(key, sealed, len, aad, &plain, &plain_len), 0);
        assert_int_equal(nrm_seal(keys, plain, plain_len, aad, &old, &old_len, &key_id), 0);
        assert_true(old_len * 2 < sizeof hex[c]);
        sodium_bin2hex(hex[c], sizeof hex[c], old, old_len);
        free(sealed);
        free(plain);
        free(old);
    }
    snprintf(sql, sizeof sql,
             "UPDATE intake.reports SET sealed_under = 'keyring', key_id = %u,"
             " person_sealed = '\\x%s', notes_sealed = '\\x%s' WHERE case_id = '%s';"
             " DELETE FROM intake.case_keys WHERE case_id = '%s'",
             key_id, hex[0], hex[1], case_id, case_id);
    PQclear(harness_sql(h, sql));
}

static void test_reports_sealed_under_the_keyring_move_to_a_data_key_at_start(void **s)
{
    char name[NAME_TEXT], case_id[ROUTING_ID_TEXT], sql[SQL_MAX];
    s_report(name, case_id);
    nrm_keyring_t *keys = s_keyring();
    s_rewrite_in_the_old_format(keys, case_id);
    snprintf(sql, sizeof sql,
             "SELECT count(*) FROM intake.reports WHERE case_id = '%s'"
             " AND sealed_under = 'keyring'",
             case_id);
    assert_int_equal(harness_sql_int(h, sql), 1);
    s_restart_intake();
    assert_int_equal(harness_sql_int(h, sql), 0);
    uint8_t key[NRM_DATA_KEY_BYTES];
    assert_true(s_data_key(keys, case_id, key));
    size_t len = 0;
    uint8_t *sealed = s_sealed_person(case_id, &len);
    assert_true(s_opens_to(keys, key, sealed, len, case_id, name));
    assert_false(s_opens_to(keys, NULL, sealed, len, case_id, name));
    Nrm__V1__Reply *r = s_identity(case_id);
    assert_int_equal(r->status, OK);
    assert_string_equal(r->identity->person->full_name, name);
    nrm__v1__reply__free_unpacked(r, NULL);
    /* once: a second start finds nothing to move */
    s_restart_intake();
    assert_int_equal(harness_sql_int(h, sql), 0);
    assert_true(s_data_key(keys, case_id, key));
    free(sealed);
    nrm_keyring_destroy(&keys);
}

static void test_rotating_the_keyring_wraps_the_data_keys_again_at_start(void **s)
{
    char name[NAME_TEXT], case_id[ROUTING_ID_TEXT], sql[SQL_MAX];
    s_report(name, case_id);
    size_t before_len = 0;
    uint8_t *before = s_sealed_person(case_id, &before_len);
    char path[512];
    snprintf(path, sizeof path, "%s/keys.json", harness_dir(h));
    int active = nrm_keyring_rotate(path);
    assert_true(active > 1);
    s_restart_intake();
    snprintf(sql, sizeof sql, "SELECT count(*) FROM intake.case_keys WHERE key_id <> %d", active);
    assert_int_equal(harness_sql_int(h, sql), 0);
    /* the data did not change, only the wrapping of its key */
    size_t after_len = 0;
    uint8_t *after = s_sealed_person(case_id, &after_len);
    assert_int_equal(after_len, before_len);
    assert_memory_equal(after, before, before_len);
    Nrm__V1__Reply *r = s_identity(case_id);
    assert_int_equal(r->status, OK);
    assert_string_equal(r->identity->person->full_name, name);
    nrm__v1__reply__free_unpacked(r, NULL);
    free(before);
    free(after);
}

static void test_the_identity_of_a_case_closed_longer_than_the_retention_is_erased(void **s)
{
    char name[NAME_TEXT], case_id[ROUTING_ID_TEXT], open_id[ROUTING_ID_TEXT], sql[SQL_MAX];
    s_report(name, case_id);
    s_report(name, open_id); /* a new name each time: another person, another case */
    assert_int_equal(routing_close_case(h, MANAGER, case_id, "reintegrated"), OK);
    snprintf(sql, sizeof sql,
             "SELECT count(*) FROM intake.cases WHERE case_id = '%s'"
             " AND erase_reason = 'retention'",
             case_id);
    assert_int_equal(harness_wait_sql(h, sql, 1, WAIT_MS), 1);
    snprintf(sql, sizeof sql,
             "SELECT count(*) FROM intake.audit_log WHERE kind = 'identity_erased'"
             " AND subject_id = '%s' AND agency_id = 'service:intake'",
             case_id);
    assert_int_equal(harness_sql_int(h, sql), 1);
    snprintf(sql, sizeof sql, "SELECT count(*) FROM intake.case_keys WHERE case_id IN ('%s', '%s')",
             case_id, open_id);
    assert_int_equal(harness_sql_int(h, sql), 1); /* the open case keeps its key */
}

static void test_stored_replies_older_than_the_idempotency_window_are_deleted(void **s)
{
    const char *id = "0b8e6c1d-3f2a-4d5e-9a7b-6c5d4e3f2a1b";
    scenario_report_t rep;
    routing_person(&rep, "MA-04", 44, NRM__V1__GENDER__GENDER_MALE, "CM", true);
    rep.request.request_id = (char *)id;
    Nrm__V1__Reply *r = harness_call(h, "intake", MANAGER, &rep.request);
    assert_non_null(r);
    assert_int_equal(r->status, OK);
    nrm__v1__reply__free_unpacked(r, NULL);
    char sql[SQL_MAX];
    snprintf(sql, sizeof sql, "SELECT count(*) FROM intake.requests WHERE request_id = '%s'", id);
    assert_int_equal(harness_sql_int(h, sql), 1);
    assert_int_equal(harness_wait_sql(h, sql, 0, WAIT_MS), 0);
    assert_true(harness_log_contains(h, "intake", 0, "stored replies expired"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(
            test_erasure_destroys_the_data_key_so_the_sealed_identity_cannot_be_opened),
        cmocka_unit_test(test_an_erased_identity_is_not_found_and_the_categorical_record_stays),
        cmocka_unit_test(test_a_new_report_of_an_erased_person_opens_a_new_case),
        cmocka_unit_test(test_erasure_is_published_and_audited),
        cmocka_unit_test(test_erasing_twice_or_for_a_reason_that_is_no_code_is_refused),
        cmocka_unit_test(test_reports_sealed_under_the_keyring_move_to_a_data_key_at_start),
        cmocka_unit_test(test_rotating_the_keyring_wraps_the_data_keys_again_at_start),
        cmocka_unit_test(test_the_identity_of_a_case_closed_longer_than_the_retention_is_erased),
        cmocka_unit_test(test_stored_replies_older_than_the_idempotency_window_are_deleted),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
