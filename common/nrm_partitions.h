/* nrm_partitions: the checkpoint rows of a partitioned consumer (checkpoint_partitions, bus
 * migration 005), for nrm_consumer. Row p of a stream holds the last sequence up to which every
 * event of partition p is applied; the stream's row in checkpoints follows the lowest of them.
 * Every function works on the consumer's connection; those that say "in the open transaction"
 * need one, the others run alone. */
#ifndef NRM_PARTITIONS_H
#define NRM_PARTITIONS_H

#include <stdbool.h>
#include <stdint.h>
#include "nrm_db.h"

/* Prepares the statements (once per connection handle). */
void nrm_partitions_prepare(nrm_db_t *db);

/* In the open transaction: the stream's row in checkpoints locked (made at 0 when missing) and
 * its latest seq into *seq, in one statement. For the one-row layout too. */
nrm_status_t nrm_partitions_stream_take(nrm_db_t *db, const char *stream, int64_t *seq,
                                        nrm_error_t *err);

/* In its own transaction: creates the stream's rows for layout `configured` when there are none
 * (at the stream row's seq), or replaces a stored layout of another size when every row is at the
 * same seq (the stream caught up; with configured 1 the rows are removed). Sets *layout to the
 * layout in force (the stored one while its rows differ) and *cursor to the lowest row (the stream
 * row for layout 1). Returns OK or the failure. */
nrm_status_t nrm_partitions_load(nrm_db_t *db, const char *stream, int configured, int *layout,
                                 int64_t *cursor, nrm_error_t *err);

/* In the open transaction: takes row part without waiting. Returns 1 (taken, *stored its seq),
 * 0 (another instance holds it, or it is gone), 2 (made for another layout), -1 (err set). */
int nrm_partitions_take(nrm_db_t *db, const char *stream, int part, int layout, int64_t *stored,
                        nrm_error_t *err);

/* In the open transaction: takes every row of the stream in order, waiting for their holders;
 * stored[p] gets row p's seq. FAILED_PRECONDITION when the rows are not exactly layout's. */
nrm_status_t nrm_partitions_take_all(nrm_db_t *db, const char *stream, int layout, int64_t *stored,
                                     nrm_error_t *err);

/* In the open transaction: row part (or every row, part -1) moves up to seq. */
nrm_status_t nrm_partitions_move(nrm_db_t *db, const char *stream, int part, int64_t seq,
                                 nrm_error_t *err);

/* Alone: moves to `to` the rows of the partitions with has[p] false that are free and at least at
 * `from` (so none of their events lies between): a batch with no event of theirs. */
void nrm_partitions_advance(nrm_db_t *db, const char *stream, int layout, const bool *has,
                            int64_t from, int64_t to);

/* Alone: moves the stream's row to the lowest partition row; returns that, or -1. */
int64_t nrm_partitions_refresh(nrm_db_t *db, const char *stream);

#endif
