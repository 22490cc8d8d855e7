/* The sender: libcurl's multi interface driven by the service's reactor, so that sending never
 * blocks it. curl tells which sockets to watch (they become zloop pollers) and when to call it
 * back (a one-shot zloop timer); the reactor hands readiness back with
 * curl_multi_socket_action. Work is done in short steps: record the outcomes of finished
 * transfers in one transaction, then claim as many due deliveries as there is room in flight
 * and start their transfers. New deliveries are claimed by the consumer's transaction that
 * made them (notify_sender_claim_in) and start when it commits, without a turn of their own. A
 * turn runs when woken (a finished transfer, an operator's retry) and every poll_ms for
 * retries falling due; while transfers are in flight
 * a wake-up waits a few milliseconds so that many outcomes share one commit. Outcomes and new
 * claims are one transaction: while outcomes cannot be recorded (database away) nothing new is
 * claimed. */
#include "notify.h"
#include "nrm_alloc.h"
#include "nrm_log.h"
#include "nrm_time.h"

#include <poll.h>
#include <stdlib.h>
#include <string.h>

#define S_WAKE_DELAY_MS 0 /* new work, or an outcome when idle: at the reactor's next turn */
#define S_BUSY_WAKE_MS                                                                             \
    5                       /* an outcome while transfers are in flight: let outcomes share a      \
                               transaction */
#define S_DRAIN_MAX_MS 5000 /* at a stop, how long transfers in flight may still finish */
#define S_DRAIN_TICK_MS 50

struct notify_sender_t {
    notify_t *notify; /* borrowed */
    zloop_t *loop;    /* borrowed */
    CURLM *multi;
    int curl_timer;      /* zloop timer curl asked for, -1 for none */
    int wake_timer;      /* pending wake-up, -1 for none */
    int64_t wake_due_ms; /* when it fires (monotonic) */
    int poll_timer;
    zlist_t *in_flight;     /* notify_delivery_t with a running transfer */
    zlist_t *pending;       /* s_claims_t: claimed in a transaction not ended yet */
    zlist_t *done;          /* notify_delivery_t whose outcome is not recorded yet */
    struct pollfd *watched; /* the sockets curl waits on (also zloop pollers), for the drain */
    size_t n_watched;
    size_t cap_watched;
    int64_t curl_due_ms; /* when curl wants to be called back (monotonic), -1 for never */
};

/* Marks, for curl_multi_assign, a socket that has a zloop poller. */
static int s_watched;

static void s_collect(notify_sender_t *self); /* below: the transfers that finished */
static void s_wake_for_outcome(notify_sender_t *self);

/* A watched socket is ready: tell curl, then collect what finished. */
static int s_on_socket(zloop_t *loop, zmq_pollitem_t *item, void *arg)
{
    notify_sender_t *self = arg;
    int mask = 0;
    if (item->revents & ZMQ_POLLIN)
        mask |= CURL_CSELECT_IN;
    if (item->revents & ZMQ_POLLOUT)
        mask |= CURL_CSELECT_OUT;
    if (item->revents & ZMQ_POLLERR)
        mask |= CURL_CSELECT_ERR;
    int running = 0;
    curl_multi_socket_action(self->multi, item->fd, mask, &running);
    s_collect(self);
    return 0;
}

/* Records what curl waits for on fd (events 0: nothing any more) for the drain at a stop. */
static void s_track(notify_sender_t *self, curl_socket_t fd, short events)
{
    for (size_t i = 0; i < self->n_watched; i++) {
        if (self->watched[i].fd != fd)
            continue;
        if (events)
            self->watched[i].events = events;
        else
            self->watched[i] = self->watched[--self->n_watched];
        return;
    }
    if (!events)
        return;
    if (self->n_watched == self->cap_watched) {
        size_t cap = self->cap_watched ? self->cap_watched * 2 : 16;
        struct pollfd *more = nrm_xreallocarray(self->watched, cap, sizeof *more);
        self->watched = more;
        self->cap_watched = cap;
    }
    self->watched[self->n_watched++] = (struct pollfd){fd, events, 0};
}

/* curl's socket callback: (re)watch fd for what curl waits for, or stop watching it. */
static int s_curl_socket(CURL *easy, curl_socket_t fd, int what, void *arg, void *socket_arg)
{
    notify_sender_t *self = arg;
    zmq_pollitem_t item = {NULL, fd, 0, 0};
    if (socket_arg)
        zloop_poller_end(self->loop, &item);
    if (what == CURL_POLL_REMOVE) {
        curl_multi_assign(self->multi, fd, NULL);
        s_track(self, fd, 0);
        return 0;
    }
    item.events = (short)(((what & CURL_POLL_IN) ? ZMQ_POLLIN : 0) |
                          ((what & CURL_POLL_OUT) ? ZMQ_POLLOUT : 0));
    s_track(self, fd,
            (short)(((what & CURL_POLL_IN) ? POLLIN : 0) | ((what & CURL_POLL_OUT) ? POLLOUT : 0)));
    if (zloop_poller(self->loop, &item, s_on_socket, self) != 0) {
        nrm_log_error("cannot watch a transfer socket", NULL);
        return -1;
    }
    zloop_poller_set_tolerant(self->loop, &item);
    curl_multi_assign(self->multi, fd, &s_watched);
    return 0;
}

