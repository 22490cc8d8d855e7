/* Unit tests of nrm_crypto: sealing, key rotation, identity hashes, keyring files, UUIDs. */
#define _GNU_SOURCE /* strcasestr, memmem */
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
#include <sodium.h>

#include "nrm_crypto.h"

#define PATH_MAX_LEN 512
#define UUID_ROUNDS 200
#define FILE_MODE_BITS 0777

static char s_dir[] = "/tmp/nrm-test-crypto-XXXXXX";

/* Writes into path the name of file name inside the test directory; returns path. */
static char *s_path(char *path, const char *name)
{
    snprintf(path, PATH_MAX_LEN, "%s/%s", s_dir, name);
    return path;
}

/* Generates a keyring file called name and loads it; fails the test on any error. */
static nrm_keyring_t *s_fresh_keyring(const char *name)
{
    char path[PATH_MAX_LEN];
    nrm_error_t err;
    assert_int_equal(nrm_keyring_generate(s_path(path, name)), 0);
    nrm_keyring_t *ring = nrm_keyring_load(path, &err);
    assert_non_null(ring);
    return ring;
}

/* Reads the whole file at path into a malloc'd NUL-terminated buffer. */
static char *s_slurp(const char *path)
{
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    char *text = calloc(1, PATH_MAX_LEN * 4);
    assert_non_null(text);
    assert_true(fread(text, 1, PATH_MAX_LEN * 4 - 1, f) > 0);
    fclose(f);
    return text;
}

/* Creates the temporary directory all tests write into. */
static int s_setup(void **state)
{
    (void)state;
    return nrm_crypto_init() == 0 && mkdtemp(s_dir) ? 0 : -1;
}

/* Removes every file of the temporary directory, then the directory. */
static int s_teardown(void **state)
{
    (void)state;
    char path[PATH_MAX_LEN];
    DIR *dir = opendir(s_dir);
    for (struct dirent *e; dir && (e = readdir(dir));)
        if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0)
            unlink(s_path(path, e->d_name));
    if (dir)
        closedir(dir);
    return rmdir(s_dir);
}

static void test_seal_open_round_trip(void **state)
{
    (void)state;
    nrm_keyring_t *ring = s_fresh_keyring("round.json");
    const char *secret = "Amina Benali, 1990-04-01";
    uint8_t *sealed = NULL, *plain = NULL;
    size_t sealed_len = 0, plain_len = 0;
    uint32_t key_id = 0;
    assert_int_equal(nrm_keyring_active_id(ring), 1);
    assert_int_equal(
        nrm_seal(ring, secret, strlen(secret), "report:1", &sealed, &sealed_len, &key_id), 0);
    assert_int_equal(key_id, 1);
    assert_int_equal(sealed_len, crypto_aead_xchacha20poly1305_ietf_NPUBBYTES + strlen(secret) +
                                     crypto_aead_xchacha20poly1305_ietf_ABYTES);
    assert_null(memmem(sealed, sealed_len, "Amina", strlen("Amina")));
    assert_int_equal(nrm_open(ring, key_id, sealed, sealed_len, "report:1", &plain, &plain_len), 0);
    assert_int_equal(plain_len, strlen(secret));
    assert_string_equal((char *)plain, secret);
    free(plain);
    free(sealed);

    /* A NULL aad and empty plaintext work too; two seals of one text differ (random nonce). */
    uint8_t *again = NULL;
    size_t again_len = 0;
    assert_int_equal(nrm_seal(ring, "", 0, NULL, &sealed, &sealed_len, NULL), 0);
    assert_int_equal(nrm_seal(ring, "", 0, NULL, &again, &again_len, NULL), 0);
    assert_memory_not_equal(sealed, again, sealed_len);
    assert_int_equal(nrm_open(ring, 1, sealed, sealed_len, NULL, &plain, &plain_len), 0);
    assert_int_equal(plain_len, 0);
    assert_string_equal((char *)plain, "");
    free(plain);
    free(again);
    free(sealed);
    nrm_keyring_destroy(&ring);
    assert_null(ring);
    nrm_keyring_destroy(&ring);
}

