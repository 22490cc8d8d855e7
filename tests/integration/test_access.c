/* Access through CURVE, against a real nrm-intake: the key decides who is speaking and who may
 * listen; unknown, rotated-out and misnamed keys get nothing; what crosses the wire is
 * ciphertext; slow subscribers cost bounded memory. */
#define _GNU_SOURCE /* memmem */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "harness.h"
#include "nrm_crypto.h"
#include "scenario.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define NAME "Access Person Zainab"
#define DOB "1993-02-11"
#define WAIT_MS 5000
#define SILENCE_MS 2000 /* how long "gets nothing" is watched */
#define STUCK_SUBSCRIBERS 40
#define FLOOD_EVENTS 20000
#define RSS_GROWTH_BOUND_KB (20 * 1024) /* what 40 stuck subscribers may cost intake */
#define RELAY_CAPTURE (8 * 1024 * 1024)
#define THIEF_HOLD_MS 1500 /* longer than a bind was ever retried in the reactor (1 s) */
#define THIEF_ROUNDS 5
#define PING_EVERY_MS 50
#define PING_PROMPT_MS 250

static harness_t *h;

static int setup(void **state)
{
    h = harness_new(*state ? (const char *)*state : "access");
    return 0;
}

static int teardown(void **state)
{
    harness_destroy(&h);
    return 0;
}

/* Submits a report of a new person as whoever client's key is; returns the reply or NULL. */
static Nrm__V1__Reply *s_submit(nrm_client_t *client, const char *agency_id, const char *name)
{
    scenario_report_t s;
    scenario_adult_woman(&s, "MA-06", name, DOB);
    s.request.agency_id = (char *)agency_id;
    nrm_error_t err;
    return nrm_client_call(client, &s.request, SILENCE_MS, &err);
}

/* A SUB on endpoint with curve's keys, subscribed to everything. */
static zsock_t *s_subscriber(const char *endpoint, const nrm_curve_t *curve, int rcvhwm)
{
    zsock_t *sub = zsock_new(ZMQ_SUB);
    assert_non_null(sub);
    zsock_set_rcvhwm(sub, rcvhwm);
    if (rcvhwm == 1)
        zsock_set_rcvbuf(sub, 4096); /* a subscriber that never reads: small kernel buffer */
    zsock_set_subscribe(sub, "");
    nrm_auth_apply_client(sub, curve);
    assert_int_equal(zsock_connect(sub, "%s", endpoint), 0);
    return sub;
}

/* True when anything arrives on sock within timeout_ms (a heartbeat comes every 500 ms). */
static bool s_hears(zsock_t *sock, int timeout_ms)
{
    zpoller_t *poller = zpoller_new(sock, NULL);
    bool heard = zpoller_wait(poller, timeout_ms) != NULL;
    zpoller_destroy(&poller);
    if (heard) {
        zmsg_t *msg = zmsg_recv(sock);
        zmsg_destroy(&msg);
    }
    return heard;
}

/* Drains sock for timeout_ms; true when any message arrived. */
static bool s_heard_anything(zsock_t *sock, int timeout_ms)
{
    bool heard = false;
    int64_t deadline = zclock_mono() + timeout_ms;
    while (zclock_mono() < deadline)
        heard = s_hears(sock, (int)(deadline - zclock_mono())) || heard;
    return heard;
}

static void test_an_unknown_key_gets_no_session(void **state)
{
    assert_int_equal(harness_start(h, "intake", 0), 0);
    /* a key the configuration does not list: a stranger's */
    nrm_client_t *stranger = harness_client_new(h, "intake", 0, "not-an-agency");
    Nrm__V1__Reply *reply = s_submit(stranger, "", NAME);
    assert_null(reply);
    nrm_client_destroy(&stranger);
    assert_int_equal(harness_sql_int(h, "SELECT count(*) FROM intake.cases"), 0);
    assert_true(harness_counter(h, "intake", "sessions_refused") >= 1);
    /* logged with a fingerprint, never the key itself */
    assert_true(harness_log_contains(h, "intake", 0, "connection refused"));
    assert_false(harness_log_contains(h, "intake", 0, harness_public_key(h, "not-an-agency")));
}

