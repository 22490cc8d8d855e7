/* libFuzzer target: one api frame as a service receives it. The bytes are decoded and checked
 * as nrm_server_process does before any handler (size limit, protobuf, sender, envelope, the
 * authorization matrix's precheck) by a server of each service, and a request that passes goes
 * to that service's validation of its body (the checks that need no database): intake's report,
 * update and close with the identification fields and screening answers; routing's answers;
 * shelter's UpsertShelter; notify's subscription; reintegration's goals and follow-up scores.
 * Input: a serialized nrm.v1.Request; the first byte, when the input is not empty, also picks the
 * sender (plain text, an agency's key, a stranger's key, the gateway). */
#include "intake.h"
#include "notify.h"
#include "nrm_config.h"
#include "nrm_db.h"
#include "nrm_log.h"
#include "nrm_server.h"
#include "reintegration.h"
#include "routing.h"
#include "shelter.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#define S_SERVICES 5
#define S_MAX_REQUEST 65536
#define S_NOW_MS 1767225600000LL /* 2026-01-01: validation results do not depend on the clock */

static const char *const s_names[S_SERVICES] = {"intake", "routing", "shelter", "notify",
                                                "reintegration"};
static nrm_config_t *s_config;
static nrm_db_t *s_db[S_SERVICES];
static nrm_server_t *s_server[S_SERVICES];
static notify_settings_t s_notify_settings;
static intake_t s_intake; /* only its screening checklist, for the identification checks */

static nrm_status_t s_never_called(void *ctx, nrm_call_t *call)
{
    abort(); /* the fuzz target only decodes and checks */
}

/* Loads the demonstration configuration and makes one server per service that serves every
 * body (so the envelope check reaches the matrix for each), with a database never connected. */
static void s_init(void)
{
    char path[512];
    const char *source = getenv("NRM_SOURCE_DIR");
    snprintf(path, sizeof path, "%s/deploy/demo/config.json", source ? source : NRM_FUZZ_SOURCE);
    nrm_error_t err;
    s_config = nrm_config_load(path, &err);
    if (!s_config) {
        fprintf(stderr, "fuzz_request: cannot load %s: %s\n", path, err.message);
        abort();
    }
    if (notify_settings_load(s_config, &s_notify_settings, &err) != NRM_OK)
        abort();
    s_intake.screening = intake_screening_load(s_config, &err);
    if (!s_intake.screening)
        abort();
    for (int s = 0; s < S_SERVICES; s++) {
        s_db[s] = nrm_db_new("", s_names[s]);
        s_server[s] = nrm_server_new(s_names[s], s_db[s], s_config, S_MAX_REQUEST);
        for (int body = 1; body < 100; body++)
            if (protobuf_c_message_descriptor_get_field(&nrm__v1__request__descriptor,
                                                        (unsigned)body))
                nrm_server_handle(s_server[s], (Nrm__V1__Request__BodyCase)body, NRM_HANDLER_WRITE,
                                  s_never_called, NULL);
    }
}

/* The body checks of the service that owns the request's body. */
static void s_validate(const Nrm__V1__Request *req)
{
    nrm_error_t err;
    intake_facts_t facts;
    switch (req->body_case) {
    case NRM__V1__REQUEST__BODY_SUBMIT_REPORT:
        if (intake_check_report(req->submit_report, s_config, S_NOW_MS, &facts, &err) == NRM_OK)
            intake_ident_check_report(&s_intake, req->submit_report, S_NOW_MS, &err);
        break;
    case NRM__V1__REQUEST__BODY_UPDATE_CASE:
        if (intake_check_update(req->update_case, &err) == NRM_OK)
            intake_ident_check_update(&s_intake, req->update_case, S_NOW_MS, &err);
        break;
    case NRM__V1__REQUEST__BODY_CLOSE_CASE:
        intake_check_close(req->close_case, &err);
        break;
    case NRM__V1__REQUEST__BODY_RESPOND_TO_REFERRAL:
        routing_check_respond(req->respond_to_referral, &err);
        break;
    case NRM__V1__REQUEST__BODY_COMPLETE_REFERRAL:
        routing_check_complete(req->complete_referral, &err);
        break;
    case NRM__V1__REQUEST__BODY_UPSERT_SHELTER:
        shelter_check(req->upsert_shelter, s_config, "upsert_shelter", &err);
        break;
    case NRM__V1__REQUEST__BODY_UPSERT_SUBSCRIPTION:
        notify_check_subscription(req->upsert_subscription, s_config, &s_notify_settings,
                                  "upsert_subscription", false, &err);
        break;
    case NRM__V1__REQUEST__BODY_UPSERT_GOAL:
        reint_check_goal(req->upsert_goal, &err);
        break;
    case NRM__V1__REQUEST__BODY_RECORD_FOLLOW_UP:
        reint_check_scores(req->record_follow_up, &err);
        break;
    default:
        break;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const char *const senders[] = {NULL, "police-ma-06", "coordinator", "service:gateway"};
    if (!s_config)
        s_init();
    int pick = size > 0 ? data[0] % 5 : 0; /* 0: plain text; 1: a key no longer accepted */
    bool secure = pick > 0;
    const char *sender = pick >= 2 ? senders[pick - 1] : NULL;
    for (int s = 0; s < S_SERVICES; s++) {
        Nrm__V1__Request *req = NULL;
        nrm_error_t err;
        if (nrm_server_decode(s_server[s], data, size, secure, sender, &req, &err) == NRM_OK) {
            s_validate(req);
            nrm__v1__request__free_unpacked(req, NULL);
        }
    }
    return 0;
}

/* libFuzzer calls this once: quiet logs (one line per refused request would drown the output). */
int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    nrm_log_init("fuzz", "error");
    return 0;
}
