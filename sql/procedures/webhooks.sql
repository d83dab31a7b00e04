-- Live definitions, re-applied after the numbered migrations on every migrate (shared/migrations.py explains the
-- rules): edit a procedure here, never in a migration.
--
-- Outgoing webhooks: a job's change of status queues one delivery per subscribed endpoint of its owner (and one to
-- the request's own webhook_url) in the same transaction as the change, so an event is never lost and never
-- holds the job up. Senders (shared/webhooks/) claim due deliveries, sign and send them, and record each attempt.
-- Queuing one notifies the i2v_webhooks channel, so a listening sender sends it at once.

-- The event a job's new status is, as the body that is signed and sent (thin: ids and status; details are read
-- with get-video-status).
create or replace function job_event_payload(j video_jobs, p_event text) returns text
language sql stable as $$
  select jsonb_build_object(
    'type', p_event,
    'timestamp', to_char(now() at time zone 'utc', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
    'data', jsonb_build_object('job_id', j.id, 'status', j.status, 'model', j.model_slug,
                               'campaign_id', j.campaign_id, 'client_id', j.client_id,
                               'credits_used', j.credits_used, 'error_message', j.error_message))::text;
$$;

create or replace function video_jobs_queue_webhooks() returns trigger language plpgsql as $$
declare
  event  text := 'job.' || new.status::text;
  body   text;
  queued boolean;
begin
  if new.status in ('pending') then
    return null;
  end if;
  body := job_event_payload(new, event);
  insert into webhook_deliveries (user_id, endpoint_id, url, event_type, job_id, payload)
  select new.user_id, e.id, e.url, event, new.id, body
    from webhook_endpoints e
   where e.user_id = new.user_id and e.disabled_at is null and event = any(e.events);
  queued := found;
  if new.webhook_url is not null then
    insert into webhook_deliveries (user_id, endpoint_id, url, event_type, job_id, payload)
    values (new.user_id, null, new.webhook_url, event, new.id, body);
    queued := true;
  end if;
  if queued then
    perform pg_notify('i2v_webhooks', '');  -- a listening sender wakes as this transaction commits
  end if;
  return null;
end $$;
-- Created when missing (re-applying waits for no writer); a numbered migration drops it to change it.
do $$
begin
  if not exists (select from pg_trigger
                  where tgrelid = 'video_jobs'::regclass and tgname = 'video_jobs_webhooks') then
    create trigger video_jobs_webhooks after update of status on video_jobs
      for each row when (old.status is distinct from new.status) execute function video_jobs_queue_webhooks();
  end if;
end $$;

-- An endpoint as the API shows it, with its health: deliveries still pending, those that failed for good in the
-- last 24 hours, the last one delivered, and the newest delivery whose last attempt failed (null once it went
-- through, or when none failed).
create or replace function webhook_endpoint_record(e webhook_endpoints) returns jsonb
language sql stable as $$
  select jsonb_build_object('id', e.id, 'url', e.url, 'events', to_jsonb(e.events),
                            'secret_prefix', left(e.secret, 10), 'created_at', e.created_at,
                            'disabled_at', e.disabled_at, 'disabled_reason', e.disabled_reason,
                            'failing_since', e.failing_since,
                            'health', jsonb_build_object(
                              'pending', (select count(*) from webhook_deliveries d
                                           where d.endpoint_id = e.id and d.state = 'pending'),
                              'failed_last_24h', (select count(*) from webhook_deliveries d
                                                   where d.endpoint_id = e.id and d.state = 'failed'
                                                     and d.created_at > now() - interval '24 hours'),
                              'last_delivered_at', (select max(d.delivered_at) from webhook_deliveries d
                                                     where d.endpoint_id = e.id),  -- kept when sent again
                              'last_error', (select jsonb_build_object(
                                                'delivery_id', d.id, 'state', d.state, 'status', d.last_status,
                                                'error', d.last_error,
                                                'at', (select max(a.attempted_at) from webhook_attempts a
                                                        where a.delivery_id = d.id))
                                               from webhook_deliveries d
                                              where d.endpoint_id = e.id and d.last_error is not null
                                              order by d.created_at desc limit 1)));
$$;

create or replace function create_webhook_endpoint(
  p_user uuid, p_url text, p_events jsonb, p_secret text, p_signup_credits bigint
) returns jsonb language plpgsql as $$
declare
  e webhook_endpoints%rowtype;
begin
  perform ensure_account(p_user, p_signup_credits);
  insert into webhook_endpoints (user_id, url, events, secret) values (p_user, p_url, array(select jsonb_array_elements_text(p_events)), p_secret)
  returning * into e;
  return webhook_endpoint_record(e);
end $$;

create or replace function list_webhook_endpoints(p_user uuid) returns jsonb
language sql stable as $$
  select coalesce(jsonb_agg(webhook_endpoint_record(e) order by e.created_at desc, e.id desc), '[]'::jsonb)
    from webhook_endpoints e where e.user_id = p_user;
$$;

-- Stop sending to one of a user's endpoints (its pending deliveries end as failed), saying why: deleted (by the
-- user), gone (it answered 410) or failing (persistently). An endpoint already disabled keeps its first reason.
-- Null when the user has no such endpoint.
create or replace function disable_webhook_endpoint(p_user uuid, p_endpoint uuid, p_reason text) returns jsonb
language plpgsql as $$
declare
  e webhook_endpoints%rowtype;
