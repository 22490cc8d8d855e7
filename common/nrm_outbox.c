#include "nrm_outbox.h"
#include "nrm_crypto.h"

#include <stdio.h>
#include <stdlib.h>

static const char s_insert_sql[] =
    "WITH ins AS (INSERT INTO outbox (event_id, topic, payload) VALUES ($1::uuid, $2, $3))"
    " SELECT pg_notify($4, '')";

void nrm_outbox_channel(const char *schema, char *buf, size_t size)
{
    snprintf(buf, size, "%s_outbox", schema);
}

nrm_status_t nrm_tx_emit(nrm_tx_t *tx, Nrm__V1__Event *ev)
{
    const char *topic = nrm_event_topic_of(ev->body_case);
    if (!topic)
        return nrm_fail(tx->err, NRM_INTERNAL, NULL, "event without a body");
    Nrm__V1__Event copy = *ev;
    char event_id[37];
    if (!copy.event_id || !copy.event_id[0]) {
        nrm_uuid_v4(event_id);
        copy.event_id = event_id;
    }
    copy.stream = (char *)tx->stream;
    copy.topic = (char *)topic;
    copy.seq = 0;
    if (copy.occurred_at_ms == 0)
        copy.occurred_at_ms = tx->now_ms;
    if ((!copy.causation_id || !copy.causation_id[0]) && tx->causation_id)
        copy.causation_id = (char *)tx->causation_id;
    size_t len = 0;
    uint8_t *payload = nrm_event_pack(&copy, &len);
    char channel[96];
    nrm_outbox_channel(nrm_db_schema(tx->db), channel, sizeof channel);
    nrm_db_statement(tx->db, "outbox_insert", s_insert_sql);
    nrm_params_t p = {0};
    nrm_params_text(&p, copy.event_id);
    nrm_params_text(&p, topic);
    nrm_params_bytes(&p, payload, len);
    nrm_params_text(&p, channel);
    nrm_status_t st = nrm_db_exec(tx->db, "outbox_insert", &p, NULL, tx->err);
    free(payload);
    if (st == NRM_OK)
        tx->emitted++;
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