static void test_a_known_key_naming_another_agency_is_permission_denied(void **state)
{
    assert_int_equal(harness_start(h, "intake", 0), 0);
    nrm_client_t *police = harness_client_new(h, "intake", 0, "police-ma-06");
    Nrm__V1__Reply *reply = s_submit(police, "coordinator", NAME);
    assert_non_null(reply);
    assert_int_equal(reply->status, NRM__V1__STATUS__STATUS_PERMISSION_DENIED);
    assert_string_equal(reply->error_field, "agency_id");
    nrm__v1__reply__free_unpacked(reply, NULL);
    nrm_client_destroy(&police);
    assert_int_equal(harness_sql_int(h, "SELECT count(*) FROM intake.cases"), 0);
    /* audited under the agency the key belongs to */
    assert_int_equal(harness_sql_int(h, "SELECT count(*) FROM intake.audit_log WHERE agency_id = "
                                        "'police-ma-06' AND status = 'PERMISSION_DENIED' AND "
                                        "error_field = 'agency_id'"),
                     1);
}

static void test_the_key_decides_who_reports_when_agency_id_is_empty(void **state)
{
    assert_int_equal(harness_start(h, "intake", 0), 0);
    nrm_client_t *police = harness_client_new(h, "intake", 0, "police-ma-06");
    Nrm__V1__Reply *reply = s_submit(police, "", NAME);
    assert_non_null(reply);
    assert_int_equal(reply->status, NRM__V1__STATUS__STATUS_OK);
    nrm__v1__reply__free_unpacked(reply, NULL);
    nrm_client_destroy(&police);
    assert_int_equal(harness_sql_int(h, "SELECT count(*) FROM intake.audit_log WHERE agency_id = "
                                        "'police-ma-06' AND kind = 'submit_report' AND status = "
                                        "'OK'"),
                     1);
}

static void test_a_rotated_out_key_is_refused_after_sighup_also_on_an_open_connection(void **state)
{
    zcert_t *fresh = zcert_new();
    const char *old_key = harness_public_key(h, "police-ma-06");
    harness_agency_keys(h, "police-ma-06", json_pack("[s, s]", old_key, zcert_public_txt(fresh)));
    assert_int_equal(harness_start(h, "intake", 0), 0);
    nrm_client_t *old_client = harness_client_new(h, "intake", 0, "police-ma-06");
    nrm_curve_t curve;
    harness_curve(h, "intake", "police-ma-06", &curve);
    curve.cert = fresh;
    nrm_client_t *new_client = nrm_client_new(harness_api(h, "intake", 0), "", &curve);
    Nrm__V1__Reply *reply = s_submit(old_client, "", "Rotation Person One");
    assert_int_equal(reply->status, NRM__V1__STATUS__STATUS_OK);
    nrm__v1__reply__free_unpacked(reply, NULL);
    reply = s_submit(new_client, "", "Rotation Person Two");
    assert_int_equal(reply->status, NRM__V1__STATUS__STATUS_OK);
    nrm__v1__reply__free_unpacked(reply, NULL);

    /* the old key is removed: the connection already open is refused from then on */
    harness_agency_keys(h, "police-ma-06", json_pack("[s]", zcert_public_txt(fresh)));
    harness_reload(h, "intake", 0);
    int64_t deadline = zclock_mono() + WAIT_MS;
    int status = NRM__V1__STATUS__STATUS_OK;
    long long accepted_before_reload = -1; /* SIGHUP is taken within half a second */
    while (status == NRM__V1__STATUS__STATUS_OK && zclock_mono() < deadline) {
        accepted_before_reload++;
        zclock_sleep(100);
        char name[64];
        snprintf(name, sizeof name, "Rotation Person Three-%lld", accepted_before_reload);
        reply = s_submit(old_client, "", name);
        assert_non_null(reply);
        status = reply->status;
        nrm__v1__reply__free_unpacked(reply, NULL);
    }
    assert_int_equal(status, NRM__V1__STATUS__STATUS_UNAUTHENTICATED);
    /* a new connection with the old key gets no session; the new key still works */
    nrm_client_t *again = harness_client_new(h, "intake", 0, "police-ma-06");
    assert_null(s_submit(again, "", "Rotation Person Four"));
    reply = s_submit(new_client, "", "Rotation Person Five");
    assert_int_equal(reply->status, NRM__V1__STATUS__STATUS_OK);
    nrm__v1__reply__free_unpacked(reply, NULL);
    assert_int_equal(harness_sql_int(h, "SELECT count(*) FROM intake.cases"),
                     3 + accepted_before_reload);
    nrm_client_destroy(&again);
    nrm_client_destroy(&old_client);
    nrm_client_destroy(&new_client);
    zcert_destroy(&fresh);
}

