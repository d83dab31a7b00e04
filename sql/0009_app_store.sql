-- Buying credits in the iOS app: App Store in-app purchases (consumable credit packs), and the App Store Server
-- Notifications V2 received. Credits use the ledger kinds of purchases ('purchase', 'purchase_refund',
-- 'debt_recovery'); the exactly-once rules and the refund policy are written in sql/procedures/app_store.sql, next
-- to the procedures that implement them.

-- One row per App Store transaction (transactionId), created by the first of: the app redeeming it, or a
-- notification about it. Credited once, when the buyer redeems it; refunds and their reversals move credits by
-- the difference between what is kept and what should be.
create table app_store_transactions (
  transaction_id          text primary key,
  original_transaction_id text,
  user_id                 uuid references accounts (user_id),   -- the buyer (appAccountToken), set when redeemed
  product_id              text not null,
  quantity                int not null default 1 check (quantity > 0),
  environment             text not null check (environment in ('Production', 'Sandbox')),
  -- unredeemed: known from a notification only · credited: redeemed and kept · refunded: refunded or revoked.
  status                  text not null default 'unredeemed' check (status in ('unredeemed', 'credited', 'refunded')),
  credits                 bigint not null default 0 check (credits >= 0),           -- the pack's credits x quantity
  revoked                 boolean not null default false,                            -- Apple's latest word ...
  revoked_as_of           timestamptz,                                               -- ... and when Apple signed it
  revocation_reason       int,
  price_milliunits        bigint,
  currency                text,
  storefront              text,
  purchased_at            timestamptz,
  credits_granted         bigint not null default 0 check (credits_granted >= 0),   -- given in total (reinstated too)
  credits_refunded        bigint not null default 0 check (credits_refunded >= 0),  -- taken back in total
  debt_incurred           bigint not null default 0 check (debt_incurred >= 0),     -- part of it that became debt
  refunds                 int not null default 0 check (refunds >= 0),              -- take-backs applied
  reinstatements          int not null default 0 check (reinstatements >= 0),       -- give-backs applied
  created_at              timestamptz not null default now(),
  updated_at              timestamptz not null default now(),
  credited_at             timestamptz,
  check (credits_refunded <= credits_granted and debt_incurred <= credits_refunded),
  check ((status = 'unredeemed') = (user_id is null))
);
create index app_store_transactions_user on app_store_transactions (user_id, created_at desc);

-- Every verified notification (notificationUUID), its effect committed in the same transaction as this row.
create table app_store_notifications (
  notification_uuid text primary key,
  type              text not null,
  subtype           text,
  transaction_id    text,
  environment       text,
  signed_at         timestamptz,
  outcome           text,
  received_at       timestamptz not null default now()
);
create index app_store_notifications_received on app_store_notifications (received_at);
