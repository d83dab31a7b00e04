-- Stored procedures: every state change and every credit movement is one call to one of these.

-- The first authenticated request creates the account and records the signup credits in the ledger.
create or replace function ensure_account(p_user uuid, p_signup_credits bigint) returns void
language plpgsql as $$
begin
  insert into accounts (user_id) values (p_user) on conflict (user_id) do nothing;
  if found and p_signup_credits > 0 then
    insert into credit_ledger (user_id, delta, kind, reason, external_ref)
    values (p_user, p_signup_credits, 'signup', 'signup credits', 'signup:' || p_user);
  end if;
end $$;

-- Start a billed generation: idempotency check, balance check, debit, job insert, idempotency record.
-- Outcomes: created | replay | mismatch | in_progress | insufficient | upload_missing | upload_unverified.
-- p_hold_s > 0 keeps the key in_progress until mark_submitted (the provider submission runs after commit).
create or replace function start_generation(
  p_user uuid, p_endpoint text, p_key text, p_fingerprint text,
  p_model_id uuid, p_model_slug text, p_provider text,
  p_prompt text, p_image_url text, p_settings jsonb, p_cost bigint,
  p_signup_credits bigint, p_ttl_s int, p_hold_s int, p_upload_sha text
) returns jsonb language plpgsql as $$
declare
  rec     idempotency_keys%rowtype;
  up      uploads%rowtype;
  bal     bigint;
  owed    bigint;
  job     uuid;
  body    jsonb;
begin
  if p_cost < 0 then
    raise exception 'cost must not be negative' using errcode = 'I2V04';
  end if;
  perform ensure_account(p_user, p_signup_credits);
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

  if p_upload_sha is not null then
    select * into up from uploads where user_id = p_user and sha256 = p_upload_sha;
    if not found then
      return jsonb_build_object('outcome', 'upload_missing');
    elsif up.verified_at is null then
      return jsonb_build_object('outcome', 'upload_unverified');
    end if;
  end if;
  select balance, debt into bal, owed from accounts where user_id = p_user for update;
  if bal < p_cost or owed > 0 then
    return jsonb_build_object('outcome', 'insufficient', 'balance', bal, 'cost', p_cost, 'debt', owed);
  end if;
  insert into video_jobs (user_id, model_id, model_slug, provider, prompt, image_url, settings, credits_used)
  values (p_user, p_model_id, p_model_slug, p_provider, coalesce(p_prompt, ''), p_image_url, p_settings, p_cost)
  returning id into job;
  if p_cost > 0 then
    insert into credit_ledger (user_id, delta, kind, reason, job_id)
    values (p_user, -p_cost, 'generation', 'video generation (' || p_model_slug || ')', job);
  end if;
  body := jsonb_build_object('job_id', job, 'status', 'pending', 'credits_used', p_cost);
  insert into idempotency_keys (user_id, endpoint, key, fingerprint, state, response_status, response_body,
                                job_id, locked_until, expires_at)
  values (p_user, p_endpoint, p_key, p_fingerprint, case when p_hold_s > 0 then 'in_progress' else 'done' end,
          202, body, job, now() + make_interval(secs => greatest(p_hold_s, 0)), now() + make_interval(secs => p_ttl_s));
  return jsonb_build_object('outcome', 'created', 'status', 202, 'body', body, 'balance', bal - p_cost);
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

-- Refund a job's debit exactly once (the unique (job_id, kind) index makes a second refund impossible).
create or replace function _refund_job(p_job uuid, p_reason text) returns bigint
language plpgsql as $$
declare
  j video_jobs%rowtype;
  debited bigint;
begin
  select * into j from video_jobs where id = p_job;
  select -delta into debited from credit_ledger where job_id = p_job and kind = 'generation';
  if debited is null or debited <= 0 then
    return 0;
  end if;
  insert into credit_ledger (user_id, delta, kind, reason, job_id)
  values (j.user_id, debited, 'refund', p_reason, p_job)
  on conflict (job_id, kind) where job_id is not null do nothing;
  return case when found then debited else 0 end;
end $$;

-- pending|processing -> failed, refunding the debit once. Failing a failed job is a no-op (false).
create or replace function fail_job(p_job uuid, p_error text) returns boolean
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
                        finished_at = now()
   where id = p_job;
  perform _refund_job(p_job, 'refund: generation failed');
  update idempotency_keys set state = 'done' where job_id = p_job and state = 'in_progress';
  return true;
end $$;

-- The owner cancels: pending|processing -> canceled with a refund. Canceling twice is a no-op (false).
create or replace function cancel_job(p_user uuid, p_job uuid) returns boolean
language plpgsql as $$
declare
  st job_status;
begin
  select status into st from video_jobs where id = p_job and user_id = p_user for update;
  if not found then
    raise exception 'job % not found', p_job using errcode = 'I2V01';
  elsif st = 'canceled' then
    return false;
  elsif st not in ('pending', 'processing') then
    raise exception 'job % is % and cannot be canceled', p_job, st using errcode = 'I2V03';
  end if;
  update video_jobs set status = 'canceled', finished_at = now() where id = p_job;
  perform _refund_job(p_job, 'refund: canceled');
  update idempotency_keys set state = 'done' where job_id = p_job and state = 'in_progress';
  return true;