static void test_only_services_and_event_readers_may_subscribe(void **state)
{
    assert_int_equal(harness_start(h, "intake", 0), 0);
    nrm_curve_t police, coordinator, routing;
    harness_curve(h, "intake", "police-ma-06", &police);
    harness_curve(h, "intake", "coordinator", &coordinator);
    harness_curve(h, "intake", "service:routing", &routing);
    zsock_t *subs[3] = {s_subscriber(harness_events(h, "intake", 0), &police, 1000),
                        s_subscriber(harness_events(h, "intake", 0), &coordinator, 1000),
                        s_subscriber(harness_events(h, "intake", 0), &routing, 1000)};
    assert_false(s_heard_anything(subs[0], SILENCE_MS));
    assert_true(s_hears(subs[1], WAIT_MS));
    assert_true(s_hears(subs[2], WAIT_MS));
    for (int i = 0; i < 3; i++)
        zsock_destroy(&subs[i]);
}

static void test_a_fetch_by_an_agency_that_may_not_read_streams_is_refused(void **state)
{
    assert_int_equal(harness_start(h, "intake", 0), 0);
    Nrm__V1__Fetch fetch = NRM__V1__FETCH__INIT;
    fetch.stream = "intake";
    fetch.from_seq = 1;
    Nrm__V1__Request req = NRM__V1__REQUEST__INIT;
    scenario_request(&req, NRM__V1__REQUEST__BODY_FETCH, &fetch);
    Nrm__V1__Reply *reply = harness_call(h, "intake", "police-ma-06", &req);
    assert_non_null(reply);
    assert_int_equal(reply->status, NRM__V1__STATUS__STATUS_PERMISSION_DENIED);
    nrm__v1__reply__free_unpacked(reply, NULL);
    reply = harness_call(h, "intake", "coordinator", &req);
    assert_int_equal(reply->status, NRM__V1__STATUS__STATUS_OK);
    nrm__v1__reply__free_unpacked(reply, NULL);
}

static void test_a_removed_reader_key_is_dropped_from_the_events_socket(void **state)
{
    assert_int_equal(harness_start(h, "intake", 0), 0);
    nrm_curve_t coordinator;
    harness_curve(h, "intake", "coordinator", &coordinator);
    zsock_t *sub = s_subscriber(harness_events(h, "intake", 0), &coordinator, 1000);
    assert_true(s_hears(sub, WAIT_MS));
    zcert_t *other = zcert_new();
    harness_agency_keys(h, "coordinator", json_pack("[s]", zcert_public_txt(other)));
    harness_reload(h, "intake", 0);
    /* the events socket is bound again: the subscriber must authenticate again, and fails */
    zclock_sleep(1000);
    s_heard_anything(sub, 500); /* what was queued before the re-bind */
    assert_false(s_heard_anything(sub, SILENCE_MS));
    zsock_destroy(&sub);
    zcert_destroy(&other);
    assert_true(harness_log_contains(h, "intake", 0, "events socket bound again"));
}

/* Another process that takes a TCP port the moment it is free and holds it for hold_ms. */
typedef struct {
    int port;
    int hold_ms;
    atomic_bool stop;
    atomic_bool won;
    pthread_t thread;
} s_thief_t;

