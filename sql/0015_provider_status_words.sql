-- A job's provider_status is said in our own words, whatever the provider: 'queued' and 'running' (the
-- provider's last word on a job it has), 'succeeded' (it delivered its output), or 'submit_unknown' (a
-- submission whose outcome we never learned). Earlier rows carried one provider's vocabulary; they are
-- rewritten, and the column now takes only these words.

update video_jobs
   set provider_status = case provider_status
                           when 'IN_QUEUE' then 'queued'
                           when 'IN_PROGRESS' then 'running'
                           when 'COMPLETED' then 'succeeded'
                           when 'SUBMIT_UNKNOWN' then 'submit_unknown'
                         end
 where provider_status in ('IN_QUEUE', 'IN_PROGRESS', 'COMPLETED', 'SUBMIT_UNKNOWN');

alter table video_jobs
  add constraint video_jobs_provider_status_words
  check (provider_status in ('queued', 'running', 'succeeded', 'submit_unknown'));
