-- Events of another stream that this service's consumer failed to apply consumer.max_attempts
-- times (nrm_consumer.c): set aside here, in the transaction that moves the checkpoint past
-- them, so that the stream behind them goes on. ListQuarantine shows them, RetryQuarantined
-- applies one again (and deletes its row). payload is the event as published (events carry no
-- identifying data); last_error is a status and a database condition, never a value.
CREATE TABLE consumer_quarantine (
    id bigserial PRIMARY KEY,
    consumer text NOT NULL,
    stream text NOT NULL,
    seq bigint NOT NULL,
    topic text NOT NULL,
    event_id text NOT NULL,
    attempts integer NOT NULL,
    last_error text NOT NULL,
    payload bytea NOT NULL,
    quarantined_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (stream, seq)
);
