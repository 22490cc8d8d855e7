/* The reactor never waits for the database: intake reaches PostgreSQL through a TCP relay that
 * the test turns into a black hole (existing connections cut, new ones accepted and never
 * answered, the worst case for a connection attempt). Meanwhile every Ping is answered within
 * 500 ms, soon with database_ok=false; when the relay forwards again, the service reconnects by
 * itself (database_ok=true) and takes reports again. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "harness.h"
#include "nrm_time.h"
#include "scenario.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define OK NRM__V1__STATUS__STATUS_OK
#define MAX_CONNS 64
#define RELAY_POLL_MS 20
#define PING_BUDGET_MS 500
#define PING_EVERY_MS 100
#define OUTAGE_MS 7000 /* more than two connection attempts' connect_timeout (3 s) */
#define DETECT_MS 5000 /* the health check (every 2 s) notices the loss */
#define RECOVER_MS 15000
#define CONNINFO_MAX 256

enum { RELAY_FORWARD, RELAY_BLACKHOLE };

typedef struct {
    int client; /* accepted from the service */
    int server; /* to PostgreSQL, -1 while held in the black hole */
} s_pair_t;

typedef struct {
    int listener;
    int port;
    int pg_port;
    atomic_int mode;
    atomic_bool stop;
    s_pair_t pairs[MAX_CONNS];
    int n_pairs;
    int applied_mode;
    pthread_t thread;
} s_relay_t;

static harness_t *h;
static s_relay_t relay;

static void s_close_pair(s_relay_t *r, int i)
{
    close(r->pairs[i].client);
    if (r->pairs[i].server >= 0)
        close(r->pairs[i].server);
    r->pairs[i] = r->pairs[--r->n_pairs];
}

static void s_close_all(s_relay_t *r)
{
    while (r->n_pairs > 0)
        s_close_pair(r, 0);
}

/* A connection to PostgreSQL on 127.0.0.1, or -1. */
static int s_connect_pg(const s_relay_t *r)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)r->pg_port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd >= 0 && connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
        close(fd);
        fd = -1;
    }
    return fd;
}

/* Copies what from has to to; false on end of stream or error. */
static bool s_copy(int from, int to)
{
    char buf[16384];
    ssize_t n = read(from, buf, sizeof buf);
    if (n <= 0)
        return false;
    for (ssize_t done = 0; done < n;) {
        ssize_t w = write(to, buf + done, (size_t)(n - done));
        if (w <= 0)
            return false;
        done += w;
    }
    return true;
}

static void *s_relay_run(void *arg)
{
    s_relay_t *r = arg;
    while (!atomic_load(&r->stop)) {
        int mode = atomic_load(&r->mode);
        if (mode != r->applied_mode) { /* cut everything: the old connections are gone */
            s_close_all(r);
            r->applied_mode = mode;
        }
        struct pollfd fds[1 + 2 * MAX_CONNS];
        int n = 0;
        fds[n++] = (struct pollfd){r->listener, POLLIN, 0};
        for (int i = 0; i < r->n_pairs; i++) {
            fds[n++] = (struct pollfd){r->pairs[i].client, mode == RELAY_FORWARD ? POLLIN : 0, 0};
            fds[n++] = (struct pollfd){r->pairs[i].server, POLLIN, 0};
        }
        if (poll(fds, (nfds_t)n, RELAY_POLL_MS) <= 0)
            continue;
        for (int i = r->n_pairs - 1; i >= 0; i--) {
            short c = fds[1 + 2 * i].revents, s = fds[2 + 2 * i].revents;
            bool alive = true;
            if (c & (POLLIN | POLLHUP | POLLERR))
                alive = s_copy(r->pairs[i].client, r->pairs[i].server);
            if (alive && (s & (POLLIN | POLLHUP | POLLERR)))
                alive = s_copy(r->pairs[i].server, r->pairs[i].client);
            if (!alive)
                s_close_pair(r, i);
        }
        if ((fds[0].revents & POLLIN) && r->n_pairs < MAX_CONNS) {
            int client = accept(r->listener, NULL, NULL);
            if (client >= 0) { /* in the black hole: accepted, never answered */
                int server = mode == RELAY_FORWARD ? s_connect_pg(r) : -1;
                if (mode == RELAY_FORWARD && server < 0)
                    close(client);
                else
                    r->pairs[r->n_pairs++] = (s_pair_t){client, server};
            }
        }
    }
    s_close_all(r);
    return NULL;
}