/* curl's deadline has come. */
static int s_on_curl_timer(zloop_t *loop, int timer_id, void *arg)
{
    notify_sender_t *self = arg;
    self->curl_timer = -1;
    self->curl_due_ms = -1;
    int running = 0;
    curl_multi_socket_action(self->multi, CURL_SOCKET_TIMEOUT, 0, &running);
    s_collect(self);
    return 0;
}

/* curl's timer callback: call back after timeout_ms (-1: no more). */
static int s_curl_timer(CURLM *multi, long timeout_ms, void *arg)
{
    notify_sender_t *self = arg;
    if (self->curl_timer >= 0)
        zloop_timer_end(self->loop, self->curl_timer);
    self->curl_timer = -1;
    self->curl_due_ms = timeout_ms >= 0 ? nrm_mono_ms() + timeout_ms : -1;
    if (timeout_ms >= 0)
        self->curl_timer = zloop_timer(self->loop, (size_t)timeout_ms, 1, s_on_curl_timer, self);
    return self->curl_timer >= 0 || timeout_ms < 0 ? 0 : -1;
}

/* Moves every finished transfer, with its outcome, from in_flight to done. */
static void s_collect(notify_sender_t *self)
{
    CURLMsg *msg;
    int left = 0;
    bool finished = false;
    while ((msg = curl_multi_info_read(self->multi, &left)) != NULL) {
        if (msg->msg != CURLMSG_DONE)
            continue;
        CURL *easy = msg->easy_handle;
        CURLcode result = msg->data.result;
        notify_delivery_t *d = NULL;
        curl_easy_getinfo(easy, CURLINFO_PRIVATE, (char **)&d);
        if (strcmp(d->channel, NOTIFY_CHANNEL_WEBHOOK) == 0)
            notify_webhook_outcome(d, result);
        else
            notify_email_outcome(d, result);
        curl_multi_remove_handle(self->multi, easy);
        curl_easy_cleanup(easy);
        d->easy = NULL;
        zlist_remove(self->in_flight, d);
        zlist_append(self->done, d);
        finished = true;
    }
    *self->notify->in_flight = (int64_t)zlist_size(self->in_flight);
    if (finished)
        s_wake_for_outcome(self);
}

/* Starts d's transfer; a delivery that cannot even start is done at once, failed. */
static void s_start(notify_sender_t *self, notify_delivery_t *d)
{
    const notify_settings_t *s = &self->notify->settings;
    int rc = -1;
    if (!d->address)
        snprintf(d->error, sizeof d->error, "the subscription no longer exists");
    else if (strcmp(d->channel, NOTIFY_CHANNEL_WEBHOOK) == 0)
        rc = notify_webhook_prepare(d, s);
    else if (strcmp(d->channel, NOTIFY_CHANNEL_EMAIL) == 0)
        rc = notify_email_prepare(d, s);
    else
        snprintf(d->error, sizeof d->error, "unknown channel");
    if (rc == 0 && curl_multi_add_handle(self->multi, d->easy) == CURLM_OK) {
        zlist_append(self->in_flight, d);
        return;
    }
    if (d->easy) {
        curl_easy_cleanup(d->easy);
        d->easy = NULL;
    }
    d->ok = false;
    zlist_append(self->done, d);
    s_wake_for_outcome(self);
}

/* Deliveries claimed in a consumer's transaction, waiting for its end (nrm_db_on_end). */
typedef struct {
    notify_sender_t *sender; /* NULL once the sender is gone */
    zlist_t *claimed;        /* notify_delivery_t, owned */
} s_claims_t;

/* Room left in flight: notify.max_in_flight less the running transfers and the deliveries
 * claimed in transactions that have not ended yet. */
static int s_room(notify_sender_t *self)
{
    int room = self->notify->settings.max_in_flight - (int)zlist_size(self->in_flight);
    for (s_claims_t *c = zlist_first(self->pending); c; c = zlist_next(self->pending))
        room -= (int)zlist_size(c->claimed);
    return room;
}

/* Starts the transfer of every delivery of claimed, which it empties (the deliveries are the
 * sender's from then on), and updates the in-flight gauge. */
