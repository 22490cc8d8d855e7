/* nrmctl_status: the status command, the first thing an operator runs.
 *
 * One round of requests, all at once: a Ping to each configured service (stats included),
 * GetOccupancy {} to shelter (its waitlist length) and ListDeliveries {state: "failed"} to notify
 * (the number of dead letters, which only a coordinator may see). The answers become one JSON
 * object (printed with --json) from which the plain-text table is drawn. Counts only: no case id,
 * no name. */
#include "nrmctl_commands.h"
#include "nrmctl_ping.h"

#include <ctype.h>
#include <stdio.h>
#include <string.h>

#define S_SHELTER "shelter"
#define S_NOTIFY "notify"
#define S_FAILED_STATE "failed"
#define S_FAILED_MAX 1000 /* the most ListDeliveries returns: beyond it, "at least" */
#define S_EXTRA_CALLS 2   /* GetOccupancy and ListDeliveries */
#define S_COORDINATOR_ONLY "coordinator only"
#define S_NOT_CONFIGURED "not configured"
#define S_CELL 24    /* one cell of the table */
#define S_LAGS 256   /* the consumer column of one row */
#define S_KEY_MAX 64 /* a JSON key built here ("failedDeliveriesError") */
#define S_CAPPED_KEY "failedDeliveriesCapped"

/* The requests of one status round and their replies. */
typedef struct {
    nrmctl_call_t calls[NRMCTL_HEALTH_SERVICE_COUNT + S_EXTRA_CALLS];
    size_t n_services;  /* calls[0 .. n_services) are the pings */
    int occupancy;      /* index of the GetOccupancy call, or -1 */
    int deliveries;     /* index of the ListDeliveries call, or -1 */
    Nrm__V1__Ping ping; /* the bodies the calls point at */
    Nrm__V1__GetOccupancy get_occupancy;
    Nrm__V1__ListDeliveries list_deliveries;
    Nrm__V1__Request ping_req, occupancy_req, deliveries_req;
} s_round_t;

/* Returns the Pong of service in the round, or NULL when it did not answer with one. */
static const Nrm__V1__Pong *s_pong_of(const s_round_t *round, const char *service)
{
    for (size_t i = 0; i < round->n_services; i++) {
        const Nrm__V1__Reply *reply = round->calls[i].reply;
        if (strcmp(round->calls[i].service, service) == 0 &&
            nrmctl_ping_exit(reply) == NRMCTL_EXIT_OK)
            return reply->pong;
    }
    return NULL;
}

/* Builds the calls of the round: the configured services, then shelter's and notify's
 * questions when they are configured. */
static void s_prepare(nrmctl_t *ctl, s_round_t *round)
{
    memset(round, 0, sizeof *round);
    nrm__v1__ping__init(&round->ping);
    nrm__v1__get_occupancy__init(&round->get_occupancy);
    nrm__v1__list_deliveries__init(&round->list_deliveries);
    round->get_occupancy.region = "";
    round->list_deliveries.state = S_FAILED_STATE;
    round->list_deliveries.max = S_FAILED_MAX;
    Nrm__V1__Request *reqs[] = {&round->ping_req, &round->occupancy_req, &round->deliveries_req};
    for (size_t i = 0; i < sizeof reqs / sizeof reqs[0]; i++)
        nrm__v1__request__init(reqs[i]);
    round->ping_req.body_case = NRM__V1__REQUEST__BODY_PING;
    round->ping_req.ping = &round->ping;
    round->occupancy_req.body_case = NRM__V1__REQUEST__BODY_GET_OCCUPANCY;
    round->occupancy_req.get_occupancy = &round->get_occupancy;
    round->deliveries_req.body_case = NRM__V1__REQUEST__BODY_LIST_DELIVERIES;
    round->deliveries_req.list_deliveries = &round->list_deliveries;
    size_t n = 0;
    for (size_t i = 0; nrmctl_health_services[i]; i++) {
        if (!nrmctl_endpoint(ctl, nrmctl_health_services[i], "api_connect"))
            continue;
        round->calls[n].service = nrmctl_health_services[i];
        round->calls[n++].request = &round->ping_req;
    }
    round->n_services = n;
    round->occupancy = round->deliveries = -1;
    if (nrmctl_endpoint(ctl, S_SHELTER, "api_connect")) {
        round->occupancy = (int)n;
        round->calls[n].service = S_SHELTER;
        round->calls[n++].request = &round->occupancy_req;
    }
    if (nrmctl_endpoint(ctl, S_NOTIFY, "api_connect")) {
        round->deliveries = (int)n;
        round->calls[n].service = S_NOTIFY;
        round->calls[n++].request = &round->deliveries_req;
    }
}

