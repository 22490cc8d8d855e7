/* Unit tests of nrm_config: loading, dotted paths, environment overrides, included data files,
 * regions and agencies. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "nrm_config.h"

#define PATH_MAX_LEN 512
#define DEFAULT_INT 77

static char s_dir[] = "/tmp/nrm-test-config-XXXXXX";

/* Writes into path the name of file name inside the test directory; returns path. */
static char *s_path(char *path, const char *name)
{
    snprintf(path, PATH_MAX_LEN, "%s/%s", s_dir, name);
    return path;
}

/* Writes text to the file called name in the test directory; returns its path in path. */
static char *s_write(char *path, const char *name, const char *text)
{
    FILE *f = fopen(s_path(path, name), "w");
    assert_non_null(f);
    assert_true(fputs(text, f) >= 0);
    assert_int_equal(fclose(f), 0);
    return path;
}

/* Writes text as file name and loads it; fails the test unless it loads. */
static nrm_config_t *s_load_text(const char *name, const char *text)
{
    char path[PATH_MAX_LEN];
    nrm_error_t err;
    nrm_config_t *config = nrm_config_load(s_write(path, name, text), &err);
    if (!config)
        fail_msg("%s did not load: %s", name, err.message);
    return config;
}

/* Writes text as file name and asserts that loading it fails; returns the error. */
static nrm_error_t s_refused(const char *name, const char *text)
{
    char path[PATH_MAX_LEN];
    nrm_error_t err;
    nrm_error_clear(&err);
    assert_null(nrm_config_load(s_write(path, name, text), &err));
    assert_int_equal(err.status, NRM_FAILED_PRECONDITION);
    return err;
}

static int s_setup(void **state)
{
    (void)state;
    if (!mkdtemp(s_dir))
        return -1;
    char path[PATH_MAX_LEN];
    return mkdir(s_path(path, "data"), 0700);
}

/* Removes the files of directory dir, then dir. */
static int s_remove_dir(const char *dir)
{
    char path[PATH_MAX_LEN * 2];
    DIR *d = opendir(dir);
    for (struct dirent *e; d && (e = readdir(d));) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        if (unlink(path) != 0)
            s_remove_dir(path);
    }
    if (d)
        closedir(d);
    return rmdir(dir);
}

static int s_teardown(void **state)
{
    (void)state;
    return s_remove_dir(s_dir);
}

/* Unsets the variables the environment tests set, so that a failure does not leak into others. */
static int s_clear_env(void **state)
{
    (void)state;
    static const char *const names[] = {"NRM_SERVICES_INTAKE_API",
                                        "NRM_ROUTING_DEADLINES_ACCEPT_HOURS", "NRM_INTAKE_BATCH",
                                        "NRM_INTAKE_LIMIT"};
    for (size_t i = 0; i < sizeof names / sizeof *names; i++)
        unsetenv(names[i]);
    return 0;
}

static void test_syntax_error_is_refused_naming_the_line(void **state)
{
    (void)state;
    nrm_error_t err = s_refused("syntax.json", "{\n  \"a\": 1,\n  \"b\": ,\n  \"c\": 3\n}\n");
    assert_string_equal(err.field, "config");
    assert_non_null(strstr(err.message, "line 3"));
    assert_non_null(strstr(err.message, "syntax.json"));
}

static void test_non_object_and_missing_files_are_refused(void **state)
{
    (void)state;
    nrm_error_t err = s_refused("array.json", "[1, 2, 3]\n");
    assert_non_null(strstr(err.message, "not an object"));
    s_refused("string.json", "\"services\"\n");
    s_refused("duplicate.json", "{\"a\": 1, \"a\": 2}\n");
    char path[PATH_MAX_LEN];
    nrm_error_clear(&err);
    assert_null(nrm_config_load(s_path(path, "absent.json"), &err));
    assert_int_equal(err.status, NRM_FAILED_PRECONDITION);
}

