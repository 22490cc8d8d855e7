/* notify_server: the small threaded TCP server under the test sinks of notify_sinks.h: one
 * acceptor thread that can stop and resume listening on the same port of 127.0.0.1, and one
 * thread per connection running a protocol's session. Internal to the harness. */
#ifndef NOTIFY_SERVER_H
#define NOTIFY_SERVER_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>

#define NOTIFY_SERVER_TICK_MS 20 /* how often blocked threads look at the stop flag */
#define NOTIFY_SERVER_MAX_CONNECTIONS 256

typedef struct notify_server_t notify_server_t;

/* Runs one connection until it ends (the server closes fd afterwards). */
typedef void (*notify_session_fn)(notify_server_t *server, int fd);

struct notify_server_t {
    pthread_mutex_t lock; /* guards everything here and the owner's state */
    pthread_cond_t changed;
    int port;
    int listen_fd;
    bool want_listening;
    bool stopping;
    int connections[NOTIFY_SERVER_MAX_CONNECTIONS];
    size_t n_connections;
    int sessions; /* connection threads alive */
    pthread_t acceptor;
    notify_session_fn session;
    void *owner;
};

/* A growing byte buffer, always NUL-terminated once something was added. */
typedef struct {
    char *data;
    size_t len;
    size_t cap;
} notify_buf_t;

/* Appends n bytes (aborts when out of memory); drops the first n bytes. */
void notify_buf_add(notify_buf_t *b, const void *data, size_t n);
void notify_buf_consume(notify_buf_t *b, size_t n);

/* Starts s listening on an ephemeral port of 127.0.0.1 (s->port) with session for each
 * connection; owner is the protocol's state. Aborts on failure. */
void notify_server_start(notify_server_t *s, notify_session_fn session, void *owner);

/* Stops listening (closing every connection) or listens again on the same port; returns once
 * done. */
void notify_server_listen(notify_server_t *s, bool on);

/* Stops every thread and closes every socket. */
void notify_server_stop(notify_server_t *s);

/* True once the server is stopping (sessions end). */
bool notify_server_stopping(notify_server_t *s);

/* Reads what comes next from fd into b. Returns the bytes read, or -1 when the peer closed,
 * the connection broke or the server stops. */
long notify_server_fill(notify_server_t *s, int fd, notify_buf_t *b);

/* Writes all of text (never raising SIGPIPE). Returns 0, or -1 when the peer is gone. */
int notify_server_send(int fd, const char *text);

/* Sleeps ms, returning early when the server stops. */
void notify_server_nap(notify_server_t *s, int ms);

/* Waits (polling under the lock) until *count >= n or timeout_ms pass. Returns *count >= n. */
bool notify_server_wait(notify_server_t *s, const size_t *count, size_t n, int timeout_ms);

#endif
