/* nrmctl_ping: requests to several services at once (see nrmctl_ping.h), and the ping command:
 * one JSON line per service, in the order asked: the Pong, or {"service": NAME, "status":
 * STATUS} when there is none. */
#include "nrmctl_ping.h"
#include "nrmctl_commands.h"
#include "nrm_alloc.h"
#include "nrm_time.h"

#include <stdlib.h>
#include <string.h>

/* Public: the exit code of one ping's reply. */
int nrmctl_ping_exit(const Nrm__V1__Reply *reply)
{
    if (!reply)
        return NRMCTL_EXIT_UNAVAILABLE;
    if (reply->status != NRM_OK || reply->result_case != NRM__V1__REPLY__RESULT_PONG)
        return NRMCTL_EXIT_STATUS;
    return NRMCTL_EXIT_OK;
}

/* Opens a client for call and sends its request. Returns 0, or the usage exit code. */
static int s_send(nrmctl_t *ctl, nrmctl_call_t *call)
{
    const char *endpoint = nrmctl_endpoint(ctl, call->service, "api_connect");
    if (!endpoint) {
        nrmctl_error("no endpoint for service '%s' (services.%s.api_connect)", call->service,
                     call->service);
        return NRMCTL_EXIT_USAGE;
    }
    call->client = nrmctl_client(ctl, call->service, endpoint);
    if (!call->client)
        return NRMCTL_EXIT_USAGE;
    if (nrm_client_send(call->client, call->request, call->request_id) != 0)
        call->request_id[0] = '\0'; /* cannot be sent: it stays unanswered */
    return 0;
}

/* Takes the replies waiting on sock into the calls they answer. Returns how many. */
static size_t s_take(nrmctl_call_t *calls, size_t count, void *sock)
{
    size_t taken = 0;
    for (size_t i = 0; i < count; i++) {
        if (!calls[i].client || nrm_client_socket(calls[i].client) != sock)
            continue;
        Nrm__V1__Reply *reply;
        while ((reply = nrm_client_receive(calls[i].client)) != NULL) {
            if (!calls[i].reply && calls[i].request_id[0] &&
                strcmp(reply->request_id, calls[i].request_id) == 0) {
                calls[i].reply = reply;
                taken++;
            } else {
                nrm__v1__reply__free_unpacked(reply, NULL);
            }
        }
    }
    return taken;
}

/* Waits until every call has its reply or timeout_ms has passed. */
static void s_await(nrmctl_call_t *calls, size_t count, int timeout_ms)
{
    zpoller_t *poller = zpoller_new(NULL);
    for (size_t i = 0; poller && i < count; i++)
        zpoller_add(poller, nrm_client_socket(calls[i].client));
    int64_t deadline = nrm_mono_ms() + timeout_ms;
    size_t answered = 0;
    while (poller && answered < count) {
        int64_t left = deadline - nrm_mono_ms();
        void *sock = left > 0 ? zpoller_wait(poller, (int)left) : NULL;
        if (!sock)
            break;
        answered += s_take(calls, count, sock);
    }
    zpoller_destroy(&poller);
}

/* Public: every request out at once, then the replies until the common deadline. */
int nrmctl_call_each(nrmctl_t *ctl, nrmctl_call_t *calls, size_t count, int timeout_ms)
{
    int rc = NRMCTL_EXIT_OK;
    for (size_t i = 0; i < count; i++) {
        calls[i].reply = NULL;
        calls[i].client = NULL;
        calls[i].request_id[0] = '\0';
    }
    for (size_t i = 0; i < count && rc == NRMCTL_EXIT_OK; i++)
        rc = s_send(ctl, &calls[i]);
    if (rc == NRMCTL_EXIT_OK)
        s_await(calls, count, timeout_ms);
    for (size_t i = 0; i < count; i++)
        nrm_client_destroy(&calls[i].client);
    return rc;
}

/* Public: frees the replies. */
void nrmctl_calls_clear(nrmctl_call_t *calls, size_t count)
{
    for (size_t i = 0; i < count; i++) {
        if (calls[i].reply)
            nrm__v1__reply__free_unpacked(calls[i].reply, NULL);
        calls[i].reply = NULL;
    }
}

/* Public: a Ping to each call's service. */
int nrmctl_ping_each(nrmctl_t *ctl, nrmctl_call_t *calls, size_t count)
{
    Nrm__V1__Ping ping = NRM__V1__PING__INIT;
    Nrm__V1__Request req = NRM__V1__REQUEST__INIT;
    req.body_case = NRM__V1__REQUEST__BODY_PING;
    req.ping = &ping;
    for (size_t i = 0; i < count; i++)
        calls[i].request = &req;
    int rc = nrmctl_call_each(ctl, calls, count, ctl->timeout_ms);
    for (size_t i = 0; i < count; i++)
        calls[i].request = NULL; /* req lives on this stack only */
    return rc;
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

/* Prints the line of one call. Returns its exit code. */
static int s_report(const nrmctl_call_t *call, int timeout_ms)
{
    const Nrm__V1__Reply *reply = call->reply;
    int rc = nrmctl_ping_exit(reply);
    if (rc == NRMCTL_EXIT_UNAVAILABLE) {
        nrmctl_error("%s: no reply within %d ms", call->service, timeout_ms);
        s_print_status(call->service, NRM_UNAVAILABLE, NULL);
    } else if (rc == NRMCTL_EXIT_STATUS) {
        s_print_status(call->service, reply->status, reply->error_message);
    } else if (nrmctl_print_message(&reply->pong->base) != 0) {
        nrmctl_error("cannot write the answer of %s", call->service);
    }
    return rc;
}

/* Pings every call's service at once and prints their lines. Returns the exit code. */
static int s_ping_all(nrmctl_t *ctl, nrmctl_call_t *calls, size_t count)
{
    int rc = nrmctl_ping_each(ctl, calls, count);
    if (rc == NRMCTL_EXIT_OK)
        for (size_t i = 0; i < count; i++)
            rc = nrmctl_exit_worse(rc, s_report(&calls[i], ctl->timeout_ms));
    nrmctl_calls_clear(calls, count);
    return rc;
}

/* Adds the named services (or the configured default ones) to calls. Returns their count,
 * or -1 after a usage error. */
static int s_collect(nrmctl_t *ctl, int argc, char **argv, nrmctl_call_t *calls)
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
        calls[count++].service = argv[i];
    }
    for (size_t i = 0; argc <= 1 && nrmctl_health_services[i]; i++)
        if (nrmctl_endpoint(ctl, nrmctl_health_services[i], "api_connect"))
            calls[count++].service = nrmctl_health_services[i];
    return count;
}

/* Public: ping [SERVICE...]; the worst exit code of the services. */
int nrmctl_ping(nrmctl_t *ctl, int argc, char **argv)
{
    if (!nrmctl_config(ctl))
        return NRMCTL_EXIT_USAGE;
    size_t room = argc > NRMCTL_HEALTH_SERVICE_COUNT ? (size_t)argc : NRMCTL_HEALTH_SERVICE_COUNT;
    nrmctl_call_t *calls = nrm_xcalloc(room, sizeof *calls);
    int count = s_collect(ctl, argc, argv, calls);
    int rc = count < 0 ? NRMCTL_EXIT_USAGE : s_ping_all(ctl, calls, (size_t)count);
    if (count == 0)
        nrmctl_error("no service configured");
    free(calls);
    return count == 0 ? NRMCTL_EXIT_USAGE : rc;
}
