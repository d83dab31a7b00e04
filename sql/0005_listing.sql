-- Listing: the caller's jobs newest first with keyset pagination, and the caller's job counts by status.
--
-- Procedures: the functions this migration created when it was written now live in sql/procedures/ (jobs.sql),
-- re-applied after the numbered migrations on every migrate, and were removed from this file, which keeps the
-- history of the tables. tests/test_schema_equivalence.py proves that a database built from these files and one
-- upgraded from an earlier release end up with identical schemas and procedures.

-- A status filter walks this index rather than skipping other statuses' rows of video_jobs_user_created.
create index video_jobs_user_status_created on video_jobs (user_id, status, created_at desc, id desc);
