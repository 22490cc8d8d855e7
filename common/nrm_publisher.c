#include "nrm_alloc.h"
#include "nrm_publisher.h"
#include "nrm_crypto.h"
#include "nrm_db.h"
#include "nrm_event.h"
#include "nrm_log.h"
#include "nrm_outbox.h"
#include "nrm_time.h"

#define S_BATCH 500
#define S_POLL_MS 1000
#define S_CONNECTING_MS 50
#define S_START_WAIT_MS 3000
#define S_CHANNEL_MAX 96

static const char s_sql_lock[] =
    "SELECT pg_try_advisory_lock(hashtext('nrm.sequencer.' || $1::text))";
/* One batch numbered in one statement, its own transaction: the committed unnumbered rows
 * (pick, in id order), the head moved past them under stream_head's row lock (sh), the rows
 * numbered after the head they found (upd: found again by their ctid, the outbox having no
 * index on id but outbox_unsequenced), and the consumers woken when any were. Its first
 * row has the count numbered and the head; one row per numbered event follows (seq, topic,
 * payload, in order). Should a second sequencer ever run it
 * concurrently, the one that waited for the row lock finds the rows numbered meanwhile (upd
 * numbers fewer than pick holds): the guard then fails the statement, so that nothing is
 * numbered twice and no gap is left; the next round goes on. */
static const char s_sql_sequence[] =
    "WITH pick AS MATERIALIZED (SELECT t, row_number() OVER (ORDER BY id) AS rn,"
    "   count(*) OVER () AS n"
    "   FROM (SELECT id, ctid AS t FROM outbox WHERE seq IS NULL ORDER BY id LIMIT $1) s),"
    " sh AS (UPDATE stream_head SET head = head + (SELECT count(*) FROM pick) RETURNING head),"
    " upd AS (UPDATE outbox o SET seq = sh.head - pick.n + pick.rn, sequenced_at = now()"
    "   FROM pick, sh WHERE o.ctid = pick.t AND o.seq IS NULL RETURNING o.seq, o.topic, o.payload)"
    " SELECT NULL::bigint AS seq, NULL::text AS topic, NULL::bytea AS payload,"
    "   (SELECT count(*) FROM pick)"
    "   / CASE WHEN (SELECT count(*) FROM upd) = (SELECT count(*) FROM pick) THEN 1 ELSE 0 END,"
    "   sh.head, (SELECT pg_notify($2, '') WHERE EXISTS (SELECT 1 FROM pick))"
    " FROM sh"
    " UNION ALL SELECT seq, topic, payload, NULL, NULL, NULL FROM upd ORDER BY seq NULLS FIRST";
static const char s_sql_head[] = "SELECT head FROM stream_head";
static const char s_sql_read[] =
    "SELECT seq, topic, payload FROM outbox WHERE seq > $1 ORDER BY seq LIMIT $2";

struct nrm_publisher_t {
    nrm_db_t *db;
    char *stream;
    zsock_t *pub;
    zloop_t *loop;
    int heartbeat_ms;
    int fd;         /* database socket registered on loop, -1 for none */
    int more_timer; /* a round due at the reactor's next turn (s_work_then_check), -1: none */
    bool started;
    bool sequencer;
    int64_t published; /* last seq published by this instance */
    int64_t count;
    char outbox_channel[S_CHANNEL_MAX];
    char events_channel[S_CHANNEL_MAX];
};

nrm_publisher_t *nrm_publisher_new(const char *conninfo, const char *schema, const char *stream,
                                   zsock_t *pub, int heartbeat_ms)
{
    nrm_publisher_t *self = nrm_xcalloc(1, sizeof *self);
    self->db = nrm_db_new(conninfo, schema);
    nrm_db_set_reactor(self->db);
    self->stream = nrm_xstrdup(stream);
    self->pub = pub;
    self->heartbeat_ms = heartbeat_ms;
    self->fd = -1;
    self->more_timer = -1;
    nrm_outbox_channel(schema, self->outbox_channel, sizeof self->outbox_channel);
    snprintf(self->events_channel, sizeof self->events_channel, "%s_events", schema);
    return self;
}

