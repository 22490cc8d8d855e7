/* nrmctl_commands: the subcommands and their usage texts.
 *
 * Every command runs as run(ctl, argc, argv) with argv[0] the command's name and the global
 * options already taken into ctl; it returns the process exit code (NRMCTL_EXIT_*). */
#ifndef NRMCTL_COMMANDS_H
#define NRMCTL_COMMANDS_H

#include <stdio.h>
#include "nrmctl_common.h"

/* submit FILE: a SubmitReport to intake. */
int nrmctl_submit(nrmctl_t *ctl, int argc, char **argv);

/* request SERVICE FILE: a whole Request to any service. */
int nrmctl_request(nrmctl_t *ctl, int argc, char **argv);

/* ping [SERVICE...]: Ping each service. */
int nrmctl_ping(nrmctl_t *ctl, int argc, char **argv);

/* tail [OPTIONS] [TOPIC-PREFIX...]: print events in order, catching up and following live. */
int nrmctl_tail(nrmctl_t *ctl, int argc, char **argv);

/* status [--json]: health, database, heads, consumer lag, waitlist and failed deliveries. */
int nrmctl_status(nrmctl_t *ctl, int argc, char **argv);

/* deliveries [--state STATE] [--max N] | deliveries retry ID...: notify's deliveries. */
int nrmctl_deliveries(nrmctl_t *ctl, int argc, char **argv);

/* agencies list [--all] | upsert FILE | upsert --id ID --type TYPE [--key K]... | deactivate
 * ID: intake's agency directory (coordinators). */
int nrmctl_agencies(nrmctl_t *ctl, int argc, char **argv);
/* quarantine list SERVICE [--stream S] [--max N] | quarantine retry SERVICE ID: the events a
 * service's consumers set aside (ListQuarantine, RetryQuarantined). */
int nrmctl_quarantine(nrmctl_t *ctl, int argc, char **argv);

/* referrals [--state S]... [--service S]... [--overdue] [--case ID] [--all-pages]: routing's
 * ListReferrals, one JSON line per referral. */
int nrmctl_referrals(nrmctl_t *ctl, int argc, char **argv);

/* providers [list] [--active] | providers upsert FILE; agreements [list] [--provider ID] |
 * agreements upsert FILE: routing's directory at run time (nrmctl_directory.c). */
int nrmctl_providers(nrmctl_t *ctl, int argc, char **argv);
int nrmctl_agreements(nrmctl_t *ctl, int argc, char **argv);

/* case CASE_ID [--text]: the case, its referrals, its bed and its timeline from the three
 * services, what is missing named. */
int nrmctl_case(nrmctl_t *ctl, int argc, char **argv);

/* cases [--region R] [--open] [--minor] [--urgency U] [--all-pages]: intake's ListCases. */
int nrmctl_cases(nrmctl_t *ctl, int argc, char **argv);
/* duplicates resolve CASE_ID OTHER_CASE_ID --confirm|--dismiss: intake's ResolveDuplicate
 * (nrmctl_duplicates.c). */
int nrmctl_duplicates(nrmctl_t *ctl, int argc, char **argv);

/* request-bed CASE_ID: shelter's RequestBed, a bed asked for again (nrmctl_beds.c). */
int nrmctl_request_bed(nrmctl_t *ctl, int argc, char **argv);

/* plans [OPTIONS], plan PLAN-ID, followup PLAN-ID OPTIONS: reintegration plans (nrmctl_plans.c). */
int nrmctl_plans(nrmctl_t *ctl, int argc, char **argv);
int nrmctl_plan(nrmctl_t *ctl, int argc, char **argv);
int nrmctl_followup(nrmctl_t *ctl, int argc, char **argv);

/* stats MEASURE [--by DIMS] [--from T] [--to T] [--filter DIM=VALUE]... [--csv], stats export
 * [--from T] [--to T] [--csv]: the statistics service's tables and case-level export. */
int nrmctl_stats(nrmctl_t *ctl, int argc, char **argv);

/* top [OPTIONS]: a live view of the streams, occupancy and deliveries (--once: one snapshot). */
int nrmctl_top(nrmctl_t *ctl, int argc, char **argv);

/* keygen FILE: write a new keyring. */
int nrmctl_keygen(nrmctl_t *ctl, int argc, char **argv);

/* keyrotate FILE: add a key to a keyring and make it active. */
int nrmctl_keyrotate(nrmctl_t *ctl, int argc, char **argv);

/* gateway-hash: the hash of a gateway sign-in token read on stdin. */
int nrmctl_gateway_hash(nrmctl_t *ctl, int argc, char **argv);

/* cert new NAME DIR | cert key FILE: CURVE certificates. */
int nrmctl_cert(nrmctl_t *ctl, int argc, char **argv);

/* config show: the configuration with its data files merged, as one JSON object. */
int nrmctl_config_show(nrmctl_t *ctl, int argc, char **argv);

/* Prints the general usage (commands, global options, exit codes) on out. */
void nrmctl_usage(FILE *out);

/* Prints the usage of command on out. Returns false when there is no such command. */
bool nrmctl_command_usage(FILE *out, const char *command);

#endif
