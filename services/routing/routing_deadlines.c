/* A case's urgency raised: the deadlines of its pending referrals are brought forward to what
 * the new urgency gives from now (never pushed back), in one statement for the whole case, and
 * each referral whose deadline moved is published as referral.deadline_changed (for the
 * provider, dashboards and escalation: expiry follows due_ms, so it follows the new deadline).
 * A lowered urgency changes no deadline. */
#include "routing.h"
#include "nrm_log.h"

/* pending referrals made at a lower urgency take the new one; due_ms only ever decreases */
static const char s_sql_shorten[] =
    "WITH old AS (SELECT referral_id, due_ms FROM referrals WHERE case_id = $1"
    "             AND state = 'pending' AND urgency < $2 ORDER BY referral_id FOR UPDATE)"
    " UPDATE referrals r SET urgency = $2, due_ms = LEAST(r.due_ms, $3) FROM old"
    " WHERE r.referral_id = old.referral_id"
    " RETURNING r.referral_id, r.provider_id, r.due_ms, old.due_ms";

void routing_deadlines_prepare(nrm_db_t *db)
{
    nrm_db_statement(db, "routing_deadlines_shorten", s_sql_shorten);
}

nrm_status_t routing_urgency_raised(routing_t *self, nrm_tx_t *tx, const routing_case_t *c,
                                    int urgency)
{
    /* the referrals this batch made are written first, so that theirs are shortened too */
    nrm_status_t st = routing_batch_sync_referrals(self, tx);
    if (st != NRM_OK)
        return st;
    int64_t due_ms = tx->now_ms + routing_policy_deadline_ms(self->policy, urgency);
    nrm_params_t p = {0};
    nrm_params_text(&p, c->case_id);
    nrm_params_int(&p, urgency);
    nrm_params_int(&p, due_ms);
    PGresult *res = NULL;
    st = nrm_db_exec(tx->db, "routing_deadlines_shorten", &p, &res, tx->err);
    if (st != NRM_OK)
        return st;
    int changed = 0;
    for (int row = 0; st == NRM_OK && row < PQntuples(res); row++) {
        int64_t now_due = nrm_db_int(res, row, 2), before = nrm_db_int(res, row, 3);
        if (now_due >= before)
            continue; /* already due sooner: its urgency is the new one, its deadline stays */
        Nrm__V1__ReferralDeadlineChanged body = NRM__V1__REFERRAL_DEADLINE_CHANGED__INIT;
        body.referral_id = (char *)nrm_db_text(res, row, 0);
        body.provider_agency_id = (char *)nrm_db_text(res, row, 1);
        body.urgency = (Nrm__V1__Urgency)urgency;
        body.due_ms = now_due;
        body.previous_due_ms = before;
        st = routing_emit_body(self, tx, c->case_id, NRM__V1__EVENT__BODY_REFERRAL_DEADLINE_CHANGED,
                               &body);
        changed++;
    }
    PQclear(res);
    if (st == NRM_OK && changed)
        nrm_log_info("referral deadlines brought forward", "{s:s, s:i, s:i}", "case_id", c->case_id,
                     "urgency", urgency, "referrals", changed);
    return st;
}
