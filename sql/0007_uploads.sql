-- Uploads that cannot change once stored, and a provider CDN cache keyed by verified content only.
--
-- Procedures: the functions and the trigger this migration created when it was written now live in sql/procedures/
-- (uploads.sql, providers.sql), re-applied after the numbered migrations on every migrate, and were removed from
-- this file. What stays are the drops of the two signatures it changed: create or replace cannot change a function's
-- arguments, so the old verify_upload and get_provider_upload are dropped here and sql/procedures/ creates the new
-- ones, on a fresh database and on an upgraded one alike. tests/test_schema_equivalence.py proves that a database
-- built from these files and one upgraded from an earlier release end up with identical schemas and procedures.

-- verify_upload took (user, sha256, width, height) and returned nothing; it now checks the stored key, size and
-- type and returns the record.
drop function if exists verify_upload(uuid, text, int, int);

-- get_provider_upload took (provider, sha256); it now takes the user too, so the CDN cache is consulted only for
-- content the caller stored and verified.
drop function if exists get_provider_upload(text, text);
