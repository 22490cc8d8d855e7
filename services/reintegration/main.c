/* nrm-reintegration: follows each person after assistance. Opens a plan when a provider accepts
 * a REINTEGRATION or RETURN_ASSISTANCE referral (or by OpenPlan), keeps its goals, milestones
 * and return, schedules its follow-ups and says when each falls due and when it is overdue,
 * and publishes reintegration.* events. */
#include "nrm_log.h"
#include "nrm_service.h"
#include "reintegration.h"

/* Topics consumed from routing and intake. */
static const char *const s_routing_topics[] = {"referral.created", "referral.accepted", NULL};
static const char *const s_intake_topics[] = {"case.", NULL};

int main(int argc, char **argv)
{
    int exit_code = 0;
    nrm_service_t *service = nrm_service_new("reintegration", argc, argv, reintegration_migrations,
                                             reintegration_migrations_count, &exit_code);
    if (!service)
        return exit_code;

    /* the settings are checked before anything starts */
    reint_t reint = {
        .plans_opened = nrm_service_counter(service, "plans_opened"),
        .followups_due = nrm_service_counter(service, "followups_due"),
        .followups_overdue = nrm_service_counter(service, "followups_overdue"),
    };
    if (reint_configure(&reint, nrm_service_config(service)) != NRM_OK) {
        nrm_service_destroy(&service);
        return 2;
    }
    nrm_db_t *db = nrm_service_db(service);
    reint_plans_prepare(db);
    reint_cases_prepare(db);
    reint_goals_prepare(db);
    reint_followups_prepare(db);
    reint_reads_prepare(db);
    nrm_service_on_reload(service, reint_configure, &reint);

    static const struct {
        Nrm__V1__Request__BodyCase body;
        nrm_handler_kind_t kind;
        nrm_handler_fn fn;
    } handlers[] = {
        {NRM__V1__REQUEST__BODY_OPEN_PLAN, NRM_HANDLER_WRITE, reint_open_plan},
        {NRM__V1__REQUEST__BODY_UPSERT_GOAL, NRM_HANDLER_WRITE, reint_upsert_goal},
        {NRM__V1__REQUEST__BODY_RECORD_RETURN, NRM_HANDLER_WRITE, reint_record_return},
        {NRM__V1__REQUEST__BODY_RECORD_FOLLOW_UP, NRM_HANDLER_WRITE, reint_record_followup},
        {NRM__V1__REQUEST__BODY_CLOSE_PLAN, NRM_HANDLER_WRITE, reint_close_plan},
        {NRM__V1__REQUEST__BODY_REASSIGN_PLAN, NRM_HANDLER_WRITE, reint_reassign_plan},
        {NRM__V1__REQUEST__BODY_GET_PLAN, NRM_HANDLER_READ, reint_get_plan},
        {NRM__V1__REQUEST__BODY_LIST_PLANS, NRM_HANDLER_READ, reint_list_plans},
    };
    for (size_t i = 0; i < sizeof handlers / sizeof handlers[0]; i++)
        nrm_service_handle(service, handlers[i].body, handlers[i].kind, handlers[i].fn, &reint);

    nrm_service_consume(service, "routing", s_routing_topics, reint_on_referral_event, &reint);
    nrm_service_consume(service, "intake", s_intake_topics, reint_on_case_event, &reint);

    int check_ms = (int)nrm_config_int(nrm_service_config(service), "reintegration.check_ms",
                                       REINT_DEFAULT_CHECK_MS);
    nrm_service_every(service, check_ms, reint_scan_followups, &reint);

    exit_code = nrm_service_run(service);
    nrm_service_destroy(&service);
    return exit_code;
}
