-- "Was this provider tried for this need?" (routing_assign.c, the batch candidates' probe of
-- declined and expired referrals) in one index probe. Without it the generic plan could probe
-- referrals_provider_page and filter every referral the provider ever had (seen: 231 rows per
-- candidate after 2,000 reports, 1.97 ms per batch), a cost growing with each provider's
-- history. Partial: only declined and expired rows, the few the probe asks for.
CREATE INDEX referrals_tried ON referrals (case_id, service, provider_id)
    WHERE state IN ('declined', 'expired');
