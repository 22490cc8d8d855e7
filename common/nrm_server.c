#include "nrm_alloc.h"
#include "nrm_server.h"
#include "nrm_wipe.h"
#include "nrm_authz.h"
#include "nrm_crypto.h"
#include "nrm_log.h"
#include "nrm_time.h"
#include "nrm_validate.h"

#include <sodium.h>

#define S_HASH_BYTES 16
#define S_MAX_BODY 128 /* highest Request body field number + 1 */
#define S_SERVICE_PREFIX "service:"

static const char s_sql_stored[] =
    "SELECT reply, request_hash, agency_id FROM requests WHERE request_id = $1::uuid";
static const char s_sql_store_audit[] =
    "WITH stored AS (INSERT INTO requests (request_id, agency_id, request_hash, reply)"
    "                VALUES ($1::uuid, $2, $3, $4))"
    " INSERT INTO audit_log (request_id, agency_id, kind, status, subject_id)"
    " VALUES ($1::text, $2, $5, 'OK', $6)";
static const char s_sql_audit[] =
    "INSERT INTO audit_log (request_id, agency_id, kind, status, error_field, subject_id)"
    " VALUES ($1, $2, $3, $4, $5, $6)";
/* True when the schema's audit_log is out of reach of the current role: neither the table nor
 * the schema is its own, it may not change rows or triggers, and the append-only trigger is on. */
static const char s_sql_audit_protected[] =
    "SELECT c.relowner <> r.oid AND n.nspowner <> r.oid"
    "   AND NOT has_table_privilege(c.oid, 'UPDATE, DELETE, TRUNCATE, TRIGGER')"
    "   AND EXISTS (SELECT FROM pg_trigger t WHERE t.tgrelid = c.oid"
    "                AND t.tgname = 'audit_log_append_only' AND t.tgenabled = 'O')"
    "  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
    "  JOIN pg_roles r ON r.rolname = current_user"
    " WHERE c.oid = to_regclass(quote_ident($1) || '.audit_log')";

typedef struct {
    nrm_handler_fn fn;
    void *ctx;
    nrm_handler_kind_t kind;
} s_handler_t;

struct nrm_server_t {
    char *stream;
    nrm_db_t *db;
    nrm_config_t *config;
    size_t max_request_bytes;
    s_handler_t handlers[S_MAX_BODY];
    int64_t requests;
    int64_t failures;
    nrm_latency_t latency[S_MAX_BODY]; /* by body case; kind NULL until one is timed */
};

const double nrm_latency_bounds[NRM_LATENCY_BUCKETS] = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
                                                        0.05,   0.1,   0.25,   0.5,   1,    5};

/* Hands block (not NULL) to the call, freed with fn after the reply is sent. Returns block. */
static void *s_keep(nrm_call_t *call, void *block, zlist_free_fn *fn)
{
    zlist_append(call->keep, block);
    zlist_freefn(call->keep, block, fn, true);
    return block;
}

void *nrm_call_alloc(nrm_call_t *call, size_t size)
{
    return s_keep(call, nrm_xcalloc(1, size), free);
}

char *nrm_call_strdup(nrm_call_t *call, const char *s)
{
    size_t n = strlen(s ? s : "") + 1;
    char *copy = nrm_call_alloc(call, n);
    memcpy(copy, s ? s : "", n);
    return copy;
}

static void s_free_message(void *msg)
{
    protobuf_c_message_free_unpacked(msg, NULL);
}

static void s_free_wiped_message(void *msg)
{
    protobuf_c_message_free_unpacked(msg, &nrm_wipe_allocator);
}

char *nrm_call_strdup_wiped(nrm_call_t *call, const char *s)
{
    return s_keep(call, nrm_xstrdup(s ? s : ""), nrm_wipe_free);
}

void *nrm_call_keep_wiped(nrm_call_t *call, void *msg)
{
    return msg ? s_keep(call, msg, s_free_wiped_message) : NULL;
}

void *nrm_call_keep(nrm_call_t *call, void *msg)
{
    return msg ? s_keep(call, msg, s_free_message) : NULL;
}