static void *s_thief_run(void *arg)
{
    s_thief_t *t = arg;
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((uint16_t)t->port)};
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    while (!atomic_load(&t->stop)) {
        int fd = socket(AF_INET, SOCK_STREAM, 0);
        int one = 1;
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one); /* as ZeroMQ's listener */
        if (bind(fd, (struct sockaddr *)&addr, sizeof addr) == 0 && listen(fd, 1) == 0) {
            atomic_store(&t->won, true);
            usleep((useconds_t)t->hold_ms * 1000);
            close(fd);
            return NULL;
        }
        close(fd);
        usleep(200);
    }
    return NULL;
}

/* Pings intake as the coordinator: the milliseconds the answer took, -1 when none came. */
static int64_t s_ping_ms(nrm_client_t *client)
{
    Nrm__V1__Ping ping = NRM__V1__PING__INIT;
    Nrm__V1__Request req = NRM__V1__REQUEST__INIT;
    req.body_case = NRM__V1__REQUEST__BODY_PING;
    req.ping = &ping;
    nrm_error_t err;
    int64_t started = zclock_mono();
    Nrm__V1__Reply *reply = nrm_client_call(client, &req, WAIT_MS, &err);
    int64_t took = zclock_mono() - started;
    bool ok = reply && reply->status == NRM__V1__STATUS__STATUS_OK;
    if (reply)
        nrm__v1__reply__free_unpacked(reply, NULL);
    return ok ? took : -1;
}

static void
test_the_service_answers_while_its_events_port_is_taken_and_binds_it_once_free(void **state)
{
    assert_int_equal(harness_start(h, "intake", 0), 0);
    int port = 0;
    assert_int_equal(sscanf(harness_events(h, "intake", 0), "tcp://127.0.0.1:%d", &port), 1);
    nrm_client_t *client = harness_client_new(h, "intake", 0, "coordinator");
    s_thief_t thief = {.port = port, .hold_ms = THIEF_HOLD_MS};
    assert_int_equal(pthread_create(&thief.thread, NULL, s_thief_run, &thief), 0);
    /* a removed key makes intake bind its events socket again; the thief may lose the race for
     * the port to intake's own bind: remove another key until it wins */
    for (int round = 0; round < THIEF_ROUNDS && !atomic_load(&thief.won); round++) {
        zcert_t *fresh = zcert_new();
        harness_agency_keys(h, "police-ma-06", json_pack("[s]", zcert_public_txt(fresh)));
        zcert_destroy(&fresh);
        harness_reload(h, "intake", 0);
        for (int i = 0; i < 40 && !atomic_load(&thief.won); i++)
            usleep(50 * 1000);
    }
    bool won = atomic_load(&thief.won);
    if (!won) {
        atomic_store(&thief.stop, true);
        pthread_join(thief.thread, NULL);
    }
    assert_true(won);
    /* while another process holds the port, intake answers at once */
    int64_t worst = 0;
    for (int i = 0; i < THIEF_HOLD_MS / PING_EVERY_MS; i++) {
        int64_t took = s_ping_ms(client);
        assert_true(took >= 0);
        worst = took > worst ? took : worst;
        usleep(PING_EVERY_MS * 1000);
    }
    printf("events port taken: slowest Ping %lld ms\n", (long long)worst);
    assert_true(worst < PING_PROMPT_MS);
    pthread_join(thief.thread, NULL);
    /* once it is free, intake binds it again and subscribers hear it */
    int64_t until = zclock_mono() + WAIT_MS;
    while (zclock_mono() < until &&
           !harness_log_contains(h, "intake", 0, "events socket bound again"))
        usleep(50 * 1000);
    assert_true(harness_log_contains(h, "intake", 0, "events socket bound again"));
    nrm_curve_t coordinator;
    harness_curve(h, "intake", "coordinator", &coordinator);
    zsock_t *sub = s_subscriber(harness_events(h, "intake", 0), &coordinator, 1000);
    assert_true(s_hears(sub, WAIT_MS));
    zsock_destroy(&sub);
    nrm_client_destroy(&client);
    assert_int_equal(harness_signal(h, "intake", 0, SIGTERM), 0);
}

