-- Live definitions, re-applied after the numbered migrations on every migrate (shared/migrations.py explains the
-- rules): edit a procedure here, never in a migration.
--
-- Video jobs: the billed start of a generation, transitions between statuses (each logged in job_events),
-- refunds, and the reads of one job or a page of them.

create or replace function video_jobs_log_event() returns trigger language plpgsql as $$
begin
  if tg_op = 'INSERT' then
    insert into job_events (job_id, from_status, to_status) values (new.id, null, new.status);
  elsif new.status is distinct from old.status then
    insert into job_events (job_id, from_status, to_status, detail) values (new.id, old.status, new.status, new.error_message);
  end if;
  return null;
end $$;
-- Created when missing (re-applying waits for no writer); a numbered migration drops it to change it.
do $$
begin
  if not exists (select from pg_trigger
                  where tgrelid = 'video_jobs'::regclass and tgname = 'video_jobs_events') then
    create trigger video_jobs_events after insert or update of status on video_jobs
      for each row execute function video_jobs_log_event();
  end if;
end $$;

-- Start a billed generation: API key, idempotency, rate limit, campaign budget and balance checks, debit, job
-- insert, idempotency record: one call. Outcomes: created | replay | mismatch | in_progress | insufficient |
-- upload_missing | upload_unverified | key_revoked | rate_limited | campaign_missing | campaign_archived |
-- budget_exceeded. A replay is answered before the rate limit is looked at; a refused request changes nothing
-- (no debit, no idempotency record, no use of the rate limit).
-- p_hold_s > 0 keeps the key in_progress until mark_submitted (the provider submission runs after commit).
-- p_api_key: the key the request was authenticated with (must still be live; its last use is recorded).
-- p_rate_key/p_rate_limit/p_rate_window_s: the caller's limiter for this endpoint (null: no limit).
create or replace function start_generation(
  p_user uuid, p_endpoint text, p_key text, p_fingerprint text,
  p_model_id uuid, p_model_slug text, p_provider text,
  p_prompt text, p_image_url text, p_settings jsonb, p_cost bigint,
  p_signup_credits bigint, p_ttl_s int, p_hold_s int, p_upload_sha text, p_provider_endpoint text default null,
  p_kind text default 'video', p_input_images jsonb default '[]'::jsonb, p_stage text default null,
  p_image_credits bigint default 0, p_next_route jsonb default null,
  p_campaign uuid default null, p_api_key uuid default null, p_rate_key text default null,
  p_rate_limit int default null, p_rate_window_s int default null, p_webhook_url text default null
) returns jsonb language plpgsql as $$
declare
  rec     idempotency_keys%rowtype;
  up      uploads%rowtype;
  camp    campaigns%rowtype;
  bal     bigint;
  owed    bigint;
  job     uuid;
  body    jsonb;
  rate    jsonb;
