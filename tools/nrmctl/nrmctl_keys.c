/* nrmctl_keys: keygen and keyrotate, the keyring files of the intake service; gateway-hash,
 * the hash of a gateway sign-in token.
 *
 * None prints key material: keygen prints nothing, keyrotate the new key id, gateway-hash a
 * one-way hash. */
#include "nrmctl_commands.h"
#include "nrm_crypto.h"

#include <sodium.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

/* Public: keygen FILE; never overwrites. */
int nrmctl_keygen(nrmctl_t *ctl, int argc, char **argv)
{
    (void)ctl; /* a keyring needs no configuration */
    if (argc != 2)
        return nrmctl_usage_error(argv[0], "expected one FILE argument");
    if (access(argv[1], F_OK) == 0) {
        nrmctl_error("%s exists; refusing to overwrite it", argv[1]);
        return NRMCTL_EXIT_USAGE;
    }
    if (nrm_keyring_generate(argv[1]) != 0) {
        nrmctl_error("cannot write the keyring %s", argv[1]);
        return NRMCTL_EXIT_USAGE;
    }
    return NRMCTL_EXIT_OK;
}

/* Public: keyrotate FILE; checks the keyring first for a precise message. */
int nrmctl_keyrotate(nrmctl_t *ctl, int argc, char **argv)
{
    (void)ctl; /* a keyring needs no configuration */
    if (argc != 2)
        return nrmctl_usage_error(argv[0], "expected one FILE argument");
    nrm_error_t err;
    nrm_error_clear(&err);
    nrm_keyring_t *keyring = nrm_keyring_load(argv[1], &err);
    if (!keyring) {
        nrmctl_error("%s", err.message);
        return NRMCTL_EXIT_USAGE;
    }
    nrm_keyring_destroy(&keyring);
    int id = nrm_keyring_rotate(argv[1]);
    if (id < 0) {
        nrmctl_error("cannot rewrite the keyring %s", argv[1]);
        return NRMCTL_EXIT_USAGE;
    }
    printf("%d\n", id);
    return fflush(stdout) == 0 ? NRMCTL_EXIT_OK : NRMCTL_EXIT_USAGE;
}

#define S_TOKEN_MAX 1024 /* longest token read */

/* Public: gateway-hash; reads one token on stdin (its first line), prints its
 * crypto_pwhash_str hash for gateway.logins[].token_hash. */
int nrmctl_gateway_hash(nrmctl_t *ctl, int argc, char **argv)
{
    (void)ctl;
    if (argc != 1)
        return nrmctl_usage_error(argv[0], "expected no argument (the token is read on stdin)");
    char token[S_TOKEN_MAX];
    if (!fgets(token, sizeof token, stdin)) {
        nrmctl_error("no token on the standard input");
        return NRMCTL_EXIT_USAGE;
    }
    token[strcspn(token, "\r\n")] = '\0';
    char hash[crypto_pwhash_STRBYTES];
    int rc = !token[0] || sodium_init() < 0 ||
             crypto_pwhash_str(hash, token, strlen(token), crypto_pwhash_OPSLIMIT_INTERACTIVE,
                               crypto_pwhash_MEMLIMIT_INTERACTIVE) != 0;
    sodium_memzero(token, sizeof token);
    if (rc) {
        nrmctl_error("cannot hash an empty token, or out of memory");
        return NRMCTL_EXIT_USAGE;
    }
    printf("%s\n", hash);
    return NRMCTL_EXIT_OK;
}
