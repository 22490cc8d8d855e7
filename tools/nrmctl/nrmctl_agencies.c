/* nrmctl_agencies: the agencies command: intake's agency directory, as a coordinator manages it.
 *
 *   agencies list [--all]
 *   agencies upsert FILE                   (an UpsertAgency in proto3 JSON; "-" reads stdin)
 *   agencies upsert --id ID --type TYPE [--key Z85 | --key-file CERT]... [--name NAME]
 *                   [--inactive]
 *   agencies deactivate ID                 (the entry as listed, with active false, no keys) */
#include "nrmctl_commands.h"
#include "nrm_auth.h"
#include "nrm_directory.h"

#include <string.h>

#define S_INTAKE "intake"
#define S_TYPE_PREFIX "AGENCY_TYPE_"

/* Sends req to intake and prints the Reply. Returns the exit code. */
static int s_send(nrmctl_t *ctl, Nrm__V1__Request *req)
{
    Nrm__V1__Reply *reply = NULL;
    int rc = nrmctl_call(ctl, S_INTAKE, req, &reply);
    if (rc != NRMCTL_EXIT_OK)
        return rc;
    rc = nrmctl_print_reply(reply);
    nrm__v1__reply__free_unpacked(reply, NULL);
    return rc;
}

/* Sends ListAgencies; *reply receives the OK reply with its list (caller frees). Returns the
 * exit code (the reply printed when it is not OK). */
static int s_fetch_list(nrmctl_t *ctl, bool all, Nrm__V1__Reply **reply)
{
    Nrm__V1__ListAgencies list = NRM__V1__LIST_AGENCIES__INIT;
    list.include_inactive = all;
    Nrm__V1__Request req = NRM__V1__REQUEST__INIT;
    req.body_case = NRM__V1__REQUEST__BODY_LIST_AGENCIES;
    req.list_agencies = &list;
    int rc = nrmctl_call(ctl, S_INTAKE, &req, reply);
    if (rc != NRMCTL_EXIT_OK)
        return rc;
    if ((*reply)->status != NRM_OK || (*reply)->result_case != NRM__V1__REPLY__RESULT_AGENCY_LIST) {
        rc = nrmctl_print_reply(*reply);
        nrm__v1__reply__free_unpacked(*reply, NULL);
        *reply = NULL;
        return rc == NRMCTL_EXIT_OK ? NRMCTL_EXIT_STATUS : rc;
    }
    return NRMCTL_EXIT_OK;
}

/* agencies list [--all]: one JSON line per agency. */
static int s_list(nrmctl_t *ctl, int argc, char **argv)
{
    bool all = false;
    for (int i = 2; i < argc; i++) {
        if (strcmp(argv[i], "--all") != 0)
            return nrmctl_usage_error(argv[0], "unknown argument %s", argv[i]);
        all = true;
    }
    Nrm__V1__Reply *reply = NULL;
    int rc = s_fetch_list(ctl, all, &reply);
    if (rc != NRMCTL_EXIT_OK)
        return rc;
    for (size_t i = 0; i < reply->agency_list->n_agencies && rc == NRMCTL_EXIT_OK; i++)
        if (nrmctl_print_message(&reply->agency_list->agencies[i]->base) != 0) {
            nrmctl_error("cannot write to the standard output");
            rc = NRMCTL_EXIT_USAGE;
        }
    nrm__v1__reply__free_unpacked(reply, NULL);
    return rc;
}

/* The AgencyType of "NGO" or "AGENCY_TYPE_NGO", or UNSPECIFIED. */
static Nrm__V1__AgencyType s_type(const char *text)
{
    size_t prefix = strlen(S_TYPE_PREFIX);
    return nrm_directory_type_of(strncmp(text, S_TYPE_PREFIX, prefix) == 0 ? text + prefix : text);
}

/* agencies upsert with flags: builds the UpsertAgency and sends it. keys holds the argument
 * strings or the public keys read from certificate files (at most NRM_DIRECTORY_MAX_KEYS). */
