#define _GNU_SOURCE /* memmem */
#include "notify_server.h"
#include "notify_sinks.h"
#include "nrm_time.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define S_URL_MAX 64
#define S_REPLY_MAX 128
#define S_FIRST_CAPACITY 64
#define S_HTTP_NO_CONTENT 204
#define S_HTTP_UNAVAILABLE 503
#define S_HTTP_OK_HIGH 299

struct notify_receiver_t {
    notify_server_t server;
    char url[S_URL_MAX];
    notify_receiver_mode_t mode;
    int slow_ms;
    notify_request_t **requests;
    size_t count;
    size_t cap;
    size_t accepted;
};

/* The value of header name in a CRLF header block, malloc'd, or NULL. */
static char *s_header_value(const char *headers, const char *name)
{
    size_t n = strlen(name);
    for (const char *line = headers; line && *line;) {
        const char *end = strstr(line, "\r\n");
        size_t len = end ? (size_t)(end - line) : strlen(line);
        if (len > n && strncasecmp(line, name, n) == 0 && line[n] == ':') {
            const char *v = line + n + 1;
            while (*v == ' ')
                v++;
            return strndup(v, len - (size_t)(v - line));
        }
        line = end ? end + 2 : NULL;
    }
    return NULL;
}

char *notify_request_header(const notify_request_t *r, const char *name)
{
    return s_header_value(r->headers, name);
}

/* Appends r to the received requests; returns its index. */
static size_t s_keep_request(notify_receiver_t *self, notify_request_t *r)
{
    if (self->count == self->cap) {
        self->cap = self->cap ? self->cap * 2 : S_FIRST_CAPACITY;
        self->requests = realloc(self->requests, self->cap * sizeof *self->requests);
    }
    self->requests[self->count] = r;
    return self->count++;
}

/* Parses one request from the front of in (complete: header end at hdr, body following).
 * Returns it, or NULL when more bytes are needed; *used gets its size. */
static notify_request_t *s_parse_request(const notify_buf_t *in, size_t *used)
{
    const char *end = strstr(in->data, "\r\n\r\n");
    if (!end)
        return NULL;
    size_t head = (size_t)(end - in->data) + 4;
    char *block = strndup(in->data, head - 2);
    char *length = s_header_value(block, "Content-Length");
    size_t body = length ? (size_t)strtoul(length, NULL, 10) : 0;
    free(length);
    if (in->len < head + body) {
        free(block);
        return NULL;
    }
    notify_request_t *r = calloc(1, sizeof *r);
    sscanf(block, "%15s %255s", r->method, r->path);
    const char *first_end = strstr(block, "\r\n");
    r->headers = strdup(first_end ? first_end + 2 : "");
    free(block);
    r->body = malloc(body + 1);
    memcpy(r->body, in->data + head, body);
    r->body[body] = '\0';
    r->body_len = body;
    r->at_us = nrm_mono_us();
    *used = head + body;
    return r;
}

/* Answers "100 Continue" when a client asks for it before sending the body. */
static void s_maybe_continue(const notify_buf_t *in, int fd, bool *sent)
{
    const char *end = strstr(in->data, "\r\n\r\n");
    if (*sent || !end)
        return;
    char *block = strndup(in->data, (size_t)(end - in->data) + 2);
    char *expect = s_header_value(block, "Expect");
    if (expect && strcasecmp(expect, "100-continue") == 0 &&
        notify_server_send(fd, "HTTP/1.1 100 Continue\r\n\r\n") == 0)
        *sent = true;
    free(expect);
    free(block);
}

/* One HTTP/1.1 connection: requests in turn (keep-alive), each kept and answered as the mode
 * says when it arrives. */
