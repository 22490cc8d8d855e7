/* nrmctl_directory: routing's directory at run time (the coordinator).
 *
 *   providers [list] [--active]    ListProviders, one ProviderRow per line
 *   providers upsert FILE          UpsertProvider from a JSON file (the configuration's shape)
 *   agreements [list] [--provider ID]   ListAgreements, one AgreementRow per line
 *   agreements upsert FILE         UpsertAgreement from a JSON file */
#include "nrmctl_commands.h"

#include <string.h>

#define S_ROUTING "routing"

/* Sends req to routing; on OK prints each row of the list the reply carries (rows, n) through
 * print, else the Reply. Returns the exit code. */
static int s_call(nrmctl_t *ctl, Nrm__V1__Request *req, Nrm__V1__Reply **reply)
{
    int rc = nrmctl_call(ctl, S_ROUTING, req, reply);
    if (rc != NRMCTL_EXIT_OK)
        return rc;
    if ((*reply)->status != NRM__V1__STATUS__STATUS_OK) {
        rc = nrmctl_print_reply(*reply);
        nrm__v1__reply__free_unpacked(*reply, NULL);
        *reply = NULL;
    }
    return rc;
}

/* Sends an upsert read from path (message of type desc, the Request's body case) and prints
 * the Reply. */
static int s_upsert(nrmctl_t *ctl, const char *path, const ProtobufCMessageDescriptor *desc,
                    const char *prefix, Nrm__V1__Request__BodyCase body)
{
    ProtobufCMessage *msg = nrmctl_read_message(path, desc, prefix);
    if (!msg)
        return NRMCTL_EXIT_USAGE;
    Nrm__V1__Request req = NRM__V1__REQUEST__INIT;
    req.body_case = body;
    if (body == NRM__V1__REQUEST__BODY_UPSERT_PROVIDER)
        req.upsert_provider = (Nrm__V1__UpsertProvider *)msg;
    else
        req.upsert_agreement = (Nrm__V1__UpsertAgreement *)msg;
    Nrm__V1__Reply *reply = NULL;
    int rc = nrmctl_call(ctl, S_ROUTING, &req, &reply);
    if (rc == NRMCTL_EXIT_OK) {
        rc = nrmctl_print_reply(reply);
        nrm__v1__reply__free_unpacked(reply, NULL);
    }
    protobuf_c_message_free_unpacked(msg, NULL);
    return rc;
}

/* Public: providers [list] [--active] | providers upsert FILE. */
int nrmctl_providers(nrmctl_t *ctl, int argc, char **argv)
{
    if (argc >= 2 && strcmp(argv[1], "upsert") == 0) {
        if (argc != 3)
            return nrmctl_usage_error(argv[0], "upsert expects one FILE argument");
        return s_upsert(ctl, argv[2], &nrm__v1__upsert_provider__descriptor, "upsert_provider",
                        NRM__V1__REQUEST__BODY_UPSERT_PROVIDER);
    }
    Nrm__V1__ListProviders l = NRM__V1__LIST_PROVIDERS__INIT;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "list") == 0 && i == 1)
            continue;
        if (strcmp(argv[i], "--active") == 0)
            l.active_only = 1;
        else
            return nrmctl_usage_error(argv[0], "unknown argument %s", argv[i]);
    }
    Nrm__V1__Request req = NRM__V1__REQUEST__INIT;
    req.body_case = NRM__V1__REQUEST__BODY_LIST_PROVIDERS;
    req.list_providers = &l;
    Nrm__V1__Reply *reply = NULL;
    int rc = s_call(ctl, &req, &reply);
    if (!reply)
        return rc;
    for (size_t i = 0; reply->provider_list && i < reply->provider_list->n_providers; i++)
        if (nrmctl_print_message(&reply->provider_list->providers[i]->base) != 0)
            rc = NRMCTL_EXIT_STATUS;
    nrm__v1__reply__free_unpacked(reply, NULL);
    return rc;
}

/* Public: agreements [list] [--provider ID] | agreements upsert FILE. */
int nrmctl_agreements(nrmctl_t *ctl, int argc, char **argv)
{
    if (argc >= 2 && strcmp(argv[1], "upsert") == 0) {
        if (argc != 3)
            return nrmctl_usage_error(argv[0], "upsert expects one FILE argument");
        return s_upsert(ctl, argv[2], &nrm__v1__upsert_agreement__descriptor, "upsert_agreement",
                        NRM__V1__REQUEST__BODY_UPSERT_AGREEMENT);
    }
    Nrm__V1__ListAgreements l = NRM__V1__LIST_AGREEMENTS__INIT;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "list") == 0 && i == 1)
            continue;
        if (strcmp(argv[i], "--provider") == 0 && i + 1 < argc)
            l.provider_id = argv[++i];
        else
            return nrmctl_usage_error(argv[0], "unknown argument %s", argv[i]);
    }
    Nrm__V1__Request req = NRM__V1__REQUEST__INIT;
    req.body_case = NRM__V1__REQUEST__BODY_LIST_AGREEMENTS;
    req.list_agreements = &l;
    Nrm__V1__Reply *reply = NULL;
    int rc = s_call(ctl, &req, &reply);
    if (!reply)
        return rc;
    for (size_t i = 0; reply->agreement_list && i < reply->agreement_list->n_agreements; i++)
        if (nrmctl_print_message(&reply->agreement_list->agreements[i]->base) != 0)
            rc = NRMCTL_EXIT_STATUS;
    nrm__v1__reply__free_unpacked(reply, NULL);
    return rc;
}
