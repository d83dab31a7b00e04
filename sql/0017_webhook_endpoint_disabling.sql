-- Standard Webhooks: an endpoint that fails persistently is disabled (besides one that answers 410 Gone), and the
-- endpoint says why. failing_since is when its current run of failed attempts began (null after a 2xx); the
-- reason is one of deleted (delete-webhook-endpoint), gone (it answered 410) and failing (no 2xx for
-- WEBHOOK_DISABLE_AFTER_S). enable-webhook-endpoint clears both.
alter table webhook_endpoints
  add column failing_since   timestamptz,
  add column disabled_reason text check (disabled_reason in ('deleted', 'gone', 'failing'));

update webhook_endpoints e
   set disabled_reason = case when exists (select from webhook_deliveries d
                                            where d.endpoint_id = e.id and d.last_status = 410)
                              then 'gone' else 'deleted' end
 where disabled_at is not null;

alter table webhook_endpoints
  add constraint webhook_endpoints_disabled_reason check ((disabled_at is null) = (disabled_reason is null));

-- Their arguments change (the reason; the persistent-failure window) and record_webhook_attempt now says whether
-- it disabled the endpoint.
drop function if exists disable_webhook_endpoint(uuid, uuid);
drop function if exists record_webhook_attempt(uuid, int, text, int, int, boolean);
