/* nrm_crypto: sealing of identifying data, keyed identity hashes and random identifiers.
 * Key material lives only in sodium_malloc'd memory and is wiped when freed. */
#define _POSIX_C_SOURCE 200809L /* fchmod, mkstemp, strdup, strtok_r, O_CLOEXEC */
#include "nrm_alloc.h"
#include "nrm_crypto.h"

#include <ctype.h>
#include <fcntl.h>
#include <inttypes.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <jansson.h>
#include <sodium.h>

#define S_KEY_BYTES crypto_aead_xchacha20poly1305_ietf_KEYBYTES
#define S_NONCE_BYTES crypto_aead_xchacha20poly1305_ietf_NPUBBYTES
#define S_TAG_BYTES crypto_aead_xchacha20poly1305_ietf_ABYTES
#define S_HASH_BYTES crypto_generichash_BYTES
#define S_B64 sodium_base64_VARIANT_ORIGINAL
#define S_B64_KEY_LEN sodium_base64_ENCODED_LEN(S_KEY_BYTES, S_B64)
#define S_FILE_MODE 0600             /* keyring files: owner read/write only */
#define S_FIRST_KEY_ID 1u            /* id of the key a new keyring starts with */
#define S_ID_DIGITS_MAX 10           /* decimal digits of UINT32_MAX */
#define S_JSON_SLACK 64              /* room for JSON punctuation around each entry */
#define S_TEMP_SUFFIX ".tmp.XXXXXX"  /* mkstemp template appended to the keyring path */
#define S_FIELD "keyring"            /* error field for keyring problems */
#define S_KEYRING_FILE_MAX (1 << 20) /* a keyring file larger is refused */
#define S_ASCII_MAX 0x7f             /* bytes above are kept as-is in names (UTF-8) */
#define S_UUID_BYTES 16
#define S_UUID_LEN 36
#define S_UUID_VERSION_AT 6 /* byte holding the version nibble */
#define S_UUID_VERSION_MASK 0x0f
#define S_UUID_VERSION_4 0x40
#define S_UUID_VARIANT_AT 8 /* byte holding the RFC 4122 variant bits */
#define S_UUID_VARIANT_MASK 0x3f
#define S_UUID_VARIANT_RFC 0x80

_Static_assert(crypto_generichash_KEYBYTES_MIN <= S_KEY_BYTES &&
                   S_KEY_BYTES <= crypto_generichash_KEYBYTES_MAX,
               "the hash key has the size of a sealing key");

typedef struct {
    uint32_t id;
    uint8_t *key; /* S_KEY_BYTES of sodium_malloc'd memory */
} s_key_t;

struct nrm_keyring_t {
    uint32_t active;
    size_t count;
    s_key_t *keys;
    uint8_t *hash_key; /* S_KEY_BYTES of sodium_malloc'd memory */
};

/* Initialises libsodium; returns 0, or -1 when it cannot start. Idempotent. */
int nrm_crypto_init(void)
{
    return sodium_init() < 0 ? -1 : 0;
}

/* Returns a new keyring with no keys and room for the hash key, or NULL when out of memory. */
static nrm_keyring_t *s_keyring_new(void)
{
    nrm_keyring_t *self = nrm_xcalloc(1, sizeof *self);
    if (!(self->hash_key = sodium_malloc(S_KEY_BYTES)))
        nrm_keyring_destroy(&self);
    return self;
}

/* Frees the keyring, wiping key material, and sets *self to NULL. Safe on NULL. */
void nrm_keyring_destroy(nrm_keyring_t **self)
{
    if (!self || !*self)
        return;
    for (size_t i = 0; i < (*self)->count; i++)
        sodium_free((*self)->keys[i].key);
    free((*self)->keys);
    sodium_free((*self)->hash_key);
    free(*self);
    *self = NULL;
}

/* Appends key id with fresh secure storage; returns that storage, or NULL when out of memory. */
static uint8_t *s_key_add(nrm_keyring_t *self, uint32_t id)
{
    s_key_t *keys = nrm_xreallocarray(self->keys, self->count + 1, sizeof *keys);
    self->keys = keys;
    uint8_t *key = sodium_malloc(S_KEY_BYTES);
    if (key)
        keys[self->count++] = (s_key_t){.id = id, .key = key};
    return key;
}

