/* Validation of routing requests: every field checked before anything is read or changed. */
#include "routing.h"
#include "nrm_validate.h"

#include <string.h>

#define S_REFERRAL_ID_MAX 64

/* Why a service was not delivered: short codes, never free text (the reason is published). */
static const char *const s_outcome_reasons[] = {
    "client_refused", "lost_contact", "not_eligible", "no_capacity", "referred_elsewhere",
    "client_moved",   "deceased",     "other",        NULL};

nrm_status_t routing_check_respond(const Nrm__V1__RespondToReferral *r, nrm_error_t *err)
{
    if (nrm_check_text(err, "respond_to_referral.referral_id", r->referral_id, S_REFERRAL_ID_MAX,
                       true) != NRM_OK ||
        nrm_check_enum(err, "respond_to_referral.decision", &nrm__v1__referral_decision__descriptor,
                       r->decision, false) != NRM_OK ||
        nrm_check_enum(err, "respond_to_referral.decline_reason",
                       &nrm__v1__decline_reason__descriptor, r->decline_reason, true) != NRM_OK)
        return NRM_INVALID_ARGUMENT;
    bool decline = r->decision == NRM__V1__REFERRAL_DECISION__REFERRAL_DECISION_DECLINE;
    if (decline && r->decline_reason == 0)
        return nrm_fail(err, NRM_INVALID_ARGUMENT, "respond_to_referral.decline_reason",
                        "a decline needs a decline_reason");
    if (!decline && r->decline_reason != 0)
        return nrm_fail(err, NRM_INVALID_ARGUMENT, "respond_to_referral.decline_reason",
                        "only a decline has a decline_reason");
    /* the note is free text: checked so that garbage is refused, then dropped unread */
    return nrm_check_text(err, "respond_to_referral.note", r->note, ROUTING_NOTE_MAX, false);
}

nrm_status_t routing_check_complete(const Nrm__V1__CompleteReferral *c, nrm_error_t *err)
{
    if (nrm_check_text(err, "complete_referral.referral_id", c->referral_id, S_REFERRAL_ID_MAX,
                       true) != NRM_OK)
        return NRM_INVALID_ARGUMENT;
    if (c->service_delivered)
        return c->reason[0] ? nrm_fail(err, NRM_INVALID_ARGUMENT, "complete_referral.reason",
                                       "a delivered service needs no reason")
                            : NRM_OK;
    for (size_t i = 0; s_outcome_reasons[i]; i++)
        if (strcmp(c->reason, s_outcome_reasons[i]) == 0)
            return NRM_OK;
    return nrm_fail(err, NRM_INVALID_ARGUMENT, "complete_referral.reason",
                    "a service not delivered needs a reason among client_refused, lost_contact, "
                    "not_eligible, no_capacity, referred_elsewhere, client_moved, deceased, "
                    "other");
}
