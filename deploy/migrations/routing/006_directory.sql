-- Issue 12: the provider directory and partnership agreements kept here, changed at run time by
-- the coordinator (UpsertProvider, UpsertAgreement) and seeded from the configuration; needs
-- nobody can take now wait (state 'waiting') until a place frees.

-- One row per provider. spec is the serialized nrm.v1.UpsertProvider in force; config_spec the
-- configuration's entry as last seeded (NULL when the configuration does not list it): a
-- configuration entry that changes is applied, one that does not leaves run-time changes be.
-- open_count is kept by the trigger below (pending or accepted referrals to the provider).
CREATE TABLE providers (
    provider_id text   PRIMARY KEY,
    spec        bytea  NOT NULL,
    config_spec bytea,
    active      boolean NOT NULL,
    max_open    int    NOT NULL CHECK (max_open >= 1),
    open_count  int    NOT NULL DEFAULT 0,
    updated_ms  bigint NOT NULL
);

-- Every routing instance reloads its copy of the directory when version moves.
CREATE TABLE directory_version (
    one     boolean PRIMARY KEY DEFAULT true CHECK (one),
    version bigint  NOT NULL
);
INSERT INTO directory_version VALUES (true, 0);

-- Partnership agreements: services and regions (none: every region) covered from start_date to
-- end_date inclusive (UTC days), at most capacity open referrals under it (open_count, kept by
-- the trigger). warned_end is the end date routing.agreement_ending was published for.
CREATE TABLE agreements (
    agreement_id text   PRIMARY KEY,
    provider_id  text   NOT NULL,
    services     int[]  NOT NULL,
    regions      text[] NOT NULL,
    capacity     int    NOT NULL CHECK (capacity >= 1),
    start_date   date   NOT NULL,
    end_date     date   NOT NULL CHECK (end_date >= start_date),
    open_count   int    NOT NULL DEFAULT 0,
    warned_end   date,
    updated_ms   bigint NOT NULL
);
CREATE INDEX agreements_provider ON agreements (provider_id, end_date);

-- The agreement a referral was made under (NULL: none asked for).
ALTER TABLE referrals ADD COLUMN agreement_id text;

-- Keeps providers.open_count and agreements.open_count as referrals open and end.
CREATE FUNCTION referrals_count_open() RETURNS trigger LANGUAGE plpgsql
    SET search_path FROM CURRENT AS $$
DECLARE
    was_open boolean := TG_OP = 'UPDATE' AND OLD.state IN ('pending', 'accepted');
    is_open  boolean := NEW.state IN ('pending', 'accepted');
BEGIN
    IF is_open AND NOT was_open THEN
        UPDATE providers SET open_count = open_count + 1 WHERE provider_id = NEW.provider_id;
        IF NEW.agreement_id IS NOT NULL THEN
            UPDATE agreements SET open_count = open_count + 1
             WHERE agreement_id = NEW.agreement_id;
        END IF;
    ELSIF was_open AND NOT is_open THEN
        UPDATE providers SET open_count = open_count - 1 WHERE provider_id = OLD.provider_id;
        IF OLD.agreement_id IS NOT NULL THEN
            UPDATE agreements SET open_count = open_count - 1
             WHERE agreement_id = OLD.agreement_id;
        END IF;
    END IF;
    RETURN NULL;
END
$$;
CREATE TRIGGER referrals_count_open AFTER INSERT OR UPDATE OF state ON referrals
    FOR EACH ROW EXECUTE FUNCTION referrals_count_open();
-- Emptying referrals (a restore, a test starting afresh) empties the counters with it.
CREATE FUNCTION referrals_counts_reset() RETURNS trigger LANGUAGE plpgsql
    SET search_path FROM CURRENT AS $$
BEGIN
    UPDATE providers SET open_count = 0 WHERE open_count <> 0;
    UPDATE agreements SET open_count = 0 WHERE open_count <> 0;
    RETURN NULL;
END
$$;
CREATE TRIGGER referrals_counts_reset AFTER TRUNCATE ON referrals
    FOR EACH STATEMENT EXECUTE FUNCTION referrals_counts_reset();

-- A need nobody can take waits (since waiting_since_ms) instead of staying unroutable; those
-- unroutable before this migration wait from now on.
ALTER TABLE case_services DROP CONSTRAINT case_services_state_check;
ALTER TABLE case_services ADD CONSTRAINT case_services_state_check CHECK (state IN (
    'awaiting_consent', 'referred', 'shelter_requested', 'unroutable', 'waiting', 'completed',
    'not_referred', 'closed'));
ALTER TABLE case_services ADD COLUMN waiting_since_ms bigint;
UPDATE case_services SET state = 'waiting',
    waiting_since_ms = (extract(epoch FROM updated_at) * 1000)::bigint
    WHERE state = 'unroutable';
CREATE INDEX case_services_waiting ON case_services (waiting_since_ms) WHERE state = 'waiting';
