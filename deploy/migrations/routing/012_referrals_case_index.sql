-- referrals_case (case_id) duplicated the unique (case_id, service, attempt), which serves every
-- read by case as well: one index fewer to write for every referral made.
DROP INDEX IF EXISTS referrals_case;
