-- Hosted providers (fal): job columns for submission bookkeeping, provider results awaiting mirroring,
-- reconciliation and late delivery (the late-success policy is written in sql/procedures/providers.sql), and the
-- table of files handed to a provider's CDN.
--
-- Procedures: the functions this migration created when it was written now live in sql/procedures/ (providers.sql,
-- jobs.sql), re-applied after the numbered migrations on every migrate, and were removed from this file, which keeps
-- the history of the tables. tests/test_schema_equivalence.py proves that a database built from these files and one
-- upgraded from an earlier release end up with identical schemas and procedures.

alter table video_jobs
  add column provider_status    text,
  add column queue_position     int,
  add column provider_logs      jsonb,
  add column submit_attempted_at timestamptz,
  add column result_url         text,
  add column result_recorded_at timestamptz,
  add column mirror_attempts    int not null default 0,
  add column mirror_lease_until timestamptz,
  add column next_poll_at       timestamptz,
  add column failure_kind       text check (failure_kind in ('provider', 'submit', 'deadline', 'mirror', 'input')),
  add column late_delivery      boolean not null default false;

create index video_jobs_mirror_pending on video_jobs (result_recorded_at)
  where result_url is not null and video_key is null;

-- Files we handed to a provider's CDN, by content hash, so one image is uploaded once.
create table provider_uploads (
  provider   text not null,
  sha256     text not null,
  url        text not null,
  created_at timestamptz not null default now(),
  primary key (provider, sha256)
);
