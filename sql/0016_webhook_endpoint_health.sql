-- An endpoint's health (list-webhook-endpoints: pending deliveries, failures in the last day, the last delivery and
-- the error still standing) is read from its deliveries: found by endpoint, newest first.
create index webhook_deliveries_endpoint on webhook_deliveries (endpoint_id, created_at desc)
  where endpoint_id is not null;
