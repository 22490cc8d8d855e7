/* nrmctl: the command-line client of the national referral mechanism.
 *
 * Takes the global options, then hands the rest of the command line to one subcommand. */
#include "nrmctl_commands.h"
#include "nrm_crypto.h"
#include "nrm_wipe.h"

#include <stdlib.h>
#include <string.h>

typedef int (*s_run_fn)(nrmctl_t *ctl, int argc, char **argv);

typedef struct {
    const char *name;
    s_run_fn run;
} s_command_t;

static const s_command_t s_commands[] = {
    {"submit", nrmctl_submit},
    {"request", nrmctl_request},
    {"ping", nrmctl_ping},
    {"status", nrmctl_status},
    {"tail", nrmctl_tail},
    {"top", nrmctl_top},
    {"deliveries", nrmctl_deliveries},
    {"agencies", nrmctl_agencies},
    {"quarantine", nrmctl_quarantine},
    {"referrals", nrmctl_referrals},
    {"providers", nrmctl_providers},
    {"agreements", nrmctl_agreements},
    {"case", nrmctl_case},
    {"cases", nrmctl_cases},
    {"request-bed", nrmctl_request_bed},
    {"duplicates", nrmctl_duplicates},
    {"plans", nrmctl_plans},
    {"plan", nrmctl_plan},
    {"followup", nrmctl_followup},
    {"stats", nrmctl_stats},
    {"keygen", nrmctl_keygen},
    {"keyrotate", nrmctl_keyrotate},
    {"cert", nrmctl_cert},
    {"gateway-hash", nrmctl_gateway_hash},
    {"config", nrmctl_config_show},
};

#define S_COMMAND_COUNT (sizeof s_commands / sizeof s_commands[0])
#define S_TIMEOUT_MAX_MS 3600000 /* one hour */
#define S_OPTION_MAX 16          /* longer than any global option's name */

/* True when arg is a request for help. */
static bool s_is_help(const char *arg)
{
    return strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0;
}

/* Returns the command named name, or NULL. */
static const s_command_t *s_command(const char *name)
{
    for (size_t i = 0; i < S_COMMAND_COUNT; i++)
        if (strcmp(s_commands[i].name, name) == 0)
            return &s_commands[i];
    return NULL;
}

/* Takes one global option at argv[*i] (and its value), as "--option VALUE" or
 * "--option=VALUE", into ctl. Returns 0, or the exit code of a usage error. */
static int s_global_option(nrmctl_t *ctl, int argc, char **argv, int *i)
{
    char option[S_OPTION_MAX];
    const char *equals = strchr(argv[*i], '=');
    size_t length = equals ? (size_t)(equals - argv[*i]) : strlen(argv[*i]);
    snprintf(option, sizeof option, "%.*s", (int)(length < sizeof option ? length : 0), argv[*i]);
    if (strcmp(option, "--config") != 0 && strcmp(option, "--agency") != 0 &&
        strcmp(option, "--timeout") != 0 && strcmp(option, "--cert") != 0)
        return nrmctl_usage_error(NULL, "unknown option %s", argv[*i]);
    if (!equals && *i + 1 >= argc)
        return nrmctl_usage_error(NULL, "option %s needs a value", option);
    const char *value = equals ? equals + 1 : argv[++*i];
    int64_t timeout = 0;
    if (strcmp(option, "--config") == 0 && value[0]) {
        ctl->config_path = value;
        ctl->config_given = true;
    } else if (strcmp(option, "--agency") == 0 && value[0]) {
        ctl->agency_id = value;
        ctl->agency_given = true;
    } else if (strcmp(option, "--cert") == 0 && value[0])
        ctl->cert_path = value;
    else if (strcmp(option, "--timeout") == 0 &&
             nrmctl_parse_int(value, 1, S_TIMEOUT_MAX_MS, &timeout))
        ctl->timeout_ms = (int)timeout;
    else
        return nrmctl_usage_error(NULL, "invalid value for %s", option);
    return 0;
}

/* help [COMMAND]: prints the general usage or a command's (help --help: help's own). */
static int s_help(int argc, char **argv)
{
    if (argc >= 2 && s_is_help(argv[1])) {
        nrmctl_command_usage(stdout, argv[0]);
        return NRMCTL_EXIT_OK;
    }
    if (argc < 2) {
        nrmctl_usage(stdout);
        return NRMCTL_EXIT_OK;
    }
    if (!nrmctl_command_usage(stdout, argv[1]))
        return nrmctl_usage_error(NULL, "unknown command '%s'", argv[1]);
    return NRMCTL_EXIT_OK;
}

/* Runs the command at argv[0] with its arguments: its usage on --help, else the command. */
static int s_dispatch(nrmctl_t *ctl, int argc, char **argv)
{
    if (strcmp(argv[0], "help") == 0)
        return s_help(argc, argv);
    const s_command_t *command = s_command(argv[0]);
    if (!command)
        return nrmctl_usage_error(NULL, "unknown command '%s'", argv[0]);
    for (int i = 1; i < argc; i++) {
        if (s_is_help(argv[i])) {
            nrmctl_command_usage(stdout, argv[0]);
            return NRMCTL_EXIT_OK;
        }
    }
    return command->run(ctl, argc, argv);
}

/* Global options, crypto, then the command. Returns the command's exit code. */
int main(int argc, char **argv)
{
    nrm_wipe_json(); /* identities it prints pass through JSON: wiped when freed */
    nrmctl_t ctl;
    nrmctl_init(&ctl);
    int i = 1;
    for (; i < argc && argv[i][0] == '-' && argv[i][1]; i++) {
        if (s_is_help(argv[i])) {
            nrmctl_usage(stdout);
            return NRMCTL_EXIT_OK;
        }
        int rc = s_global_option(&ctl, argc, argv, &i);
        if (rc != 0)
            return rc;
    }
    if (i >= argc)
        return nrmctl_usage_error(NULL, "no command given");
    if (nrm_crypto_init() != 0) {
        nrmctl_error("libsodium cannot start");
        return NRMCTL_EXIT_UNAVAILABLE;
    }
    int rc = s_dispatch(&ctl, argc - i, argv + i);
    nrmctl_cleanup(&ctl);
    return rc;
}
