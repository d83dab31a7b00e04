-- Core schema: accounts, the append-only credit ledger, models, video jobs, job events, idempotency keys, uploads.
--
-- Procedures: the functions and triggers this migration created when it was written now live in sql/procedures/
-- (accounts_ledger.sql, common.sql, jobs.sql), re-applied after the numbered migrations on every migrate, and were
-- removed from this file, which keeps the history of the tables. tests/test_schema_equivalence.py proves that a
-- database built from these files and one upgraded from an earlier release end up with identical schemas and
-- procedures.

create type job_status as enum ('pending', 'processing', 'completed', 'failed', 'canceled');

create table accounts (
  user_id    uuid primary key,
  balance    bigint not null default 0 check (balance >= 0),
  -- Credits owed (e.g. a purchase refunded after its credits were spent); new generations wait until it is 0.
  debt       bigint not null default 0 check (debt >= 0),
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now()
);

-- Append-only: a row is never updated or deleted; the balance is the sum of the rows.
create table credit_ledger (
  id           bigint generated always as identity primary key,
  user_id      uuid not null references accounts (user_id),
  delta        bigint not null check (delta <> 0),
  kind         text not null check (kind in ('signup', 'grant', 'generation', 'refund')),
  reason       text,
  job_id       uuid,
  external_ref text unique,
  created_at   timestamptz not null default now()
);
create unique index credit_ledger_job_kind on credit_ledger (job_id, kind) where job_id is not null;
create index credit_ledger_user on credit_ledger (user_id, id desc);

create table models (
  id             uuid primary key,
  slug           text not null unique,
  name           text not null,
  provider       text not null,
  endpoint       text not null,
  available      boolean not null default true,
  unavailable_reason text,
  requires_image boolean not null,
  capabilities   jsonb not null,
  price          jsonb not null,
  updated_at     timestamptz not null default now()
);

create table video_jobs (
  id                  uuid primary key default gen_random_uuid(),
  user_id             uuid not null references accounts (user_id),
  model_id            uuid not null references models (id),
  model_slug          text not null,
  provider            text not null,
  status              job_status not null default 'pending',
  prompt              text not null default '',
  image_url           text,
  settings            jsonb not null default '{}',
  credits_used        bigint not null check (credits_used >= 0),
  provider_request_id text,
  provider_urls       jsonb,
  progress            real check (progress between 0 and 1),
  source_video_url    text,
  video_key           text,
  thumbnail_key       text,
  result              jsonb,
  error_message       text,
  created_at          timestamptz not null default now(),
  updated_at          timestamptz not null default now(),
  started_at          timestamptz,
  finished_at         timestamptz
);
create index video_jobs_user_created on video_jobs (user_id, created_at desc, id desc);
create index video_jobs_active on video_jobs (provider, status, updated_at) where status in ('pending', 'processing');
create unique index video_jobs_provider_request on video_jobs (provider, provider_request_id)
  where provider_request_id is not null;

create table job_events (
  id          bigint generated always as identity primary key,
  job_id      uuid not null references video_jobs (id),
  from_status job_status,
  to_status   job_status not null,
  detail      text,
  created_at  timestamptz not null default now()
);
create index job_events_job on job_events (job_id, id);

create table idempotency_keys (
  user_id         uuid not null,
  endpoint        text not null,
  key             text not null check (length(key) between 1 and 255),
  fingerprint     text not null,
  state           text not null check (state in ('in_progress', 'done')),
  response_status int,
  response_body   jsonb,
  job_id          uuid references video_jobs (id),
  created_at      timestamptz not null default now(),
  locked_until    timestamptz not null,
  expires_at      timestamptz not null,
  primary key (user_id, endpoint, key)
);
create index idempotency_keys_expiry on idempotency_keys (expires_at);

create table uploads (
  user_id      uuid not null references accounts (user_id),
  sha256       text not null check (sha256 ~ '^[0-9a-f]{64}$'),
  content_type text not null check (content_type in ('image/jpeg', 'image/png', 'image/webp')),
  size         bigint not null check (size > 0),
  storage_key  text not null,
  width        int,
  height       int,
  verified_at  timestamptz,
  created_at   timestamptz not null default now(),
  primary key (user_id, sha256)
);
