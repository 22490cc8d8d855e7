/* nrm_page: keyset paging for list requests. A page token is opaque to clients: it carries the
 * sort key and the id of the last row a page returned, so the next page starts strictly after
 * it. Rows inserted meanwhile with a larger key appear on later pages; none is skipped or
 * repeated because of them (the keys sorted on must not change after a row is written). */
#ifndef NRM_PAGE_H
#define NRM_PAGE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "nrm_error.h"

#define NRM_PAGE_DEFAULT 50
#define NRM_PAGE_MAX 500
#define NRM_PAGE_ID_MAX 65     /* the id of a row: 64 bytes and the terminator */
#define NRM_PAGE_TOKEN_MAX 160 /* a token as text, terminator included (base64 of S_PLAIN_MAX) */

/* Where a page starts and how long it is. */
typedef struct {
    bool first;                     /* no token: from the beginning */
    int64_t after_key;              /* the last row's sort key (when not first) */
    char after_id[NRM_PAGE_ID_MAX]; /* the last row's id (when not first) */
    int size;                       /* rows on the page: 1..NRM_PAGE_MAX */
} nrm_page_t;

/* Reads a request's page_token and page_size (0: NRM_PAGE_DEFAULT) into page. Returns OK, or
 * INVALID_ARGUMENT in err naming "<request>.page_token" or "<request>.page_size". */
nrm_status_t nrm_page_from_request(nrm_error_t *err, const char *request, const char *token,
                                   int32_t size, nrm_page_t *page);

/* Writes the token of the page that follows the row (key, id) into buf (NRM_PAGE_TOKEN_MAX
 * bytes). Returns buf. */
char *nrm_page_token(char *buf, int64_t key, const char *id);

#endif
