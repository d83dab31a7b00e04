-- Live definitions, re-applied after the numbered migrations on every migrate (shared/migrations.py explains the
-- rules): edit a procedure here, never in a migration.
--
-- Uploads that cannot change once stored.
--
-- An upload record is pending until its bytes have been checked against the declared sha256, size and type
-- (on receipt by the local server, or on first sight of the object in S3); then it is verified, for good:
-- nothing about a verified record changes again, and the object behind it is never written again.

-- Upload cache: the user's record for a content hash, or a new pending one. A pending record takes the newest
-- declaration (type, size and the key that follows from the type); a verified one is returned unchanged.
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
     set content_type = excluded.content_type, size = excluded.size, storage_key = excluded.storage_key,
         created_at = now()
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

-- Mark an upload verified (its stored bytes were checked). Returns the record; refuses an upload that does not
-- exist, bytes stored under another key than the record's, and a size or type other than the record's.
-- Verifying twice changes nothing (the first verification's dimensions stay).
create or replace function verify_upload(
  p_user uuid, p_sha256 text, p_key text, p_size bigint, p_content_type text, p_width int, p_height int
) returns jsonb language plpgsql as $$
declare
  u uploads%rowtype;
begin
  select * into u from uploads where user_id = p_user and sha256 = p_sha256 for update;
  if not found then
    raise exception 'no upload % for user %', p_sha256, p_user using errcode = 'I2V04';
  end if;
  if u.verified_at is not null then
    return to_jsonb(u);
  end if;
  if u.storage_key <> p_key or u.size <> p_size or u.content_type <> p_content_type then
    raise exception 'upload % does not match its record', p_sha256 using errcode = 'I2V03';
  end if;
  update uploads set verified_at = now(), width = p_width, height = p_height
   where user_id = p_user and sha256 = p_sha256
  returning * into u;
  return to_jsonb(u);
end $$;

-- A verified upload never changes: no update of its content columns, no un-verifying.
create or replace function uploads_immutable() returns trigger language plpgsql as $$
begin
  if old.verified_at is not null and (
       new.sha256 is distinct from old.sha256 or new.size is distinct from old.size
    or new.content_type is distinct from old.content_type or new.storage_key is distinct from old.storage_key
    or new.verified_at is distinct from old.verified_at or new.user_id is distinct from old.user_id) then
    raise exception 'upload % is verified and cannot change', old.sha256 using errcode = 'I2V03';
  end if;
  return new;
end $$;
-- Created when missing (re-applying waits for no writer); a numbered migration drops it to change it.
do $$
begin
  if not exists (select from pg_trigger
                  where tgrelid = 'uploads'::regclass and tgname = 'uploads_immutable') then
    create trigger uploads_immutable before update on uploads
      for each row execute function uploads_immutable();
  end if;
end $$;
