/* nrmctl_deliveries: the deliveries command: notify's delivery records, as a coordinator sees
 * them (ListDeliveries), and dead letters sent again (RetryDelivery).
 *
 *   deliveries [--state failed|pending|delivered|undeliverable|all] [--max N]
 *   deliveries retry DELIVERY-ID... */
#include "nrmctl_commands.h"
#include "nrm_crypto.h"

#include <string.h>

#define S_NOTIFY "notify"
#define S_DEFAULT_STATE "failed"
#define S_ALL "all"
#define S_DEFAULT_MAX 100
#define S_MAX_MAX 1000 /* the most notify returns in one list */
#define S_RETRY "retry"

/* The states --state accepts; "all" is sent as "" (every state). */
static const char *const s_states[] = {"failed",        "pending", "delivered",
                                       "undeliverable", S_ALL,     NULL};

/* True when state is one --state accepts. */
static bool s_state_known(const char *state)
{
    for (size_t i = 0; s_states[i]; i++)
        if (strcmp(state, s_states[i]) == 0)
            return true;
    return false;
}

/* Sends ListDeliveries {state, max} and prints each Delivery as one JSON line (the Reply
 * itself when it is not OK). Returns the exit code. */
static int s_list(nrmctl_t *ctl, const char *state, int max)
{
    Nrm__V1__ListDeliveries list = NRM__V1__LIST_DELIVERIES__INIT;
    list.state = strcmp(state, S_ALL) == 0 ? "" : (char *)state;
    list.max = max;
    Nrm__V1__Request req = NRM__V1__REQUEST__INIT;
    req.body_case = NRM__V1__REQUEST__BODY_LIST_DELIVERIES;
    req.list_deliveries = &list;
    Nrm__V1__Reply *reply = NULL;
    int rc = nrmctl_call(ctl, S_NOTIFY, &req, &reply);
    if (rc != NRMCTL_EXIT_OK)
        return rc;
    if (reply->status != NRM_OK || reply->result_case != NRM__V1__REPLY__RESULT_DELIVERY_LIST) {
        rc = nrmctl_print_reply(reply);
        rc = rc == NRMCTL_EXIT_OK ? NRMCTL_EXIT_STATUS : rc; /* OK without a list: not usable */
    } else {
        const Nrm__V1__DeliveryList *deliveries = reply->delivery_list;
        for (size_t i = 0; i < deliveries->n_deliveries && rc == NRMCTL_EXIT_OK; i++) {
            if (nrmctl_print_message(&deliveries->deliveries[i]->base) != 0) {
                nrmctl_error("cannot write to the standard output");
                rc = NRMCTL_EXIT_USAGE;
            }
        }
    }
    nrm__v1__reply__free_unpacked(reply, NULL);
    return rc;
}

/* deliveries [--state STATE] [--max N]: parses the options, then lists. */
static int s_list_command(nrmctl_t *ctl, int argc, char **argv)
{
    const char *state = S_DEFAULT_STATE;
    int64_t max = S_DEFAULT_MAX;
    for (int i = 1; i < argc; i++) {
        const char *option = argv[i];
        bool is_state = strcmp(option, "--state") == 0;
        if (!is_state && strcmp(option, "--max") != 0)
            return nrmctl_usage_error(argv[0], "unknown argument %s", option);
        if (i + 1 >= argc)
            return nrmctl_usage_error(argv[0], "option %s needs a value", option);
        const char *value = argv[++i];
        if (is_state && s_state_known(value))
            state = value;
        else if (is_state)
            return nrmctl_usage_error(argv[0], "--state is one of failed, pending, delivered, "
                                               "undeliverable, all");
        else if (!nrmctl_parse_int(value, 1, S_MAX_MAX, &max))
            return nrmctl_usage_error(argv[0], "--max is from 1 to %d", S_MAX_MAX);
    }
    return s_list(ctl, state, (int)max);
}

/* Sends RetryDelivery {id} and prints the Reply. Returns the exit code. */
static int s_retry_one(nrmctl_t *ctl, const char *id)
{
    Nrm__V1__RetryDelivery retry = NRM__V1__RETRY_DELIVERY__INIT;
    retry.delivery_id = (char *)id;
    Nrm__V1__Request req = NRM__V1__REQUEST__INIT;
    req.body_case = NRM__V1__REQUEST__BODY_RETRY_DELIVERY;
    req.retry_delivery = &retry;
    Nrm__V1__Reply *reply = NULL;
    int rc = nrmctl_call(ctl, S_NOTIFY, &req, &reply);
    if (rc != NRMCTL_EXIT_OK)
        return rc;
    rc = nrmctl_print_reply(reply);
    nrm__v1__reply__free_unpacked(reply, NULL);
    return rc;
}

/* deliveries retry ID...: every id checked first (nothing is sent if one is not a UUID), then
 * one RetryDelivery each. Returns the worst exit code. */
static int s_retry_command(nrmctl_t *ctl, int argc, char **argv)
{
    if (argc < 3)
        return nrmctl_usage_error(argv[0], "retry needs at least one DELIVERY-ID");
    for (int i = 2; i < argc; i++)
        if (!nrm_uuid_valid(argv[i]))
            return nrmctl_usage_error(argv[0], "delivery id #%d is not a UUID", i - 1);
    int rc = NRMCTL_EXIT_OK;
    for (int i = 2; i < argc; i++) {
        int one = s_retry_one(ctl, argv[i]);
        if (one == NRMCTL_EXIT_USAGE) /* no endpoint or configuration: the same for all */
            return one;
        rc = nrmctl_exit_worse(rc, one);
    }
    return rc;
}

/* Public: deliveries [--state STATE] [--max N] | deliveries retry DELIVERY-ID... */
int nrmctl_deliveries(nrmctl_t *ctl, int argc, char **argv)
{
    if (argc >= 2 && strcmp(argv[1], S_RETRY) == 0)
        return s_retry_command(ctl, argc, argv);
    return s_list_command(ctl, argc, argv);
}
