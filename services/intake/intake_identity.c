/* Identity disclosure, consented and audited. GetIdentity opens the case's reports with its data
 * key for the case manager and the coordinator; for a provider whose referral for the case is
 * accepted (and neither completed, revoked nor otherwise ended) while the person consents to
 * data sharing; for a child-protection provider of a minor regardless of consent; for nobody
 * else, and never after erasure. Which provider holds which referral comes from routing's
 * stream (referral.*), applied exactly once into referral_access.
 *
 * GetIdentity is a read (NRM_HANDLER_READ): its reply is never stored, so a repeated
 * request_id runs again with fresh authorization and cannot hand the identity to anyone else.
 * Each disclosure writes an audit row of kind identity_disclosed and publishes
 * case.identity_disclosed { agency_id, purpose }, in the transaction the reply waits for. */
#include "intake.h"
#include "nrm_authz.h"
#include "nrm_log.h"
#include "nrm_wipe.h"
#include "nrm_pgarray.h"
#include "nrm_validate.h"

#include <sodium.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define S_DISCLOSED_KIND "identity_disclosed"
#define S_PURPOSE_MAX 32

static const char *const s_purposes[] = {"contact",           "service_delivery",
                                         "legal_proceedings", "child_protection",
                                         "case_management",   NULL};

static const char s_sql_case[] =
    "SELECT case_manager_agency_id = $2, is_minor, consent_to_data_sharing,"
    " identity_erased_at IS NOT NULL FROM cases WHERE case_id = $1 FOR SHARE";
static const char s_sql_access[] =
    "SELECT count(*)::int, COALESCE(bool_or(service = $3), false) FROM referral_access"
    " WHERE case_id = $1 AND provider_agency_id = $2 AND state = 'accepted'";
static const char s_sql_reports[] =
    "SELECT sealed_under, key_id, person_sealed, notes_sealed FROM reports WHERE case_id = $1"
    " ORDER BY received_at, report_id";
/* A consumer batch's referral events in one statement, as one at a time in stream order gives:
 * the referrals created ($1-$4, at positions $5 in the batch) are inserted with the state of the
 * last move that followed their creation in the batch (pending when none), and the last move of
 * every other referral ($6-$8: id, state, position) updates its row. */
static const char s_sql_referrals[] =
    "WITH m AS (SELECT * FROM unnest($6::text[], $7::text[], $8::int[]) AS m(referral_id, state,"
    "   ord)),"
    " c AS (SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::int[], $5::int[])"
    "   AS c(referral_id, case_id, provider_agency_id, service, ord)),"
    " ins AS (INSERT INTO referral_access (referral_id, case_id, provider_agency_id, service,"
    "   state) SELECT c.referral_id, c.case_id, c.provider_agency_id, c.service,"
    "   coalesce((SELECT m.state FROM m WHERE m.referral_id = c.referral_id AND m.ord > c.ord"
    "   ORDER BY m.ord DESC LIMIT 1), 'pending') FROM c ORDER BY c.ord"
    "   ON CONFLICT (referral_id) DO NOTHING RETURNING referral_id)"
    " UPDATE referral_access r SET state = l.state, updated_at = now()"
    " FROM (SELECT DISTINCT ON (referral_id) referral_id, state FROM m"
    "   ORDER BY referral_id, ord DESC) l"
    " WHERE r.referral_id = l.referral_id AND l.referral_id NOT IN (SELECT referral_id FROM ins)";

void intake_identity_prepare(nrm_db_t *db)
{
    nrm_db_statement(db, "intake_identity_case", s_sql_case);
    nrm_db_statement(db, "intake_identity_access", s_sql_access);
    nrm_db_statement(db, "intake_identity_reports", s_sql_reports);
    nrm_db_statement(db, "intake_referrals", s_sql_referrals);
}

/* Checks a GetIdentity: the case id and a purpose code. */
static nrm_status_t s_check(const Nrm__V1__GetIdentity *g, nrm_error_t *err)
{
    if (nrm_check_text(err, "get_identity.case_id", g->case_id, INTAKE_ID_MAX, true) != NRM_OK ||
        nrm_check_text(err, "get_identity.purpose", g->purpose, S_PURPOSE_MAX, true) != NRM_OK)
        return NRM_INVALID_ARGUMENT;
    for (size_t i = 0; s_purposes[i]; i++)
        if (strcmp(g->purpose, s_purposes[i]) == 0)
            return NRM_OK;
    return nrm_fail(err, NRM_INVALID_ARGUMENT, "get_identity.purpose",
                    "purpose must be one of contact, service_delivery, legal_proceedings, "
                    "child_protection, case_management");
}

