-- Images: image models make images (kind 'image' jobs), each kept as a row a later request can reference by id.
-- A job records its kind; start_generation and list_videos take it (sql/procedures/jobs.sql), and every earlier
-- signature of those two is removed here, whatever it was.

alter table video_jobs
  add column kind          text not null default 'video' check (kind in ('video', 'image')),
  add column input_images  jsonb not null default '[]'::jsonb,  -- an image edit's reference image URLs
  -- A video from a prompt alone makes its start image first: stage 'image' (at the image model's route), then
  -- stage 'video' (at next_route). image_credits is the image part of the charge, kept when the video fails.
  add column stage         text check (stage in ('image', 'video')),
  add column image_credits bigint not null default 0 check (image_credits >= 0),
  add column next_route    jsonb;

create table images (
  id           uuid primary key default gen_random_uuid(),
  user_id      uuid not null,
  job_id       uuid not null references video_jobs (id),
  position     int not null,  -- output images 0.. ; a video's last frame is -1 (for "continue this shot")
  key          text not null unique,
  content_type text not null,
  width        int,
  height       int,
  created_at   timestamptz not null default now(),
  unique (job_id, position)
);
create index images_user_created on images (user_id, created_at desc, id desc);

do $$
declare
  f regprocedure;
begin
  for f in select p.oid::regprocedure from pg_proc p
            where p.proname in ('start_generation', 'list_videos') and p.pronamespace = current_schema()::regnamespace
  loop
    execute 'drop function ' || f;
  end loop;
end $$;