nrm_server_t *nrm_server_new(const char *stream, nrm_db_t *db, nrm_config_t *config,
                             size_t max_request_bytes)
{
    nrm_server_t *self = nrm_xcalloc(1, sizeof *self);
    self->stream = nrm_xstrdup(stream);
    self->db = db;
    self->config = config;
    self->max_request_bytes = max_request_bytes;
    nrm_db_statement(db, "server_stored", s_sql_stored);
    nrm_db_statement(db, "server_store_audit", s_sql_store_audit);
    nrm_db_statement(db, "server_audit", s_sql_audit);
    nrm_db_statement(db, "server_audit_protected", s_sql_audit_protected);
    return self;
}

nrm_status_t nrm_server_check_audit(nrm_server_t *self, nrm_error_t *err)
{
    nrm_params_t p = {0};
    nrm_params_text(&p, nrm_db_schema(self->db));
    PGresult *res = NULL;
    nrm_status_t st = nrm_db_exec(self->db, "server_audit_protected", &p, &res, err);
    if (st == NRM_OK && (PQntuples(res) != 1 || nrm_db_int(res, 0, 0) == 0))
        st = nrm_fail(err, NRM_FAILED_PRECONDITION, NULL,
                      "audit_log is missing or not protected from the service's role: run "
                      "deploy/db-init.sh on the database");
    PQclear(res);
    return st;
}

void nrm_server_destroy(nrm_server_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    free((*self_p)->stream);
    free(*self_p);
    *self_p = NULL;
}

void nrm_server_handle(nrm_server_t *self, Nrm__V1__Request__BodyCase body, nrm_handler_kind_t kind,
                       nrm_handler_fn fn, void *ctx)
{
    if (body <= 0 || body >= S_MAX_BODY) {
        nrm_log_error("request body number out of range", "{s:i}", "body", (int)body);
        abort();
    }
    self->handlers[body] = (s_handler_t){fn, ctx, kind};
}

int64_t nrm_server_requests(const nrm_server_t *self)
{
    return self->requests;
}

int64_t nrm_server_failures(const nrm_server_t *self)
{
    return self->failures;
}

size_t nrm_server_latencies(const nrm_server_t *self, nrm_latency_t *out, size_t cap)
{
    size_t n = 0;
    for (size_t b = 0; b < S_MAX_BODY && n < cap; b++)
        if (self->latency[b].kind)
            out[n++] = self->latency[b];
    return n;
}

static const char *s_body_name(Nrm__V1__Request__BodyCase body);

/* Counts one request of body in its kind's histogram. */
static void s_time(nrm_server_t *self, Nrm__V1__Request__BodyCase body, int64_t us)
{
    if (body <= 0 || (unsigned)body >= S_MAX_BODY)
        return;
    nrm_latency_t *l = &self->latency[body];
    if (!l->kind)
        l->kind = s_body_name(body);
    double seconds = (double)us / 1e6;
    for (size_t i = 0; i < NRM_LATENCY_BUCKETS; i++)
        if (seconds <= nrm_latency_bounds[i])
            l->counts[i]++;
    l->count++;
    l->sum_seconds += seconds;
}

/* The body's field name ("submit_report"), for audit rows and messages. Static. */
static const char *s_body_name(Nrm__V1__Request__BodyCase body)
{
    const ProtobufCFieldDescriptor *f =
        protobuf_c_message_descriptor_get_field(&nrm__v1__request__descriptor, (unsigned)body);
    return f ? f->name : "none";
}

/* Packs reply into a new frame. */
static zframe_t *s_pack(const Nrm__V1__Reply *reply)
{
    zframe_t *frame = zframe_new(NULL, nrm__v1__reply__get_packed_size(reply));
    nrm__v1__reply__pack(reply, zframe_data(frame));
    return frame;
}

/* A reply frame carrying only an error. request_id is echoed only when it is clean UTF-8 (a
 * proto3 string must be UTF-8 for every client to parse the reply), else the reply's is "".
 * err's field and message are the server's own text, never client bytes. */
