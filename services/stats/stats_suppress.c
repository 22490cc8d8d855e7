/* Small-cell suppression with complementary suppression.
 *
 * A table of ndims dimensions, as GROUP BY CUBE gives it, holds every cell, every margin and the
 * total; a "line" is the set of entries that agree on the keys of every dimension but one, d:
 * its members (each value of d) and its margin (d = "*"), which is their sum. An attacker who
 * sees all the published entries of a line with exactly one withheld entry gets it back by
 * subtraction, and may then go on line by line. So after the primary suppression (0 < count < k)
 * every line with exactly one withheld entry has another withheld: the smallest published
 * member (or, with none left, the margin), until no such line remains. */
#include "nrm_alloc.h"
#include "stats.h"

#include <czmq.h>
#include <stdio.h>
#include <string.h>

#define S_SEP "\x1f"

typedef struct {
    size_t *members; /* entry indexes */
    size_t n_members;
    size_t cap;
    size_t margin; /* entry index of the line's margin, or SIZE_MAX */
} s_line_t;

/* The lines of dimension d: *n_lines receives their count; caller frees with s_lines_free. */
static s_line_t *s_lines(const stats_cell_t *cells, size_t n, int ndims, int d, size_t *n_lines)
{
    zhash_t *index = zhash_new();
    s_line_t *lines = nrm_xcalloc(n ? n : 1, sizeof *lines);
    *n_lines = 0;
    for (size_t i = 0; i < n; i++) {
        char key[1024] = "";
        size_t used = 0;
        for (int o = 0; o < ndims; o++)
            if (o != d && used < sizeof key)
                used +=
                    (size_t)snprintf(key + used, sizeof key - used, "%s" S_SEP, cells[i].keys[o]);
        size_t *slot = zhash_lookup(index, key);
        s_line_t *line;
        if (slot)
            line = &lines[*slot - 1];
        else {
            line = &lines[(*n_lines)++];
            line->margin = SIZE_MAX;
            size_t *pos = nrm_xmalloc(sizeof *pos);
            *pos = *n_lines;
            zhash_insert(index, key, pos);
            zhash_freefn(index, key, free);
        }
        if (strcmp(cells[i].keys[d], STATS_ALL) == 0)
            line->margin = i;
        else {
            if (line->n_members == line->cap) {
                line->cap = line->cap ? line->cap * 2 : 8;
                line->members = nrm_xreallocarray(line->members, line->cap, sizeof *line->members);
            }
            line->members[line->n_members++] = i;
        }
    }
    zhash_destroy(&index);
    return lines;
}

static void s_lines_free(s_line_t *lines, size_t n_lines)
{
    for (size_t l = 0; l < n_lines; l++)
        free(lines[l].members);
    free(lines);
}

/* In one line with exactly one withheld entry, withholds another. Returns true if it did. */
static bool s_protect(stats_cell_t *cells, const s_line_t *line)
{
    int withheld = line->margin != SIZE_MAX && cells[line->margin].suppressed;
    for (size_t m = 0; m < line->n_members; m++)
        withheld += cells[line->members[m]].suppressed;
    if (withheld != 1)
        return false;
    size_t pick = SIZE_MAX;
    for (size_t m = 0; m < line->n_members; m++) {
        size_t i = line->members[m];
        if (!cells[i].suppressed && (pick == SIZE_MAX || cells[i].count < cells[pick].count))
            pick = i;
    }
    if (pick == SIZE_MAX && line->margin != SIZE_MAX && !cells[line->margin].suppressed)
        pick = line->margin;
    if (pick == SIZE_MAX) /* a line of one entry: nothing else to give it away */
        return false;
    cells[pick].suppressed = true;
    return true;
}

int stats_suppress(stats_cell_t *cells, size_t n, int ndims, int64_t k)
{
    int suppressed = 0;
    for (size_t i = 0; i < n; i++) {
        cells[i].primary = cells[i].count > 0 && cells[i].count < k;
        cells[i].suppressed = cells[i].primary;
        suppressed += cells[i].primary;
    }
    s_line_t *lines[STATS_MAX_DIMS] = {NULL};
    size_t n_lines[STATS_MAX_DIMS] = {0};
    for (int d = 0; d < ndims; d++)
        lines[d] = s_lines(cells, n, ndims, d, &n_lines[d]);
    for (bool changed = suppressed > 0; changed;) {
        changed = false;
        for (int d = 0; d < ndims; d++)
            for (size_t l = 0; l < n_lines[d]; l++)
                if (s_protect(cells, &lines[d][l])) {
                    changed = true;
                    suppressed++;
                }
    }
    for (int d = 0; d < ndims; d++)
        s_lines_free(lines[d], n_lines[d]);
    return suppressed;
}