/* The number of calls of the round. */
static size_t s_count(const s_round_t *round)
{
    return round->n_services + (round->occupancy >= 0) + (round->deliveries >= 0);
}

/* The consumers of a Pong as JSON: per stream its checkpoint, the head it is measured against
 * (the owner's Pong when it answered, else the consumer's known head) and the lag. */
static json_t *s_consumers(const s_round_t *round, const Nrm__V1__Pong *pong)
{
    json_t *list = json_array();
    for (size_t i = 0; list && i < pong->n_consumers; i++) {
        const Nrm__V1__ConsumerState *c = pong->consumers[i];
        const Nrm__V1__Pong *owner = s_pong_of(round, c->stream);
        int64_t head = owner ? owner->stream_head : c->known_head;
        int64_t lag = head > c->checkpoint ? head - c->checkpoint : 0;
        json_array_append_new(list, json_pack("{s:s, s:I, s:I, s:I}", "stream", c->stream,
                                              "checkpoint", (json_int_t)c->checkpoint, "head",
                                              (json_int_t)head, "lag", (json_int_t)lag));
    }
    return list;
}

/* One service's entry; *rc is worsened by what its ping says. */
static json_t *s_service(const s_round_t *round, const nrmctl_call_t *call, int *rc)
{
    const Nrm__V1__Reply *reply = call->reply;
    int code = nrmctl_ping_exit(reply);
    json_t *entry = json_pack("{s:s}", "service", call->service);
    if (code != NRMCTL_EXIT_OK) {
        json_object_set_new(entry, "healthy", json_false());
        json_object_set_new(entry, "status",
                            json_string(nrm_status_name(reply ? reply->status : NRM_UNAVAILABLE)));
        *rc = nrmctl_exit_worse(*rc, code);
        return entry;
    }
    const Nrm__V1__Pong *pong = reply->pong;
    if (!pong->database_ok)
        *rc = nrmctl_exit_worse(*rc, NRMCTL_EXIT_STATUS);
    json_object_set_new(entry, "healthy", json_boolean(pong->database_ok));
    json_object_set_new(entry, "status", json_string(nrm_status_name(NRM_OK)));
    json_object_set_new(entry, "databaseOk", json_boolean(pong->database_ok));
    json_object_set_new(entry, "streamHead", json_integer((json_int_t)pong->stream_head));
    json_object_set_new(entry, "version", json_string(pong->version));
    json_object_set_new(entry, "consumers", s_consumers(round, pong));
    json_object_set_new(entry, "quarantined", json_integer((json_int_t)pong->quarantined));
    return entry;
}

/* Sets key to the count, or to null with key+"Error" saying why there is none. */
static void s_set_count(json_t *status, const char *key, const nrmctl_call_t *call, bool ok,
                        int64_t count)
{
    char error_key[S_KEY_MAX];
    snprintf(error_key, sizeof error_key, "%sError", key);
    const char *why = NULL;
    if (!call)
        why = S_NOT_CONFIGURED;
    else if (!call->reply)
        why = nrm_status_name(NRM_UNAVAILABLE);
    else if (call->reply->status == NRM_PERMISSION_DENIED)
        why = S_COORDINATOR_ONLY;
    else if (!ok)
        why = nrm_status_name(call->reply->status);
    json_object_set_new(status, key, why ? json_null() : json_integer((json_int_t)count));
    if (why)
        json_object_set_new(status, error_key, json_string(why));
}