static void test_dotted_path_lookup(void **state)
{
    (void)state;
    nrm_config_t *c =
        s_load_text("paths.json", "{\"services\": {\"intake\": {\"api\": \"tcp://a:1\","
                                  " \"batch\": 32}}, \"name\": \"nrm\", \"ratio\": 1.5}");
    assert_string_equal(nrm_config_string(c, "services.intake.api", "dflt"), "tcp://a:1");
    assert_string_equal(nrm_config_string(c, "name", "dflt"), "nrm");
    assert_int_equal(nrm_config_int(c, "services.intake.batch", DEFAULT_INT), 32);
    /* absent, of another type, or below a scalar: the default */
    assert_string_equal(nrm_config_string(c, "services.intake.events", "dflt"), "dflt");
    assert_null(nrm_config_string(c, "services.intake.batch", NULL));
    assert_int_equal(nrm_config_int(c, "services.intake.api", DEFAULT_INT), DEFAULT_INT);
    assert_int_equal(nrm_config_int(c, "ratio", DEFAULT_INT), DEFAULT_INT);
    assert_null(nrm_config_get(c, "name.more"));
    assert_null(nrm_config_get(c, "services.routing"));
    assert_true(json_is_object(nrm_config_get(c, "services.intake")));
    assert_int_equal(json_integer_value(nrm_config_get(c, "services.intake.batch")), 32);
    assert_non_null(strstr(nrm_config_path(c), "paths.json"));
    nrm_config_destroy(&c);
    assert_null(c);
    nrm_config_destroy(&c);
}

static void test_environment_overrides_strings(void **state)
{
    (void)state;
    nrm_config_t *c =
        s_load_text("env.json", "{\"services\": {\"intake\": {\"api\": \"tcp://a:1\"}}}");
    setenv("NRM_SERVICES_INTAKE_API", "tcp://env:2", 1);
    setenv("NRM_ROUTING_DEADLINES_ACCEPT_HOURS", "12", 1);
    const char *first = nrm_config_string(c, "services.intake.api", "dflt");
    assert_string_equal(first, "tcp://env:2");
    /* every character other than a letter or digit becomes '_'; absent paths are overridden */
    assert_string_equal(nrm_config_string(c, "routing.deadlines.accept-hours", "dflt"), "12");
    /* nrm_config_get is the file's value */
    assert_string_equal(json_string_value(nrm_config_get(c, "services.intake.api")), "tcp://a:1");
    /* a pointer handed out lives as long as the configuration, even when asked again */
    const char *second = nrm_config_string(c, "services.intake.api", "dflt");
    setenv("NRM_SERVICES_INTAKE_API", "tcp://env:3", 1);
    const char *third = nrm_config_string(c, "services.intake.api", "dflt");
    assert_string_equal(first, "tcp://env:2");
    assert_string_equal(second, "tcp://env:2");
    assert_string_equal(third, "tcp://env:3");
    unsetenv("NRM_SERVICES_INTAKE_API");
    unsetenv("NRM_ROUTING_DEADLINES_ACCEPT_HOURS");
    assert_string_equal(nrm_config_string(c, "services.intake.api", "dflt"), "tcp://a:1");
    assert_string_equal(first, "tcp://env:2");
    nrm_config_destroy(&c);
}

static void test_environment_overrides_integers(void **state)
{
    (void)state;
    nrm_config_t *c = s_load_text("envint.json", "{\"intake\": {\"batch\": 32}}");
    setenv("NRM_INTAKE_BATCH", "64", 1);
    assert_int_equal(nrm_config_int(c, "intake.batch", DEFAULT_INT), 64);
    setenv("NRM_INTAKE_BATCH", "-5", 1);
    assert_int_equal(nrm_config_int(c, "intake.batch", DEFAULT_INT), -5);
    setenv("NRM_INTAKE_LIMIT", "9000000000", 1);
    assert_int_equal(nrm_config_int(c, "intake.limit", DEFAULT_INT), 9000000000LL);
    unsetenv("NRM_INTAKE_BATCH");
    unsetenv("NRM_INTAKE_LIMIT");
    assert_int_equal(nrm_config_int(c, "intake.batch", DEFAULT_INT), 32);
    nrm_config_destroy(&c);
}

static void test_invalid_integer_override_falls_back_to_the_default(void **state)
{
    (void)state;
    nrm_config_t *c = s_load_text("envbad.json", "{\"intake\": {\"batch\": 32}}");
    static const char *const bad[] = {
        "", "abc", "12abc", "1.5", "99999999999999999999", "-99999999999999999999"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        setenv("NRM_INTAKE_BATCH", bad[i], 1);
        assert_int_equal(nrm_config_int(c, "intake.batch", DEFAULT_INT), DEFAULT_INT);
    }
    unsetenv("NRM_INTAKE_BATCH");
    nrm_config_destroy(&c);
}

