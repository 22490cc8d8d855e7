/* nrmctl_lists: the referrals and cases commands: routing's ListReferrals and intake's
 * ListCases, one JSON line per row, page after page.
 *
 *   referrals [--state S]... [--service S]... [--overdue] [--case ID] [--page-size N]
 *             [--page-token T] [--all-pages]
 *   cases [--region R] [--open] [--minor] [--urgency U] [--page-size N] [--page-token T]
 *         [--all-pages]
 *
 * Without --all-pages one page is printed; when more follow, the token of the next page is
 * said on stderr. */
#include "nrmctl_lists.h"
#include "nrmctl_commands.h"

#include <stdio.h>
#include <string.h>

#define S_STATES_MAX 6
#define S_SERVICES_MAX 16
#define S_NAME_MAX 64
#define S_PAGE_MAX 500

int nrmctl_enum_value(const ProtobufCEnumDescriptor *desc, const char *prefix, const char *name)
{
    char full[S_NAME_MAX];
    const ProtobufCEnumValue *v = protobuf_c_enum_descriptor_get_value_by_name(desc, name);
    if (!v && snprintf(full, sizeof full, "%s%s", prefix, name) < (int)sizeof full)
        v = protobuf_c_enum_descriptor_get_value_by_name(desc, full);
    return v && v->value != 0 ? v->value : -1;
}

/* The paging options every list takes. */
typedef struct {
    bool all_pages;
    int64_t page_size; /* 0: the service's default */
    const char *page_token;
} s_paging_t;

/* Takes a paging option at argv[*i] (and its value). Returns 1 when it was one, 0 when not,
 * or -1 after a usage error (rc set). */
static int s_paging_option(const char *command, int argc, char **argv, int *i, s_paging_t *p,
                           int *rc)
{
    const char *option = argv[*i];
    if (strcmp(option, "--all-pages") == 0) {
        p->all_pages = true;
        return 1;
    }
    bool size = strcmp(option, "--page-size") == 0;
    if (!size && strcmp(option, "--page-token") != 0)
        return 0;
    if (*i + 1 >= argc) {
        *rc = nrmctl_usage_error(command, "option %s needs a value", option);
        return -1;
    }
    const char *value = argv[++*i];
    if (!size)
        p->page_token = value;
    else if (!nrmctl_parse_int(value, 1, S_PAGE_MAX, &p->page_size)) {
        *rc = nrmctl_usage_error(command, "--page-size is from 1 to %d", S_PAGE_MAX);
        return -1;
    }
    return 1;
}

/* Prints a row as one JSON line (nrmctl_row_fn). */
static int s_print_row(const ProtobufCMessage *row, void *arg)
{
    (void)arg;
    if (nrmctl_print_message(row) == 0)
        return NRMCTL_EXIT_OK;
    nrmctl_error("cannot write to the standard output");
    return NRMCTL_EXIT_USAGE;
}

/* Public: page after page, each row to on_row. */
int nrmctl_list_pages(nrmctl_t *ctl, const char *command, const char *service,
                      Nrm__V1__Request *req, char **page_token, bool all_pages,
                      nrmctl_rows_fn rows_of, nrmctl_row_fn on_row, void *arg,
                      Nrm__V1__Status *status)
{
    char token[NRMCTL_TOKEN_MAX] = "";
    *status = NRM__V1__STATUS__STATUS_OK;
    for (;;) {
        Nrm__V1__Reply *reply = NULL;
        int rc = nrmctl_call(ctl, service, req, &reply);
        if (rc != NRMCTL_EXIT_OK) {
            *status = NRM__V1__STATUS__STATUS_UNAVAILABLE;
            return rc;
        }
        size_t n = 0;
        const char *next = "";
        ProtobufCMessage *const *rows = reply->status == NRM_OK ? rows_of(reply, &n, &next) : NULL;
        if (!rows) {
            *status = reply->status == NRM_OK ? NRM__V1__STATUS__STATUS_INTERNAL : reply->status;
            if (!on_row)
                nrmctl_print_reply(reply);
            nrm__v1__reply__free_unpacked(reply, NULL);
            return NRMCTL_EXIT_STATUS;
        }
        for (size_t i = 0; i < n && rc == NRMCTL_EXIT_OK; i++)
            rc = (on_row ? on_row : s_print_row)(rows[i], arg);
        snprintf(token, sizeof token, "%s", next ? next : "");
        nrm__v1__reply__free_unpacked(reply, NULL);
        if (rc != NRMCTL_EXIT_OK || !token[0])
            return rc;
        if (!all_pages) {
            nrmctl_error("more %s follow: --page-token %s (or --all-pages)", command, token);
            return rc;
        }
        *page_token = token;
    }
}

/* Public: the rows of each list Reply, or NULL when it is not that list. */
ProtobufCMessage *const *nrmctl_referral_rows(const Nrm__V1__Reply *reply, size_t *n,
                                              const char **next)
{
    if (reply->result_case != NRM__V1__REPLY__RESULT_REFERRAL_LIST)
        return NULL;
    static ProtobufCMessage *none[1];
    *n = reply->referral_list->n_referrals;
    *next = reply->referral_list->next_page_token;
    return *n ? (ProtobufCMessage **)reply->referral_list->referrals : none;
}

