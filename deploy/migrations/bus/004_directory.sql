-- The agency directory managed at run time (common/nrm_directory.c). Intake, the registrar,
-- writes it on UpsertAgency and publishes directory.agency_upserted; every other service writes
-- its own copy from those events (checkpoint "intake/directory" in checkpoints). Each process
-- rebuilds its key table and agency lookups from here at start and whenever the table changes
-- (revisions only grow, so the sum of revisions changes with every committed write).
CREATE SEQUENCE directory_revision;

CREATE TABLE directory_agencies (
    agency_id   text        PRIMARY KEY,
    type        text        NOT NULL,           -- AgencyType name without prefix ("NGO")
    public_keys text[]      NOT NULL DEFAULT '{}',
    active      boolean     NOT NULL,
    name        text        NOT NULL DEFAULT '',
    revision    bigint      NOT NULL,           -- intake's count of writes of this entry
    local_rev   bigint      NOT NULL DEFAULT nextval('directory_revision'),
    updated_at  timestamptz NOT NULL DEFAULT now()
);
