-- The number of waiting entries of each urgency, kept as the waitlist changes (statement-level
-- triggers over the changed rows), so that a new entry's place in the queue is read from a few
-- rows instead of counting the waitlist: the entries of higher or equal urgency, but for those
-- of equal urgency requested later (an index range, normally empty).
CREATE TABLE waitlist_ranks (
    urgency int    PRIMARY KEY,
    waiting bigint NOT NULL
);
INSERT INTO waitlist_ranks (urgency, waiting)
SELECT urgency, count(*) FROM waitlist WHERE state = 'waiting' GROUP BY urgency;

-- Adds the waiting rows of new_rows and subtracts those of old_rows (each trigger passes the
-- transition tables its event has).
CREATE FUNCTION waitlist_ranks_apply() RETURNS trigger LANGUAGE plpgsql
    SET search_path FROM CURRENT AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO waitlist_ranks AS r (urgency, waiting)
        SELECT urgency, count(*) FROM new_rows WHERE state = 'waiting' GROUP BY urgency
        ON CONFLICT (urgency) DO UPDATE SET waiting = r.waiting + EXCLUDED.waiting;
    ELSIF TG_OP = 'UPDATE' THEN
        INSERT INTO waitlist_ranks AS r (urgency, waiting)
        SELECT urgency, sum(d) FROM (
            SELECT urgency, 1 AS d FROM new_rows WHERE state = 'waiting'
            UNION ALL SELECT urgency, -1 FROM old_rows WHERE state = 'waiting') c
        GROUP BY urgency HAVING sum(d) <> 0
        ON CONFLICT (urgency) DO UPDATE SET waiting = r.waiting + EXCLUDED.waiting;
    ELSE
        INSERT INTO waitlist_ranks AS r (urgency, waiting)
        SELECT urgency, -count(*) FROM old_rows WHERE state = 'waiting' GROUP BY urgency
        ON CONFLICT (urgency) DO UPDATE SET waiting = r.waiting + EXCLUDED.waiting;
    END IF;
    RETURN NULL;
END
$$;
CREATE TRIGGER waitlist_ranks_insert AFTER INSERT ON waitlist REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION waitlist_ranks_apply();
CREATE TRIGGER waitlist_ranks_update AFTER UPDATE ON waitlist
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION waitlist_ranks_apply();
CREATE TRIGGER waitlist_ranks_delete AFTER DELETE ON waitlist REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION waitlist_ranks_apply();
-- Emptying the waitlist (a restore, a test starting afresh) empties the counts with it.
CREATE FUNCTION waitlist_ranks_reset() RETURNS trigger LANGUAGE plpgsql
    SET search_path FROM CURRENT AS $$
BEGIN
    DELETE FROM waitlist_ranks;
    RETURN NULL;
END
$$;
CREATE TRIGGER waitlist_ranks_truncate AFTER TRUNCATE ON waitlist
    FOR EACH STATEMENT EXECUTE FUNCTION waitlist_ranks_reset();