end $$;

create or replace function set_job_progress(p_job uuid, p_progress double precision) returns void
language sql as $$
  update video_jobs set progress = p_progress where id = p_job and status = 'processing';
$$;

-- Balance, debt and recent ledger entries; creates the account on first use.
create or replace function get_credits(p_user uuid, p_signup_credits bigint, p_limit int) returns jsonb
language plpgsql as $$
begin
  perform ensure_account(p_user, p_signup_credits);
  return jsonb_build_object(
    'balance', (select balance from accounts where user_id = p_user),
    'debt', (select debt from accounts where user_id = p_user),
    'entries', coalesce((
      select jsonb_agg(e order by e.id desc) from (
        select id, delta, kind, reason, job_id, created_at from credit_ledger
         where user_id = p_user order by id desc limit p_limit) e), '[]'::jsonb));
end $$;

-- An operator grant (or a correction): one ledger row, idempotent on p_ref when given.
create or replace function grant_credits(p_user uuid, p_amount bigint, p_reason text, p_ref text) returns bigint
language plpgsql as $$
begin
  if p_amount = 0 then
    raise exception 'amount must not be zero' using errcode = 'I2V04';
  end if;
  perform ensure_account(p_user, 0);
  insert into credit_ledger (user_id, delta, kind, reason, external_ref)
  values (p_user, p_amount, 'grant', coalesce(p_reason, 'grant'), p_ref)
  on conflict (external_ref) do nothing;
  return (select balance from accounts where user_id = p_user);
exception when check_violation then
  raise exception 'balance would go negative' using errcode = 'I2V02';
end $$;

-- Users whose cached balance differs from the sum of their ledger (should always be empty).
create or replace function ledger_mismatches() returns table (user_id uuid, balance bigint, ledger_sum bigint)
language sql stable as $$
  select a.user_id, a.balance, coalesce(sum(l.delta), 0)::bigint
    from accounts a left join credit_ledger l on l.user_id = a.user_id
   group by a.user_id, a.balance
  having a.balance <> coalesce(sum(l.delta), 0);
$$;

-- Upload cache: the user's stored object for a content hash, or a new pending record.
create or replace function begin_upload(
  p_user uuid, p_sha256 text, p_content_type text, p_size bigint, p_key text, p_signup_credits bigint
) returns jsonb language plpgsql as $$
declare
  u uploads%rowtype;
begin
  perform ensure_account(p_user, p_signup_credits);
  insert into uploads (user_id, sha256, content_type, size, storage_key)
  values (p_user, p_sha256, p_content_type, p_size, p_key)
  on conflict (user_id, sha256) do update
     set content_type = excluded.content_type, size = excluded.size, created_at = now()
   where uploads.verified_at is null
  returning * into u;
  if not found then
    select * into u from uploads where user_id = p_user and sha256 = p_sha256;
  end if;
  return to_jsonb(u);
end $$;

create or replace function get_upload(p_user uuid, p_sha256 text) returns jsonb
language sql stable as $$
  select to_jsonb(u) from uploads u where user_id = p_user and sha256 = p_sha256;
$$;

create or replace function verify_upload(p_user uuid, p_sha256 text, p_width int, p_height int) returns void
language sql as $$
  update uploads set verified_at = coalesce(verified_at, now()), width = p_width, height = p_height
   where user_id = p_user and sha256 = p_sha256;
$$;

-- Local-engine jobs left pending or processing (e.g. by a crash), oldest first.
create or replace function unfinished_jobs(p_provider text, p_limit int) returns setof uuid
language sql stable as $$
  select id from video_jobs where provider = p_provider and status in ('pending', 'processing')
   order by created_at limit p_limit;
$$;

-- Everything a worker needs to run a job.
create or replace function job_for_worker(p_job uuid) returns jsonb
language sql stable as $$
  select jsonb_build_object('job_id', id, 'user_id', user_id, 'status', status, 'model', model_slug,
                            'provider', provider, 'prompt', prompt, 'image_url', image_url, 'settings', settings)
    from video_jobs where id = p_job;
$$;

create or replace function purge_idempotency_keys() returns int
language sql as $$
  with d as (delete from idempotency_keys where expires_at <= now() returning 1) select count(*)::int from d;
$$;

-- The model catalog is data kept in the code's registry; this writes one row of it.
create or replace function upsert_model(
  p_id uuid, p_slug text, p_name text, p_provider text, p_endpoint text, p_available boolean,
  p_reason text, p_requires_image boolean, p_capabilities jsonb, p_price jsonb
) returns void language sql as $$
  insert into models (id, slug, name, provider, endpoint, available, unavailable_reason, requires_image,
                      capabilities, price)
  values (p_id, p_slug, p_name, p_provider, p_endpoint, p_available, p_reason, p_requires_image,
          p_capabilities, p_price)
  on conflict (id) do update set slug = excluded.slug, name = excluded.name, provider = excluded.provider,
    endpoint = excluded.endpoint, available = excluded.available, unavailable_reason = excluded.unavailable_reason,
    requires_image = excluded.requires_image, capabilities = excluded.capabilities, price = excluded.price,
    updated_at = now();
$$;
