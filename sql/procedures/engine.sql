-- Live definitions, re-applied after the numbered migrations on every migrate (shared/migrations.py explains the
-- rules): edit a procedure here, never in a migration.
--
-- The local engine across processes: claims, completion and cancellation.
--
-- A local-engine job is rendered by the one engine that claimed it: claim_engine_job moves it pending ->
-- processing under the engine's id with a lease the engine renews while it renders (engine_progress). A job
-- whose lease lapsed (its engine died) may be claimed again; an engine that starts takes over the jobs it finds.
--
-- Finishing is ordered so that a canceled job's files never reach storage: the engine first claims the
-- completion (begin_engine_completion, refused unless the job is still processing under its claim), then moves
-- the files into storage, then calls complete_job. While a completion is claimed, cancel_job (jobs.sql) refuses
-- (I2V03): the video is already made and is being delivered. A cancel that came first makes the completion claim
-- fail, and the engine discards its files.

-- Claim a job for one engine: pending -> processing (or a processing job whose claim lapsed; p_takeover: any
-- processing job not being completed right now). Returns what the engine needs to render it, or null when the
-- job is finished, canceled, of another provider, or held by a live claim.
create or replace function claim_engine_job(
  p_job uuid, p_provider text, p_engine text, p_lease_s int, p_takeover boolean
) returns jsonb language plpgsql as $$
declare
  j video_jobs%rowtype;
begin
  select * into j from video_jobs where id = p_job and provider = p_provider for update;
  if not found or j.status not in ('pending', 'processing') then
    return null;
  end if;
  if j.status = 'processing' and (j.finishing_until > now()
      or (not p_takeover and j.engine_lease_until > now())) then
    return null;
  end if;
  update video_jobs set status = 'processing', progress = 0, started_at = coalesce(started_at, now()),
                        engine_id = p_engine, engine_lease_until = now() + make_interval(secs => p_lease_s),
                        finishing_until = null
   where id = p_job;
  return (select job_record(v) from video_jobs v where v.id = p_job);
end $$;

-- Local-engine jobs an engine may claim now (pending, or processing with a lapsed claim), oldest first.
create or replace function claimable_engine_jobs(p_provider text, p_limit int) returns setof uuid
language sql stable as $$
  select id from video_jobs
   where provider = p_provider and status in ('pending', 'processing')
     and (status = 'pending' or engine_lease_until is null or engine_lease_until < now())
     and (finishing_until is null or finishing_until < now())
   order by created_at limit p_limit;
$$;

-- Progress of a claimed render, renewing the claim. Returns 'processing' while the job is still this engine's to
-- render; otherwise its status ('canceled', 'failed', ...), or 'released' when another engine holds it now.
create or replace function engine_progress(
  p_job uuid, p_engine text, p_progress double precision, p_lease_s int
) returns text language plpgsql as $$
declare
  st job_status;
begin
  update video_jobs set progress = coalesce(p_progress, progress),
                        engine_lease_until = now() + make_interval(secs => p_lease_s)
   where id = p_job and status = 'processing' and engine_id = p_engine;
  if found then
    return 'processing';
  end if;
  select status into st from video_jobs where id = p_job;
  if not found then
    raise exception 'job % not found', p_job using errcode = 'I2V01';
  end if;
  return case when st = 'processing' then 'released' else st::text end;
end $$;

-- Claim the completion of a rendered job before its files are moved into storage: true only while the job is
-- still processing under this engine's claim. From then until p_lease_s passes (or the job completes), cancel_job
-- refuses.
create or replace function begin_engine_completion(p_job uuid, p_engine text, p_lease_s int) returns boolean
language plpgsql as $$
begin
  update video_jobs set finishing_until = now() + make_interval(secs => p_lease_s),
                        engine_lease_until = now() + make_interval(secs => p_lease_s)
   where id = p_job and status = 'processing' and engine_id = p_engine;
  return found;
end $$;

-- An engine that stops before finishing gives its claim back, so the next engine takes the job at once.
create or replace function release_engine_job(p_job uuid, p_engine text) returns boolean
language plpgsql as $$
begin
  update video_jobs set engine_lease_until = null, finishing_until = null
   where id = p_job and status = 'processing' and engine_id = p_engine;
  return found;
end $$;
