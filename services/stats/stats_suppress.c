/* Small-cell suppression with complementary suppression.
 *
 * A table of ndims dimensions, as GROUP BY CUBE gives it, holds every cell, every margin and the
 * total; a "line" is the set of entries that agree on the keys of every dimension but one, d:
 * its members (each value of d) and its margin (d = "*"), which is their sum. An attacker who
 * sees all the published entries of a line with exactly one withheld entry gets it back by
 * subtraction, and may then go on line by line. So after the primary suppression (0 < count < k)
 * every line with exactly one withheld entry has another withheld: the smallest published
 * member (or, with none left, the margin), until no such line remains. That is not enough: lines
 * can also be added and subtracted together (two rows minus two columns may leave one withheld
 * cell alone), so the lines' equations over the withheld entries are then reduced (Gaussian
 * elimination) and any withheld entry they determine gets another entry of its lines withheld,
 * until none is determined. */
#include "nrm_alloc.h"
#include "stats.h"

#include <czmq.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#define S_SEP "\x1f"
#define S_EPS 1e-9 /* below it a coefficient is 0 (they start as 0 and 1 and stay small) */

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

/* A basis of the row space of the lines' equations over the withheld entries, fully reduced:
 * each row has 1 at its pivot column and 0 at every other row's pivot. */
typedef struct {
    double *rows; /* count rows of u coefficients */
    size_t *pivot;
    size_t count, u;
} s_basis_t;

/* Adds equation v (u coefficients, changed) to the basis unless the basis already spans it. */
static void s_basis_add(s_basis_t *b, double *v)
{
    for (size_t r = 0; r < b->count; r++) {
        double f = v[b->pivot[r]];
        const double *row = b->rows + r * b->u;
        if (fabs(f) > S_EPS)
            for (size_t j = 0; j < b->u; j++)
                v[j] -= f * row[j];
    }
    size_t p = SIZE_MAX;
    double best = S_EPS;
    for (size_t j = 0; j < b->u; j++) {
        if (fabs(v[j]) <= S_EPS)
            v[j] = 0;
        else if (fabs(v[j]) > best) {
            best = fabs(v[j]);
            p = j;
        }
    }
    if (p == SIZE_MAX)
        return;
    double inv = 1.0 / v[p];
    for (size_t j = 0; j < b->u; j++)
        v[j] *= inv;
    v[p] = 1.0;
    for (size_t r = 0; r < b->count; r++) {
        double *row = b->rows + r * b->u;
        double f = row[p];
        if (fabs(f) > S_EPS)
            for (size_t j = 0; j < b->u; j++)
                row[j] -= f * v[j];
        row[p] = 0;
    }
    memcpy(b->rows + b->count * b->u, v, b->u * sizeof *v);
    b->pivot[b->count++] = p;
}

/* Marks in determined[i] each withheld entry i whose value the published entries give back
 * through some combination of lines (its unit vector is in the row space of the equations:
 * a basis row with nothing but its pivot). Returns how many. */
static size_t s_determined(const stats_cell_t *cells, size_t n, int ndims, s_line_t *const *lines,
                           const size_t *n_lines, bool *determined)
{
    size_t *column = nrm_xcalloc(n ? n : 1, sizeof *column), u = 0;
    for (size_t i = 0; i < n; i++) {
        determined[i] = false;
        column[i] = cells[i].suppressed ? u++ : SIZE_MAX;
    }
    size_t equations = 0;
    for (int d = 0; d < ndims; d++)
        equations += n_lines[d];
    size_t rank_max = equations < u ? equations : u;
    s_basis_t b = {nrm_xcalloc(rank_max * u + 1, sizeof *b.rows),
                   nrm_xcalloc(rank_max + 1, sizeof *b.pivot), 0, u};
    double *v = nrm_xcalloc(u + 1, sizeof *v);
    for (int d = 0; d < ndims && u; d++)
        for (size_t l = 0; l < n_lines[d] && b.count < rank_max; l++) {
            const s_line_t *line = &lines[d][l];
            if (line->margin == SIZE_MAX)
                continue; /* no margin published or withheld: no equation */
            memset(v, 0, u * sizeof *v);
            bool any = false;
            for (size_t m = 0; m < line->n_members; m++)
                if (column[line->members[m]] != SIZE_MAX) {
                    v[column[line->members[m]]] = 1;
                    any = true;
                }
            if (column[line->margin] != SIZE_MAX) {
                v[column[line->margin]] = -1;
                any = true;
            }
            if (any)
                s_basis_add(&b, v);
        }
    size_t found = 0;
    for (size_t r = 0; r < b.count; r++) {
        const double *row = b.rows + r * u;
        bool alone = true;
        for (size_t j = 0; j < u && alone; j++)
            alone = j == b.pivot[r] || fabs(row[j]) <= S_EPS;
        if (!alone)
            continue;
        for (size_t i = 0; i < n; i++)
            if (column[i] == b.pivot[r]) {
                determined[i] = true;
                found++;
            }
    }
    free(v);
    free(b.rows);
    free(b.pivot);
    free(column);
    return found;
}

/* Withholds one more entry to hide entry i: the smallest published entry of its lines, or
 * with none, of the whole table. Returns false when nothing is left to withhold. */
static bool s_hide(stats_cell_t *cells, size_t n, int ndims, size_t i)
{
    size_t pick = SIZE_MAX;
    for (int pass = 0; pass < 2 && pick == SIZE_MAX; pass++)
        for (size_t j = 0; j < n; j++) {
            if (cells[j].suppressed || (pick != SIZE_MAX && cells[j].count >= cells[pick].count))
                continue;
            int differ = 0; /* in i's line along some dimension: the keys differ in one at most */
            for (int d = 0; d < ndims; d++)
                differ += strcmp(cells[j].keys[d], cells[i].keys[d]) != 0;
            if (pass == 1 || differ <= 1)
                pick = j;
        }
    if (pick == SIZE_MAX)
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
    bool *determined = nrm_xcalloc(n ? n : 1, sizeof *determined);
    while (suppressed > 0 && s_determined(cells, n, ndims, lines, n_lines, determined) > 0) {
        bool hid = false;
        for (size_t i = 0; i < n; i++)
            if (determined[i] && s_hide(cells, n, ndims, i)) {
                hid = true;
                suppressed++;
            }
        if (!hid)
            break;
    }
    free(determined);
    for (int d = 0; d < ndims; d++)
        s_lines_free(lines[d], n_lines[d]);
    return suppressed;
}
