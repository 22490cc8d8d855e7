/* nrmctl_top: the top command: replays every stream from seq 1 into the model (the streams of
 * tail, with a callback instead of printing), then follows them live and redraws the view
 * every interval, asking shelter for its occupancy and notify for its failed deliveries at
 * each refresh. --once prints one JSON snapshot once every stream has reached its head. */
#include "nrmctl_commands.h"
#include "nrmctl_ping.h"
#include "nrmctl_stream.h"
#include "nrmctl_top_model.h"
#include "nrmctl_top_view.h"
#include "nrm_alloc.h"
#include "nrm_time.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <termios.h>
#include <unistd.h>

#define S_DEFAULT_INTERVAL_MS 1000
#define S_MIN_INTERVAL_MS 100
#define S_MAX_INTERVAL_MS 3600000 /* one hour */
#define S_SHELTER "shelter"
#define S_NOTIFY "notify"
#define S_FAILED_STATE "failed"
#define S_FAILED_MAX 1000 /* the most ListDeliveries returns */
#define S_CALLS 2         /* GetOccupancy, ListDeliveries */
#define S_KEYS_MAX 16     /* keys read from the terminal at once */
#define S_QUIT_KEY 'q'
#define S_QUIT_KEY_UPPER 'Q'

typedef struct {
    int64_t interval_ms;
    bool once;
    const char **services; /* named services, n_services of them */
    int n_services;
    nrm_stream_t **streams;
    int n_streams;
    nrmctl_top_model_t *model;
    bool raw_terminal; /* stdin switched to key-at-a-time; saved holds how it was */
    struct termios saved;
} s_top_t;

/* Takes the option at argv[*i] (and its value). Returns 0, or the usage exit code. */
static int s_option(s_top_t *top, int argc, char **argv, int *i)
{
    const char *option = argv[*i];
    if (strcmp(option, "--once") == 0) {
        top->once = true;
        return 0;
    }
    bool interval = strcmp(option, "--interval") == 0;
    if (!interval && strcmp(option, "--service") != 0)
        return nrmctl_usage_error(argv[0], "unknown argument %s", option);
    if (*i + 1 >= argc)
        return nrmctl_usage_error(argv[0], "option %s needs a value", option);
    const char *value = argv[++*i];
    if (interval) {
        if (!nrmctl_parse_int(value, S_MIN_INTERVAL_MS, S_MAX_INTERVAL_MS, &top->interval_ms))
            return nrmctl_usage_error(argv[0], "--interval is from %d to %d ms", S_MIN_INTERVAL_MS,
                                      S_MAX_INTERVAL_MS);
        return 0;
    }
    if (!nrmctl_service_name_ok(value))
        return nrmctl_usage_error(argv[0], "--service needs a service name");
    for (int k = 0; k < top->n_services; k++)
        if (strcmp(top->services[k], value) == 0)
            return 0; /* named twice: one stream, or its events would count twice */
    top->services[top->n_services++] = value;
    return 0;
}

/* Asks shelter for its occupancy and notify for the failed deliveries, at once, waiting at
 * most timeout_ms, and gives the answers to the model. */
static void s_refresh(nrmctl_t *ctl, s_top_t *top, int timeout_ms)
{
    Nrm__V1__GetOccupancy occupancy = NRM__V1__GET_OCCUPANCY__INIT;
    Nrm__V1__ListDeliveries failed = NRM__V1__LIST_DELIVERIES__INIT;
    failed.state = S_FAILED_STATE;
    failed.max = S_FAILED_MAX;
    Nrm__V1__Request occupancy_req = NRM__V1__REQUEST__INIT, failed_req = NRM__V1__REQUEST__INIT;
    occupancy_req.body_case = NRM__V1__REQUEST__BODY_GET_OCCUPANCY;
    occupancy_req.get_occupancy = &occupancy;
    failed_req.body_case = NRM__V1__REQUEST__BODY_LIST_DELIVERIES;
    failed_req.list_deliveries = &failed;
    nrmctl_call_t calls[S_CALLS];
    memset(calls, 0, sizeof calls);
    size_t n = 0;
    int occupancy_at = -1, failed_at = -1;
    if (nrmctl_endpoint(ctl, S_SHELTER, "api_connect")) {
        occupancy_at = (int)n;
        calls[n++] = (nrmctl_call_t){.service = S_SHELTER, .request = &occupancy_req};
    } else {
        nrmctl_top_model_not_configured(top->model, S_SHELTER);
    }
    if (nrmctl_endpoint(ctl, S_NOTIFY, "api_connect")) {
        failed_at = (int)n;
        calls[n++] = (nrmctl_call_t){.service = S_NOTIFY, .request = &failed_req};
    } else {
        nrmctl_top_model_not_configured(top->model, S_NOTIFY);
    }
    if (n == 0 || nrmctl_call_each(ctl, calls, n, timeout_ms) != NRMCTL_EXIT_OK)
        return;
    if (occupancy_at >= 0)
        nrmctl_top_model_set_occupancy(top->model, calls[occupancy_at].reply);
    if (failed_at >= 0)
        nrmctl_top_model_set_failed(top->model, calls[failed_at].reply);
    nrmctl_calls_clear(calls, n);
}

