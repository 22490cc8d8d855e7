/* nrmctl_quarantine: the events a service's consumers set aside after failing to apply them
 * (ListQuarantine), and one applied again once its cause is fixed (RetryQuarantined).
 *
 *   quarantine list SERVICE [--stream STREAM] [--max N]
 *   quarantine retry SERVICE ID */
#include "nrmctl_commands.h"

#include <string.h>

#define S_DEFAULT_MAX 50
#define S_MAX_MAX 500 /* the most a service returns in one list */

/* Sends ListQuarantine and prints each set-aside event as one JSON line (the Reply itself when
 * it is not OK). Returns the exit code. */
static int s_list(nrmctl_t *ctl, const char *service, const char *stream, int max)
{
    Nrm__V1__ListQuarantine list = NRM__V1__LIST_QUARANTINE__INIT;
    list.stream = (char *)stream;
    list.max = max;
    Nrm__V1__Request req = NRM__V1__REQUEST__INIT;
    req.body_case = NRM__V1__REQUEST__BODY_LIST_QUARANTINE;
    req.list_quarantine = &list;
    Nrm__V1__Reply *reply = NULL;
    int rc = nrmctl_call(ctl, service, &req, &reply);
    if (rc != NRMCTL_EXIT_OK)
        return rc;
    if (reply->status != NRM_OK || reply->result_case != NRM__V1__REPLY__RESULT_QUARANTINE_LIST) {
        rc = nrmctl_print_reply(reply);
        rc = rc == NRMCTL_EXIT_OK ? NRMCTL_EXIT_STATUS : rc;
    } else {
        const Nrm__V1__QuarantineList *events = reply->quarantine_list;
        for (size_t i = 0; i < events->n_events && rc == NRMCTL_EXIT_OK; i++)
            if (nrmctl_print_message(&events->events[i]->base) != 0) {
                nrmctl_error("cannot write to the standard output");
                rc = NRMCTL_EXIT_USAGE;
            }
    }
    nrm__v1__reply__free_unpacked(reply, NULL);
    return rc;
}

/* quarantine list SERVICE [--stream STREAM] [--max N]. */
static int s_list_command(nrmctl_t *ctl, int argc, char **argv)
{
    const char *stream = "";
    int64_t max = S_DEFAULT_MAX;
    for (int i = 3; i < argc; i++) {
        const char *option = argv[i];
        bool is_stream = strcmp(option, "--stream") == 0;
        if (!is_stream && strcmp(option, "--max") != 0)
            return nrmctl_usage_error(argv[0], "unknown argument %s", option);
        if (i + 1 >= argc)
            return nrmctl_usage_error(argv[0], "option %s needs a value", option);
        const char *value = argv[++i];
        if (is_stream && nrmctl_service_name_ok(value))
            stream = value;
        else if (is_stream)
            return nrmctl_usage_error(argv[0], "--stream names a service");
        else if (!nrmctl_parse_int(value, 1, S_MAX_MAX, &max))
            return nrmctl_usage_error(argv[0], "--max is from 1 to %d", S_MAX_MAX);
    }
    return s_list(ctl, argv[2], stream, (int)max);
}

/* quarantine retry SERVICE ID: sends RetryQuarantined and prints the Reply. */
static int s_retry_command(nrmctl_t *ctl, int argc, char **argv)
{
    int64_t id = 0;
    if (argc != 4 || !nrmctl_parse_int(argv[3], 1, INT64_MAX, &id))
        return nrmctl_usage_error(argv[0], "retry needs SERVICE and a positive ID");
    Nrm__V1__RetryQuarantined retry = NRM__V1__RETRY_QUARANTINED__INIT;
    retry.id = id;
    Nrm__V1__Request req = NRM__V1__REQUEST__INIT;
    req.body_case = NRM__V1__REQUEST__BODY_RETRY_QUARANTINED;
    req.retry_quarantined = &retry;
    Nrm__V1__Reply *reply = NULL;
    int rc = nrmctl_call(ctl, argv[2], &req, &reply);
    if (rc != NRMCTL_EXIT_OK)
        return rc;
    rc = nrmctl_print_reply(reply);
    nrm__v1__reply__free_unpacked(reply, NULL);
    return rc;
}

int nrmctl_quarantine(nrmctl_t *ctl, int argc, char **argv)
{
    if (argc < 3)
        return nrmctl_usage_error(argv[0], "usage: quarantine list SERVICE | retry SERVICE ID");
    if (!nrmctl_service_name_ok(argv[2]))
        return nrmctl_usage_error(argv[0], "unknown service %s", argv[2]);
    if (strcmp(argv[1], "list") == 0)
        return s_list_command(ctl, argc, argv);
    if (strcmp(argv[1], "retry") == 0)
        return s_retry_command(ctl, argc, argv);
    return nrmctl_usage_error(argv[0], "unknown subcommand %s (list or retry)", argv[1]);
}
