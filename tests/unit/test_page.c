/* Unit tests of nrm_page: a token names the row a page ended at and nothing else reads as one;
 * page sizes default and are bounded; refusals name the request's field. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <string.h>

#include "nrm_page.h"

#define ROW_KEY 1718452800123LL
#define ROW_ID "0b6f3c2e-5d1a-4c7e-9a0b-1c2d3e4f5a6b"

static void test_a_token_gives_back_the_row_the_page_ended_at(void **state)
{
    char token[NRM_PAGE_TOKEN_MAX];
    nrm_page_token(token, ROW_KEY, ROW_ID);
    assert_null(strstr(token, ROW_ID)); /* opaque: not the id in clear */
    nrm_error_t err;
    nrm_page_t page;
    assert_int_equal(nrm_page_from_request(&err, "list_referrals", token, 10, &page), NRM_OK);
    assert_false(page.first);
    assert_int_equal(page.after_key, ROW_KEY);
    assert_string_equal(page.after_id, ROW_ID);
    assert_int_equal(page.size, 10);
}

static void test_no_token_is_the_first_page_of_the_default_size(void **state)
{
    nrm_error_t err;
    nrm_page_t page;
    assert_int_equal(nrm_page_from_request(&err, "list_referrals", "", 0, &page), NRM_OK);
    assert_true(page.first);
    assert_int_equal(page.size, NRM_PAGE_DEFAULT);
}

static void test_a_token_no_page_wrote_is_refused_naming_the_field(void **state)
{
    const char *bad[] = {"not-a-token", "cDE6eDp5", "cDI6MTox", "////"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        nrm_error_t err;
        nrm_page_t page;
        assert_int_equal(nrm_page_from_request(&err, "list_allocations", bad[i], 0, &page),
                         NRM_INVALID_ARGUMENT);
        assert_string_equal(err.field, "list_allocations.page_token");
    }
}

static void test_a_page_size_out_of_bounds_is_refused_naming_the_field(void **state)
{
    const int32_t bad[] = {-1, NRM_PAGE_MAX + 1};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        nrm_error_t err;
        nrm_page_t page;
        assert_int_equal(nrm_page_from_request(&err, "list_referrals", "", bad[i], &page),
                         NRM_INVALID_ARGUMENT);
        assert_string_equal(err.field, "list_referrals.page_size");
    }
    nrm_error_t err;
    nrm_page_t page;
    assert_int_equal(nrm_page_from_request(&err, "list_referrals", "", NRM_PAGE_MAX, &page),
                     NRM_OK);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_a_token_gives_back_the_row_the_page_ended_at),
        cmocka_unit_test(test_no_token_is_the_first_page_of_the_default_size),
        cmocka_unit_test(test_a_token_no_page_wrote_is_refused_naming_the_field),
        cmocka_unit_test(test_a_page_size_out_of_bounds_is_refused_naming_the_field),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
