-- Optional row-level security for i2v's tables, so an app can read its own jobs straight from Supabase
-- (PostgREST / supabase-js) with the user's access token, and nothing else.
--
--   psql "$DATABASE_URL" -v ON_ERROR_STOP=1 -f docs/rls.sql     # after the migrations; safe to run again
--
-- Safe on any Postgres: the roles anon / authenticated / service_role and auth.uid() are created only when
-- missing (Supabase has them), in the shape Supabase gives them. Apply it in the schema that holds i2v's tables
-- (the first schema on the search_path). The i2v backend connects as the owner of these tables, which bypasses
-- RLS (no FORCE here), so the API behaves exactly as before. tests/test_rls.py applies this file to a fresh,
-- migrated database with a small emulation of Supabase's auth schema and checks every rule below.
-- Run it again after an upgrade that adds a function or changes one's arguments: migrate re-applies
-- sql/procedures/ with create or replace, which keeps the privileges revoked here, but a new function (or one
-- dropped and created again) starts out executable by PUBLIC.
--
-- What it does:
--   1. every i2v table gets RLS, so anon and authenticated (to which Supabase grants table privileges in
--      public by default) see and change nothing unless a policy below allows it;
--   2. signed-in users may SELECT their own account, ledger entries, jobs, job events, purchases (Stripe's
--      and the App Store's), clients and campaigns, and anyone may read the model catalog; no role but the owner
--      may write anything;
--   3. i2v's procedures can no longer be called by anon or authenticated (PostgREST would otherwise expose
--      them as /rest/v1/rpc/...): only the backend calls them.

do $$
begin
  if not exists (select 1 from pg_roles where rolname = 'anon') then
    create role anon nologin noinherit;
  end if;
  if not exists (select 1 from pg_roles where rolname = 'authenticated') then
    create role authenticated nologin noinherit;
  end if;
  if not exists (select 1 from pg_roles where rolname = 'service_role') then
    create role service_role nologin noinherit bypassrls;
  end if;
end $$;

create schema if not exists auth;
grant usage on schema auth to anon, authenticated, service_role;

