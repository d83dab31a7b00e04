-- Housekeeping of the Stripe event log: an index for purging event ids by age (the retention rules are written
-- with purge_stripe_events in sql/procedures/housekeeping.sql).
--
-- Procedures: the function this migration created when it was written now lives in sql/procedures/
-- (housekeeping.sql), re-applied after the numbered migrations on every migrate, and was removed from this file,
-- which keeps the history of the tables. tests/test_schema_equivalence.py proves that a database built from these
-- files and one upgraded from an earlier release end up with identical schemas and procedures.

create index stripe_events_age on stripe_events ((coalesce(event_created, received_at)));
