/* Unit tests of nrm_pgarray: every text element is quoted with its double quotes and
 * backslashes escaped (so commas, braces, white space, UTF-8 and the word NULL stay text), a NULL
 * element is the bare NULL, numbers keep every digit, and there is no length limit. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nrm_alloc.h"
#include "nrm_pgarray.h"

static void test_an_empty_array_is_two_braces(void **state)
{
    nrm_pgarray_t a;
    nrm_pgarray_init(&a);
    assert_string_equal(nrm_pgarray_close(&a), "{}");
    assert_int_equal(a.count, 0);
    nrm_pgarray_free(&a);

    nrm_pgarray_t zeroed = {0}; /* a zeroed array is an empty one */
    assert_string_equal(nrm_pgarray_close(&zeroed), "{}");
    nrm_pgarray_free(&zeroed);

    char *texts = nrm_pgarray_of_texts(NULL, 0);
    char *ints = nrm_pgarray_of_ints(NULL, 0);
    char *bools = nrm_pgarray_of_bools(NULL, 0);
    assert_string_equal(texts, "{}");
    assert_string_equal(ints, "{}");
    assert_string_equal(bools, "{}");
    free(texts);
    free(ints);
    free(bools);
}

static void test_a_null_element_is_bare_and_the_text_null_is_quoted(void **state)
{
    nrm_pgarray_t a;
    nrm_pgarray_init(&a);
    nrm_pgarray_text(&a, NULL);
    nrm_pgarray_text(&a, "NULL");
    nrm_pgarray_text(&a, "");
    nrm_pgarray_text(&a, NULL);
    assert_string_equal(nrm_pgarray_close(&a), "{NULL,\"NULL\",\"\",NULL}");
    assert_int_equal(a.count, 4);
    nrm_pgarray_free(&a);

    char *const items[] = {"a", NULL, "b"};
    char *text = nrm_pgarray_of_texts(items, 3);
    assert_string_equal(text, "{\"a\",NULL,\"b\"}");
    free(text);
}

static void test_quotes_and_backslashes_are_escaped(void **state)
{
    nrm_pgarray_t a;
    nrm_pgarray_init(&a);
    nrm_pgarray_text(&a, "say \"hi\"");
    nrm_pgarray_text(&a, "C:\\dir\\");
    nrm_pgarray_text(&a, "\\\"");
    nrm_pgarray_text(&a, "\"");
    assert_string_equal(nrm_pgarray_close(&a),
                        "{\"say \\\"hi\\\"\",\"C:\\\\dir\\\\\",\"\\\\\\\"\",\"\\\"\"}");
    nrm_pgarray_free(&a);
}

static void test_commas_braces_and_white_space_stay_inside_their_quotes(void **state)
{
    char *const items[] = {"a,b", "{c}", "}", "{", " padded ", "tab\there", "line\nbreak"};
    char *text = nrm_pgarray_of_texts(items, sizeof items / sizeof *items);
    assert_string_equal(text, "{\"a,b\",\"{c}\",\"}\",\"{\",\" padded \",\"tab\there\","
                              "\"line\nbreak\"}");
    free(text);
}

static void test_utf8_text_is_copied_byte_for_byte(void **state)
{
    const char *arabic = "\xd9\x85\xd8\xb1\xd8\xad\xd8\xa8\xd8\xa7"; /* U+0645 ... */
    const char *accents = "S\xc3\xa3o Tom\xc3\xa9 \xe2\x80\x94 \xf0\x9f\x8f\xa0";
    nrm_pgarray_t a;
    nrm_pgarray_init(&a);
    nrm_pgarray_text(&a, arabic);
    nrm_pgarray_text(&a, accents);
    char expected[128];
    snprintf(expected, sizeof expected, "{\"%s\",\"%s\"}", arabic, accents);
    assert_string_equal(nrm_pgarray_close(&a), expected);
    nrm_pgarray_free(&a);
}

static void test_numbers_keep_every_digit_and_their_sign(void **state)
{
    const int64_t items[] = {0, -1, INT64_MAX, INT64_MIN, 1718452800123LL};
    char *text = nrm_pgarray_of_ints(items, sizeof items / sizeof *items);
    assert_string_equal(text, "{\"0\",\"-1\",\"9223372036854775807\",\"-9223372036854775808\","
                              "\"1718452800123\"}");
    free(text);

    nrm_pgarray_t a;
    nrm_pgarray_init(&a);
    nrm_pgarray_int(&a, INT64_MIN);
    nrm_pgarray_text(&a, "x");
    nrm_pgarray_int(&a, INT64_MAX);
    assert_string_equal(nrm_pgarray_close(&a),
                        "{\"-9223372036854775808\",\"x\",\"9223372036854775807\"}");
    nrm_pgarray_free(&a);
}

static void test_flags_are_t_and_f(void **state)
{
    const bool items[] = {true, false, false, true};
    char *text = nrm_pgarray_of_bools(items, 4);
    assert_string_equal(text, "{\"t\",\"f\",\"f\",\"t\"}");
    free(text);
}

