-- Whether a delivery is owed only because its subscription followed the event's topic (not
-- because the event concerns the agency): such a delivery is sent only while the subscription
-- still follows a prefix of the topic. Deliveries made before this column existed count as
-- concerning the agency (false), as they were treated then.
ALTER TABLE deliveries ADD COLUMN by_topic boolean NOT NULL DEFAULT false;
