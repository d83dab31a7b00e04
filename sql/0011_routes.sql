-- A model may run at several providers (its routes, shared/providers/models.json): a job records the endpoint of
-- the route that served it beside the provider. start_generation takes it (sql/procedures/jobs.sql); the
-- previous signature is removed here.

alter table video_jobs add column provider_endpoint text;

drop function if exists start_generation(uuid, text, text, text, uuid, text, text, text, text, jsonb, bigint, bigint,
                                         int, int, text);
