-- A service can have two consumers of one stream: its own and the directory's (checkpoint
-- intake/directory, nrm_service.c). consumer names the consumer that set the event aside by its
-- checkpoint row (the stream it consumes, or intake/directory) instead of the service's own
-- stream, which both shared, so that RetryQuarantined replays the event through the consumer
-- that failed on it; each consumer keeps its own row of an event. A row set aside before names
-- the service: its consumer is the directory's for a directory event of intake, else the
-- consumer of its stream.
UPDATE consumer_quarantine
   SET consumer = CASE WHEN stream = 'intake' AND topic LIKE 'directory.%'
                       THEN 'intake/directory' ELSE stream END;
ALTER TABLE consumer_quarantine DROP CONSTRAINT IF EXISTS consumer_quarantine_stream_seq_key;
ALTER TABLE consumer_quarantine ADD CONSTRAINT consumer_quarantine_consumer_stream_seq_key
    UNIQUE (consumer, stream, seq);