ProtobufCMessage *const *nrmctl_case_rows(const Nrm__V1__Reply *reply, size_t *n, const char **next)
{
    if (reply->result_case != NRM__V1__REPLY__RESULT_CASE_LIST)
        return NULL;
    static ProtobufCMessage *none[1];
    *n = reply->case_list->n_cases;
    *next = reply->case_list->next_page_token;
    return *n ? (ProtobufCMessage **)reply->case_list->cases : none;
}

ProtobufCMessage *const *nrmctl_allocation_rows(const Nrm__V1__Reply *reply, size_t *n,
                                                const char **next)
{
    if (reply->result_case != NRM__V1__REPLY__RESULT_ALLOCATION_LIST)
        return NULL;
    static ProtobufCMessage *none[1];
    *n = reply->allocation_list->n_allocations;
    *next = reply->allocation_list->next_page_token;
    return *n ? (ProtobufCMessage **)reply->allocation_list->allocations : none;
}

/* Public: referrals [--state S]... [--service S]... [--overdue] [--case ID] [paging]. */
int nrmctl_referrals(nrmctl_t *ctl, int argc, char **argv)
{
    Nrm__V1__ListReferrals list = NRM__V1__LIST_REFERRALS__INIT;
    char *states[S_STATES_MAX];
    Nrm__V1__ServiceType services[S_SERVICES_MAX];
    list.state = states;
    list.service = services;
    s_paging_t paging = {0};
    for (int i = 1; i < argc; i++) {
        int rc = 0, taken = s_paging_option(argv[0], argc, argv, &i, &paging, &rc);
        if (taken < 0)
            return rc;
        if (taken)
            continue;
        const char *option = argv[i];
        if (strcmp(option, "--overdue") == 0) {
            list.overdue_only = 1;
            continue;
        }
        bool state = strcmp(option, "--state") == 0, service = strcmp(option, "--service") == 0;
        if (!state && !service && strcmp(option, "--case") != 0)
            return nrmctl_usage_error(argv[0], "unknown argument %s", option);
        if (i + 1 >= argc)
            return nrmctl_usage_error(argv[0], "option %s needs a value", option);
        char *value = argv[++i];
        if (state && list.n_state >= S_STATES_MAX)
            return nrmctl_usage_error(argv[0], "at most %d --state", S_STATES_MAX);
        if (state) {
            list.state[list.n_state++] = value;
        } else if (service) {
            int v = nrmctl_enum_value(&nrm__v1__service_type__descriptor, "SERVICE_TYPE_", value);
            if (v < 0 || list.n_service >= S_SERVICES_MAX)
                return nrmctl_usage_error(argv[0],
                                          "--service is a ServiceType (LEGAL_AID, ...)"
                                          ", at most %d",
                                          S_SERVICES_MAX);
            list.service[list.n_service++] = (Nrm__V1__ServiceType)v;
        } else {
            list.case_id = value;
        }
    }
    list.page_size = (int32_t)paging.page_size;
    list.page_token = (char *)(paging.page_token ? paging.page_token : "");
    Nrm__V1__Request req = NRM__V1__REQUEST__INIT;
    req.body_case = NRM__V1__REQUEST__BODY_LIST_REFERRALS;
    req.list_referrals = &list;
    Nrm__V1__Status status;
    return nrmctl_list_pages(ctl, argv[0], "routing", &req, &list.page_token, paging.all_pages,
                             nrmctl_referral_rows, NULL, NULL, &status);
}

/* Public: cases [--region R] [--open] [--minor] [--urgency U] [paging]. */
int nrmctl_cases(nrmctl_t *ctl, int argc, char **argv)
{
    Nrm__V1__ListCases list = NRM__V1__LIST_CASES__INIT;
    s_paging_t paging = {0};
    for (int i = 1; i < argc; i++) {
        int rc = 0, taken = s_paging_option(argv[0], argc, argv, &i, &paging, &rc);
        if (taken < 0)
            return rc;
        if (taken)
            continue;
        const char *option = argv[i];
        if (strcmp(option, "--open") == 0) {
            list.open_only = 1;
            continue;
        }
        if (strcmp(option, "--minor") == 0) {
            list.minor_only = 1;
            continue;
        }
        bool region = strcmp(option, "--region") == 0;
        if (!region && strcmp(option, "--urgency") != 0)
            return nrmctl_usage_error(argv[0], "unknown argument %s", option);
        if (i + 1 >= argc)
            return nrmctl_usage_error(argv[0], "option %s needs a value", option);
        char *value = argv[++i];
        if (region) {
            list.region = value;
            continue;
        }
        int v = nrmctl_enum_value(&nrm__v1__urgency__descriptor, "URGENCY_", value);
        if (v < 0)
            return nrmctl_usage_error(argv[0], "--urgency is an Urgency (ROUTINE, URGENT, ...)");
        list.urgency = (Nrm__V1__Urgency)v;
    }
    list.page_size = (int32_t)paging.page_size;
    list.page_token = (char *)(paging.page_token ? paging.page_token : "");
    Nrm__V1__Request req = NRM__V1__REQUEST__INIT;
    req.body_case = NRM__V1__REQUEST__BODY_LIST_CASES;
    req.list_cases = &list;
    Nrm__V1__Status status;
    return nrmctl_list_pages(ctl, argv[0], "intake", &req, &list.page_token, paging.all_pages,
                             nrmctl_case_rows, NULL, NULL, &status);
}