static zframe_t *s_error_frame(const char *request_id, const nrm_error_t *err)
{
    Nrm__V1__Reply reply = NRM__V1__REPLY__INIT;
    reply.request_id = (char *)(request_id && nrm_text_clean(request_id) ? request_id : "");
    reply.status = err->status;
    reply.error_field = (char *)err->field;
    reply.error_message = (char *)err->message;
    return s_pack(&reply);
}

/* True when agency is a configured agency or "service:<name>" of a configured service. */
static bool s_sender_known(nrm_server_t *self, const char *agency)
{
    if (nrm_config_agency(self->config, agency))
        return true;
    if (!agency || strncmp(agency, S_SERVICE_PREFIX, strlen(S_SERVICE_PREFIX)) != 0)
        return false;
    char path[128];
    snprintf(path, sizeof path, "services.%s", agency + strlen(S_SERVICE_PREFIX));
    return nrm_config_get(self->config, path) != NULL;
}

/* Checks the envelope: request_id, sender, and a body this service handles. */
static nrm_status_t s_check_envelope(nrm_server_t *self, const Nrm__V1__Request *req,
                                     nrm_error_t *err)
{
    if (!nrm_uuid_valid(req->request_id))
        return nrm_fail(err, NRM_INVALID_ARGUMENT, "request_id", "request_id must be a UUID");
    if (req->body_case == NRM__V1__REQUEST__BODY__NOT_SET)
        return nrm_fail(err, NRM_INVALID_ARGUMENT, "body", "request has no body");
    if ((unsigned)req->body_case >= S_MAX_BODY || !self->handlers[req->body_case].fn)
        return nrm_fail(err, NRM_UNIMPLEMENTED, "body", "%s is not served by %s",
                        s_body_name(req->body_case), self->stream);
    if (req->body_case == NRM__V1__REQUEST__BODY_PING)
        return NRM_OK;
    if (!s_sender_known(self, req->agency_id))
        return nrm_fail(err, NRM_UNAUTHENTICATED, "agency_id", "unknown agency");
    /* the matrix (nrm_authz): requests about no object are decided here, the others as far
     * as the sender's identity goes (a service identity never acts as an agency) */
    return nrm_authz_precheck(self->config, req->body_case, req->agency_id,
                              nrm_authz_sender_type(self->config, req->agency_id), err);
}

/* Writes the audit row of a request (inside the caller's transaction, or on its own). */
static void s_audit(nrm_server_t *self, const Nrm__V1__Request *req, nrm_status_t status,
                    const char *field, const char *subject)
{
    nrm_params_t p = {0};
    nrm_params_text(&p, req->request_id);
    /* an unknown sender's id is arbitrary client text (even invalid UTF-8, which would abort
     * the batch transaction): it is never stored */
    nrm_params_text(&p, s_sender_known(self, req->agency_id) ? req->agency_id : "unlisted");
    nrm_params_text(&p, s_body_name(req->body_case));
    nrm_params_text(&p, nrm_status_name(status));
    nrm_params_text(&p, field ? field : "");
    nrm_params_text(&p, subject ? subject : "");
    nrm_db_exec(self->db, "server_audit", &p, NULL, NULL);
}

nrm_status_t nrm_call_audit(nrm_call_t *call, const char *kind, const char *subject_id)
{
    nrm_params_t p = {0};
    nrm_params_text(&p, call->request->request_id);
    nrm_params_text(&p, call->agency_id);
    nrm_params_text(&p, kind);
    nrm_params_text(&p, nrm_status_name(NRM_OK));
    nrm_params_text(&p, "");
    nrm_params_text(&p, subject_id ? subject_id : "");
    return nrm_db_exec(call->tx.db, "server_audit", &p, NULL, call->tx.err);
}

/* Looks for a stored reply. Returns OK with *frame set when one exists for the same request,
 * OK with *frame NULL when none exists, CONFLICT when the id was used for another request. */
