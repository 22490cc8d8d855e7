-- Crypto-shredding: each case's identifying data (the reports' person and notes) is sealed under
-- a data key of its own, kept here wrapped (sealed) by the keyring key key_id. Erasing the
-- identity deletes this row (and the case's identity hash): the sealed bytes stay and can no
-- longer be opened by anyone. Rotating the keyring re-wraps these keys, not the data.
CREATE TABLE case_keys (
    case_id     text        PRIMARY KEY REFERENCES cases (case_id),
    key_id      int         NOT NULL,
    wrapped_key bytea       NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    wrapped_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX case_keys_by_key ON case_keys (key_id);

-- How a report is sealed: 'keyring' (directly under the keyring key key_id, as before this
-- migration) or 'case_key' (under the case's data key; key_id is then 0). The start job moves
-- 'keyring' rows to 'case_key', batch by batch; readers open both.
ALTER TABLE reports ADD COLUMN sealed_under text NOT NULL DEFAULT 'keyring'
    CHECK (sealed_under IN ('keyring', 'case_key'));
CREATE INDEX reports_sealed_under_keyring ON reports (report_id) WHERE sealed_under = 'keyring';

-- Erasure: when and why the identity was erased (the categorical record stays).
ALTER TABLE cases ADD COLUMN identity_erased_at timestamptz;
ALTER TABLE cases ADD COLUMN erase_reason text
    CHECK (erase_reason IN ('subject_request', 'retention', 'recorded_in_error'));
-- retention: closed cases whose identity is still there, oldest first
CREATE INDEX cases_closed_not_erased ON cases (closed_at)
    WHERE status = 'closed' AND identity_erased_at IS NULL;