static void test_an_events_socket_accepts_a_bounded_number_of_subscribers(void **state)
{
    harness_config_set(h, "security.max_subscribers", json_integer(3));
    assert_int_equal(harness_start(h, "intake", 0), 0);
    nrm_curve_t coordinator;
    harness_curve(h, "intake", "coordinator", &coordinator);
    zsock_t *subs[4];
    for (int i = 0; i < 3; i++) {
        subs[i] = s_subscriber(harness_events(h, "intake", 0), &coordinator, 1000);
        assert_true(s_hears(subs[i], WAIT_MS));
    }
    subs[3] = s_subscriber(harness_events(h, "intake", 0), &coordinator, 1000);
    assert_false(s_heard_anything(subs[3], SILENCE_MS));
    assert_true(harness_log_contains(h, "intake", 0, "too many subscribers"));
    for (int i = 0; i < 4; i++)
        zsock_destroy(&subs[i]);
}

/* A TCP relay between a client and a service port: forwards both ways, records every byte. */
typedef struct {
    int listen_fd;
    int upstream_port;
    volatile bool stop;
    pthread_mutex_t lock;
    char *captured;
    size_t captured_len;
    pthread_t thread;
} s_relay_t;

/* Appends n bytes to the relay's capture. */
static void s_capture(s_relay_t *r, const char *data, size_t n)
{
    pthread_mutex_lock(&r->lock);
    if (r->captured_len + n <= RELAY_CAPTURE) {
        memcpy(r->captured + r->captured_len, data, n);
        r->captured_len += n;
    }
    pthread_mutex_unlock(&r->lock);
}

/* Accepts connections and pumps bytes between each and the upstream port. */
static void *s_relay_run(void *arg)
{
    s_relay_t *r = arg;
    struct pollfd fds[1 + 2 * 8];
    int nfds = 1;
    fds[0] = (struct pollfd){r->listen_fd, POLLIN, 0};
    char buf[65536];
    while (!r->stop) {
        if (poll(fds, (nfds_t)nfds, 100) <= 0)
            continue;
        if ((fds[0].revents & POLLIN) && nfds + 2 <= (int)(sizeof fds / sizeof fds[0])) {
            int client = accept(r->listen_fd, NULL, NULL);
            int up = socket(AF_INET, SOCK_STREAM, 0);
            struct sockaddr_in addr = {.sin_family = AF_INET,
                                       .sin_port = htons((uint16_t)r->upstream_port)};
            inet_pton(AF_INET, "127.0.0.1", &addr.sin_addr);
            if (client >= 0 && up >= 0 && connect(up, (struct sockaddr *)&addr, sizeof addr) == 0) {
                fds[nfds++] = (struct pollfd){client, POLLIN, 0};
                fds[nfds++] = (struct pollfd){up, POLLIN, 0};
            }
        }
        for (int i = 1; i < nfds; i++) {
            if (fds[i].fd < 0 || !(fds[i].revents & (POLLIN | POLLHUP)))
                continue;
            int peer = (i % 2 == 1) ? i + 1 : i - 1;
            ssize_t got = read(fds[i].fd, buf, sizeof buf);
            if (got <= 0) {
                close(fds[i].fd);
                close(fds[peer].fd);
                fds[i].fd = fds[peer].fd = -1;
                continue;
            }
            s_capture(r, buf, (size_t)got);
            if (write(fds[peer].fd, buf, (size_t)got) != got) {
                close(fds[i].fd);
                close(fds[peer].fd);
                fds[i].fd = fds[peer].fd = -1;
            }
        }
    }
    for (int i = 0; i < nfds; i++)
        if (fds[i].fd >= 0)
            close(fds[i].fd);
    return NULL;
}

