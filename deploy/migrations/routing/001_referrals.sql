-- Routing's copy of the cases it routes, the services decided for each, and the referrals.
-- Nothing here identifies a person: case ids are pseudonymous and the profile is categorical.

-- What routing routes on, taken from intake's case.* events (the only way it crosses
-- services). last_seq is the intake sequence of the last event applied to the case: an event
-- not newer than it is a replay and changes nothing.
CREATE TABLE cases (
    case_id             text        PRIMARY KEY,
    status              text        NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'closed')),
    region              text        NOT NULL,
    is_minor            boolean     NOT NULL,
    profile             bytea       NOT NULL,  -- serialized nrm.v1.Profile (categorical)
    exploitation_types  int[]       NOT NULL DEFAULT '{}',
    needs               int[]       NOT NULL DEFAULT '{}',
    urgency             int         NOT NULL,
    safety_risk         int         NOT NULL,
    consent_to_referral boolean     NOT NULL,
    last_seq            bigint      NOT NULL,
    opened_at           timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now()
);

-- The decision about each service a case gets: which rule, why, and where it stands.
--   awaiting_consent   decided, waits for the person's consent to referral
--   referred           a referral is open or being answered (see referrals)
--   shelter_requested  shelter.requested was published (the shelter service allocates)
--   unroutable         nobody was left: the coordinator was told
--   completed          the referral ended with an outcome
--   not_referred       a stated need a policy rule refuses (re-examined when the case changes)
--   closed             the case closed before the service was delivered
CREATE TABLE case_services (
    case_id    text        NOT NULL REFERENCES cases (case_id),
    service    int         NOT NULL,
    state      text        NOT NULL CHECK (state IN ('awaiting_consent', 'referred',
                           'shelter_requested', 'unroutable', 'completed', 'not_referred',
                           'closed')),
    mandatory  boolean     NOT NULL,
    rule_id    text        NOT NULL,
    reason     text        NOT NULL,
    decided_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (case_id, service)
);

-- One row per attempt to refer a service of a case to a provider. (case_id, service, attempt)
-- is unique, so a replayed event can never create a second referral; at most one referral per
-- case and service is open (pending or accepted) at a time. Deadlines and answer times are in
-- milliseconds since the epoch, from the service's clock.
CREATE TABLE referrals (
    referral_id       text        PRIMARY KEY,
    case_id           text        NOT NULL REFERENCES cases (case_id),
    service           int         NOT NULL,
    attempt           int         NOT NULL CHECK (attempt >= 1),
    provider_id       text        NOT NULL,
    urgency           int         NOT NULL,
    rule_id           text        NOT NULL,
    reason            text        NOT NULL,
    causation_id      text        NOT NULL,  -- the event or request that caused it
    state             text        NOT NULL DEFAULT 'pending' CHECK (state IN ('pending',
                      'accepted', 'declined', 'expired', 'completed', 'revoked')),
    created_ms        bigint      NOT NULL,
    due_ms            bigint      NOT NULL,
    answered_ms       bigint,
    decline_reason    int,
    ended_ms          bigint,
    service_delivered boolean,
    outcome_reason    text,       -- a short code, never free text
    revoke_reason     text,
    UNIQUE (case_id, service, attempt)
);
CREATE UNIQUE INDEX referrals_one_open ON referrals (case_id, service)
    WHERE state IN ('pending', 'accepted');
CREATE INDEX referrals_due ON referrals (due_ms) WHERE state = 'pending';
CREATE INDEX referrals_provider_open ON referrals (provider_id)
    WHERE state IN ('pending', 'accepted');
CREATE INDEX referrals_case ON referrals (case_id);
