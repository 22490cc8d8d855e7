/* nrm-intake: receives reports from agencies, opens or links cases, publishes case.* events. */
#include "intake.h"
#include "intake_names.h"
#include "nrm_log.h"
#include "nrm_service.h"

#define S_RECOVERY_CHECK_MS 1000 /* how often due recovery-period reminders are looked for */

/* The start job: data keys first (reports move to their case's key), then names re-hashed once
 * per normalisation version. */
static nrm_status_t s_start(void *ctx, nrm_tx_t *tx)
{
    nrm_status_t st = intake_keys_start(ctx, tx);
    return st == NRM_OK ? intake_names_start(ctx, tx) : st;
}

/* The configuration's sections read into the intake_t, at start and on reload. */
static nrm_status_t s_configure(void *ctx, nrm_config_t *config)
{
    nrm_status_t st = intake_ident_configure(ctx, config);
    return st == NRM_OK ? intake_names_configure(ctx, config) : st;
}

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
    intake.names = intake_names_new();
    if (s_configure(&intake, nrm_service_config(service)) != NRM_OK) {
        intake_names_free(intake.names);
        intake_reset_referrals(&intake);
        nrm_keyring_destroy(&intake.keys);
        nrm_service_destroy(&service);
        return 2;
    }
    nrm_db_t *db = nrm_service_db(service);
    intake_prepare(db);
    intake_read_prepare(db);
    intake_keys_prepare(db);
    intake_identity_prepare(db);
    intake_erase_prepare(db);
    intake_dedup_prepare(db);
    intake_duplicates_prepare(db);

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
    nrm_service_on_reload(service, s_configure, &intake);

    /* the case file: reads are audited, never stored; a disclosure's reply above all */
    nrm_service_handle(service, NRM__V1__REQUEST__BODY_GET_CASE, NRM_HANDLER_READ, intake_get_case,
                       &intake);
    nrm_service_handle(service, NRM__V1__REQUEST__BODY_LIST_CASES, NRM_HANDLER_READ,
                       intake_list_cases, &intake);
    nrm_service_handle(service, NRM__V1__REQUEST__BODY_GET_IDENTITY, NRM_HANDLER_READ,
                       intake_get_identity, &intake);
    nrm_service_handle(service, NRM__V1__REQUEST__BODY_ERASE_IDENTITY, NRM_HANDLER_WRITE,
                       intake_erase_identity, &intake);
    /* possible duplicates, for the coordinator */
    nrm_service_handle(service, NRM__V1__REQUEST__BODY_RESOLVE_DUPLICATE, NRM_HANDLER_WRITE,
                       intake_resolve_duplicate, &intake);
    /* the agency directory: intake is its registrar (nrm_directory) */
    nrm_service_handle(service, NRM__V1__REQUEST__BODY_UPSERT_AGENCY, NRM_HANDLER_WRITE,
                       intake_upsert_agency, &intake);
    nrm_service_handle(service, NRM__V1__REQUEST__BODY_LIST_AGENCIES, NRM_HANDLER_READ,
                       intake_list_agencies, &intake);
    static const char *const referrals[] = {"referral.", NULL};
    nrm_service_consume_batches(service, "routing", referrals, intake_apply_referral_event,
                                intake_flush_referrals, intake_reset_referrals, &intake);
    nrm_service_every(service, INTAKE_RETENTION_PERIOD_MS, intake_retention_erase, &intake);
    nrm_service_on_start(service, s_start, &intake);

    exit_code = nrm_service_run(service);

    intake_reset_referrals(&intake);
    nrm_keyring_destroy(&intake.keys);
    intake_screening_destroy(&intake.screening);
    intake_names_free(intake.names);
    nrm_service_destroy(&service);
    return exit_code;
}
