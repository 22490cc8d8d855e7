-- Webhook secrets sealed at rest with the keyring (crypto.keys_file, as intake's identities):
-- XChaCha20-Poly1305 under key secret_key_id, bound to the subscription id. A migration cannot
-- seal (the keys are not in the database): the service's start job seals the rows still in
-- clear and empties their secret column, which is never read in clear again. From here on no
-- row may be written with a clear secret (the constraint is NOT VALID so that the rows written
-- before it can still be converted; the start job's update satisfies it).
ALTER TABLE subscriptions
    ADD COLUMN secret_sealed bytea,
    ADD COLUMN secret_key_id integer,
    ADD CONSTRAINT subscriptions_secret_sealed_together
        CHECK ((secret_sealed IS NULL) = (secret_key_id IS NULL)),
    ADD CONSTRAINT subscriptions_secret_not_in_clear CHECK (secret = '') NOT VALID;
COMMENT ON COLUMN subscriptions.secret IS
    'no longer used: empty once the start job has sealed it into secret_sealed';
