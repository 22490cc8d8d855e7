-- Case roles: one case-managing agency per case (the agency of the first report; a coordinator
-- may hand the case to another with ReassignCase); the reporters stay in case_agencies, and a
-- linked report makes its agency a reporter with no power over the case.

ALTER TABLE cases ADD COLUMN case_manager_agency_id text;
-- existing cases: the agency of the earliest report (the one that opened the case)
UPDATE cases c SET case_manager_agency_id = COALESCE(
    (SELECT r.reporting_agency_id FROM reports r WHERE r.case_id = c.case_id
      ORDER BY r.received_at, r.report_id LIMIT 1),
    c.reporting_agency_id);
ALTER TABLE cases ALTER COLUMN case_manager_agency_id SET NOT NULL;

-- Links per agency in a recent window, for the link-rate alert.
CREATE INDEX reports_links_by_agency ON reports (reporting_agency_id, received_at) WHERE linked;

-- Agencies whose link rate is over the limit and which were alerted: one case.link_alert per
-- crossing. The row goes when one of the agency's links finds it back within the rate.
CREATE TABLE link_alerts (
    agency_id  text        PRIMARY KEY,
    raised_at  timestamptz NOT NULL DEFAULT now()
);
