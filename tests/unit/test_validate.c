/* Unit tests of nrm_validate: text, enums, ranges, ISO codes, dates, ages and paths. Every
 * refusal names the path it was given and never quotes the refused value. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <string.h>

#include "nrm_validate.h"

/* 2024-06-15T12:00:00Z, the clock of the date tests. */
#define NOW_MS 1718452800000LL
#define DAY_MS 86400000LL
#define FIELD "submit_report.person.name"

/* Asserts that st is an INVALID_ARGUMENT refusal naming FIELD whose message does not contain
 * value (when value is at least two characters long). */
static void s_refused(nrm_status_t st, const nrm_error_t *err, const char *value)
{
    assert_int_equal(st, NRM_INVALID_ARGUMENT);
    assert_int_equal(err->status, NRM_INVALID_ARGUMENT);
    assert_string_equal(err->field, FIELD);
    assert_true(strlen(err->message) > 0);
    if (value && strlen(value) >= 2)
        assert_null(strstr(err->message, value));
}

static void test_text_clean_accepts_utf8_tab_and_newline(void **state)
{
    (void)state;
    static const char *const good[] = {"",
                                       "plain ascii",
                                       "tab\there",
                                       "two\nlines",
                                       "caf\xC3\xA9",
                                       "\xC2\xA0nbsp",
                                       "\xE2\x82\xAC euro",
                                       "\xE0\xA0\x80",
                                       "\xED\x9F\xBF",
                                       "\xEE\x80\x80",
                                       "\xF0\x9F\x98\x80 emoji",
                                       "\xF4\x8F\xBF\xBF",
                                       "\xD8\xB9\xD8\xB1\xD8\xA8\xD9\x8A"};
    for (size_t i = 0; i < sizeof good / sizeof *good; i++)
        if (!nrm_text_clean(good[i]))
            fail_msg("good text %zu refused", i);
}

static void test_text_clean_refuses_malformed_utf8(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "\xC0\x80",             /* overlong NUL */
        "a\xC1\xBF",            /* overlong 2-byte */
        "\xE0\x80\x80",         /* overlong 3-byte */
        "\xE0\x9F\xBF",         /* overlong 3-byte, highest */
        "\xF0\x80\x80\x80",     /* overlong 4-byte */
        "\xF0\x8F\xBF\xBF",     /* overlong 4-byte, highest */
        "\xED\xA0\x80",         /* UTF-16 surrogate */
        "\xED\xBF\xBF",         /* UTF-16 surrogate */
        "\xF4\x90\x80\x80",     /* beyond U+10FFFF */
        "\xF5\x80\x80\x80",     /* lead byte never valid */
        "\xF8\x88\x80\x80\x80", /* 5-byte form */
        "\xFF",                 /* never valid */
        "\x80",                 /* lone continuation */
        "ab\xBF",               /* lone continuation after text */
        "\xC3",                 /* truncated at the end */
        "\xC3 x",               /* truncated before a space */
        "\xE2\x82",             /* truncated 3-byte */
        "\xF0\x9F\x98",         /* truncated 4-byte */
        "\xE2\x82x",            /* truncated before ascii */
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        if (nrm_text_clean(bad[i]))
            fail_msg("malformed text %zu accepted", i);
}

