-- Identification (issue 15): the person's status as a competent authority decides it, and the
-- recovery and reflection period that runs from identification.

-- TraffickingStatus values: 1 presumed victim (from intake on), 2 identified, 3 not a victim.
ALTER TABLE cases ADD COLUMN trafficking_status int NOT NULL DEFAULT 1
    CHECK (trafficking_status BETWEEN 1 AND 3);

-- When the person was identified (identified_at of the report that opened the case): the
-- recovery and reflection period (intake.recovery_period_s) runs from here.
ALTER TABLE cases ADD COLUMN identified_at timestamptz;
UPDATE cases c SET identified_at = COALESCE(
    (SELECT min(r.identified_at) FROM reports r WHERE r.case_id = c.case_id), c.opened_at);
ALTER TABLE cases ALTER COLUMN identified_at SET NOT NULL;
ALTER TABLE cases ALTER COLUMN identified_at SET DEFAULT now();  -- set from the report at open
-- Set when case.recovery_period_ending was emitted: once per case, whichever instance does it.
ALTER TABLE cases ADD COLUMN recovery_reminded_at timestamptz;
CREATE INDEX cases_recovery_reminder_due ON cases (identified_at)
    WHERE status = 'open' AND recovery_reminded_at IS NULL;

-- Every status decision, in order: a revision is a new row, nothing is updated or deleted.
CREATE TABLE status_decisions (
    case_id          text        NOT NULL REFERENCES cases (case_id),
    decision         int         NOT NULL CHECK (decision >= 1),
    status           int         NOT NULL CHECK (status BETWEEN 1 AND 3),
    previous_status  int         NOT NULL,
    basis            text        NOT NULL,
    agency_id        text        NOT NULL,
    agency_type      text        NOT NULL,
    decided_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (case_id, decision)
);

CREATE FUNCTION status_decisions_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'status decisions are never changed or erased: a revision is a new decision';
END $$;
CREATE TRIGGER status_decisions_append_only BEFORE UPDATE OR DELETE OR TRUNCATE
    ON status_decisions FOR EACH STATEMENT EXECUTE FUNCTION status_decisions_append_only();
