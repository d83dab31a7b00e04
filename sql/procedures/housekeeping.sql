-- Live definitions, re-applied after the numbered migrations on every migrate (shared/migrations.py explains the
-- rules): edit a procedure here, never in a migration.
--
-- Housekeeping: expired Idempotency-Keys and old Stripe event ids.
--
-- stripe_events records every event id applied, so that a redelivery is recognised and does nothing. Stripe
-- retries a delivery for up to three days and keeps events (which can be resent by hand) for thirty; an id
-- older than that cannot arrive again, so its row only takes space. purge_stripe_events deletes rows whose
-- event was created (or, lacking that, received) more than p_keep_days ago. Even past that window a purged
-- event applied again would change nothing: purchases are credited once per Checkout Session and refunds by
-- cumulative amount (purchases.sql).

create or replace function purge_idempotency_keys() returns int
language sql as $$
  with d as (delete from idempotency_keys where expires_at <= now() returning 1) select count(*)::int from d;
$$;

create or replace function purge_stripe_events(p_keep_days int default 35) returns int
language plpgsql as $$
declare
  purged int;
begin
  if p_keep_days < 30 then
    raise exception 'keep at least 30 days of Stripe events (asked for %)', p_keep_days
      using errcode = 'I2V04';
  end if;
  with d as (
    delete from stripe_events
    where coalesce(event_created, received_at) < now() - make_interval(days => p_keep_days)
    returning 1
  )
  select count(*)::int into purged from d;
  return purged;
end $$;