static void test_includes_merge_objects_and_concatenate_arrays(void **state)
{
    (void)state;
    char path[PATH_MAX_LEN];
    s_write(path, "data/a.json",
            "{\"services\": {\"routing\": {\"api\": \"tcp://r:1\"}},"
            " \"agencies\": [{\"id\": \"ngo-1\", \"type\": \"NGO\"}]}");
    s_write(path, "data/b.json",
            "{\"agencies\": [{\"id\": \"police-1\", \"type\": \"POLICE\"}],"
            " \"regions\": [{\"code\": \"MA-04\"}]}");
    nrm_config_t *c =
        s_load_text("data/main.json", "{\"include\": [\"a.json\", \"b.json\"],"
                                      " \"services\": {\"intake\": {\"api\": \"tcp://i:1\"}},"
                                      " \"agencies\": [{\"id\": \"coordinator\"}]}");
    assert_string_equal(nrm_config_string(c, "services.intake.api", NULL), "tcp://i:1");
    assert_string_equal(nrm_config_string(c, "services.routing.api", NULL), "tcp://r:1");
    json_t *agencies = nrm_config_get(c, "agencies");
    assert_int_equal(json_array_size(agencies), 3);
    const char *order[] = {"coordinator", "ngo-1", "police-1"};
    for (size_t i = 0; i < 3; i++)
        assert_string_equal(json_string_value(json_object_get(json_array_get(agencies, i), "id")),
                            order[i]);
    assert_true(nrm_config_region_known(c, "MA-04"));
    nrm_config_destroy(&c);
}

static void test_include_setting_a_scalar_twice_is_refused(void **state)
{
    (void)state;
    char path[PATH_MAX_LEN];
    s_write(path, "data/twice.json", "{\"services\": {\"intake\": {\"api\": \"tcp://other:1\"}}}");
    nrm_error_t err =
        s_refused("data/twice-main.json", "{\"include\": [\"twice.json\"],"
                                          " \"services\": {\"intake\": {\"api\": \"tcp://i:1\"}}}");
    assert_non_null(strstr(err.message, "'api' set twice"));
    /* an array against an object is as much a clash */
    s_write(path, "data/clash.json", "{\"agencies\": {\"id\": \"x\"}}");
    s_refused("data/clash-main.json", "{\"include\": [\"clash.json\"], \"agencies\": []}");
}

static void test_include_paths_are_relative_to_the_including_file(void **state)
{
    (void)state;
    char path[PATH_MAX_LEN], cwd[PATH_MAX_LEN];
    s_write(path, "data/rel.json", "{\"regions\": [{\"code\": \"MA-06\"}]}");
    s_write(path, "rel.json", "{\"regions\": [{\"code\": \"XX-99\"}]}");
    /* a file included from data/ that includes in turn resolves against data/ too */
    s_write(path, "data/nested.json", "{\"include\": [\"rel.json\"], \"x\": 1}");
    assert_non_null(getcwd(cwd, sizeof cwd));
    assert_int_equal(chdir("/"), 0);
    nrm_config_t *c = s_load_text("data/rel-main.json", "{\"include\": [\"rel.json\"]}");
    assert_true(nrm_config_region_known(c, "MA-06"));
    assert_false(nrm_config_region_known(c, "XX-99"));
    nrm_config_destroy(&c);
    c = s_load_text("nested-main.json", "{\"include\": [\"data/nested.json\"]}");
    assert_true(nrm_config_region_known(c, "MA-06"));
    assert_false(nrm_config_region_known(c, "XX-99"));
    assert_int_equal(nrm_config_int(c, "x", 0), 1);
    nrm_config_destroy(&c);
    /* an absolute path is taken as it is */
    char text[PATH_MAX_LEN * 2];
    snprintf(text, sizeof text, "{\"include\": [\"%s\"]}", s_path(path, "rel.json"));
    c = s_load_text("data/abs-main.json", text);
    assert_true(nrm_config_region_known(c, "XX-99"));
    nrm_config_destroy(&c);
    assert_int_equal(chdir(cwd), 0);
}

static void test_missing_or_broken_include_is_refused(void **state)
{
    (void)state;
    char path[PATH_MAX_LEN];
    nrm_error_t err = s_refused("missing-main.json", "{\"include\": [\"nowhere.json\"]}");
    assert_non_null(strstr(err.message, "nowhere.json"));
    s_write(path, "data/broken.json", "{\n\"a\": [1,\n");
    err = s_refused("data/broken-main.json", "{\"include\": [\"broken.json\"]}");
    assert_non_null(strstr(err.message, "broken.json"));
    s_refused("number-main.json", "{\"include\": [42]}");
}

