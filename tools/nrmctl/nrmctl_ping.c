/* nrmctl_ping: Ping services, all at once, and print one JSON line per service, in the order
 * asked: the Pong, or {"service": NAME, "status": STATUS} when there is none. */
#include "nrmctl_commands.h"
#include "nrm_client.h"
#include "nrm_time.h"

#include <stdlib.h>
#include <string.h>

#define S_UUID_SIZE 37

typedef struct {
    const char *service;
    nrm_client_t *client;
    char request_id[S_UUID_SIZE];
    Nrm__V1__Reply *reply;
} s_target_t;

/* Combines two exit codes of pings: unavailable outweighs a non-OK status, which outweighs OK. */
static int s_worse(int a, int b)
{
    if (a == NRMCTL_EXIT_UNAVAILABLE || b == NRMCTL_EXIT_UNAVAILABLE)
        return NRMCTL_EXIT_UNAVAILABLE;
    return a != NRMCTL_EXIT_OK ? a : b;
}

/* Opens a client for target and sends it a Ping. Returns 0, or the usage exit code. */
static int s_send(nrmctl_t *ctl, s_target_t *target)
{
    const char *endpoint = nrmctl_endpoint(ctl, target->service, "api_connect");
    target->client = nrm_client_new(endpoint, ctl->agency_id);
    if (!target->client) {
        nrmctl_error("%s: invalid endpoint %s", target->service, endpoint);
        return NRMCTL_EXIT_USAGE;
    }
    Nrm__V1__Ping ping = NRM__V1__PING__INIT;
    Nrm__V1__Request req = NRM__V1__REQUEST__INIT;
    req.body_case = NRM__V1__REQUEST__BODY_PING;
    req.ping = &ping;
    if (nrm_client_send(target->client, &req, target->request_id) != 0)
        target->request_id[0] = '\0'; /* cannot be sent: it stays unanswered */
    return 0;
}

/* Takes the replies waiting on sock into the targets they answer. Returns how many. */
static size_t s_take(s_target_t *targets, size_t count, void *sock)
{
    size_t taken = 0;
    for (size_t i = 0; i < count; i++) {
        if (nrm_client_socket(targets[i].client) != sock)
            continue;
        Nrm__V1__Reply *reply;
        while ((reply = nrm_client_receive(targets[i].client)) != NULL) {
            if (!targets[i].reply && targets[i].request_id[0] &&
                strcmp(reply->request_id, targets[i].request_id) == 0) {
                targets[i].reply = reply;
                taken++;
            } else {
                nrm__v1__reply__free_unpacked(reply, NULL);
            }
        }
    }
    return taken;
}

/* Waits until every target has its reply or timeout_ms has passed. */
static void s_await(s_target_t *targets, size_t count, int timeout_ms)
{
    zpoller_t *poller = zpoller_new(NULL);
    for (size_t i = 0; poller && i < count; i++)
        zpoller_add(poller, nrm_client_socket(targets[i].client));
    int64_t deadline = nrm_mono_ms() + timeout_ms;
    size_t answered = 0;
    while (poller && answered < count) {
        int64_t left = deadline - nrm_mono_ms();
        void *sock = left > 0 ? zpoller_wait(poller, (int)left) : NULL;
        if (!sock)
            break;
        answered += s_take(targets, count, sock);
    }
    zpoller_destroy(&poller);
}

/* Prints {"service": service, "status": status} (and the error message when there is one). */
static void s_print_status(const char *service, nrm_status_t status, const char *message)
{
    json_t *line = json_pack("{s:s, s:s}", "service", service, "status", nrm_status_name(status));
    if (line && message && message[0])
        json_object_set_new(line, "errorMessage", json_string(message));
    if (!line || nrmctl_print_json(line) != 0)
        nrmctl_error("cannot write the answer of %s", service);
    json_decref(line);
}

/* Prints the line of one target. Returns its exit code. */
static int s_report(const s_target_t *target, int timeout_ms)
{
    const Nrm__V1__Reply *reply = target->reply;
    if (!reply) {
        nrmctl_error("%s: no reply within %d ms", target->service, timeout_ms);
        s_print_status(target->service, NRM_UNAVAILABLE, NULL);
        return NRMCTL_EXIT_UNAVAILABLE;
    }
    if (reply->status != NRM_OK || reply->result_case != NRM__V1__REPLY__RESULT_PONG) {
        s_print_status(target->service, reply->status, reply->error_message);
        return NRMCTL_EXIT_STATUS;
    }
    if (nrmctl_print_message(&reply->pong->base) != 0)
        nrmctl_error("cannot write the answer of %s", target->service);
    return NRMCTL_EXIT_OK;
}

/* Pings every target at once and prints their lines. Returns the exit code. */
static int s_ping_all(nrmctl_t *ctl, s_target_t *targets, size_t count)
{
    int rc = NRMCTL_EXIT_OK;
    for (size_t i = 0; i < count && rc == NRMCTL_EXIT_OK; i++)
        rc = s_send(ctl, &targets[i]);
    if (rc == NRMCTL_EXIT_OK) {
        s_await(targets, count, ctl->timeout_ms);
        for (size_t i = 0; i < count; i++)
            rc = s_worse(rc, s_report(&targets[i], ctl->timeout_ms));
    }
    for (size_t i = 0; i < count; i++) {
        nrm_client_destroy(&targets[i].client);
        if (targets[i].reply)
            nrm__v1__reply__free_unpacked(targets[i].reply, NULL);
    }
    return rc;
}

/* Adds the named services (or the configured default ones) to targets. Returns their count,
 * or -1 after a usage error. */
static int s_collect(nrmctl_t *ctl, int argc, char **argv, s_target_t *targets)
{
    int count = 0;
    for (int i = 1; i < argc; i++) {
        if (!nrmctl_service_name_ok(argv[i])) {
            nrmctl_usage_error(argv[0], "invalid service name");
            return -1;
        }
        if (!nrmctl_endpoint(ctl, argv[i], "api_connect")) {
            nrmctl_error("no endpoint for service '%s' (services.%s.api_connect)", argv[i],
                         argv[i]);
            return -1;
        }
        targets[count++].service = argv[i];
    }
    for (size_t i = 0; argc <= 1 && nrmctl_services[i]; i++)
        if (nrmctl_endpoint(ctl, nrmctl_services[i], "api_connect"))
            targets[count++].service = nrmctl_services[i];
    return count;
}

/* Public: ping [SERVICE...]; the worst exit code of the services. */
int nrmctl_ping(nrmctl_t *ctl, int argc, char **argv)
{
    if (!nrmctl_config(ctl))
        return NRMCTL_EXIT_USAGE;
    size_t room = argc > NRMCTL_SERVICE_COUNT ? (size_t)argc : NRMCTL_SERVICE_COUNT;
    s_target_t *targets = calloc(room, sizeof *targets);
    if (!targets) {
        nrmctl_error("out of memory");
        return NRMCTL_EXIT_UNAVAILABLE;
    }
    int count = s_collect(ctl, argc, argv, targets);
    int rc = count < 0 ? NRMCTL_EXIT_USAGE : s_ping_all(ctl, targets, (size_t)count);
    if (count == 0)
        nrmctl_error("no service configured");
    free(targets);
    return count == 0 ? NRMCTL_EXIT_USAGE : rc;
}