-- auth.uid() as Supabase defines it (created only when missing: Supabase's own definition is kept).
do $$
begin
  if to_regprocedure('auth.uid()') is null then
    create function auth.uid() returns uuid language sql stable as $f$
      select coalesce(
        nullif(current_setting('request.jwt.claim.sub', true), ''),
        (nullif(current_setting('request.jwt.claims', true), '')::jsonb ->> 'sub')
      )::uuid
    $f$;
  end if;
end $$;
grant execute on function auth.uid() to anon, authenticated, service_role;

-- 1. RLS on every table, and no privilege for the API roles beyond the reads granted below.
do $$
declare
  t text;
begin
  foreach t in array array[
    'accounts', 'credit_ledger', 'models', 'video_jobs', 'job_events', 'idempotency_keys', 'uploads',
    'provider_uploads', 'purchases', 'stripe_events', 'stripe_charges', 'app_store_transactions',
    'app_store_notifications', 'schema_migrations', 'images', 'api_keys', 'clients', 'campaigns', 'rate_limit_hits',
    'webhook_endpoints', 'webhook_secrets', 'webhook_deliveries', 'webhook_attempts'
  ] loop
    execute format('alter table %I enable row level security', t);
    execute format('revoke all on table %I from anon, authenticated', t);
  end loop;
end $$;

-- 2. Reads: the caller's own rows; the catalog for everyone.
grant select on accounts, credit_ledger, video_jobs, job_events, purchases, app_store_transactions, images,
  clients, campaigns to authenticated;
grant select on models to anon, authenticated;

drop policy if exists i2v_read_own_account on accounts;
create policy i2v_read_own_account on accounts for select to authenticated
  using ((select auth.uid()) = user_id);

drop policy if exists i2v_read_own_ledger on credit_ledger;
create policy i2v_read_own_ledger on credit_ledger for select to authenticated
  using ((select auth.uid()) = user_id);

drop policy if exists i2v_read_own_jobs on video_jobs;
create policy i2v_read_own_jobs on video_jobs for select to authenticated
  using ((select auth.uid()) = user_id);

drop policy if exists i2v_read_own_job_events on job_events;
create policy i2v_read_own_job_events on job_events for select to authenticated
  using (exists (select 1 from video_jobs j where j.id = job_events.job_id and j.user_id = (select auth.uid())));

drop policy if exists i2v_read_own_images on images;
create policy i2v_read_own_images on images for select to authenticated
  using ((select auth.uid()) = user_id);

drop policy if exists i2v_read_own_purchases on purchases;
create policy i2v_read_own_purchases on purchases for select to authenticated
  using ((select auth.uid()) = user_id);

drop policy if exists i2v_read_own_app_store_transactions on app_store_transactions;
create policy i2v_read_own_app_store_transactions on app_store_transactions for select to authenticated
  using ((select auth.uid()) = user_id);

drop policy if exists i2v_read_own_clients on clients;
create policy i2v_read_own_clients on clients for select to authenticated
  using ((select auth.uid()) = user_id);

drop policy if exists i2v_read_own_campaigns on campaigns;
create policy i2v_read_own_campaigns on campaigns for select to authenticated
  using ((select auth.uid()) = user_id);

-- API keys (digests), webhook secrets and endpoints (secrets), deliveries and limiter state: the backend only.

drop policy if exists i2v_read_models on models;
create policy i2v_read_models on models for select to anon, authenticated using (true);

-- 3. Procedures: callable by the backend (their owner) only.
do $$
declare
  f regprocedure;
begin
  for f in
    select p.oid::regprocedure
      from pg_proc p
     where p.pronamespace = current_schema()::regnamespace
       and p.proname = any (array[
    '_app_store_observe', '_app_store_revocation', '_app_store_settle', '_app_store_transaction',
    '_app_store_view', '_credit_purchase', '_job_status_for_update', '_money', '_ms_timestamp',
    '_purchase_for_session', '_purchase_transition', '_record_charge_refund', '_refund_job',
    '_settle_purchase_refunds', 'add_last_frame', 'advance_to_video', 'api_key_record', 'api_key_usable',
    'apply_app_store_notification', 'apply_stripe_event', 'authenticate_api_key', 'begin_checkout',
    'begin_engine_completion', 'begin_upload', 'campaign_record', 'campaign_spend_mismatches', 'cancel_job',
    'claim_engine_job', 'claim_mirror', 'claim_submit', 'claim_webhook_deliveries', 'claimable_engine_jobs',
    'client_record', 'complete_image_job', 'complete_job', 'create_api_key', 'create_campaign', 'create_client',
    'create_webhook_endpoint', 'credit_ledger_apply', 'credit_ledger_campaign', 'credit_ledger_immutable',
    'credit_ledger_recover_debt', 'disable_webhook_endpoint', 'enable_webhook_endpoint', 'engine_progress',
    'ensure_account', 'ensure_webhook_secret', 'fail_job', 'find_campaign', 'find_job_by_request',
    'get_app_store_transaction', 'get_campaign', 'get_client', 'get_credits', 'get_image', 'get_job',
    'get_last_frame', 'get_provider_upload', 'get_purchase', 'get_upload', 'grant_credits', 'job_counts',
    'job_event_payload', 'job_for_provider', 'job_record', 'job_spend', 'ledger_mismatches', 'list_api_keys',
    'list_campaigns', 'list_clients', 'list_videos', 'list_webhook_deliveries', 'list_webhook_endpoints',
    'mark_processing', 'mark_submit_unknown', 'mark_submitted', 'operator_overview', 'purchase_mismatches',
    'purge_idempotency_keys', 'purge_rate_limits', 'purge_stripe_events', 'purge_webhook_deliveries',
    'put_provider_upload', 'queue_test_webhook', 'rate_limit_check', 'rate_limit_take', 'reconcile_candidates',
    'record_checkout', 'record_provider_result', 'record_provider_status', 'record_webhook_attempt',
    'redeem_app_store_transaction', 'redeliver_webhook', 'release_checkout', 'release_engine_job',
    'release_mirror', 'revoke_api_key', 'set_job_progress', 'start_generation', 'touch_updated_at',
    'unfinished_jobs', 'update_campaign', 'update_client', 'uploads_immutable', 'upsert_model', 'verify_upload',
    'video_jobs_log_event', 'video_jobs_queue_webhooks', 'webhook_delivery_record', 'webhook_due_in_s',
    'webhook_endpoint_record'
       ])
  loop
    execute format('revoke execute on function %s from public, anon, authenticated', f);
  end loop;
end $$;