void nrm_publisher_destroy(nrm_publisher_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    nrm_publisher_t *self = *self_p;
    if (self->loop && self->more_timer >= 0)
        zloop_timer_end(self->loop, self->more_timer);
    nrm_db_destroy(&self->db);
    free(self->stream);
    free(self);
    *self_p = NULL;
}

int64_t nrm_publisher_head(const nrm_publisher_t *self)
{
    return self->published;
}

int64_t nrm_publisher_count(const nrm_publisher_t *self)
{
    return self->count;
}

bool nrm_publisher_is_sequencer(const nrm_publisher_t *self)
{
    return self->sequencer;
}

static int s_on_database(zloop_t *loop, zmq_pollitem_t *item, void *arg);

/* Keeps loop polling the current database socket (it changes on reconnect). */
static void s_watch_socket(nrm_publisher_t *self)
{
    PGconn *conn = nrm_db_conn(self->db);
    int fd = conn ? PQsocket(conn) : -1;
    if (fd == self->fd || !self->loop)
        return;
    if (self->fd >= 0) {
        zmq_pollitem_t old = {NULL, self->fd, ZMQ_POLLIN, 0};
        zloop_poller_end(self->loop, &old);
    }
    self->fd = fd;
    if (fd >= 0) {
        zmq_pollitem_t item = {NULL, fd, ZMQ_POLLIN, 0};
        zloop_poller(self->loop, &item, s_on_database, self);
        zloop_poller_set_tolerant(self->loop, &item);
    }
}

/* Reads the committed head of the stream. Returns -1 when the database is unavailable. */
static int64_t s_read_head(nrm_publisher_t *self)
{
    PGresult *res = NULL;
    if (nrm_db_exec(self->db, "pub_head", NULL, &res, NULL) != NRM_OK)
        return -1;
    int64_t head = PQntuples(res) ? nrm_db_int(res, 0, 0) : 0;
    PQclear(res);
    return head;
}

/* After a (re)connection: listen for wake-ups and try to become the sequencer. */
static void s_on_connected(nrm_publisher_t *self)
{
    char sql[2 * S_CHANNEL_MAX + 32];
    snprintf(sql, sizeof sql, "LISTEN %s; LISTEN %s", self->outbox_channel, self->events_channel);
    nrm_db_sql(self->db, sql, NULL);
    self->sequencer = false;
    if (!self->started) {
        int64_t head = s_read_head(self);
        if (head >= 0) {
            self->published = head;
            self->started = true;
        }
    }
}

/* Tries to take the sequencer lock if nobody holds it. */
static void s_try_lock(nrm_publisher_t *self)
{
    nrm_params_t p = {0};
    nrm_params_text(&p, nrm_db_schema(self->db));
    PGresult *res = NULL;
    if (nrm_db_exec(self->db, "pub_lock", &p, &res, NULL) != NRM_OK)
        return;
    self->sequencer = PQntuples(res) == 1 && nrm_db_int(res, 0, 0);
    PQclear(res);
    if (self->sequencer)
        nrm_log_info("sequencer lock taken", "{s:s}", "stream", self->stream);
}

/* Publishes the events of res from row first on, each as [topic][Event with its seq]: res has
 * seq, topic and payload in columns 0 to 2, in order, directly after self->published. */
static void s_publish_rows(nrm_publisher_t *self, PGresult *res, int first)
{
    if (!self->pub) /* no events socket (it could not be bound again): nothing published */
        return;
    int rows = PQntuples(res);
    for (int i = first; i < rows && !nrm_db_is_null(res, i, 0); i++) {
        int64_t seq = nrm_db_int(res, i, 0);
        size_t len = 0, out_len = 0;
        const uint8_t *stored = nrm_db_bytes(res, i, 2, &len);
        uint8_t *frame = nrm_event_with_seq(stored, len, seq, &out_len);
        if (!frame)
            break;
        zmsg_t *msg = zmsg_new();
        zmsg_addstr(msg, nrm_db_text(res, i, 1));
        zmsg_addmem(msg, frame, out_len);
        free(frame);
        zmsg_send(&msg, self->pub); /* PUB never blocks: slow subscribers drop, then Fetch */
        zmsg_destroy(&msg);         /* kept by zmsg_send when it could not be sent */
        self->published = seq;
        self->count++;
    }
}

