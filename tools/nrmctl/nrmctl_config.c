/* nrmctl_config: config show, the configuration as the services read it: the file with its
 * included data files merged in (environment overrides are not applied), as one JSON object.
 * Deployment scripts use it to give every agency of every data file its key. */
#include "nrmctl_commands.h"

#include <string.h>

/* Public: config show. */
int nrmctl_config_show(nrmctl_t *ctl, int argc, char **argv)
{
    if (argc != 2 || strcmp(argv[1], "show") != 0)
        return nrmctl_usage_error(argv[0], "expected 'show'");
    nrm_config_t *config = nrmctl_config(ctl);
    if (!config)
        return NRMCTL_EXIT_USAGE;
    json_t *root = json_deep_copy(nrm_config_get(config, ""));
    json_object_del(root, "include");
    int rc = root ? nrmctl_print_json(root) : -1;
    json_decref(root);
    return rc == 0 ? NRMCTL_EXIT_OK : NRMCTL_EXIT_USAGE;
}