static nrm_status_t s_stored_reply(nrm_server_t *self, const Nrm__V1__Request *req,
                                   const uint8_t *hash, zframe_t **frame, nrm_error_t *err)
{
    *frame = NULL;
    nrm_params_t p = {0};
    nrm_params_text(&p, req->request_id);
    PGresult *res = NULL;
    nrm_status_t st = nrm_db_exec(self->db, "server_stored", &p, &res, err);
    if (st != NRM_OK)
        return st;
    if (PQntuples(res) == 1) {
        size_t hash_len = 0, reply_len = 0;
        const uint8_t *stored_hash = nrm_db_bytes(res, 0, 1, &hash_len);
        const uint8_t *reply = nrm_db_bytes(res, 0, 0, &reply_len);
        /* an empty hash: the request's content was erased (intake's erasure), so it cannot be
         * compared; the same agency still gets the stored reply */
        bool erased = hash_len == 0;
        if ((!erased &&
             (hash_len != S_HASH_BYTES || memcmp(stored_hash, hash, S_HASH_BYTES) != 0)) ||
            strcmp(nrm_db_text(res, 0, 2), req->agency_id) != 0)
            st = nrm_fail(err, NRM_CONFLICT, "request_id",
                          "request_id was already used for a different request");
        else
            *frame = zframe_new(reply, reply_len);
    }
    PQclear(res);
    return st;
}

/* Starts a call for req (the caller destroys call->keep). */
static void s_call_init(nrm_server_t *self, nrm_call_t *call, const Nrm__V1__Request *req,
                        Nrm__V1__Reply *reply, nrm_db_t *db, nrm_error_t *err)
{
    *reply = (Nrm__V1__Reply)NRM__V1__REPLY__INIT;
    reply->request_id = req->request_id;
    reply->status = NRM_OK;
    const char *type = nrm_authz_sender_type(self->config, req->agency_id);
    *call = (nrm_call_t){
        .tx = {db, self->stream, req->request_id, nrm_now_ms(), err, 0},
        .request = req,
        .reply = reply,
        .agency_id = req->agency_id,
        .agency_type = type ? type : "",
        .subject_id = "",
        .config = self->config,
        .keep = zlist_new(),
    };
}

/* Runs a handler that needs no database. Returns the reply frame, or NULL with err set. */
static zframe_t *s_run_no_db(nrm_server_t *self, const Nrm__V1__Request *req, nrm_error_t *err)
{
    s_handler_t *h = &self->handlers[req->body_case];
    Nrm__V1__Reply reply;
    nrm_call_t call;
    s_call_init(self, &call, req, &reply, NULL, err);
    zframe_t *frame = h->fn(h->ctx, &call) == NRM_OK ? s_pack(&reply) : NULL;
    zlist_destroy(&call.keep);
    return frame;
}

/* Stores the reply of a successful write together with its audit row (one statement). */
static nrm_status_t s_store(nrm_server_t *self, const Nrm__V1__Request *req, const uint8_t *hash,
                            zframe_t *frame, const char *subject, nrm_error_t *err)
{
    nrm_params_t p = {0};
    nrm_params_text(&p, req->request_id);
    nrm_params_text(&p, req->agency_id);
    nrm_params_bytes(&p, hash, S_HASH_BYTES);
    nrm_params_bytes(&p, zframe_data(frame), zframe_size(frame));
    nrm_params_text(&p, s_body_name(req->body_case));
    nrm_params_text(&p, subject ? subject : "");
    return nrm_db_exec(self->db, "server_store_audit", &p, NULL, err);
}

/* The batch transaction, as the requests of a batch go through it. */
typedef struct {
    bool open;    /* a transaction is open */
    bool written; /* something a later failure must not undo was written in it */
} s_batch_t;

/* Undoes what the failed request wrote and counted (counts: nrm_db_counts_mark's before it):
 * back to its savepoint, or, when it was the first to write in the transaction (and took
 * none), the whole transaction, and a new one begins.
 * Returns false when no transaction is open any more (batch->open false). */
static bool s_undo(nrm_server_t *self, s_batch_t *batch, bool savepoint, size_t counts)
{
    if (savepoint) {
        nrm_db_counts_undo(self->db, counts); /* what the request counted goes with it */
        return nrm_db_sql(self->db, "ROLLBACK TO SAVEPOINT request", NULL) == NRM_OK;
    }
    nrm_db_rollback(self->db);
    batch->open = nrm_db_begin(self->db, NULL) == NRM_OK;
    return batch->open;
}

