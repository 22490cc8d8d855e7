-- The retention timer (notify.delivered_retention_s) looks every second for the oldest bodies
-- past the retention. Without an index on their age it read every kept body each time: 9 ms a
-- second on notify's only thread with 12,000 bodies, growing with the table, even when nothing
-- had expired. With it, a look that finds nothing reads two index pages.
CREATE INDEX events_age ON events (occurred_at_ms);