begin
  if p_cost < 0 then
    raise exception 'cost must not be negative' using errcode = 'I2V04';
  end if;
  perform ensure_account(p_user, p_signup_credits);
  if p_api_key is not null and not api_key_usable(p_api_key, p_user) then
    return jsonb_build_object('outcome', 'key_revoked');
  end if;
  -- A concurrent request with the same key is still inside its transaction: answer "in progress" at once.
  if not pg_try_advisory_xact_lock(hashtextextended(p_user::text || ' ' || p_endpoint || ' ' || p_key, 0)) then
    return jsonb_build_object('outcome', 'in_progress');
  end if;
  select * into rec from idempotency_keys
   where user_id = p_user and endpoint = p_endpoint and key = p_key for update;
  if found and rec.expires_at <= now() then
    delete from idempotency_keys where user_id = p_user and endpoint = p_endpoint and key = p_key;
  elsif found then
    if rec.fingerprint <> p_fingerprint then
      return jsonb_build_object('outcome', 'mismatch');
    elsif rec.state = 'in_progress' and rec.locked_until > now() then
      return jsonb_build_object('outcome', 'in_progress', 'job_id', rec.job_id);
    end if;
    -- done, or an in-progress record whose holder died: the debit and the job already exist; replay.
    return jsonb_build_object('outcome', 'replay', 'status', rec.response_status, 'body', rec.response_body);
  end if;
  if p_rate_key is not null then
    rate := rate_limit_check(p_rate_key, p_rate_limit, p_rate_window_s);
    if not (rate ->> 'allowed')::boolean then
      return jsonb_build_object('outcome', 'rate_limited', 'rate', rate);
    end if;
  end if;

  if p_upload_sha is not null then
    select * into up from uploads where user_id = p_user and sha256 = p_upload_sha;
    if not found then
      return jsonb_build_object('outcome', 'upload_missing');
    elsif up.verified_at is null then
      return jsonb_build_object('outcome', 'upload_unverified');
    end if;
  end if;
  -- The account row first, then the campaign's: refunds lock them in the same order (credit_ledger's triggers).
  select balance, debt into bal, owed from accounts where user_id = p_user for update;
  if p_campaign is not null then
    select * into camp from campaigns where id = p_campaign and user_id = p_user for update;
    if not found then
      return jsonb_build_object('outcome', 'campaign_missing');
    elsif camp.archived then
      return jsonb_build_object('outcome', 'campaign_archived');
    elsif camp.budget_credits is not null and camp.budget_credits - camp.credits_spent < p_cost then
      return jsonb_build_object('outcome', 'budget_exceeded', 'cost', p_cost, 'budget', camp.budget_credits,
                                'remaining', greatest(camp.budget_credits - camp.credits_spent, 0));
    end if;
  end if;
  if bal < p_cost or owed > 0 then
    return jsonb_build_object('outcome', 'insufficient', 'balance', bal, 'cost', p_cost, 'debt', owed);
  end if;
  insert into video_jobs (user_id, model_id, model_slug, provider, provider_endpoint, prompt, image_url, settings,
                          credits_used, kind, input_images, stage, image_credits, next_route, campaign_id,
                          client_id, api_key_id, webhook_url)
  values (p_user, p_model_id, p_model_slug, p_provider, p_provider_endpoint, coalesce(p_prompt, ''), p_image_url,
          p_settings, p_cost, p_kind, coalesce(p_input_images, '[]'::jsonb), p_stage, coalesce(p_image_credits, 0),
          p_next_route, p_campaign, camp.client_id, p_api_key, p_webhook_url)
  returning id into job;
  if p_cost > 0 then
    insert into credit_ledger (user_id, delta, kind, reason, job_id)
    values (p_user, -p_cost, 'generation', p_kind || ' generation (' || p_model_slug || ')', job);
  end if;
  if p_rate_key is not null then
    perform rate_limit_take(p_rate_key, p_rate_limit, p_rate_window_s);
  end if;
  body := jsonb_build_object('job_id', job, 'status', 'pending', 'credits_used', p_cost);
  insert into idempotency_keys (user_id, endpoint, key, fingerprint, state, response_status, response_body,
                                job_id, locked_until, expires_at)
  values (p_user, p_endpoint, p_key, p_fingerprint, case when p_hold_s > 0 then 'in_progress' else 'done' end,
          202, body, job, now() + make_interval(secs => greatest(p_hold_s, 0)), now() + make_interval(secs => p_ttl_s));
  return jsonb_build_object('outcome', 'created', 'status', 202, 'body', body, 'balance', bal - p_cost,
                            'rate', rate);
end $$;

-- Raise I2V03 unless the job is in one of the allowed states; returns the current status.
create or replace function _job_status_for_update(p_job uuid) returns job_status
language plpgsql as $$
declare
  st job_status;
begin
  select status into st from video_jobs where id = p_job for update;
  if not found then
    raise exception 'job % not found', p_job using errcode = 'I2V01';
  end if;
  return st;
end $$;

-- pending -> processing (and progress updates while processing). Returns false when already terminal
-- in the same direction is impossible: a terminal job refuses with I2V03.
create or replace function mark_processing(p_job uuid, p_progress double precision) returns boolean
language plpgsql as $$
declare
  st job_status := _job_status_for_update(p_job);
begin
  if st not in ('pending', 'processing') then
    raise exception 'job % is % and cannot move to processing', p_job, st using errcode = 'I2V03';
  end if;
  update video_jobs set status = 'processing', progress = coalesce(p_progress, progress),
                        started_at = coalesce(started_at, now())
   where id = p_job;
  return st = 'pending';
end $$;

create or replace function set_job_progress(p_job uuid, p_progress double precision) returns void
language sql as $$
  update video_jobs set progress = p_progress where id = p_job and status = 'processing';
$$;

-- Refund a job's debit exactly once (the unique (job_id, kind) index makes a second refund impossible).
create or replace function _refund_job(p_job uuid, p_reason text) returns bigint
language plpgsql as $$
declare
  j video_jobs%rowtype;
  debited bigint;
