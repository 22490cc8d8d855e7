-- Transactions number their own events (nrm_outbox.c): the last statement before COMMIT gives
-- the rows the transaction wrote their dense seq under stream_head's row lock, which it holds
-- until it has committed. xact tells a transaction's rows from the others' (the top
-- transaction's id, so rows written under a savepoint count too). Rows of earlier versions,
-- written unnumbered, are still numbered by the sequencer. The default is set after the column
-- is added, so existing rows keep NULL and the table is not rewritten.
ALTER TABLE outbox ADD COLUMN xact xid8;
ALTER TABLE outbox ALTER COLUMN xact SET DEFAULT pg_current_xact_id();
