/* nrm-intake: receives reports from agencies, opens or links cases, publishes case.* events. */
#include "intake.h"
#include "nrm_log.h"
#include "nrm_service.h"

int main(int argc, char **argv)
{
    int exit_code = 0;
    nrm_service_t *service = nrm_service_new("intake", argc, argv, intake_migrations,
                                             intake_migrations_count, &exit_code);
    if (!service)
        return exit_code;

    nrm_error_t err;
    const char *keys_file = nrm_config_string(nrm_service_config(service), "crypto.keys_file", "");
    intake_t intake = {.keys = nrm_keyring_load(keys_file, &err)};
    if (!intake.keys) {
        nrm_log_error("cannot load the keyring", "{s:s}", "message", err.message);
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

    exit_code = nrm_service_run(service);

    nrm_keyring_destroy(&intake.keys);
    nrm_service_destroy(&service);
    return exit_code;
}
