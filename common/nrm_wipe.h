/* nrm_wipe: memory that held keys or identifying data is zeroed when it is freed.
 *
 * sodium_malloc'd buffers wipe themselves; this module covers what other libraries allocate with
 * the system's malloc: Jansson's values and parser buffers (a keyring file read, a JSON request
 * or reply carrying a person's name at the gateway) and protobuf-c messages unpacked from sealed
 * personal data. A block is zeroed in full (malloc_usable_size) before free. */
#ifndef NRM_WIPE_H
#define NRM_WIPE_H

#include <protobuf-c/protobuf-c.h>

/* Zeroes the whole of a block from malloc (its usable size); NULL is ignored. The block stays
 * allocated. */
void nrm_wipe_block(void *block);

/* nrm_wipe_block, then free. */
void nrm_wipe_free(void *block);

/* Makes every free of Jansson's (this process) wipe the block first. Call once at start, before
 * threads begin; idempotent. */
void nrm_wipe_json(void);

/* A protobuf-c allocator whose free wipes: unpack and free_unpacked a message of personal data
 * with it. */
extern ProtobufCAllocator nrm_wipe_allocator;

#endif
