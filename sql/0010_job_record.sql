-- One projection of a job row (job_record, sql/procedures/jobs.sql) replaces the worker's own, and failing a job
-- takes its reason in the same call: the procedures these replace are removed here (their replacements live in
-- sql/procedures/, re-applied after the numbered migrations on every migrate).

drop function if exists job_for_worker(uuid);
drop function if exists fail_job_kind(uuid, text, text);
drop function if exists fail_job(uuid, text);
drop function if exists mirror_attempts(uuid);
