/* nrmctl_plans: the reintegration commands: a manager's plans (ListPlans; a coordinator's are
 * all of them), one plan in full (GetPlan), and a follow-up recorded (RecordFollowUp).
 *
 *   plans [--state open|suspended|closed|all] [--due-before MS] [--manager ID] [--max N]
 *   plan PLAN-ID
 *   followup PLAN-ID --contact yes|no [--economic N] [--social N] [--psychosocial N]
 *            [--safe-housing] [--income] [--risk] */
#include "nrmctl_commands.h"

#include <string.h>

#define S_SERVICE "reintegration"
#define S_ALL "all"
#define S_DEFAULT_MAX 100
#define S_MAX_MAX 1000 /* the most reintegration returns in one page */
#define S_SCORE_MIN 1
#define S_SCORE_MAX 5

static const char *const s_states[] = {"open", "suspended", "closed", S_ALL, NULL};

/* Sends req to reintegration and prints the Reply. Returns the exit code. */
static int s_send(nrmctl_t *ctl, Nrm__V1__Request *req)
{
    Nrm__V1__Reply *reply = NULL;
    int rc = nrmctl_call(ctl, S_SERVICE, req, &reply);
    if (rc != NRMCTL_EXIT_OK)
        return rc;
    rc = nrmctl_print_reply(reply);
    nrm__v1__reply__free_unpacked(reply, NULL);
    return rc;
}

/* Sends ListPlans page after page (up to max plans) and prints each PlanSummary as one JSON
 * line; a non-OK Reply is printed itself. Returns the exit code. */
static int s_list(nrmctl_t *ctl, Nrm__V1__ListPlans *list, int max)
{
    int printed = 0, rc = NRMCTL_EXIT_OK;
    char token[128] = "";
    do {
        list->page_token = token;
        list->limit = max - printed;
        Nrm__V1__Request req = NRM__V1__REQUEST__INIT;
        req.body_case = NRM__V1__REQUEST__BODY_LIST_PLANS;
        req.list_plans = list;
        Nrm__V1__Reply *reply = NULL;
        if ((rc = nrmctl_call(ctl, S_SERVICE, &req, &reply)) != NRMCTL_EXIT_OK)
            return rc;
        if (reply->status != NRM_OK || reply->result_case != NRM__V1__REPLY__RESULT_PLAN_LIST) {
            rc = nrmctl_print_reply(reply);
            nrm__v1__reply__free_unpacked(reply, NULL);
            return rc == NRMCTL_EXIT_OK ? NRMCTL_EXIT_STATUS : rc;
        }
        const Nrm__V1__PlanList *plans = reply->plan_list;
        for (size_t i = 0; i < plans->n_plans && rc == NRMCTL_EXIT_OK; i++, printed++)
            if (nrmctl_print_message(&plans->plans[i]->base) != 0) {
                nrmctl_error("cannot write to the standard output");
                rc = NRMCTL_EXIT_USAGE;
            }
        snprintf(token, sizeof token, "%s", plans->next_page_token);
        nrm__v1__reply__free_unpacked(reply, NULL);
    } while (rc == NRMCTL_EXIT_OK && token[0] && printed < max);
    return rc;
}

/* Public: plans [--state STATE] [--due-before MS] [--manager ID] [--max N] */
int nrmctl_plans(nrmctl_t *ctl, int argc, char **argv)
{
    Nrm__V1__ListPlans list = NRM__V1__LIST_PLANS__INIT;
    int64_t max = S_DEFAULT_MAX;
    for (int i = 1; i < argc; i++) {
        const char *option = argv[i];
        if (i + 1 >= argc)
            return nrmctl_usage_error(argv[0], "option %s needs a value", option);
        const char *value = argv[++i];
        if (strcmp(option, "--state") == 0) {
            bool known = false;
            for (size_t s = 0; s_states[s]; s++)
                known = known || strcmp(value, s_states[s]) == 0;
            if (!known)
                return nrmctl_usage_error(argv[0],
                                          "--state is one of open, suspended, closed, all");
            list.state = strcmp(value, S_ALL) == 0 ? "" : (char *)value;
        } else if (strcmp(option, "--due-before") == 0) {
            if (!nrmctl_parse_int(value, 1, INT64_MAX, &list.due_before_ms))
                return nrmctl_usage_error(argv[0], "--due-before is milliseconds since the epoch");
        } else if (strcmp(option, "--manager") == 0) {
            list.manager_agency_id = (char *)value;
        } else if (strcmp(option, "--max") == 0) {
            if (!nrmctl_parse_int(value, 1, S_MAX_MAX, &max))
                return nrmctl_usage_error(argv[0], "--max is from 1 to %d", S_MAX_MAX);
        } else
            return nrmctl_usage_error(argv[0], "unknown argument %s", option);
    }
    return s_list(ctl, &list, (int)max);
}

