/* nrm_wipe: blocks are zeroed in full before they are freed; Jansson's frees and the allocator
 * personal data is unpacked with go through it. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "nrm/v1/intake.pb-c.h"
#include "nrm_alloc.h"
#include "nrm_wipe.h"

#include <jansson.h>
#include <malloc.h>
#include <string.h>

static void test_a_block_is_zeroed_in_full(void **state)
{
    (void)state;
    unsigned char *block = nrm_xmalloc(100);
    size_t usable = malloc_usable_size(block);
    memset(block, 0xAA, usable);
    nrm_wipe_block(block);
    for (size_t i = 0; i < usable; i++)
        assert_int_equal(block[i], 0);
    free(block);
    nrm_wipe_block(NULL); /* ignored */
}

static void test_jansson_frees_through_the_wiping_free(void **state)
{
    (void)state;
    nrm_wipe_json();
    json_malloc_t alloc = NULL;
    json_free_t release = NULL;
    json_get_alloc_funcs(&alloc, &release);
    assert_ptr_equal(release, nrm_wipe_free);
    json_t *person = json_pack("{s:s}", "fullName", "Wipe Person Zerhouni");
    assert_non_null(person);
    json_decref(person); /* through nrm_wipe_free: under the sanitizers, a mismatch would show */
}

static void test_personal_data_unpacks_and_frees_with_the_wiping_allocator(void **state)
{
    (void)state;
    Nrm__V1__PersonalData in = NRM__V1__PERSONAL_DATA__INIT;
    in.full_name = "Wipe Person Zerhouni";
    in.date_of_birth = "1990-01-02";
    uint8_t packed[128];
    size_t len = nrm__v1__personal_data__pack(&in, packed);
    Nrm__V1__PersonalData *out = nrm__v1__personal_data__unpack(&nrm_wipe_allocator, len, packed);
    assert_non_null(out);
    assert_string_equal(out->full_name, in.full_name);
    nrm__v1__personal_data__free_unpacked(out, &nrm_wipe_allocator);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_a_block_is_zeroed_in_full),
        cmocka_unit_test(test_jansson_frees_through_the_wiping_free),
        cmocka_unit_test(test_personal_data_unpacks_and_frees_with_the_wiping_allocator),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
