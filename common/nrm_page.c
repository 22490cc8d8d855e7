#include "nrm_page.h"

#include <inttypes.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define S_VERSION "p1"
#define S_PLAIN_MAX (NRM_PAGE_ID_MAX + 32) /* "p1:<key>:<id>" */
#define S_FIELD_MAX 96
#define S_VARIANT sodium_base64_VARIANT_URLSAFE_NO_PADDING

char *nrm_page_token(char *buf, int64_t key, const char *id)
{
    char plain[S_PLAIN_MAX];
    int n = snprintf(plain, sizeof plain, S_VERSION ":%" PRId64 ":%s", key, id);
    size_t len = n < 0 ? 0 : (size_t)n >= sizeof plain ? sizeof plain - 1 : (size_t)n;
    sodium_bin2base64(buf, NRM_PAGE_TOKEN_MAX, (const unsigned char *)plain, len, S_VARIANT);
    return buf;
}

/* Parses a token into page; false when it is not one nrm_page_token wrote. */
static bool s_parse(const char *token, nrm_page_t *page)
{
    unsigned char plain[S_PLAIN_MAX];
    size_t len = 0;
    if (strlen(token) >= NRM_PAGE_TOKEN_MAX ||
        sodium_base642bin(plain, sizeof plain - 1, token, strlen(token), NULL, &len, NULL,
                          S_VARIANT) != 0)
        return false;
    plain[len] = '\0';
    const char *s = (const char *)plain;
    if (strncmp(s, S_VERSION ":", strlen(S_VERSION) + 1) != 0)
        return false;
    s += strlen(S_VERSION) + 1;
    char *end = NULL;
    long long key = strtoll(s, &end, 10);
    if (end == s || *end != ':' || strlen(end + 1) == 0 || strlen(end + 1) >= NRM_PAGE_ID_MAX)
        return false;
    page->after_key = key;
    snprintf(page->after_id, sizeof page->after_id, "%s", end + 1);
    return true;
}

nrm_status_t nrm_page_from_request(nrm_error_t *err, const char *request, const char *token,
                                   int32_t size, nrm_page_t *page)
{
    memset(page, 0, sizeof *page);
    char field[S_FIELD_MAX];
    if (size < 0 || size > NRM_PAGE_MAX) {
        snprintf(field, sizeof field, "%s.page_size", request);
        return nrm_fail(err, NRM_INVALID_ARGUMENT, field,
                        "page_size is from 0 (the default, %d) to %d", NRM_PAGE_DEFAULT,
                        NRM_PAGE_MAX);
    }
    page->size = size ? size : NRM_PAGE_DEFAULT;
    page->first = !token || !token[0];
    if (!page->first && !s_parse(token, page)) {
        snprintf(field, sizeof field, "%s.page_token", request);
        return nrm_fail(err, NRM_INVALID_ARGUMENT, field,
                        "page_token is not one a previous page returned");
    }
    return NRM_OK;
}