/* Starts a relay to the port of endpoint ("tcp://127.0.0.1:PORT"); writes its own endpoint. */
static s_relay_t *s_relay_new(const char *endpoint, char *own, size_t own_size)
{
    s_relay_t *r = calloc(1, sizeof *r);
    r->captured = malloc(RELAY_CAPTURE);
    r->upstream_port = atoi(strrchr(endpoint, ':') + 1);
    pthread_mutex_init(&r->lock, NULL);
    r->listen_fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = 0};
    inet_pton(AF_INET, "127.0.0.1", &addr.sin_addr);
    assert_int_equal(bind(r->listen_fd, (struct sockaddr *)&addr, sizeof addr), 0);
    assert_int_equal(listen(r->listen_fd, 8), 0);
    socklen_t len = sizeof addr;
    getsockname(r->listen_fd, (struct sockaddr *)&addr, &len);
    snprintf(own, own_size, "tcp://127.0.0.1:%d", ntohs(addr.sin_port));
    pthread_create(&r->thread, NULL, s_relay_run, r);
    return r;
}

/* True when the relay's capture holds needle. */
static bool s_relay_saw(s_relay_t *r, const char *needle)
{
    pthread_mutex_lock(&r->lock);
    bool found = memmem(r->captured, r->captured_len, needle, strlen(needle)) != NULL;
    pthread_mutex_unlock(&r->lock);
    return found;
}

static void s_relay_destroy(s_relay_t **r_p)
{
    s_relay_t *r = *r_p;
    r->stop = true;
    pthread_join(r->thread, NULL);
    close(r->listen_fd);
    pthread_mutex_destroy(&r->lock);
    free(r->captured);
    free(r);
    *r_p = NULL;
}

static void test_a_relay_between_client_and_intake_sees_only_ciphertext(void **state)
{
    assert_int_equal(harness_start(h, "intake", 0), 0);
    char api[64], events[64];
    s_relay_t *api_relay = s_relay_new(harness_api(h, "intake", 0), api, sizeof api);
    s_relay_t *events_relay = s_relay_new(harness_events(h, "intake", 0), events, sizeof events);
    nrm_curve_t police, coordinator;
    harness_curve(h, "intake", "police-ma-06", &police);
    harness_curve(h, "intake", "coordinator", &coordinator);
    zsock_t *sub = s_subscriber(events, &coordinator, 1000);
    assert_true(s_hears(sub, WAIT_MS)); /* subscribed through the relay */
    nrm_client_t *client = nrm_client_new(api, "", &police);
    Nrm__V1__Reply *reply = s_submit(client, "", NAME);
    assert_non_null(reply);
    assert_int_equal(reply->status, NRM__V1__STATUS__STATUS_OK);
    nrm__v1__reply__free_unpacked(reply, NULL);
    /* the event arrives through the relay, readable by the subscriber only */
    bool opened = false;
    int64_t deadline = zclock_mono() + WAIT_MS;
    while (!opened && zclock_mono() < deadline) {
        zmsg_t *msg = zmsg_recv(sub);
        char *topic = msg ? zmsg_popstr(msg) : NULL;
        opened = topic && strcmp(topic, "case.opened") == 0;
        free(topic);
        zmsg_destroy(&msg);
    }
    assert_true(opened);
    nrm_client_destroy(&client);
    zsock_destroy(&sub);
    assert_true(api_relay->captured_len > 0 && events_relay->captured_len > 0);
    const char *secrets[] = {"case.opened", "MA-06", NAME, DOB, "submit_report"};
    for (size_t i = 0; i < sizeof secrets / sizeof secrets[0]; i++) {
        assert_false(s_relay_saw(api_relay, secrets[i]));
        assert_false(s_relay_saw(events_relay, secrets[i]));
    }
    s_relay_destroy(&api_relay);
    s_relay_destroy(&events_relay);
}

/* The resident set of a process in KiB, from /proc. */
static long s_rss_kb(int pid)
{
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%d/status", pid);
    FILE *f = fopen(path, "r");
    long kb = -1;
    while (f && fgets(line, sizeof line, f))
        if (sscanf(line, "VmRSS: %ld kB", &kb) == 1)
            break;
    if (f)
        fclose(f);
    return kb;
}