begin
  update webhook_endpoints
     set disabled_at = coalesce(disabled_at, now()), disabled_reason = coalesce(disabled_reason, p_reason)
   where id = p_endpoint and user_id = p_user returning * into e;
  if not found then
    return null;
  end if;
  update webhook_deliveries set state = 'failed', last_error = coalesce(last_error, 'endpoint disabled')
   where endpoint_id = p_endpoint and state = 'pending';
  return webhook_endpoint_record(e);
end $$;

-- Send to a disabled endpoint again, from the next event on (deliveries that failed meanwhile can be sent again
-- with redeliver_webhook); enabling an enabled endpoint changes nothing. Null when the user has no such endpoint.
create or replace function enable_webhook_endpoint(p_user uuid, p_endpoint uuid) returns jsonb
language plpgsql as $$
declare
  e webhook_endpoints%rowtype;
begin
  update webhook_endpoints
     set disabled_at = null, disabled_reason = null,
         failing_since = case when disabled_at is null then failing_since end
   where id = p_endpoint and user_id = p_user returning * into e;
  if not found then
    return null;
  end if;
  return webhook_endpoint_record(e);
end $$;

-- The secret that signs deliveries to a user's per-request webhook URLs: the stored one, or p_secret stored now.
create or replace function ensure_webhook_secret(p_user uuid, p_secret text, p_signup_credits bigint)
returns text language plpgsql as $$
begin
  perform ensure_account(p_user, p_signup_credits);
  insert into webhook_secrets (user_id, secret) values (p_user, p_secret) on conflict (user_id) do nothing;
  return (select secret from webhook_secrets where user_id = p_user);
end $$;

-- Claim up to p_limit due deliveries for p_lease_s seconds (concurrent senders take different ones). Each comes
-- with its signing secret (null: the account has no request secret yet).
create or replace function claim_webhook_deliveries(p_limit int, p_lease_s int) returns jsonb
language sql as $$
  with due as (
    select id from webhook_deliveries
     where state = 'pending' and next_attempt_at <= now()
     order by next_attempt_at limit p_limit
       for update skip locked
  ), claimed as (
    update webhook_deliveries d
       set next_attempt_at = now() + make_interval(secs => p_lease_s), attempts = d.attempts + 1
      from due where d.id = due.id
    returning d.*
  )
  select coalesce(jsonb_agg(jsonb_build_object(
           'id', c.id, 'user_id', c.user_id, 'url', c.url, 'payload', c.payload, 'attempts', c.attempts,
           'created_at', c.created_at, 'endpoint_id', c.endpoint_id,
           'secret', coalesce(e.secret, s.secret)) order by c.next_attempt_at), '[]'::jsonb)
    from claimed c
    left join webhook_endpoints e on e.id = c.endpoint_id
    left join webhook_secrets s on s.user_id = c.user_id and c.endpoint_id is null;
