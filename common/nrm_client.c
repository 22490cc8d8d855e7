#include "nrm_alloc.h"
#include "nrm_client.h"
#include "nrm_crypto.h"
#include "nrm_time.h"

/* Replies that may queue up while a caller is not reading; beyond it the socket drops. */
#define S_HWM 10000

struct nrm_client_t {
    zsock_t *sock;
    char *agency_id;
};

nrm_client_t *nrm_client_new(const char *endpoint, const char *agency_id, const nrm_curve_t *curve)
{
    nrm_client_t *self = nrm_xcalloc(1, sizeof *self);
    self->sock = zsock_new(ZMQ_DEALER);
    self->agency_id = nrm_xstrdup(agency_id ? agency_id : "");
    if (!self->sock) {
        nrm_client_destroy(&self);
        return NULL;
    }
    zsock_set_sndhwm(self->sock, S_HWM);
    zsock_set_rcvhwm(self->sock, S_HWM);
    zsock_set_linger(self->sock, 0);
    nrm_auth_apply_client(self->sock, curve);
    if (zsock_connect(self->sock, "%s", endpoint) != 0)
        nrm_client_destroy(&self);
    return self;
}

void nrm_client_destroy(nrm_client_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    nrm_client_t *self = *self_p;
    zsock_destroy(&self->sock);
    free(self->agency_id);
    free(self);
    *self_p = NULL;
}

zsock_t *nrm_client_socket(nrm_client_t *self)
{
    return self->sock;
}

int nrm_client_send(nrm_client_t *self, Nrm__V1__Request *req, char request_id_out[37])
{
    char *saved_id = req->request_id, *saved_agency = req->agency_id;
    char fresh[37];
    if (!req->request_id || !req->request_id[0]) {
        nrm_uuid_v4(fresh);
        req->request_id = fresh;
    }
    if (!req->agency_id || !req->agency_id[0])
        req->agency_id = self->agency_id;
    snprintf(request_id_out, 37, "%s", req->request_id);
    size_t len = nrm__v1__request__get_packed_size(req);
    zframe_t *frame = zframe_new(NULL, len);
    nrm__v1__request__pack(req, zframe_data(frame));
    req->request_id = saved_id;
    req->agency_id = saved_agency;
    /* zframe_send takes the frame only when it is sent (no peer yet, or a full queue: not) */
    int rc = zframe_send(&frame, self->sock, ZFRAME_DONTWAIT);
    zframe_destroy(&frame);
    return rc;
}

Nrm__V1__Reply *nrm_client_receive(nrm_client_t *self)
{
    zmsg_t *msg = zmsg_recv_nowait(self->sock);
    if (!msg)
        return NULL;
    zframe_t *last = zmsg_last(msg);
    Nrm__V1__Reply *reply =
        last ? nrm__v1__reply__unpack(NULL, zframe_size(last), zframe_data(last)) : NULL;
    zmsg_destroy(&msg);
    return reply;
}

/* Waits until a reply to request_id (any reply if NULL) arrives or the deadline passes. */
static Nrm__V1__Reply *s_await(nrm_client_t *self, const char *request_id, int timeout_ms)
{
    int64_t deadline = nrm_mono_ms() + timeout_ms;
    zpoller_t *poller = zpoller_new(self->sock, NULL);
    Nrm__V1__Reply *reply = NULL;
    while (!reply) {
        int64_t left = deadline - nrm_mono_ms();
        if (left <= 0 || !zpoller_wait(poller, (int)left))
            break;
        reply = nrm_client_receive(self);
        if (reply && request_id && strcmp(reply->request_id, request_id) != 0) {
            nrm__v1__reply__free_unpacked(reply, NULL);
            reply = NULL;
        }
    }
    zpoller_destroy(&poller);
    return reply;
}

Nrm__V1__Reply *nrm_client_call(nrm_client_t *self, Nrm__V1__Request *req, int timeout_ms,
                                nrm_error_t *err)
{
    char request_id[37];
    if (nrm_client_send(self, req, request_id) != 0) {
        nrm_fail(err, NRM_UNAVAILABLE, NULL, "service unreachable");
        return NULL;
    }
    Nrm__V1__Reply *reply = s_await(self, request_id, timeout_ms);
    if (!reply)
        nrm_fail(err, NRM_UNAVAILABLE, NULL, "no reply within %d ms", timeout_ms);
    return reply;
}

Nrm__V1__Reply *nrm_client_call_raw(nrm_client_t *self, const void *data, size_t len,
                                    int timeout_ms)
{
    zframe_t *frame = zframe_new(data, len);
    if (zframe_send(&frame, self->sock, 0) != 0) {
        zframe_destroy(&frame);
        return NULL;
    }
    return s_await(self, NULL, timeout_ms);
}