/* Adds the waitlist length (Occupancy.waitlist: shelter counts there every waiting request of
 * the region asked about, "" for all; ShelterState.waitlist counts per shelter the requests it
 * could take, which overlap, so they are not summed). */
static void s_waitlist(json_t *status, const s_round_t *round)
{
    const nrmctl_call_t *call = round->occupancy >= 0 ? &round->calls[round->occupancy] : NULL;
    const Nrm__V1__Reply *reply = call ? call->reply : NULL;
    bool ok =
        reply && reply->status == NRM_OK && reply->result_case == NRM__V1__REPLY__RESULT_OCCUPANCY;
    s_set_count(status, "shelterWaitlist", call, ok, ok ? reply->occupancy->waitlist : 0);
}

/* Adds the number of failed deliveries (and whether the list was cut at its maximum). */
static void s_failed(json_t *status, const s_round_t *round)
{
    const nrmctl_call_t *call = round->deliveries >= 0 ? &round->calls[round->deliveries] : NULL;
    const Nrm__V1__Reply *reply = call ? call->reply : NULL;
    bool ok = reply && reply->status == NRM_OK &&
              reply->result_case == NRM__V1__REPLY__RESULT_DELIVERY_LIST;
    int64_t count = ok ? (int64_t)reply->delivery_list->n_deliveries : 0;
    s_set_count(status, "failedDeliveries", call, ok, count);
    if (ok && count >= S_FAILED_MAX)
        json_object_set_new(status, S_CAPPED_KEY, json_true());
}

/* The whole status as JSON; *rc receives the exit code of the services' health. */
static json_t *s_build(const s_round_t *round, int *rc)
{
    *rc = NRMCTL_EXIT_OK;
    json_t *services = json_array();
    for (size_t i = 0; i < round->n_services; i++)
        json_array_append_new(services, s_service(round, &round->calls[i], rc));
    json_t *status =
        json_pack("{s:b, s:o}", "healthy", *rc == NRMCTL_EXIT_OK, "services", services);
    if (status) {
        s_waitlist(status, round);
        s_failed(status, round);
    }
    return status;
}

/* The text of a count that may be missing: the number ("or more" after it when the list it
 * was counted in was cut, capped), or why there is none, in lower case. */
static void s_count_text(const json_t *status, const char *key, bool capped, char *buf, size_t size)
{
    char error_key[S_KEY_MAX];
    snprintf(error_key, sizeof error_key, "%sError", key);
    const json_t *value = json_object_get(status, key);
    if (json_is_integer(value))
        snprintf(buf, size, "%" JSON_INTEGER_FORMAT "%s", json_integer_value(value),
                 capped ? " or more" : "");
    else
        snprintf(buf, size, "%s", json_string_value(json_object_get(status, error_key)));
    for (char *p = buf; *p; p++)
        *p = (char)tolower((unsigned char)*p);
}

/* Writes "stream lag, stream lag" of a service's consumers into buf ("-" for none). */
static void s_lags_text(const json_t *consumers, char *buf, size_t size)
{
    size_t used = 0;
    buf[0] = '\0';
    size_t i;
    json_t *c;
    json_array_foreach(consumers, i, c)
    {
        int n = snprintf(buf + used, size - used, "%s%s %" JSON_INTEGER_FORMAT, i ? ", " : "",
                         json_string_value(json_object_get(c, "stream")),
                         json_integer_value(json_object_get(c, "lag")));
        if (n < 0 || (size_t)n >= size - used)
            break;
        used += (size_t)n;
    }
    if (!buf[0])
        snprintf(buf, size, "-");
}

/* Writes the health of a service entry into buf: "ok", "database down", or its status in
 * lower case ("unavailable", ...). */
