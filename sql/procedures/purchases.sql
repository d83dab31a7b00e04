-- Live definitions, re-applied after the numbered migrations on every migrate (shared/migrations.py explains the
-- rules): edit a procedure here, never in a migration.
--
-- Buying credits with Stripe Checkout: purchases, processed Stripe events, refunds and debt.
--
-- Exactly once, whatever the arrival order:
--   * Every Stripe event id is processed once: apply_stripe_event inserts it into stripe_events in the same
--     transaction as its effect. A concurrent delivery of the same event waits on that key, then does nothing.
--   * A purchase is credited once, keyed by its Checkout Session id (purchases.credits_granted, and the ledger's
--     unique external_ref 'stripe:purchase:<session id>').
--   * Refunds are keyed by charge and cumulative amount: charge.amount_refunded only grows, so stripe_charges keeps
--     the largest value seen, the credits to take back are recomputed from that total and only the difference is
--     applied (ledger external_ref 'stripe:refund:<payment intent>:<cumulative cents>'). A repeated or stale
--     charge.refunded changes nothing.
--   * Events about one payment are serialised by an advisory lock on the PaymentIntent id. A refund that arrives
--     before its purchase was processed is kept in stripe_charges and applied when the purchase is credited, so
--     every order converges on the same rows and the same balance.
--
-- Refund policy:
--   * Credits taken back = floor(pack credits x refunded amount / amount paid), cumulative per purchase: a full
--     refund takes back every credit of the pack; a partial one rounds down, in the buyer's favour.
--   * The balance never goes negative. Credits are taken from the balance; what it cannot cover (credits already
--     spent) becomes accounts.debt and is recorded on the purchase (debt_incurred).
--   * While debt > 0, start_generation (jobs.sql) refuses new jobs with 402. Any later credit (a purchase, a grant,
--     a job refund) pays the debt first: the credit_ledger_recover_debt trigger appends a 'debt_recovery' row
--     for min(debt, balance) right after the credit.
--
-- Invariant (checked by purchase_mismatches): for every account,
--   sum(ledger rows of kind purchase, purchase_refund, debt_recovery) - debt = credits paid - credits refunded.

-- An amount in the smallest currency unit as people read it: 999, 'usd' -> '9.99 USD'.
create or replace function _money(p_cents bigint, p_currency text) returns text
language sql immutable as $$
  select to_char(p_cents / 100.0, 'FM999999999990.00') || ' ' || upper(p_currency);
$$;

-- Any credit pays an outstanding debt first. Fires after credit_ledger_balance (triggers run in name order),
-- so accounts.balance already includes the new row.
create or replace function credit_ledger_recover_debt() returns trigger language plpgsql as $$
declare
  owed bigint;
  bal  bigint;
  paid bigint;
begin
  select debt, balance into owed, bal from accounts where user_id = new.user_id for update;
  paid := least(owed, bal);
  if paid > 0 then
    update accounts set debt = debt - paid, updated_at = now() where user_id = new.user_id;
    insert into credit_ledger (user_id, delta, kind, reason, external_ref)
    values (new.user_id, -paid, 'debt_recovery',
            format('debt repaid: %s credits owed from a refunded purchase', paid), 'debt_recovery:' || new.id);
  end if;
  return null;
end $$;
-- Created when missing (re-applying waits for no writer); a numbered migration drops it to change it.
do $$
begin
  if not exists (select from pg_trigger
                  where tgrelid = 'credit_ledger'::regclass and tgname = 'credit_ledger_recover_debt') then
    create trigger credit_ledger_recover_debt after insert on credit_ledger
      for each row when (new.delta > 0) execute function credit_ledger_recover_debt();
  end if;
end $$;

-- create-checkout-session, step 1: the Idempotency-Key (same table and rules as generate-video).
-- Outcomes: new (call Stripe, then record_checkout) | replay (stored body) | mismatch | in_progress.
create or replace function begin_checkout(
  p_user uuid, p_endpoint text, p_key text, p_fingerprint text, p_signup_credits bigint, p_ttl_s int, p_hold_s int
) returns jsonb language plpgsql as $$
declare
  rec idempotency_keys%rowtype;