begin
  select * into j from video_jobs where id = p_job;
  select -delta into debited from credit_ledger where job_id = p_job and kind = 'generation';
  if j.stage = 'video' then
    debited := debited - j.image_credits;  -- the start image was made and is kept: only the video is refunded
  end if;
  if debited is null or debited <= 0 then
    return 0;
  end if;
  insert into credit_ledger (user_id, delta, kind, reason, job_id)
  values (j.user_id, debited, 'refund', p_reason, p_job)
  on conflict (job_id, kind) where job_id is not null do nothing;
  return case when found then debited else 0 end;
end $$;

-- pending|processing -> failed, refunding the debit once, remembering why when p_kind is given (provider
-- verdict, submit, deadline, mirror, input). Failing a failed job is a no-op (false).
create or replace function fail_job(p_job uuid, p_error text, p_kind text default null) returns boolean
language plpgsql as $$
declare
  st job_status := _job_status_for_update(p_job);
begin
  if st = 'failed' then
    return false;
  elsif st not in ('pending', 'processing') then
    raise exception 'job % is % and cannot move to failed', p_job, st using errcode = 'I2V03';
  end if;
  update video_jobs set status = 'failed', error_message = left(coalesce(p_error, 'generation failed'), 2000),
                        failure_kind = coalesce(p_kind, failure_kind), finished_at = now()
   where id = p_job;
  perform _refund_job(p_job, 'refund: generation failed');
  update idempotency_keys set state = 'done' where job_id = p_job and state = 'in_progress';
  return true;
end $$;

-- pending|processing -> completed; and the late-delivery case (the late-success policy, providers.sql).
-- Completing twice is a no-op.
create or replace function complete_job(
  p_job uuid, p_video_key text, p_thumbnail_key text, p_source_url text, p_result jsonb
) returns boolean language plpgsql as $$
declare
  j video_jobs%rowtype;
begin
  select * into j from video_jobs where id = p_job for update;
  if not found then
    raise exception 'job % not found', p_job using errcode = 'I2V01';
  elsif j.status = 'completed' then
    return false;
  elsif j.status = 'failed' and j.failure_kind is distinct from 'deadline' then
    raise exception 'job % is failed and cannot move to completed', p_job using errcode = 'I2V03';
  elsif j.status = 'canceled' and j.result_url is null then
    raise exception 'job % is canceled and cannot move to completed', p_job using errcode = 'I2V03';
  end if;
  update video_jobs set status = 'completed', progress = 1, video_key = p_video_key,
                        thumbnail_key = p_thumbnail_key, source_video_url = coalesce(p_source_url, result_url),
                        result = coalesce(result, '{}'::jsonb) || coalesce(p_result, '{}'::jsonb),
                        error_message = null, mirror_lease_until = null, queue_position = null,
                        late_delivery = j.status in ('failed', 'canceled'), finished_at = now()
   where id = p_job;
  return true;
end $$;

-- An image job's completion: complete_job (same rules, late delivery included), then one images row per image,
-- in order. Completing twice is a no-op.
create or replace function complete_image_job(
  p_job uuid, p_images jsonb, p_thumbnail_key text, p_source_url text, p_result jsonb
) returns boolean language plpgsql as $$
declare
  owner uuid;
  job_kind text;
  img jsonb;
  n int := 0;
begin
  select user_id, kind into owner, job_kind from video_jobs where id = p_job;
  if not found then
    raise exception 'job % not found', p_job using errcode = 'I2V01';
  elsif job_kind <> 'image' then
    raise exception 'job % makes a video, not images', p_job using errcode = 'I2V03';
  elsif jsonb_typeof(p_images) is distinct from 'array' or jsonb_array_length(p_images) = 0 then
    raise exception 'an image job completes with at least one image' using errcode = 'I2V04';
  end if;
  if not complete_job(p_job, null, p_thumbnail_key, p_source_url, p_result) then
    return false;
  end if;
  for img in select value from jsonb_array_elements(p_images) loop
    insert into images (user_id, job_id, position, key, content_type, width, height)
    values (owner, p_job, n, img ->> 'key', img ->> 'content_type', (img ->> 'width')::int, (img ->> 'height')::int);
    n := n + 1;
  end loop;
  return true;
end $$;

-- A video from a prompt alone, its start image made: keep the image (images row 0 of the job), then move the job
-- to its video stage at next_route, pending, with everything the first stage's provider left cleared. False when
-- the job is not in its image stage any more (canceled or failed meanwhile, or advanced already).
create or replace function advance_to_video(p_job uuid, p_image jsonb, p_image_url text) returns boolean
language plpgsql as $$
declare
  j video_jobs%rowtype;