/* The sender's relations to the case for disclosure, and whether the identity is erased.
 * NOT_FOUND when there is no such case. */
static nrm_status_t s_relations(nrm_call_t *call, const char *case_id, unsigned *relations,
                                bool *erased)
{
    nrm_params_t p = {0};
    nrm_params_text(&p, case_id);
    nrm_params_text(&p, call->agency_id);
    PGresult *res = NULL;
    nrm_status_t st = nrm_db_exec(call->tx.db, "intake_identity_case", &p, &res, call->tx.err);
    if (st != NRM_OK)
        return st;
    if (PQntuples(res) != 1) {
        PQclear(res);
        return nrm_authz_not_found(call, "get_identity.case_id", "no such case");
    }
    *relations = nrm_db_int(res, 0, 0) ? NRM_ROLE_CASE_MANAGER : 0;
    bool minor = nrm_db_int(res, 0, 1) != 0, consent = nrm_db_int(res, 0, 2) != 0;
    *erased = nrm_db_int(res, 0, 3) != 0;
    PQclear(res);
    nrm_params_int(&p, NRM__V1__SERVICE_TYPE__SERVICE_TYPE_CHILD_PROTECTION);
    if ((st = nrm_db_exec(call->tx.db, "intake_identity_access", &p, &res, call->tx.err)) != NRM_OK)
        return st;
    bool accepted = nrm_db_int(res, 0, 0) > 0, child_protection = nrm_db_int(res, 0, 1) != 0;
    PQclear(res);
    /* best interests of the child: child protection of a minor needs no consent */
    if ((accepted && consent) || (minor && child_protection))
        *relations |= NRM_ROLE_REFERRED_PROVIDER;
    return NRM_OK;
}

int intake_report_open(intake_t *self, const char *sealed_under, uint32_t key_id,
                       const uint8_t *sealed, size_t sealed_len, const uint8_t *key,
                       const char *aad, uint8_t **plain, size_t *len)
{
    if (strcmp(sealed_under, "case_key") == 0)
        return key ? nrm_open_with(key, sealed, sealed_len, aad, plain, len) : -1;
    /* written before data keys (or by an older instance): the start job moves it */
    return nrm_open(self->keys, key_id, sealed, sealed_len, aad, plain, len);
}

int intake_first_person_open(intake_t *self, const PGresult *res, int row, int col,
                             const char *case_id, Nrm__V1__PersonalData **person, nrm_error_t *err)
{
    *person = NULL;
    uint8_t key[NRM_DATA_KEY_BYTES];
    bool found = !PQgetisnull(res, row, col + 4);
    if (found) {
        size_t wrapped_len = 0;
        const uint8_t *wrapped = nrm_db_bytes(res, row, col + 4, &wrapped_len);
        if (intake_case_key_unwrap(self, case_id, (uint32_t)nrm_db_int(res, row, col + 3), wrapped,
                                   wrapped_len, key) != 0) {
            nrm_fail(err, NRM_INTERNAL, NULL, "a case's data key cannot be unwrapped");
            return -2;
        }
    }
    char aad[INTAKE_AAD_MAX];
    snprintf(aad, sizeof aad, "%s%s", INTAKE_REPORT_AAD, case_id);
    size_t sealed_len = 0, plain_len = 0;
    const uint8_t *sealed = nrm_db_bytes(res, row, col + 2, &sealed_len);
    uint8_t *plain = NULL;
    int rc = intake_report_open(self, nrm_db_text(res, row, col),
                                (uint32_t)nrm_db_int(res, row, col + 1), sealed, sealed_len,
                                found ? key : NULL, aad, &plain, &plain_len);
    sodium_memzero(key, sizeof key);
    if (rc != 0)
        return -1;
    *person = nrm__v1__personal_data__unpack(&nrm_wipe_allocator, plain_len, plain);
    sodium_memzero(plain, plain_len);
    free(plain);
    return 0;
}

