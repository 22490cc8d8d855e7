/* nrm-intake: receives reports from agencies, opens or links cases, publishes case.* events. */
#include "intake.h"
#include "nrm_log.h"
#include "nrm_service.h"

#define S_RECOVERY_CHECK_MS 1000 /* how often due recovery-period reminders are looked for */

int main(int argc, char **argv)
{
    int exit_code = 0;
    nrm_service_t *service = nrm_service_new("intake", argc, argv, intake_migrations,
                                             intake_migrations_count, &exit_code);
    if (!service)
        return exit_code;

    nrm_error_t err;
    const char *keys_file = nrm_config_string(nrm_service_config(service), "crypto.keys_file", "");
    intake_t intake = {.keys = nrm_keyring_load(keys_file, &err), .service = service};
    if (!intake.keys) {
        nrm_log_error("cannot load the keyring", "{s:s}", "message", err.message);
        nrm_service_destroy(&service);
        return 2;
    }
    if (intake_ident_configure(&intake, nrm_service_config(service)) != NRM_OK) {
        nrm_keyring_destroy(&intake.keys);
        nrm_service_destroy(&service);
        return 2;
    }
    intake_prepare(nrm_service_db(service));

    nrm_service_handle(service, NRM__V1__REQUEST__BODY_SUBMIT_REPORT, NRM_HANDLER_WRITE,
                       intake_submit_report, &intake);
    nrm_service_handle(service, NRM__V1__REQUEST__BODY_UPDATE_CASE, NRM_HANDLER_WRITE,
                       intake_update_case, &intake);
    nrm_service_handle(service, NRM__V1__REQUEST__BODY_WITHDRAW_CONSENT, NRM_HANDLER_WRITE,
                       intake_withdraw_consent, &intake);
    nrm_service_handle(service, NRM__V1__REQUEST__BODY_CLOSE_CASE, NRM_HANDLER_WRITE,
                       intake_close_case, &intake);
    nrm_service_handle(service, NRM__V1__REQUEST__BODY_REASSIGN_CASE, NRM_HANDLER_WRITE,
                       intake_reassign_case, &intake);
    nrm_service_handle(service, NRM__V1__REQUEST__BODY_DECIDE_STATUS, NRM_HANDLER_WRITE,
                       intake_decide_status, &intake);
    nrm_service_every(service,
                      (int)nrm_config_int(nrm_service_config(service), "intake.recovery_check_ms",
                                          S_RECOVERY_CHECK_MS),
                      intake_recovery_remind, &intake);
    nrm_service_on_reload(service, intake_ident_configure, &intake);

    exit_code = nrm_service_run(service);

    nrm_keyring_destroy(&intake.keys);
    intake_screening_destroy(&intake.screening);
    nrm_service_destroy(&service);
    return exit_code;
}
