-- A consumer's batch moves its checkpoint row from the value it knew to its last event's seq,
-- in the round trip of its COMMIT. A batch applied before the row was locked (nrm_consumer.c:
-- the steady state of the one-row layout) learns here that another instance moved the row
-- meanwhile: the call fails with serialization_failure, the transaction rolls back, and the
-- consumer applies the batch again with the row locked first.
CREATE FUNCTION checkpoint_advance(p_stream text, p_from bigint, p_to bigint) RETURNS void
    LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
BEGIN
    UPDATE checkpoints SET seq = p_to, updated_at = now()
     WHERE stream = p_stream AND seq = p_from;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'checkpoint % is no longer at %', p_stream, p_from
            USING ERRCODE = 'serialization_failure';
    END IF;
END
$$;
