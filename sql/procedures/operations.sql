-- Live definitions, re-applied after the numbered migrations on every migrate (shared/migrations.py explains the
-- rules): edit a procedure here, never in a migration.
--
-- Operations: the figures of the operator overview (GET operator-overview). Read-only.

-- Since p_since: jobs started and finished by model and provider (with generation time percentiles), failures by
-- kind, job refunds, copied videos; now: the jobs waiting longest (p_stuck_limit of them) and the two ledger
-- checks, which must both find no account. plpgsql, so that it may name functions of files applied after this one.
create or replace function operator_overview(p_since timestamptz, p_stuck_limit int) returns jsonb
language plpgsql stable as $$
begin
  return jsonb_build_object(
    'since', p_since,
    'now', now(),
    'jobs', coalesce((
      select jsonb_agg(to_jsonb(t) order by t.model, t.provider) from (
        select model_slug as model, provider,
               count(*) filter (where created_at >= p_since) as started,
               count(*) filter (where status = 'completed' and finished_at >= p_since) as completed,
               count(*) filter (where status = 'failed' and finished_at >= p_since) as failed,
               count(*) filter (where status = 'canceled' and finished_at >= p_since) as canceled,
               count(*) filter (where status in ('pending', 'processing')) as active,
               round((percentile_cont(0.5) within group (order by extract(epoch from finished_at - created_at))
                 filter (where status = 'completed' and finished_at >= p_since))::numeric, 1) as p50_s,
               round((percentile_cont(0.95) within group (order by extract(epoch from finished_at - created_at))
                 filter (where status = 'completed' and finished_at >= p_since))::numeric, 1) as p95_s
          from video_jobs
         where created_at >= p_since or finished_at >= p_since or status in ('pending', 'processing')
         group by model_slug, provider) t), '[]'::jsonb),
    'failures', coalesce((
      select jsonb_object_agg(kind, n) from (
        select coalesce(failure_kind, 'provider') as kind, count(*) as n
          from video_jobs where status = 'failed' and finished_at >= p_since
         group by 1) f), '{}'::jsonb),
    'refunds', (
      select jsonb_build_object('count', count(*), 'credits', coalesce(sum(delta), 0))
        from credit_ledger where kind = 'refund' and created_at >= p_since),
    'mirrored', (
      select jsonb_build_object('videos', count(*), 'bytes', coalesce(sum((result ->> 'bytes')::bigint), 0))
        from video_jobs
       where status = 'completed' and finished_at >= p_since and result_url is not null
         and jsonb_typeof(result -> 'bytes') = 'number'),
    'stuck', coalesce((
      select jsonb_agg(to_jsonb(s) order by s.created_at) from (
        select id as job_id, user_id, model_slug as model, provider, status, provider_status,
               result_url is not null as awaiting_copy, mirror_attempts, created_at, updated_at,
               round(extract(epoch from now() - created_at)::numeric, 1) as age_s
          from video_jobs where status in ('pending', 'processing')
         order by created_at limit p_stuck_limit) s), '[]'::jsonb),
    -- Customers' webhooks: deliveries queued in the window by how they ended, those waiting now, and endpoints
    -- failing now or disabled in the window (by reason).
    'outgoing_webhooks', (
      select jsonb_build_object(
        'delivered', count(*) filter (where state = 'delivered'),
        'failed', count(*) filter (where state = 'failed'),
        'pending', (select count(*) from webhook_deliveries where state = 'pending'),
        'endpoints_failing', (select count(*) from webhook_endpoints
                               where disabled_at is null and failing_since is not null),
        'endpoints_disabled', coalesce((
          select jsonb_object_agg(disabled_reason, n) from (
            select disabled_reason, count(*) as n from webhook_endpoints
             where disabled_at >= p_since group by 1) d), '{}'::jsonb))
        from webhook_deliveries where created_at >= p_since),
    'ledger_mismatches', (select count(*) from ledger_mismatches()),
    'purchase_mismatches', (select count(*) from purchase_mismatches())
  );
end $$;
