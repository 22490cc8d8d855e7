-- Deliveries by state, for the gauge `deliveries` (nrm_deliveries{state}). Counting the table at
-- every refresh (5 s) read every delivery ever made, on notify's only thread: a cost growing
-- without bound, since delivery rows are kept (only bodies expire). The counts are taken once
-- here, then kept from each statement's net change per state. The changes are appended
-- (delivery_count_changes), never updated in place, so that the consumer's and the sender's
-- transactions do not wait for each other on a counter row; the gauge's refresh folds them into
-- delivery_counts.
LOCK TABLE deliveries IN SHARE ROW EXCLUSIVE MODE; -- no delivery changes between count and triggers
CREATE TABLE delivery_counts (
    state text   PRIMARY KEY,
    n     bigint NOT NULL
);
INSERT INTO delivery_counts (state, n)
    SELECT s.state, (SELECT count(*) FROM deliveries d WHERE d.state = s.state)
      FROM unnest(ARRAY['pending', 'delivered', 'failed', 'undeliverable']) AS s(state);

CREATE TABLE delivery_count_changes (
    state text   NOT NULL,
    n     bigint NOT NULL
);

-- Appends the net change per state of the rows of new_rows (added) and old_rows (taken away);
-- each trigger passes the transition tables its event has.
CREATE FUNCTION deliveries_count_apply() RETURNS trigger LANGUAGE plpgsql
    SET search_path FROM CURRENT AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO delivery_count_changes (state, n)
        SELECT state, count(*) FROM new_rows GROUP BY state;
    ELSIF TG_OP = 'UPDATE' THEN
        INSERT INTO delivery_count_changes (state, n)
        SELECT state, sum(d) FROM (
            SELECT state, 1 AS d FROM new_rows
            UNION ALL SELECT state, -1 FROM old_rows) c
        GROUP BY state HAVING sum(d) <> 0;
    ELSE
        INSERT INTO delivery_count_changes (state, n)
        SELECT state, -count(*) FROM old_rows GROUP BY state;
    END IF;
    RETURN NULL;
END
$$;
CREATE TRIGGER deliveries_count_insert AFTER INSERT ON deliveries
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION deliveries_count_apply();
CREATE TRIGGER deliveries_count_update AFTER UPDATE ON deliveries
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION deliveries_count_apply();
CREATE TRIGGER deliveries_count_delete AFTER DELETE ON deliveries
    REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION deliveries_count_apply();

-- Emptying deliveries (a restore, a test starting afresh) empties the counts with it.
CREATE FUNCTION deliveries_counts_reset() RETURNS trigger LANGUAGE plpgsql
    SET search_path FROM CURRENT AS $$
BEGIN
    DELETE FROM delivery_count_changes;
    UPDATE delivery_counts SET n = 0 WHERE n <> 0;
    RETURN NULL;
END
$$;
CREATE TRIGGER deliveries_counts_reset AFTER TRUNCATE ON deliveries
    FOR EACH STATEMENT EXECUTE FUNCTION deliveries_counts_reset();
