#include "nrm_alloc.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void nrm_oom(const char *what)
{
    fprintf(stderr, "nrm: out of memory (%s)\n", what ? what : "allocation");
    abort();
}

void *nrm_xmalloc(size_t size)
{
    void *block = malloc(size ? size : 1);
    if (!block)
        nrm_oom("malloc");
    return block;
}

void *nrm_xcalloc(size_t count, size_t size)
{
    void *block = calloc(count ? count : 1, size ? size : 1);
    if (!block)
        nrm_oom("calloc");
    return block;
}

void *nrm_xrealloc(void *block, size_t size)
{
    void *grown = realloc(block, size ? size : 1);
    if (!grown)
        nrm_oom("realloc");
    return grown;
}

void *nrm_xreallocarray(void *block, size_t count, size_t size)
{
    if (size && count > SIZE_MAX / size)
        nrm_oom("array size overflow");
    return nrm_xrealloc(block, count * size);
}

char *nrm_xstrdup(const char *text)
{
    size_t len = strlen(text);
    char *copy = nrm_xmalloc(len + 1);
    memcpy(copy, text, len + 1);
    return copy;
}

char *nrm_xstrndup(const char *text, size_t max)
{
    size_t len = strnlen(text, max);
    char *copy = nrm_xmalloc(len + 1);
    memcpy(copy, text, len);
    copy[len] = '\0';
    return copy;
}