static void s_health_text(const json_t *entry, char *buf, size_t size)
{
    if (json_is_true(json_object_get(entry, "healthy")))
        snprintf(buf, size, "ok");
    else if (json_object_get(entry, "databaseOk"))
        snprintf(buf, size, "database down");
    else
        snprintf(buf, size, "%s", json_string_value(json_object_get(entry, "status")));
    for (char *p = buf; *p; p++)
        *p = (char)tolower((unsigned char)*p);
}

/* Prints one row of the table, for a service entry. */
static void s_print_row(const json_t *entry)
{
    const json_t *db = json_object_get(entry, "databaseOk");
    const json_t *head = json_object_get(entry, "streamHead");
    char health[S_CELL], head_text[S_CELL], lags[S_LAGS];
    s_health_text(entry, health, sizeof health);
    if (head)
        snprintf(head_text, sizeof head_text, "%" JSON_INTEGER_FORMAT, json_integer_value(head));
    else
        snprintf(head_text, sizeof head_text, "-");
    s_lags_text(json_object_get(entry, "consumers"), lags, sizeof lags);
    printf("%-10s %-14s %-9s %8s  %s\n", json_string_value(json_object_get(entry, "service")),
           health,
           !db                ? "-"
           : json_is_true(db) ? "ok"
                              : "down",
           head_text, lags);
}

/* Prints the status as a plain-text table. Returns 0, or -1 if stdout fails. */
static int s_print_text(const json_t *status)
{
    printf("%-10s %-14s %-9s %8s  %s\n", "SERVICE", "HEALTH", "DATABASE", "HEAD",
           "CONSUMER LAG (stream lag)");
    size_t i;
    json_t *entry;
    json_array_foreach(json_object_get(status, "services"), i, entry)
    {
        s_print_row(entry);
    }
    char waitlist[S_CELL], failed[S_CELL];
    s_count_text(status, "shelterWaitlist", false, waitlist, sizeof waitlist);
    s_count_text(status, "failedDeliveries", json_is_true(json_object_get(status, S_CAPPED_KEY)),
                 failed, sizeof failed);
    printf("\nshelter waitlist:   %s\nfailed deliveries:  %s\n", waitlist, failed);
    json_int_t quarantined = 0;
    char where[S_LAGS] = "";
    size_t used = 0;
    json_array_foreach(json_object_get(status, "services"), i, entry)
    {
        json_int_t n = json_integer_value(json_object_get(entry, "quarantined"));
        quarantined += n;
        if (n > 0 && used < sizeof where)
            used += (size_t)snprintf(where + used, sizeof where - used,
                                     "%s%s %" JSON_INTEGER_FORMAT, used ? ", " : " (",
                                     json_string_value(json_object_get(entry, "service")), n);
    }
    printf("quarantined events: %" JSON_INTEGER_FORMAT "%s%s\n", quarantined, where,
           used ? ")" : "");
    return fflush(stdout) == 0 && !ferror(stdout) ? 0 : -1;
}

/* Public: status [--json]; 0 healthy, 1 a database down or a refusal, 3 one unavailable. */
int nrmctl_status(nrmctl_t *ctl, int argc, char **argv)
{
    bool as_json = false;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--json") != 0)
            return nrmctl_usage_error(argv[0], "unknown argument %s", argv[i]);
        as_json = true;
    }
    if (!nrmctl_config(ctl))
        return NRMCTL_EXIT_USAGE;
    s_round_t round;
    s_prepare(ctl, &round);
    if (round.n_services == 0) {
        nrmctl_error("no service configured");
        return NRMCTL_EXIT_USAGE;
    }
    int rc = nrmctl_call_each(ctl, round.calls, s_count(&round), ctl->timeout_ms);
    if (rc != NRMCTL_EXIT_OK)
        return rc;
    json_t *status = s_build(&round, &rc);
    nrmctl_calls_clear(round.calls, s_count(&round));
    int written = !status ? -1 : as_json ? nrmctl_print_json(status) : s_print_text(status);
    json_decref(status);
    if (written != 0) {
        nrmctl_error("cannot write to the standard output");
        return NRMCTL_EXIT_USAGE;
    }
    return rc;
}