static void s_start_all(notify_sender_t *self, zlist_t *claimed)
{
    notify_delivery_t *d;
    while ((d = zlist_pop(claimed)) != NULL)
        s_start(self, d);
    *self->notify->in_flight = (int64_t)zlist_size(self->in_flight);
}

/* The consumer's transaction ended: the claims it committed start, the others are dropped. */
static void s_claims_end(void *arg, bool committed)
{
    s_claims_t *c = arg;
    if (c->sender) {
        zlist_remove(c->sender->pending, c);
        if (committed)
            s_start_all(c->sender, c->claimed);
    }
    notify_delivery_t *d;
    while ((d = zlist_pop(c->claimed)) != NULL)
        notify_delivery_destroy(&d);
    zlist_destroy(&c->claimed);
    free(c);
}

nrm_status_t notify_sender_claim_in(notify_sender_t *self, nrm_tx_t *tx)
{
    if (!self)
        return NRM_OK;
    int room = s_room(self);
    if (room <= 0)
        return NRM_OK; /* a finished transfer makes room and wakes a turn */
    s_claims_t *c = nrm_xcalloc(1, sizeof *c);
    c->claimed = zlist_new();
    int count = 0;
    nrm_status_t st = c->claimed
                          ? notify_deliveries_claim(self->notify, tx, room, c->claimed, &count)
                          : nrm_fail(tx->err, NRM_INTERNAL, NULL, "out of memory");
    if (st != NRM_OK || zlist_append(self->pending, c) != 0) {
        c->sender = NULL;
        s_claims_end(c, false);
        return st != NRM_OK ? st : nrm_fail(tx->err, NRM_INTERNAL, NULL, "out of memory");
    }
    c->sender = self;
    nrm_db_on_end(tx->db, s_claims_end, c);
    return NRM_OK;
}

/* Seeds the subscriptions of a reloaded configuration in a transaction of its own. */
static void s_seed(notify_sender_t *self)
{
    notify_t *notify = self->notify;
    nrm_db_t *db = nrm_service_db(notify->service);
    nrm_error_t err;
    nrm_error_clear(&err);
    nrm_tx_t tx = {db, nrm_service_name(notify->service), "", nrm_now_ms(), &err, 0};
    if (nrm_db_begin(db, &err) == NRM_OK && notify_seed_subscriptions(notify, &tx) == NRM_OK &&
        nrm_db_commit(db, &err) == NRM_OK) {
        notify->seeded = true;
        return;
    }
    nrm_db_rollback(db);
    nrm_log_warn("subscriptions not seeded yet", "{s:s, s:s}", "status",
                 nrm_status_name(err.status), "message", err.message);
}

/* One turn: seed if needed, record outcomes and fill the room in flight with due work. */
static void s_work(notify_sender_t *self)
{
    notify_t *notify = self->notify;
    if (!notify->seeded)
        s_seed(self);
    int room = s_room(self);
    if (room <= 0 && zlist_size(self->done) == 0)
        return;
    zlist_t *claimed = zlist_new();
    if (claimed && notify_deliveries_turn(notify, nrm_service_db(notify->service), self->done, room,
                                          claimed) > 0)
        s_start_all(self, claimed);
    zlist_destroy(&claimed);
}

/* The wake-up timer: one turn now. */
static int s_on_wake(zloop_t *loop, int timer_id, void *arg)
{
    notify_sender_t *self = arg;
    self->wake_timer = -1;
    s_work(self);
    return 0;
}

/* The poll timer: one turn for the retries that fell due. */
static int s_on_poll(zloop_t *loop, int timer_id, void *arg)
{
    s_work(arg);
    return 0;
}

/* At a stop, after the reactor: lets the transfers in flight finish (up to S_DRAIN_MAX_MS or
 * the transfer timeout) by polling curl's sockets here, so that a clean stop sends nothing
 * twice. What does not finish is given back by the caller. */
