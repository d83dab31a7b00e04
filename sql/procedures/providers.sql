-- Live definitions, re-applied after the numbered migrations on every migrate (shared/migrations.py explains the
-- rules): edit a procedure here, never in a migration.
--
-- Hosted providers (fal): submission bookkeeping, provider results awaiting mirroring, reconciliation, the CDN
-- cache of uploaded inputs.
--
-- A hosted job moves: pending (debited) -> pending + provider_request_id (queued at the provider)
--   -> processing (running, or result recorded and being mirrored) -> completed | failed | canceled.
-- Late-success policy: a job we failed at our own hard deadline (failure_kind 'deadline') or canceled may still be
-- finished by the provider. Its video is then kept and the job completes with late_delivery = true (complete_job,
-- jobs.sql); the refund stands and nothing is charged again. A job failed by the provider's own verdict never
-- completes.

-- The one submission attempt: true for exactly one caller (the request, or the reconciler after a crash).
create or replace function claim_submit(p_job uuid) returns boolean
language plpgsql as $$
begin
  update video_jobs set submit_attempted_at = now()
   where id = p_job and status = 'pending' and submit_attempted_at is null and provider_request_id is null;
  return found;
end $$;

-- The provider accepted the job: record its request id and URLs, release the idempotency key.
create or replace function mark_submitted(p_job uuid, p_request_id text, p_urls jsonb) returns boolean
language plpgsql as $$
begin
  update video_jobs set provider_request_id = coalesce(provider_request_id, p_request_id),
                        provider_urls = coalesce(p_urls, provider_urls),
                        provider_status = coalesce(provider_status, 'queued'),
                        submit_attempted_at = coalesce(submit_attempted_at, now())
   where id = p_job;
  if not found then
    raise exception 'job % not found', p_job using errcode = 'I2V01';
  end if;
  update idempotency_keys set state = 'done' where job_id = p_job and state = 'in_progress';
  return true;
end $$;

-- A submission whose outcome is unknown (the request may have reached the provider): never resubmitted; the
-- webhook or the reconciler's deadline settles it.
create or replace function mark_submit_unknown(p_job uuid) returns void
language sql as $$
  update video_jobs set submit_attempted_at = coalesce(submit_attempted_at, now()), provider_status = 'submit_unknown'
   where id = p_job;
  update idempotency_keys set state = 'done' where job_id = p_job and state = 'in_progress';
$$;

-- What the provider says about a running job (p_status 'queued' or 'running', queue position, logs). Terminal
-- jobs ignore it.
create or replace function record_provider_status(
  p_job uuid, p_status text, p_queue_position int, p_logs jsonb, p_next_poll_s int
) returns boolean language plpgsql as $$
begin
  update video_jobs
     set provider_status = p_status,
         queue_position = case when p_status = 'queued' then p_queue_position end,
         provider_logs = coalesce(p_logs, provider_logs),
         status = case when p_status = 'running' and status = 'pending' then 'processing' else status end,
         started_at = case when p_status = 'running' then coalesce(started_at, now()) else started_at end,
         next_poll_at = now() + make_interval(secs => p_next_poll_s)
   where id = p_job and status in ('pending', 'processing');
  return found;
end $$;

-- The provider finished with a video at p_url: remember it for mirroring (idempotent; repeated webhooks and a
-- racing poll record it once). Returns the job as the mirroring step needs it, or null when nothing is to do.
create or replace function record_provider_result(p_job uuid, p_request_id text, p_url text, p_result jsonb)
returns jsonb language plpgsql as $$
declare
  j video_jobs%rowtype;
begin
  select * into j from video_jobs where id = p_job for update;
  if not found then
    raise exception 'job % not found', p_job using errcode = 'I2V01';
  end if;
  if j.provider_request_id is not null and p_request_id is not null and j.provider_request_id <> p_request_id then
    raise exception 'job % belongs to another provider request', p_job using errcode = 'I2V03';
  end if;
  if j.status = 'completed' then
    return null;
  end if;
  if j.status = 'failed' and j.failure_kind is distinct from 'deadline' then
    raise exception 'job % failed by the provider''s verdict and cannot complete', p_job using errcode = 'I2V03';
  end if;
  update video_jobs
     set provider_request_id = coalesce(provider_request_id, p_request_id),
         provider_status = 'succeeded', queue_position = null,
         result_url = coalesce(result_url, p_url), result = coalesce(p_result, result),
         result_recorded_at = coalesce(result_recorded_at, now()),
         status = case when status = 'pending' then 'processing' else status end,
         started_at = coalesce(started_at, now()),
         progress = case when status in ('pending', 'processing') then 0.95 else progress end
   where id = p_job
  returning * into j;
  return jsonb_build_object('job_id', j.id, 'user_id', j.user_id, 'url', j.result_url, 'status', j.status);
