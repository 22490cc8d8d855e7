#include "notify_server.h"
#include "notify_sinks.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define S_URL_MAX 64
#define S_FIRST_CAPACITY 64

struct notify_smtp_t {
    notify_server_t server;
    char url[S_URL_MAX];
    notify_buf_t transcript; /* every command and message, for notify_smtp_saw */
    char **recipients;
    char **data;
    size_t count;
    size_t cap;
};

/* Takes one CRLF line off the front of in into a malloc'd string, or NULL if none is whole. */
static char *s_take_line(notify_buf_t *in)
{
    char *end = in->len ? strstr(in->data, "\r\n") : NULL;
    if (!end)
        return NULL;
    char *line = strndup(in->data, (size_t)(end - in->data));
    notify_buf_consume(in, (size_t)(end - in->data) + 2);
    return line;
}

/* Reads the DATA section (up to "\r\n.\r\n"), undoing dot-stuffing. NULL if the peer left. */
static char *s_take_data(notify_server_t *s, int fd, notify_buf_t *in)
{
    notify_buf_t data = {0};
    notify_buf_add(&data, "", 0);
    for (;;) {
        char *line = s_take_line(in);
        if (!line) {
            if (notify_server_fill(s, fd, in) < 0) {
                free(data.data);
                return NULL;
            }
            continue;
        }
        if (strcmp(line, ".") == 0) {
            free(line);
            return data.data;
        }
        const char *text = line[0] == '.' ? line + 1 : line;
        notify_buf_add(&data, text, strlen(text));
        notify_buf_add(&data, "\r\n", 2);
        free(line);
    }
}

/* Keeps one accepted message. */
static void s_keep_message(notify_smtp_t *self, notify_buf_t *rcpt, char *data)
{
    pthread_mutex_lock(&self->server.lock);
    if (self->count == self->cap) {
        self->cap = self->cap ? self->cap * 2 : S_FIRST_CAPACITY;
        self->recipients = realloc(self->recipients, self->cap * sizeof *self->recipients);
        self->data = realloc(self->data, self->cap * sizeof *self->data);
    }
    self->recipients[self->count] = strdup(rcpt->data ? rcpt->data : "");
    self->data[self->count] = data;
    self->count++;
    notify_buf_add(&self->transcript, data, strlen(data));
    pthread_cond_broadcast(&self->server.changed);
    pthread_mutex_unlock(&self->server.lock);
}

/* Answers one command line. Returns false when the session ends. */
static bool s_smtp_command(notify_smtp_t *self, int fd, notify_buf_t *in, const char *line,
                           notify_buf_t *rcpt)
{
    notify_server_t *s = &self->server;
    pthread_mutex_lock(&s->lock);
    notify_buf_add(&self->transcript, line, strlen(line));
    notify_buf_add(&self->transcript, "\n", 1);
    pthread_mutex_unlock(&s->lock);
    if (strncasecmp(line, "EHLO", 4) == 0)
        return notify_server_send(fd, "250-sink.invalid\r\n250 8BITMIME\r\n") == 0;
    if (strncasecmp(line, "HELO", 4) == 0 || strncasecmp(line, "NOOP", 4) == 0)
        return notify_server_send(fd, "250 ok\r\n") == 0;
    if (strncasecmp(line, "MAIL FROM:", 10) == 0 || strncasecmp(line, "RSET", 4) == 0) {
        rcpt->len = 0;
        return notify_server_send(fd, "250 ok\r\n") == 0;
    }
    if (strncasecmp(line, "RCPT TO:", 8) == 0) {
        notify_buf_add(rcpt, line + 8, strlen(line + 8));
        notify_buf_add(rcpt, "\n", 1);
        return notify_server_send(fd, "250 ok\r\n") == 0;
    }
    if (strncasecmp(line, "DATA", 4) == 0) {
        if (notify_server_send(fd, "354 end with <CRLF>.<CRLF>\r\n") != 0)
            return false;
        char *data = s_take_data(s, fd, in);
        if (!data)
            return false;
        s_keep_message(self, rcpt, data);
        rcpt->len = 0;
        return notify_server_send(fd, "250 queued\r\n") == 0;
    }
    if (strncasecmp(line, "QUIT", 4) == 0) {
        notify_server_send(fd, "221 bye\r\n");
        return false;
    }
    return notify_server_send(fd, "502 not implemented\r\n") == 0;
}

/* One SMTP connection: greeting, then commands until QUIT or the peer leaves. */
static void s_smtp_session(notify_server_t *s, int fd)
{
    notify_smtp_t *self = s->owner;
    notify_buf_t in = {0}, rcpt = {0};
    notify_buf_add(&in, "", 0);
    notify_buf_add(&rcpt, "", 0);
    bool open = notify_server_send(fd, "220 sink.invalid ESMTP\r\n") == 0;
    while (open) {
        char *line = s_take_line(&in);
        if (!line) {
            open = notify_server_fill(s, fd, &in) >= 0;
            continue;
        }
        open = s_smtp_command(self, fd, &in, line, &rcpt);
        free(line);
    }
    free(in.data);
    free(rcpt.data);
}

notify_smtp_t *notify_smtp_new(void)
{
    notify_smtp_t *self = calloc(1, sizeof *self);
    notify_buf_add(&self->transcript, "", 0);
    notify_server_start(&self->server, s_smtp_session, self);
    snprintf(self->url, sizeof self->url, "smtp://127.0.0.1:%d", self->server.port);
    return self;
}

void notify_smtp_destroy(notify_smtp_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    notify_smtp_t *self = *self_p;
    notify_server_stop(&self->server);
    for (size_t i = 0; i < self->count; i++) {
        free(self->recipients[i]);
        free(self->data[i]);
    }
    free(self->recipients);
    free(self->data);
    free(self->transcript.data);
    free(self);
    *self_p = NULL;
}

const char *notify_smtp_url(notify_smtp_t *self)
{
    return self->url;
}

size_t notify_smtp_count(notify_smtp_t *self)
{
    pthread_mutex_lock(&self->server.lock);
    size_t n = self->count;
    pthread_mutex_unlock(&self->server.lock);
    return n;
}

bool notify_smtp_wait(notify_smtp_t *self, size_t n, int timeout_ms)
{
    return notify_server_wait(&self->server, &self->count, n, timeout_ms);
}

/* A copy of message i's recipients (or data) under the lock, or NULL. */
static char *s_copy_item(notify_smtp_t *self, bool recipients, size_t i)
{
    pthread_mutex_lock(&self->server.lock);
    char *copy = NULL;
    if (i < self->count)
        copy = strdup(recipients ? self->recipients[i] : self->data[i]);
    pthread_mutex_unlock(&self->server.lock);
    return copy;
}

char *notify_smtp_recipients(notify_smtp_t *self, size_t i)
{
    return s_copy_item(self, true, i);
}

char *notify_smtp_data(notify_smtp_t *self, size_t i)
{
    return s_copy_item(self, false, i);
}

bool notify_smtp_saw(notify_smtp_t *self, const char *needle)
{
    pthread_mutex_lock(&self->server.lock);
    bool seen = strstr(self->transcript.data, needle) != NULL;
    pthread_mutex_unlock(&self->server.lock);
    return seen;
}
