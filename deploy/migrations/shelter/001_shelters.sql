-- Shelters, the beds allocated in them, and the waitlist of requests no bed could take yet.

-- One row per shelter. occupied counts beds of confirmed arrivals, held counts beds reserved
-- for people on their way. The database itself refuses to overbook: every allocation is a
-- conditional UPDATE of this row, and the CHECK below holds for every committed state, so any
-- number of service instances on one database stay correct. Capacity cannot be lowered below
-- the beds in use (the service refuses it with FAILED_PRECONDITION; the CHECK backs it up): to
-- wind a shelter down, make it inactive and lower the capacity as people leave.
CREATE TABLE shelters (
    shelter_id         text        PRIMARY KEY,
    name               text        NOT NULL,
    operator_agency_id text        NOT NULL,
    region             text        NOT NULL,
    capacity           int         NOT NULL CHECK (capacity >= 0),
    population         int         NOT NULL,  -- nrm.v1.ShelterPopulation
    min_age            int         NOT NULL CHECK (min_age >= 0),
    max_age            int         NOT NULL CHECK (max_age >= min_age),
    accepts_children   boolean     NOT NULL,
    accessible         boolean     NOT NULL,
    languages          text[]      NOT NULL DEFAULT '{}',  -- ISO 639-1
    active             boolean     NOT NULL,
    occupied           int         NOT NULL DEFAULT 0 CHECK (occupied >= 0),
    held               int         NOT NULL DEFAULT 0 CHECK (held >= 0),
    seeded             boolean     NOT NULL DEFAULT false,  -- created from the configuration
    created_at         timestamptz NOT NULL DEFAULT now(),
    updated_at         timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT shelters_never_overbooked CHECK (occupied + held <= capacity)
);
CREATE INDEX shelters_region ON shelters (region);

-- Beds given to a case: held until hold_until_ms, occupied once the arrival is confirmed,
-- released when the person leaves, does not come, or the case closes. One request gets at
-- most one allocation (request_event_id), and a case holds at most one live allocation.
CREATE TABLE allocations (
    allocation_id    text        PRIMARY KEY,
    case_id          text        NOT NULL,
    shelter_id       text        NOT NULL REFERENCES shelters (shelter_id),
    beds             int         NOT NULL CHECK (beds > 0),
    state            text        NOT NULL CHECK (state IN ('held', 'occupied', 'released')),
    hold_until_ms    bigint      NOT NULL,
    reason           text        NOT NULL,  -- why this shelter: the choice, explained
    request_event_id uuid        NOT NULL UNIQUE,
    release_reason   text,
    created_at       timestamptz NOT NULL DEFAULT now(),
    confirmed_at     timestamptz,
    released_at      timestamptz
);
CREATE UNIQUE INDEX allocations_live_case ON allocations (case_id) WHERE state <> 'released';
CREATE INDEX allocations_holds ON allocations (hold_until_ms) WHERE state = 'held';
CREATE INDEX allocations_shelter ON allocations (shelter_id) WHERE state <> 'released';

-- Requests waiting for a bed, with the categorical facts eligibility needs (never identifying
-- data). Served in order of urgency (highest first), then time of the request. A served entry
-- leads to the allocation with the same request_event_id.
CREATE TABLE waitlist (
    entry_id         bigserial   PRIMARY KEY,
    case_id          text        NOT NULL,
    request_event_id uuid        NOT NULL UNIQUE,
    state            text        NOT NULL DEFAULT 'waiting'
                                 CHECK (state IN ('waiting', 'allocated', 'cancelled')),
    region           text        NOT NULL,  -- of identification
    urgency          int         NOT NULL,
    safety_risk      int         NOT NULL,
    is_minor         boolean     NOT NULL,
    age_years        int,                   -- NULL when unknown
    gender           int         NOT NULL,
    languages        text[]      NOT NULL DEFAULT '{}',
    disability       boolean     NOT NULL,
    children         int         NOT NULL,
    beds             int         NOT NULL CHECK (beds > 0),
    requested_at_ms  bigint      NOT NULL,
    reason           text        NOT NULL,  -- why no bed: none eligible, or all full
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX waitlist_waiting_case ON waitlist (case_id) WHERE state = 'waiting';
CREATE INDEX waitlist_queue ON waitlist (urgency DESC, requested_at_ms, entry_id)
    WHERE state = 'waiting';

-- Cases known to be closed (from case.closed): a late shelter request for one is ignored.
CREATE TABLE closed_cases (
    case_id   text        PRIMARY KEY,
    closed_at timestamptz NOT NULL DEFAULT now()
);
