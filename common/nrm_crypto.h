/* nrm_crypto: encryption of identifying data at rest, keyed hashes for duplicate detection,
 * and random identifiers. Built on libsodium.
 *
 * A keyring file is JSON: {"active": 2, "keys": {"1": "<base64 32 bytes>", "2": "..."},
 *                          "hash_key": "<base64 32 bytes>"}
 * New data is sealed with the active key; data sealed under an older key id still opens, so
 * keys rotate by adding a key and moving "active". The hash key never rotates silently: a new
 * hash key makes earlier reports unmatchable, so it is changed only with a re-hash. */
#ifndef NRM_CRYPTO_H
#define NRM_CRYPTO_H

#include <stddef.h>
#include <stdint.h>
#include "nrm_error.h"

typedef struct nrm_keyring_t nrm_keyring_t;

/* Initialises libsodium. Call once at start; returns 0, or -1 when libsodium cannot start. */
int nrm_crypto_init(void);

/* Loads a keyring file. Returns a new keyring (caller destroys), or NULL with err set
 * (FAILED_PRECONDITION, message naming the problem but never a key). */
nrm_keyring_t *nrm_keyring_load(const char *path, nrm_error_t *err);

/* Frees the keyring, wiping key material, and sets *self to NULL. Safe on NULL. */
void nrm_keyring_destroy(nrm_keyring_t **self);

/* Writes a new keyring file (mode 0600) with key 1 active and a fresh hash key.
 * Returns 0, or -1 if the file exists or cannot be written. */
int nrm_keyring_generate(const char *path);

/* Adds a new key (the next id) to an existing keyring file and makes it active.
 * Returns the new key id, or -1 on error. */
int nrm_keyring_rotate(const char *path);

/* Id of the key new data is sealed with. */
uint32_t nrm_keyring_active_id(const nrm_keyring_t *self);

/* Encrypts plain (len bytes) with the active key (XChaCha20-Poly1305, random nonce, aad bound
 * to the ciphertext). On success returns 0, *out is malloc'd (caller frees) holding nonce and
 * ciphertext, *out_len its size, *key_id the key used. Returns -1 on failure. */
int nrm_seal(const nrm_keyring_t *self, const void *plain, size_t len, const char *aad,
             uint8_t **out, size_t *out_len, uint32_t *key_id);

/* Decrypts what nrm_seal produced under key_id with the same aad. On success returns 0 and
 * *plain is malloc'd (caller frees, NUL-terminated for convenience), *plain_len its size.
 * Returns -1 for an unknown key id or a forged or corrupted ciphertext. */
int nrm_open(const nrm_keyring_t *self, uint32_t key_id, const uint8_t *sealed, size_t len,
             const char *aad, uint8_t **plain, size_t *plain_len);

/* Data keys: a key of its own per object (intake: per case), kept wrapped (nrm_seal'd) by the
 * keyring, so that destroying the wrapped key makes the object's data unreadable
 * (crypto-shredding) and rotating the keyring re-wraps keys, not data. */
#define NRM_DATA_KEY_BYTES 32

/* Fills key with a fresh random data key. */
void nrm_data_key_new(uint8_t key[NRM_DATA_KEY_BYTES]);

/* nrm_seal and nrm_open with a data key instead of the keyring (same format, no key id):
 * 0 on success (*out or *plain malloc'd, caller frees), -1 on failure. */
int nrm_seal_with(const uint8_t key[NRM_DATA_KEY_BYTES], const void *plain, size_t len,
                  const char *aad, uint8_t **out, size_t *out_len);
int nrm_open_with(const uint8_t key[NRM_DATA_KEY_BYTES], const uint8_t *sealed, size_t len,
                  const char *aad, uint8_t **plain, size_t *plain_len);

/* Keyed BLAKE2b-256 of the normalised identity (full name, date of birth, nationality), as 64
 * lowercase hex characters and a NUL in out. Normalisation: ASCII letters lower-cased, name
 * split on white space, punctuation dropped, tokens sorted, so "BENALI  Amina" and
 * "amina benali" match. Any argument may be NULL or empty. */
void nrm_identity_hash(const nrm_keyring_t *self, const char *full_name, const char *date_of_birth,
                       const char *nationality, char out[65]);

/* Writes a random (version 4) UUID in canonical lowercase form and a NUL into out. */
void nrm_uuid_v4(char out[37]);

/* Returns true if s is a canonical UUID (36 characters, hex digits and dashes, any case). */
bool nrm_uuid_valid(const char *s);

#endif
