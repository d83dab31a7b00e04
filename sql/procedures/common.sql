-- Live definitions, re-applied after the numbered migrations on every migrate (shared/migrations.py explains the
-- rules): edit a procedure here, never in a migration.
--
-- Helpers shared by several tables.

create or replace function touch_updated_at() returns trigger language plpgsql as $$
begin
  new.updated_at := now();
  return new;
end $$;
-- Created when missing (re-applying waits for no writer); a numbered migration drops it to change it.
do $$
begin
  if not exists (select from pg_trigger
                  where tgrelid = 'video_jobs'::regclass and tgname = 'video_jobs_touch') then
    create trigger video_jobs_touch before update on video_jobs
      for each row execute function touch_updated_at();
  end if;
end $$;
-- Created when missing (re-applying waits for no writer); a numbered migration drops it to change it.
do $$
begin
  if not exists (select from pg_trigger
                  where tgrelid = 'purchases'::regclass and tgname = 'purchases_touch') then
    create trigger purchases_touch before update on purchases
      for each row execute function touch_updated_at();
  end if;
end $$;