/* Runs the handler in the open batch transaction, storing the reply of a write. On OK returns
 * the reply frame; on failure returns NULL with err set and nothing the request wrote left.
 *
 * A request takes a savepoint only when something was written before it in the transaction
 * (batch->written): the first undoes a failure by rolling the transaction back and beginning
 * another. The savepoints of one transaction all have one name and are never released: each
 * request's is the most recent when it fails, so ROLLBACK TO undoes just that request (a
 * released savepoint would count among the transaction's subtransactions all the same).
 *
 * A repeated request_id is recognised when the request fails, not before: the repeat runs
 * like the first (its effects collide with the first's, or its stored reply does, on unique
 * keys), is undone, and then the stored reply is answered; a request_id stored for a different
 * request is CONFLICT. The common case, a new request, thus costs no look-up. */
static zframe_t *s_run(nrm_server_t *self, s_batch_t *batch, const Nrm__V1__Request *req,
                       const uint8_t *data, size_t len, nrm_error_t *err)
{
    s_handler_t *h = &self->handlers[req->body_case];
    uint8_t hash[S_HASH_BYTES];
    crypto_generichash(hash, sizeof hash, data, len, NULL, 0);
    bool savepoint = batch->written;
    if (savepoint && nrm_db_defer(self->db, "SAVEPOINT request", err) != NRM_OK)
        return NULL;
    size_t counts = nrm_db_counts_mark(self->db);
    Nrm__V1__Reply reply;
    nrm_call_t call;
    s_call_init(self, &call, req, &reply, self->db, err);
    zframe_t *frame = NULL;
    nrm_status_t st = h->fn(h->ctx, &call);
    const nrm_authz_rule_t *rule = nrm_authz_rule(req->body_case);
    if (st == NRM_OK && rule && rule->object_field && !call.authorized)
        st = nrm_fail(err, NRM_INTERNAL, NULL, "the handler did not consult the authorization");
    if (st == NRM_OK) {
        frame = s_pack(&reply);
        if (h->kind == NRM_HANDLER_WRITE)
            st = s_store(self, req, hash, frame, call.subject_id, err);
        else if (h->kind == NRM_HANDLER_READ)
            s_audit(self, req, NRM_OK, "", call.subject_id);
    }
    zlist_destroy(&call.keep);
    if (st == NRM_OK) {
        batch->written = true;
        return frame;
    }
    zframe_destroy(&frame);
    if (err->status == NRM_OK)
        nrm_fail(err, st, NULL, "request failed");
    if (!s_undo(self, batch, savepoint, counts))
        return NULL;
    if (h->kind == NRM_HANDLER_WRITE && st != NRM_UNAVAILABLE) {
        /* a repeat of a stored request (this batch, an earlier one, or another instance's) */
        nrm_error_t again;
        nrm_error_clear(&again);
        if (s_stored_reply(self, req, hash, &frame, &again) == NRM_OK && frame) {
            nrm_error_clear(err);
            return frame;
        }
        if (again.status == NRM_CONFLICT)
            *err = again;
    }
    return NULL;
}

/* One decoded request of a batch. */
typedef struct {
    Nrm__V1__Request *req; /* NULL when the frame was refused before decoding */
    bool needs_db;
    bool audit_refusal; /* refused before its handler: audited in the batch transaction */
    bool ok;
    const char *sender; /* authenticated sender (borrowed), with CURVE */
    nrm_error_t err;
    int64_t started_us;
} s_item_t;

/* Replaces req->agency_id (memory of protobuf-c's default allocator) with a copy of id. */
static void s_set_agency(Nrm__V1__Request *req, const char *id)
{
    char *copy = nrm_xstrdup(id);
    if (req->agency_id && req->agency_id != protobuf_c_empty_string)
        free(req->agency_id);
    req->agency_id = copy;
}

/* With CURVE, the sender is the one its key names (sender, NULL when the key is no longer
 * accepted): req->agency_id becomes it, and a request that named someone else is refused. */