static void s_http_session(notify_server_t *s, int fd)
{
    notify_receiver_t *self = s->owner;
    notify_buf_t in = {0};
    notify_buf_add(&in, "", 0);
    bool continued = false;
    for (;;) {
        size_t used = 0;
        notify_request_t *r = s_parse_request(&in, &used);
        if (!r) {
            s_maybe_continue(&in, fd, &continued);
            if (notify_server_fill(s, fd, &in) < 0)
                break;
            continue;
        }
        notify_buf_consume(&in, used);
        continued = false;
        pthread_mutex_lock(&s->lock);
        size_t index = s_keep_request(self, r);
        notify_receiver_mode_t mode = self->mode;
        int slow_ms = self->slow_ms;
        pthread_cond_broadcast(&s->changed);
        pthread_mutex_unlock(&s->lock);
        if (mode == NOTIFY_RECEIVER_SILENT) {
            while (notify_server_fill(s, fd, &in) >= 0) /* until the client gives up */
                ;
            break;
        }
        if (mode == NOTIFY_RECEIVER_SLOW)
            notify_server_nap(s, slow_ms);
        int status = mode == NOTIFY_RECEIVER_FAIL ? S_HTTP_UNAVAILABLE : S_HTTP_NO_CONTENT;
        char reply[S_REPLY_MAX];
        snprintf(reply, sizeof reply, "HTTP/1.1 %d %s\r\nContent-Length: 0\r\n\r\n", status,
                 status == S_HTTP_NO_CONTENT ? "No Content" : "Service Unavailable");
        if (notify_server_send(fd, reply) != 0)
            break;
        pthread_mutex_lock(&s->lock);
        self->requests[index]->status = status;
        if (status <= S_HTTP_OK_HIGH)
            self->accepted++;
        pthread_cond_broadcast(&s->changed);
        pthread_mutex_unlock(&s->lock);
    }
    free(in.data);
}

notify_receiver_t *notify_receiver_new(void)
{
    notify_receiver_t *self = calloc(1, sizeof *self);
    notify_server_start(&self->server, s_http_session, self);
    snprintf(self->url, sizeof self->url, "http://127.0.0.1:%d/hook", self->server.port);
    return self;
}

void notify_request_free(notify_request_t **r_p)
{
    if (!r_p || !*r_p)
        return;
    free((*r_p)->headers);
    free((*r_p)->body);
    free(*r_p);
    *r_p = NULL;
}

void notify_receiver_destroy(notify_receiver_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    notify_receiver_t *self = *self_p;
    notify_server_stop(&self->server);
    for (size_t i = 0; i < self->count; i++)
        notify_request_free(&self->requests[i]);
    free(self->requests);
    free(self);
    *self_p = NULL;
}

const char *notify_receiver_url(notify_receiver_t *self)
{
    return self->url;
}

void notify_receiver_set_mode(notify_receiver_t *self, notify_receiver_mode_t mode, int slow_ms)
{
    pthread_mutex_lock(&self->server.lock);
    self->mode = mode;
    self->slow_ms = slow_ms;
    pthread_mutex_unlock(&self->server.lock);
}

void notify_receiver_down(notify_receiver_t *self)
{
    notify_server_listen(&self->server, false);
}

void notify_receiver_up(notify_receiver_t *self)
{
    notify_server_listen(&self->server, true);
}

size_t notify_receiver_count(notify_receiver_t *self)
{
    pthread_mutex_lock(&self->server.lock);
    size_t n = self->count;
    pthread_mutex_unlock(&self->server.lock);
    return n;
}

size_t notify_receiver_accepted(notify_receiver_t *self)
{
    pthread_mutex_lock(&self->server.lock);
    size_t n = self->accepted;
    pthread_mutex_unlock(&self->server.lock);
    return n;
}

bool notify_receiver_wait(notify_receiver_t *self, size_t n, int timeout_ms)
{
    return notify_server_wait(&self->server, &self->accepted, n, timeout_ms);
}

bool notify_receiver_wait_count(notify_receiver_t *self, size_t n, int timeout_ms)
{
    return notify_server_wait(&self->server, &self->count, n, timeout_ms);
}

notify_request_t *notify_receiver_request(notify_receiver_t *self, size_t i)
{
    notify_request_t *copy = NULL;
    pthread_mutex_lock(&self->server.lock);
    if (i < self->count) {
        const notify_request_t *r = self->requests[i];
        copy = malloc(sizeof *copy);
        *copy = *r;
        copy->headers = strdup(r->headers);
        copy->body = malloc(r->body_len + 1);
        memcpy(copy->body, r->body, r->body_len + 1);
    }
    pthread_mutex_unlock(&self->server.lock);
    return copy;
}

bool notify_receiver_saw(notify_receiver_t *self, const char *needle)
{
    bool seen = false;
    pthread_mutex_lock(&self->server.lock);
    for (size_t i = 0; i < self->count && !seen; i++) {
        const notify_request_t *r = self->requests[i];
        seen = strstr(r->path, needle) || strstr(r->headers, needle) ||
               memmem(r->body, r->body_len, needle, strlen(needle));
    }
    pthread_mutex_unlock(&self->server.lock);
    return seen;
}