/* Returns the key with this id, or NULL when the keyring has none. */
static const uint8_t *s_key_find(const nrm_keyring_t *self, uint32_t id)
{
    for (size_t i = 0; self && i < self->count; i++)
        if (self->keys[i].id == id)
            return self->keys[i].key;
    return NULL;
}

/* Decodes a JSON string holding exactly S_KEY_BYTES in base64 into key. Returns 0 or -1. */
static int s_key_decode(const json_t *value, uint8_t *key)
{
    const char *b64 = json_string_value(value);
    size_t len = 0;
    if (!b64 || sodium_base642bin(key, S_KEY_BYTES, b64, strlen(b64), NULL, &len, NULL, S_B64))
        return -1;
    return len == S_KEY_BYTES ? 0 : -1;
}

/* Parses a key id: decimal, no sign or leading zero, 1..UINT32_MAX. Returns 0 or -1. */
static int s_id_parse(const char *text, uint32_t *id)
{
    char *end = NULL;
    unsigned long long value = isdigit((unsigned char)text[0]) ? strtoull(text, &end, 10) : 0;
    if (!end || *end != '\0' || text[0] == '0' || value > UINT32_MAX)
        return -1;
    *id = (uint32_t)value;
    return 0;
}

/* Fills self from parsed JSON. Returns NULL, or the problem (never quoting a key) with *field
 * set to its dotted path. */
static const char *s_keyring_parse(nrm_keyring_t *self, const json_t *root, const char **field)
{
    const json_t *keys = json_object_get(root, "keys");
    json_int_t active = json_integer_value(json_object_get(root, "active"));
    const char *name;
    json_t *value;
    *field = S_FIELD ".keys";
    if (!json_is_object(keys) || json_object_size(keys) == 0)
        return "keyring has no \"keys\" object";
    json_object_foreach((json_t *)keys, name, value)
    {
        uint32_t id = 0;
        uint8_t *key = NULL;
        if (s_id_parse(name, &id) != 0)
            return "key ids must be positive decimal integers";
        if (!(key = s_key_add(self, id)))
            return "out of memory loading the keyring";
        if (s_key_decode(value, key) != 0)
            return "a key has the wrong length or is not base64";
    }
    *field = S_FIELD ".active";
    if (active <= 0 || active > UINT32_MAX || !s_key_find(self, (uint32_t)active))
        return "\"active\" does not name a key of the keyring";
    self->active = (uint32_t)active;
    *field = S_FIELD ".hash_key";
    if (s_key_decode(json_object_get(root, "hash_key"), self->hash_key) != 0)
        return "\"hash_key\" is missing, has the wrong length or is not base64";
    return NULL;
}

/* The keyring file parsed, read into memory that is wiped (stdio's buffer would not be), or
 * NULL. Jansson's own allocations are wiped when nrm_wipe_json is in force. */
static json_t *s_keyring_json(const char *path)
{
    int fd = path && nrm_crypto_init() == 0 ? open(path, O_RDONLY | O_CLOEXEC) : -1;
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0 || st.st_size <= 0 || st.st_size > S_KEYRING_FILE_MAX) {
        if (fd >= 0)
            close(fd);
        return NULL;
    }
    size_t size = (size_t)st.st_size, got = 0;
    char *text = sodium_malloc(size);
    while (text && got < size) {
        ssize_t n = read(fd, text + got, size - got);
        if (n <= 0)
            break;
        got += (size_t)n;
    }
    close(fd);
    /* Jansson's error text may quote the file, so it is not passed on. */
    json_t *root =
        text && got == size ? json_loadb(text, size, JSON_REJECT_DUPLICATES, NULL) : NULL;
    if (text)
        sodium_free(text);
    return root;
}

/* Loads a keyring file. Returns a new keyring, or NULL with err set (FAILED_PRECONDITION). */
nrm_keyring_t *nrm_keyring_load(const char *path, nrm_error_t *err)
{
    json_t *root = s_keyring_json(path);
    nrm_keyring_t *self = NULL;
    const char *field = S_FIELD, *problem = NULL;
    if (!json_is_object(root))
        problem = "keyring file cannot be read or is not a JSON object";
    else if (nrm_crypto_init() != 0 || !(self = s_keyring_new()))
        problem = "libsodium cannot start or memory is short";
    else
        problem = s_keyring_parse(self, root, &field);
    json_decref(root);
    if (problem) {
        nrm_fail(err, NRM_FAILED_PRECONDITION, field, "%s", problem);
        nrm_keyring_destroy(&self);
    }
    return self;
}