static void test_bytes_are_lower_case_hex_and_none_is_empty(void **state)
{
    const uint8_t bytes[] = {0x00, 0x0f, 0xa5, 0xff, 0x10};
    nrm_pgarray_t a;
    nrm_pgarray_init(&a);
    nrm_pgarray_hex(&a, bytes, sizeof bytes);
    nrm_pgarray_hex(&a, NULL, 0);
    nrm_pgarray_hex(&a, bytes + 2, 1);
    assert_string_equal(nrm_pgarray_close(&a), "{\"000fa5ff10\",\"\",\"a5\"}");
    assert_int_equal(a.count, 3);
    nrm_pgarray_free(&a);
}

static void test_many_elements_and_long_texts_have_no_limit(void **state)
{
    enum { N = 20000 };
    nrm_pgarray_t a;
    nrm_pgarray_init(&a);
    for (int i = 0; i < N; i++)
        nrm_pgarray_int(&a, i);
    const char *text = nrm_pgarray_close(&a);
    assert_int_equal(a.count, N);
    assert_int_equal(text[0], '{');
    assert_int_equal(text[strlen(text) - 1], '}');
    size_t commas = 0;
    for (const char *c = text; *c; c++)
        commas += *c == ',';
    assert_int_equal(commas, N - 1);
    assert_non_null(strstr(text, ",\"19999\"}"));
    assert_non_null(strstr(text, "{\"0\",\"1\",\"2\","));
    nrm_pgarray_free(&a);

    size_t len = 1 << 20; /* one element of a MiB of quotes: each escaped */
    char *big = nrm_xcalloc(len + 1, 1);
    memset(big, '"', len);
    nrm_pgarray_init(&a);
    nrm_pgarray_text(&a, "before");
    nrm_pgarray_text(&a, big);
    nrm_pgarray_text(&a, "after");
    text = nrm_pgarray_close(&a);
    assert_int_equal(strlen(text), strlen("{\"before\",\"\",\"after\"}") + 2 * len);
    const char *head = "{\"before\",\"\\\"\\\"";
    assert_int_equal(strncmp(text, head, strlen(head)), 0);
    assert_non_null(strstr(text, "\\\"\",\"after\"}"));
    nrm_pgarray_free(&a);
    free(big);
}

static void test_an_inner_literal_is_one_quoted_element_of_an_outer_array(void **state)
{
    /* as routing passes a case's sets ({"1","4"}) and candidate ids: one element per row, read
     * back with unnest($1::text[]) and cast with ::int[] or ::text[] */
    nrm_pgarray_t outer, inner;
    nrm_pgarray_init(&outer);
    nrm_pgarray_init(&inner);
    nrm_pgarray_int(&inner, 1);
    nrm_pgarray_int(&inner, 4);
    nrm_pgarray_text(&outer, nrm_pgarray_close(&inner));
    nrm_pgarray_free(&inner);
    nrm_pgarray_init(&inner); /* an empty set */
    nrm_pgarray_text(&outer, nrm_pgarray_close(&inner));
    nrm_pgarray_free(&inner);
    nrm_pgarray_init(&inner); /* texts with a comma, a quote and a backslash */
    nrm_pgarray_text(&inner, "a,b");
    nrm_pgarray_text(&inner, "q\"\\");
    nrm_pgarray_text(&inner, NULL);
    nrm_pgarray_text(&outer, nrm_pgarray_close(&inner));
    nrm_pgarray_free(&inner);
    assert_int_equal(outer.count, 3);
    assert_string_equal(nrm_pgarray_close(&outer),
                        "{\"{\\\"1\\\",\\\"4\\\"}\",\"{}\","
                        "\"{\\\"a,b\\\",\\\"q\\\\\\\"\\\\\\\\\\\",NULL}\"}");
    nrm_pgarray_free(&outer);
}

static void test_closing_twice_and_adding_after_closing_give_one_literal(void **state)
{
    nrm_pgarray_t a;
    nrm_pgarray_init(&a);
    nrm_pgarray_text(&a, "a");
    const char *first = nrm_pgarray_close(&a);
    assert_string_equal(first, "{\"a\"}");
    assert_string_equal(nrm_pgarray_close(&a), "{\"a\"}");
    nrm_pgarray_text(&a, "b"); /* reopens */
    assert_string_equal(nrm_pgarray_close(&a), "{\"a\",\"b\"}");
    char *taken = nrm_pgarray_take(&a);
    assert_string_equal(taken, "{\"a\",\"b\"}");
    assert_null(a.text); /* the caller owns it now */
    assert_int_equal(a.count, 0);
    nrm_pgarray_free(&a); /* safe after take */
    free(taken);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_an_empty_array_is_two_braces),
        cmocka_unit_test(test_a_null_element_is_bare_and_the_text_null_is_quoted),
        cmocka_unit_test(test_quotes_and_backslashes_are_escaped),
        cmocka_unit_test(test_commas_braces_and_white_space_stay_inside_their_quotes),
        cmocka_unit_test(test_utf8_text_is_copied_byte_for_byte),
        cmocka_unit_test(test_numbers_keep_every_digit_and_their_sign),
        cmocka_unit_test(test_flags_are_t_and_f),
        cmocka_unit_test(test_bytes_are_lower_case_hex_and_none_is_empty),
        cmocka_unit_test(test_many_elements_and_long_texts_have_no_limit),
        cmocka_unit_test(test_an_inner_literal_is_one_quoted_element_of_an_outer_array),
        cmocka_unit_test(test_closing_twice_and_adding_after_closing_give_one_literal),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
