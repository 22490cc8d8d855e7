-- Statistics: categorical facts from every stream, nothing identifying. case_id is intake's
-- opaque id, kept only to join a case's later events (referrals, beds, plans); it is never
-- returned. month is 'YYYY-MM' and year 'YYYY' (UTC) of the event; unknown values are 'UNKNOWN'.

-- One row per case, from case.opened.
CREATE TABLE cases (
    case_id                 text    PRIMARY KEY,
    opened_ms               bigint  NOT NULL,
    month                   text    NOT NULL,
    year                    text    NOT NULL,
    region                  text    NOT NULL,
    gender                  text    NOT NULL,
    age_band                text    NOT NULL,  -- CTDC ageBroad: 0--8, 9--17, ..., 48+, unknown
    nationality             text    NOT NULL,
    agency_type             text    NOT NULL,  -- of the reporting agency
    minor                   text    NOT NULL,  -- 'true' / 'false'
    exploitation_types      text[]  NOT NULL,
    country_of_exploitation text    NOT NULL
);
CREATE INDEX cases_opened ON cases (opened_ms);

-- One row per referral (referral.created), its outcome moved by the later referral.* events;
-- a referral.unroutable is a row of its own ('unroutable:<seq>', outcome 'unroutable').
CREATE TABLE referrals (
    referral_id    text   PRIMARY KEY,
    case_id        text   NOT NULL,
    service        text   NOT NULL,
    created_ms     bigint NOT NULL,
    month          text   NOT NULL,
    year           text   NOT NULL,
    outcome        text   NOT NULL DEFAULT 'pending'
        CHECK (outcome IN ('pending', 'accepted', 'declined', 'expired', 'completed',
                           'not_delivered', 'revoked', 'unroutable')),
    accepted_ms    bigint,
    decline_reason text   NOT NULL DEFAULT 'NONE'
);
CREATE INDEX referrals_created ON referrals (created_ms);
CREATE INDEX referrals_case ON referrals (case_id);

-- Bed requests (routing's shelter.requested), allocations and waitlist places (shelter's).
CREATE TABLE bed_events (
    stream  text   NOT NULL,
    seq     bigint NOT NULL,
    case_id text   NOT NULL,
    kind    text   NOT NULL CHECK (kind IN ('requested', 'allocated', 'waitlisted')),
    at_ms   bigint NOT NULL,
    month   text   NOT NULL,
    year    text   NOT NULL,
    region  text   NOT NULL,
    PRIMARY KEY (stream, seq)
);
CREATE INDEX bed_events_case ON bed_events (case_id, kind, at_ms);

-- Where each shelter is (learnt from its allocations), and its occupancy over time
-- (shelter.capacity_changed).
CREATE TABLE shelters (
    shelter_id text PRIMARY KEY,
    region     text NOT NULL
);
CREATE TABLE occupancy (
    seq        bigint PRIMARY KEY,
    shelter_id text   NOT NULL,
    at_ms      bigint NOT NULL,
    month      text   NOT NULL,
    year       text   NOT NULL,
    capacity   int    NOT NULL,
    occupied   int    NOT NULL
);

-- Notification delivery health: counters per day, topic and outcome.
CREATE TABLE deliveries (
    day_ms   bigint NOT NULL,
    month    text   NOT NULL,
    year     text   NOT NULL,
    topic    text   NOT NULL,
    outcome  text   NOT NULL CHECK (outcome IN ('delivered', 'failed')),
    n        bigint NOT NULL,
    attempts bigint NOT NULL,
    PRIMARY KEY (day_ms, topic, outcome)
);

-- Reintegration plans and their outcomes.
CREATE TABLE plans (
    plan_id   text   PRIMARY KEY,
    case_id   text   NOT NULL,
    kind      text   NOT NULL,
    opened_ms bigint NOT NULL,
    month     text   NOT NULL,
    year      text   NOT NULL,
    outcome   text   NOT NULL DEFAULT 'OPEN',
    closed_ms bigint
);