static void test_text_clean_refuses_control_characters(void **state)
{
    (void)state;
    static const char *const bad[] = {"\x01",    "a\rb", "bell\x07",    "esc\x1B[0m",
                                      "del\x7F", "\x1F", "nel\xC2\x85", "c1\xC2\x9F"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        if (nrm_text_clean(bad[i]))
            fail_msg("control character %zu accepted", i);
}

static void test_check_text_length_and_required(void **state)
{
    (void)state;
    nrm_error_t err;
    nrm_error_clear(&err);
    assert_int_equal(nrm_check_text(&err, FIELD, "Amina", 5, true), NRM_OK);
    assert_int_equal(nrm_check_text(&err, FIELD, "", 5, false), NRM_OK);
    assert_int_equal(nrm_check_text(&err, FIELD, NULL, 5, false), NRM_OK);
    assert_int_equal(err.status, NRM_OK);
    s_refused(nrm_check_text(&err, FIELD, "Aminaa", 5, true), &err, "Aminaa");
    /* the limit is in bytes: two two-byte characters exceed three bytes */
    s_refused(nrm_check_text(&err, FIELD, "\xC3\xA9\xC3\xA9", 3, false), &err, "\xC3\xA9");
    s_refused(nrm_check_text(&err, FIELD, "", 5, true), &err, NULL);
    s_refused(nrm_check_text(&err, FIELD, NULL, 5, true), &err, NULL);
    s_refused(nrm_check_text(&err, FIELD, "Secret\x01Name", 64, true), &err, "Secret");
    s_refused(nrm_check_text(&err, FIELD, "Secret\xC0\x80", 64, false), &err, "Secret");
    assert_null(strstr(err.message, "Name"));
    /* a NULL err is allowed */
    assert_int_equal(nrm_check_text(NULL, FIELD, NULL, 5, true), NRM_INVALID_ARGUMENT);
}

static void test_check_enum_against_descriptor(void **state)
{
    (void)state;
    const ProtobufCEnumDescriptor *d = &nrm__v1__gender__descriptor;
    nrm_error_t err;
    nrm_error_clear(&err);
    for (unsigned i = 0; i < d->n_values; i++) {
        int v = d->values[i].value;
        assert_int_equal(nrm_check_enum(&err, FIELD, d, v, true), NRM_OK);
        if (v != 0)
            assert_int_equal(nrm_check_enum(&err, FIELD, d, v, false), NRM_OK);
    }
    assert_int_equal(nrm_check_enum(&err, FIELD, d, NRM__V1__GENDER__GENDER_UNKNOWN, false),
                     NRM_OK);
    s_refused(nrm_check_enum(&err, FIELD, d, NRM__V1__GENDER__GENDER_UNSPECIFIED, false), &err,
              NULL);
    s_refused(nrm_check_enum(&err, FIELD, d, 5, true), &err, NULL);
    s_refused(nrm_check_enum(&err, FIELD, d, -1, true), &err, NULL);
    s_refused(nrm_check_enum(&err, FIELD, d, 1000, false), &err, "1000");
}

static void test_check_range_bounds(void **state)
{
    (void)state;
    nrm_error_t err;
    nrm_error_clear(&err);
    assert_int_equal(nrm_check_range(&err, FIELD, 0, 0, 120), NRM_OK);
    assert_int_equal(nrm_check_range(&err, FIELD, 120, 0, 120), NRM_OK);
    assert_int_equal(nrm_check_range(&err, FIELD, INT64_MIN, INT64_MIN, INT64_MAX), NRM_OK);
    s_refused(nrm_check_range(&err, FIELD, -1, 0, 120), &err, "-1 ");
    s_refused(nrm_check_range(&err, FIELD, 12345, 0, 120), &err, "12345");
    s_refused(nrm_check_range(&err, FIELD, 121, 0, 120), &err, "121");
}

static void test_iso_code_shapes(void **state)
{
    (void)state;
    nrm_error_t err;
    nrm_error_clear(&err);
    assert_int_equal(nrm_check_country(&err, FIELD, "MA", true), NRM_OK);
    assert_int_equal(nrm_check_country(&err, FIELD, "", false), NRM_OK);
    assert_int_equal(nrm_check_country(&err, FIELD, NULL, false), NRM_OK);
    static const char *const countries[] = {"ma", "MAR", "M1", "M", "Ma", "\xC3\x89T"};
    for (size_t i = 0; i < sizeof countries / sizeof *countries; i++)
        s_refused(nrm_check_country(&err, FIELD, countries[i], false), &err, countries[i]);
    s_refused(nrm_check_country(&err, FIELD, "", true), &err, NULL);
    s_refused(nrm_check_country(&err, FIELD, NULL, true), &err, NULL);

    assert_int_equal(nrm_check_language(&err, FIELD, "fr"), NRM_OK);
    static const char *const languages[] = {"FR", "fra", "f", "", "f1", "Fr"};
    for (size_t i = 0; i < sizeof languages / sizeof *languages; i++)
        s_refused(nrm_check_language(&err, FIELD, languages[i]), &err, languages[i]);
    s_refused(nrm_check_language(&err, FIELD, NULL), &err, NULL);

    static const char *const regions[] = {"MA-04", "MA-A", "FR-75C", "GB-ENG"};
    for (size_t i = 0; i < sizeof regions / sizeof *regions; i++)
        assert_int_equal(nrm_check_region_shape(&err, FIELD, regions[i]), NRM_OK);
    static const char *const bad_regions[] = {"XY-",   "MA04",   "ma-04", "MA-0444",
                                              "MA-4a", "M-04",   "MA_04", "MA-04 ",
                                              "",      "MAX-04", "1A-04"};
    for (size_t i = 0; i < sizeof bad_regions / sizeof *bad_regions; i++)
        s_refused(nrm_check_region_shape(&err, FIELD, bad_regions[i]), &err, bad_regions[i]);
    s_refused(nrm_check_region_shape(&err, FIELD, NULL), &err, NULL);
}

static void test_check_date_refuses_bad_shapes(void **state)
{
    (void)state;
    nrm_error_t err;
    nrm_error_clear(&err);
    static const char *const bad[] = {"1990-1-01",  "1990/01/01",  "19900101",   "1990-01-01x",
                                      "1990-01-1",  " 1990-01-01", "1990-+1-01", "1990- 1-01",
                                      "1990-01-+1", "1990-01- 1",  "+990-01-01", "1990-00-10",
                                      "1990-13-10", "1990-04-31",  "1990-01-00", "1990-01-32",
                                      "",           "abcd-ef-gh",  "1990-1a-01", "1990-02-30"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        nrm_status_t st = nrm_check_date(&err, FIELD, bad[i], NOW_MS, NULL, NULL, NULL);
        if (st != NRM_INVALID_ARGUMENT)
            fail_msg("date %s accepted", bad[i]);
        s_refused(st, &err, bad[i]);
    }
    s_refused(nrm_check_date(&err, FIELD, NULL, NOW_MS, NULL, NULL, NULL), &err, NULL);
}

static void test_check_date_february_29_only_in_leap_years(void **state)
{
    (void)state;
    nrm_error_t err;
    nrm_error_clear(&err);
    int y = 0, m = 0, d = 0;
    assert_int_equal(nrm_check_date(&err, FIELD, "2020-02-29", NOW_MS, &y, &m, &d), NRM_OK);
    assert_int_equal(y, 2020);
    assert_int_equal(m, 2);
    assert_int_equal(d, 29);
    assert_int_equal(nrm_check_date(&err, FIELD, "2000-02-29", NOW_MS, NULL, NULL, NULL), NRM_OK);
    assert_int_equal(nrm_check_date(&err, FIELD, "1996-02-29", NOW_MS, &y, NULL, NULL), NRM_OK);
    assert_int_equal(y, 1996);
    static const char *const bad[] = {"2023-02-29", "2021-02-29", "1900-02-29", "2020-02-30"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        s_refused(nrm_check_date(&err, FIELD, bad[i], NOW_MS, NULL, NULL, NULL), &err, bad[i]);
}

static void test_check_date_refuses_future_and_implausibly_old(void **state)
{
    (void)state;
    nrm_error_t err;
    nrm_error_clear(&err);
    assert_int_equal(nrm_check_date(&err, FIELD, "2024-06-15", NOW_MS, NULL, NULL, NULL), NRM_OK);
    s_refused(nrm_check_date(&err, FIELD, "2024-06-16", NOW_MS, NULL, NULL, NULL), &err, NULL);
    s_refused(nrm_check_date(&err, FIELD, "2024-07-01", NOW_MS, NULL, NULL, NULL), &err, NULL);
    s_refused(nrm_check_date(&err, FIELD, "2025-01-01", NOW_MS, NULL, NULL, NULL), &err, NULL);
    assert_non_null(strstr(err.message, "future"));
    /* no earlier than 150 years before now: the day itself is allowed, the day before not */
    assert_int_equal(nrm_check_date(&err, FIELD, "1874-06-15", NOW_MS, NULL, NULL, NULL), NRM_OK);
    s_refused(nrm_check_date(&err, FIELD, "1874-06-14", NOW_MS, NULL, NULL, NULL), &err, NULL);
    assert_non_null(strstr(err.message, "old"));
    s_refused(nrm_check_date(&err, FIELD, "1873-06-15", NOW_MS, NULL, NULL, NULL), &err, NULL);
    s_refused(nrm_check_date(&err, FIELD, "0001-01-01", NOW_MS, NULL, NULL, NULL), &err, NULL);
    /* the day of now_ms is its UTC day: one minute before midnight it is still the 15th */
    int64_t late = NOW_MS + 12 * 3600000LL - 60000;
    assert_int_equal(nrm_check_date(&err, FIELD, "2024-06-15", late, NULL, NULL, NULL), NRM_OK);
    s_refused(nrm_check_date(&err, FIELD, "2024-06-16", late, NULL, NULL, NULL), &err, NULL);
    assert_int_equal(nrm_check_date(&err, FIELD, "2024-06-16", late + 60000, NULL, NULL, NULL),
                     NRM_OK);
}

static void test_age_on_birthdays(void **state)
{
    (void)state;
    assert_int_equal(nrm_age_on(2000, 6, 15, NOW_MS), 24);
    assert_int_equal(nrm_age_on(2000, 6, 15, NOW_MS - DAY_MS), 23);
    assert_int_equal(nrm_age_on(2000, 6, 16, NOW_MS), 23);
    assert_int_equal(nrm_age_on(2000, 7, 1, NOW_MS), 23);
    assert_int_equal(nrm_age_on(2000, 5, 31, NOW_MS), 24);
    assert_int_equal(nrm_age_on(2024, 6, 15, NOW_MS), 0);
    assert_int_equal(nrm_age_on(2006, 6, 15, NOW_MS), 18);
    assert_int_equal(nrm_age_on(2006, 6, 16, NOW_MS), 17);
    /* born on February 29: a year older on March 1 of a common year */
    assert_int_equal(nrm_age_on(2000, 2, 29, 1677628799000LL), 22); /* 2023-02-28 23:59:59 */
    assert_int_equal(nrm_age_on(2000, 2, 29, 1677628800000LL), 23); /* 2023-03-01 00:00:00 */
    assert_int_equal(nrm_age_on(2000, 2, 29, 1709164800000LL), 24); /* 2024-02-29 00:00:00 */
}

static void test_path_index(void **state)
{
    (void)state;
    char buf[64];
    assert_ptr_equal(nrm_path_index(buf, sizeof buf, "upsert_shelter.languages", 1), buf);
    assert_string_equal(buf, "upsert_shelter.languages[1]");
    assert_string_equal(nrm_path_index(buf, sizeof buf, "needs", 0), "needs[0]");
    assert_string_equal(nrm_path_index(buf, sizeof buf, "a", 1234567), "a[1234567]");
    char small[6];
    assert_string_equal(nrm_path_index(small, sizeof small, "needs", 12), "needs");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_text_clean_accepts_utf8_tab_and_newline),
        cmocka_unit_test(test_text_clean_refuses_malformed_utf8),
        cmocka_unit_test(test_text_clean_refuses_control_characters),
        cmocka_unit_test(test_check_text_length_and_required),
        cmocka_unit_test(test_check_enum_against_descriptor),
        cmocka_unit_test(test_check_range_bounds),
        cmocka_unit_test(test_iso_code_shapes),
        cmocka_unit_test(test_check_date_refuses_bad_shapes),
        cmocka_unit_test(test_check_date_february_29_only_in_leap_years),
        cmocka_unit_test(test_check_date_refuses_future_and_implausibly_old),
        cmocka_unit_test(test_age_on_birthdays),
        cmocka_unit_test(test_path_index),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
