-- Core schema: accounts, the append-only credit ledger, models, video jobs, job events, idempotency keys, uploads.
-- Custom SQLSTATEs raised by the procedures (mapped to errors in shared/db.py):
--   I2V01 job not found · I2V02 insufficient credits · I2V03 invalid transition · I2V04 invalid argument

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

create function credit_ledger_immutable() returns trigger language plpgsql as $$
begin
  raise exception 'credit_ledger is append-only (% refused)', tg_op using errcode = 'I2V03';
end $$;
create trigger credit_ledger_no_update before update or delete on credit_ledger
  for each row execute function credit_ledger_immutable();
create trigger credit_ledger_no_truncate before truncate on credit_ledger
  for each statement execute function credit_ledger_immutable();

-- The cached balance moves only with a ledger row; the CHECK above refuses any row that would overdraw.
create function credit_ledger_apply() returns trigger language plpgsql as $$
begin
  update accounts set balance = balance + new.delta, updated_at = now() where user_id = new.user_id;
  return new;
end $$;
create trigger credit_ledger_balance after insert on credit_ledger
  for each row execute function credit_ledger_apply();

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

create function touch_updated_at() returns trigger language plpgsql as $$
begin
  new.updated_at := now();
  return new;
end $$;
create trigger video_jobs_touch before update on video_jobs
  for each row execute function touch_updated_at();

create table job_events (
  id          bigint generated always as identity primary key,
  job_id      uuid not null references video_jobs (id),
  from_status job_status,
  to_status   job_status not null,
  detail      text,
  created_at  timestamptz not null default now()
);
create index job_events_job on job_events (job_id, id);

create function video_jobs_log_event() returns trigger language plpgsql as $$
begin
  if tg_op = 'INSERT' then
    insert into job_events (job_id, from_status, to_status) values (new.id, null, new.status);
  elsif new.status is distinct from old.status then
    insert into job_events (job_id, from_status, to_status, detail) values (new.id, old.status, new.status, new.error_message);
  end if;
  return null;
end $$;
create trigger video_jobs_events after insert or update of status on video_jobs
  for each row execute function video_jobs_log_event();

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
