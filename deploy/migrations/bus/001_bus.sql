-- The bus tables every service schema carries (the search_path is the service's schema).

-- The service's event log. A row is written in the same transaction as the change it
-- describes, with seq NULL; the sequencer then gives committed rows a dense seq (1, 2, 3, ...)
-- in the order it sees them, under a lock on stream_head, so a reader that resumes at
-- seq > n never skips an event that committed late.
CREATE TABLE outbox (
    id           bigserial PRIMARY KEY,
    event_id     uuid        NOT NULL UNIQUE,
    topic        text        NOT NULL,
    payload      bytea       NOT NULL,  -- serialized nrm.v1.Event with seq 0
    seq          bigint      UNIQUE,
    created_at   timestamptz NOT NULL DEFAULT now(),
    sequenced_at timestamptz
);
CREATE INDEX outbox_unsequenced ON outbox (id) WHERE seq IS NULL;

-- The last sequence given; its row lock serialises sequencers.
CREATE TABLE stream_head (
    singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    head      bigint  NOT NULL
);
INSERT INTO stream_head VALUES (true, 0);

-- Stored replies: a repeated request_id gets the same reply and changes nothing.
CREATE TABLE requests (
    request_id   uuid        PRIMARY KEY,
    agency_id    text        NOT NULL,
    request_hash bytea       NOT NULL,
    reply        bytea       NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now()
);

-- How far this service has applied each stream it consumes, written in the same
-- transaction as the effects.
CREATE TABLE checkpoints (
    stream     text        PRIMARY KEY,
    seq        bigint      NOT NULL DEFAULT 0,
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- audit_log, the append-only audit of every request, is not created here: deploy/db-init.sh
-- creates it (and its append-only trigger) owned by the role nrm_audit_owner, so that the
-- service's role, which runs these migrations, may only insert into it. Databases migrated before
-- that have it from this file, owned by the service's role; db-init.sh moves it.