begin
  select * into j from video_jobs where id = p_job for update;
  if not found then
    raise exception 'job % not found', p_job using errcode = 'I2V01';
  elsif j.stage is distinct from 'image' or j.status not in ('pending', 'processing') then
    return false;
  end if;
  insert into images (user_id, job_id, position, key, content_type, width, height)
  values (j.user_id, p_job, 0, p_image ->> 'key', p_image ->> 'content_type', (p_image ->> 'width')::int,
          (p_image ->> 'height')::int);
  update video_jobs
     set stage = 'video', status = 'pending', image_url = p_image_url,
         provider = j.next_route ->> 'provider', provider_endpoint = j.next_route ->> 'endpoint',
         provider_request_id = null, provider_urls = null, provider_status = null, provider_logs = null,
         result_url = null, submit_attempted_at = null, progress = 0, queue_position = null, next_poll_at = null,
         engine_id = null, engine_lease_until = null, finishing_until = null, mirror_lease_until = null,
         mirror_attempts = 0, result = coalesce(j.result, '{}'::jsonb) || jsonb_build_object('image_stage', j.result)
   where id = p_job;
  return true;
end $$;

-- The last frame of a finished video, kept as its image -1 (a later video can continue the shot from it).
create or replace function add_last_frame(p_job uuid, p_key text, p_content_type text, p_width int, p_height int)
returns void language sql as $$
  insert into images (user_id, job_id, position, key, content_type, width, height)
  select user_id, id, -1, p_key, p_content_type, p_width, p_height from video_jobs
   where id = p_job and kind = 'video' and status = 'completed'
  on conflict (job_id, position) do nothing;
$$;

-- The last frame of one of a user's videos: {"status"} of the job and, once it is kept, {"key", ...}; null when
-- the job is another user's or none.
create or replace function get_last_frame(p_user uuid, p_job uuid) returns jsonb
language sql stable as $$
  select jsonb_build_object('status', j.status, 'kind', j.kind, 'key', i.key)
    from video_jobs j left join images i on i.job_id = j.id and i.position = -1
   where j.id = p_job and j.user_id = p_user;
$$;

-- One of a user's images (null when it is another user's or none).
create or replace function get_image(p_user uuid, p_image uuid) returns jsonb
language sql stable as $$
  select jsonb_build_object('image_id', id, 'job_id', job_id, 'key', key, 'content_type', content_type,
                            'width', width, 'height', height, 'created_at', created_at)
    from images where id = p_image and user_id = p_user;
$$;

-- The owner cancels: pending|processing -> canceled with a refund. Canceling twice is a no-op (false). A job whose
-- completion an engine has claimed cannot be canceled any more (its video is being delivered).
create or replace function cancel_job(p_user uuid, p_job uuid) returns boolean
language plpgsql as $$
declare
  j video_jobs%rowtype;
begin
  select * into j from video_jobs where id = p_job and user_id = p_user for update;
  if not found then
    raise exception 'job % not found', p_job using errcode = 'I2V01';
  elsif j.status = 'canceled' then
    return false;
  elsif j.status not in ('pending', 'processing') then
    raise exception 'job % is % and cannot be canceled', p_job, j.status using errcode = 'I2V03';
  elsif j.finishing_until > now() then
    raise exception 'job % is finished and its video is being delivered; it cannot be canceled', p_job
      using errcode = 'I2V03';
  end if;
  update video_jobs set status = 'canceled', finished_at = now() where id = p_job;
  perform _refund_job(p_job, 'refund: canceled');
  update idempotency_keys set state = 'done' where job_id = p_job and state = 'in_progress';
  return true;
end $$;

-- One job as the code reads it (shared/records.py, Job): the one projection of a video_jobs row.
create or replace function job_record(j video_jobs) returns jsonb
language sql stable as $$
  select jsonb_build_object(
    'job_id', j.id, 'user_id', j.user_id, 'status', j.status, 'model', j.model_slug, 'provider', j.provider,
    'endpoint', j.provider_endpoint, 'kind', j.kind, 'input_images', j.input_images, 'stage', j.stage,
    'image_credits', j.image_credits, 'next_route', j.next_route,
    'images', (select coalesce(jsonb_agg(jsonb_build_object('image_id', i.id, 'key', i.key,
                                                           'content_type', i.content_type, 'width', i.width,
                                                           'height', i.height) order by i.position), '[]'::jsonb)
                 from images i where i.job_id = j.id and i.position >= 0),
    'prompt', j.prompt, 'image_url', j.image_url, 'settings', j.settings, 'credits_used', j.credits_used,
    'progress', j.progress, 'video_key', j.video_key, 'thumbnail_key', j.thumbnail_key,
    'error_message', j.error_message, 'failure_kind', j.failure_kind, 'queue_position', j.queue_position,
    'logs', j.provider_logs, 'late_delivery', j.late_delivery, 'request_id', j.provider_request_id,
    'urls', j.provider_urls, 'provider_status', j.provider_status, 'result_url', j.result_url,
    'mirror_attempts', j.mirror_attempts, 'output_urls', j.result -> 'output_urls',
    'campaign_id', j.campaign_id, 'client_id', j.client_id,
    'next_poll_at', j.next_poll_at, 'created_at', j.created_at, 'updated_at', j.updated_at,
    'finished_at', j.finished_at);
