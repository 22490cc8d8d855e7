/* nrmctl_usage: the help texts, the general one and one per command. */
#include "nrmctl_commands.h"

#include <string.h>

typedef struct {
    const char *name;
    const char *text;
} s_usage_t;

static const char s_general[] =
    "usage: nrmctl [--config FILE] [--cert FILE] [--agency ID] [--timeout MS] COMMAND [ARGS...]\n"
    "       (each global option also as --option=VALUE)\n"
    "\n"
    "The client of the national referral mechanism for agencies and operators.\n"
    "\n"
    "Commands:\n"
    "  submit FILE            send a SubmitReport (proto3 JSON) to intake\n"
    "  request SERVICE FILE   send a whole Request (proto3 JSON) to a service\n"
    "  ping [SERVICE...]      ping services (default: every configured service)\n"
    "  status [--json]        health, database, stream heads, consumer lag, shelter\n"
    "                         waitlist and failed deliveries: the first thing to run\n"
    "  tail [OPTIONS] [TOPIC-PREFIX...]\n"
    "                         print events in order, catching up and live: a line per\n"
    "                         event for people on a terminal, else JSON lines\n"
    "  top [OPTIONS]          live view: events per topic and region, open referrals,\n"
    "                         shelter occupancy, deliveries (--once: one JSON snapshot)\n"
    "  deliveries [--state STATE] [--max N]\n"
    "                         list notify's deliveries (coordinators), one JSON line each\n"
    "  deliveries retry DELIVERY-ID...\n"
    "                         send failed deliveries again (coordinators)\n"
    "  referrals [--state S]... [--service S]... [--overdue] [--case ID] [--all-pages]\n"
    "                         the referrals the agency may see (its inbox), one JSON line each\n"
    "  case CASE_ID [--text]  one view of a case: record, referrals, bed, timeline\n"
    "  cases [--region R] [--open] [--minor] [--urgency U] [--all-pages]\n"
    "                         cases (coordinator: all; case manager: its own), one JSON line each\n"
    "  plans [OPTIONS]        list reintegration plans (a manager's own; coordinators all)\n"
    "  plan PLAN-ID           one reintegration plan: goals, return, follow-ups\n"
    "  followup PLAN-ID --contact yes|no [OPTIONS]\n"
    "                         record the plan's next follow-up\n"
    "  stats MEASURE [--by DIM[,DIM]] [--from T] [--to T] [--filter K=V]... [--csv]\n"
    "                         a statistics table, small cells suppressed\n"
    "  stats export [--csv]   the k-anonymous case-level data set (CTDC shape)\n"
    "  keygen FILE            write a new keyring file (never overwrites)\n"
    "  keyrotate FILE         add a key to a keyring, make it active, print its id\n"
    "  cert new NAME DIR      write a CURVE key pair (DIR/NAME.cert, NAME.cert_secret)\n"
    "                         and print the configuration entry of agency NAME\n"
    "  cert key FILE          print the public key of a certificate\n"
    "  gateway-hash           read a sign-in token on stdin, print its hash (gateway.logins)\n"
    "  config show            the configuration with its data files merged, as JSON\n"
    "  help [COMMAND]         this text, or the usage of COMMAND (also COMMAND --help)\n"
    "\n"
    "Global options (before the command):\n"
    "  --config FILE   service configuration (default $NRM_CONFIG, then\n"
    "                  /etc/nrm/config.json, then the local runner's var/config.json in the\n"
    "                  current directory or its nearest parent that has one, with its\n"
    "                  var/certs/coordinator.cert unless --cert or $NRM_CERT is given);\n"
    "                  endpoints are services.<name>.api_connect and\n"
    "                  services.<name>.events_connect, overridden by the environment\n"
    "                  (NRM_SERVICES_<NAME>_API_CONNECT, NRM_SERVICES_<NAME>_EVENTS_CONNECT)\n"
    "  --cert FILE     the agency's CURVE certificate (default $NRM_CERT): the services\n"
    "                  know the agency by its key (FILE or FILE_secret as zcert_save writes)\n"
    "  --agency ID     the agency named in requests (default $NRM_AGENCY; with CURVE it\n"
    "                  must be the certificate's agency, or is left out)\n"
    "  --timeout MS    how long to wait for a reply (default 5000)\n"
    "\n"
    "Replies and events are printed on stdout, one line of proto3 JSON each (tail on a\n"
    "terminal: one line for people). Enum values may be given without their prefix\n"
    "(ACCEPT for REFERRAL_DECISION_ACCEPT).\n"
    "\n"
    "Exit status:\n"
    "  0  OK\n"
    "  1  the service answered with a non-OK status (the Reply is still printed)\n"
    "  2  usage error, unreadable or invalid input file, configuration or keyring file\n"
    "  3  service unavailable (no reply within the timeout)\n";

