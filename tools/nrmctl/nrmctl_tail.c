/* nrmctl_tail: the tail command: options, the streams of the services, the wait loop. */
#include "nrmctl_commands.h"
#include "nrmctl_stream.h"
#include "nrm_time.h"

#include <stdlib.h>
#include <string.h>

#define S_TICK_MS 1000 /* longest wait between checks of the idle deadline */
#define S_NO_FROM (-1) /* --from not given: start from what is live */
#define S_INT_MAX_OPTION INT32_MAX

typedef struct {
    int64_t from;          /* S_NO_FROM, or the first seq to print */
    int64_t count;         /* 0: no limit */
    int64_t idle_ms;       /* 0: never idle out */
    const char **services; /* named services, n_services of them */
    int n_services;
    const char **prefixes; /* topic prefixes, NULL-terminated */
    int n_prefixes;
    nrm_stream_t **streams;
    int n_streams;
} s_tail_t;

/* Takes the value of option argv[*i] into *out if it is an integer in [min, max]. Returns 0,
 * or the usage exit code. */
static int s_int_option(int argc, char **argv, int *i, int64_t min, int64_t *out)
{
    const char *option = argv[*i];
    if (*i + 1 >= argc)
        return nrmctl_usage_error(argv[0], "option %s needs a value", option);
    if (!nrmctl_parse_int(argv[++*i], min, S_INT_MAX_OPTION, out))
        return nrmctl_usage_error(argv[0], "invalid value for %s", option);
    return 0;
}

/* Takes the option at argv[*i] (and its value). Returns 0, or the usage exit code. */
static int s_option(s_tail_t *tail, int argc, char **argv, int *i)
{
    const char *option = argv[*i];
    if (strcmp(option, "--from") == 0)
        return s_int_option(argc, argv, i, 0, &tail->from);
    if (strcmp(option, "--count") == 0)
        return s_int_option(argc, argv, i, 1, &tail->count);
    if (strcmp(option, "--idle-exit") == 0)
        return s_int_option(argc, argv, i, 1, &tail->idle_ms);
    if (strcmp(option, "--service") != 0)
        return nrmctl_usage_error(argv[0], "unknown option %s", option);
    if (*i + 1 >= argc || !nrmctl_service_name_ok(argv[*i + 1]))
        return nrmctl_usage_error(argv[0], "--service needs a service name");
    const char *service = argv[++*i];
    for (int k = 0; k < tail->n_services; k++)
        if (strcmp(tail->services[k], service) == 0)
            return 0; /* named twice: one stream, or every event would print twice */
    tail->services[tail->n_services++] = service;
    return 0;
}

/* Parses the command line into tail (arrays sized for argc). Returns 0, or the exit code. */
static int s_parse(s_tail_t *tail, int argc, char **argv)
{
    bool options = true;
    for (int i = 1; i < argc; i++) {
        if (options && strcmp(argv[i], "--") == 0) {
            options = false;
        } else if (options && argv[i][0] == '-' && argv[i][1]) {
            int rc = s_option(tail, argc, argv, &i);
            if (rc != 0)
                return rc;
        } else {
            tail->prefixes[tail->n_prefixes++] = argv[i];
        }
    }
    return 0;
}

/* Returns the stream whose SUB socket is sock, or NULL. */
static nrm_stream_t *s_stream_of(s_tail_t *tail, void *sock)
{
    for (int i = 0; i < tail->n_streams; i++)
        if (nrm_stream_sub(tail->streams[i]) == sock)
            return tail->streams[i];
    return NULL;
}

/* Returns how long to wait for live events now, or 0 when the idle deadline has passed. */
static int s_wait_ms(const s_tail_t *tail, const nrm_stream_sink_t *sink)
{
    if (tail->idle_ms == 0)
        return S_TICK_MS;
    int64_t left = sink->last_handled_ms + tail->idle_ms - nrm_mono_ms();
    if (left <= 0)
        return 0;
    return left < S_TICK_MS ? (int)left : S_TICK_MS;
}

/* Follows the streams live until the sink is done, the idle deadline or an interrupt. */
static void s_follow(s_tail_t *tail, nrm_stream_sink_t *sink)
{
    zpoller_t *poller = zpoller_new(NULL);
    for (int i = 0; poller && i < tail->n_streams; i++)
        zpoller_add(poller, nrm_stream_sub(tail->streams[i]));
    while (poller && !nrm_stream_sink_done(sink)) {
        int wait_ms = s_wait_ms(tail, sink);
        if (wait_ms == 0)
            break;
        void *sock = zpoller_wait(poller, wait_ms);
        if (!sock && zpoller_terminated(poller))
            break;
        nrm_stream_t *stream = sock ? s_stream_of(tail, sock) : NULL;
        if (stream)
            nrm_stream_on_live(stream, sink);
    }
    zpoller_destroy(&poller);
}

/* Catches up (with --from), then follows live. */
static void s_run(s_tail_t *tail, nrm_stream_sink_t *sink)
{
    sink->last_handled_ms = nrm_mono_ms();
    for (int i = 0; tail->from != S_NO_FROM && i < tail->n_streams; i++)
        if (!nrm_stream_sink_done(sink))
            nrm_stream_start_from(tail->streams[i], tail->from, sink);
    s_follow(tail, sink);
}

/* Public: tail [OPTIONS] [TOPIC-PREFIX...]; exits 0 unless usage or output fails. */
int nrmctl_tail(nrmctl_t *ctl, int argc, char **argv)
{
    s_tail_t tail = {.from = S_NO_FROM};
    tail.services = calloc((size_t)argc, sizeof *tail.services);
    tail.prefixes = calloc((size_t)argc, sizeof *tail.prefixes);
    tail.streams = calloc((size_t)argc + NRMCTL_SERVICE_COUNT, sizeof *tail.streams);
    int rc = tail.services && tail.prefixes && tail.streams ? 0 : NRMCTL_EXIT_UNAVAILABLE;
    if (rc == 0)
        rc = s_parse(&tail, argc, argv);
    if (rc == 0)
        rc = nrmctl_config(ctl) ? nrmctl_streams_open(ctl, argv[0], tail.services, tail.n_services,
                                                      tail.streams, &tail.n_streams)
                                : NRMCTL_EXIT_USAGE;
    nrm_stream_sink_t sink = {.prefixes = tail.prefixes,
                              .limit = tail.count,
                              .on_event = nrmctl_stream_print,
                              .on_problem = nrmctl_stream_problem};
    if (rc == 0) {
        setvbuf(stdout, NULL, _IOLBF, 0);
        s_run(&tail, &sink);
        rc = sink.failed ? NRMCTL_EXIT_USAGE : NRMCTL_EXIT_OK;
    }
    for (int i = 0; i < tail.n_streams; i++)
        nrm_stream_destroy(&tail.streams[i]);
    free(tail.services);
    free(tail.prefixes);
    free(tail.streams);
    return rc;
}
