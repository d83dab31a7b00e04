// Webhooks: endpoints that receive your jobs' events signed per Standard Webhooks (the secret is shown once), how
// each is doing (pending, failed, the error standing, why it was disabled), disable and enable, and the delivery
// log with "send again".
import { checkboxes, confirmButton, h, messageBox, secretPanel, table, when } from "../ui.js";

const EVENTS = ["job.processing", "job.completed", "job.failed", "job.canceled"];
const REASONS = {
  deleted: "disabled by you",
  gone: "disabled: it answered 410 Gone",
  failing: "disabled: no delivery succeeded for days",
};

function endpointState(e) {
  if (e.disabled_at) return `${REASONS[e.disabled_reason] || "disabled"} (${when(e.disabled_at)})`;
  if (e.failing_since) return `failing since ${when(e.failing_since)}`;
  return "active";
}

function healthText(health) {
  const parts = [`${health.pending} pending`, `${health.failed_last_24h} failed in 24 h`];
  parts.push(health.last_delivered_at ? `last delivered ${when(health.last_delivered_at)}` : "nothing delivered yet");
  return parts.join(" · ");
}

export async function render(main, { api }) {
  const error = messageBox("error");
  const created = h("div", { id: "created-endpoint" });
  main.append(h("h1", {}, "Webhooks"),
    h("p", { class: "hint" }, "Each change of a job's status is POSTed to your endpoints, signed with ",
      h("code", {}, "webhook-id"), ", ", h("code", {}, "webhook-timestamp"), " and ", h("code", {}, "webhook-signature"),
      " (Standard Webhooks), and retried for about a day until a 2xx."),
    error, created);

  const url = h("input", { id: "webhook-url", type: "url", maxlength: "2048", placeholder: "https://example.com/hooks/i2v", autocomplete: "off" });
  const events = checkboxes("webhook-events", "Events", EVENTS, EVENTS);
  const submit = h("button", { type: "submit", id: "create-webhook" }, "Add endpoint");
  const form = h("form", { class: "panel", novalidate: true, "aria-labelledby": "new-endpoint-title" },
    h("h2", { id: "new-endpoint-title" }, "New endpoint"),
    h("div", { class: "field" }, h("label", { for: "webhook-url" }, "URL"), url,
      h("p", { class: "hint" }, "https on a public address; redirects are not followed.")),
    events.el,
    h("div", { class: "actions" }, submit));
  const endpointsBox = h("section", { "aria-labelledby": "endpoints-title" });
  const deliveriesBox = h("section", { "aria-labelledby": "deliveries-title" });
  main.append(form, endpointsBox, deliveriesBox);

  async function act(what, call) {
    error.clear();
    try {
      await call();
    } catch (e) {
      error.show(`${what} failed: ${api.describe(e)}`);
    }
    await load();
  }

  function endpointRow(e) {
    const toggle = e.disabled_at
      ? h("button", { type: "button", class: "secondary", "data-action": "enable", onclick: () => act("Enabling the endpoint", () => api.post("enable-webhook-endpoint", { endpoint_id: e.id })) }, "Enable")
      : confirmButton("Disable", "Really disable?", () => act("Disabling the endpoint", () => api.post("delete-webhook-endpoint", { endpoint_id: e.id })), { "data-action": "disable" });
    const test = e.disabled_at ? null
      : h("button", { type: "button", class: "secondary", "data-action": "test", onclick: () => act("Sending a test event", () => api.post("send-test-webhook", { endpoint_id: e.id })) }, "Send a test event");
    const lastError = e.health.last_error;
    return h("tr", { "data-endpoint-id": e.id },
      h("td", { "data-label": "URL", class: "mono" }, e.url, h("div", { class: "hint" }, `secret ${e.secret_prefix}…`)),
      h("td", { "data-label": "Events" }, e.events.join(", ")),
      h("td", { "data-label": "State", class: `endpoint-state ${e.disabled_at || e.failing_since ? "state-bad" : "state-ok"}` }, endpointState(e)),
      h("td", { "data-label": "Health", class: "endpoint-health" }, healthText(e.health),
        lastError ? h("div", { class: "state-bad" }, `Last error: ${lastError.status ? `HTTP ${lastError.status}` : lastError.error || "failed"}${lastError.at ? ` at ${when(lastError.at)}` : ""}`) : null),
      h("td", { "data-label": "Actions" }, h("div", { class: "actions" }, test, toggle)));
  }

  function deliveryRow(d) {
    const again = h("button", { type: "button", class: "secondary", "data-action": "redeliver", onclick: () => act("Sending it again", () => api.post("redeliver-webhook", { delivery_id: d.id })) }, "Send again");
    const last = d.last_status ? `HTTP ${d.last_status}` : d.last_error || "";
    return h("tr", { "data-delivery-id": d.id },
      h("td", { "data-label": "When" }, when(d.created_at)),
      h("td", { "data-label": "Event" }, d.event_type),
      h("td", { "data-label": "Job", class: "mono" }, d.job_id || ""),
      h("td", { "data-label": "To", class: "mono" }, d.url),
      h("td", { "data-label": "State", class: "delivery-state" }, d.state),
      h("td", { "data-label": "Attempts", class: "num" }, String(d.attempts)),
      h("td", { "data-label": "Last answer" }, last),
      h("td", { "data-label": "Actions" }, d.state === "pending" ? "" : again));
  }

  async function load() {
    let endpoints, deliveries;
    try {
      [endpoints, deliveries] = await Promise.all([api.get("list-webhook-endpoints"), api.get("list-webhook-deliveries", { limit: 20 })]);
    } catch (e) {
      error.show(`The webhooks could not be listed: ${api.describe(e)}`);
      return;
    }
    endpoints = endpoints.endpoints;
    deliveries = deliveries.deliveries;
    endpointsBox.replaceChildren(h("h2", { id: "endpoints-title" }, "Endpoints"),
      endpoints.length
        ? table("endpoints", "Webhook endpoints, newest first", ["URL", "Events", "State", "Health", ""], endpoints.map(endpointRow))
        : h("p", { class: "muted", id: "endpoints" }, "No endpoints yet."));
    deliveriesBox.replaceChildren(h("h2", { id: "deliveries-title" }, "Recent deliveries"),
      deliveries.length
        ? table("deliveries", "The last 20 deliveries, newest first", ["When", "Event", "Job", "To", "State", "Attempts", "Last answer", ""], deliveries.map(deliveryRow))
        : h("p", { class: "muted", id: "deliveries" }, "No deliveries yet."));
  }

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    error.clear();
    const body = { url: url.value.trim(), events: events.values() };
    if (!body.url) return error.show("Give the endpoint's URL.");
    if (!body.events.length) return error.show("Choose at least one event.");
    submit.disabled = true;
    try {
      const endpoint = await api.post("create-webhook-endpoint", body);
      url.value = "";
      await load(); // the list first, then the secret: the page is settled once the secret shows
      created.replaceChildren(secretPanel("new-secret", "Endpoint added: its signing secret", endpoint.secret,
        "Your endpoint verifies each delivery with it (the standardwebhooks package does). It is not shown again."));
    } catch (e) {
      error.show(`The endpoint could not be added: ${api.describe(e)}`);
    } finally {
      submit.disabled = false;
    }
  });

  await load();
}
