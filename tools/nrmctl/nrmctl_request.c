/* nrmctl_request: submit (a SubmitReport to intake) and request (a whole Request). */
#include "nrmctl_commands.h"
#include "nrm_json.h"

#include <string.h>

#define S_INTAKE "intake"

/* Sends req to service and prints the Reply. Returns the exit code. */
static int s_send(nrmctl_t *ctl, const char *service, Nrm__V1__Request *req)
{
    Nrm__V1__Reply *reply = NULL;
    int rc = nrmctl_call(ctl, service, req, &reply);
    if (rc != NRMCTL_EXIT_OK)
        return rc;
    rc = nrmctl_print_reply(reply);
    nrm__v1__reply__free_unpacked(reply, NULL);
    return rc;
}

/* Public: submit FILE; the report becomes the body of a Request to intake. */
int nrmctl_submit(nrmctl_t *ctl, int argc, char **argv)
{
    if (argc != 2)
        return nrmctl_usage_error(argv[0], "expected one FILE argument");
    ProtobufCMessage *msg =
        nrmctl_read_message(argv[1], &nrm__v1__submit_report__descriptor, "submit_report");
    if (!msg)
        return NRMCTL_EXIT_USAGE;
    Nrm__V1__Request req = NRM__V1__REQUEST__INIT;
    req.body_case = NRM__V1__REQUEST__BODY_SUBMIT_REPORT;
    req.submit_report = (Nrm__V1__SubmitReport *)msg;
    int rc = s_send(ctl, S_INTAKE, &req);
    protobuf_c_message_free_unpacked(msg, NULL);
    return rc;
}

/* Public: request SERVICE FILE; the Request is sent as read. */
int nrmctl_request(nrmctl_t *ctl, int argc, char **argv)
{
    if (argc != 3)
        return nrmctl_usage_error(argv[0], "expected SERVICE and FILE arguments");
    if (!nrmctl_service_name_ok(argv[1]))
        return nrmctl_usage_error(argv[0], "invalid service name");
    ProtobufCMessage *msg = nrmctl_read_message(argv[2], &nrm__v1__request__descriptor, NULL);
    if (!msg)
        return NRMCTL_EXIT_USAGE;
    int rc = s_send(ctl, argv[1], (Nrm__V1__Request *)msg);
    protobuf_c_message_free_unpacked(msg, NULL);
    return rc;
}
