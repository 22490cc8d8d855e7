-- Where the case's bed stands, as the shelter service last said (its stream: shelter.allocated,
-- shelter.waitlisted, shelter.released, shelter.request_cancelled), on the SHELTER row of
-- case_services: held, waiting, occupied is not published (a held bed stays "held" until
-- released), no_show (released without an arrival: routing published shelter.no_show for the
-- coordinator), released (any other release), cancelled (the request was withdrawn). NULL until
-- the shelter service answers, and on every other service's row.
ALTER TABLE case_services ADD COLUMN bed_status text
    CHECK (bed_status IN ('held', 'waiting', 'no_show', 'released', 'cancelled'));
