-- Live definitions, re-applied after the numbered migrations on every migrate (shared/migrations.py explains the
-- rules): edit a procedure here, never in a migration.
--
-- Clients and campaigns: creation, updates (rename, budget, archive), lists, and spend read from the ledger.
-- A campaign's budget is checked and debited by start_generation (jobs.sql) in the same call as the balance.

-- The budget a campaign has used follows every ledger row of its jobs: a debit uses budget, a refund returns it.
create or replace function credit_ledger_campaign() returns trigger language plpgsql as $$
begin
  if new.job_id is not null then
    update campaigns c set credits_spent = c.credits_spent - new.delta, updated_at = now()
      from video_jobs j
     where j.id = new.job_id and c.id = j.campaign_id;
  end if;
  return new;
end $$;
-- Created when missing (re-applying waits for no writer); a numbered migration drops it to change it.
do $$
begin
  if not exists (select from pg_trigger
                  where tgrelid = 'credit_ledger'::regclass and tgname = 'credit_ledger_campaign') then
    create trigger credit_ledger_campaign after insert on credit_ledger
      for each row execute function credit_ledger_campaign();
  end if;
end $$;

create or replace function client_record(c clients) returns jsonb
language sql stable as $$
  select jsonb_build_object('id', c.id, 'name', c.name, 'archived', c.archived, 'created_at', c.created_at,
                            'updated_at', c.updated_at);
$$;

create or replace function campaign_record(c campaigns) returns jsonb
language sql stable as $$
  select jsonb_build_object(
    'id', c.id, 'client_id', c.client_id, 'name', c.name, 'budget_credits', c.budget_credits,
    'credits_spent', c.credits_spent,
    'budget_remaining', case when c.budget_credits is null then null
                             else greatest(c.budget_credits - c.credits_spent, 0) end,
    'archived', c.archived, 'created_at', c.created_at, 'updated_at', c.updated_at);
$$;

create or replace function create_client(p_user uuid, p_name text, p_signup_credits bigint) returns jsonb
language plpgsql as $$
declare
  c clients%rowtype;
begin
  perform ensure_account(p_user, p_signup_credits);
  insert into clients (user_id, name) values (p_user, p_name) returning * into c;
  return client_record(c);
end $$;

-- Rename and/or archive (or restore) one of a user's clients; null when there is no such client.
create or replace function update_client(p_user uuid, p_client uuid, p_name text, p_archived boolean)
returns jsonb language plpgsql as $$
declare
  c clients%rowtype;
begin
  update clients set name = coalesce(p_name, name), archived = coalesce(p_archived, archived), updated_at = now()
   where id = p_client and user_id = p_user
  returning * into c;
  return case when found then client_record(c) else null end;
end $$;

create or replace function list_clients(p_user uuid, p_archived boolean) returns jsonb
language sql stable as $$
  select coalesce(jsonb_agg(client_record(c) order by c.created_at desc, c.id desc), '[]'::jsonb)
    from clients c where c.user_id = p_user and (p_archived is null or c.archived = p_archived);
$$;

-- A campaign of one of the user's clients. Outcomes: {"campaign": ...} | {"error": "client_missing"|"client_archived"}.
create or replace function create_campaign(p_user uuid, p_client uuid, p_name text, p_budget bigint)
returns jsonb language plpgsql as $$
declare
  cl clients%rowtype;
  c  campaigns%rowtype;
begin
  select * into cl from clients where id = p_client and user_id = p_user;
  if not found then
    return jsonb_build_object('error', 'client_missing');
  elsif cl.archived then
    return jsonb_build_object('error', 'client_archived');
  end if;
  insert into campaigns (user_id, client_id, name, budget_credits) values (p_user, p_client, p_name, p_budget)
  returning * into c;
  return jsonb_build_object('campaign', campaign_record(c));
end $$;

-- Rename, re-budget (p_clear_budget removes the budget) and/or archive one of a user's campaigns; null when none.
create or replace function update_campaign(
  p_user uuid, p_campaign uuid, p_name text, p_budget bigint, p_clear_budget boolean, p_archived boolean
) returns jsonb language plpgsql as $$
declare
  c campaigns%rowtype;
