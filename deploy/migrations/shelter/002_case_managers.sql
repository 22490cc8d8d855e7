-- The case manager of each case, from intake's case.opened and case.manager_changed, so that a
-- case manager can list the allocations of its cases (ListAllocations). manager_seq is the
-- intake sequence the manager was set at: a replay never puts back an earlier one. Cases opened
-- before this migration have no known manager here (the coordinator and operators still see
-- their allocations).
CREATE TABLE case_managers (
    case_id     text   PRIMARY KEY,
    agency_id   text   NOT NULL,
    manager_seq bigint NOT NULL
);
CREATE INDEX case_managers_agency ON case_managers (agency_id);