/* Writes self as keyring JSON to fd, sets its mode and syncs it. Returns 0, or -1 on any
 * error including a short write (the caller then discards the file). */
static int s_keyring_write(const nrm_keyring_t *self, int fd, mode_t mode)
{
    size_t cap =
        S_JSON_SLACK + (self->count + 1) * (S_ID_DIGITS_MAX + S_B64_KEY_LEN + S_JSON_SLACK);
    char *text = sodium_malloc(cap); /* holds keys in base64: wiped on free */
    char b64[S_B64_KEY_LEN];
    if (!text)
        return -1;
    size_t len =
        (size_t)snprintf(text, cap, "{\n  \"active\": %" PRIu32 ",\n  \"keys\": {", self->active);
    for (size_t i = 0; i < self->count; i++) {
        sodium_bin2base64(b64, sizeof b64, self->keys[i].key, S_KEY_BYTES, S_B64);
        len += (size_t)snprintf(text + len, cap - len, "%s\n    \"%" PRIu32 "\": \"%s\"",
                                i ? "," : "", self->keys[i].id, b64);
    }
    sodium_bin2base64(b64, sizeof b64, self->hash_key, S_KEY_BYTES, S_B64);
    len += (size_t)snprintf(text + len, cap - len, "\n  },\n  \"hash_key\": \"%s\"\n}\n", b64);
    sodium_memzero(b64, sizeof b64);
    int rc = fchmod(fd, mode) == 0 && write(fd, text, len) == (ssize_t)len && fsync(fd) == 0;
    sodium_free(text);
    return rc ? 0 : -1;
}

/* Syncs the directory holding path so that a rename in it is durable. Returns 0 or -1. */
static int s_sync_dir(const char *path)
{
    char *copy = nrm_xstrdup(path);
    int fd = open(dirname(copy), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    int rc = fd >= 0 && fsync(fd) == 0 ? 0 : -1;
    if (fd >= 0)
        close(fd);
    free(copy);
    return rc;
}

/* Writes a new keyring file (mode 0600) with key 1 active and a fresh hash key. Returns 0, or
 * -1 if the file exists or cannot be written (a partly written file is removed). */
int nrm_keyring_generate(const char *path)
{
    nrm_keyring_t *self = path && nrm_crypto_init() == 0 ? s_keyring_new() : NULL;
    uint8_t *key = self ? s_key_add(self, S_FIRST_KEY_ID) : NULL;
    int rc = -1;
    if (key) {
        crypto_aead_xchacha20poly1305_ietf_keygen(key);
        randombytes_buf(self->hash_key, S_KEY_BYTES);
        self->active = S_FIRST_KEY_ID;
        int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, S_FILE_MODE);
        if (fd >= 0) {
            rc = s_keyring_write(self, fd, S_FILE_MODE);
            if (close(fd) != 0 || rc != 0) {
                unlink(path);
                rc = -1;
            } else {
                s_sync_dir(path);
            }
        }
    }
    nrm_keyring_destroy(&self);
    return rc;
}

/* Replaces the file at path with self: temp file beside it, then rename. The new file keeps
 * the old one's mode and owner, so that a service user that could read the keyring still can
 * after a rotation made by another user (root, an operator). */
static int s_keyring_replace(const nrm_keyring_t *self, const char *path)
{
    struct stat old;
    if (stat(path, &old) != 0)
        return -1;
    size_t size = strlen(path) + sizeof S_TEMP_SUFFIX;
    char *temp = nrm_xmalloc(size);
    int rc = -1;
    snprintf(temp, size, "%s%s", path, S_TEMP_SUFFIX);
    int fd = mkstemp(temp);
    if (fd >= 0) {
        rc = s_keyring_write(self, fd, old.st_mode & 0777);
        if (rc == 0 && (old.st_uid != geteuid() || old.st_gid != getegid()) &&
            fchown(fd, old.st_uid, old.st_gid) != 0)
            rc = -1;
        if (close(fd) != 0)
            rc = -1;
        if (rc == 0)
            rc = rename(temp, path);
        if (rc != 0)
            unlink(temp);
        else
            s_sync_dir(path);
    }
    free(temp);
    return rc;
}

