-- Teams and agencies: API keys, clients and campaigns with credit budgets, rate-limit state shared by every
-- serverless instance, and signed outgoing webhooks (endpoints, per-account request secrets, deliveries, attempts).
-- The procedures over these tables live in sql/procedures/ (api_keys.sql, campaigns.sql, rate_limits.sql,
-- webhooks.sql); start_generation (jobs.sql) takes the campaign, the API key, the rate limit and a webhook URL,
-- so every earlier signature of those two is removed here, whatever it was.

-- A key is shown once; only its SHA-256 digest is kept (keys are 32 random bytes: no slow hash is needed).
create table api_keys (
  id           uuid primary key default gen_random_uuid(),
  user_id      uuid not null references accounts (user_id),
  name         text not null check (length(name) between 1 and 200),
  prefix       text not null,
  digest       bytea not null unique check (length(digest) = 32),
  scopes       text[] not null,
  created_at   timestamptz not null default now(),
  expires_at   timestamptz,
  last_used_at timestamptz,
  revoked_at   timestamptz
);
create index api_keys_user on api_keys (user_id, created_at desc, id desc);

create table clients (
  id         uuid primary key default gen_random_uuid(),
  user_id    uuid not null references accounts (user_id),
  name       text not null check (length(name) between 1 and 200),
  archived   boolean not null default false,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now()
);
create index clients_user on clients (user_id, created_at desc, id desc);

-- credits_spent is the net of the ledger rows of the campaign's jobs (debits minus refunds), kept by a trigger on
-- credit_ledger so that the budget check is one locked row; campaign_spend_mismatches() compares it to the ledger.
create table campaigns (
  id             uuid primary key default gen_random_uuid(),
  user_id        uuid not null references accounts (user_id),
  client_id      uuid not null references clients (id),
  name           text not null check (length(name) between 1 and 200),
  budget_credits bigint check (budget_credits >= 0),
  credits_spent  bigint not null default 0 check (credits_spent >= 0),
  archived       boolean not null default false,
  created_at     timestamptz not null default now(),
  updated_at     timestamptz not null default now()
);
create index campaigns_user on campaigns (user_id, created_at desc, id desc);
create index campaigns_client on campaigns (client_id, created_at desc, id desc);

alter table video_jobs
  add column campaign_id uuid references campaigns (id),
  add column client_id   uuid references clients (id),
  add column api_key_id  uuid references api_keys (id),
  add column webhook_url text;
create index video_jobs_campaign on video_jobs (campaign_id, created_at desc, id desc) where campaign_id is not null;
create index video_jobs_client on video_jobs (client_id, created_at desc, id desc) where client_id is not null;

-- Sliding-window limiter state: the times of the requests accepted inside the window, oldest first (at most the
-- limit's count of them). One row per (endpoint, user or key); rows whose newest hit left the window are purged.
create table rate_limit_hits (
  key        text primary key,
  hits       timestamptz[] not null,
  updated_at timestamptz not null default now()
);
create index rate_limit_hits_updated on rate_limit_hits (updated_at);

create table webhook_endpoints (
  id          uuid primary key default gen_random_uuid(),
  user_id     uuid not null references accounts (user_id),
  url         text not null check (length(url) between 1 and 2048),
  events      text[] not null,
  secret      text not null,
  disabled_at timestamptz,
  created_at  timestamptz not null default now()
);
create index webhook_endpoints_user on webhook_endpoints (user_id) where disabled_at is null;

-- The secret that signs deliveries to a generate request's own webhook_url (one per account).
create table webhook_secrets (
  user_id    uuid primary key references accounts (user_id),
  secret     text not null,
  created_at timestamptz not null default now()
);

-- One event for one destination (webhook-id = 'msg_' || id without dashes, the same on every attempt); the body is
-- kept as the exact text that is signed and sent. A sender claims a due delivery by moving next_attempt_at past
-- its lease, then records the attempt, which sets the next one (or ends it).
create table webhook_deliveries (
  id              uuid primary key default gen_random_uuid(),
  user_id         uuid not null references accounts (user_id),
  endpoint_id     uuid references webhook_endpoints (id),
  url             text not null,
  event_type      text not null,
  job_id          uuid references video_jobs (id),
  payload         text not null,
  state           text not null default 'pending' check (state in ('pending', 'delivered', 'failed')),
  attempts        int not null default 0,
  next_attempt_at timestamptz not null default now(),
  last_status     int,
  last_error      text,
  created_at      timestamptz not null default now(),
  delivered_at    timestamptz
);
create index webhook_deliveries_due on webhook_deliveries (next_attempt_at) where state = 'pending';
create index webhook_deliveries_user on webhook_deliveries (user_id, created_at desc, id desc);

create table webhook_attempts (
  id           bigint generated always as identity primary key,
  delivery_id  uuid not null references webhook_deliveries (id),
  attempted_at timestamptz not null default now(),
  status_code  int,
  error        text,
  duration_ms  int not null
);
create index webhook_attempts_delivery on webhook_attempts (delivery_id, id);

do $$
declare
  f regprocedure;
begin
  for f in select p.oid::regprocedure from pg_proc p
            where p.proname in ('start_generation', 'list_videos') and p.pronamespace = current_schema()::regnamespace
  loop
    execute 'drop function ' || f;
  end loop;
end $$;
