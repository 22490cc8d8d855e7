-- Subscriptions, the recipients' maps, the events to deliver and one row per delivery.
-- Times are milliseconds since the Unix epoch (the wire's *_ms), read from the service's clock.

-- Who wants to hear what, and where. topics are prefixes of event topics ("case.", "referral.")
-- an agency follows beyond the events that concern it; an empty list means "only what concerns
-- us". secret keys the webhook signature; it is never returned, logged or published.
-- origin 'config' rows are seeded from the configuration (and deactivated when removed from it);
-- 'api' rows come from UpsertSubscription.
CREATE TABLE subscriptions (
    subscription_id text        PRIMARY KEY,
    agency_id       text        NOT NULL,
    channel         text        NOT NULL CHECK (channel IN ('webhook', 'email')),
    address         text        NOT NULL,
    topics          text[]      NOT NULL DEFAULT '{}',
    secret          text        NOT NULL DEFAULT '',
    active          boolean     NOT NULL DEFAULT true,
    origin          text        NOT NULL CHECK (origin IN ('config', 'api')),
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX subscriptions_agency ON subscriptions (agency_id) WHERE active;

-- The reporting agencies of each case (case.opened, case.linked), from when they reported it:
-- an agency hears the outcomes of the case that occurred from since_ms on.
CREATE TABLE case_agencies (
    case_id   text   NOT NULL,
    agency_id text   NOT NULL,
    since_ms  bigint NOT NULL,
    PRIMARY KEY (case_id, agency_id)
);

-- The provider of each referral (referral.created), for the referral.* events that do not
-- name it (completed, revoked).
CREATE TABLE referrals (
    referral_id        text PRIMARY KEY,
    case_id            text NOT NULL,
    provider_agency_id text NOT NULL
);

-- The operator of each shelter allocation (shelter.allocated), for shelter.released.
CREATE TABLE allocations (
    allocation_id      text PRIMARY KEY,
    case_id            text NOT NULL,
    shelter_id         text NOT NULL,
    operator_agency_id text NOT NULL
);

-- The consumed events that have deliveries, or that are outcomes of a case (so that a reporting
-- agency learnt of late still hears them), as received: serialized nrm.v1.Event with its seq.
CREATE TABLE events (
    source_stream  text   NOT NULL,
    source_seq     bigint NOT NULL,
    event_id       text   NOT NULL,
    topic          text   NOT NULL,
    case_id        text   NOT NULL DEFAULT '',
    occurred_at_ms bigint NOT NULL,
    outcome        boolean NOT NULL DEFAULT false,
    payload        bytea  NOT NULL,
    PRIMARY KEY (source_stream, source_seq)
);
CREATE INDEX events_case_outcomes ON events (case_id, occurred_at_ms) WHERE outcome;

-- One delivery per (event, recipient agency, subscription): replays create nothing new.
-- subscription_id and channel are '' for an agency that has no subscription ('undeliverable').
-- A 'pending' row is due at next_attempt_ms; a sender claims it by moving next_attempt_ms past
-- its transfer (a lease: a sender that dies leaves it due again) and counting the attempt.
-- started_ms opens the window of max_age (reset by an operator's retry).
CREATE TABLE deliveries (
    delivery_id     uuid        PRIMARY KEY,
    source_stream   text        NOT NULL,
    source_seq      bigint      NOT NULL,
    agency_id       text        NOT NULL,
    channel         text        NOT NULL,
    subscription_id text        NOT NULL,
    topic           text        NOT NULL,
    case_id         text        NOT NULL DEFAULT '',
    event_id        text        NOT NULL,
    state           text        NOT NULL
                    CHECK (state IN ('pending', 'delivered', 'failed', 'undeliverable')),
    attempts        int         NOT NULL DEFAULT 0,
    started_ms      bigint      NOT NULL,
    next_attempt_ms bigint      NOT NULL DEFAULT 0,
    last_attempt_ms bigint      NOT NULL DEFAULT 0,
    claim_id        uuid,
    last_error      text        NOT NULL DEFAULT '',
    finished_ms     bigint      NOT NULL DEFAULT 0,
    retries         int         NOT NULL DEFAULT 0,
    created_at      timestamptz NOT NULL DEFAULT now(),
    UNIQUE (source_stream, source_seq, agency_id, channel, subscription_id)
);
CREATE INDEX deliveries_due ON deliveries (next_attempt_ms) WHERE state = 'pending';
CREATE INDEX deliveries_state ON deliveries (state, created_at);