$$;

-- Record one attempt. A 2xx delivers; otherwise the next attempt is in p_retry_in_s seconds, or, when that is
-- null or the endpoint has been disabled meanwhile, the delivery has failed for good. An endpoint's run of
-- failures starts at its first failed attempt and ends at its next 2xx. It is disabled when it answered 410 Gone
-- (p_gone) or when its failures have run for p_disable_after_s seconds; the reason is returned then (gone,
-- failing), null otherwise.
create or replace function record_webhook_attempt(
  p_delivery uuid, p_status int, p_error text, p_duration_ms int, p_retry_in_s int, p_gone boolean,
  p_disable_after_s int
) returns text language plpgsql as $$
declare
  ok       boolean := p_status between 200 and 299;
  endpoint uuid;
  e        webhook_endpoints%rowtype;
  d        webhook_deliveries%rowtype;
  reason   text;
begin
  select endpoint_id into endpoint from webhook_deliveries where id = p_delivery;
  if endpoint is not null then
    -- the endpoint row first (as disable_webhook_endpoint takes it), so a concurrent disable is seen
    select * into e from webhook_endpoints where id = endpoint for update;
  end if;
  insert into webhook_attempts (delivery_id, status_code, error, duration_ms)
  values (p_delivery, p_status, left(p_error, 500), p_duration_ms);
  update webhook_deliveries
     set state = case when ok then 'delivered'
                      when p_retry_in_s is null or e.disabled_at is not null then 'failed'
                      else 'pending' end,
         delivered_at = case when ok then now() else delivered_at end,
         next_attempt_at = case when ok or p_retry_in_s is null then next_attempt_at
                                else now() + make_interval(secs => p_retry_in_s) end,
         last_status = p_status, last_error = case when ok then null else left(p_error, 500) end
   where id = p_delivery
  returning * into d;
  if endpoint is null or e.disabled_at is not null then
    return null;
  end if;
  if ok and e.failing_since is not null then  -- written only when the run of failures begins or ends
    update webhook_endpoints set failing_since = null where id = endpoint;
  elsif not ok and e.failing_since is null then
    update webhook_endpoints set failing_since = now() where id = endpoint returning * into e;
  end if;
  reason := case when p_gone then 'gone'
                 when not ok and e.failing_since < now() - make_interval(secs => p_disable_after_s)
                   then 'failing' end;
  if reason is not null then
    perform disable_webhook_endpoint(d.user_id, endpoint, reason);
  end if;
  return reason;
end $$;

create or replace function webhook_delivery_record(d webhook_deliveries) returns jsonb
language sql stable as $$
  select jsonb_build_object(
    'id', d.id, 'webhook_id', 'msg_' || replace(d.id::text, '-', ''), 'endpoint_id', d.endpoint_id,
    'url', d.url, 'event_type', d.event_type, 'job_id', d.job_id, 'state', d.state, 'attempts', d.attempts,
    'next_attempt_at', case when d.state = 'pending' then d.next_attempt_at end,
    'last_status', d.last_status, 'last_error', d.last_error, 'created_at', d.created_at,
    'delivered_at', d.delivered_at,
    'log', coalesce((select jsonb_agg(jsonb_build_object('at', a.attempted_at, 'status', a.status_code,
                                                          'error', a.error, 'duration_ms', a.duration_ms)
                                       order by a.id)
                       from webhook_attempts a where a.delivery_id = d.id), '[]'::jsonb));
$$;

-- One page of a user's deliveries, newest first (keyset on (created_at, id), as list_videos), optionally of one
-- job or one state.
create or replace function list_webhook_deliveries(
  p_user uuid, p_job uuid, p_state text, p_limit int, p_cursor_created timestamptz, p_cursor_id uuid
) returns jsonb language plpgsql stable as $$
declare
  page  jsonb;
  total int;
