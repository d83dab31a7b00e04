-- Live definitions, re-applied after the numbered migrations on every migrate (shared/migrations.py explains the
-- rules): edit a procedure here, never in a migration.
--
-- Rate limits kept in Postgres, so that every serverless instance sees the same counts: a sliding window of the
-- times of the accepted requests. At most p_limit requests are accepted in any p_window_s seconds, and a caller
-- that has been quiet may send all of them at once. start_generation checks the limit (locking the row, so
-- concurrent requests of one caller queue on it) before anything else is decided, and records the request only
-- when a job is created: a refused request never uses up the limit.

-- The state of one limiter after a check: {"allowed", "limit", "window_s", "remaining", "reset_s"}; when refused,
-- reset_s is the wait until a request would be accepted (the Retry-After). Locks the row until the transaction ends.
create or replace function rate_limit_check(p_key text, p_limit int, p_window_s int) returns jsonb
language plpgsql as $$
declare
  at      timestamptz := clock_timestamp();
  recent  timestamptz[];
  n       int;
begin
  if p_limit < 1 or p_window_s < 1 then
    raise exception 'a rate limit needs a positive count and window' using errcode = 'I2V04';
  end if;
  insert into rate_limit_hits (key, hits) values (p_key, '{}') on conflict (key) do nothing;
  perform 1 from rate_limit_hits where key = p_key for update;
  at := clock_timestamp();  -- after the lock: a concurrent request's hit is never later than "now"
  select array(select h from unnest(r.hits) h where h > at - make_interval(secs => p_window_s) order by h)
    into recent from rate_limit_hits r where r.key = p_key;
  n := cardinality(recent);
  if n >= p_limit then
    return jsonb_build_object(
      'allowed', false, 'limit', p_limit, 'window_s', p_window_s, 'remaining', 0,
      'reset_s', least(p_window_s, greatest(1, ceil(extract(epoch from
                   recent[n - p_limit + 1] + make_interval(secs => p_window_s) - at)))::int));
  end if;
  return jsonb_build_object(
    'allowed', true, 'limit', p_limit, 'window_s', p_window_s, 'remaining', p_limit - n - 1,
    'reset_s', case when n = 0 then p_window_s
                    else least(p_window_s, ceil(extract(epoch from
                           recent[1] + make_interval(secs => p_window_s) - at))::int) end);
end $$;

-- Record one accepted request (after rate_limit_check allowed it, in the same transaction).
create or replace function rate_limit_take(p_key text, p_limit int, p_window_s int) returns void
language plpgsql as $$
declare
  at timestamptz := clock_timestamp();
begin
  update rate_limit_hits r
     set hits = array(select h from (select h from unnest(r.hits) h
                                      where h > at - make_interval(secs => p_window_s)
                                      order by h desc limit greatest(p_limit - 1, 0)) kept order by h) || at,
         updated_at = at
   where r.key = p_key;
end $$;

-- Forget limiters that have been quiet longer than any window (a day); returns how many rows went.
create or replace function purge_rate_limits() returns int
language plpgsql as $$
declare
  n int;
begin
  delete from rate_limit_hits where updated_at < now() - interval '1 day';
  get diagnostics n = row_count;
  return n;
end $$;