/* Numbers one batch of committed rows (one statement) and publishes them when they follow
 * what this instance published (otherwise pub_read catches up). Returns how many were
 * numbered, or -1 on failure (nothing numbered); *head receives the stream's head. */
static int s_sequence_batch(nrm_publisher_t *self, int64_t *head)
{
    nrm_params_t p = {0};
    nrm_params_int(&p, S_BATCH);
    nrm_params_text(&p, self->events_channel);
    PGresult *res = NULL;
    if (nrm_db_exec(self->db, "pub_sequence", &p, &res, NULL) != NRM_OK)
        return -1;
    int numbered = PQntuples(res) >= 1 ? (int)nrm_db_int(res, 0, 3) : -1;
    if (numbered >= 0)
        *head = nrm_db_int(res, 0, 4);
    if (numbered > 0 && PQntuples(res) > 1 && nrm_db_int(res, 1, 0) == self->published + 1)
        s_publish_rows(self, res, 1);
    PQclear(res);
    return numbered;
}

/* Publishes one batch of numbered events after self->published. Returns how many, or -1. */
static int s_publish_batch(nrm_publisher_t *self)
{
    nrm_params_t p = {0};
    nrm_params_int(&p, self->published);
    nrm_params_int(&p, S_BATCH);
    PGresult *res = NULL;
    if (nrm_db_exec(self->db, "pub_read", &p, &res, NULL) != NRM_OK)
        return -1;
    int rows = PQntuples(res);
    s_publish_rows(self, res, 0);
    PQclear(res);
    return rows;
}

/* One round of work: reconnect if needed, number what is committed, publish what is numbered. */
static void s_work(nrm_publisher_t *self)
{
    bool reconnected = false;
    if (nrm_db_connect(self->db, &reconnected, NULL) != NRM_OK) {
        self->sequencer = false;
        s_watch_socket(self);
        return;
    }
    if (reconnected || !self->started)
        s_on_connected(self);
    s_watch_socket(self);
    if (!self->started)
        return;
    if (!self->sequencer)
        s_try_lock(self);
    int64_t head = -1; /* the head the sequencer left, -1 when unknown */
    if (self->sequencer)
        while (s_sequence_batch(self, &head) == S_BATCH)
            ;
    if (!nrm_db_connected(self->db)) {
        /* lost on the way: the lock went with the session, and a connection made implicitly by
         * the next statement would neither hold it nor LISTEN; the next round reconnects */
        self->sequencer = false;
        s_watch_socket(self);
        return;
    }
    if (head < 0 || self->published < head) /* not all published with their numbering */
        while (s_publish_batch(self) == S_BATCH)
            ;
    s_watch_socket(self);
}

/* Drops the notifications libpq holds for the connection; counts this session's own (its
 * numbering's wake-up of the other instances: no news here) into *own and the others' into
 * *news. read: read what the socket has first. Returns false when the connection is lost. */
static bool s_drain(nrm_publisher_t *self, bool read, int *own, int *news)
{
    PGconn *conn = nrm_db_conn(self->db);
    *own = *news = 0;
    if (!conn || (read && !PQconsumeInput(conn)))
        return false;
    int pid = PQbackendPID(conn);
    PGnotify *n;
    while ((n = PQnotifies(conn)) != NULL) {
        if (n->be_pid == pid)
            (*own)++;
        else
            (*news)++;
        PQfreemem(n);
    }
    return true;
}

static int s_on_more(zloop_t *loop, int timer_id, void *arg);

