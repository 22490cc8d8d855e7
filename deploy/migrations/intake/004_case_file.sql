-- The case file: who holds which referral (from routing's stream), and the indexes of ListCases.

-- One row per referral routing made, kept up to date from referral.* events (consumed exactly
-- once with the checkpoint). A provider may read the identity of the case while its referral is
-- 'accepted' (and the person consents to data sharing, or it is child protection for a minor).
CREATE TABLE referral_access (
    referral_id        text        PRIMARY KEY,
    case_id            text        NOT NULL,
    provider_agency_id text        NOT NULL,
    service            int         NOT NULL,
    state              text        NOT NULL
        CHECK (state IN ('pending', 'accepted', 'declined', 'expired', 'completed', 'revoked')),
    updated_at         timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX referral_access_by_case ON referral_access (case_id, provider_agency_id);

-- ListCases: newest first (a backward scan), by keyset (opened_at, case_id); a case manager's own.
CREATE INDEX cases_by_opening ON cases (opened_at, case_id);
CREATE INDEX cases_by_manager ON cases (case_manager_agency_id, opened_at, case_id);
