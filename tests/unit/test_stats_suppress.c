/* stats_suppress: small cells are withheld, and so is whatever would give them back by
 * subtraction along a row, a column or the total. Random tables check the invariant: no line
 * of any published table has exactly one withheld entry, and nothing below k is published. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "stats.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define K 11
#define SIDE_MAX 6
#define CELLS_MAX ((SIDE_MAX + 1) * (SIDE_MAX + 1))
#define TRIALS 500

static const char *const s_rows[] = {"r0", "r1", "r2", "r3", "r4", "r5", STATS_ALL};
static const char *const s_cols[] = {"c0", "c1", "c2", "c3", "c4", "c5", STATS_ALL};

/* Builds the 2-D table of counts[r][c] with its margins and total, as GROUP BY CUBE does
 * (cells whose count is 0 do not appear). Returns the number of entries. */
static size_t s_table(stats_cell_t *cells, int rows, int cols, int64_t counts[][SIDE_MAX])
{
    size_t n = 0;
    int64_t total = 0, row_sum[SIDE_MAX] = {0}, col_sum[SIDE_MAX] = {0};
    for (int r = 0; r < rows; r++)
        for (int c = 0; c < cols; c++) {
            row_sum[r] += counts[r][c];
            col_sum[c] += counts[r][c];
            total += counts[r][c];
            if (counts[r][c])
                cells[n++] = (stats_cell_t){{s_rows[r], s_cols[c]}, counts[r][c], false, false};
        }
    for (int r = 0; r < rows; r++)
        if (row_sum[r])
            cells[n++] = (stats_cell_t){{s_rows[r], STATS_ALL}, row_sum[r], false, false};
    for (int c = 0; c < cols; c++)
        if (col_sum[c])
            cells[n++] = (stats_cell_t){{STATS_ALL, s_cols[c]}, col_sum[c], false, false};
    cells[n++] = (stats_cell_t){{STATS_ALL, STATS_ALL}, total, false, false};
    return n;
}

/* The number of withheld entries in the line of entry i along dimension d (its margin
 * included). */
static int s_withheld_in_line(const stats_cell_t *cells, size_t n, size_t i, int d)
{
    int withheld = 0;
    for (size_t j = 0; j < n; j++)
        if (strcmp(cells[j].keys[1 - d], cells[i].keys[1 - d]) == 0)
            withheld += cells[j].suppressed;
    return withheld;
}

/* Whether a withheld entry of a 2-D table is given back by the published ones, found another
 * way than stats_suppress does: the table with its margins is a bipartite graph (a node per row
 * and per column, the margin row and column included; an edge per entry, so every node's edges
 * add up to zero with the margin's sign turned), and an unknown entry is determined exactly
 * when its edge is a bridge of the graph of the withheld entries (no cycle of withheld entries
 * through it). Node of a key: rows 0..SIDE_MAX (SIDE_MAX the margin), columns after them. */
static int s_node(const char *key, const char *const *names, int offset)
{
    for (int i = 0; i <= SIDE_MAX; i++)
        if (strcmp(key, names[i]) == 0)
            return offset + i;
    return -1;
}

/* True when the two nodes of withheld entry e are still joined without it. */
static bool s_joined_without(const stats_cell_t *cells, size_t n, size_t e)
{
    enum { NODES = 2 * (SIDE_MAX + 1) };
    int from = s_node(cells[e].keys[0], s_rows, 0),
        to = s_node(cells[e].keys[1], s_cols, SIDE_MAX + 1);
    bool seen[NODES] = {false};
    int stack[NODES], top = 0;
    stack[top++] = from;
    seen[from] = true;
    while (top > 0) {
        int at = stack[--top];
        if (at == to)
            return true;
        for (size_t j = 0; j < n; j++) {
            if (j == e || !cells[j].suppressed)
                continue;
            int a = s_node(cells[j].keys[0], s_rows, 0),
                b = s_node(cells[j].keys[1], s_cols, SIDE_MAX + 1);
            int next = a == at ? b : b == at ? a : -1;
            if (next >= 0 && !seen[next]) {
                seen[next] = true;
                stack[top++] = next;
            }
        }
    }
    return false;
}

/* A random 2-D table of up to SIDE_MAX x SIDE_MAX cells, a third of them below k, into cells;
 * returns the number of entries. */
static size_t s_random_table(unsigned *seed, stats_cell_t *cells)
{
    int rows = 1 + (int)(rand_r(seed) % SIDE_MAX), cols = 1 + (int)(rand_r(seed) % SIDE_MAX);
    int64_t counts[SIDE_MAX][SIDE_MAX] = {{0}};
    for (int r = 0; r < rows; r++)
        for (int c = 0; c < cols; c++)
            counts[r][c] = rand_r(seed) % 3 == 0 ? rand_r(seed) % K : rand_r(seed) % 60;
    return s_table(cells, rows, cols, counts);
}

