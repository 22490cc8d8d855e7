/* intake_names: the spellings of one name that differ by accents, composition, case, width,
 * punctuation, word order or script give one key; the similarity is 1 for equal keys, high for
 * a letter's difference, low for another name. No name is printed: only counts and scores. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "intake_names.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static intake_names_t *s_names;

static int s_setup(void **state)
{
    (void)state;
    s_names = intake_names_new();
    return s_names ? 0 : -1;
}

static int s_teardown(void **state)
{
    (void)state;
    intake_names_free(s_names);
    return 0;
}

/* Asserts that every spelling of names has the key of the first. */
static void s_same_key(const char *const *names, size_t n)
{
    char *first = intake_names_key(s_names, names[0]);
    assert_non_null(first);
    assert_true(first[0] != '\0');
    for (size_t i = 1; i < n; i++) {
        char *key = intake_names_key(s_names, names[i]);
        bool same = key && strcmp(key, first) == 0;
        free(key);
        if (!same) {
            free(first);
            fail_msg("spelling %zu of %zu has another key", i, n);
        }
    }
    free(first);
}

static void test_accents_case_order(void **state)
{
    (void)state;
    static const char *const jose[] = {
        "Jos\xc3\xa9 Mar\xc3\xad"
        "a", /* composed */
        "Jose\xcc\x81 Mari\xcc\x81"
        "a", /* decomposed */
        "jose maria",
        "MARIA JOSE",
        "Mar\xc3\xad"
        "a, Jos\xc3\xa9",
        " jos\xc3\xa9-mar\xc3\xad"
        "a ",
        "\xef\xbc\xaa\xef\xbd\x8f\xef\xbd\x93\xef\xbd\x85 maria", /* full-width "Jose" */
    };
    s_same_key(jose, sizeof jose / sizeof *jose);
    static const char *const amina[] = {
        "Amina Benali", "Am\xc3\xadna Benali", "Ami\xcc\x81na BENALI",
        "benali amina", "BENALLI Amina", /* a doubled letter is written once */
    };
    s_same_key(amina, sizeof amina / sizeof *amina);
}

static void test_scripts(void **state)
{
    (void)state;
    /* Arabic (alef with hamza, ya as long vowel, ta marbuta) and its usual Latin spelling */
    static const char *const amina[] = {
        "\xd8\xa3\xd9\x85\xd9\x8a\xd9\x86\xd8\xa9", /* أمينة */
        "Amina",
        "AM\xc3\x8dNA",
    };
    s_same_key(amina, sizeof amina / sizeof *amina);
    /* Arabic with short-vowel marks: the marks are dropped */
    static const char *const yasmin[] = {
        "\xd9\x8a\xd9\x8e\xd8\xa7\xd8\xb3\xd9\x92\xd9\x85\xd9\x90\xd9\x8a\xd9\x86", /* يَاسْمِين */
        "Yasmin",
    };
    s_same_key(yasmin, sizeof yasmin / sizeof *yasmin);
    /* Cyrillic */
    static const char *const ivan[] = {"\xd0\x98\xd0\xb2\xd0\xb0\xd0\xbd", "Ivan", "IVAN"};
    s_same_key(ivan, sizeof ivan / sizeof *ivan);
    /* the soft sign is transliterated as a prime, which does not split the word */
    static const char *const olga[] = {"\xd0\x9e\xd0\xbb\xd1\x8c\xd0\xb3\xd0\xb0", "Olga", "O'lga"};
    s_same_key(olga, sizeof olga / sizeof *olga);
}

/* Arabic spellings without the short vowels are a near match, not an equal key: documented
 * in OPERATIONS ("فاطمة" gives "fatma", which scores >= 0.9 against "fatima"). */
static void test_near_matches(void **state)
{
    (void)state;
    char *arabic = intake_names_key(s_names, "\xd9\x81\xd8\xa7\xd8\xb7\xd9\x85\xd8\xa9");
    char *latin = intake_names_key(s_names, "Fatima");
    assert_non_null(arabic);
    assert_non_null(latin);
    assert_string_equal(arabic, "fatma");
    double s = intake_names_similarity(arabic, latin);
    printf("names: an Arabic spelling against its usual Latin one: %.3f\n", s);
    assert_true(s >= 0.9 && s < 1.0);
    free(arabic);
    free(latin);
}

