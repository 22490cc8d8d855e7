/* Unit tests of nrm_authz: every request has a rule, the document shows the table as it is,
 * service identities only ping and fetch, event readers follow the configuration, and the
 * server's check before any handler refuses what no relation could allow. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "nrm_authz.h"

#define PATH_MAX_LEN 512

static const char s_agencies[] =
    "\"services\": {\"intake\": {}, \"routing\": {}},"
    " \"agencies\": [{\"id\": \"coordinator\", \"type\": \"COORDINATOR\"},"
    " {\"id\": \"ngo-a\", \"type\": \"NGO\"}, {\"id\": \"iom\", \"type\": "
    "\"INTERNATIONAL_ORGANISATION\"},"
    " {\"id\": \"police\", \"type\": \"LAW_ENFORCEMENT\"}]";

/* Loads a configuration of the agencies above plus extra (JSON members, may be ""). Caller
 * destroys. */
static nrm_config_t *s_config(const char *extra)
{
    char path[] = "/tmp/nrm-test-authz-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    FILE *f = fdopen(fd, "w");
    fprintf(f, "{%s%s%s}", s_agencies, extra[0] ? ", " : "", extra);
    assert_int_equal(fclose(f), 0);
    nrm_error_t err;
    nrm_config_t *config = nrm_config_load(path, &err);
    unlink(path);
    if (!config)
        fail_msg("configuration did not load: %s", err.message);
    return config;
}

/* The text of a file (caller frees). */
static char *s_read(const char *path)
{
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    char *text = NULL;
    size_t len = 0;
    FILE *mem = open_memstream(&text, &len);
    char buf[4096];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, f)) > 0)
        fwrite(buf, 1, n, mem);
    fclose(f);
    fclose(mem);
    return text;
}

static void test_every_request_of_the_contract_has_a_rule(void **state)
{
    const ProtobufCFieldDescriptor *fields = nrm__v1__request__descriptor.fields;
    for (unsigned i = 0; i < nrm__v1__request__descriptor.n_fields; i++) {
        if (fields[i].type != PROTOBUF_C_TYPE_MESSAGE)
            continue; /* request_id, agency_id: every message field is a body */
        if (!nrm_authz_rule((Nrm__V1__Request__BodyCase)fields[i].id))
            fail_msg("request %s has no rule in nrm_authz", fields[i].name);
    }
}

static void test_operations_md_shows_the_matrix_of_the_code(void **state)
{
    char path[PATH_MAX_LEN];
    snprintf(path, sizeof path, "%s/deploy/OPERATIONS.md", getenv("NRM_SOURCE_DIR"));
    char *doc = s_read(path);
    char *begin = strstr(doc, NRM_AUTHZ_DOC_BEGIN);
    assert_non_null(begin);
    begin += strlen(NRM_AUTHZ_DOC_BEGIN) + 1;
    char *end = strstr(begin, NRM_AUTHZ_DOC_END);
    assert_non_null(end);
    *end = '\0';
    char *generated = NULL;
    size_t len = 0;
    FILE *mem = open_memstream(&generated, &len);
    nrm_authz_markdown(mem);
    fclose(mem);
    if (strcmp(begin, generated) != 0)
        fail_msg(
            "deploy/OPERATIONS.md differs from nrm_authz.c: run "
            "build/tools/authz/nrm-authz-doc deploy/OPERATIONS.md\n--- document\n%s--- code\n%s",
            begin, generated);
    free(generated);
    free(doc);
}