static void test_open_rejects_tampering(void **state)
{
    (void)state;
    nrm_keyring_t *ring = s_fresh_keyring("tamper.json");
    uint8_t *sealed = NULL, *plain = NULL;
    size_t sealed_len = 0, plain_len = 0;
    uint32_t key_id = 0;
    assert_int_equal(
        nrm_seal(ring, "secret", strlen("secret"), "report:1", &sealed, &sealed_len, &key_id), 0);
    assert_int_equal(nrm_open(ring, key_id, sealed, sealed_len, "report:2", &plain, &plain_len),
                     -1);
    assert_int_equal(nrm_open(ring, key_id, sealed, sealed_len, NULL, &plain, &plain_len), -1);
    assert_int_equal(nrm_open(ring, 99, sealed, sealed_len, "report:1", &plain, &plain_len), -1);
    assert_int_equal(nrm_open(ring, key_id, sealed, sealed_len - 1, "report:1", &plain, &plain_len),
                     -1);
    assert_int_equal(nrm_open(ring, key_id, sealed, 1, "report:1", &plain, &plain_len), -1);
    for (size_t i = 0; i < sealed_len; i++) { /* nonce, ciphertext and tag are all bound */
        sealed[i] ^= 1;
        assert_int_equal(nrm_open(ring, key_id, sealed, sealed_len, "report:1", &plain, &plain_len),
                         -1);
        sealed[i] ^= 1;
    }
    assert_int_equal(nrm_open(ring, key_id, sealed, sealed_len, "report:1", &plain, &plain_len), 0);
    free(plain);
    free(sealed);
    nrm_keyring_destroy(&ring);
}

static void test_rotation(void **state)
{
    (void)state;
    char path[PATH_MAX_LEN];
    struct stat st;
    nrm_keyring_t *old_ring = s_fresh_keyring("rotate.json");
    uint8_t *old_sealed = NULL, *new_sealed = NULL, *plain = NULL;
    size_t old_len = 0, new_len = 0, plain_len = 0;
    uint32_t key_id = 0;
    assert_int_equal(
        nrm_seal(old_ring, "before", strlen("before"), "a", &old_sealed, &old_len, &key_id), 0);
    assert_int_equal(key_id, 1);

    assert_int_equal(nrm_keyring_rotate(s_path(path, "rotate.json")), 2);
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & FILE_MODE_BITS, 0600);
    nrm_keyring_t *ring = nrm_keyring_load(path, NULL);
    assert_non_null(ring);
    assert_int_equal(nrm_keyring_active_id(ring), 2);
    assert_int_equal(nrm_open(ring, 1, old_sealed, old_len, "a", &plain, &plain_len), 0);
    assert_string_equal((char *)plain, "before");
    free(plain);

    assert_int_equal(nrm_seal(ring, "after", strlen("after"), "a", &new_sealed, &new_len, &key_id),
                     0);
    assert_int_equal(key_id, 2);
    assert_int_equal(nrm_open(ring, 2, new_sealed, new_len, "a", &plain, &plain_len), 0);
    assert_string_equal((char *)plain, "after");
    free(plain);
    assert_int_equal(nrm_open(ring, 1, new_sealed, new_len, "a", &plain, &plain_len), -1);
    assert_int_equal(nrm_open(old_ring, 2, new_sealed, new_len, "a", &plain, &plain_len), -1);

    /* The hash key survives rotation; rotating again gives key 3. */
    char before[65], after[65];
    nrm_identity_hash(old_ring, "Amina Benali", "1990-04-01", "MA", before);
    nrm_identity_hash(ring, "Amina Benali", "1990-04-01", "MA", after);
    assert_string_equal(before, after);
    assert_int_equal(nrm_keyring_rotate(path), 3);
    assert_int_equal(nrm_keyring_rotate(s_path(path, "missing.json")), -1);
    free(old_sealed);
    free(new_sealed);
    nrm_keyring_destroy(&ring);
    nrm_keyring_destroy(&old_ring);
}

