#include "notify_server.h"
#include "nrm_time.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define S_BACKLOG 128
#define S_CHUNK 4096
#define S_US_PER_MS 1000

typedef struct {
    notify_server_t *server;
    int fd;
} s_connection_t;

/* Aborts the test with what failed. */
static void s_die(const char *what)
{
    fprintf(stderr, "notify_server: %s: %s\n", what, strerror(errno));
    abort();
}

void notify_buf_add(notify_buf_t *b, const void *data, size_t n)
{
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : S_CHUNK;
        while (b->len + n + 1 > cap)
            cap *= 2;
        b->data = realloc(b->data, cap);
        if (!b->data)
            s_die("out of memory");
        b->cap = cap;
    }
    memcpy(b->data + b->len, data, n);
    b->len += n;
    b->data[b->len] = '\0';
}

/* Drops the first n bytes. */
void notify_buf_consume(notify_buf_t *b, size_t n)
{
    memmove(b->data, b->data + n, b->len - n);
    b->len -= n;
    b->data[b->len] = '\0';
}

bool notify_server_stopping(notify_server_t *s)
{
    pthread_mutex_lock(&s->lock);
    bool stop = s->stopping;
    pthread_mutex_unlock(&s->lock);
    return stop;
}

/* Reads what comes next from fd into b. Returns bytes read, or -1 when the peer closed, the
 * connection broke or the server stops. */
long notify_server_fill(notify_server_t *s, int fd, notify_buf_t *b)
{
    struct pollfd p = {fd, POLLIN, 0};
    while (!notify_server_stopping(s)) {
        int rc = poll(&p, 1, NOTIFY_SERVER_TICK_MS);
        if (rc < 0 && errno != EINTR)
            return -1;
        if (rc <= 0)
            continue;
        char chunk[S_CHUNK];
        ssize_t n = recv(fd, chunk, sizeof chunk, 0);
        if (n <= 0)
            return -1;
        notify_buf_add(b, chunk, (size_t)n);
        return n;
    }
    return -1;
}

/* Writes all of text. Returns 0, or -1 when the peer is gone. */
int notify_server_send(int fd, const char *text)
{
    size_t n = strlen(text), sent = 0;
    while (sent < n) {
        ssize_t rc = send(fd, text + sent, n - sent, MSG_NOSIGNAL);
        if (rc <= 0)
            return -1;
        sent += (size_t)rc;
    }
    return 0;
}

/* Sleeps ms in ticks; returns early when the server stops. */
void notify_server_nap(notify_server_t *s, int ms)
{
    for (int slept = 0; slept < ms && !notify_server_stopping(s); slept += NOTIFY_SERVER_TICK_MS)
        usleep(NOTIFY_SERVER_TICK_MS * S_US_PER_MS);
}

/* A connection thread: runs the session, then forgets and closes the connection. */
static void *s_session_main(void *arg)
{
    s_connection_t *c = arg;
    notify_server_t *s = c->server;
    s->session(s, c->fd);
    pthread_mutex_lock(&s->lock);
    for (size_t i = 0; i < s->n_connections; i++)
        if (s->connections[i] == c->fd) {
            s->connections[i] = s->connections[--s->n_connections];
            break;
        }
    close(c->fd);
    s->sessions--;
    pthread_cond_broadcast(&s->changed);
    pthread_mutex_unlock(&s->lock);
    free(c);
    return NULL;
}

/* Opens the listening socket on s->port (0: any, then remembered). */
static void s_listen(notify_server_t *s)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((uint16_t)s->port)};
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd < 0 || bind(fd, (struct sockaddr *)&addr, sizeof addr) != 0 || listen(fd, S_BACKLOG))
        s_die("listen");
    socklen_t len = sizeof addr;
    getsockname(fd, (struct sockaddr *)&addr, &len);
    s->port = ntohs(addr.sin_port);
    s->listen_fd = fd;
}