end $$;

-- Take the mirroring of one job for p_lease_s seconds (so the webhook's follow-up and the reconciler never
-- mirror the same job at once). Returns false when someone else holds it or there is nothing to mirror.
create or replace function claim_mirror(p_job uuid, p_lease_s int) returns boolean
language plpgsql as $$
begin
  update video_jobs set mirror_lease_until = now() + make_interval(secs => p_lease_s),
                        mirror_attempts = mirror_attempts + 1
   where id = p_job and result_url is not null and video_key is null
     and status in ('pending', 'processing', 'failed', 'canceled')
     and (mirror_lease_until is null or mirror_lease_until < now());
  return found;
end $$;

create or replace function release_mirror(p_job uuid) returns void
language sql as $$
  update video_jobs set mirror_lease_until = null where id = p_job;
$$;


-- Hosted jobs the reconciler must look at, with what it should do:
--   submit   debited, never submitted, older than p_submit_grace_s (a crash between the debit and the submission):
--            the reconciler first asks the provider whether the submission reached it, then submits
--   find     submission attempted but never acknowledged (its outcome unknown), quiet for p_quiet_s seconds, not
--            asked too recently: the reconciler asks the provider whether it has the job
--   expire   submission attempted but never acknowledged, past the deadline
--   poll     submitted, no news for p_quiet_s seconds (a lost webhook), not polled too recently
--   mirror   result recorded, not mirrored, no live lease, attempts left
create or replace function reconcile_candidates(
  p_provider text, p_submit_grace_s int, p_quiet_s int, p_deadline_s int, p_limit int
) returns table (job_id uuid, action text) language sql stable as $$
  select id, case
      when result_url is not null then 'mirror'
      when provider_request_id is null and submit_attempted_at is null then 'submit'
      when provider_request_id is null and submit_attempted_at < now() - make_interval(secs => p_deadline_s)
        then 'expire'
      when provider_request_id is null then 'find'
      else 'poll' end
    from video_jobs
   where provider = p_provider
     and (
       (status in ('pending', 'processing') and result_url is null and (
          (provider_request_id is null and submit_attempted_at is null
             and created_at < now() - make_interval(secs => p_submit_grace_s))
          or (provider_request_id is null and submit_attempted_at < now() - make_interval(secs => p_deadline_s))
          or (provider_request_id is null and submit_attempted_at < now() - make_interval(secs => p_quiet_s)
              and (next_poll_at is null or next_poll_at <= now()))
          or (provider_request_id is not null and updated_at < now() - make_interval(secs => p_quiet_s)
              and (next_poll_at is null or next_poll_at <= now()))))
       or (result_url is not null and video_key is null
           and (status in ('pending', 'processing') or failure_kind = 'deadline' or status = 'canceled')
           and (mirror_lease_until is null or mirror_lease_until < now())
           and mirror_attempts < {{MIRROR_ATTEMPT_LIMIT}}))
   order by updated_at
   limit p_limit;
$$;

-- One job whoever owns it (webhooks, the reconciler, workers).
create or replace function job_for_provider(p_job uuid) returns jsonb
language sql stable as $$
  select job_record(j) from video_jobs j where id = p_job;
$$;

create or replace function find_job_by_request(p_provider text, p_request_id text) returns uuid
language sql stable as $$
  select id from video_jobs where provider = p_provider and provider_request_id = p_request_id;
$$;

-- The provider CDN cache is consulted only for content the caller stored and verified: the cached file was
-- made from verified bytes of that same hash, so it holds exactly the caller's content.
create or replace function get_provider_upload(p_provider text, p_user uuid, p_sha256 text) returns text
language sql stable as $$
  select p.url
    from provider_uploads p
    join uploads u on u.sha256 = p.sha256 and u.user_id = p_user and u.verified_at is not null
   where p.provider = p_provider and p.sha256 = p_sha256;
$$;

create or replace function put_provider_upload(p_provider text, p_sha256 text, p_url text) returns void
language sql as $$
  insert into provider_uploads (provider, sha256, url) values (p_provider, p_sha256, p_url)
  on conflict (provider, sha256) do update set url = excluded.url, created_at = now();
$$;
