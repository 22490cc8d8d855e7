-- A new case is compared with the first intake.names.max_candidates open cases of its block, in
-- the order they were opened. The block was read through an index of the hash alone, then
-- sorted: every open case of the block for each report, where a block can be large (a date of
-- birth recorded as the first of January of the year a person gives, and a common nationality).
-- Ordered like the read, the index gives the first candidates and stops.
CREATE INDEX cases_open_blocking_order ON cases (blocking_hash, opened_at, case_id)
    WHERE status = 'open' AND blocking_hash IS NOT NULL;
DROP INDEX cases_open_blocking;
