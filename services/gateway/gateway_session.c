/* gateway_session: sessions in memory (see gateway_session.h). */
#include "gateway_session.h"
#include "nrm_alloc.h"
#include "nrm_time.h"

#include <pthread.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#define S_MAX_SESSIONS 10000 /* live sessions kept; the oldest goes when full */
#define S_MAX_CHECKS 2       /* token checks at once: each takes crypto_pwhash's 64 MiB */
#define S_TOKEN_BYTES 32
#define S_DUMMY_TOKEN "not a token of anyone's"

typedef struct {
    char sid[GW_TOKEN_TXT];
    char csrf[GW_TOKEN_TXT];
    char agency[GW_AGENCY_MAX];
    int64_t expires_ms; /* 0: free slot */
} s_session_t;

/* The sign-in attempts of one agency (or of every agency id without a login) in the window. */
typedef struct {
    char agency[GW_AGENCY_MAX];
    int64_t window_start_ms;
    int failures;  /* failed in the window */
    int in_flight; /* being checked now: they count against the limit too */
} s_attempts_t;

struct gw_sessions_t {
    pthread_mutex_t lock;
    int64_t ttl_ms;
    s_session_t *sessions; /* S_MAX_SESSIONS */
    /* one entry per agency with a login that has tried; an entry is reused only once its
     * window has passed, so made-up ids can never push a real agency's count out */
    s_attempts_t *known;
    size_t n_known;
    s_attempts_t unknown;                    /* every agency id without a login shares this one */
    int checking;                            /* token checks running (at most S_MAX_CHECKS) */
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
    free(self->known);
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

/* Starts a new window for a when the last one has passed (attempts in flight stay counted). */
static void s_roll_window(s_attempts_t *a, int64_t now)
{
    if (now - a->window_start_ms > GW_LOGIN_WINDOW_S * 1000) {
        a->window_start_ms = now;
        a->failures = 0;
    }
}

/* The attempts of agency: the shared entry when it has no login (known false), else its own,
 * made (or an idle one reused) when absent. The pointer holds until the lock is released. */
static s_attempts_t *s_attempts(gw_sessions_t *self, bool known, const char *agency, int64_t now)
{
    s_attempts_t *found = known ? NULL : &self->unknown, *idle = NULL;
    for (size_t i = 0; !found && i < self->n_known; i++) {
        s_attempts_t *a = &self->known[i];
        if (strcmp(a->agency, agency) == 0)
            found = a;
        else if (!idle && a->in_flight == 0 && now - a->window_start_ms > GW_LOGIN_WINDOW_S * 1000)
            idle = a;
    }
    if (!found) {
        if (!idle) {
            /* bounded by the agencies with a login (gateway.logins) */
            self->known = nrm_xrealloc(self->known, (self->n_known + 1) * sizeof *self->known);
            idle = &self->known[self->n_known++];
        }
        memset(idle, 0, sizeof *idle);
        snprintf(idle->agency, sizeof idle->agency, "%s", agency);
        idle->window_start_ms = now;
        found = idle;
    }
    s_roll_window(found, now);
    return found;
}

/* Reserves one token check for agency: GW_LOGIN_LIMITED when its failures and the checks in
 * flight reach the limit, GW_LOGIN_BUSY when S_MAX_CHECKS are running, else GW_LOGIN_OK (then
 * s_settle must follow). */
static gw_login_t s_reserve(gw_sessions_t *self, bool known, const char *agency)
{
    pthread_mutex_lock(&self->lock);
    s_attempts_t *a = s_attempts(self, known, agency, nrm_now_ms());
    gw_login_t outcome = GW_LOGIN_OK;
    if (a->failures + a->in_flight >= GW_LOGIN_FAILURES)
        outcome = GW_LOGIN_LIMITED;
    else if (self->checking >= S_MAX_CHECKS)
        outcome = GW_LOGIN_BUSY;
    else {
        a->in_flight++;
        self->checking++;
    }
    pthread_mutex_unlock(&self->lock);
    return outcome;
}

/* Ends a check that s_reserve allowed, counting a failure unless ok. Under the lock. */
static void s_settle(gw_sessions_t *self, bool known, const char *agency, bool ok)
{
    s_attempts_t *a = s_attempts(self, known, agency, nrm_now_ms());
    a->in_flight--;
    if (!ok)
        a->failures++;
    self->checking--;
}

static void s_random_hex(char out[GW_TOKEN_TXT])
{
    unsigned char bytes[S_TOKEN_BYTES];
    randombytes_buf(bytes, sizeof bytes);
    sodium_bin2hex(out, GW_TOKEN_TXT, bytes, sizeof bytes);
}

/* Opens a session for agency, writes its id and CSRF token. Under the lock. */
static void s_open(gw_sessions_t *self, const char *agency, int64_t now, char sid[GW_TOKEN_TXT],
                   char csrf[GW_TOKEN_TXT])
{
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
    snprintf(slot->agency, sizeof slot->agency, "%s", agency);
    slot->expires_ms = now + self->ttl_ms;
    memcpy(sid, slot->sid, GW_TOKEN_TXT);
    memcpy(csrf, slot->csrf, GW_TOKEN_TXT);
}

gw_login_t gw_sessions_login(gw_sessions_t *self, nrm_config_t *config, const char *agency_id,
                             const char *token, char sid[GW_TOKEN_TXT], char csrf[GW_TOKEN_TXT])
{
    if (strlen(agency_id) >= GW_AGENCY_MAX)
        return GW_LOGIN_REFUSED;
    const char *hash = s_hash_of(config, agency_id);
    bool known = hash && nrm_config_agency(config, agency_id);
    gw_login_t reserved = s_reserve(self, known, agency_id);
    if (reserved != GW_LOGIN_OK)
        return reserved;
    /* the same work whether the agency is known or not */
    bool ok = crypto_pwhash_str_verify(known ? hash : self->dummy_hash, token, strlen(token)) == 0;
    ok = ok && known;
    pthread_mutex_lock(&self->lock);
    s_settle(self, known, agency_id, ok);
    if (ok)
        s_open(self, agency_id, nrm_now_ms(), sid, csrf);
    pthread_mutex_unlock(&self->lock);
    return ok ? GW_LOGIN_OK : GW_LOGIN_REFUSED;
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

bool gw_sessions_alive(gw_sessions_t *self, const char *sid, const char *agency, int *hint)
{
    pthread_mutex_lock(&self->lock);
    const s_session_t *s = NULL;
    if (*hint >= 0 && *hint < S_MAX_SESSIONS) {
        const s_session_t *at = &self->sessions[*hint];
        if (at->expires_ms > nrm_now_ms() && gw_equal_secret(at->sid, sid))
            s = at;
    }
    if (!s) {
        s = s_find(self, sid);
        *hint = s ? (int)(s - self->sessions) : -1;
    }
    bool alive = s && strcmp(s->agency, agency) == 0;
    pthread_mutex_unlock(&self->lock);
    return alive;
}

void gw_sessions_end(gw_sessions_t *self, const char *sid)
{
    pthread_mutex_lock(&self->lock);
    s_session_t *s = s_find(self, sid);
    if (s)
        memset(s, 0, sizeof *s);
    pthread_mutex_unlock(&self->lock);
}
