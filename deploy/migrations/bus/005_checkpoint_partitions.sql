-- Partitioned consumption (nrm_consumer.c, consumer.partitions): a consumer of a stream may
-- split it into `partitions` partitions by a stable hash of each event's case_id, so that
-- several instances apply different cases of the same stream in parallel. Each partition has its
-- own row here: seq is the last sequence up to which every event of that partition is applied
-- (written in the same transaction as the effects). The stream's own row in checkpoints keeps
-- meaning "every event up to seq is applied": it is moved to min(seq) of these rows. Events with
-- no case_id are barriers: applied in a transaction that holds every row of the stream.
CREATE TABLE checkpoint_partitions (
    stream     text        NOT NULL,
    part       integer     NOT NULL,
    partitions integer     NOT NULL,  -- the layout the rows were made for
    seq        bigint      NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (stream, part)
);
