-- Where the case's bed stands, as the shelter service last said on its stream, on the SHELTER
-- row of case_services: held (shelter.allocated; it stays so after the arrival, which shelter
-- does not publish), waiting (shelter.waitlisted), no_show (shelter.released without an arrival:
-- routing published shelter.no_show for the coordinator), released (any other release),
-- cancelled (shelter.request_cancelled: the request was withdrawn). NULL until the shelter
-- service answers, and on every other service's row.
ALTER TABLE case_services ADD COLUMN bed_status text
    CHECK (bed_status IN ('held', 'waiting', 'no_show', 'released', 'cancelled'));