/* Accepts one waiting connection and starts its thread. */
static void s_accept(notify_server_t *s)
{
    int fd = accept(s->listen_fd, NULL, NULL);
    if (fd < 0)
        return;
    pthread_mutex_lock(&s->lock);
    if (s->n_connections == NOTIFY_SERVER_MAX_CONNECTIONS) {
        pthread_mutex_unlock(&s->lock);
        close(fd);
        return;
    }
    s->connections[s->n_connections++] = fd;
    s->sessions++;
    pthread_mutex_unlock(&s->lock);
    s_connection_t *c = malloc(sizeof *c);
    *c = (s_connection_t){s, fd};
    pthread_t thread;
    if (pthread_create(&thread, NULL, s_session_main, c) != 0)
        s_die("pthread_create");
    pthread_detach(thread);
}

/* The acceptor: keeps the listening socket as wanted, accepts connections. */
static void *s_acceptor_main(void *arg)
{
    notify_server_t *s = arg;
    for (;;) {
        pthread_mutex_lock(&s->lock);
        bool stop = s->stopping, want = s->want_listening;
        if (!want && s->listen_fd >= 0) {
            close(s->listen_fd);
            s->listen_fd = -1;
            for (size_t i = 0; i < s->n_connections; i++)
                shutdown(s->connections[i], SHUT_RDWR);
        }
        if (want && s->listen_fd < 0 && !stop)
            s_listen(s);
        pthread_cond_broadcast(&s->changed);
        int fd = s->listen_fd;
        pthread_mutex_unlock(&s->lock);
        if (stop)
            break;
        struct pollfd p = {fd, POLLIN, 0};
        if (fd < 0)
            usleep(NOTIFY_SERVER_TICK_MS * S_US_PER_MS);
        else if (poll(&p, 1, NOTIFY_SERVER_TICK_MS) > 0)
            s_accept(s);
    }
    return NULL;
}

void notify_server_start(notify_server_t *s, notify_session_fn session, void *owner)
{
    memset(s, 0, sizeof *s);
    pthread_mutex_init(&s->lock, NULL);
    pthread_cond_init(&s->changed, NULL);
    s->session = session;
    s->owner = owner;
    s->want_listening = true;
    s_listen(s);
    if (pthread_create(&s->acceptor, NULL, s_acceptor_main, s) != 0)
        s_die("pthread_create");
}

/* Sets whether the server listens and waits until the acceptor has done it. */
void notify_server_listen(notify_server_t *s, bool on)
{
    pthread_mutex_lock(&s->lock);
    s->want_listening = on;
    while ((s->listen_fd >= 0) != on)
        pthread_cond_wait(&s->changed, &s->lock);
    pthread_mutex_unlock(&s->lock);
}

void notify_server_stop(notify_server_t *s)
{
    pthread_mutex_lock(&s->lock);
    s->stopping = true;
    for (size_t i = 0; i < s->n_connections; i++)
        shutdown(s->connections[i], SHUT_RDWR);
    pthread_mutex_unlock(&s->lock);
    pthread_join(s->acceptor, NULL);
    pthread_mutex_lock(&s->lock);
    while (s->sessions > 0)
        pthread_cond_wait(&s->changed, &s->lock);
    if (s->listen_fd >= 0)
        close(s->listen_fd);
    pthread_mutex_unlock(&s->lock);
    pthread_mutex_destroy(&s->lock);
    pthread_cond_destroy(&s->changed);
}

/* Waits on s's condition until *count >= n or the deadline passes. */
bool notify_server_wait(notify_server_t *s, const size_t *count, size_t n, int timeout_ms)
{
    int64_t deadline = nrm_mono_ms() + timeout_ms;
    pthread_mutex_lock(&s->lock);
    while (*count < n && nrm_mono_ms() < deadline) {
        pthread_mutex_unlock(&s->lock);
        usleep(NOTIFY_SERVER_TICK_MS * S_US_PER_MS / 4);
        pthread_mutex_lock(&s->lock);
    }
    bool ok = *count >= n;
    pthread_mutex_unlock(&s->lock);
    return ok;
}