static void test_a_data_key_opens_what_it_sealed_and_nothing_else_does(void **state)
{
    uint8_t key[NRM_DATA_KEY_BYTES], other[NRM_DATA_KEY_BYTES];
    nrm_data_key_new(key);
    nrm_data_key_new(other);
    assert_memory_not_equal(key, other, NRM_DATA_KEY_BYTES);
    const char *plain = "Amina Benali, +212 600 000 111";
    uint8_t *sealed = NULL, *opened = NULL;
    size_t sealed_len = 0, opened_len = 0;
    assert_int_equal(
        nrm_seal_with(key, plain, strlen(plain), "intake.report:c1", &sealed, &sealed_len), 0);
    assert_int_equal(
        nrm_open_with(key, sealed, sealed_len, "intake.report:c1", &opened, &opened_len), 0);
    assert_int_equal(opened_len, strlen(plain));
    assert_memory_equal(opened, plain, opened_len);
    free(opened);
    opened = NULL;
    /* another key, another case's binding, or no key at all open nothing */
    assert_int_equal(
        nrm_open_with(other, sealed, sealed_len, "intake.report:c1", &opened, &opened_len), -1);
    assert_int_equal(
        nrm_open_with(key, sealed, sealed_len, "intake.report:c2", &opened, &opened_len), -1);
    assert_int_equal(nrm_open_with(NULL, sealed, sealed_len, "intake.report:c1", &opened, NULL),
                     -1);
    assert_null(opened);
    free(sealed);
}

static void test_identity_hash(void **state)
{
    (void)state;
    nrm_keyring_t *ring = s_fresh_keyring("hash.json");
    nrm_keyring_t *other = s_fresh_keyring("hash-other.json");
    char a[65], b[65], c[65];
    nrm_identity_hash(ring, "BENALI  Amina", "1990-04-01", "ma", a);
    nrm_identity_hash(ring, "amina benali", "1990-04-01", "MA", b);
    assert_string_equal(a, b);
    assert_int_equal(strlen(a), 64);
    assert_int_equal(strspn(a, "0123456789abcdef"), 64);
    assert_null(strcasestr(a, "amina"));
    assert_null(strcasestr(a, "benali"));

    nrm_identity_hash(ring, " Benali,\tAmina. ", "1990-04-01", "Ma", c);
    assert_string_equal(a, c);
    nrm_identity_hash(ring, "amina benali", "1990-04-02", "MA", c);
    assert_string_not_equal(a, c);
    nrm_identity_hash(ring, "amina benali", "1990-04-01", "DZ", c);
    assert_string_not_equal(a, c);
    nrm_identity_hash(ring, "amina benali x", "1990-04-01", "MA", c);
    assert_string_not_equal(a, c);
    nrm_identity_hash(other, "amina benali", "1990-04-01", "MA", c);
    assert_string_not_equal(a, c);

    /* Fields cannot shift into one another; NULL and empty are the same. */
    nrm_identity_hash(ring, "amina", "", "", b);
    nrm_identity_hash(ring, "", "amina", "", c);
    assert_string_not_equal(b, c);
    nrm_identity_hash(ring, NULL, NULL, NULL, b);
    nrm_identity_hash(ring, "", "", "", c);
    assert_string_equal(b, c);
    nrm_keyring_destroy(&ring);
    nrm_keyring_destroy(&other);
}

static void test_generate_refuses_overwrite(void **state)
{
    (void)state;
    char path[PATH_MAX_LEN];
    struct stat st;
    assert_int_equal(nrm_keyring_generate(s_path(path, "gen.json")), 0);
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & FILE_MODE_BITS, 0600);
    char *before = s_slurp(path);
    assert_int_equal(nrm_keyring_generate(path), -1);
    char *after = s_slurp(path);
    assert_string_equal(before, after);
    assert_int_equal(nrm_keyring_generate(s_path(path, "no/such/dir.json")), -1);
    assert_int_equal(nrm_keyring_generate(NULL), -1);
    free(before);
    free(after);
}

static void test_uuid(void **state)
{
    (void)state;
    char first[37], id[37];
    nrm_uuid_v4(first);
    for (int i = 0; i < UUID_ROUNDS; i++) {
        nrm_uuid_v4(id);
        assert_int_equal(strlen(id), 36);
        assert_true(nrm_uuid_valid(id));
        assert_int_equal(id[14], '4');
        assert_non_null(strchr("89ab", id[19]));
        assert_int_equal(strspn(id, "0123456789abcdef-"), 36);
        assert_string_not_equal(id, first);
    }
    assert_true(nrm_uuid_valid("123E4567-E89B-42D3-A456-426614174000"));
    assert_true(nrm_uuid_valid("00000000-0000-0000-0000-000000000000"));
    assert_false(nrm_uuid_valid(NULL));
    assert_false(nrm_uuid_valid(""));
    assert_false(nrm_uuid_valid("123e4567-e89b-42d3-a456-42661417400"));
    assert_false(nrm_uuid_valid("123e4567-e89b-42d3-a456-4266141740000"));
    assert_false(nrm_uuid_valid("123e4567e-89b-42d3-a456-426614174000"));
    assert_false(nrm_uuid_valid("123e4567-e89b-42d3-a456-42661417400g"));
    assert_false(nrm_uuid_valid("{23e4567-e89b-42d3-a456-42661417400}"));
    assert_false(nrm_uuid_valid("123e4567 e89b 42d3 a456 426614174000"));
}

