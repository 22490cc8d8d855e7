/* nrm_server: turns one api frame into one Reply frame.
 *
 * It owns the rules every service follows: a bounded request size; decoding that cannot crash;
 * a request_id that is a UUID; a known sending agency; a handler per request body; for writes,
 * one transaction holding the change, its outbox events, the stored reply and the audit row,
 * so OK is answered only after commit and a repeated request_id gets the stored reply and
 * changes nothing. Failed requests are rolled back and audited on their own. */
#ifndef NRM_SERVER_H
#define NRM_SERVER_H

#include <czmq.h>
#include "nrm/v1/api.pb-c.h"
#include "nrm_config.h"
#include "nrm_db.h"
#include "nrm_outbox.h"

typedef struct nrm_server_t nrm_server_t;

/* One request being handled. Handlers read request and fill reply's result; memory for the
 * result (and anything else that must live until the reply is sent) comes from
 * nrm_call_alloc / nrm_call_strdup / nrm_call_keep, freed after the reply is packed. */
typedef struct {
    nrm_tx_t tx;                     /* the open transaction; emit events through it */
    const Nrm__V1__Request *request; /* borrowed */
    Nrm__V1__Reply *reply;           /* status and request_id are set by the server */
    const char *agency_id;           /* the sender */
    const char *agency_type;         /* its type from the configuration ("NGO", ...), "SERVICE"
                                        for a service identity ("service:<name>"), or "" */
    const char *subject_id;          /* set by the handler: the id the audit row names */
    nrm_config_t *config;            /* borrowed */
    zlist_t *keep;                   /* owned by the server */
    bool authorized;                 /* set by nrm_authz_check: a request about an object whose
                                        handler returns OK without it is refused (INTERNAL) */
} nrm_call_t;

typedef nrm_status_t (*nrm_handler_fn)(void *ctx, nrm_call_t *call);

typedef enum {
    NRM_HANDLER_WRITE, /* transaction, stored reply, audit */
    NRM_HANDLER_READ,  /* transaction, audit, nothing stored (Fetch too: who read what) */
    NRM_HANDLER_NO_DB  /* no transaction (call.tx.db is NULL): health, answered even when the
                          database is down */
} nrm_handler_kind_t;

/* Zeroed memory that lives until the reply is sent. Never NULL (aborts when out of memory). */
void *nrm_call_alloc(nrm_call_t *call, size_t size);
char *nrm_call_strdup(nrm_call_t *call, const char *s);

/* Hands a protobuf message to the call: freed with protobuf_c_message_free_unpacked after the
 * reply is sent. Returns msg. */
void *nrm_call_keep(nrm_call_t *call, void *msg);

/* For identifying data in a reply: a copy of s, and a message unpacked with nrm_wipe_allocator,
 * wiped when freed after the reply is sent. */
char *nrm_call_strdup_wiped(nrm_call_t *call, const char *s);
void *nrm_call_keep_wiped(nrm_call_t *call, void *msg);

/* Writes an extra audit row in the request's savepoint (kept only if the request succeeds):
 * the sender, kind (a name such as "case_link"), status OK and subject_id. For facts a request
 * reveals besides its own outcome. */
nrm_status_t nrm_call_audit(nrm_call_t *call, const char *kind, const char *subject_id);

/* Returns a new server for service `stream` working on db and config (both borrowed).
 * max_request_bytes bounds the accepted frame size. */
nrm_server_t *nrm_server_new(const char *stream, nrm_db_t *db, nrm_config_t *config,
                             size_t max_request_bytes);

/* Checks that the schema's audit_log is append-only for the service's role (deploy/db-init.sh
 * gives it to another role; the service may only insert). Returns OK; FAILED_PRECONDITION when
 * the table is missing, is the role's own or its schema's owner's, may be changed by the role, or
 * its append-only trigger is off; UNAVAILABLE when the database cannot be reached. */
nrm_status_t nrm_server_check_audit(nrm_server_t *self, nrm_error_t *err);

/* Frees the server and sets *self to NULL. Safe on NULL. */
void nrm_server_destroy(nrm_server_t **self);

/* Installs the handler of one request body. */
void nrm_server_handle(nrm_server_t *self, Nrm__V1__Request__BodyCase body, nrm_handler_kind_t kind,
                       nrm_handler_fn fn, void *ctx);

/* Handles n request frames as one batch (group commit): every request that needs the
 * database runs in its own savepoint of one transaction, and the transaction commits once.
 * replies[i] receives the Reply frame for requests[i] (caller destroys; never NULL). Replies are
 * final only after this returns: if the commit fails, every database reply becomes UNAVAILABLE.
 * senders[i] is the authenticated sender of requests[i] (NULL: its key is not accepted), or
 * senders is NULL in plain text mode, where each request's agency_id is taken as it claims. */
void nrm_server_process(nrm_server_t *self, zframe_t *const *requests, const char *const *senders,
                        size_t n, zframe_t **replies);

/* Decodes one request frame of len bytes and checks it as nrm_server_process does before any
 * handler or the database is involved: the size limit, protobuf decoding, the sender (secure:
 * sender is the connection's authenticated identity, or NULL when its key is not accepted), the
 * envelope (request_id, a body this server handles, a known agency) and the authorization
 * matrix's precheck. On OK *req receives the request, which the caller frees with
 * nrm__v1__request__free_unpacked; otherwise *req is NULL and err says why. Touches nothing:
 * what the fuzz target for requests drives. */
nrm_status_t nrm_server_decode(nrm_server_t *self, const uint8_t *data, size_t len, bool secure,
                               const char *sender, Nrm__V1__Request **req, nrm_error_t *err);

/* Replaces the configuration used for new requests (borrowed). */
void nrm_server_set_config(nrm_server_t *self, nrm_config_t *config);

/* Requests handled and failed since start. */
int64_t nrm_server_requests(const nrm_server_t *self);
int64_t nrm_server_failures(const nrm_server_t *self);

/* The upper bounds (seconds, ascending) of the request latency histograms; +Inf is implied. */
#define NRM_LATENCY_BUCKETS 12
extern const double nrm_latency_bounds[NRM_LATENCY_BUCKETS];

/* The latency of one request kind since start: from decoding the request to its reply. */
typedef struct {
    const char *kind;                    /* the Request.body member name (static) */
    int64_t counts[NRM_LATENCY_BUCKETS]; /* cumulative: requests within each bound */
    int64_t count;                       /* every request, the +Inf bucket */
    double sum_seconds;
} nrm_latency_t;

/* Copies the latency of every request kind seen so far into out (up to cap); returns how many
 * were written. */
size_t nrm_server_latencies(const nrm_server_t *self, nrm_latency_t *out, size_t cap);

#endif
