-- Stored replies expire after the idempotency window (idempotency_window_s, nrm_service.c): the
-- timer that deletes them reads them oldest first.
CREATE INDEX requests_created ON requests (created_at);