static void s_relay_start(s_relay_t *r)
{
    r->listener = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(r->listener >= 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = 0}; /* a port of the system's */
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    assert_int_equal(bind(r->listener, (struct sockaddr *)&a, sizeof a), 0);
    assert_int_equal(listen(r->listener, 16), 0);
    assert_int_equal(getsockname(r->listener, (struct sockaddr *)&a, &len), 0);
    r->port = ntohs(a.sin_port);
    const char *pg_port = getenv("NRM_TEST_PGPORT");
    assert_non_null(pg_port);
    r->pg_port = atoi(pg_port);
    atomic_store(&r->mode, RELAY_FORWARD);
    r->applied_mode = RELAY_FORWARD;
    assert_int_equal(pthread_create(&r->thread, NULL, s_relay_run, r), 0);
}

static int setup(void **state)
{
    h = harness_new("db_outage");
    s_relay_start(&relay);
    char conninfo[CONNINFO_MAX];
    snprintf(conninfo, sizeof conninfo, "host=127.0.0.1 port=%d dbname=t_db_outage", relay.port);
    harness_config_set(h, "database.conninfo", json_string(conninfo));
    return harness_start(h, "intake", 0);
}

static int teardown(void **state)
{
    harness_destroy(&h);
    atomic_store(&relay.stop, true);
    pthread_join(relay.thread, NULL);
    close(relay.listener);
    return 0;
}

/* Pings intake once: *database_ok and the time the answer took (-1: none within the budget). */
static int64_t s_ping(bool *database_ok)
{
    Nrm__V1__Ping ping = NRM__V1__PING__INIT;
    Nrm__V1__Request req = NRM__V1__REQUEST__INIT;
    req.body_case = NRM__V1__REQUEST__BODY_PING;
    req.ping = &ping;
    static nrm_client_t *client;
    if (!client)
        client = harness_client_new(h, "intake", 0, "coordinator");
    nrm_error_t err;
    int64_t started = nrm_mono_ms();
    Nrm__V1__Reply *reply = nrm_client_call(client, &req, PING_BUDGET_MS, &err);
    int64_t took = nrm_mono_ms() - started;
    if (!reply)
        return -1;
    *database_ok = reply->status == OK && reply->pong && reply->pong->database_ok;
    nrm__v1__reply__free_unpacked(reply, NULL);
    return took;
}

static Nrm__V1__Status s_submit(void)
{
    scenario_report_t s;
    scenario_adult_woman(&s, "MA-06", "Test Person", "1990-01-01");
    Nrm__V1__Reply *reply = harness_call(h, "intake", "labour-ma-06", &s.request);
    Nrm__V1__Status st = reply ? reply->status : NRM__V1__STATUS__STATUS_UNAVAILABLE;
    if (reply)
        nrm__v1__reply__free_unpacked(reply, NULL);
    return st;
}

static void test_ping_answers_during_an_outage_and_the_service_recovers(void **state)
{
    bool db_ok = false;
    assert_true(s_ping(&db_ok) >= 0);
    assert_true(db_ok);
    assert_int_equal(s_submit(), OK);

    atomic_store(&relay.mode, RELAY_BLACKHOLE);
    int64_t started = nrm_mono_ms(), worst = 0, down_after = -1;
    int pings = 0;
    while (nrm_mono_ms() - started < OUTAGE_MS) {
        int64_t took = s_ping(&db_ok);
        if (took < 0)
            fail_msg("Ping unanswered within %d ms, %lld ms into the outage", PING_BUDGET_MS,
                     (long long)(nrm_mono_ms() - started));
        pings++;
        worst = took > worst ? took : worst;
        if (!db_ok && down_after < 0)
            down_after = nrm_mono_ms() - started;
        usleep(PING_EVERY_MS * 1000);
    }
    printf("outage: %d pings, slowest %lld ms, database_ok=false after %lld ms\n", pings,
           (long long)worst, (long long)down_after);
    assert_true(down_after >= 0 && down_after <= DETECT_MS);
    assert_false(db_ok);
    assert_int_not_equal(s_submit(), OK); /* refused (UNAVAILABLE), not hanging */

    atomic_store(&relay.mode, RELAY_FORWARD);
    started = nrm_mono_ms();
    int64_t up_after = -1;
    while (nrm_mono_ms() - started < RECOVER_MS && up_after < 0) {
        int64_t took = s_ping(&db_ok);
        assert_true(took >= 0);
        if (db_ok)
            up_after = nrm_mono_ms() - started;
        else
            usleep(PING_EVERY_MS * 1000);
    }
    printf("database back: database_ok=true after %lld ms\n", (long long)up_after);
    assert_true(up_after >= 0);
    assert_int_equal(s_submit(), OK);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ping_answers_during_an_outage_and_the_service_recovers),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