begin
  perform ensure_account(p_user, p_signup_credits);
  if not pg_try_advisory_xact_lock(hashtextextended(p_user::text || ' ' || p_endpoint || ' ' || p_key, 0)) then
    return jsonb_build_object('outcome', 'in_progress');
  end if;
  select * into rec from idempotency_keys
   where user_id = p_user and endpoint = p_endpoint and key = p_key for update;
  if found and rec.expires_at > now() then
    if rec.fingerprint <> p_fingerprint then
      return jsonb_build_object('outcome', 'mismatch');
    elsif rec.state = 'done' then
      return jsonb_build_object('outcome', 'replay', 'status', rec.response_status, 'body', rec.response_body);
    elsif rec.locked_until > now() then
      return jsonb_build_object('outcome', 'in_progress');
    end if;
    -- The holder died mid-call: take over. Stripe replays the session for the same idempotency key.
    update idempotency_keys set locked_until = now() + make_interval(secs => p_hold_s)
     where user_id = p_user and endpoint = p_endpoint and key = p_key;
    return jsonb_build_object('outcome', 'new');
  end if;
  delete from idempotency_keys where user_id = p_user and endpoint = p_endpoint and key = p_key;
  insert into idempotency_keys (user_id, endpoint, key, fingerprint, state, locked_until, expires_at)
  values (p_user, p_endpoint, p_key, p_fingerprint, 'in_progress', now() + make_interval(secs => p_hold_s),
          now() + make_interval(secs => p_ttl_s));
  return jsonb_build_object('outcome', 'new');
end $$;

-- create-checkout-session, step 2: Stripe made the session; record the pending purchase (once per session id)
-- and store the response under the Idempotency-Key.
create or replace function record_checkout(
  p_user uuid, p_endpoint text, p_key text, p_session_id text, p_pack_id text, p_credits bigint,
  p_amount_cents bigint, p_currency text, p_response jsonb
) returns jsonb language plpgsql as $$
begin
  insert into purchases (user_id, pack_id, credits, amount_cents, currency, stripe_session_id)
  values (p_user, p_pack_id, p_credits, p_amount_cents, lower(p_currency), p_session_id)
  on conflict (stripe_session_id) do nothing;
  update idempotency_keys set state = 'done', response_status = 200, response_body = p_response
   where user_id = p_user and endpoint = p_endpoint and key = p_key;
  return p_response;
end $$;

-- create-checkout-session failed at Stripe: forget the key so the caller may retry with it.
create or replace function release_checkout(p_user uuid, p_endpoint text, p_key text) returns void
language sql as $$
  delete from idempotency_keys
   where user_id = p_user and endpoint = p_endpoint and key = p_key and state = 'in_progress';
$$;

-- The purchase a Checkout Session event is about, locked; created from the event's metadata when the session
-- was never recorded (e.g. record_checkout did not run). Null when the event names no user or credits.
create or replace function _purchase_for_session(p_data jsonb) returns purchases
language plpgsql as $$
declare
  p purchases%rowtype;
  sid text := p_data->>'session_id';
  usr uuid := (p_data->>'user_id')::uuid;
begin
  select * into p from purchases where stripe_session_id = sid for update;
  if found or usr is null or coalesce((p_data->>'credits')::bigint, 0) <= 0 then
    return p;
  end if;
  perform ensure_account(usr, 0);
  insert into purchases (user_id, pack_id, credits, amount_cents, currency, stripe_session_id)
  values (usr, coalesce(p_data->>'pack_id', 'unknown'), (p_data->>'credits')::bigint,
          coalesce((p_data->>'amount_total')::bigint, 0), lower(coalesce(p_data->>'currency', 'usd')), sid)
  on conflict (stripe_session_id) do nothing;
  select * into p from purchases where stripe_session_id = sid for update;
  return p;
end $$;

-- Take back the credits refunded so far and not yet taken back (see the policy above). Returns the outcome.
create or replace function _settle_purchase_refunds(p_purchase uuid) returns text
language plpgsql as $$
declare
  p        purchases%rowtype;
  refunded bigint;
  charge   text;
  target   bigint;
  due      bigint;
  bal      bigint;
  take     bigint;
  short    bigint;
