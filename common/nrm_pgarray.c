/* nrm_pgarray: PostgreSQL array literals built element by element (see nrm_pgarray.h). */
#include "nrm_pgarray.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nrm_alloc.h"

/* Makes room in a for more bytes and the terminator. */
static void s_room(nrm_pgarray_t *a, size_t more)
{
    if (a->len + more + 1 <= a->cap)
        return;
    size_t cap = a->cap ? a->cap : 64;
    while (cap < a->len + more + 1)
        cap *= 2;
    a->text = nrm_xrealloc(a->text, cap);
    a->cap = cap;
}

void nrm_pgarray_init(nrm_pgarray_t *a)
{
    *a = (nrm_pgarray_t){0};
    s_room(a, 1);
    a->text[0] = '{';
    a->text[1] = '\0';
    a->len = 1;
}

/* Starts a new element of at most more bytes (separator excluded) and returns where it goes:
 * reopens a closed array, starts an array that was freed or taken, writes the separator. */
static char *s_element(nrm_pgarray_t *a, size_t more)
{
    if (!a->text)
        nrm_pgarray_init(a);
    if (a->closed) {
        a->len--; /* the closing brace */
        a->closed = false;
    }
    s_room(a, more + 1);
    char *out = a->text + a->len;
    if (a->count++)
        *out++ = ',';
    return out;
}

/* Ends the element that s_element started, at out. */
static void s_end(nrm_pgarray_t *a, char *out)
{
    a->len = (size_t)(out - a->text);
    a->text[a->len] = '\0';
}

void nrm_pgarray_text(nrm_pgarray_t *a, const char *s)
{
    if (!s) {
        char *out = s_element(a, 4);
        memcpy(out, "NULL", 4);
        s_end(a, out + 4);
        return;
    }
    size_t n = strlen(s);
    char *out = s_element(a, 2 * n + 2); /* every byte escaped, and the quotes */
    *out++ = '"';
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '"' || s[i] == '\\')
            *out++ = '\\';
        *out++ = s[i];
    }
    *out++ = '"';
    s_end(a, out);
}

void nrm_pgarray_int(nrm_pgarray_t *a, int64_t v)
{
    char number[24];
    snprintf(number, sizeof number, "%lld", (long long)v);
    nrm_pgarray_text(a, number);
}

void nrm_pgarray_bool(nrm_pgarray_t *a, bool v)
{
    nrm_pgarray_text(a, v ? "t" : "f");
}

void nrm_pgarray_hex(nrm_pgarray_t *a, const uint8_t *bytes, size_t n)
{
    static const char digits[] = "0123456789abcdef";
    char *out = s_element(a, 2 * n + 2);
    *out++ = '"';
    for (size_t i = 0; i < n; i++) {
        *out++ = digits[bytes[i] >> 4];
        *out++ = digits[bytes[i] & 0xf];
    }
    *out++ = '"';
    s_end(a, out);
}

const char *nrm_pgarray_close(nrm_pgarray_t *a)
{
    if (!a->text)
        nrm_pgarray_init(a);
    if (!a->closed) {
        s_room(a, 1);
        a->text[a->len++] = '}';
        a->text[a->len] = '\0';
        a->closed = true;
    }
    return a->text;
}

char *nrm_pgarray_take(nrm_pgarray_t *a)
{
    nrm_pgarray_close(a);
    char *text = a->text;
    *a = (nrm_pgarray_t){0};
    return text;
}

void nrm_pgarray_free(nrm_pgarray_t *a)
{
    free(a->text);
    *a = (nrm_pgarray_t){0};
}

char *nrm_pgarray_of_texts(char *const *items, size_t n)
{
    nrm_pgarray_t a;
    nrm_pgarray_init(&a);
    for (size_t i = 0; i < n; i++)
        nrm_pgarray_text(&a, items[i]);
    return nrm_pgarray_take(&a);
}

char *nrm_pgarray_of_ints(const int64_t *items, size_t n)
{
    nrm_pgarray_t a;
    nrm_pgarray_init(&a);
    for (size_t i = 0; i < n; i++)
        nrm_pgarray_int(&a, items[i]);
    return nrm_pgarray_take(&a);
}

char *nrm_pgarray_of_bools(const bool *items, size_t n)
{
    nrm_pgarray_t a;
    nrm_pgarray_init(&a);
    for (size_t i = 0; i < n; i++)
        nrm_pgarray_bool(&a, items[i]);
    return nrm_pgarray_take(&a);
}