/* A round of work, and another at the reactor's next turn when another session's notification
 * came during this one: those that arrive while a round's statements run are read by libpq with
 * their results and held, and the socket will not tell of them, yet they may announce rows
 * committed after the round's numbering. (At the next turn rather than at once, so that what
 * the reactor has waiting goes first and numbering batches stay whole under load.) */
static void s_work_then_check(nrm_publisher_t *self)
{
    s_work(self);
    int own = 0, news = 0;
    if (s_drain(self, true, &own, &news) && news > 0 && self->loop && self->more_timer < 0)
        self->more_timer = zloop_timer(self->loop, 0, 1, s_on_more, self);
}

static int s_on_more(zloop_t *loop, int timer_id, void *arg)
{
    nrm_publisher_t *self = arg;
    self->more_timer = -1;
    s_work_then_check(self);
    return 0;
}

/* Database socket readable: drain notifications, then work, unless every one that came is
 * this session's own. */
static int s_on_database(zloop_t *loop, zmq_pollitem_t *item, void *arg)
{
    nrm_publisher_t *self = arg;
    int own = 0, news = 0;
    if (!s_drain(self, true, &own, &news))
        nrm_db_disconnect(self->db);
    else if (own > 0 && news == 0)
        return 0;
    s_work_then_check(self);
    return 0;
}

static int s_on_poll(zloop_t *loop, int timer_id, void *arg)
{
    s_work_then_check(arg);
    return 0;
}

/* A connection attempt in progress is moved on often (nrm_db_connect does not wait for it). */
static int s_on_connecting(zloop_t *loop, int timer_id, void *arg)
{
    nrm_publisher_t *self = arg;
    if (nrm_db_connecting(self->db))
        s_work(self);
    return 0;
}

void nrm_publisher_heartbeat(nrm_publisher_t *self)
{
    if (!self->started || !self->pub)
        return;
    Nrm__V1__StreamHead head = NRM__V1__STREAM_HEAD__INIT;
    head.head = self->published;
    Nrm__V1__Event ev = NRM__V1__EVENT__INIT;
    char id[37];
    nrm_uuid_v4(id);
    ev.event_id = id;
    ev.stream = self->stream;
    ev.topic = NRM_TOPIC_STREAM_HEAD;
    ev.occurred_at_ms = nrm_now_ms();
    ev.body_case = NRM__V1__EVENT__BODY_STREAM_HEAD;
    ev.stream_head = &head;
    size_t len = 0;
    uint8_t *buf = nrm_event_pack(&ev, &len);
    zmsg_t *msg = zmsg_new();
    zmsg_addstr(msg, NRM_TOPIC_STREAM_HEAD);
    zmsg_addmem(msg, buf, len);
    free(buf);
    zmsg_send(&msg, self->pub);
    zmsg_destroy(&msg); /* kept by zmsg_send when it could not be sent */
}

static int s_on_heartbeat(zloop_t *loop, int timer_id, void *arg)
{
    nrm_publisher_heartbeat(arg);
    return 0;
}

int nrm_publisher_attach(nrm_publisher_t *self, zloop_t *loop)
{
    self->loop = loop;
    nrm_db_statement(self->db, "pub_lock", s_sql_lock);
    nrm_db_statement(self->db, "pub_sequence", s_sql_sequence);
    nrm_db_statement(self->db, "pub_head", s_sql_head);
    nrm_db_statement(self->db, "pub_read", s_sql_read);
    if (zloop_timer(loop, S_POLL_MS, 0, s_on_poll, self) < 0 ||
        zloop_timer(loop, (size_t)self->heartbeat_ms, 0, s_on_heartbeat, self) < 0 ||
        zloop_timer(loop, S_CONNECTING_MS, 0, s_on_connecting, self) < 0)
        return -1;
    nrm_db_connect_wait(self->db, S_START_WAIT_MS, NULL); /* before the reactor runs */
    s_work(self);
    return 0;
}

void nrm_publisher_set_socket(nrm_publisher_t *self, zsock_t *pub)
{
    self->pub = pub;
}
