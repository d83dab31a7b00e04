-- The local engine across processes: the claim columns of a job (the engine's id, its lease, the completion
-- lease). The protocol is written with its procedures in sql/procedures/engine.sql.
--
-- Procedures: the functions this migration created when it was written now live in sql/procedures/ (engine.sql,
-- jobs.sql), re-applied after the numbered migrations on every migrate, and were removed from this file, which keeps
-- the history of the tables. tests/test_schema_equivalence.py proves that a database built from these files and one
-- upgraded from an earlier release end up with identical schemas and procedures.

alter table video_jobs
  add column engine_id          text,
  add column engine_lease_until timestamptz,
  add column finishing_until    timestamptz;