static int s_upsert_flags(nrmctl_t *ctl, int argc, char **argv)
{
    Nrm__V1__UpsertAgency u = NRM__V1__UPSERT_AGENCY__INIT;
    char *keys[NRM_DIRECTORY_MAX_KEYS];
    char read_keys[NRM_DIRECTORY_MAX_KEYS][NRM_KEY_TXT];
    u.public_keys = keys;
    u.active = true;
    for (int i = 2; i < argc; i++) {
        const char *option = argv[i];
        if (strcmp(option, "--inactive") == 0) {
            u.active = false;
            continue;
        }
        if (i + 1 >= argc)
            return nrmctl_usage_error(argv[0], "option %s needs a value", option);
        char *value = argv[++i];
        bool key = strcmp(option, "--key") == 0, key_file = strcmp(option, "--key-file") == 0;
        if ((key || key_file) && u.n_public_keys >= NRM_DIRECTORY_MAX_KEYS)
            return nrmctl_usage_error(argv[0], "at most %d keys", NRM_DIRECTORY_MAX_KEYS);
        if (strcmp(option, "--id") == 0) {
            u.agency_id = value;
        } else if (strcmp(option, "--type") == 0) {
            u.type = s_type(value);
            if (u.type == NRM__V1__AGENCY_TYPE__AGENCY_TYPE_UNSPECIFIED)
                return nrmctl_usage_error(argv[0], "unknown agency type %s", value);
        } else if (strcmp(option, "--name") == 0) {
            u.name = value;
        } else if (key) {
            keys[u.n_public_keys++] = value;
        } else if (key_file) {
            zcert_t *cert = zcert_load(value);
            if (!cert)
                return nrmctl_usage_error(argv[0], "cannot read the certificate %s", value);
            snprintf(read_keys[u.n_public_keys], NRM_KEY_TXT, "%s", zcert_public_txt(cert));
            zcert_destroy(&cert);
            keys[u.n_public_keys] = read_keys[u.n_public_keys];
            u.n_public_keys++;
        } else {
            return nrmctl_usage_error(argv[0], "unknown argument %s", option);
        }
    }
    if (!u.agency_id || u.type == NRM__V1__AGENCY_TYPE__AGENCY_TYPE_UNSPECIFIED)
        return nrmctl_usage_error(argv[0], "upsert needs --id and --type (or a FILE)");
    Nrm__V1__Request req = NRM__V1__REQUEST__INIT;
    req.body_case = NRM__V1__REQUEST__BODY_UPSERT_AGENCY;
    req.upsert_agency = &u;
    return s_send(ctl, &req);
}

/* agencies upsert FILE | flags. */
static int s_upsert(nrmctl_t *ctl, int argc, char **argv)
{
    if (argc == 3 && (argv[2][0] != '-' || strcmp(argv[2], "-") == 0)) {
        ProtobufCMessage *msg =
            nrmctl_read_message(argv[2], &nrm__v1__upsert_agency__descriptor, "upsert_agency");
        if (!msg)
            return NRMCTL_EXIT_USAGE;
        Nrm__V1__Request req = NRM__V1__REQUEST__INIT;
        req.body_case = NRM__V1__REQUEST__BODY_UPSERT_AGENCY;
        req.upsert_agency = (Nrm__V1__UpsertAgency *)msg;
        int rc = s_send(ctl, &req);
        protobuf_c_message_free_unpacked(msg, NULL);
        return rc;
    }
    return s_upsert_flags(ctl, argc, argv);
}

/* agencies deactivate ID: the directory entry again, inactive and without keys. */
static int s_deactivate(nrmctl_t *ctl, int argc, char **argv)
{
    if (argc != 3)
        return nrmctl_usage_error(argv[0], "deactivate needs one agency ID");
    Nrm__V1__Reply *reply = NULL;
    int rc = s_fetch_list(ctl, true, &reply);
    if (rc != NRMCTL_EXIT_OK)
        return rc;
    const Nrm__V1__Agency *found = NULL;
    for (size_t i = 0; i < reply->agency_list->n_agencies && !found; i++) {
        const Nrm__V1__Agency *a = reply->agency_list->agencies[i];
        if (strcmp(a->agency_id, argv[2]) == 0)
            found = a;
    }
    if (!found || strcmp(found->source, NRM_DIRECTORY_SOURCE_RUNTIME) != 0) {
        nrmctl_error(found ? "the agency is in the configuration file: remove it there"
                           : "no such agency in the directory");
        nrm__v1__reply__free_unpacked(reply, NULL);
        return NRMCTL_EXIT_STATUS;
    }
    Nrm__V1__UpsertAgency u = NRM__V1__UPSERT_AGENCY__INIT;
    u.agency_id = found->agency_id;
    u.type = found->type;
    u.name = found->name;
    u.active = false;
    Nrm__V1__Request req = NRM__V1__REQUEST__INIT;
    req.body_case = NRM__V1__REQUEST__BODY_UPSERT_AGENCY;
    req.upsert_agency = &u;
    rc = s_send(ctl, &req);
    nrm__v1__reply__free_unpacked(reply, NULL);
    return rc;
}

/* Public: agencies list | upsert | deactivate. */
int nrmctl_agencies(nrmctl_t *ctl, int argc, char **argv)
{
    if (argc >= 2 && strcmp(argv[1], "list") == 0)
        return s_list(ctl, argc, argv);
    if (argc >= 2 && strcmp(argv[1], "upsert") == 0)
        return s_upsert(ctl, argc, argv);
    if (argc >= 2 && strcmp(argv[1], "deactivate") == 0)
        return s_deactivate(ctl, argc, argv);
    return nrmctl_usage_error(argv[0], "expected list, upsert or deactivate");
}
