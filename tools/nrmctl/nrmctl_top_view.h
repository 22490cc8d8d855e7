/* nrmctl_top_view: draws top's snapshot (nrmctl_top_model_snapshot) as one screen of text:
 * on a terminal redrawn in place with ANSI codes, otherwise as plain text, one screen after
 * the other. Counts only: the snapshot holds no id. */
#ifndef NRMCTL_TOP_VIEW_H
#define NRMCTL_TOP_VIEW_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

/* Draws snapshot on out, taken at now_ms (wall clock) and redrawn every interval_ms. With
 * ansi, the screen is drawn over the previous one in at most rows lines (0: no limit; what
 * does not fit is cut, and the last line says so); without, the text ends with an empty
 * line. Returns 0, or -1 when out cannot be written. */
int nrmctl_top_view_draw(FILE *out, const json_t *snapshot, bool ansi, int rows,
                         int64_t interval_ms, int64_t now_ms);

/* Switches a terminal to the alternate screen and hides the cursor. */
void nrmctl_top_view_enter(FILE *out);

/* Shows the cursor and returns the terminal to its normal screen. */
void nrmctl_top_view_leave(FILE *out);

#endif
