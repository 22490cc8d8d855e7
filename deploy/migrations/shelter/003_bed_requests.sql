-- The last request for a bed of each case, with the categorical facts allocation needs (never
-- identifying data), so that a case whose request ended without a bed (a no_show) can ask again
-- with RequestBed. Written by every shelter.requested and every RequestBed. withdrawn: routing
-- withdrew the request because the person withdrew consent to referral (shelter.request_withdrawn);
-- RequestBed is then refused until a new shelter.requested comes. Cases requested before this
-- migration are known through their waitlist entries only (a case allocated at once before it
-- has no row: RequestBed answers NOT_FOUND, and routing's next shelter.requested fills it in).
CREATE TABLE bed_requests (
    case_id          text        PRIMARY KEY,
    request_event_id uuid        NOT NULL,  -- the shelter.requested, or a new id per RequestBed
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
    withdrawn        boolean     NOT NULL DEFAULT false,
    updated_at       timestamptz NOT NULL DEFAULT now()
);

INSERT INTO bed_requests (case_id, request_event_id, region, urgency, safety_risk, is_minor,
                          age_years, gender, languages, disability, children, beds,
                          requested_at_ms)
SELECT DISTINCT ON (case_id) case_id, request_event_id, region, urgency, safety_risk, is_minor,
       age_years, gender, languages, disability, children, beds, requested_at_ms
  FROM waitlist ORDER BY case_id, entry_id DESC;