static void test_a_service_identity_may_only_ping_and_fetch(void **state)
{
    nrm_config_t *config = s_config("");
    const char *type = nrm_authz_sender_type(config, "service:routing");
    assert_string_equal(type, NRM_AUTHZ_SERVICE_TYPE);
    size_t n = 0;
    const nrm_authz_rule_t *rules = nrm_authz_rules(&n);
    for (size_t i = 0; i < n; i++) {
        nrm_error_t err;
        nrm_error_clear(&err);
        nrm_status_t st = nrm_authz_precheck(config, rules[i].body, "service:routing", type, &err);
        bool service_request = rules[i].body == NRM__V1__REQUEST__BODY_PING ||
                               rules[i].body == NRM__V1__REQUEST__BODY_FETCH;
        assert_int_equal(st, service_request ? NRM_OK : NRM_PERMISSION_DENIED);
        if (!service_request)
            assert_string_equal(err.field, nrm_authz_body_name(rules[i].body));
    }
    nrm_config_destroy(&config);
}

static void test_an_unknown_service_name_is_no_service(void **state)
{
    nrm_config_t *config = s_config("");
    assert_null(nrm_authz_sender_type(config, "service:stats"));
    assert_null(nrm_authz_sender_type(config, "service:"));
    assert_false(nrm_authz_event_reader(config, "service:stats", NRM_AUTHZ_SERVICE_TYPE));
    nrm_config_destroy(&config);
}

static void test_event_readers_default_to_services_and_coordinators(void **state)
{
    nrm_config_t *config = s_config("");
    assert_true(nrm_authz_event_reader(config, "service:intake", "SERVICE"));
    assert_true(nrm_authz_event_reader(config, "coordinator", "COORDINATOR"));
    assert_false(nrm_authz_event_reader(config, "ngo-a", "NGO"));
    assert_false(nrm_authz_event_reader(config, "nobody", "COORDINATOR"));
    nrm_config_destroy(&config);
}

static void test_event_readers_follow_security_event_readers(void **state)
{
    nrm_config_t *config =
        s_config("\"security\": {\"event_readers\": {\"agency_types\":"
                 " [\"INTERNATIONAL_ORGANISATION\"], \"agency_ids\": [\"ngo-a\"]}}");
    assert_true(nrm_authz_event_reader(config, "iom", "INTERNATIONAL_ORGANISATION"));
    assert_true(nrm_authz_event_reader(config, "ngo-a", "NGO"));
    assert_false(nrm_authz_event_reader(config, "coordinator", "COORDINATOR"));
    assert_false(nrm_authz_event_reader(config, "police", "LAW_ENFORCEMENT"));
    assert_true(nrm_authz_event_reader(config, "service:routing", "SERVICE"));
    nrm_error_t err;
    nrm_error_clear(&err);
    assert_int_equal(
        nrm_authz_precheck(config, NRM__V1__REQUEST__BODY_FETCH, "police", "LAW_ENFORCEMENT", &err),
        NRM_PERMISSION_DENIED);
    assert_string_equal(err.field, "fetch");
    assert_int_equal(nrm_authz_precheck(config, NRM__V1__REQUEST__BODY_FETCH, "ngo-a", "NGO", &err),
                     NRM_OK);
    nrm_config_destroy(&config);
}

static void test_the_server_leaves_object_requests_to_the_handler(void **state)
{
    nrm_config_t *config = s_config("");
    nrm_error_t err;
    nrm_error_clear(&err);
    /* an NGO may be the case manager of some case: its handler decides */
    assert_int_equal(
        nrm_authz_precheck(config, NRM__V1__REQUEST__BODY_CLOSE_CASE, "ngo-a", "NGO", &err),
        NRM_OK);
    /* but no relation makes it a coordinator */
    assert_int_equal(
        nrm_authz_precheck(config, NRM__V1__REQUEST__BODY_REASSIGN_CASE, "ngo-a", "NGO", &err),
        NRM_PERMISSION_DENIED);
    assert_string_equal(err.field, "reassign_case");
    assert_null(strstr(err.message, "ngo-a")); /* roles only, never who */
    assert_int_equal(nrm_authz_precheck(config, NRM__V1__REQUEST__BODY_REASSIGN_CASE, "coordinator",
                                        "COORDINATOR", &err),
                     NRM_OK);
    nrm_config_destroy(&config);
}

