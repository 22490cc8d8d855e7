/* nrm_alloc: the one out-of-memory policy of the project.
 *
 * A service that cannot allocate a few bytes cannot keep any promise it makes (acknowledge a
 * report, hold a bed), and a half-done step is worse than a restart: every step is a database
 * transaction and every consumer resumes from its checkpoint. So allocation failure is not an
 * error path: these wrappers log one line to stderr and abort(), and callers never check their
 * result. Use them everywhere instead of malloc, calloc, realloc, strdup and strndup. */
#ifndef NRM_ALLOC_H
#define NRM_ALLOC_H

#include <stddef.h>

/* Aborts the process with "nrm: out of memory (WHAT)" on stderr. Never returns. */
void nrm_oom(const char *what) __attribute__((noreturn));

/* malloc(size), never NULL (size 0 allocates one byte). The caller owns and frees the block. */
void *nrm_xmalloc(size_t size) __attribute__((malloc));

/* calloc(count, size), never NULL; aborts also when count * size overflows. */
void *nrm_xcalloc(size_t count, size_t size) __attribute__((malloc));

/* realloc(block, size), never NULL; on success block is no longer valid. */
void *nrm_xrealloc(void *block, size_t size);

/* realloc of an array of count elements of size bytes, aborting when the product overflows. */
void *nrm_xreallocarray(void *block, size_t count, size_t size);

/* strdup(text), never NULL. text must not be NULL. */
char *nrm_xstrdup(const char *text) __attribute__((malloc));

/* strndup(text, max), never NULL: at most max bytes of text, always terminated. */
char *nrm_xstrndup(const char *text, size_t max) __attribute__((malloc));

#endif