/* The sender that may speak on behalf of an agency: the HTTP gateway, for whoever signed in. */
#define S_ON_BEHALF_SENDER S_SERVICE_PREFIX "gateway"

/* Sets req->agency_id to the identity the request is handled as: the connection's sender, or
 * the configured agency the gateway names (the matrix then applies to that agency). Any other
 * sender naming another agency is refused. */
static nrm_status_t s_authenticate(nrm_server_t *self, Nrm__V1__Request *req, const char *sender,
                                   nrm_error_t *err)
{
    if (!sender) {
        s_set_agency(req, "");
        return nrm_fail(err, NRM_UNAUTHENTICATED, "", "the connection's key is not accepted");
    }
    bool other = req->agency_id[0] && strcmp(req->agency_id, sender) != 0;
    if (other && strcmp(sender, S_ON_BEHALF_SENDER) == 0 &&
        nrm_config_agency(self->config, req->agency_id))
        return NRM_OK; /* the gateway speaks for the signed-in agency */
    s_set_agency(req, sender);
    if (other)
        return nrm_fail(err, NRM_PERMISSION_DENIED, "agency_id",
                        "agency_id is not the agency of the connection's key");
    return NRM_OK;
}

/* Decodes and checks one frame; returns the error reply frame when it is refused outright, or
 * NULL when the request goes on (item->req set). secure: item->sender is authoritative. */
static zframe_t *s_decode(nrm_server_t *self, zframe_t *frame, s_item_t *item, bool secure)
{
    nrm_error_clear(&item->err);
    item->started_us = nrm_mono_us();
    size_t len = zframe_size(frame);
    if (len > self->max_request_bytes) {
        nrm_fail(&item->err, NRM_INVALID_ARGUMENT, "",
                 "request of %zu bytes exceeds the limit of %zu", len, self->max_request_bytes);
        nrm_log_warn("request refused", "{s:s, s:I}", "status", "INVALID_ARGUMENT", "bytes",
                     (json_int_t)len);
        /* the transport bounds len (ZMQ_MAXMSGSIZE): decode only to answer the right id */
        Nrm__V1__Request *req = nrm__v1__request__unpack(NULL, len, zframe_data(frame));
        zframe_t *reply = s_error_frame(req ? req->request_id : "", &item->err);
        if (req)
            nrm__v1__request__free_unpacked(req, NULL);
        return reply;
    }
    item->req = nrm__v1__request__unpack(NULL, len, zframe_data(frame));
    if (!item->req) {
        nrm_fail(&item->err, NRM_INVALID_ARGUMENT, "", "malformed request: not a nrm.v1.Request");
        nrm_log_warn("request refused", "{s:s, s:s}", "status", "INVALID_ARGUMENT", "reason",
                     "malformed");
        return s_error_frame("", &item->err);
    }
    if ((secure && s_authenticate(self, item->req, item->sender, &item->err) != NRM_OK) ||
        s_check_envelope(self, item->req, &item->err) != NRM_OK) {
        item->audit_refusal = nrm_uuid_valid(item->req->request_id);
        return s_error_frame(item->req->request_id, &item->err);
    }
    item->needs_db = self->handlers[item->req->body_case].kind != NRM_HANDLER_NO_DB;
    return NULL;
}

nrm_status_t nrm_server_decode(nrm_server_t *self, const uint8_t *data, size_t len, bool secure,
                               const char *sender, Nrm__V1__Request **req, nrm_error_t *err)
{
    *req = NULL;
    if (len > self->max_request_bytes)
        return nrm_fail(err, NRM_INVALID_ARGUMENT, "", "request exceeds the size limit");
    Nrm__V1__Request *decoded = nrm__v1__request__unpack(NULL, len, data);
    if (!decoded)
        return nrm_fail(err, NRM_INVALID_ARGUMENT, "", "malformed request: not a nrm.v1.Request");
    if ((secure && s_authenticate(self, decoded, sender, err) != NRM_OK) ||
        s_check_envelope(self, decoded, err) != NRM_OK) {
        nrm__v1__request__free_unpacked(decoded, NULL);
        return err ? err->status : NRM_INVALID_ARGUMENT;
    }
    *req = decoded;
    return NRM_OK;
}