/* Adds a key with the next id to the keyring file and makes it active. Returns the new key id,
 * or -1 on error (the file is then unchanged). */
int nrm_keyring_rotate(const char *path)
{
    nrm_keyring_t *self = path ? nrm_keyring_load(path, NULL) : NULL;
    uint32_t next = 0;
    int rc = -1;
    for (size_t i = 0; self && i < self->count; i++)
        if (self->keys[i].id > next)
            next = self->keys[i].id;
    uint8_t *key = self && next < INT32_MAX ? s_key_add(self, ++next) : NULL;
    if (key) {
        crypto_aead_xchacha20poly1305_ietf_keygen(key);
        self->active = next;
        rc = s_keyring_replace(self, path) == 0 ? (int)next : -1;
    }
    nrm_keyring_destroy(&self);
    return rc;
}

/* Id of the key new data is sealed with. */
uint32_t nrm_keyring_active_id(const nrm_keyring_t *self)
{
    return self ? self->active : 0;
}

/* Seals plain with key: out = nonce || ciphertext || tag. Returns 0 or -1. */
static int s_seal(const uint8_t *key, const void *plain, size_t len, const char *aad, uint8_t **out,
                  size_t *out_len)
{
    if (!key || !out || !out_len || (!plain && len) ||
        len > crypto_aead_xchacha20poly1305_ietf_MESSAGEBYTES_MAX)
        return -1;
    uint8_t *sealed = nrm_xmalloc(S_NONCE_BYTES + len + S_TAG_BYTES);
    unsigned long long sealed_len = 0;
    randombytes_buf(sealed, S_NONCE_BYTES);
    crypto_aead_xchacha20poly1305_ietf_encrypt(sealed + S_NONCE_BYTES, &sealed_len, plain, len,
                                               (const uint8_t *)aad, aad ? strlen(aad) : 0, NULL,
                                               sealed, key);
    *out = sealed;
    *out_len = S_NONCE_BYTES + (size_t)sealed_len;
    return 0;
}

/* Opens what s_seal produced under key with the same aad. Returns 0, or -1 for a missing key, a
 * forged or a corrupted ciphertext. */
static int s_open(const uint8_t *key, const uint8_t *sealed, size_t len, const char *aad,
                  uint8_t **plain, size_t *plain_len)
{
    if (!key || !sealed || !plain || len < S_NONCE_BYTES + S_TAG_BYTES)
        return -1;
    uint8_t *opened = nrm_xmalloc(len - S_NONCE_BYTES - S_TAG_BYTES + 1);
    unsigned long long opened_len = 0;
    if (crypto_aead_xchacha20poly1305_ietf_decrypt(
            opened, &opened_len, NULL, sealed + S_NONCE_BYTES, len - S_NONCE_BYTES,
            (const uint8_t *)aad, aad ? strlen(aad) : 0, sealed, key) != 0) {
        free(opened);
        return -1;
    }
    opened[opened_len] = '\0';
    *plain = opened;
    if (plain_len)
        *plain_len = (size_t)opened_len;
    return 0;
}

int nrm_seal(const nrm_keyring_t *self, const void *plain, size_t len, const char *aad,
             uint8_t **out, size_t *out_len, uint32_t *key_id)
{
    const uint8_t *key = self ? s_key_find(self, self->active) : NULL;
    if (s_seal(key, plain, len, aad, out, out_len) != 0)
        return -1;
    if (key_id)
        *key_id = self->active;
    return 0;
}

int nrm_open(const nrm_keyring_t *self, uint32_t key_id, const uint8_t *sealed, size_t len,
             const char *aad, uint8_t **plain, size_t *plain_len)
{
    return s_open(self ? s_key_find(self, key_id) : NULL, sealed, len, aad, plain, plain_len);
}

_Static_assert(NRM_DATA_KEY_BYTES == S_KEY_BYTES, "a data key is a sealing key");

void nrm_data_key_new(uint8_t key[NRM_DATA_KEY_BYTES])
{
    crypto_aead_xchacha20poly1305_ietf_keygen(key);
}

int nrm_seal_with(const uint8_t key[NRM_DATA_KEY_BYTES], const void *plain, size_t len,
                  const char *aad, uint8_t **out, size_t *out_len)
{
    return s_seal(key, plain, len, aad, out, out_len);
}

