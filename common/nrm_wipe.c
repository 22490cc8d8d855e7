/* nrm_wipe: zeroing freed memory that held keys or identifying data (see nrm_wipe.h). */
#include "nrm_wipe.h"
#include "nrm_alloc.h"

#include <jansson.h>
#include <malloc.h>
#include <sodium.h>
#include <stdlib.h>

void nrm_wipe_block(void *block)
{
    if (block)
        sodium_memzero(block, malloc_usable_size(block));
}

void nrm_wipe_free(void *block)
{
    nrm_wipe_block(block);
    free(block);
}

void nrm_wipe_json(void)
{
    json_set_alloc_funcs(malloc, nrm_wipe_free);
}

/* protobuf-c's allocator interface: the project's out-of-memory policy for alloc. */
static void *s_alloc(void *data, size_t size)
{
    (void)data;
    return nrm_xmalloc(size);
}

static void s_free(void *data, void *block)
{
    (void)data;
    nrm_wipe_free(block);
}

ProtobufCAllocator nrm_wipe_allocator = {s_alloc, s_free, NULL};