static void test_a_relation_counts_only_where_the_rule_names_it(void **state)
{
    const nrm_authz_rule_t *close = nrm_authz_rule(NRM__V1__REQUEST__BODY_CLOSE_CASE);
    unsigned agency = NRM_ROLE_ANYONE | NRM_ROLE_ANY_AGENCY;
    assert_true(nrm_authz_allows(close, agency | NRM_ROLE_CASE_MANAGER, "NGO"));
    assert_false(nrm_authz_allows(close, agency | NRM_ROLE_REPORTER, "NGO"));
    assert_false(nrm_authz_allows(close, agency | NRM_ROLE_REFERRED_PROVIDER, "NGO"));
    assert_false(nrm_authz_allows(NULL, ~0u, "COORDINATOR")); /* no rule: nobody */
}

static void test_agency_type_cells_admit_agencies_of_those_types_only(void **state)
{
    static const char *const types[] = {"HOTLINE", "NGO", NULL};
    nrm_authz_rule_t rule = {
        NRM__V1__REQUEST__BODY_SUBMIT_REPORT, "intake", NULL, NRM_ROLE_COORDINATOR, types, ""};
    unsigned agency = NRM_ROLE_ANYONE | NRM_ROLE_ANY_AGENCY;
    assert_true(nrm_authz_allows(&rule, agency, "NGO"));
    assert_false(nrm_authz_allows(&rule, agency, "LAW_ENFORCEMENT"));
    assert_false(nrm_authz_allows(&rule, NRM_ROLE_ANYONE | NRM_ROLE_SERVICE, "NGO"));
}

static void test_status_deciders_are_the_agency_types_the_configuration_names(void **state)
{
    nrm_error_t err;
    nrm_error_clear(&err);
    const Nrm__V1__Request__BodyCase decide = NRM__V1__REQUEST__BODY_DECIDE_STATUS;
    nrm_config_t *config = s_config("");
    assert_int_equal(nrm_authz_precheck(config, decide, "police", "LAW_ENFORCEMENT", &err), NRM_OK);
    assert_int_equal(nrm_authz_precheck(config, decide, "coordinator", "COORDINATOR", &err),
                     NRM_OK);
    assert_int_equal(nrm_authz_precheck(config, decide, "ngo-a", "NGO", &err),
                     NRM_PERMISSION_DENIED);
    assert_string_equal(err.field, "decide_status");
    assert_non_null(strstr(err.message, NRM_AUTHZ_STATUS_DECIDERS));
    nrm_config_destroy(&config);
    config = s_config("\"intake\": {\"status_deciders\": [\"INTERNATIONAL_ORGANISATION\"]}");
    assert_int_equal(nrm_authz_precheck(config, decide, "iom", "INTERNATIONAL_ORGANISATION", &err),
                     NRM_OK);
    assert_int_equal(nrm_authz_precheck(config, decide, "police", "LAW_ENFORCEMENT", &err),
                     NRM_PERMISSION_DENIED);
    assert_int_equal(nrm_authz_precheck(config, decide, "coordinator", "COORDINATOR", &err),
                     NRM_PERMISSION_DENIED);
    nrm_config_destroy(&config);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_request_of_the_contract_has_a_rule),
        cmocka_unit_test(test_operations_md_shows_the_matrix_of_the_code),
        cmocka_unit_test(test_a_service_identity_may_only_ping_and_fetch),
        cmocka_unit_test(test_an_unknown_service_name_is_no_service),
        cmocka_unit_test(test_event_readers_default_to_services_and_coordinators),
        cmocka_unit_test(test_event_readers_follow_security_event_readers),
        cmocka_unit_test(test_the_server_leaves_object_requests_to_the_handler),
        cmocka_unit_test(test_a_relation_counts_only_where_the_rule_names_it),
        cmocka_unit_test(test_agency_type_cells_admit_agencies_of_those_types_only),
        cmocka_unit_test(test_status_deciders_are_the_agency_types_the_configuration_names),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