int nrm_open_with(const uint8_t key[NRM_DATA_KEY_BYTES], const uint8_t *sealed, size_t len,
                  const char *aad, uint8_t **plain, size_t *plain_len)
{
    return s_open(key, sealed, len, aad, plain, plain_len);
}

/* qsort comparator over token pointers (byte order). */
static int s_token_cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Feeds the normalised name to state: ASCII letters lower-cased, other ASCII punctuation and
 * controls dropped, non-ASCII bytes kept, tokens split on white space, sorted, joined by one
 * space. The working copy is wiped. Aborts when out of memory (no hash can be given). */
static void s_hash_name(crypto_generichash_state *state, const char *name)
{
    size_t size = strlen(name) + 1;
    char *buf = nrm_xmalloc(size);
    char **tokens = nrm_xcalloc(size, sizeof *tokens);
    size_t count = 0, w = 0;
    for (const unsigned char *p = (const unsigned char *)name; *p; p++)
        if (*p > S_ASCII_MAX || isalnum(*p) || isspace(*p))
            buf[w++] = (char)(*p > S_ASCII_MAX ? *p : isspace(*p) ? ' ' : tolower(*p));
    buf[w] = '\0';
    for (char *save = NULL, *t = strtok_r(buf, " ", &save); t; t = strtok_r(NULL, " ", &save))
        tokens[count++] = t;
    qsort(tokens, count, sizeof *tokens, s_token_cmp);
    for (size_t i = 0; i < count; i++) {
        if (i > 0)
            crypto_generichash_update(state, (const uint8_t *)" ", 1);
        crypto_generichash_update(state, (const uint8_t *)tokens[i], strlen(tokens[i]));
    }
    sodium_memzero(buf, size);
    free(buf);
    free(tokens);
}

/* Keyed BLAKE2b-256 over name, NUL, date of birth, NUL, upper-cased nationality, in hex. */
void nrm_identity_hash(const nrm_keyring_t *self, const char *full_name, const char *date_of_birth,
                       const char *nationality, char out[65])
{
    static const uint8_t separator = '\0'; /* never occurs inside a C string */
    crypto_generichash_state state;
    uint8_t hash[S_HASH_BYTES];
    crypto_generichash_init(&state, self->hash_key, S_KEY_BYTES, sizeof hash);
    s_hash_name(&state, full_name ? full_name : "");
    crypto_generichash_update(&state, &separator, sizeof separator);
    if (date_of_birth)
        crypto_generichash_update(&state, (const uint8_t *)date_of_birth, strlen(date_of_birth));
    crypto_generichash_update(&state, &separator, sizeof separator);
    for (const unsigned char *p = (const unsigned char *)nationality; p && *p; p++) {
        uint8_t c = (uint8_t)(*p > S_ASCII_MAX ? *p : toupper(*p));
        crypto_generichash_update(&state, &c, sizeof c);
    }
    crypto_generichash_final(&state, hash, sizeof hash);
    sodium_bin2hex(out, 2 * S_HASH_BYTES + 1, hash, sizeof hash);
    sodium_memzero(&state, sizeof state);
    sodium_memzero(hash, sizeof hash);
}

/* Writes a random version 4 UUID, lowercase, with a NUL. */
void nrm_uuid_v4(char out[37])
{
    uint8_t b[S_UUID_BYTES];
    randombytes_buf(b, sizeof b);
    b[S_UUID_VERSION_AT] = (b[S_UUID_VERSION_AT] & S_UUID_VERSION_MASK) | S_UUID_VERSION_4;
    b[S_UUID_VARIANT_AT] = (b[S_UUID_VARIANT_AT] & S_UUID_VARIANT_MASK) | S_UUID_VARIANT_RFC;
    snprintf(out, S_UUID_LEN + 1,
             "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", b[0], b[1],
             b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13], b[14],
             b[15]);
}

/* True if s is 36 characters in the 8-4-4-4-12 grouping of hex digits (any case). */
bool nrm_uuid_valid(const char *s)
{
    static const char layout[] = "xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx";
    if (!s || strlen(s) != S_UUID_LEN)
        return false;
    for (size_t i = 0; i < S_UUID_LEN; i++)
        if (layout[i] == '-' ? s[i] != '-' : !isxdigit((unsigned char)s[i]))
            return false;
    return true;
}