/* Public: plan PLAN-ID */
int nrmctl_plan(nrmctl_t *ctl, int argc, char **argv)
{
    if (argc != 2)
        return nrmctl_usage_error(argv[0], "plan needs one PLAN-ID");
    Nrm__V1__GetPlan get = NRM__V1__GET_PLAN__INIT;
    get.plan_id = argv[1];
    Nrm__V1__Request req = NRM__V1__REQUEST__INIT;
    req.body_case = NRM__V1__REQUEST__BODY_GET_PLAN;
    req.get_plan = &get;
    return s_send(ctl, &req);
}

/* Reads a score option's value into *score. Returns false when it is not 1-5. */
static bool s_score(const char *value, int32_t *score)
{
    int64_t v = 0;
    if (!nrmctl_parse_int(value, S_SCORE_MIN, S_SCORE_MAX, &v))
        return false;
    *score = (int32_t)v;
    return true;
}

/* Public: followup PLAN-ID --contact yes|no [--economic N] [--social N] [--psychosocial N]
 * [--safe-housing] [--income] [--risk] */
int nrmctl_followup(nrmctl_t *ctl, int argc, char **argv)
{
    if (argc < 2 || argv[1][0] == '-')
        return nrmctl_usage_error(argv[0], "followup needs a PLAN-ID");
    Nrm__V1__RecordFollowUp f = NRM__V1__RECORD_FOLLOW_UP__INIT;
    Nrm__V1__ReintegrationScores scores = NRM__V1__REINTEGRATION_SCORES__INIT;
    f.plan_id = argv[1];
    f.scores = &scores;
    bool contact_given = false;
    for (int i = 2; i < argc; i++) {
        const char *option = argv[i];
        if (strcmp(option, "--safe-housing") == 0) {
            f.safe_housing = true;
            continue;
        }
        if (strcmp(option, "--income") == 0) {
            f.income = true;
            continue;
        }
        if (strcmp(option, "--risk") == 0) {
            f.retrafficking_risk = true;
            continue;
        }
        if (i + 1 >= argc)
            return nrmctl_usage_error(argv[0], "option %s needs a value", option);
        const char *value = argv[++i];
        bool ok = true;
        if (strcmp(option, "--contact") == 0) {
            ok = strcmp(value, "yes") == 0 || strcmp(value, "no") == 0;
            f.contact_made = strcmp(value, "yes") == 0;
            contact_given = ok;
        } else if (strcmp(option, "--economic") == 0)
            ok = s_score(value, &scores.economic);
        else if (strcmp(option, "--social") == 0)
            ok = s_score(value, &scores.social);
        else if (strcmp(option, "--psychosocial") == 0)
            ok = s_score(value, &scores.psychosocial);
        else
            return nrmctl_usage_error(argv[0], "unknown argument %s", option);
        if (!ok)
            return nrmctl_usage_error(
                argv[0], "invalid value for %s (--contact yes|no, scores 1-5)", option);
    }
    if (!contact_given)
        return nrmctl_usage_error(argv[0], "followup needs --contact yes|no");
    Nrm__V1__Request req = NRM__V1__REQUEST__INIT;
    req.body_case = NRM__V1__REQUEST__BODY_RECORD_FOLLOW_UP;
    req.record_follow_up = &f;
    return s_send(ctl, &req);
}
