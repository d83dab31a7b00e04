-- Live definitions, re-applied after the numbered migrations on every migrate (shared/migrations.py explains the
-- rules): edit a procedure here, never in a migration.
--
-- API keys: created with their digest (the key itself is never stored), looked up by digest, listed, revoked.
-- start_generation checks the key of a billed request itself (api_key_usable) in the same call.

-- A new key for a user (the account is created on first use). Returns the key's row as the API lists it.
create or replace function create_api_key(
  p_user uuid, p_name text, p_prefix text, p_digest bytea, p_scopes jsonb, p_expires_at timestamptz,
  p_signup_credits bigint
) returns jsonb language plpgsql as $$
declare
  k api_keys%rowtype;
begin
  perform ensure_account(p_user, p_signup_credits);
  insert into api_keys (user_id, name, prefix, digest, scopes, expires_at)
  values (p_user, p_name, p_prefix, p_digest, array(select jsonb_array_elements_text(p_scopes)), p_expires_at)
  returning * into k;
  return api_key_record(k);
end $$;

-- One key as the API shows it (never its digest).
create or replace function api_key_record(k api_keys) returns jsonb
language sql stable as $$
  select jsonb_build_object(
    'id', k.id, 'name', k.name, 'prefix', k.prefix, 'scopes', to_jsonb(k.scopes), 'created_at', k.created_at,
    'expires_at', k.expires_at, 'last_used_at', k.last_used_at, 'revoked_at', k.revoked_at);
$$;

-- The owner of a live key with this digest, recording its use (at most once per few seconds); null when the key is
-- unknown, revoked or expired.
create or replace function authenticate_api_key(p_digest bytea) returns jsonb
language plpgsql as $$
declare
  k api_keys%rowtype;
begin
  select * into k from api_keys where digest = p_digest;
  if not found or k.revoked_at is not null or (k.expires_at is not null and k.expires_at <= now()) then
    return null;
  end if;
  perform api_key_usable(k.id, k.user_id);
  return jsonb_build_object('id', k.id, 'user_id', k.user_id, 'scopes', to_jsonb(k.scopes),
                            'expires_at', k.expires_at);
end $$;

-- Whether a key of this user is live now; records its use (last_used_at moves at most once per 5 seconds, so a
-- busy key is not rewritten by every request).
create or replace function api_key_usable(p_key uuid, p_user uuid) returns boolean
language plpgsql as $$
begin
  update api_keys set last_used_at = now()
   where id = p_key and user_id = p_user and revoked_at is null and (expires_at is null or expires_at > now())
     and (last_used_at is null or last_used_at < now() - interval '5 seconds');
  if found then
    return true;
  end if;
  return exists (select from api_keys where id = p_key and user_id = p_user and revoked_at is null
                                         and (expires_at is null or expires_at > now()));
end $$;

-- A user's keys, newest first (revoked ones included, marked).
create or replace function list_api_keys(p_user uuid) returns jsonb
language sql stable as $$
  select coalesce(jsonb_agg(api_key_record(k) order by k.created_at desc, k.id desc), '[]'::jsonb)
    from api_keys k where k.user_id = p_user;
$$;

-- Revoke one of a user's keys (revoking twice keeps the first time); null when the user has no such key.
create or replace function revoke_api_key(p_user uuid, p_key uuid) returns jsonb
language plpgsql as $$
declare
  k api_keys%rowtype;
begin
  update api_keys set revoked_at = coalesce(revoked_at, now()) where id = p_key and user_id = p_user
  returning * into k;
  if not found then
    return null;
  end if;
  return api_key_record(k);
end $$;
