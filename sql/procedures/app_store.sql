-- Live definitions, re-applied after the numbered migrations on every migrate (shared/migrations.py explains the
-- rules): edit a procedure here, never in a migration.
--
-- Buying credits in the iOS app: App Store transactions redeemed by the buyer, and App Store Server Notifications
-- (refunds, refund reversals, revocations). Only data Apple signed reaches these procedures: shared/billing/apple.py
-- verifies it with Apple's library first, and shared/billing/app_store.py passes the verified fields on.
--
-- Exactly once, whatever the arrival order:
--   * A transaction is credited once, keyed by its transactionId (app_store_transactions' primary key, and the
--     ledger's unique external_ref 'app_store:purchase:<transaction id>'), to the account the app named in the
--     signed appAccountToken. A repeated or concurrent redeem waits on the row, then changes nothing.
--   * Whether the purchase is refunded is Apple's latest word: each observation (a REFUND, REVOKE or
--     REFUND_REVERSED notification, or a redeemed transaction with or without revocationDate) carries the time
--     Apple signed it, and only one newer than the last applied changes the state. A repeated, stale or
--     out-of-order observation changes nothing.
--   * Credits then move by the difference between what the buyer keeps and what they should keep (the pack's
--     credits, or none when refunded): a refund takes the credits back once, a reversal gives them back once,
--     and a refund that arrives before the redeem is applied right after the credit, so every order of arrival
--     ends with the same ledger rows and balance.
--   * Every notification is recorded once by its notificationUUID, in the same transaction as its effect.
--
-- Refund policy: the same as for Stripe (sql/procedures/purchases.sql). A refund takes back the whole pack; the
-- balance never goes negative, and what it cannot cover becomes accounts.debt (recorded as debt_incurred), which
-- blocks new generations until later credits repay it (credit_ledger_recover_debt).
--
-- Invariant (checked by purchase_mismatches, with Stripe's purchases): per transaction, the 'purchase' rows equal
-- credits_granted and the 'purchase_refund' rows equal credits_refunded - debt_incurred.

-- Unix milliseconds (how Apple dates things) as a timestamp.
create or replace function _ms_timestamp(p_ms bigint) returns timestamptz
language sql immutable as $$
  select to_timestamp(p_ms / 1000.0);
$$;

-- The row of a transaction, locked; created from the verified transaction (p_tx) when it is not known yet.
create or replace function _app_store_transaction(p_tx jsonb) returns app_store_transactions
language plpgsql as $$
declare
  t app_store_transactions%rowtype;
begin
  if coalesce(p_tx->>'transaction_id', '') = '' or coalesce(p_tx->>'product_id', '') = '' then
    raise exception 'an App Store transaction needs its transactionId and productId' using errcode = 'I2V04';
  end if;
  insert into app_store_transactions (transaction_id, original_transaction_id, product_id, quantity, environment,
                                      price_milliunits, currency, storefront, purchased_at)
  values (p_tx->>'transaction_id', p_tx->>'original_transaction_id', p_tx->>'product_id',
          coalesce((p_tx->>'quantity')::int, 1), p_tx->>'environment', (p_tx->>'price')::bigint,
          p_tx->>'currency', p_tx->>'storefront', _ms_timestamp((p_tx->>'purchase_date')::bigint))
  on conflict (transaction_id) do nothing;
  select * into t from app_store_transactions where transaction_id = p_tx->>'transaction_id' for update;
  if t.environment <> p_tx->>'environment' then  -- never let a Sandbox event touch a Production purchase
    raise exception 'App Store transaction % is known from the % environment', t.transaction_id, t.environment
      using errcode = 'I2V04';
  end if;
  return t;
end $$;

-- Record Apple's word on whether the purchase is refunded, signed at p_at, unless a newer word was recorded.
-- True when it was recorded.
create or replace function _app_store_observe(p_id text, p_revoked boolean, p_at timestamptz, p_reason int)
returns boolean language plpgsql as $$
begin
  if p_at is null then
    raise exception 'an App Store observation needs the time Apple signed it' using errcode = 'I2V04';
  end if;
  update app_store_transactions
     set revoked = p_revoked, revoked_as_of = p_at, revocation_reason = case when p_revoked then p_reason end,
         updated_at = now()
   where transaction_id = p_id and (revoked_as_of is null or revoked_as_of < p_at);
  return found;
end $$;

-- Move credits so that the buyer keeps what Apple's latest word says (see the rules above). Returns the outcome.
create or replace function _app_store_settle(p_id text) returns text
language plpgsql as $$
declare
  t      app_store_transactions%rowtype;
  due    bigint;
  bal    bigint;
  take   bigint;
  short  bigint;
  label  text;
begin
  select * into t from app_store_transactions where transaction_id = p_id for update;
  if t.user_id is null then
    return case when t.revoked then 'refund_pending' else 'not_redeemed' end;
  end if;
  label := t.product_id || case when t.environment = 'Sandbox' then ' (Sandbox)' else '' end;
  due := (t.credits_granted - t.credits_refunded) - case when t.revoked then 0 else t.credits end;
  if due > 0 then
    select balance into bal from accounts where user_id = t.user_id for update;
    take := least(bal, due);
    short := due - take;
    if take > 0 then
      insert into credit_ledger (user_id, delta, kind, reason, external_ref)
      values (t.user_id, -take, 'purchase_refund',
              format('App Store refund: %s, %s credits taken back%s', label, due,
                     case when short > 0 then format(' (%s owed as debt)', short) else '' end),
              'app_store:refund:' || t.transaction_id || ':' || (t.refunds + 1));
    end if;
    if short > 0 then
      update accounts set debt = debt + short, updated_at = now() where user_id = t.user_id;
    end if;
    update app_store_transactions
       set credits_refunded = credits_refunded + due, debt_incurred = debt_incurred + short,
           refunds = refunds + 1, status = 'refunded', updated_at = now()
     where transaction_id = p_id;
    return case when short > 0 then 'refunded_with_debt' else 'refunded' end;
  elsif due < 0 then
    insert into credit_ledger (user_id, delta, kind, reason, external_ref)
    values (t.user_id, -due, 'purchase',
            format('App Store refund reversed: %s, %s credits given back', label, -due),
            'app_store:reinstate:' || t.transaction_id || ':' || (t.reinstatements + 1));
    update app_store_transactions
       set credits_granted = credits_granted - due, reinstatements = reinstatements + 1, status = 'credited',
           updated_at = now()
     where transaction_id = p_id;
    return 'reinstated';
  end if;
  return 'no_change';
end $$;

-- What the redeem endpoint answers about a transaction.
create or replace function _app_store_view(p_id text) returns jsonb
language sql stable as $$
  select jsonb_build_object('transaction_id', transaction_id, 'product_id', product_id, 'quantity', quantity,
                            'credits', credits, 'environment', environment, 'status', status)
    from app_store_transactions where transaction_id = p_id;
$$;

-- redeem-app-store-transaction: credit a verified transaction to the buyer once (p_credits: the pack's credits x
-- quantity), then apply Apple's latest word on refunds. Returns the transaction's view and {"outcome": credited |
-- already_credited}. Raises I2V05 when the transaction was redeemed by another account.
create or replace function redeem_app_store_transaction(
  p_user uuid, p_signup_credits bigint, p_credits bigint, p_tx jsonb
) returns jsonb language plpgsql as $$
declare
  t       app_store_transactions%rowtype;
  outcome text := 'already_credited';
begin
  if p_credits is null or p_credits <= 0 then
    raise exception 'an App Store purchase must credit at least one credit' using errcode = 'I2V04';
  end if;
  perform ensure_account(p_user, p_signup_credits);
  t := _app_store_transaction(p_tx);
  if t.user_id is not null and t.user_id <> p_user then
    raise exception 'this App Store transaction was redeemed by another account' using errcode = 'I2V05';
  end if;
  perform _app_store_observe(t.transaction_id, coalesce((p_tx->>'revoked')::boolean, false),
                             _ms_timestamp((p_tx->>'signed_date')::bigint), (p_tx->>'revocation_reason')::int);
  if t.user_id is null then
    update app_store_transactions
       set user_id = p_user, credits = p_credits, credits_granted = p_credits, status = 'credited',
           credited_at = now(), updated_at = now()
     where transaction_id = t.transaction_id;
    insert into credit_ledger (user_id, delta, kind, reason, external_ref)
    values (p_user, p_credits, 'purchase',
            format('App Store purchase%s: %s x %s, %s credits%s',
                   case when t.environment = 'Sandbox' then ' (Sandbox)' else '' end, t.product_id, t.quantity,
                   p_credits,
                   case when t.price_milliunits is not null and t.currency is not null
                        then ', ' || to_char(t.price_milliunits / 1000.0, 'FM999999999990.00') || ' ' || t.currency
                        else '' end),
            'app_store:purchase:' || t.transaction_id);
    outcome := 'credited';
  end if;
  perform _app_store_settle(t.transaction_id);
  return _app_store_view(t.transaction_id) || jsonb_build_object('outcome', outcome);
end $$;

-- A REFUND / REVOKE (p_revoked) or REFUND_REVERSED notification about one transaction.
create or replace function _app_store_revocation(p_tx jsonb, p_revoked boolean, p_signed_date bigint) returns text
language plpgsql as $$
declare
  t app_store_transactions%rowtype := _app_store_transaction(p_tx);
begin
  if not _app_store_observe(t.transaction_id, p_revoked, _ms_timestamp(p_signed_date),
                            (p_tx->>'revocation_reason')::int) then
    return 'no_change';   -- Apple's newer word was applied already (or this very one)
  end if;
  return _app_store_settle(t.transaction_id);
end $$;

-- One verified App Store Server Notification, applied once per notificationUUID. p_tx holds the fields of its
-- verified signedTransactionInfo (null when it has none). Returns {"outcome": ...}.
create or replace function apply_app_store_notification(
  p_uuid text, p_type text, p_subtype text, p_signed_date bigint, p_environment text, p_tx jsonb
) returns jsonb language plpgsql as $$
declare
  result text;
begin
  insert into app_store_notifications (notification_uuid, type, subtype, transaction_id, environment, signed_at)
  values (p_uuid, p_type, p_subtype, p_tx->>'transaction_id', p_environment, _ms_timestamp(p_signed_date))
  on conflict (notification_uuid) do nothing;
  if not found then
    return jsonb_build_object('outcome', 'duplicate');
  end if;
  result := case
    when p_type = 'TEST' then 'test'
    when p_tx is null then 'ignored'
    when p_type in ('REFUND', 'REVOKE') then _app_store_revocation(p_tx, true, p_signed_date)
    when p_type = 'REFUND_REVERSED' then _app_store_revocation(p_tx, false, p_signed_date)
    else 'ignored' end;
  update app_store_notifications set outcome = result where notification_uuid = p_uuid;
  return jsonb_build_object('outcome', result);
end $$;

-- One App Store transaction as stored (operators and tests).
create or replace function get_app_store_transaction(p_transaction_id text) returns jsonb
language sql stable as $$
  select to_jsonb(t) from app_store_transactions t where transaction_id = p_transaction_id;
$$;
