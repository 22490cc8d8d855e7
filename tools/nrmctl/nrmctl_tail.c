/* nrmctl_tail: the tail command: options, the streams of the services, the wait loop. */
#include "nrmctl_commands.h"
#include "nrmctl_human.h"
#include "nrmctl_stream.h"
#include "nrm_alloc.h"
#include "nrm_time.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define S_TICK_MS 1000 /* longest wait between checks of the idle deadline */
#define S_NO_FROM (-1) /* --from not given: start from what is live */
#define S_INT_MAX_OPTION INT32_MAX

/* Output: JSON lines, or lines for people (the default when stdout is a terminal). */
typedef enum { S_OUTPUT_AUTO, S_OUTPUT_JSON, S_OUTPUT_HUMAN } s_output_t;

/* One line for people held back while catching up, to be printed in time order. */
typedef struct {
    int64_t at_ms;   /* occurred_at_ms */
    int64_t arrival; /* order of arrival: each stream's own order among equal times */
    char *line;
} s_held_t;

/* The human output: while catching up lines are held, then sorted by time across streams and
 * printed; live they are printed as they come. */
typedef struct {
    int stream_width;
    bool holding;
    s_held_t *held;
    size_t n_held, cap_held;
} s_human_t;

typedef struct {
    int64_t from; /* S_NO_FROM, or the first seq to print */
    s_output_t output;
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
    if (strcmp(option, "--human") == 0 || strcmp(option, "--json") == 0) {
        tail->output = option[2] == 'h' ? S_OUTPUT_HUMAN : S_OUTPUT_JSON;
        return 0;
    }
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

/* Prints one line and flushes. Returns 0, or -1 after saying so. */
static int s_put_line(const char *line)
{
    if (puts(line) == EOF || fflush(stdout) != 0) {
        nrmctl_error("cannot write to the standard output");
        return -1;
    }
    return 0;
}

/* The sink's callback in human output: the event's line, held or printed. */
static int s_human_event(const Nrm__V1__Event *ev, void *arg)
{
    s_human_t *human = arg;
    char *line = nrmctl_human_line(ev, "", human->stream_width);
    if (!line)
        return -1;
    if (!human->holding) {
        int rc = s_put_line(line);
        free(line);
        return rc;
    }
    if (human->n_held == human->cap_held) {
        size_t cap = human->cap_held ? human->cap_held * 2 : 256;
        s_held_t *held = nrm_xreallocarray(human->held, cap, sizeof *held);
        human->held = held;
        human->cap_held = cap;
    }
    human->held[human->n_held] =
        (s_held_t){.at_ms = ev->occurred_at_ms, .arrival = (int64_t)human->n_held, .line = line};
    human->n_held++;
    return 0;
}

/* Orders held lines by time, then by arrival. */
static int s_held_cmp(const void *a, const void *b)
{
    const s_held_t *x = a, *y = b;
    if (x->at_ms != y->at_ms)
        return x->at_ms < y->at_ms ? -1 : 1;
    return x->arrival < y->arrival ? -1 : (x->arrival > y->arrival);
}

/* Prints the held lines in time order and stops holding. */
static void s_human_release(s_human_t *human, nrm_stream_sink_t *sink)
{
    qsort(human->held, human->n_held, sizeof *human->held, s_held_cmp);
    for (size_t i = 0; i < human->n_held; i++) {
        if (!sink->failed && s_put_line(human->held[i].line) != 0)
            sink->failed = true;
        free(human->held[i].line);
    }
    free(human->held);
    human->held = NULL;
    human->n_held = human->cap_held = 0;
    human->holding = false;
}

/* Catches up (with --from; in human output every stream before printing, in time order), then
 * follows live. */
static void s_run(s_tail_t *tail, nrm_stream_sink_t *sink, s_human_t *human)
{
    sink->last_handled_ms = nrm_mono_ms();
    if (human)
        human->holding = tail->from != S_NO_FROM;
    for (int i = 0; tail->from != S_NO_FROM && i < tail->n_streams; i++)
        if (!nrm_stream_sink_done(sink))
            nrm_stream_start_from(tail->streams[i], tail->from, sink);
    if (human)
        s_human_release(human, sink);
    s_follow(tail, sink);
}

/* The widest name of the streams, for aligning human lines. */
static int s_stream_width(const s_tail_t *tail)
{
    int width = 0;
    for (int i = 0; i < tail->n_streams; i++) {
        int n = (int)strlen(nrm_stream_name(tail->streams[i]));
        width = n > width ? n : width;
    }
    return width;
}

/* Public: tail [OPTIONS] [TOPIC-PREFIX...]; exits 0 unless usage or output fails. */
int nrmctl_tail(nrmctl_t *ctl, int argc, char **argv)
{
    s_tail_t tail = {.from = S_NO_FROM};
    tail.services = nrm_xcalloc((size_t)argc, sizeof *tail.services);
    tail.prefixes = nrm_xcalloc((size_t)argc, sizeof *tail.prefixes);
    tail.streams = nrm_xcalloc((size_t)argc + NRMCTL_SERVICE_COUNT, sizeof *tail.streams);
    int rc = s_parse(&tail, argc, argv);
    if (rc == 0)
        rc = nrmctl_config(ctl) ? nrmctl_streams_open(ctl, argv[0], tail.services, tail.n_services,
                                                      tail.streams, &tail.n_streams)
                                : NRMCTL_EXIT_USAGE;
    nrm_stream_sink_t sink = {.prefixes = tail.prefixes,
                              .limit = tail.count,
                              .on_event = nrmctl_stream_print,
                              .on_problem = nrmctl_stream_problem};
    s_human_t human = {0};
    bool is_human =
        tail.output == S_OUTPUT_HUMAN || (tail.output == S_OUTPUT_AUTO && isatty(STDOUT_FILENO));
    if (rc == 0) {
        setvbuf(stdout, NULL, _IOLBF, 0);
        if (is_human) {
            human.stream_width = s_stream_width(&tail);
            sink.on_event = s_human_event;
            sink.arg = &human;
        }
        s_run(&tail, &sink, is_human ? &human : NULL);
        rc = sink.failed ? NRMCTL_EXIT_USAGE : NRMCTL_EXIT_OK;
    }
    for (int i = 0; i < tail.n_streams; i++)
        nrm_stream_destroy(&tail.streams[i]);
    free(tail.services);
    free(tail.prefixes);
    free(tail.streams);
    return rc;
}
