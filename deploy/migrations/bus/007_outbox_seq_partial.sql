-- The unique index on seq covers numbered rows only. A row is inserted with seq NULL, and a
-- full index took an entry for it there (NULLs are indexed) that the numbering, a non-HOT
-- update, left dead beside the entry of the numbered row: one index entry per event written for
-- nothing. Every reader asks for seq > n or seq >= n (common/nrm_publisher.c, nrm_service.c),
-- which implies seq IS NOT NULL, so they read this index as they read the full one; max(seq)
-- does too. Uniqueness of the numbers given is unchanged.
CREATE UNIQUE INDEX IF NOT EXISTS outbox_seq ON outbox (seq) WHERE seq IS NOT NULL;
ALTER TABLE outbox DROP CONSTRAINT IF EXISTS outbox_seq_key;