/* Opens one sealed field of a report (columns sealed_under, key_id first) with the case's data
 * key (NULL when the case has none); *plain malloc'd (caller wipes and frees). 0 or -1. */
static int s_open_field(intake_t *self, const PGresult *res, int row, int col, const uint8_t *key,
                        const char *aad, uint8_t **plain, size_t *len)
{
    size_t sealed_len = 0;
    const uint8_t *sealed = nrm_db_bytes(res, row, col, &sealed_len);
    return intake_report_open(self, nrm_db_text(res, row, 0), (uint32_t)nrm_db_int(res, row, 1),
                              sealed, sealed_len, key, aad, plain, len);
}

/* Opens the case's reports into identity (the call's memory): the person of the first report,
 * the notes of every report that has some, oldest first. */
static nrm_status_t s_open_reports(intake_t *self, nrm_call_t *call, const char *case_id,
                                   const uint8_t *key, Nrm__V1__Identity *identity)
{
    nrm_params_t p = {0};
    nrm_params_text(&p, case_id);
    PGresult *res = NULL;
    nrm_status_t st = nrm_db_exec(call->tx.db, "intake_identity_reports", &p, &res, call->tx.err);
    if (st != NRM_OK)
        return st;
    char aad[INTAKE_AAD_MAX];
    snprintf(aad, sizeof aad, "%s%s", INTAKE_REPORT_AAD, case_id);
    int rows = PQntuples(res);
    identity->notes = nrm_call_alloc(call, (size_t)(rows ? rows : 1) * sizeof *identity->notes);
    for (int i = 0; i < rows && st == NRM_OK; i++) {
        uint8_t *plain = NULL;
        size_t len = 0;
        if (i == 0) {
            if (s_open_field(self, res, i, 2, key, aad, &plain, &len) != 0)
                st = nrm_fail(call->tx.err, NRM_INTERNAL, NULL, "a sealed report cannot be opened");
            else
                identity->person = nrm_call_keep_wiped(
                    call, nrm__v1__personal_data__unpack(&nrm_wipe_allocator, len, plain));
            if (plain)
                sodium_memzero(plain, len);
            free(plain);
            plain = NULL;
        }
        if (st != NRM_OK)
            break;
        if (s_open_field(self, res, i, 3, key, aad, &plain, &len) != 0)
            st = nrm_fail(call->tx.err, NRM_INTERNAL, NULL, "a sealed report cannot be opened");
        else if (len > 0)
            identity->notes[identity->n_notes++] = nrm_call_strdup_wiped(call, (const char *)plain);
        if (plain)
            sodium_memzero(plain, len);
        free(plain);
    }
    PQclear(res);
    return st;
}

nrm_status_t intake_get_identity(void *ctx, nrm_call_t *call)
{
    intake_t *self = ctx;
    const Nrm__V1__GetIdentity *g = call->request->get_identity;
    if (s_check(g, call->tx.err) != NRM_OK)
        return NRM_INVALID_ARGUMENT;
    unsigned relations = 0;
    bool erased = false;
    nrm_status_t st = s_relations(call, g->case_id, &relations, &erased);
    if (st != NRM_OK || (st = nrm_authz_check(call, relations)) != NRM_OK)
        return st;
    call->subject_id = g->case_id;
    uint8_t key[NRM_DATA_KEY_BYTES];
    bool found = false;
    if (!erased && (st = intake_case_key_load(self, &call->tx, g->case_id, key, &found)) != NRM_OK)
        return st;
    if (erased)
        return nrm_fail(call->tx.err, NRM_NOT_FOUND, "get_identity.case_id",
                        "the identity of this case was erased");
    /* no key and not erased: every report is still sealed under the keyring (written by an
     * instance older than data keys, not yet moved by the start job) */
    Nrm__V1__Identity *identity = nrm_call_alloc(call, sizeof *identity);
    nrm__v1__identity__init(identity);
    identity->case_id = nrm_call_strdup(call, g->case_id);
    st = s_open_reports(self, call, g->case_id, found ? key : NULL, identity);
    sodium_memzero(key, sizeof key);
    if (st == NRM_OK)
        st = nrm_call_audit(call, S_DISCLOSED_KIND, g->case_id);
    Nrm__V1__IdentityDisclosed body = NRM__V1__IDENTITY_DISCLOSED__INIT;
    body.agency_id = (char *)call->agency_id;
    body.purpose = g->purpose;
    if (st == NRM_OK)
        st =
            nrm_tx_emit_body(&call->tx, g->case_id, NRM__V1__EVENT__BODY_IDENTITY_DISCLOSED, &body);
    if (st != NRM_OK)
        return st;
    call->reply->result_case = NRM__V1__REPLY__RESULT_IDENTITY;
    call->reply->identity = identity;
    return NRM_OK;
}

