-- Buying credits with Stripe Checkout: purchases, processed Stripe events, refund progress per charge, and the
-- ledger kinds of purchases, their refunds and debt recovery. The exactly-once rules and the refund and debt policy
-- are written in sql/procedures/purchases.sql, next to the procedures that implement them.
--
-- Procedures: the functions and triggers this migration created when it was written now live in sql/procedures/
-- (purchases.sql, common.sql), re-applied after the numbered migrations on every migrate, and were removed from this
-- file, which keeps the history of the tables. tests/test_schema_equivalence.py proves that a database built from
-- these files and one upgraded from an earlier release end up with identical schemas and procedures.

alter table credit_ledger drop constraint credit_ledger_kind_check;
alter table credit_ledger add constraint credit_ledger_kind_check check (kind in (
  'signup', 'grant', 'generation', 'refund', 'purchase', 'purchase_refund', 'debt_recovery'));

create table purchases (
  id                uuid primary key default gen_random_uuid(),
  user_id           uuid not null references accounts (user_id),
  pack_id           text not null,
  credits           bigint not null check (credits > 0),
  amount_cents      bigint not null check (amount_cents >= 0),
  currency          text not null,
  stripe_session_id text not null unique,
  -- pending: session open · processing: completed, delayed payment not settled yet · paid: credited ·
  -- partially_refunded / refunded: credited, then (part) refunded · failed: delayed payment failed ·
  -- abandoned: the session expired unpaid.
  status            text not null default 'pending' check (status in (
                      'pending', 'processing', 'paid', 'partially_refunded', 'refunded', 'failed', 'abandoned')),
  payment_intent    text unique,
  charge_id         text,
  amount_refunded   bigint not null default 0 check (amount_refunded >= 0),   -- cents, cumulative
  credits_granted   bigint not null default 0 check (credits_granted >= 0),   -- 0, or credits once paid
  credits_refunded  bigint not null default 0 check (credits_refunded >= 0),  -- taken back in total
  debt_incurred     bigint not null default 0 check (debt_incurred >= 0),     -- part of it that became debt
  created_at        timestamptz not null default now(),
  updated_at        timestamptz not null default now(),
  paid_at           timestamptz,
  check (credits_refunded <= credits_granted and debt_incurred <= credits_refunded)
);
create index purchases_user on purchases (user_id, created_at desc);

-- Every Stripe event applied (its effect committed in the same transaction as this row).
create table stripe_events (
  event_id      text primary key,
  type          text not null,
  object_id     text,
  event_created timestamptz,
  outcome       text,
  received_at   timestamptz not null default now()
);

-- Refund progress per charge, as Stripe reported it (known possibly before the purchase is credited).
create table stripe_charges (
  charge_id       text primary key,
  payment_intent  text,
  amount          bigint not null check (amount >= 0),
  amount_refunded bigint not null check (amount_refunded >= 0),
  currency        text not null,
  refund_ids      text[] not null default '{}',
  updated_at      timestamptz not null default now()
);
create index stripe_charges_payment_intent on stripe_charges (payment_intent);