static void test_subscribers_that_never_read_cost_intake_bounded_memory(void **state)
{
    /* ASan keeps freed memory in quarantine: turn it off so RSS shows what is really held */
    const char *asan = getenv("ASAN_OPTIONS");
    char options[512];
    snprintf(options, sizeof options, "%s%squarantine_size_mb=0", asan ? asan : "",
             asan && asan[0] ? ":" : "");
    setenv("ASAN_OPTIONS", options, 1);
    assert_int_equal(harness_start(h, "intake", 0), 0);
    nrm_client_t *police = harness_client_new(h, "intake", 0, "police-ma-06");
    Nrm__V1__Reply *reply = s_submit(police, "", NAME);
    assert_int_equal(reply->status, NRM__V1__STATUS__STATUS_OK);
    nrm__v1__reply__free_unpacked(reply, NULL);
    nrm_client_destroy(&police);
    nrm_curve_t coordinator;
    harness_curve(h, "intake", "coordinator", &coordinator);
    zsock_t *stuck[STUCK_SUBSCRIBERS];
    for (int i = 0; i < STUCK_SUBSCRIBERS; i++)
        stuck[i] = s_subscriber(harness_events(h, "intake", 0), &coordinator, 1);
    zclock_sleep(1500); /* every handshake done, heartbeats flowing */
    long before = s_rss_kb(harness_pid(h, "intake", 0));

    /* 20,000 events of the first one's shape, published to subscribers that never read */
    char sql[512];
    snprintf(sql, sizeof sql,
             "INSERT INTO intake.outbox (event_id, topic, payload) SELECT gen_random_uuid(), "
             "o.topic, o.payload FROM intake.outbox o, generate_series(1, %d) WHERE o.seq = 1; "
             "SELECT pg_notify('intake_outbox', '')",
             FLOOD_EVENTS);
    PQclear(harness_sql(h, sql));
    assert_int_equal(
        harness_wait_sql(h, "SELECT head FROM intake.stream_head", FLOOD_EVENTS + 1, 60000),
        FLOOD_EVENTS + 1);
    zclock_sleep(1000);
    long after = s_rss_kb(harness_pid(h, "intake", 0));
    fprintf(stderr,
            "intake RSS with %d subscribers that never read: %ld kB before, %ld kB after "
            "%d events (growth %ld kB, bound %d kB)\n",
            STUCK_SUBSCRIBERS, before, after, FLOOD_EVENTS, after - before, RSS_GROWTH_BOUND_KB);
    assert_true(before > 0 && after > 0);
    assert_true(after - before < RSS_GROWTH_BOUND_KB);
    /* the service still answers */
    assert_true(harness_counter(h, "intake", "requests") > 0);
    for (int i = 0; i < STUCK_SUBSCRIBERS; i++)
        zsock_destroy(&stuck[i]);
}

#define T(fn, name) cmocka_unit_test_prestate_setup_teardown(fn, setup, teardown, name)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(test_an_unknown_key_gets_no_session, "access_unknown"),
        T(test_a_known_key_naming_another_agency_is_permission_denied, "access_misnamed"),
        T(test_the_key_decides_who_reports_when_agency_id_is_empty, "access_empty"),
        T(test_a_rotated_out_key_is_refused_after_sighup_also_on_an_open_connection,
          "access_rotation"),
        T(test_only_services_and_event_readers_may_subscribe, "access_readers"),
        T(test_a_fetch_by_an_agency_that_may_not_read_streams_is_refused, "access_fetch"),
        T(test_a_removed_reader_key_is_dropped_from_the_events_socket, "access_rebind"),
        T(test_the_service_answers_while_its_events_port_is_taken_and_binds_it_once_free,
          "access_port_taken"),
        T(test_an_events_socket_accepts_a_bounded_number_of_subscribers, "access_max_subs"),
        T(test_a_relay_between_client_and_intake_sees_only_ciphertext, "access_relay"),
        T(test_subscribers_that_never_read_cost_intake_bounded_memory, "access_memory"),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
