/* Webhook secrets at rest: sealed with the keyring intake uses (crypto.keys_file), the
 * subscription id as associated data so that a sealed secret copied onto another subscription
 * does not open. The clear text exists only in a request being handled and in a delivery being
 * sent (wiped when it is destroyed); it is never logged, returned or published. Rows written
 * before sealing existed are sealed by the start job (migration 002 explains why there). */
#include "notify.h"
#include "nrm_log.h"

#include <sodium.h>

#include <stdlib.h>
#include <string.h>

static const char s_sql_clear[] =
    "SELECT subscription_id, secret FROM subscriptions WHERE secret <> ''"
    " ORDER BY subscription_id FOR UPDATE";
static const char s_sql_sealed[] =
    "UPDATE subscriptions SET secret = '', secret_sealed = $2, secret_key_id = $3"
    " WHERE subscription_id = $1";

void notify_secrets_prepare(nrm_db_t *db)
{
    nrm_db_statement(db, "notify_secrets_clear", s_sql_clear);
    nrm_db_statement(db, "notify_secrets_sealed", s_sql_sealed);
}

nrm_status_t notify_secret_seal(const nrm_keyring_t *keyring, const char *subscription_id,
                                const char *secret, uint8_t **sealed, size_t *len, uint32_t *key_id,
                                nrm_error_t *err)
{
    if (nrm_seal(keyring, secret, strlen(secret), subscription_id, sealed, len, key_id) != 0)
        return nrm_fail(err, NRM_INTERNAL, NULL, "the webhook secret cannot be sealed");
    return NRM_OK;
}

char *notify_secret_open(const nrm_keyring_t *keyring, const char *subscription_id,
                         const uint8_t *sealed, size_t len, uint32_t key_id)
{
    uint8_t *plain = NULL;
    size_t plain_len = 0;
    if (nrm_open(keyring, key_id, sealed, len, subscription_id, &plain, &plain_len) != 0)
        return NULL;
    if (memchr(plain, '\0', plain_len)) { /* not a secret notify sealed */
        sodium_memzero(plain, plain_len);
        free(plain);
        return NULL;
    }
    return (char *)plain; /* nrm_open NUL-terminates */
}

nrm_status_t notify_secrets_seal_clear(notify_t *self, nrm_tx_t *tx)
{
    PGresult *res = NULL;
    nrm_status_t st = nrm_db_exec(tx->db, "notify_secrets_clear", NULL, &res, tx->err);
    if (st != NRM_OK)
        return st;
    int rows = PQntuples(res);
    for (int i = 0; st == NRM_OK && i < rows; i++) {
        const char *id = nrm_db_text(res, i, 0);
        uint8_t *sealed = NULL;
        size_t len = 0;
        uint32_t key_id = 0;
        st = notify_secret_seal(self->keyring, id, nrm_db_text(res, i, 1), &sealed, &len, &key_id,
                                tx->err);
        if (st != NRM_OK)
            break;
        nrm_params_t p = {0};
        nrm_params_text(&p, id);
        nrm_params_bytes(&p, sealed, len);
        nrm_params_int(&p, key_id);
        st = nrm_db_exec(tx->db, "notify_secrets_sealed", &p, NULL, tx->err);
        free(sealed);
    }
    PQclear(res);
    if (st == NRM_OK && rows > 0)
        nrm_log_info("webhook secrets stored in clear are sealed now", "{s:i}", "subscriptions",
                     rows);
    return st;
}
