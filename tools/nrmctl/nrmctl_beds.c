/* nrmctl_beds: request-bed CASE_ID, shelter's RequestBed (a bed asked for again after a
 * no_show), as --agency (the case manager or a coordinator). */
#include "nrmctl_commands.h"

#include <string.h>

#define S_SHELTER "shelter"
#define S_ID_MAX 64 /* shelter's bound on a case id, checked here so nothing is sent */

/* Public: request-bed CASE_ID. Prints the Reply as one JSON line. */
int nrmctl_request_bed(nrmctl_t *ctl, int argc, char **argv)
{
    if (argc != 2)
        return nrmctl_usage_error(argv[0], "needs exactly one CASE_ID");
    if (!argv[1][0] || strlen(argv[1]) > S_ID_MAX)
        return nrmctl_usage_error(argv[0], "CASE_ID must be 1 to %d bytes", S_ID_MAX);
    Nrm__V1__RequestBed bed = NRM__V1__REQUEST_BED__INIT;
    bed.case_id = argv[1];
    Nrm__V1__Request req = NRM__V1__REQUEST__INIT;
    req.body_case = NRM__V1__REQUEST__BODY_REQUEST_BED;
    req.request_bed = &bed;
    Nrm__V1__Reply *reply = NULL;
    int rc = nrmctl_call(ctl, S_SHELTER, &req, &reply);
    if (rc != NRMCTL_EXIT_OK)
        return rc;
    rc = nrmctl_print_reply(reply);
    nrm__v1__reply__free_unpacked(reply, NULL);
    return rc;
}
