/* nrmctl_cert: CURVE certificates of agencies and services.
 *
 *   cert new NAME DIR   writes DIR/NAME.cert (public) and DIR/NAME.cert_secret (mode 600) as
 *                       zcert_save does, then prints the configuration entry of an agency NAME
 *   cert key FILE       prints the public key of a certificate file (Z85)
 *   cert ensure DIR NAME...
 *                       makes DIR/NAME.cert for each NAME that has none, and prints one line
 *                       "NAME<TAB>KEY" per NAME (deploy/certify.sh: one process for all)
 *
 * The secret key is never printed. */
#include "nrmctl_commands.h"

#include <czmq.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#define S_PATH_MAX 1024

/* cert new NAME DIR: never overwrites an existing certificate. */
static int s_cert_new(const char *name, const char *dir)
{
    if (!nrmctl_service_name_ok(name))
        return nrmctl_usage_error("cert", "NAME may hold letters, digits, '_' and '-' only");
    char path[S_PATH_MAX], secret[S_PATH_MAX + 8];
    snprintf(path, sizeof path, "%s/%s.cert", dir, name);
    snprintf(secret, sizeof secret, "%s_secret", path);
    if (access(path, F_OK) == 0 || access(secret, F_OK) == 0) {
        nrmctl_error("%s exists; refusing to overwrite it", path);
        return NRMCTL_EXIT_USAGE;
    }
    zcert_t *cert = zcert_new();
    if (!cert) {
        nrmctl_error("cannot make a key pair");
        return NRMCTL_EXIT_UNAVAILABLE;
    }
    zcert_set_meta(cert, "name", "%s", name);
    int rc = zcert_save(cert, path);
    if (rc != 0) {
        nrmctl_error("cannot write %s", path);
        zcert_destroy(&cert);
        return NRMCTL_EXIT_USAGE;
    }
    json_t *entry = json_pack("{s:s, s:[s]}", "id", name, "public_keys", zcert_public_txt(cert));
    zcert_destroy(&cert);
    fprintf(stderr,
            "nrmctl: wrote %s and %s; add the entry below to the agency (or set\n"
            "services.%s.cert_file and public_key for a service)\n",
            path, secret, name);
    rc = entry ? nrmctl_print_json(entry) : -1;
    json_decref(entry);
    return rc == 0 ? NRMCTL_EXIT_OK : NRMCTL_EXIT_USAGE;
}

/* cert key FILE: the public key, to add beside the old one during a rotation. */
static int s_cert_key(const char *file)
{
    zcert_t *cert = zcert_load(file);
    if (!cert) {
        nrmctl_error("cannot read the certificate %s", file);
        return NRMCTL_EXIT_USAGE;
    }
    printf("%s\n", zcert_public_txt(cert));
    zcert_destroy(&cert);
    return fflush(stdout) == 0 ? NRMCTL_EXIT_OK : NRMCTL_EXIT_USAGE;
}

/* cert ensure DIR NAME...: a ':' in NAME becomes '-' in the file name. */
static int s_cert_ensure(const char *dir, int argc, char **names)
{
    for (int i = 0; i < argc; i++) {
        char file[S_PATH_MAX], path[S_PATH_MAX + 8];
        snprintf(file, sizeof file, "%s", names[i]);
        for (char *c = file; *c; c++)
            if (*c == ':')
                *c = '-';
        if (!nrmctl_service_name_ok(file))
            return nrmctl_usage_error("cert", "NAME may hold letters, digits, '_', '-' and ':'");
        snprintf(path, sizeof path, "%s/%s.cert", dir, file);
        zcert_t *cert = zcert_load(path);
        if (!cert) {
            cert = zcert_new();
            if (!cert || zcert_save(cert, path) != 0) {
                nrmctl_error("cannot write %s", path);
                zcert_destroy(&cert);
                return NRMCTL_EXIT_USAGE;
            }
        }
        printf("%s\t%s\n", names[i], zcert_public_txt(cert));
        zcert_destroy(&cert);
    }
    return fflush(stdout) == 0 ? NRMCTL_EXIT_OK : NRMCTL_EXIT_USAGE;
}

/* Public: cert new NAME DIR | cert key FILE | cert ensure DIR NAME... */
int nrmctl_cert(nrmctl_t *ctl, int argc, char **argv)
{
    (void)ctl; /* certificates need no configuration */
    if (argc == 4 && strcmp(argv[1], "new") == 0)
        return s_cert_new(argv[2], argv[3]);
    if (argc == 3 && strcmp(argv[1], "key") == 0)
        return s_cert_key(argv[2]);
    if (argc >= 3 && strcmp(argv[1], "ensure") == 0)
        return s_cert_ensure(argv[2], argc - 3, argv + 3);
    return nrmctl_usage_error(argv[0], "expected 'new NAME DIR' or 'key FILE'");
}
