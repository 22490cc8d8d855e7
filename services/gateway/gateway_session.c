/* gateway_session: sessions in memory (see gateway_session.h). */
#include "gateway_session.h"
#include "nrm_alloc.h"
#include "nrm_time.h"

#include <pthread.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#define S_MAX_SESSIONS 10000 /* live sessions kept; the oldest goes when full */
#define S_MAX_AGENCIES 256   /* agencies whose failed sign-ins are counted */
#define S_TOKEN_BYTES 32
#define S_DUMMY_TOKEN "not a token of anyone's"

typedef struct {
    char sid[GW_TOKEN_TXT];
    char csrf[GW_TOKEN_TXT];
    char agency[GW_AGENCY_MAX];
    int64_t expires_ms; /* 0: free slot */
} s_session_t;

typedef struct {
    char agency[GW_AGENCY_MAX];
    int64_t window_start_ms;
    int failures;
} s_failures_t;

struct gw_sessions_t {
    pthread_mutex_t lock;
    int64_t ttl_ms;
    s_session_t *sessions; /* S_MAX_SESSIONS */
    s_failures_t failures[S_MAX_AGENCIES];
    char dummy_hash[crypto_pwhash_STRBYTES]; /* verified for unknown agencies */
};

gw_sessions_t *gw_sessions_new(int64_t ttl_s)
{
    if (sodium_init() < 0)
        return NULL;
    gw_sessions_t *self = nrm_xcalloc(1, sizeof *self);
    self->sessions = nrm_xcalloc(S_MAX_SESSIONS, sizeof *self->sessions);
    if (crypto_pwhash_str(self->dummy_hash, S_DUMMY_TOKEN, strlen(S_DUMMY_TOKEN),
                          crypto_pwhash_OPSLIMIT_INTERACTIVE,
                          crypto_pwhash_MEMLIMIT_INTERACTIVE) != 0) {
        free(self->sessions);
        free(self);
        return NULL;
    }
    pthread_mutex_init(&self->lock, NULL);
    self->ttl_ms = ttl_s * 1000;
    return self;
}

void gw_sessions_destroy(gw_sessions_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    gw_sessions_t *self = *self_p;
    pthread_mutex_destroy(&self->lock);
    sodium_memzero(self->sessions, S_MAX_SESSIONS * sizeof *self->sessions);
    free(self->sessions);
    free(self);
    *self_p = NULL;
}

bool gw_equal_secret(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    if (la != lb)
        return false;
    return sodium_memcmp(a, b, la) == 0;
}

/* The token_hash of agency_id in gateway.logins (borrowed from config), or NULL. */
static const char *s_hash_of(nrm_config_t *config, const char *agency_id)
{
    json_t *logins = nrm_config_get(config, "gateway.logins");
    size_t i;
    json_t *login;
    json_array_foreach(logins, i, login)
    {
        const char *id = json_string_value(json_object_get(login, "agency_id"));
        const char *hash = json_string_value(json_object_get(login, "token_hash"));
        if (id && hash && strcmp(id, agency_id) == 0)
            return hash;
    }
    return NULL;
}

/* The failure counter of agency (a new or recycled one when absent). Under the lock. */
static s_failures_t *s_failures(gw_sessions_t *self, const char *agency, int64_t now)
{
    s_failures_t *oldest = &self->failures[0];
    for (int i = 0; i < S_MAX_AGENCIES; i++) {
        s_failures_t *f = &self->failures[i];
        if (strcmp(f->agency, agency) == 0) {
            if (now - f->window_start_ms > GW_LOGIN_WINDOW_S * 1000) {
                f->window_start_ms = now;
                f->failures = 0;
            }
            return f;
        }
        if (f->window_start_ms < oldest->window_start_ms)
            oldest = f;
    }
    snprintf(oldest->agency, sizeof oldest->agency, "%s", agency);
    oldest->window_start_ms = now;
    oldest->failures = 0;
    return oldest;
}

static void s_random_hex(char out[GW_TOKEN_TXT])
{
    unsigned char bytes[S_TOKEN_BYTES];
    randombytes_buf(bytes, sizeof bytes);
    sodium_bin2hex(out, GW_TOKEN_TXT, bytes, sizeof bytes);
}

gw_login_t gw_sessions_login(gw_sessions_t *self, nrm_config_t *config, const char *agency_id,
                             const char *token, char sid[GW_TOKEN_TXT], char csrf[GW_TOKEN_TXT])
{
    if (strlen(agency_id) >= GW_AGENCY_MAX)
        return GW_LOGIN_REFUSED;
    int64_t now = nrm_now_ms();
    pthread_mutex_lock(&self->lock);
    bool limited = s_failures(self, agency_id, now)->failures >= GW_LOGIN_FAILURES;
    pthread_mutex_unlock(&self->lock);
    if (limited)
        return GW_LOGIN_LIMITED;
    const char *hash = s_hash_of(config, agency_id);
    bool known = hash && nrm_config_agency(config, agency_id);
    /* the same work whether the agency is known or not */
    bool ok = crypto_pwhash_str_verify(known ? hash : self->dummy_hash, token, strlen(token)) == 0;
    ok = ok && known;
    pthread_mutex_lock(&self->lock);
    if (!ok) {
        s_failures(self, agency_id, now)->failures++;
        pthread_mutex_unlock(&self->lock);
        return GW_LOGIN_REFUSED;
    }
    s_session_t *slot = &self->sessions[0];
    for (int i = 0; i < S_MAX_SESSIONS; i++) {
        s_session_t *s = &self->sessions[i];
        if (s->expires_ms <= now) {
            slot = s;
            break;
        }
        if (s->expires_ms < slot->expires_ms)
            slot = s;
    }
    s_random_hex(slot->sid);
    s_random_hex(slot->csrf);
    snprintf(slot->agency, sizeof slot->agency, "%s", agency_id);
    slot->expires_ms = now + self->ttl_ms;
    memcpy(sid, slot->sid, GW_TOKEN_TXT);
    memcpy(csrf, slot->csrf, GW_TOKEN_TXT);
    pthread_mutex_unlock(&self->lock);
    return GW_LOGIN_OK;
}

/* The live session sid, or NULL. Under the lock. */
static s_session_t *s_find(gw_sessions_t *self, const char *sid)
{
    if (strlen(sid) != GW_TOKEN_TXT - 1)
        return NULL;
    int64_t now = nrm_now_ms();
    for (int i = 0; i < S_MAX_SESSIONS; i++) {
        s_session_t *s = &self->sessions[i];
        if (s->expires_ms > now && gw_equal_secret(s->sid, sid))
            return s;
    }
    return NULL;
}

bool gw_sessions_find(gw_sessions_t *self, const char *sid, char agency[GW_AGENCY_MAX],
                      char csrf[GW_TOKEN_TXT])
{
    pthread_mutex_lock(&self->lock);
    s_session_t *s = s_find(self, sid);
    if (s) {
        memcpy(agency, s->agency, GW_AGENCY_MAX);
        memcpy(csrf, s->csrf, GW_TOKEN_TXT);
    }
    pthread_mutex_unlock(&self->lock);
    return s != NULL;
}

void gw_sessions_end(gw_sessions_t *self, const char *sid)
{
    pthread_mutex_lock(&self->lock);
    s_session_t *s = s_find(self, sid);
    if (s)
        memset(s, 0, sizeof *s);
    pthread_mutex_unlock(&self->lock);
}