begin
  if p_limit is null or p_limit < 1 or p_limit > {{LIST_PAGE_LIMIT}} then
    raise exception 'limit must be between 1 and {{LIST_PAGE_LIMIT}}' using errcode = 'I2V04';
  end if;
  select jsonb_agg(x.rec order by x.created_at desc, x.id desc), count(*) into page, total from (
    select webhook_delivery_record(d) as rec, d.created_at, d.id
      from webhook_deliveries d
     where d.user_id = p_user and (p_job is null or d.job_id = p_job) and (p_state is null or d.state = p_state)
       and (d.created_at, d.id) < (coalesce(p_cursor_created, 'infinity'),
                                   coalesce(p_cursor_id, 'ffffffff-ffff-ffff-ffff-ffffffffffff'))
     order by d.created_at desc, d.id desc
     limit p_limit + 1) x;
  if total > p_limit then
    page := page - p_limit;
    return jsonb_build_object('deliveries', page, 'next', jsonb_build_object(
      'created_at', page -> (p_limit - 1) -> 'created_at', 'id', page -> (p_limit - 1) -> 'id'));
  end if;
  return jsonb_build_object('deliveries', coalesce(page, '[]'::jsonb), 'next', null);
end $$;

-- Send one of a user's deliveries again as soon as a sender runs (delivered or failed ones too); null when none.
create or replace function redeliver_webhook(p_user uuid, p_delivery uuid) returns jsonb
language plpgsql as $$
declare
  d webhook_deliveries%rowtype;
begin
  update webhook_deliveries set state = 'pending', next_attempt_at = now()
   where id = p_delivery and user_id = p_user returning * into d;
  if not found then
    return null;
  end if;
  perform pg_notify('i2v_webhooks', '');
  return webhook_delivery_record(d);
end $$;

-- A test event for one of a user's endpoints, queued now ({"type": "webhook.test", "data": {"endpoint_id"}}, no
-- job, whatever events the endpoint takes): {"delivery": its record}, {"refused": "disabled"} for a disabled
-- endpoint, or null when the user has no such endpoint.
create or replace function queue_test_webhook(p_user uuid, p_endpoint uuid) returns jsonb
language plpgsql as $$
declare
  e webhook_endpoints%rowtype;
  d webhook_deliveries%rowtype;
begin
  select * into e from webhook_endpoints where id = p_endpoint and user_id = p_user;
  if not found then
    return null;
  elsif e.disabled_at is not null then
    return jsonb_build_object('refused', 'disabled');
  end if;
  insert into webhook_deliveries (user_id, endpoint_id, url, event_type, payload)
  values (p_user, e.id, e.url, 'webhook.test',
          jsonb_build_object('type', 'webhook.test',
                             'timestamp', to_char(now() at time zone 'utc', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
                             'data', jsonb_build_object('endpoint_id', e.id))::text)
  returning * into d;
  perform pg_notify('i2v_webhooks', '');
  return jsonb_build_object('delivery', webhook_delivery_record(d));
end $$;

-- Seconds until the earliest pending delivery is due (0: one is due now); null when none is pending. A sender
-- sleeps this long unless woken on the i2v_webhooks channel.
create or replace function webhook_due_in_s() returns double precision
language sql stable as $$
  select case when min(next_attempt_at) is not null  -- greatest() would turn "none pending" into 0
              then greatest(0, extract(epoch from min(next_attempt_at) - now()))::double precision end
    from webhook_deliveries where state = 'pending';
$$;

-- Forget deliveries finished more than p_days ago (with their attempts); returns how many deliveries went.
create or replace function purge_webhook_deliveries(p_days int) returns int
language plpgsql as $$
declare
  n int;
begin
  delete from webhook_attempts a using webhook_deliveries d
   where a.delivery_id = d.id and d.state <> 'pending' and d.created_at < now() - make_interval(days => p_days);
  delete from webhook_deliveries where state <> 'pending' and created_at < now() - make_interval(days => p_days);
  get diagnostics n = row_count;
  return n;
end $$;