static void s_drain(notify_sender_t *self)
{
    int limit = self->notify->settings.timeout_ms;
    int64_t deadline = nrm_mono_ms() + (limit < S_DRAIN_MAX_MS ? limit : S_DRAIN_MAX_MS);
    while (zlist_size(self->in_flight) > 0 && nrm_mono_ms() < deadline) {
        int64_t now = nrm_mono_ms();
        int64_t wait = self->curl_due_ms >= 0 ? self->curl_due_ms - now : S_DRAIN_TICK_MS;
        wait = wait < 0 ? 0 : wait > S_DRAIN_TICK_MS ? S_DRAIN_TICK_MS : wait;
        size_t n = self->n_watched;
        struct pollfd *fds = nrm_xcalloc(n ? n : 1, sizeof *fds);
        memcpy(fds, self->watched, n * sizeof *fds);
        int ready = poll(fds, (nfds_t)n, (int)wait);
        int running = 0;
        for (size_t i = 0; ready > 0 && i < n; i++) {
            int mask = ((fds[i].revents & POLLIN) ? CURL_CSELECT_IN : 0) |
                       ((fds[i].revents & POLLOUT) ? CURL_CSELECT_OUT : 0) |
                       ((fds[i].revents & (POLLERR | POLLHUP)) ? CURL_CSELECT_ERR : 0);
            if (mask)
                curl_multi_socket_action(self->multi, fds[i].fd, mask, &running);
        }
        free(fds);
        if (self->curl_due_ms >= 0 && nrm_mono_ms() >= self->curl_due_ms) {
            self->curl_due_ms = -1;
            curl_multi_socket_action(self->multi, CURL_SOCKET_TIMEOUT, 0, &running);
        }
        s_collect(self);
    }
}

notify_sender_t *notify_sender_new(notify_t *notify, zloop_t *loop)
{
    notify_sender_t *self = nrm_xcalloc(1, sizeof *self);
    self->notify = notify;
    self->loop = loop;
    self->curl_timer = self->wake_timer = -1;
    self->curl_due_ms = -1;
    self->multi = curl_multi_init();
    self->in_flight = zlist_new();
    self->done = zlist_new();
    self->pending = zlist_new();
    self->poll_timer = zloop_timer(loop, (size_t)notify->settings.poll_ms, 0, s_on_poll, self);
    if (!self->multi || !self->in_flight || !self->done || !self->pending || self->poll_timer < 0) {
        notify_sender_destroy(&self);
        return NULL;
    }
    curl_multi_setopt(self->multi, CURLMOPT_SOCKETFUNCTION, s_curl_socket);
    curl_multi_setopt(self->multi, CURLMOPT_SOCKETDATA, self);
    curl_multi_setopt(self->multi, CURLMOPT_TIMERFUNCTION, s_curl_timer);
    curl_multi_setopt(self->multi, CURLMOPT_TIMERDATA, self);
    return self;
}

void notify_sender_destroy(notify_sender_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    notify_sender_t *self = *self_p;
    nrm_db_t *db = nrm_service_db(self->notify->service);
    notify_delivery_t *d;
    if (self->multi && self->in_flight && self->done)
        s_drain(self);
    zlist_t *none = zlist_new();
    if (none && self->done && zlist_size(self->done) > 0)
        notify_deliveries_turn(self->notify, db, self->done, 0, none);
    zlist_destroy(&none);
    if (self->in_flight) {
        notify_deliveries_release(self->notify, db, self->in_flight);
        while ((d = zlist_pop(self->in_flight)) != NULL) {
            curl_multi_remove_handle(self->multi, d->easy);
            notify_delivery_destroy(&d);
        }
    }
    while (self->done && (d = zlist_pop(self->done)) != NULL)
        notify_delivery_destroy(&d);
    if (self->multi)
        curl_multi_cleanup(self->multi);
    int timers[] = {self->curl_timer, self->wake_timer, self->poll_timer};
    for (size_t i = 0; i < sizeof timers / sizeof timers[0]; i++)
        if (timers[i] >= 0)
            zloop_timer_end(self->loop, timers[i]);
    zlist_destroy(&self->in_flight);
    zlist_destroy(&self->done);
    s_claims_t *c; /* claims of a transaction that never ended: dropped when it does */
    while (self->pending && (c = zlist_pop(self->pending)) != NULL)
        c->sender = NULL;
    zlist_destroy(&self->pending);
    free(self->watched);
    free(self);
    *self_p = NULL;
}

/* Schedules a turn in delay_ms, or sooner when one is already due sooner. */
static void s_wake_in(notify_sender_t *self, int64_t delay_ms)
{
    int64_t due = nrm_mono_ms() + delay_ms;
    if (self->wake_timer >= 0) {
        if (self->wake_due_ms <= due)
            return;
        zloop_timer_end(self->loop, self->wake_timer);
    }
    self->wake_due_ms = due;
    self->wake_timer = zloop_timer(self->loop, (size_t)delay_ms, 1, s_on_wake, self);
}

/* A transfer finished: its outcome waits a few milliseconds for others to share its commit. */
static void s_wake_for_outcome(notify_sender_t *self)
{
    s_wake_in(self, zlist_size(self->in_flight) > 0 ? S_BUSY_WAKE_MS : S_WAKE_DELAY_MS);
}

void notify_sender_wake(notify_sender_t *self)
{
    if (self)
        s_wake_in(self, S_WAKE_DELAY_MS); /* new work does not wait for outcomes */
}
