/* nrmctl_keys: keygen and keyrotate, the keyring files of the intake service.
 *
 * Neither prints key material: keygen prints nothing, keyrotate the new key id. */
#include "nrmctl_commands.h"
#include "nrm_crypto.h"

#include <stdio.h>
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
