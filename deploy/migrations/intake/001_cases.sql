-- Cases, their reports and the agencies that reported them.

-- One case per presumed victim. Only categorical data lives here in clear; identifying data
-- is in reports, sealed. identity_hash is a keyed hash of the normalised identity (NULL when
-- the report carried too little to match on), unique among open cases so that concurrent
-- reports of one person link to one case.
CREATE TABLE cases (
    case_id                 text        PRIMARY KEY,
    identity_hash           text,
    status                  text        NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'closed')),
    region                  text        NOT NULL,
    reporting_agency_id     text        NOT NULL,
    is_minor                boolean     NOT NULL,
    profile                 bytea       NOT NULL,  -- serialized nrm.v1.Profile
    exploitation_types      int[]       NOT NULL DEFAULT '{}',
    country_of_exploitation text        NOT NULL DEFAULT '',
    needs                   int[]       NOT NULL DEFAULT '{}',
    urgency                 int         NOT NULL,
    safety_risk             int         NOT NULL,
    consent_to_referral     boolean     NOT NULL,
    consent_to_data_sharing boolean     NOT NULL,
    close_reason            text,
    opened_at               timestamptz NOT NULL DEFAULT now(),
    updated_at              timestamptz NOT NULL DEFAULT now(),
    closed_at               timestamptz
);
CREATE UNIQUE INDEX cases_open_identity ON cases (identity_hash)
    WHERE status = 'open' AND identity_hash IS NOT NULL;

-- Every report received, linked or not. person and notes are sealed (AEAD) under key_id,
-- bound to the case id.
CREATE TABLE reports (
    report_id           bigserial   PRIMARY KEY,
    case_id             text        NOT NULL REFERENCES cases (case_id),
    request_id          uuid        NOT NULL UNIQUE,
    reporting_agency_id text        NOT NULL,
    region              text        NOT NULL,
    identified_at       timestamptz NOT NULL,
    linked              boolean     NOT NULL,
    key_id              int         NOT NULL,
    person_sealed       bytea       NOT NULL,
    notes_sealed        bytea       NOT NULL,
    received_at         timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX reports_case ON reports (case_id);

-- The agencies concerned with a case as reporters: they may update it and hear its outcomes.
CREATE TABLE case_agencies (
    case_id   text NOT NULL REFERENCES cases (case_id),
    agency_id text NOT NULL,
    PRIMARY KEY (case_id, agency_id)
);
