-- Live definitions, re-applied after the numbered migrations on every migrate (shared/migrations.py explains the
-- rules): edit a procedure here, never in a migration.
--
-- The model catalog (written from the code's registry by sync_models).

-- The model catalog is data kept in the code's registry; this writes one row of it.
create or replace function upsert_model(
  p_id uuid, p_slug text, p_name text, p_provider text, p_endpoint text, p_available boolean,
  p_reason text, p_requires_image boolean, p_capabilities jsonb, p_price jsonb
) returns void language sql as $$
  insert into models (id, slug, name, provider, endpoint, available, unavailable_reason, requires_image,
                      capabilities, price)
  values (p_id, p_slug, p_name, p_provider, p_endpoint, p_available, p_reason, p_requires_image,
          p_capabilities, p_price)
  on conflict (id) do update set slug = excluded.slug, name = excluded.name, provider = excluded.provider,
    endpoint = excluded.endpoint, available = excluded.available, unavailable_reason = excluded.unavailable_reason,
    requires_image = excluded.requires_image, capabilities = excluded.capabilities, price = excluded.price,
    updated_at = now();
$$;
