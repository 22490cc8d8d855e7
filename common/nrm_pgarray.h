/* nrm_pgarray: PostgreSQL array literals ({"a","b",NULL}) built element by element, to pass a
 * column of a batch as one text parameter that a statement reads with unnest($1::text[]) (or
 * $1::bigint[], $1::boolean[]: the element text is cast by PostgreSQL). Every text element is
 * quoted, with double quotes and backslashes escaped, so any text (commas, braces, white space,
 * UTF-8, the word NULL) comes back as it was; a NULL element is the unquoted NULL. No length
 * limit; memory from nrm_alloc (aborts when out of memory, never fails). */
#ifndef NRM_PGARRAY_H
#define NRM_PGARRAY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* A literal being built. The text is owned by the array; count is the number of elements added
 * (read it, do not write it). A zeroed array ({0}) is an empty one, like one just initialised. */
typedef struct {
    char *text;
    size_t len, cap, count;
    bool closed;
} nrm_pgarray_t;

/* Starts the empty array a (whatever a held before is not freed). */
void nrm_pgarray_init(nrm_pgarray_t *a);

/* Appends the text s (copied, quoted), or a NULL element when s is NULL. */
void nrm_pgarray_text(nrm_pgarray_t *a, const char *s);

/* Appends the number v (as its decimal text). */
void nrm_pgarray_int(nrm_pgarray_t *a, int64_t v);

/* Appends v as "t" or "f" (read by a boolean[] cast). */
void nrm_pgarray_bool(nrm_pgarray_t *a, bool v);

/* Appends the n bytes as lower-case hex ("" for none), for decode(element, 'hex'). */
void nrm_pgarray_hex(nrm_pgarray_t *a, const uint8_t *bytes, size_t n);

/* Ends the literal and returns it, owned by a (valid until nrm_pgarray_free, or until the next
 * element added: adding after closing reopens the array). Closing twice returns the same text. */
const char *nrm_pgarray_close(nrm_pgarray_t *a);

/* Closes a and hands its literal to the caller (who frees it); a is left empty, as after
 * nrm_pgarray_free. */
char *nrm_pgarray_take(nrm_pgarray_t *a);

/* Frees the text of a and leaves it empty (zeroed; usable again); safe on an array already freed
 * or taken. */
void nrm_pgarray_free(nrm_pgarray_t *a);

/* The literal of n texts (a NULL item is a NULL element); the caller frees it. */
char *nrm_pgarray_of_texts(char *const *items, size_t n);

/* The literal of n numbers; the caller frees it. */
char *nrm_pgarray_of_ints(const int64_t *items, size_t n);

/* The literal of n flags ("t"/"f"); the caller frees it. */
char *nrm_pgarray_of_bools(const bool *items, size_t n);

#endif
