/* nrmctl_duplicates: duplicates resolve CASE_ID OTHER_CASE_ID --confirm|--dismiss, intake's
 * ResolveDuplicate (coordinators): the answer to a case.possible_duplicate. */
#include "nrmctl_commands.h"

#include <string.h>

#define S_INTAKE "intake"
#define S_ID_MAX 64 /* intake's bound on a case id, checked here so nothing is sent */

/* Public: duplicates resolve CASE_ID OTHER_CASE_ID --confirm|--dismiss. Prints the Reply as one
 * JSON line. */
int nrmctl_duplicates(nrmctl_t *ctl, int argc, char **argv)
{
    if (argc != 5 || strcmp(argv[1], "resolve") != 0)
        return nrmctl_usage_error(argv[0], "usage: duplicates resolve CASE_ID OTHER_CASE_ID "
                                           "--confirm|--dismiss");
    for (int i = 2; i <= 3; i++)
        if (!argv[i][0] || strlen(argv[i]) > S_ID_MAX)
            return nrmctl_usage_error(argv[0], "case ids must be 1 to %d bytes", S_ID_MAX);
    bool confirm = strcmp(argv[4], "--confirm") == 0;
    if (!confirm && strcmp(argv[4], "--dismiss") != 0)
        return nrmctl_usage_error(argv[0], "needs --confirm or --dismiss");
    Nrm__V1__ResolveDuplicate r = NRM__V1__RESOLVE_DUPLICATE__INIT;
    r.case_id = argv[2];
    r.other_case_id = argv[3];
    r.confirm = confirm;
    Nrm__V1__Request req = NRM__V1__REQUEST__INIT;
    req.body_case = NRM__V1__REQUEST__BODY_RESOLVE_DUPLICATE;
    req.resolve_duplicate = &r;
    Nrm__V1__Reply *reply = NULL;
    int rc = nrmctl_call(ctl, S_INTAKE, &req, &reply);
    if (rc != NRMCTL_EXIT_OK)
        return rc;
    rc = nrmctl_print_reply(reply);
    nrm__v1__reply__free_unpacked(reply, NULL);
    return rc;
}
