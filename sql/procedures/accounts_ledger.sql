-- Live definitions, re-applied after the numbered migrations on every migrate (shared/migrations.py explains the
-- rules): edit a procedure here, never in a migration.
--
-- Accounts and the append-only credit ledger: its triggers (no update, delete or truncate; the cached balance
-- follows every row), account creation, balance reads and operator grants.
-- Custom SQLSTATEs raised by the procedures (mapped to errors in shared/db.py):
--   I2V01 job not found · I2V02 insufficient credits · I2V03 invalid transition · I2V04 invalid argument ·
--   I2V05 forbidden

create or replace function credit_ledger_immutable() returns trigger language plpgsql as $$
begin
  raise exception 'credit_ledger is append-only (% refused)', tg_op using errcode = 'I2V03';
end $$;
-- Created when missing (re-applying waits for no writer); a numbered migration drops it to change it.
do $$
begin
  if not exists (select from pg_trigger
                  where tgrelid = 'credit_ledger'::regclass and tgname = 'credit_ledger_no_update') then
    create trigger credit_ledger_no_update before update or delete on credit_ledger
      for each row execute function credit_ledger_immutable();
  end if;
  if not exists (select from pg_trigger
                  where tgrelid = 'credit_ledger'::regclass and tgname = 'credit_ledger_no_truncate') then
    create trigger credit_ledger_no_truncate before truncate on credit_ledger
      for each statement execute function credit_ledger_immutable();
  end if;
end $$;

-- The cached balance moves only with a ledger row; the CHECK on accounts.balance refuses any row that would
-- overdraw.
create or replace function credit_ledger_apply() returns trigger language plpgsql as $$
begin
  update accounts set balance = balance + new.delta, updated_at = now() where user_id = new.user_id;
  return new;
end $$;
-- Created when missing (re-applying waits for no writer); a numbered migration drops it to change it.
do $$
begin
  if not exists (select from pg_trigger
                  where tgrelid = 'credit_ledger'::regclass and tgname = 'credit_ledger_balance') then
    create trigger credit_ledger_balance after insert on credit_ledger
      for each row execute function credit_ledger_apply();
  end if;
end $$;

-- The first authenticated request creates the account and records the signup credits in the ledger.
create or replace function ensure_account(p_user uuid, p_signup_credits bigint) returns void
language plpgsql as $$
begin
  insert into accounts (user_id) values (p_user) on conflict (user_id) do nothing;
  if found and p_signup_credits > 0 then
    insert into credit_ledger (user_id, delta, kind, reason, external_ref)
    values (p_user, p_signup_credits, 'signup', 'signup credits', 'signup:' || p_user);
  end if;
end $$;

-- Balance, debt and recent ledger entries; creates the account on first use.
create or replace function get_credits(p_user uuid, p_signup_credits bigint, p_limit int) returns jsonb
language plpgsql as $$
begin
  perform ensure_account(p_user, p_signup_credits);
  return jsonb_build_object(
    'balance', (select balance from accounts where user_id = p_user),
    'debt', (select debt from accounts where user_id = p_user),
    'entries', coalesce((
      select jsonb_agg(e order by e.id desc) from (
        select id, delta, kind, reason, job_id, created_at from credit_ledger
         where user_id = p_user order by id desc limit least(p_limit, {{LIST_PAGE_LIMIT}})) e), '[]'::jsonb));
end $$;

-- An operator grant (or a correction): one ledger row, idempotent on p_ref when given.
create or replace function grant_credits(p_user uuid, p_amount bigint, p_reason text, p_ref text) returns bigint
language plpgsql as $$
begin
  if p_amount = 0 then
    raise exception 'amount must not be zero' using errcode = 'I2V04';
  end if;
  perform ensure_account(p_user, 0);
  insert into credit_ledger (user_id, delta, kind, reason, external_ref)
  values (p_user, p_amount, 'grant', coalesce(p_reason, 'grant'), p_ref)
  on conflict (external_ref) do nothing;
  return (select balance from accounts where user_id = p_user);
exception when check_violation then
  raise exception 'balance would go negative' using errcode = 'I2V02';
end $$;

-- Users whose cached balance differs from the sum of their ledger (should always be empty).
create or replace function ledger_mismatches() returns table (user_id uuid, balance bigint, ledger_sum bigint)
language sql stable as $$
  select a.user_id, a.balance, coalesce(sum(l.delta), 0)::bigint
    from accounts a left join credit_ledger l on l.user_id = a.user_id
   group by a.user_id, a.balance
  having a.balance <> coalesce(sum(l.delta), 0);
$$;
