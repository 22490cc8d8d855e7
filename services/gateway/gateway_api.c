/* gateway_api: the JSON API and readiness (see gateway_api.h). */
#include "gateway_api.h"
#include "gateway_http.h"
#include "nrm_client.h"
#include "nrm_crypto.h"
#include "nrm_json.h"
#include "nrm_log.h"

#include <string.h>

#define S_PING_TIMEOUT_MS 2000

unsigned gw_api_http_status(int status)
{
    switch (status) {
    case NRM__V1__STATUS__STATUS_OK:
        return MHD_HTTP_OK;
    case NRM__V1__STATUS__STATUS_INVALID_ARGUMENT:
        return MHD_HTTP_BAD_REQUEST;
    case NRM__V1__STATUS__STATUS_UNAUTHENTICATED:
        return MHD_HTTP_UNAUTHORIZED;
    case NRM__V1__STATUS__STATUS_PERMISSION_DENIED:
        return MHD_HTTP_FORBIDDEN;
    case NRM__V1__STATUS__STATUS_NOT_FOUND:
        return MHD_HTTP_NOT_FOUND;
    case NRM__V1__STATUS__STATUS_CONFLICT:
    case NRM__V1__STATUS__STATUS_FAILED_PRECONDITION:
        return MHD_HTTP_CONFLICT;
    case NRM__V1__STATUS__STATUS_UNAVAILABLE:
        return MHD_HTTP_SERVICE_UNAVAILABLE;
    case NRM__V1__STATUS__STATUS_UNIMPLEMENTED:
        return MHD_HTTP_NOT_IMPLEMENTED;
    default:
        return MHD_HTTP_INTERNAL_SERVER_ERROR;
    }
}

Nrm__V1__Reply *gw_api_send(gw_t *gw, const gw_service_t *service, Nrm__V1__Request *req,
                            const char *agency_id, int timeout_ms)
{
    (void)gw;
    /* one client per call: libmicrohttpd calls from a thread per connection, and a ZeroMQ
     * socket belongs to one thread */
    nrm_client_t *client =
        nrm_client_new(service->api, "", service->curve.cert ? &service->curve : NULL);
    if (!client)
        return NULL;
    req->agency_id = (char *)agency_id;
    nrm_error_t err;
    nrm_error_clear(&err);
    Nrm__V1__Reply *reply = nrm_client_call(client, req, timeout_ms, &err);
    nrm_client_destroy(&client);
    return reply;
}

bool gw_api_known(gw_t *gw, const char *service, const char *field)
{
    const ProtobufCFieldDescriptor *fd =
        protobuf_c_message_descriptor_get_field_by_name(&nrm__v1__request__descriptor, field);
    return gw_service(gw, service) && fd && (fd->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) &&
           strcmp(field, "fetch") != 0 && strcmp(field, "ping") != 0;
}

/* The error body of the gateway's own refusals: {"error": message, "status": "STATUS_<name>"},
 * the status named like a Reply's. */
static json_t *s_error(const char *status, const char *message)
{
    char name[64];
    snprintf(name, sizeof name, "STATUS_%s", status);
    return json_pack("{s:s, s:s}", "error", message, "status", name);
}

/* Builds the Request {field: body} from the JSON text, or answers why not (returns NULL and
 * sets *answered). */
static Nrm__V1__Request *s_request(struct MHD_Connection *conn, const char *field, const char *body,
                                   size_t len, enum MHD_Result *answered)
{
    json_error_t jerr;
    json_t *msg = len ? json_loadb(body, len, JSON_REJECT_DUPLICATES, &jerr) : json_object();
    if (!json_is_object(msg)) {
        json_decref(msg);
        *answered = gw_http_json(conn, MHD_HTTP_BAD_REQUEST,
                                 s_error("INVALID_ARGUMENT", "the body is not a JSON object"));
        return NULL;
    }
    json_t *wrapped = json_pack("{s:o}", field, msg);
    nrm_error_t err;
    nrm_error_clear(&err);
    Nrm__V1__Request *req =
        (Nrm__V1__Request *)nrm_json_to_message(&nrm__v1__request__descriptor, wrapped, &err);
    json_decref(wrapped);
    if (!req) {
        json_t *e = s_error("INVALID_ARGUMENT", err.message);
        json_object_set_new(e, "errorField", json_string(err.field));
        *answered = gw_http_json(conn, MHD_HTTP_BAD_REQUEST, e);
    }
    return req;
}

enum MHD_Result gw_api_call(gw_t *gw, struct MHD_Connection *conn, const char *agency,
                            const char *service_name, const char *field, const char *body,
                            size_t len, const char *idempotency_key)
{
    const gw_service_t *service = gw_service(gw, service_name);
    if (!gw_api_known(gw, service_name, field))
        return gw_http_json(conn, MHD_HTTP_NOT_FOUND,
                            s_error("NOT_FOUND", "no such service or request"));
    if (idempotency_key && !nrm_uuid_valid(idempotency_key))
        return gw_http_json(conn, MHD_HTTP_BAD_REQUEST,
                            s_error("INVALID_ARGUMENT", "Idempotency-Key must be a UUID"));
    enum MHD_Result answered = MHD_NO;
    Nrm__V1__Request *req = s_request(conn, field, body, len, &answered);
    if (!req)
        return answered;
    char request_id[37];
    if (idempotency_key)
        snprintf(request_id, sizeof request_id, "%s", idempotency_key);
    else
        nrm_uuid_v4(request_id);
    char *own_id = req->request_id, *own_agency = req->agency_id;
    req->request_id = request_id;
    Nrm__V1__Reply *reply = gw_api_send(gw, service, req, agency, GW_CALL_TIMEOUT_MS);
    req->request_id = own_id;
    req->agency_id = own_agency;
    protobuf_c_message_free_unpacked(&req->base, NULL);
    if (!reply)
        return gw_http_json(conn, MHD_HTTP_SERVICE_UNAVAILABLE,
                            s_error("UNAVAILABLE", "the service did not answer"));
    unsigned status = gw_api_http_status(reply->status);
    json_t *out = nrm_json_from_message(&reply->base);
    nrm__v1__reply__free_unpacked(reply, NULL);
    return gw_http_json(conn, status, out);
}

enum MHD_Result gw_api_ready(gw_t *gw, struct MHD_Connection *conn)
{
    json_t *down = json_array();
    for (int i = 0; i < gw->n_services; i++) {
        Nrm__V1__Ping ping = NRM__V1__PING__INIT;
        Nrm__V1__Request req = NRM__V1__REQUEST__INIT;
        req.body_case = NRM__V1__REQUEST__BODY_PING;
        req.ping = &ping;
        Nrm__V1__Reply *reply = gw_api_send(gw, &gw->services[i], &req, "", S_PING_TIMEOUT_MS);
        bool ok = reply && reply->status == NRM__V1__STATUS__STATUS_OK && reply->pong &&
                  reply->pong->database_ok;
        if (!ok)
            json_array_append_new(down, json_string(gw->services[i].name));
        if (reply)
            nrm__v1__reply__free_unpacked(reply, NULL);
    }
    bool ready = json_array_size(down) == 0;
    return gw_http_json(conn, ready ? MHD_HTTP_OK : MHD_HTTP_SERVICE_UNAVAILABLE,
                        json_pack("{s:b, s:o}", "ready", ready, "notReady", down));
}