begin
  select * into p from purchases where id = p_purchase for update;
  select coalesce(sum(amount_refunded), 0), max(charge_id) into refunded, charge
    from stripe_charges where payment_intent = p.payment_intent;
  refunded := least(greatest(refunded, p.amount_refunded), p.amount_cents);
  if p.credits_granted = 0 or p.amount_cents = 0 or refunded = 0 then
    update purchases set amount_refunded = refunded, charge_id = coalesce(charge_id, charge) where id = p.id;
    return case when refunded > 0 then 'refund_recorded' else 'no_refund' end;
  end if;
  target := p.credits_granted * refunded / p.amount_cents;   -- integer division: rounds down
  due := target - p.credits_refunded;
  if due <= 0 then
    update purchases set amount_refunded = refunded, charge_id = coalesce(charge_id, charge) where id = p.id;
    return 'refund_already_applied';
  end if;
  select balance into bal from accounts where user_id = p.user_id for update;
  take := least(bal, due);
  short := due - take;
  if take > 0 then
    insert into credit_ledger (user_id, delta, kind, reason, external_ref)
    values (p.user_id, -take, 'purchase_refund',
            format('purchase refund: %s of %s refunded, %s of %s credits taken back%s', _money(refunded, p.currency),
                   _money(p.amount_cents, p.currency), target, p.credits_granted,
                   case when short > 0 then format(' (%s owed as debt)', short) else '' end),
            'stripe:refund:' || p.payment_intent || ':' || refunded);
  end if;
  if short > 0 then
    update accounts set debt = debt + short, updated_at = now() where user_id = p.user_id;
  end if;
  update purchases
     set credits_refunded = target, debt_incurred = debt_incurred + short, amount_refunded = refunded,
         charge_id = coalesce(charge_id, charge),
         status = case when refunded >= amount_cents then 'refunded' else 'partially_refunded' end
   where id = p.id;
  return case when short > 0 then 'refunded_with_debt' else 'refunded' end;
end $$;

-- checkout.session.completed (paid) / async_payment_succeeded: credit the purchase once, then apply any refund
-- that arrived first.
create or replace function _credit_purchase(p_data jsonb) returns text
language plpgsql as $$
declare
  p purchases%rowtype := _purchase_for_session(p_data);
begin
  if p.id is null then
    return 'unknown_session';
  elsif p.credits_granted > 0 then
    return 'already_credited';
  end if;
  update purchases set status = 'paid', credits_granted = credits, paid_at = now(),
                       payment_intent = coalesce(payment_intent, p_data->>'payment_intent')
   where id = p.id;
  insert into credit_ledger (user_id, delta, kind, reason, external_ref)
  values (p.user_id, p.credits, 'purchase',
          format('purchase: %s (%s credits, %s)', p.pack_id, p.credits, _money(p.amount_cents, p.currency)),
          'stripe:purchase:' || p.stripe_session_id);
  perform _settle_purchase_refunds(p.id);
  return 'credited';
end $$;

-- Session events that credit nothing: a delayed payment started, failed, or the session expired unpaid.
create or replace function _purchase_transition(p_data jsonb, p_to text) returns text
language plpgsql as $$
declare
  p purchases%rowtype := _purchase_for_session(p_data);
  allowed text[] := case p_to when 'processing' then array['pending']
                              when 'failed' then array['pending', 'processing']
                              when 'abandoned' then array['pending'] end;
begin
  if p.id is null then
    return 'unknown_session';
  elsif p.status <> all (allowed) then
    return 'no_change';  -- already there, or past it (a late or out-of-order event)
  end if;
  update purchases set status = p_to, payment_intent = coalesce(payment_intent, p_data->>'payment_intent')
   where id = p.id;
  return p_to;
end $$;

-- charge.refunded: record the cumulative refund of the charge, then settle the purchase if it is known.
create or replace function _record_charge_refund(p_data jsonb) returns text
language plpgsql as $$
declare
  purchase uuid;
