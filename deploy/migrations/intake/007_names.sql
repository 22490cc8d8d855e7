-- Names that match as people write them (issue 12, section 4).

-- The versions of the linking hash's input the stored hashes were computed with: intake's
-- start job re-hashes every non-erased case once per new version, under an advisory lock, and
-- records it here in the same transaction.
CREATE TABLE name_versions (
    version    int         PRIMARY KEY,
    applied_at timestamptz NOT NULL DEFAULT now(),
    cases      int         NOT NULL DEFAULT 0  -- cases re-hashed
);

-- A keyed hash of the date of birth and nationality (NULL unless both are known): the open
-- cases of a new case's block are compared with it on their decrypted names.
ALTER TABLE cases ADD COLUMN blocking_hash text;
CREATE INDEX cases_open_blocking ON cases (blocking_hash)
    WHERE status = 'open' AND blocking_hash IS NOT NULL;

-- Possible duplicates: case_id (the newer) may be other_case_id (the older). Proposed once per
-- pair; the coordinator confirms (the newer is closed as duplicate) or dismisses.
CREATE TABLE duplicate_pairs (
    case_id       text             NOT NULL REFERENCES cases (case_id),
    other_case_id text             NOT NULL REFERENCES cases (case_id),
    score         double precision NOT NULL,
    state         text             NOT NULL DEFAULT 'proposed'
                                   CHECK (state IN ('proposed', 'confirmed', 'dismissed')),
    proposed_at   timestamptz      NOT NULL DEFAULT now(),
    resolved_at   timestamptz,
    resolved_by   text,
    PRIMARY KEY (case_id, other_case_id)
);