static void test_similarity(void **state)
{
    (void)state;
    assert_true(intake_jaro_winkler("martha", 6, "marhta", 6) > 0.96);
    assert_true(intake_jaro_winkler("martha", 6, "marhta", 6) < 0.97);
    assert_true(intake_jaro_winkler("abc", 3, "abc", 3) == 1.0);
    assert_true(intake_jaro_winkler("abc", 3, "xyz", 3) == 0.0);
    assert_true(intake_jaro_winkler("", 0, "", 0) == 1.0);
    assert_true(intake_names_similarity("amina benali", "amina benali") == 1.0);
    assert_true(intake_names_similarity("", "amina") == 0.0);
    assert_true(intake_names_similarity("amina benali", "benali amina") == 1.0);
    double near = intake_names_similarity("amina benali", "amine benali");
    double far = intake_names_similarity("amina benali", "olga petrova");
    assert_true(near > 0.9 && near < 1.0);
    assert_true(far < 0.6);
    /* numbers must be equal and are not scored */
    assert_true(intake_names_similarity("amina 1", "amina 2") == 0.0);
    assert_true(intake_names_similarity("bench person 12 1764602000123",
                                        "bench person 13 1764602000456") == 0.0);
    assert_true(intake_names_similarity("amina 2", "amina") == 0.0);
    double numbered = intake_names_similarity("2 amina benali", "2 amine benali");
    assert_true(numbered > 0.9 && numbered < 1.0);
    /* symmetric */
    assert_true(intake_names_similarity("jose lopez", "jose maria lopez") ==
                intake_names_similarity("jose maria lopez", "jose lopez"));
}

static void test_bad_input(void **state)
{
    (void)state;
    char *key = intake_names_key(s_names, "\xff\xfe not utf-8");
    assert_null(key);
    key = intake_names_key(s_names, "");
    assert_non_null(key);
    assert_string_equal(key, "");
    free(key);
    key = intake_names_key(s_names, "-- . ,");
    assert_string_equal(key, "");
    free(key);
}

/* An ASCII name is keyed without ICU: its key must be the one ICU gives. A soft hyphen (U+00AD,
 * which NFKC with case folding removes) sends the same name through ICU. Every printable
 * character and tab appear, alone and inside names, and 5,000 strings drawn from them. */
static void test_ascii_names_get_the_key_icu_gives(void **state)
{
    (void)state;
    char alphabet[97];
    size_t n = 0;
    for (int c = ' '; c <= '~'; c++)
        alphabet[n++] = (char)c;
    alphabet[n++] = '\t';
    alphabet[n] = '\0';
    unsigned seed = 14;
    size_t differ = 0, cases = 0;
    for (size_t round = 0; round < 5000 + n; round++) {
        char name[40];
        if (round < n) { /* each character inside a name, and doubled */
            snprintf(name, sizeof name, "Ab%cc%c%cD", alphabet[round], alphabet[round],
                     alphabet[round]);
        } else {
            size_t len = 1 + (size_t)(rand_r(&seed) % 24);
            for (size_t i = 0; i < len; i++)
                name[i] = alphabet[(size_t)rand_r(&seed) % n];
            name[len] = '\0';
        }
        char through_icu[48];
        snprintf(through_icu, sizeof through_icu, "%s\xc2\xad", name);
        char *fast = intake_names_key(s_names, name);
        char *icu = intake_names_key(s_names, through_icu);
        assert_non_null(fast);
        assert_non_null(icu);
        differ += strcmp(fast, icu) != 0;
        cases++;
        free(fast);
        free(icu);
    }
    printf("names: %zu ASCII names, %zu keyed otherwise than by ICU\n", cases, differ);
    assert_int_equal(differ, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_accents_case_order),
        cmocka_unit_test(test_scripts),
        cmocka_unit_test(test_near_matches),
        cmocka_unit_test(test_similarity),
        cmocka_unit_test(test_bad_input),
        cmocka_unit_test(test_ascii_names_get_the_key_icu_gives),
    };
    return cmocka_run_group_tests(tests, s_setup, s_teardown);
}
