// API keys: create one (its scopes and an optional expiry; the key is shown this once), list them with when each
// was last used, and revoke one (asked twice: a script using it stops working at once).
import { checkboxes, confirmButton, h, messageBox, secretPanel, table, when } from "../ui.js";

const SCOPES = ["generate", "read", "billing", "campaigns", "webhooks", "keys"];
const DEFAULT_SCOPES = ["generate", "read", "campaigns", "webhooks"];

function keyState(key) {
  if (key.revoked_at) return `revoked ${when(key.revoked_at)}`;
  if (key.expires_at && new Date(key.expires_at) <= new Date()) return `expired ${when(key.expires_at)}`;
  return "active";
}

export async function render(main, { api }) {
  const error = messageBox("error");
  const created = h("div", { id: "created-key" });
  main.append(h("h1", {}, "API keys"),
    h("p", { class: "hint" }, "Scripts and servers call the API with a key instead of your sign-in: ",
      h("code", {}, "Authorization: Bearer i2v_sk_…"), ". A key can do only what its scopes allow."),
    error, created);

  const name = h("input", { id: "key-name", type: "text", maxlength: "200", required: true, autocomplete: "off" });
  const scopes = checkboxes("key-scopes", "Scopes", SCOPES, DEFAULT_SCOPES);
  const expires = h("input", { id: "key-expires", type: "date", "aria-describedby": "key-expires-hint" });
  const submit = h("button", { type: "submit", id: "create-key" }, "Create key");
  const form = h("form", { class: "panel", novalidate: true, "aria-labelledby": "new-key-title" },
    h("h2", { id: "new-key-title" }, "New key"),
    h("div", { class: "row" },
      h("div", { class: "field" }, h("label", { for: "key-name" }, "Name"), name),
      h("div", { class: "field" }, h("label", { for: "key-expires" }, "Expires (optional)"), expires,
        h("p", { class: "hint", id: "key-expires-hint" }, "At the start of that day, UTC. Empty: never."))),
    scopes.el,
    h("div", { class: "actions" }, submit));
  const list = h("section", { "aria-labelledby": "keys-title" });
  main.append(form, list);

  async function load() {
    let keys;
    try {
      keys = (await api.get("list-api-keys")).keys;
    } catch (e) {
      error.show(`The keys could not be listed: ${api.describe(e)}`);
      return;
    }
    const rows = keys.map((key) => h("tr", { "data-key-id": key.id },
      h("td", { "data-label": "Name" }, key.name),
      h("td", { "data-label": "Key", class: "mono" }, `${key.prefix}…`),
      h("td", { "data-label": "Scopes" }, key.scopes.join(", ")),
      h("td", { "data-label": "Created" }, when(key.created_at)),
      h("td", { "data-label": "Last used" }, key.last_used_at ? when(key.last_used_at) : "never"),
      h("td", { "data-label": "Expires" }, key.expires_at ? when(key.expires_at) : "never"),
      h("td", { "data-label": "State", class: "key-state" }, keyState(key)),
      h("td", { "data-label": "Actions" }, key.revoked_at ? "" : confirmButton("Revoke", "Really revoke?", () => revoke(key), { "data-action": "revoke" }))));
    list.replaceChildren(h("h2", { id: "keys-title" }, "Your keys"),
      rows.length
        ? table("keys", "API keys, newest first", ["Name", "Key", "Scopes", "Created", "Last used", "Expires", "State", ""], rows)
        : h("p", { class: "muted", id: "keys" }, "No keys yet."));
  }

  async function revoke(key) {
    error.clear();
    try {
      await api.post("revoke-api-key", { key_id: key.id });
    } catch (e) {
      error.show(`The key could not be revoked: ${api.describe(e)}`);
    }
    await load();
  }

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    error.clear();
    const body = { name: name.value.trim(), scopes: scopes.values() };
    if (!body.name) return error.show("Give the key a name (what uses it), to tell it apart later.");
    if (!body.scopes.length) return error.show("Choose at least one scope.");
    if (expires.value) body.expires_at = `${expires.value}T00:00:00Z`;
    submit.disabled = true;
    try {
      const key = await api.post("create-api-key", body);
      name.value = "";
      expires.value = "";
      await load(); // the list first, then the key: the page is settled once the key shows
      created.replaceChildren(secretPanel("new-key", `Key “${key.name}” created`, key.key,
        "Store it now (a secret manager, your server's environment): it is not shown again."));
    } catch (e) {
      error.show(`The key could not be created: ${api.describe(e)}`);
    } finally {
      submit.disabled = false;
    }
  });

  await load();
}
