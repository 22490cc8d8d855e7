/* nrm_outbox: events written in the same transaction as the change they describe.
 *
 * An nrm_tx_t is the context of one open transaction of a service: request handlers, event
 * consumers and timers receive one and emit events through it. Nothing is published until the
 * transaction commits; then the service's publisher gives each event its dense sequence. */
#ifndef NRM_OUTBOX_H
#define NRM_OUTBOX_H

#include <stdint.h>
#include "nrm_db.h"
#include "nrm_event.h"

typedef struct {
    nrm_db_t *db;             /* connection with the open transaction */
    const char *stream;       /* this service's stream name */
    const char *causation_id; /* request_id or event_id behind the changes ("" if none) */
    int64_t now_ms;           /* one clock reading for the whole transaction */
    nrm_error_t *err;         /* where failures are described */
    int emitted;              /* events appended so far */
} nrm_tx_t;

/* Appends ev to the outbox in tx's transaction and wakes the publishers on commit. Fills, for
 * the stored copy only, event_id (a fresh UUID unless set), stream, topic, occurred_at_ms (tx's
 * clock unless set) and causation_id (unless set); ev stays the caller's and is left unchanged.
 * The insert goes with the transaction's next statement or its commit (nrm_db_exec_later), so
 * its failure, should one come, fails that call. Returns OK or the database's failure status. */
nrm_status_t nrm_tx_emit(nrm_tx_t *tx, Nrm__V1__Event *ev);

/* Appends the n events evs (as nrm_tx_emit fills each) to the outbox in one statement, in
 * their order, and wakes the publishers on commit. A no-op for n 0. The events stay the
 * caller's. The insert is sent as nrm_tx_emit's. Returns OK or the failure status (then nothing
 * of the n is appended). */
nrm_status_t nrm_tx_emit_many(nrm_tx_t *tx, Nrm__V1__Event *const *evs, size_t n);

/* Appends an event about case_id (NULL for none) whose body is message, a member of the Event
 * body oneof selected by body (for example NRM__V1__EVENT__BODY_CASE_CLOSED and a
 * Nrm__V1__CaseClosed *), as nrm_tx_emit does. message stays the caller's. */
nrm_status_t nrm_tx_emit_body(nrm_tx_t *tx, const char *case_id, Nrm__V1__Event__BodyCase body,
                              void *message);

/* An event packed for a statement of the caller's own that writes it together with the change
 * it describes (one statement instead of two): the statement inserts (event_id, topic, payload)
 * into outbox and calls pg_notify(channel, '') when it inserts the row. */
typedef struct {
    char event_id[37];
    const char *topic; /* static */
    uint8_t *payload;  /* owned until nrm_tx_event_row_done */
    size_t len;
    char channel[96];
} nrm_event_row_t;

/* Packs ev into row exactly as nrm_tx_emit would store it (filling event_id, stream, topic,
 * occurred_at_ms and causation_id of the stored copy). Returns OK or INTERNAL (no body); on
 * OK the caller ends with nrm_tx_event_row_done. */
nrm_status_t nrm_tx_event_row(nrm_tx_t *tx, Nrm__V1__Event *ev, nrm_event_row_t *row);

/* Frees row's payload; written says the caller's statement inserted it (counted as emitted). */
void nrm_tx_event_row_done(nrm_tx_t *tx, nrm_event_row_t *row, bool written);

/* The NOTIFY channel of a schema's outbox ("<schema>_outbox") written into buf. */
void nrm_outbox_channel(const char *schema, char *buf, size_t size);

#endif
