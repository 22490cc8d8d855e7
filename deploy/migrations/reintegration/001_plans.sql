-- Reintegration: plans, their goals and milestones, the return, and the follow-ups.
-- No free text and nothing identifying: ids, codes, dates, scores.

-- What reintegration knows of a case, from intake's stream: who manages it, the person's
-- nationality (for the "no return plan for a national" rule) and consent to referral.
CREATE TABLE cases (
    case_id           text    PRIMARY KEY,
    manager_agency_id text    NOT NULL,
    nationality       text    NOT NULL DEFAULT '',  -- ISO 3166-1 alpha-2, '' unknown
    region            text    NOT NULL DEFAULT '',
    consent           boolean NOT NULL DEFAULT true,
    open              boolean NOT NULL DEFAULT true,
    last_seq          bigint  NOT NULL DEFAULT 0  -- intake's sequence of the last event applied
);

-- Referrals to REINTEGRATION or RETURN_ASSISTANCE, from referral.created; the acceptance of
-- one opens a plan.
CREATE TABLE referrals (
    referral_id        text PRIMARY KEY,
    case_id            text NOT NULL,
    service            int  NOT NULL,  -- nrm.v1.ServiceType
    provider_agency_id text NOT NULL
);

-- A plan is open, suspended (consent withdrawn: its follow-ups' clock stops) or closed. A case
-- has at most one live plan of each kind, and a referral opens at most one plan.
CREATE TABLE plans (
    plan_id             text    PRIMARY KEY,
    case_id             text    NOT NULL,
    kind                int     NOT NULL CHECK (kind IN (1, 2)),  -- nrm.v1.PlanKind
    state               text    NOT NULL DEFAULT 'open'
                                CHECK (state IN ('open', 'suspended', 'closed')),
    manager_agency_id   text    NOT NULL,
    referral_id         text    UNIQUE,
    opened_ms           bigint  NOT NULL,
    suspended_ms        bigint,
    closed_ms           bigint,
    outcome             int     NOT NULL DEFAULT 0,  -- nrm.v1.PlanOutcome
    close_reason        text    NOT NULL DEFAULT '',
    country_of_return   text    NOT NULL DEFAULT '',
    travel_documents    boolean NOT NULL DEFAULT false,
    departure_ms        bigint  NOT NULL DEFAULT 0,
    departure_confirmed boolean NOT NULL DEFAULT false,
    reception_partner   text    NOT NULL DEFAULT '',
    arrival_confirmed   boolean NOT NULL DEFAULT false,
    CONSTRAINT plans_closed_has_outcome CHECK ((state = 'closed') = (closed_ms IS NOT NULL))
);
CREATE UNIQUE INDEX plans_one_live_per_kind ON plans (case_id, kind) WHERE state <> 'closed';
CREATE INDEX plans_case ON plans (case_id);
CREATE INDEX plans_manager ON plans (manager_agency_id, plan_id);

CREATE TABLE goals (
    goal_id  text PRIMARY KEY,
    plan_id  text NOT NULL REFERENCES plans (plan_id),
    domain   int  NOT NULL CHECK (domain BETWEEN 1 AND 10),  -- nrm.v1.GoalDomain
    position int  NOT NULL
);
CREATE INDEX goals_plan ON goals (plan_id, position);

CREATE TABLE milestones (
    goal_id        text   NOT NULL REFERENCES goals (goal_id),
    position       int    NOT NULL,
    due_ms         bigint NOT NULL,
    state          int    NOT NULL CHECK (state BETWEEN 1 AND 4),  -- nrm.v1.MilestoneState
    abandon_reason text   NOT NULL DEFAULT '',
    PRIMARY KEY (goal_id, position),
    CONSTRAINT milestones_abandoned_reason CHECK ((state = 4) = (abandon_reason <> ''))
);

-- Follow-ups, scheduled when the plan opens. scheduled -> due (reintegration.followup_due)
-- -> overdue (reintegration.followup_overdue) at window_end_ms; recorded from any of them;
-- cancelled when the plan closes. Each move is a conditional UPDATE, so each event is
-- published once whatever the number of instances.
CREATE TABLE followups (
    plan_id            text    NOT NULL REFERENCES plans (plan_id),
    number             int     NOT NULL CHECK (number > 0),
    due_ms             bigint  NOT NULL,
    window_end_ms      bigint  NOT NULL CHECK (window_end_ms >= due_ms),
    state              text    NOT NULL DEFAULT 'scheduled'
                               CHECK (state IN ('scheduled', 'due', 'overdue', 'recorded',
                                                'cancelled')),
    contact_made       boolean NOT NULL DEFAULT false,
    economic           int     NOT NULL DEFAULT 0 CHECK (economic BETWEEN 0 AND 5),
    social             int     NOT NULL DEFAULT 0 CHECK (social BETWEEN 0 AND 5),
    psychosocial       int     NOT NULL DEFAULT 0 CHECK (psychosocial BETWEEN 0 AND 5),
    safe_housing       boolean NOT NULL DEFAULT false,
    income             boolean NOT NULL DEFAULT false,
    retrafficking_risk boolean NOT NULL DEFAULT false,
    recorded_ms        bigint  NOT NULL DEFAULT 0,
    recorded_by        text    NOT NULL DEFAULT '',
    PRIMARY KEY (plan_id, number)
);
-- The scan takes them in the order of these indexes, so that a batch reads only its own rows
-- however many are due at once (ordering by due_ms alone would sort the whole backlog).
CREATE INDEX followups_scheduled ON followups (due_ms, plan_id, number) WHERE state = 'scheduled';
CREATE INDEX followups_due ON followups (window_end_ms, plan_id, number) WHERE state = 'due';