static void test_regions_and_agencies(void **state)
{
    (void)state;
    nrm_config_t *c = s_load_text("agencies.json",
                                  "{\"regions\": [{\"code\": \"MA-04\"}, {\"code\": \"MA-06\"}],"
                                  " \"agencies\": [{\"id\": \"police-ma-04\", \"type\": \"POLICE\","
                                  " \"region\": \"MA-04\"}, {\"id\": \"untyped\"}]}");
    assert_true(nrm_config_region_known(c, "MA-04"));
    assert_true(nrm_config_region_known(c, "MA-06"));
    assert_false(nrm_config_region_known(c, "MA-05"));
    assert_false(nrm_config_region_known(c, "ma-04"));
    assert_false(nrm_config_region_known(c, ""));
    assert_false(nrm_config_region_known(c, NULL));
    json_t *agency = nrm_config_agency(c, "police-ma-04");
    assert_non_null(agency);
    assert_string_equal(json_string_value(json_object_get(agency, "region")), "MA-04");
    assert_string_equal(nrm_config_agency_type(c, "police-ma-04"), "POLICE");
    assert_non_null(nrm_config_agency(c, "untyped"));
    assert_null(nrm_config_agency_type(c, "untyped"));
    assert_null(nrm_config_agency(c, "police-ma-05"));
    assert_null(nrm_config_agency(c, NULL));
    assert_null(nrm_config_agency_type(c, "police-ma-05"));
    nrm_config_destroy(&c);
    /* without the lists nothing is known */
    c = s_load_text("empty.json", "{}");
    assert_false(nrm_config_region_known(c, "MA-04"));
    assert_null(nrm_config_agency(c, "police-ma-04"));
    nrm_config_destroy(&c);
}

static void test_run_time_agencies_are_known_after_the_file_s_which_win(void **state)
{
    (void)state;
    nrm_config_t *c = s_load_text(
        "directory.json", "{\"agencies\": [{\"id\": \"police-ma-04\", \"type\": \"POLICE\"}]}");
    assert_int_equal(nrm_config_agency_count(c), 1);
    json_t *directory =
        json_pack("[{s:s, s:s, s:s}, {s:s, s:s, s:s}]", "id", "ngo-new", "type", "NGO", "source",
                  "directory", "id", "police-ma-04", "type", "NGO", "source", "directory");
    nrm_config_set_directory(c, directory);
    assert_string_equal(nrm_config_agency_type(c, "ngo-new"), "NGO");
    assert_string_equal(nrm_config_agency_type(c, "police-ma-04"), "POLICE"); /* the file's */
    assert_non_null(nrm_config_file_agency(c, "police-ma-04"));
    assert_null(nrm_config_file_agency(c, "ngo-new"));
    assert_int_equal(nrm_config_agency_count(c), 2); /* the shadowed entry is not counted */
    assert_string_equal(json_string_value(json_object_get(nrm_config_agency_at(c, 0), "id")),
                        "police-ma-04");
    assert_string_equal(json_string_value(json_object_get(nrm_config_agency_at(c, 1), "id")),
                        "ngo-new");
    assert_null(nrm_config_agency_at(c, 2));
    nrm_config_set_directory(c, NULL);
    assert_null(nrm_config_agency(c, "ngo-new"));
    assert_int_equal(nrm_config_agency_count(c), 1);
    nrm_config_destroy(&c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_syntax_error_is_refused_naming_the_line),
        cmocka_unit_test(test_non_object_and_missing_files_are_refused),
        cmocka_unit_test(test_dotted_path_lookup),
        cmocka_unit_test_teardown(test_environment_overrides_strings, s_clear_env),
        cmocka_unit_test_teardown(test_environment_overrides_integers, s_clear_env),
        cmocka_unit_test_teardown(test_invalid_integer_override_falls_back_to_the_default,
                                  s_clear_env),
        cmocka_unit_test(test_includes_merge_objects_and_concatenate_arrays),
        cmocka_unit_test(test_include_setting_a_scalar_twice_is_refused),
        cmocka_unit_test(test_include_paths_are_relative_to_the_including_file),
        cmocka_unit_test(test_missing_or_broken_include_is_refused),
        cmocka_unit_test(test_regions_and_agencies),
        cmocka_unit_test(test_run_time_agencies_are_known_after_the_file_s_which_win),
    };
    return cmocka_run_group_tests(tests, s_setup, s_teardown);
}