begin
  if p_data->>'payment_intent' is null then
    return 'unknown_payment';
  end if;
  insert into stripe_charges (charge_id, payment_intent, amount, amount_refunded, currency, refund_ids)
  values (p_data->>'charge_id', p_data->>'payment_intent', (p_data->>'amount')::bigint,
          (p_data->>'amount_refunded')::bigint, lower(p_data->>'currency'),
          array(select jsonb_array_elements_text(coalesce(p_data->'refund_ids', '[]'))))
  on conflict (charge_id) do update
     set amount_refunded = greatest(stripe_charges.amount_refunded, excluded.amount_refunded),
         refund_ids = array(select distinct unnest(stripe_charges.refund_ids || excluded.refund_ids)),
         updated_at = now();
  select id into purchase from purchases where payment_intent = p_data->>'payment_intent' for update;
  if purchase is null then
    return 'refund_pending';   -- the purchase is credited (and this refund applied) when its session event comes
  end if;
  return _settle_purchase_refunds(purchase);
end $$;

-- One verified Stripe event, applied exactly once (one call per webhook delivery). p_data holds the fields
-- shared/billing/stripe_events.py extracted from data.object. Returns {"outcome": ...}.
create or replace function apply_stripe_event(p_event_id text, p_type text, p_created bigint, p_data jsonb)
returns jsonb language plpgsql as $$
declare
  result text;
begin
  insert into stripe_events (event_id, type, object_id, event_created)
  values (p_event_id, p_type, coalesce(p_data->>'session_id', p_data->>'charge_id'), to_timestamp(p_created))
  on conflict (event_id) do nothing;
  if not found then
    return jsonb_build_object('outcome', 'duplicate');
  end if;
  if p_data->>'payment_intent' is not null then
    perform pg_advisory_xact_lock(hashtextextended('stripe:' || (p_data->>'payment_intent'), 0));
  end if;
  result := case
    when p_type = 'checkout.session.async_payment_succeeded' then _credit_purchase(p_data)
    when p_type = 'checkout.session.completed' and p_data->>'payment_status' in ('paid', 'no_payment_required')
      then _credit_purchase(p_data)
    when p_type = 'checkout.session.completed' then _purchase_transition(p_data, 'processing')
    when p_type = 'checkout.session.async_payment_failed' then _purchase_transition(p_data, 'failed')
    when p_type = 'checkout.session.expired' then _purchase_transition(p_data, 'abandoned')
    when p_type = 'charge.refunded' then _record_charge_refund(p_data)
    else 'ignored' end;
  update stripe_events set outcome = result where event_id = p_event_id;
  return jsonb_build_object('outcome', result);
end $$;

-- One purchase as stored (operators and tests).
create or replace function get_purchase(p_session_id text) returns jsonb
language sql stable as $$
  select to_jsonb(p) from purchases p where stripe_session_id = p_session_id;
$$;

-- Accounts whose purchase bookkeeping disagrees with the ledger (should always be empty): credited purchases
-- (Stripe's and the App Store's) must equal the 'purchase' rows, refunds taken from the balance the
-- 'purchase_refund' rows, and purchase-related rows minus debt must equal credits paid minus credits refunded.
create or replace function purchase_mismatches()
returns table (user_id uuid, credits_paid bigint, credits_refunded bigint, ledger_net bigint, debt bigint)
language sql stable as $$
  with bought as (
    select user_id, credits_granted, credits_refunded, debt_incurred from purchases
    union all
    select user_id, credits_granted, credits_refunded, debt_incurred from app_store_transactions
     where user_id is not null),
  p as (
    select user_id, sum(credits_granted)::bigint as paid, sum(credits_refunded)::bigint as refunded,
           sum(credits_refunded - debt_incurred)::bigint as taken
      from bought group by user_id),
  l as (
    select user_id,
           coalesce(sum(delta) filter (where kind = 'purchase'), 0)::bigint as bought,
           coalesce(-sum(delta) filter (where kind = 'purchase_refund'), 0)::bigint as taken,
           coalesce(sum(delta) filter (where kind in ('purchase', 'purchase_refund', 'debt_recovery')), 0)::bigint
             as net
      from credit_ledger group by user_id)
  select a.user_id, coalesce(p.paid, 0), coalesce(p.refunded, 0), coalesce(l.net, 0), a.debt
    from accounts a left join p on p.user_id = a.user_id left join l on l.user_id = a.user_id
   where coalesce(l.bought, 0) <> coalesce(p.paid, 0)
      or coalesce(l.taken, 0) <> coalesce(p.taken, 0)
      or coalesce(l.net, 0) - a.debt <> coalesce(p.paid, 0) - coalesce(p.refunded, 0);
$$;