begin
  update campaigns
     set name = coalesce(p_name, name),
         budget_credits = case when p_clear_budget then null else coalesce(p_budget, budget_credits) end,
         archived = coalesce(p_archived, archived), updated_at = now()
   where id = p_campaign and user_id = p_user
  returning * into c;
  return case when found then campaign_record(c) else null end;
end $$;

create or replace function list_campaigns(p_user uuid, p_client uuid, p_archived boolean) returns jsonb
language sql stable as $$
  select coalesce(jsonb_agg(campaign_record(c) order by c.created_at desc, c.id desc), '[]'::jsonb)
    from campaigns c
   where c.user_id = p_user and (p_client is null or c.client_id = p_client)
     and (p_archived is null or c.archived = p_archived);
$$;

-- What a set of jobs cost, read from the ledger: credits debited, refunded and net, jobs by status (every status,
-- zero included) and per model.
create or replace function job_spend(p_jobs uuid[]) returns jsonb
language sql stable as $$
  with jobs as (
    select j.id, j.status, j.model_slug from video_jobs j where j.id = any(p_jobs)
  ), money as (
    select l.job_id,
           coalesce(sum(-l.delta) filter (where l.kind = 'generation'), 0) as spent,
           coalesce(sum(l.delta) filter (where l.kind = 'refund'), 0) as refunded
      from credit_ledger l where l.job_id = any(p_jobs) group by l.job_id
  ), per_job as (
    select jobs.*, coalesce(m.spent, 0) as spent, coalesce(m.refunded, 0) as refunded
      from jobs left join money m on m.job_id = jobs.id
  )
  select jsonb_build_object(
    'credits_spent', coalesce((select sum(spent) from per_job), 0),
    'credits_refunded', coalesce((select sum(refunded) from per_job), 0),
    'credits_net', coalesce((select sum(spent - refunded) from per_job), 0),
    'jobs', (select jsonb_object_agg(s::text, (select count(*) from per_job p where p.status = s) order by s)
               from unnest(enum_range(null::job_status)) s),
    'models', coalesce((select jsonb_object_agg(model_slug, jsonb_build_object(
                          'jobs', n, 'credits_spent', spent, 'credits_refunded', refunded,
                          'credits_net', spent - refunded))
                          from (select model_slug, count(*) as n, sum(spent) as spent, sum(refunded) as refunded
                                  from per_job group by model_slug) m), '{}'::jsonb));
$$;

-- One of a user's campaigns with its spend; null when there is no such campaign.
-- One of a user's campaigns as listed (its budget and cached spend, no ledger read); null when there is none.
create or replace function find_campaign(p_user uuid, p_campaign uuid) returns jsonb
language sql stable as $$
  select campaign_record(c) from campaigns c where c.id = p_campaign and c.user_id = p_user;
$$;

create or replace function get_campaign(p_user uuid, p_campaign uuid) returns jsonb
language sql stable as $$
  select campaign_record(c) || jsonb_build_object(
           'spend', job_spend(array(select id from video_jobs where campaign_id = c.id)))
    from campaigns c where c.id = p_campaign and c.user_id = p_user;
$$;

-- One of a user's clients with its spend and its campaigns; null when there is no such client.
create or replace function get_client(p_user uuid, p_client uuid) returns jsonb
language sql stable as $$
  select client_record(cl) || jsonb_build_object(
           'spend', job_spend(array(select id from video_jobs where client_id = cl.id)),
           'campaigns', list_campaigns(p_user, cl.id, null))
    from clients cl where cl.id = p_client and cl.user_id = p_user;
$$;

-- Campaigns whose cached credits_spent differs from the net of their jobs' ledger rows (should always be empty).
create or replace function campaign_spend_mismatches() returns table (campaign_id uuid, cached bigint, ledger bigint)
language sql stable as $$
  select c.id, c.credits_spent, coalesce(sum(-l.delta), 0)::bigint
    from campaigns c
    left join video_jobs j on j.campaign_id = c.id
    left join credit_ledger l on l.job_id = j.id
   group by c.id, c.credits_spent
  having c.credits_spent <> coalesce(sum(-l.delta), 0);
$$;