/* Logs the outcome of one request (and audits a refusal that reached no handler's savepoint). */
static void s_finish(nrm_server_t *self, s_item_t *item)
{
    if (item->err.status != NRM_OK)
        self->failures++;
    Nrm__V1__Request *req = item->req;
    if (!req)
        return;
    int64_t us = nrm_mono_us() - item->started_us;
    s_time(self, req->body_case, us);
    bool quiet = req->body_case == NRM__V1__REQUEST__BODY_PING ||
                 req->body_case == NRM__V1__REQUEST__BODY_FETCH;
    /* the agency id is echoed only when it is a configured one: never arbitrary client text */
    const char *agency =
        nrm_config_agency(self->config, req->agency_id) ? req->agency_id : "unlisted";
    if (!quiet || item->err.status != NRM_OK)
        nrm_log(item->err.status == NRM_OK ? NRM_LOG_INFO : NRM_LOG_WARN, "request",
                "{s:s, s:s, s:s, s:s, s:I}", "kind", s_body_name(req->body_case), "agency", agency,
                "status", nrm_status_name(item->err.status), "field", item->err.field, "us",
                (json_int_t)us);
}

void nrm_server_process(nrm_server_t *self, zframe_t *const *requests, const char *const *senders,
                        size_t n, zframe_t **replies)
{
    s_item_t *items = nrm_xcalloc(n, sizeof *items);
    size_t db_count = 0;
    for (size_t i = 0; i < n; i++) {
        self->requests++;
        items[i].sender = senders ? senders[i] : NULL;
        replies[i] = s_decode(self, requests[i], &items[i], senders != NULL);
        if (!replies[i] && !items[i].needs_db) {
            replies[i] = s_run_no_db(self, items[i].req, &items[i].err);
            if (!replies[i])
                replies[i] = s_error_frame(items[i].req->request_id, &items[i].err);
        }
        if (!replies[i] || items[i].audit_refusal)
            db_count++;
    }
    nrm_error_t batch_err;
    nrm_error_clear(&batch_err);
    s_batch_t batch = {.open = db_count > 0 && nrm_db_begin(self->db, &batch_err) == NRM_OK};
    for (size_t i = 0; i < n; i++) {
        s_item_t *it = &items[i];
        if (replies[i] && it->audit_refusal && batch.open) {
            s_audit(self, it->req, it->err.status, it->err.field, "");
            batch.written = true;
        }
        if (replies[i])
            continue;
        if (batch.open)
            replies[i] = s_run(self, &batch, it->req, zframe_data(requests[i]),
                               zframe_size(requests[i]), &it->err);
        else
            nrm_fail(&it->err, NRM_UNAVAILABLE, NULL, "database unavailable");
        it->ok = replies[i] != NULL;
        if (!it->ok) {
            if (batch.open && it->err.status != NRM_UNAVAILABLE) {
                s_audit(self, it->req, it->err.status, it->err.field, "");
                batch.written = true;
            }
            replies[i] = s_error_frame(it->req->request_id, &it->err);
        }
    }
    if (batch.open && nrm_db_commit(self->db, &batch_err) != NRM_OK) {
        nrm_db_rollback(self->db);
        for (size_t i = 0; i < n; i++) {
            if (!items[i].ok)
                continue;
            /* the outcome is unknown to us: the client retries with the same request_id */
            zframe_destroy(&replies[i]);
            nrm_fail(&items[i].err, NRM_UNAVAILABLE, NULL, "database unavailable");
            replies[i] = s_error_frame(items[i].req->request_id, &items[i].err);
        }
    }
    for (size_t i = 0; i < n; i++) {
        s_finish(self, &items[i]);
        if (items[i].req)
            nrm__v1__request__free_unpacked(items[i].req, NULL);
    }
    free(items);
}

void nrm_server_set_config(nrm_server_t *self, nrm_config_t *config)
{
    self->config = config;
}
