-- Who stands in which relation to a case, for the reads routing answers (ListReferrals): the
-- case manager and the reporting agencies, from intake's case.opened, case.linked and
-- case.manager_changed. manager_seq is the intake sequence the case manager was set at, so
-- that a replay never puts back an earlier manager. Cases routed before this migration have
-- no known manager or reporters (they are seen by the coordinator and their providers only).
ALTER TABLE cases ADD COLUMN case_manager text NOT NULL DEFAULT '';
ALTER TABLE cases ADD COLUMN manager_seq bigint NOT NULL DEFAULT 0;
CREATE INDEX cases_manager ON cases (case_manager);

CREATE TABLE case_reporters (
    case_id   text NOT NULL REFERENCES cases (case_id),
    agency_id text NOT NULL,
    PRIMARY KEY (case_id, agency_id)
);
CREATE INDEX case_reporters_agency ON case_reporters (agency_id);

-- Inbox paging walks referrals in creation order.
CREATE INDEX referrals_page ON referrals (created_ms, referral_id);
CREATE INDEX referrals_provider_page ON referrals (provider_id, created_ms, referral_id);