static void test_a_small_cell_and_its_complements_are_withheld(void **state)
{
    (void)state;
    int64_t counts[SIDE_MAX][SIDE_MAX] = {{14, 11}, {12, 2}};
    stats_cell_t cells[CELLS_MAX];
    size_t n = s_table(cells, 2, 2, counts);
    int suppressed = stats_suppress(cells, n, 2, K);
    /* r1/c1 (2) below k; r1/c0 its row complement, r0/c1 its column complement, r0/c0 */
    assert_true(cells[3].primary && cells[3].suppressed);
    assert_true(cells[2].suppressed && cells[1].suppressed && cells[0].suppressed);
    assert_int_equal(suppressed, 4);
    for (size_t i = 4; i < n; i++) /* the margins (25, 14, 26, 13) and the total stay */
        assert_false(cells[i].suppressed);
}

static void test_a_table_of_one_dimension_withholds_a_second_cell(void **state)
{
    (void)state;
    stats_cell_t cells[] = {{{"a"}, 40, false, false},
                            {{"b"}, 3, false, false},
                            {{"c"}, 20, false, false},
                            {{STATS_ALL}, 63, false, false}};
    assert_int_equal(stats_suppress(cells, 4, 1, K), 2);
    assert_true(cells[1].suppressed);
    assert_true(cells[2].suppressed); /* the smallest other cell, not the total */
    assert_false(cells[3].suppressed);
}

static void test_random_tables_never_leave_a_line_with_one_withheld_entry(void **state)
{
    (void)state;
    unsigned seed = 12;
    for (int t = 0; t < TRIALS; t++) {
        stats_cell_t cells[CELLS_MAX];
        size_t n = s_random_table(&seed, cells);
        stats_suppress(cells, n, 2, K);
        for (size_t i = 0; i < n; i++) {
            if (!cells[i].suppressed)
                assert_false(cells[i].count > 0 && cells[i].count < K);
            for (int d = 0; d < 2; d++) {
                int w = s_withheld_in_line(cells, n, i, d);
                /* a line of a single entry (one cell and no other) cannot be protected */
                int entries = 0;
                for (size_t j = 0; j < n; j++)
                    entries += strcmp(cells[j].keys[1 - d], cells[i].keys[1 - d]) == 0;
                if (entries > 1 && w == 1)
                    fail_msg("trial %d: a line with one withheld entry", t);
            }
        }
    }
}

/* Two blocks of small cells and one more in a row of the first: the lines one at a time leave
 * nothing alone, but rows r0 + r1 minus columns c0 + c1 leave (r0, c2), and then (r3, c2) by
 * its column. */
static void test_a_cell_that_a_sum_of_lines_gives_back_is_protected(void **state)
{
    (void)state;
    int64_t counts[SIDE_MAX][SIDE_MAX] = {{3, 4, 5, 20, 21, 22},
                                          {2, 6, 30, 23, 24, 25},
                                          {40, 41, 42, 43, 44, 45},
                                          {26, 27, 12, 28, 3, 2},
                                          {31, 32, 33, 34, 4, 1}};
    stats_cell_t cells[CELLS_MAX];
    size_t n = s_table(cells, 5, 6, counts);
    stats_suppress(cells, n, 2, K);
    for (size_t i = 0; i < n; i++)
        if (cells[i].suppressed && !s_joined_without(cells, n, i))
            fail_msg("(%s, %s) = %lld is given back by the published entries", cells[i].keys[0],
                     cells[i].keys[1], (long long)cells[i].count);
}

static void test_random_tables_give_back_no_withheld_entry_by_any_sum_of_lines(void **state)
{
    (void)state;
    unsigned seed = 29;
    int protected_tables = 0;
    for (int t = 0; t < TRIALS; t++) {
        stats_cell_t cells[CELLS_MAX];
        size_t n = s_random_table(&seed, cells);
        if (stats_suppress(cells, n, 2, K) > 0)
            protected_tables++;
        for (size_t i = 0; i < n; i++)
            if (cells[i].suppressed && !s_joined_without(cells, n, i))
                fail_msg("trial %d: (%s, %s) = %lld is given back", t, cells[i].keys[0],
                         cells[i].keys[1], (long long)cells[i].count);
    }
    assert_true(protected_tables > TRIALS / 2);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_a_small_cell_and_its_complements_are_withheld),
        cmocka_unit_test(test_a_table_of_one_dimension_withholds_a_second_cell),
        cmocka_unit_test(test_random_tables_never_leave_a_line_with_one_withheld_entry),
        cmocka_unit_test(test_a_cell_that_a_sum_of_lines_gives_back_is_protected),
        cmocka_unit_test(test_random_tables_give_back_no_withheld_entry_by_any_sum_of_lines),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