/* Replays every stream from seq 1 into the model. Returns true when each reached its head. */
static bool s_replay(s_top_t *top, nrm_stream_sink_t *sink)
{
    bool all = true;
    for (int i = 0; i < top->n_streams && !nrm_stream_sink_done(sink); i++)
        all &= nrm_stream_start_from(top->streams[i], 1, sink);
    return all && !sink->failed;
}

/* --once: the snapshot as one line of JSON (keys sorted). Returns 0, or -1. */
static int s_print_snapshot(s_top_t *top)
{
    json_t *snapshot = nrmctl_top_model_snapshot(top->model, nrm_now_ms());
    char *text = snapshot ? json_dumps(snapshot, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
    int rc = text && puts(text) != EOF && fflush(stdout) == 0 ? 0 : -1;
    free(text);
    json_decref(snapshot);
    return rc;
}

/* Draws the current snapshot (on a terminal, in as many lines as it has). Returns 0, or -1
 * when stdout cannot be written. */
static int s_draw(s_top_t *top, bool ansi)
{
    struct winsize size = {0};
    int rows = ansi && ioctl(STDOUT_FILENO, TIOCGWINSZ, &size) == 0 ? size.ws_row : 0;
    int64_t now = nrm_now_ms();
    json_t *snapshot = nrmctl_top_model_snapshot(top->model, now);
    int rc =
        snapshot ? nrmctl_top_view_draw(stdout, snapshot, ansi, rows, top->interval_ms, now) : -1;
    json_decref(snapshot);
    return rc;
}

/* Switches a terminal on stdin to key-at-a-time without echo (Ctrl-C still interrupts). */
static void s_raw_terminal(s_top_t *top)
{
    if (!isatty(STDIN_FILENO) || tcgetattr(STDIN_FILENO, &top->saved) != 0)
        return;
    struct termios raw = top->saved;
    raw.c_lflag &= ~(tcflag_t)(ICANON | ECHO);
    raw.c_cc[VMIN] = 0;
    raw.c_cc[VTIME] = 0;
    top->raw_terminal = tcsetattr(STDIN_FILENO, TCSANOW, &raw) == 0;
}

/* Gives the terminal back as it was. */
static void s_restore_terminal(s_top_t *top)
{
    if (top->raw_terminal)
        tcsetattr(STDIN_FILENO, TCSANOW, &top->saved);
    top->raw_terminal = false;
}

/* Reads the keys waiting on the terminal. Returns true when one asks to quit, or when the
 * terminal is gone (readable, yet nothing to read). */
static bool s_quit_key(void)
{
    char keys[S_KEYS_MAX];
    ssize_t n = read(STDIN_FILENO, keys, sizeof keys);
    if (n == 0)
        return true;
    for (ssize_t i = 0; i < n; i++)
        if (keys[i] == S_QUIT_KEY || keys[i] == S_QUIT_KEY_UPPER)
            return true;
    return false;
}

/* Follows the streams live, redrawing every interval, until q, Ctrl-C or a write error.
 * Returns the exit code. */
static int s_follow(nrmctl_t *ctl, s_top_t *top, nrm_stream_sink_t *sink)
{
    bool ansi = isatty(STDOUT_FILENO);
    int n_items = top->n_streams + (top->raw_terminal ? 1 : 0);
    zmq_pollitem_t *items = nrm_xcalloc((size_t)n_items, sizeof *items);
    for (int i = 0; i < top->n_streams; i++)
        items[i] =
            (zmq_pollitem_t){zsock_resolve(nrm_stream_sub(top->streams[i])), 0, ZMQ_POLLIN, 0};
    if (top->raw_terminal)
        items[top->n_streams] = (zmq_pollitem_t){NULL, STDIN_FILENO, ZMQ_POLLIN, 0};
    int refresh_ms = top->interval_ms < ctl->timeout_ms ? (int)top->interval_ms : ctl->timeout_ms;
    if (ansi)
        nrmctl_top_view_enter(stdout);
    int64_t next_draw = nrm_mono_ms();
    int rc = NRMCTL_EXIT_OK;
    while (!zsys_interrupted && !sink->failed) {
        int64_t wait = next_draw - nrm_mono_ms();
        if (wait <= 0) {
            s_refresh(ctl, top, refresh_ms);
            if (s_draw(top, ansi) != 0)
                break;
            next_draw = nrm_mono_ms() + top->interval_ms;
            continue;
        }
        if (zmq_poll(items, n_items, (long)wait) < 0 && errno != EINTR)
            break;
        for (int i = 0; i < top->n_streams; i++)
            if (items[i].revents & ZMQ_POLLIN)
                nrm_stream_on_live(top->streams[i], sink);
        if (top->raw_terminal && (items[top->n_streams].revents & ZMQ_POLLIN) && s_quit_key())
            break;
    }
    if (ansi)
        nrmctl_top_view_leave(stdout);
    if (sink->failed) {
        nrmctl_error("out of memory");
        rc = NRMCTL_EXIT_UNAVAILABLE;
    } else if (ferror(stdout)) {
        nrmctl_error("cannot write to the standard output");
        rc = NRMCTL_EXIT_USAGE;
    }
    free(items);
    return rc;
}

/* Replays, then prints one snapshot (--once) or follows live. Returns the exit code. */
static int s_run(nrmctl_t *ctl, s_top_t *top)
{
    nrm_stream_sink_t sink = {
        .on_event = nrmctl_top_model_add, .on_problem = nrmctl_stream_problem, .arg = top->model};
    bool caught_up = s_replay(top, &sink);
    if (sink.failed) {
        nrmctl_error("out of memory");
        return NRMCTL_EXIT_UNAVAILABLE;
    }
    if (!top->once) {
        s_raw_terminal(top);
        int rc = s_follow(ctl, top, &sink);
        s_restore_terminal(top);
        return rc;
    }
    s_refresh(ctl, top, ctl->timeout_ms);
    if (s_print_snapshot(top) != 0) {
        nrmctl_error("cannot write to the standard output");
        return NRMCTL_EXIT_USAGE;
    }
    return caught_up ? NRMCTL_EXIT_OK : NRMCTL_EXIT_UNAVAILABLE;
}

/* Public: top [--interval MS] [--once] [--service NAME]... */
int nrmctl_top(nrmctl_t *ctl, int argc, char **argv)
{
    s_top_t top = {.interval_ms = S_DEFAULT_INTERVAL_MS};
    top.services = nrm_xcalloc((size_t)argc, sizeof *top.services);
    top.streams = nrm_xcalloc((size_t)argc + NRMCTL_SERVICE_COUNT, sizeof *top.streams);
    top.model = nrmctl_top_model_new();
    int rc = top.model ? 0 : NRMCTL_EXIT_UNAVAILABLE;
    for (int i = 1; rc == 0 && i < argc; i++)
        rc = s_option(&top, argc, argv, &i);
    if (rc == 0)
        rc = nrmctl_config(ctl) ? nrmctl_streams_open(ctl, argv[0], top.services, top.n_services,
                                                      top.streams, &top.n_streams)
                                : NRMCTL_EXIT_USAGE;
    if (rc == 0)
        rc = s_run(ctl, &top);
    for (int i = 0; i < top.n_streams; i++)
        nrm_stream_destroy(&top.streams[i]);
    nrmctl_top_model_destroy(&top.model);
    free(top.services);
    free(top.streams);
    return rc;
}
