#include "nrm_outbox.h"
#include "nrm_crypto.h"
#include "nrm_pgarray.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char s_insert_sql[] =
    "WITH ins AS (INSERT INTO outbox (event_id, topic, payload) VALUES ($1::uuid, $2, $3))"
    " SELECT pg_notify($4, '')";

static const char s_insert_many_sql[] =
    "WITH ins AS (INSERT INTO outbox (event_id, topic, payload)"
    "  SELECT e::uuid, t, decode(h, 'hex')"
    "  FROM unnest($1::text[], $2::text[], $3::text[]) WITH ORDINALITY AS u(e, t, h, o)"
    "  ORDER BY o)"
    " SELECT pg_notify($4, '')";

void nrm_outbox_channel(const char *schema, char *buf, size_t size)
{
    snprintf(buf, size, "%s_outbox", schema);
}

/* The stored copy of ev (see nrm_tx_emit), packed: *payload (malloc'd) and *len; event_id
 * receives the id. Returns OK, or INTERNAL for an event without a body or out of memory. */
static nrm_status_t s_pack(nrm_tx_t *tx, const Nrm__V1__Event *ev, char event_id[37],
                           uint8_t **payload, size_t *len)
{
    const char *topic = nrm_event_topic_of(ev->body_case);
    if (!topic)
        return nrm_fail(tx->err, NRM_INTERNAL, NULL, "event without a body");
    Nrm__V1__Event copy = *ev;
    if (copy.event_id && copy.event_id[0])
        snprintf(event_id, 37, "%s", copy.event_id);
    else
        nrm_uuid_v4(event_id);
    copy.event_id = event_id;
    copy.stream = (char *)tx->stream;
    copy.topic = (char *)topic;
    copy.seq = 0;
    if (copy.occurred_at_ms == 0)
        copy.occurred_at_ms = tx->now_ms;
    if ((!copy.causation_id || !copy.causation_id[0]) && tx->causation_id)
        copy.causation_id = (char *)tx->causation_id;
    *payload = nrm_event_pack(&copy, len); /* never NULL (nrm_alloc) */
    return NRM_OK;
}

nrm_status_t nrm_tx_emit(nrm_tx_t *tx, Nrm__V1__Event *ev)
{
    char event_id[37];
    uint8_t *payload = NULL;
    size_t len = 0;
    nrm_status_t st = s_pack(tx, ev, event_id, &payload, &len);
    if (st != NRM_OK)
        return st;
    const char *topic = nrm_event_topic_of(ev->body_case);
    char channel[96];
    nrm_outbox_channel(nrm_db_schema(tx->db), channel, sizeof channel);
    nrm_db_statement(tx->db, "outbox_insert", s_insert_sql);
    nrm_params_t p = {0};
    nrm_params_text(&p, event_id);
    nrm_params_text(&p, topic);
    nrm_params_bytes(&p, payload, len);
    nrm_params_text(&p, channel);
    st = nrm_db_exec_later(tx->db, "outbox_insert", &p, tx->err); /* with the next statement */
    free(payload);
    if (st == NRM_OK)
        tx->emitted++;
    return st;
}

nrm_status_t nrm_tx_event_row(nrm_tx_t *tx, Nrm__V1__Event *ev, nrm_event_row_t *row)
{
    memset(row, 0, sizeof *row);
    nrm_status_t st = s_pack(tx, ev, row->event_id, &row->payload, &row->len);
    if (st != NRM_OK)
        return st;
    row->topic = nrm_event_topic_of(ev->body_case);
    nrm_outbox_channel(nrm_db_schema(tx->db), row->channel, sizeof row->channel);
    return NRM_OK;
}

void nrm_tx_event_row_done(nrm_tx_t *tx, nrm_event_row_t *row, bool written)
{
    free(row->payload);
    row->payload = NULL;
    if (written)
        tx->emitted++;
}

nrm_status_t nrm_tx_emit_many(nrm_tx_t *tx, Nrm__V1__Event *const *evs, size_t n)
{
    if (n == 0)
        return NRM_OK;
    nrm_pgarray_t ids, topics, payloads;
    nrm_pgarray_init(&ids);
    nrm_pgarray_init(&topics);
    nrm_pgarray_init(&payloads);
    nrm_status_t st = NRM_OK;
    for (size_t i = 0; i < n && st == NRM_OK; i++) {
        char event_id[37];
        uint8_t *payload = NULL;
        size_t len = 0;
        st = s_pack(tx, evs[i], event_id, &payload, &len);
        if (st != NRM_OK)
            break;
        nrm_pgarray_text(&ids, event_id);
        nrm_pgarray_text(&topics, nrm_event_topic_of(evs[i]->body_case));
        nrm_pgarray_hex(&payloads, payload, len);
        free(payload);
    }
    if (st == NRM_OK) {
        char channel[96];
        nrm_outbox_channel(nrm_db_schema(tx->db), channel, sizeof channel);
        nrm_db_statement(tx->db, "outbox_insert_many", s_insert_many_sql);
        nrm_params_t p = {0};
        nrm_params_text(&p, nrm_pgarray_close(&ids));
        nrm_params_text(&p, nrm_pgarray_close(&topics));
        nrm_params_text(&p, nrm_pgarray_close(&payloads));
        nrm_params_text(&p, channel);
        st = nrm_db_exec_later(tx->db, "outbox_insert_many", &p, tx->err); /* idem */
    }
    nrm_pgarray_free(&ids);
    nrm_pgarray_free(&topics);
    nrm_pgarray_free(&payloads);
    if (st == NRM_OK)
        tx->emitted += (int)n;
    return st;
}

nrm_status_t nrm_tx_emit_body(nrm_tx_t *tx, const char *case_id, Nrm__V1__Event__BodyCase body,
                              void *message)
{
    Nrm__V1__Event ev = NRM__V1__EVENT__INIT;
    ev.case_id = (char *)(case_id ? case_id : "");
    ev.body_case = body;
    ev.case_opened = message; /* every member of the body oneof shares this pointer slot */
    return nrm_tx_emit(tx, &ev);
}