/* clang-format off: one layout for every entry */
static const s_usage_t s_commands[] = {
    {"submit",
     "usage: nrmctl [GLOBAL-OPTIONS] submit FILE\n"
     "\n"
     "Reads a SubmitReport in proto3 JSON from FILE (- for stdin), sends it to intake as a\n"
     "Request from --agency with a fresh requestId, and prints the Reply as one JSON line.\n"
     "Field names are lowerCamelCase (snake_case accepted), enums are value names\n"
     "(\"GENDER_FEMALE\"), 64-bit integers are strings (\"identifiedAtMs\": \"1718000000000\").\n"
     "\n"
     "Exit status: 0 OK; 1 the service refused the report (see status, errorField);\n"
     "2 usage error or invalid input (the message names the field); 3 intake unavailable.\n"},
    {"request",
     "usage: nrmctl [GLOBAL-OPTIONS] request SERVICE FILE\n"
     "\n"
     "Reads a whole Request in proto3 JSON from FILE (- for stdin), sends it to SERVICE and\n"
     "prints the Reply as one JSON line. requestId is generated when missing (repeat one to\n"
     "get the stored reply of an earlier request); agencyId defaults to --agency.\n"
     "Example: {\"requestId\": \"...\",\n"
     "          \"closeCase\": {\"caseId\": \"...\", \"reason\": \"other\"}}\n"
     "\n"
     "Exit status: 0 OK; 1 non-OK status; 2 usage error or invalid input; 3 unavailable.\n"},
    {"ping",
     "usage: nrmctl [GLOBAL-OPTIONS] ping [SERVICE...]\n"
     "\n"
     "Pings each SERVICE (default: intake routing shelter notify reintegration; one without\n"
     "an api_connect endpoint is skipped) and prints one JSON line per service: the Pong, or\n"
     "{\"service\": NAME, \"status\": \"UNAVAILABLE\"} when it does not answer in time.\n"
     "\n"
     "Exit status: 0 all answered; 1 one answered with a non-OK status; 2 usage error or an\n"
     "unknown service; 3 one did not answer within --timeout.\n"},
    {"status",
     "usage: nrmctl [GLOBAL-OPTIONS] status [--json]\n"
     "\n"
     "Asks every configured service at once (intake routing shelter notify reintegration; one\n"
     "without an api_connect endpoint is skipped) and shows, per service: its health (does it\n"
     "answer Ping), its database connection, its stream head and, for each stream it\n"
     "consumes, the lag: the head of that stream (from its owner's Pong, else the head the\n"
     "consumer knows) minus the consumer's checkpoint; it should return to 0 within seconds.\n"
     "Then the length\n"
     "of shelter's waitlist (GetOccupancy) and the number of failed deliveries (dead letters:\n"
     "ListDeliveries as --agency, \"coordinator only\" for other agencies).\n"
     "\n"
     "  --json   one JSON object instead of the table: {\"healthy\", \"services\": [{\"service\",\n"
     "           \"healthy\", \"status\", \"databaseOk\", \"streamHead\", \"version\",\n"
     "           \"consumers\": [{\"stream\", \"checkpoint\", \"head\", \"lag\"}]}],\n"
     "           \"shelterWaitlist\", \"failedDeliveries\"} (a count that cannot be known is\n"
     "           null, with the reason in \"shelterWaitlistError\" or \"failedDeliveriesError\")\n"
     "\n"
     "Exit status: 0 every configured service answers and reaches its database; 1 one answers\n"
     "but is unhealthy (database down, or a non-OK reply); 2 usage error or no service\n"
     "configured; 3 one does not answer within --timeout.\n"},
    {"deliveries",
     "usage: nrmctl [GLOBAL-OPTIONS] deliveries [--state STATE] [--max N]\n"
     "       nrmctl [GLOBAL-OPTIONS] deliveries retry DELIVERY-ID...\n"
     "\n"
     "Lists notify's deliveries in STATE (ListDeliveries as --agency, a coordinator) and prints\n"
     "each Delivery as one line of proto3 JSON. With retry, sends each failed delivery again\n"
     "(one RetryDelivery per id; attempts and age start afresh) and prints one Reply line each.\n"
     "\n"
     "  --state STATE  failed (the default: dead letters), pending, delivered, undeliverable\n"
     "                 (agencies without a subscription) or all\n"
     "  --max N        at most N deliveries, from 1 to 1000 (default 100)\n"
     "\n"
     "Exit status: 0 OK; 1 a non-OK reply (printed; PERMISSION_DENIED for an agency that is\n"
     "not a coordinator; with retry, any reply not OK); 2 usage error (an id that is not a\n"
     "UUID: nothing is sent); 3 notify unavailable.\n"},
    {"referrals",
     "usage: nrmctl [GLOBAL-OPTIONS] referrals [--state S]... [--service S]... [--overdue]\n"
     "                                         [--case ID] [--page-size N] [--page-token T]\n"
     "                                         [--all-pages]\n"
     "\n"
     "Sends routing a ListReferrals as --agency and prints each ReferralRow as one line of\n"
     "proto3 JSON, oldest first. A provider sees the referrals made to it, a case manager or a\n"
     "reporter those of its cases, a coordinator all; with --case, an agency with no relation to\n"
     "the case is refused (PERMISSION_DENIED). Without --all-pages one page is printed and, when\n"
     "more follow, the next page's token is said on stderr.\n"
     "\n"
     "  --state S       pending, accepted, declined, expired, completed or revoked (repeatable)\n"
     "  --service S     a ServiceType: LEGAL_AID, MEDICAL, ... (repeatable)\n"
     "  --overdue       pending referrals past their deadline only\n"
     "  --case ID       the referrals of one case\n"
     "  --page-size N   rows per page, 1 to 500 (default 50)\n"
     "  --page-token T  start at the page a previous listing named\n"
     "  --all-pages     every page, one after the other\n"
     "\n"
     "Exit status: 0 OK; 1 a non-OK reply (printed); 2 usage error; 3 routing unavailable.\n"},
    {"case",
     "usage: nrmctl [GLOBAL-OPTIONS] case CASE_ID [--text]\n"
     "\n"
     "One view of a case assembled from the three services, as --agency may see it: the\n"
     "categorical record (intake GetCase), its referrals (routing ListReferrals), its bed and\n"
     "waitlist place (shelter ListAllocations) and its timeline (its events in the intake,\n"
     "routing and shelter streams, read with Fetch from sequence 1: an event reader's right).\n"
     "Printed as one JSON object {caseId, case, referrals, allocations, timeline, missing};\n"
     "a part that a service refuses or does not answer is left out and named in missing\n"
     "({part, service, status}), the rest is still printed.\n"
     "\n"
     "  --text   a readable view instead of JSON\n"
     "\n"
     "Exit status: 0 every part; 1 a part is missing (refused or not implemented: see\n"
     "missing); 2 usage error; 3 a service did not answer (see missing).\n"},
    {"cases",
     "usage: nrmctl [GLOBAL-OPTIONS] cases [--region R] [--open] [--minor] [--urgency U]\n"
     "                                     [--page-size N] [--page-token T] [--all-pages]\n"
     "\n"
     "Sends intake a ListCases as --agency and prints each CaseView as one line of proto3\n"
     "JSON: a coordinator sees every case, a case manager its own.\n"
     "\n"
     "  --region R      cases identified in region R (ISO 3166-2)\n"
     "  --open          open cases only\n"
     "  --minor         cases of minors only\n"
     "  --urgency U     ROUTINE, URGENT or EMERGENCY\n"
     "  --page-size N, --page-token T, --all-pages   as for referrals\n"
     "\n"
     "Exit status: 0 OK; 1 a non-OK reply (printed); 2 usage error; 3 intake unavailable.\n"},
    {"plans",
     "usage: nrmctl [GLOBAL-OPTIONS] plans [--state STATE] [--due-before MS] [--manager ID]\n"
     "                                     [--max N]\n"
     "\n"
     "Lists reintegration plans (ListPlans as --agency, page after page) and prints each\n"
     "PlanSummary as one line of proto3 JSON. An agency sees the plans it manages; a\n"
     "coordinator sees all of them, or those of --manager.\n"
     "\n"
     "  --state STATE    open, suspended, closed or all (the default)\n"
     "  --due-before MS  plans with a follow-up not yet recorded due before MS (ms since epoch)\n"
     "  --manager ID     (coordinators) the plans of one managing agency\n"
     "  --max N          at most N plans, from 1 to 1000 (default 100)\n"
     "\n"
     "Exit status: 0 OK; 1 a non-OK reply (printed); 2 usage error; 3 reintegration\n"
     "unavailable.\n"},
    {"plan",
     "usage: nrmctl [GLOBAL-OPTIONS] plan PLAN-ID\n"
     "\n"
     "Prints the Reply to GetPlan: the plan with its goals and milestones, the return (for an\n"
     "assisted voluntary return) and its follow-ups, as one line of proto3 JSON.\n"
     "\n"
     "Exit status: 0 OK; 1 a non-OK reply (printed); 2 usage error; 3 reintegration\n"
     "unavailable.\n"},
    {"followup",
     "usage: nrmctl [GLOBAL-OPTIONS] followup PLAN-ID --contact yes|no [--economic N]\n"
     "                                        [--social N] [--psychosocial N] [--safe-housing]\n"
     "                                        [--income] [--risk]\n"
     "\n"
     "Records the plan's earliest follow-up not yet recorded (RecordFollowUp) and prints the\n"
     "Reply. Scores are 1 (worst) to 5 (best), required after a contact and absent without one;\n"
     "--risk reports a re-trafficking risk (the coordinator is alerted).\n"
     "\n"
     "Exit status: 0 OK; 1 a non-OK reply (printed); 2 usage error; 3 reintegration\n"
     "unavailable.\n"},
    {"stats",
     "usage: nrmctl [GLOBAL-OPTIONS] stats MEASURE [--by DIM[,DIM[,DIM]]] [--from T] [--to T]\n"
     "                                     [--filter DIM=VALUE]... [--csv]\n"
     "       nrmctl [GLOBAL-OPTIONS] stats export [--from T] [--to T] [--csv]\n"
     "\n"
     "Asks the statistics service for a table (GetStatistics) and prints the Reply as proto3\n"
     "JSON, or with --csv the table: one line per cell, margin (\"*\") and the total, with\n"
     "count, suppressed and the measure's values (empty when withheld). Counts below k (the\n"
     "setting stats.k, default 11) are suppressed, and so are the cells that would give them\n"
     "back. Measures: cases, referrals, beds, occupancy, deliveries, plans (their dimensions:\n"
     "deploy/OPERATIONS.md). `stats export` prints the k-anonymous case-level data set\n"
     "(ExportCases; --csv with the CTDC column names). T is ms since the epoch or YYYY-MM-DD.\n"
     "\n"
     "Exit status: 0 OK; 1 a non-OK reply (printed); 2 usage error; 3 stats unavailable.\n"},
    {"top",
     "usage: nrmctl [GLOBAL-OPTIONS] top [--interval MS] [--once] [--service NAME]...\n"
     "\n"
     "A live view of the mechanism. Replays each stream (default: the five services, skipping\n"
     "any whose endpoints are not configured) from sequence 1, in order and once, then follows\n"
     "them live like tail, and redraws every interval: events per topic (in all and in the\n"
     "last 60 s); events per region (case.opened, case.linked, shelter.allocated, and\n"
     "referral.* by the region of their case); open referrals per service (pending, accepted,\n"
     "overdue: pending past its due time); shelter occupancy per region and the waitlist\n"
     "(GetOccupancy at each refresh); failed deliveries (ListDeliveries, coordinators only)\n"
     "and notification.delivered and notification.failed per minute. Counts only, never ids.\n"
     "On a terminal the screen is redrawn in place; otherwise each screen is printed as plain\n"
     "text. q or Ctrl-C quits.\n"
     "\n"
     "  --interval MS   redraw every MS milliseconds, from 100 (default 1000)\n"
     "  --once          catch up to the heads, print one JSON snapshot and exit:\n"
     "                  {\"topics\": {TOPIC: {\"total\", \"lastMinute\"}},\n"
     "                   \"regions\": {REGION: N},\n"
     "                   \"openReferrals\": {SERVICE: {\"pending\", \"accepted\", \"overdue\"}},\n"
     "                   \"shelters\": {\"regions\": {REGION: {\"shelters\", \"capacity\",\n"
     "                     \"occupied\", \"held\", \"free\"}}, \"total\": {...}, \"waitlist\"},\n"
     "                   \"deliveries\": {\"failed\", \"deliveredPerMinute\",\n"
     "                     \"failedPerMinute\"}}\n"
     "  --service NAME  follow this service (repeatable)\n"
     "\n"
     "Exit status: 0 OK (--once: every stream caught up); 2 usage error; 3 with --once, a\n"
     "stream could not be caught up (the snapshot is still printed).\n"},
    {"tail",
     "usage: nrmctl [GLOBAL-OPTIONS] tail [--human|--json] [--from SEQ] [--count N]\n"
     "                                   [--idle-exit MS] [--service NAME]... [TOPIC-PREFIX...]\n"
     "\n"
     "Prints the events of the services (default: the five of them, skipping any whose\n"
     "endpoints are not configured) as JSON lines, each stream in sequence order and each\n"
     "event once; with --human (the default when stdout is a terminal) one line per event:\n"
     "local time, stream, topic, case id (its first 8 characters) and the event's\n"
     "essentials, the streams caught up with --from merged in time order. It subscribes first, "
     "then with --from catches up from SEQ with Fetch, then\n"
     "follows live, fetching whatever a gap or a stream.head heartbeat shows was missed.\n"
     "Without --from it starts at the first live event or heartbeat of each stream.\n"
     "Only events whose topic starts with one of the TOPIC-PREFIXes are printed (all when\n"
     "none is given, e.g. case. or referral.created); stream.head heartbeats never are.\n"
     "\n"
     "  --human          one line per event for people (default on a terminal)\n"
     "  --json           JSON lines (default when stdout is not a terminal)\n"
     "  --from SEQ       catch up from sequence SEQ (1 for the whole stream)\n"
     "  --count N        exit after printing N events\n"
     "  --idle-exit MS   exit after MS milliseconds without printing an event\n"
     "  --service NAME   tail this service (repeatable)\n"
     "\n"
     "Exit status: 0 OK (after --count, --idle-exit or an interrupt); 2 usage error.\n"},
    {"keygen", "usage: nrmctl keygen FILE\n"
               "\n"
               "Writes a new keyring to FILE (mode 0600): key 1 active and a fresh hash key.\n"
               "Refuses to overwrite an existing file.\n"
               "\n"
               "Exit status: 0 written; 2 usage error, FILE exists or cannot be written.\n"},
    {"keyrotate",
     "usage: nrmctl keyrotate FILE\n"
     "\n"
     "Adds a new key to the keyring FILE, makes it the active one (new data is sealed with it,\n"
     "data sealed under older keys still opens) and prints its id. The hash key is kept.\n"
     "\n"
     "Exit status: 0 rotated; 2 usage error, FILE unreadable, invalid or not writable.\n"
     "The file keeps its mode and owner, so the service's user can still read it.\n"},
    {"config",
     "usage: nrmctl [--config FILE] config show\n"
     "\n"
     "Prints the configuration as the services read it: the file with its included data files\n"
     "merged in (arrays concatenated), as one JSON object. Environment overrides are not shown.\n"
     "\n"
     "Exit status: 0 printed; 2 the configuration cannot be read.\n"},
    {"cert",
     "usage: nrmctl cert new NAME DIR | nrmctl cert key FILE\n"
     "\n"
     "new: writes a CURVE key pair as CZMQ certificate files, DIR/NAME.cert (public) and\n"
     "DIR/NAME.cert_secret (mode 600; give it to the agency or service only), and prints the\n"
     "configuration entry {\"id\": NAME, \"public_keys\": [KEY]} to merge into the agency's\n"
     "entry (for a service: services.NAME.cert_file and services.NAME.public_key). Never\n"
     "overwrites. key: prints the public key of a certificate file.\n"
     "\n"
     "Exit status: 0 written; 2 usage error, files exist or cannot be written or read.\n"},
    {"gateway-hash",
     "usage: nrmctl gateway-hash < TOKEN-FILE\n"
     "\n"
     "Reads an agency's gateway sign-in token (the first line of stdin) and prints its\n"
     "libsodium crypto_pwhash_str hash, for gateway.logins[].token_hash. The token is not kept.\n"
     "\n"
     "Exit status: 0 printed; 2 usage error or empty token.\n"},
    {"help", "usage: nrmctl help [COMMAND]\n"
             "\n"
             "Prints the general usage, or the usage of COMMAND.\n"},
};
/* clang-format on */

#define S_COMMAND_COUNT (sizeof s_commands / sizeof s_commands[0])

/* Public: the general usage text. */
void nrmctl_usage(FILE *out)
{
    fputs(s_general, out);
}

/* Public: the usage text of one command; false when unknown. */
bool nrmctl_command_usage(FILE *out, const char *command)
{
    for (size_t i = 0; i < S_COMMAND_COUNT; i++) {
        if (strcmp(s_commands[i].name, command) == 0) {
            fputs(s_commands[i].text, out);
            return true;
        }
    }
    return false;
}