/* The state a referral event moves its referral to, and the referral's id; NULL when the event
 * is not one of those. */
static const char *s_referral_move(const Nrm__V1__Event *ev, const char **referral_id)
{
    *referral_id = NULL;
    switch (ev->body_case) {
    case NRM__V1__EVENT__BODY_REFERRAL_ACCEPTED:
        *referral_id = ev->referral_accepted ? ev->referral_accepted->referral_id : NULL;
        return "accepted";
    case NRM__V1__EVENT__BODY_REFERRAL_DECLINED:
        *referral_id = ev->referral_declined ? ev->referral_declined->referral_id : NULL;
        return "declined";
    case NRM__V1__EVENT__BODY_REFERRAL_EXPIRED:
        *referral_id = ev->referral_expired ? ev->referral_expired->referral_id : NULL;
        return "expired";
    case NRM__V1__EVENT__BODY_REFERRAL_COMPLETED:
        *referral_id = ev->referral_completed ? ev->referral_completed->referral_id : NULL;
        return "completed";
    case NRM__V1__EVENT__BODY_REFERRAL_REVOKED:
        *referral_id = ev->referral_revoked ? ev->referral_revoked->referral_id : NULL;
        return "revoked";
    default:
        return NULL;
    }
}

nrm_status_t intake_apply_referral_event(void *ctx, nrm_tx_t *tx, const Nrm__V1__Event *ev)
{
    (void)tx;
    intake_referrals_t *b = &((intake_t *)ctx)->referrals;
    b->ord++;
    if (ev->body_case == NRM__V1__EVENT__BODY_REFERRAL_CREATED && ev->referral_created) {
        const Nrm__V1__ReferralCreated *c = ev->referral_created;
        nrm_pgarray_text(&b->created_id, c->referral_id);
        nrm_pgarray_text(&b->created_case, ev->case_id);
        nrm_pgarray_text(&b->created_provider, c->provider_agency_id);
        nrm_pgarray_int(&b->created_service, c->service);
        nrm_pgarray_int(&b->created_ord, b->ord);
        return NRM_OK;
    }
    const char *referral_id = NULL;
    const char *state = s_referral_move(ev, &referral_id);
    if (!state || !referral_id)
        return NRM_OK;
    nrm_pgarray_text(&b->moved_id, referral_id);
    nrm_pgarray_text(&b->moved_state, state);
    nrm_pgarray_int(&b->moved_ord, b->ord);
    return NRM_OK;
}

nrm_status_t intake_flush_referrals(void *ctx, nrm_tx_t *tx)
{
    intake_referrals_t *b = &((intake_t *)ctx)->referrals;
    nrm_status_t st = NRM_OK;
    if (b->created_id.count > 0 || b->moved_id.count > 0) {
        nrm_pgarray_t *cols[] = {&b->created_id,      &b->created_case, &b->created_provider,
                                 &b->created_service, &b->created_ord,  &b->moved_id,
                                 &b->moved_state,     &b->moved_ord};
        nrm_params_t p = {0};
        for (size_t i = 0; i < sizeof cols / sizeof *cols; i++)
            nrm_params_text(&p, nrm_pgarray_close(cols[i]));
        st = nrm_db_exec_later(tx->db, "intake_referrals", &p, tx->err);
    }
    intake_reset_referrals(ctx);
    return st;
}

void intake_reset_referrals(void *ctx)
{
    intake_referrals_t *b = &((intake_t *)ctx)->referrals;
    nrm_pgarray_free(&b->created_id);
    nrm_pgarray_free(&b->created_case);
    nrm_pgarray_free(&b->created_provider);
    nrm_pgarray_free(&b->created_service);
    nrm_pgarray_free(&b->created_ord);
    nrm_pgarray_free(&b->moved_id);
    nrm_pgarray_free(&b->moved_state);
    nrm_pgarray_free(&b->moved_ord);
    b->ord = 0;
}
