-- Identification (issue 15): the data standard's case fields and the screening of a case.

-- The case fields of IOM's Human Trafficking Case Data Standard beyond the profile (means of
-- control, recruitment, labour sector, period of exploitation, countries of transit, relation
-- to the recruiter): categorical, serialized nrm.v1.TraffickingFacts (empty: nothing recorded).
ALTER TABLE cases ADD COLUMN facts bytea NOT NULL DEFAULT '\x';

-- The screening: the answers given to the checklist (an indicator answered again takes the new
-- answer), and the outcome computed from them with the checklist of the time.
CREATE TABLE screening_answers (
    case_id      text        NOT NULL REFERENCES cases (case_id),
    indicator_id text        NOT NULL,
    present      boolean     NOT NULL,
    answered_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (case_id, indicator_id)
);
-- ScreeningOutcome values: 1 not screened, 2 unlikely, 3 possible, 4 likely.
ALTER TABLE cases ADD COLUMN screening_outcome int NOT NULL DEFAULT 1
    CHECK (screening_outcome BETWEEN 1 AND 4);
ALTER TABLE cases ADD COLUMN screening_dimensions int[] NOT NULL DEFAULT '{}';
ALTER TABLE cases ADD COLUMN screening_version text NOT NULL DEFAULT '';