/* Writes text into a keyring file called name and expects loading it to fail with
 * FAILED_PRECONDITION and a message that does not quote secret. */
static void s_expect_refused(const char *name, const char *text, const char *secret)
{
    char path[PATH_MAX_LEN];
    nrm_error_t err;
    FILE *f = fopen(s_path(path, name), "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
    nrm_error_clear(&err);
    assert_null(nrm_keyring_load(path, &err));
    assert_int_equal(err.status, NRM_FAILED_PRECONDITION);
    assert_true(strlen(err.message) > 0);
    assert_null(strstr(err.message, secret));
    assert_null(strstr(err.field, secret));
}

static void test_keyring_refuses_bad_files(void **state)
{
    (void)state;
    uint8_t raw[32];
    char good[sodium_base64_ENCODED_LEN(32, sodium_base64_VARIANT_ORIGINAL)];
    char shrt[sodium_base64_ENCODED_LEN(16, sodium_base64_VARIANT_ORIGINAL)];
    char text[PATH_MAX_LEN * 2];
    randombytes_buf(raw, sizeof raw);
    sodium_bin2base64(good, sizeof good, raw, 32, sodium_base64_VARIANT_ORIGINAL);
    sodium_bin2base64(shrt, sizeof shrt, raw, 16, sodium_base64_VARIANT_ORIGINAL);
    const char *shape = "{\"active\": %s, \"keys\": {\"%s\": \"%s\"}, \"hash_key\": \"%s\"}";

    /* Control: the well-formed file loads. */
    char path[PATH_MAX_LEN];
    snprintf(text, sizeof text, shape, "1", "1", good, good);
    FILE *f = fopen(s_path(path, "ok.json"), "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
    nrm_keyring_t *ring = nrm_keyring_load(path, NULL);
    assert_non_null(ring);
    nrm_keyring_destroy(&ring);

    snprintf(text, sizeof text, shape, "1", "1", shrt, good);
    s_expect_refused("short.json", text, shrt);
    snprintf(text, sizeof text, shape, "1", "1", good, shrt);
    s_expect_refused("short-hash.json", text, shrt);
    snprintf(text, sizeof text, shape, "1", "1", "!!not*base64!!", good);
    s_expect_refused("bad-b64.json", text, "base64!!");
    snprintf(text, sizeof text, shape, "2", "1", good, good);
    s_expect_refused("no-active.json", text, good);
    snprintf(text, sizeof text, shape, "\"1\"", "1", good, good);
    s_expect_refused("active-string.json", text, good);
    snprintf(text, sizeof text, shape, "1", "01", good, good);
    s_expect_refused("bad-id.json", text, good);
    snprintf(text, sizeof text, "{\"active\": 1, \"keys\": {\"1\": \"%s\"}}", good);
    s_expect_refused("no-hash.json", text, good);
    snprintf(text, sizeof text, "{\"active\": 1, \"keys\": {\"1\": \"%s\"", good);
    s_expect_refused("truncated.json", text, good);
    s_expect_refused("not-json.json", good, good);
    s_expect_refused("empty.json", "{}", good);
    s_expect_refused("array.json", "[]", good);

    nrm_error_t err;
    assert_null(nrm_keyring_load(s_path(path, "absent.json"), &err));
    assert_int_equal(err.status, NRM_FAILED_PRECONDITION);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_seal_open_round_trip),
        cmocka_unit_test(test_open_rejects_tampering),
        cmocka_unit_test(test_rotation),
        cmocka_unit_test(test_a_data_key_opens_what_it_sealed_and_nothing_else_does),
        cmocka_unit_test(test_identity_hash),
        cmocka_unit_test(test_generate_refuses_overwrite),
        cmocka_unit_test(test_uuid),
        cmocka_unit_test(test_keyring_refuses_bad_files),
    };
    return cmocka_run_group_tests(tests, s_setup, s_teardown);
}