$$;

-- One of a user's jobs (null when it is another user's or none).
create or replace function get_job(p_user uuid, p_job uuid) returns jsonb
language sql stable as $$
  select job_record(j) from video_jobs j where id = p_job and user_id = p_user;
$$;

-- Local-engine jobs left pending or processing (e.g. by a crash), oldest first.
create or replace function unfinished_jobs(p_provider text, p_limit int) returns setof uuid
language sql stable as $$
  select id from video_jobs where provider = p_provider and status in ('pending', 'processing')
   order by created_at limit p_limit;
$$;

-- One page of a user's jobs, newest first (ties in created_at broken by id, descending). The cursor is the
-- (created_at, id) of the last job of the previous page; both null for the first page. Returns
-- {"jobs": [...], "next": {"created_at", "id"} | null}; "next" is null on the last page. With p_campaign (or
-- p_client), only the jobs of that campaign (or client).
create or replace function list_videos(
  p_user uuid, p_status job_status, p_limit int, p_cursor_created timestamptz, p_cursor_id uuid,
  p_kind text default null, p_campaign uuid default null, p_client uuid default null
) returns jsonb language plpgsql stable as $$
declare
  after_created timestamptz := coalesce(p_cursor_created, 'infinity');
  after_id      uuid := coalesce(p_cursor_id, 'ffffffff-ffff-ffff-ffff-ffffffffffff');
  page          jsonb;
  total         int;
begin
  if p_limit is null or p_limit < 1 or p_limit > {{LIST_PAGE_LIMIT}} then
    raise exception 'limit must be between 1 and {{LIST_PAGE_LIMIT}}' using errcode = 'I2V04';
  end if;
  if (p_cursor_created is null) <> (p_cursor_id is null) then
    raise exception 'a cursor needs both created_at and id' using errcode = 'I2V04';
  end if;
  if p_campaign is not null or p_client is not null then
    select jsonb_agg(j.rec order by j.created_at desc, j.id desc), count(*) into page, total from (
      select job_record(v) as rec, created_at, id
        from video_jobs v
       where user_id = p_user and (p_campaign is null or campaign_id = p_campaign)
         and (p_client is null or client_id = p_client) and (p_status is null or status = p_status)
         and (p_kind is null or kind = p_kind)
         and (created_at, id) < (after_created, after_id)
       order by created_at desc, id desc
       limit p_limit + 1) j;
  elsif p_status is null then
    select jsonb_agg(j.rec order by j.created_at desc, j.id desc), count(*) into page, total from (
      select job_record(v) as rec, created_at, id
        from video_jobs v
       where user_id = p_user and (created_at, id) < (after_created, after_id) and (p_kind is null or kind = p_kind)
       order by created_at desc, id desc
       limit p_limit + 1) j;
  else
    select jsonb_agg(j.rec order by j.created_at desc, j.id desc), count(*) into page, total from (
      select job_record(v) as rec, created_at, id
        from video_jobs v
       where user_id = p_user and status = p_status and (created_at, id) < (after_created, after_id)
         and (p_kind is null or kind = p_kind)
       order by created_at desc, id desc
       limit p_limit + 1) j;
  end if;
  if total > p_limit then
    page := page - p_limit;  -- drop the look-ahead row; the last kept row is the next cursor
    return jsonb_build_object('jobs', page, 'next', jsonb_build_object(
      'created_at', page -> (p_limit - 1) -> 'created_at', 'id', page -> (p_limit - 1) -> 'job_id'));
  end if;
  return jsonb_build_object('jobs', coalesce(page, '[]'::jsonb), 'next', null);
end $$;

-- A user's job counts, one key per status (zero included).
create or replace function job_counts(p_user uuid) returns jsonb
language sql stable as $$
  select jsonb_object_agg(s::text, coalesce(c.n, 0) order by s)
    from unnest(enum_range(null::job_status)) s
    left join (select status, count(*) as n from video_jobs where user_id = p_user group by status) c
      on c.status = s;
$$;
