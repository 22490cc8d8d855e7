-- Identification (issue 15): the screening outcome of each case (ScreeningOutcome value, from
-- case.opened and case.updated), for policy rules conditioned on it ("screening"). Cases known
-- before have none: 1, not screened.
ALTER TABLE cases ADD COLUMN screening int NOT NULL DEFAULT 1;
