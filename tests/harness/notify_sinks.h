/* Receivers for the notification tests, on 127.0.0.1, each run by threads of the test process:
 * an HTTP server standing for an agency's webhook receiver (it can answer, fail, fall silent or
 * go down and come back on the same port) and an SMTP sink standing for a mail relay. They keep
 * every request or message they get, raw, for the test to inspect. */
#ifndef NOTIFY_SINKS_H
#define NOTIFY_SINKS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum {
    NOTIFY_RECEIVER_ACCEPT, /* answers 204 No Content */
    NOTIFY_RECEIVER_FAIL,   /* answers 503 Service Unavailable */
    NOTIFY_RECEIVER_SILENT, /* reads the request and never answers */
    NOTIFY_RECEIVER_SLOW    /* answers 204 after the configured delay */
} notify_receiver_mode_t;

/* One HTTP request as received. */
typedef struct {
    char method[16];
    char path[256];
    char *headers; /* the header lines, CRLF-separated, as received */
    char *body;    /* NUL-terminated; body_len bytes */
    size_t body_len;
    int status;    /* what was answered; 0 for nothing */
    int64_t at_us; /* nrm_mono_us() when the whole request was in */
} notify_request_t;

typedef struct notify_receiver_t notify_receiver_t;

/* Returns a receiver listening on an ephemeral port of 127.0.0.1 in mode ACCEPT; aborts on
 * failure. */
notify_receiver_t *notify_receiver_new(void);

/* Stops the threads, closes every socket, frees, sets *self to NULL. Safe on NULL. */
void notify_receiver_destroy(notify_receiver_t **self);

/* "http://127.0.0.1:<port>/hook" (borrowed). */
const char *notify_receiver_url(notify_receiver_t *self);

/* How requests from now on are answered; slow_ms is the delay of SLOW. */
void notify_receiver_set_mode(notify_receiver_t *self, notify_receiver_mode_t mode, int slow_ms);

/* Down: closes the listening socket and every connection (clients see connection refused).
 * Up: listens again on the same port. Both return once done. */
void notify_receiver_down(notify_receiver_t *self);
void notify_receiver_up(notify_receiver_t *self);

/* Requests received, and those answered 2xx. */
size_t notify_receiver_count(notify_receiver_t *self);
size_t notify_receiver_accepted(notify_receiver_t *self);

/* Waits until at least n requests were answered 2xx. Returns true when they were in time. */
bool notify_receiver_wait(notify_receiver_t *self, size_t n, int timeout_ms);

/* Waits until at least n requests were received (answered or not). */
bool notify_receiver_wait_count(notify_receiver_t *self, size_t n, int timeout_ms);

/* A copy of request i (in arrival order), or NULL; free with notify_request_free. */
notify_request_t *notify_receiver_request(notify_receiver_t *self, size_t i);
void notify_request_free(notify_request_t **r);

/* The value of header name (case-insensitive) of r, malloc'd (caller frees), or NULL. */
char *notify_request_header(const notify_request_t *r, const char *name);

/* True when any request so far holds needle in its request line, headers or body. */
bool notify_receiver_saw(notify_receiver_t *self, const char *needle);

typedef struct notify_smtp_t notify_smtp_t;

/* Returns an SMTP sink listening on an ephemeral port of 127.0.0.1 (no TLS, no AUTH); aborts on
 * failure. */
notify_smtp_t *notify_smtp_new(void);
void notify_smtp_destroy(notify_smtp_t **self);

/* "smtp://127.0.0.1:<port>" (borrowed). */
const char *notify_smtp_url(notify_smtp_t *self);

/* Messages accepted so far; waits until at least n were. */
size_t notify_smtp_count(notify_smtp_t *self);
bool notify_smtp_wait(notify_smtp_t *self, size_t n, int timeout_ms);

/* Copies of message i: its envelope recipient(s), one per line, and its data (headers and
 * body); malloc'd, caller frees; NULL when there is no such message. */
char *notify_smtp_recipients(notify_smtp_t *self, size_t i);
char *notify_smtp_data(notify_smtp_t *self, size_t i);

/* True when any command or message so far holds needle. */
bool notify_smtp_saw(notify_smtp_t *self, const char *needle);

#endif
