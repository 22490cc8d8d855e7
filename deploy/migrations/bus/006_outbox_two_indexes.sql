-- The outbox keeps the two indexes that something reads: outbox_unsequenced (the sequencer
-- finds the rows to number by id, then updates them by ctid: common/nrm_publisher.c) and the
-- unique seq (the readers and replays). The primary key on id and the unique event_id (a v4 UUID
-- made for each event by common/nrm_outbox.c) were read by nothing, and each was written twice
-- for every event: at its insert and again at its numbering, which cannot be a HOT update since
-- seq is indexed. Without them an event writes 4 index entries instead of 8: 36 of the 248 WAL
-- records of a report in tools/bench/hops.sh (NRM_HOPS_WAL shows the WAL by relation).
ALTER TABLE outbox DROP CONSTRAINT IF EXISTS outbox_event_id_key;
ALTER TABLE outbox DROP CONSTRAINT IF EXISTS outbox_pkey;
