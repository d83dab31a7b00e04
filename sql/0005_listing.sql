-- Listing: the caller's jobs newest first with keyset pagination, and the caller's job counts by status.

-- A status filter walks this index rather than skipping other statuses' rows of video_jobs_user_created.
create index video_jobs_user_status_created on video_jobs (user_id, status, created_at desc, id desc);

-- One page of a user's jobs, newest first (ties in created_at broken by id, descending). The cursor is the
-- (created_at, id) of the last job of the previous page; both null for the first page. Returns
-- {"jobs": [...], "next": {"created_at", "id"} | null}; "next" is null on the last page.
create or replace function list_videos(
  p_user uuid, p_status job_status, p_limit int, p_cursor_created timestamptz, p_cursor_id uuid
) returns jsonb language plpgsql stable as $$
declare
  after_created timestamptz := coalesce(p_cursor_created, 'infinity');
  after_id      uuid := coalesce(p_cursor_id, 'ffffffff-ffff-ffff-ffff-ffffffffffff');
  page          jsonb;
  total         int;
begin
  if p_limit is null or p_limit < 1 or p_limit > 200 then
    raise exception 'limit must be between 1 and 200' using errcode = 'I2V04';
  end if;
  if (p_cursor_created is null) <> (p_cursor_id is null) then
    raise exception 'a cursor needs both created_at and id' using errcode = 'I2V04';
  end if;
  if p_status is null then
    select jsonb_agg(j order by j.created_at desc, j.job_id desc), count(*) into page, total from (
      select id as job_id, status, model_slug as model, provider, prompt, settings, credits_used, progress,
             video_key, thumbnail_key, error_message, created_at, updated_at, finished_at
        from video_jobs
       where user_id = p_user and (created_at, id) < (after_created, after_id)
       order by created_at desc, id desc
       limit p_limit + 1) j;
  else
    select jsonb_agg(j order by j.created_at desc, j.job_id desc), count(*) into page, total from (
      select id as job_id, status, model_slug as model, provider, prompt, settings, credits_used, progress,
             video_key, thumbnail_key, error_message, created_at, updated_at, finished_at
        from video_jobs
       where user_id = p_user and status = p_status and (created_at, id) < (after_created, after_id)
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
