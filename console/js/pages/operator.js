// Operations (operators only): the figures of GET operator-overview, refreshed while the page is open. Anyone
// else is told in words that the page is for operators (the API answers 403).
import { h, messageBox, when } from "../ui.js";

const REFRESH_MS = 15000;
const WINDOWS = [["1", "Last hour"], ["24", "Last 24 hours"], ["168", "Last 7 days"]];

const seconds = (s) => (s == null ? "–" : s < 60 ? `${s.toFixed(1)} s` : `${(s / 60).toFixed(1)} min`);
const ms = (s) => (s == null ? "–" : `${Math.round(s * 1000)} ms`);

function bytes(n) {
  const units = ["B", "KB", "MB", "GB", "TB"];
  let i = 0;
  while (n >= 1000 && i < units.length - 1) { n /= 1000; i += 1; }
  return `${i ? n.toFixed(1) : n} ${units[i]}`;
}

function table(id, caption, columns, rows, empty) {
  if (!rows.length) return h("p", { class: "muted", id }, empty);
  return h("table", { id },
    h("caption", { class: "sr-only" }, caption),
    h("thead", {}, h("tr", {}, columns.map(([title, , cls]) => h("th", { scope: "col", class: cls === "num" ? "num" : null }, title)))),
    h("tbody", {}, rows.map((row) => h("tr", {}, columns.map(([title, value, cls]) =>
      h("td", { "data-label": title, class: cls || null }, value(row)))))));
}

function section(id, title, ...content) {
  return h("section", { class: "panel", "aria-labelledby": id }, h("h2", { id }, title), ...content);
}

/** The series of one metric in this instance's figures. */
const seriesOf = (data, name) => data.instance_metrics.filter((m) => m.metric === name);

function byLabel(series, label) {
  const out = new Map();
  for (const s of series) {
    const key = s.labels[label];
    const entry = out.get(key) || { value: 0, count: 0, parts: [] };
    entry.value += s.value;
    entry.count += s.count || 0;
    entry.parts.push(s);
    out.set(key, entry);
  }
  return out;
}

function checks(data) {
  const ok = data.ledger_mismatches === 0 && data.purchase_mismatches === 0;
  return section("checks-title", "Ledger checks",
    h("p", { class: ok ? "success" : "error", id: "ledger-check", role: ok ? "status" : "alert" },
      ok ? "The ledger agrees: 0 mismatches." :
        `Mismatches: ${data.ledger_mismatches} account(s) whose balance is not the sum of their ledger, ` +
        `${data.purchase_mismatches} whose purchases disagree with it. See the server's error log.`),
    h("dl", { class: "figures" },
      h("dt", {}, "Ledger mismatches"), h("dd", { id: "ledger-mismatches" }, String(data.ledger_mismatches)),
      h("dt", {}, "Purchase mismatches"), h("dd", { id: "purchase-mismatches" }, String(data.purchase_mismatches))));
}

function jobs(data) {
  const failures = Object.entries(data.failures);
  return section("jobs-title", "Jobs by model and provider",
    table("job-figures", "Jobs by model and provider in the window", [
      ["Model", (r) => r.model, "mono"], ["Provider", (r) => r.provider],
      ["Started", (r) => String(r.started), "num"], ["Completed", (r) => String(r.completed), "num"],
      ["Failed", (r) => String(r.failed), "num"], ["Canceled", (r) => String(r.canceled), "num"],
      ["Active", (r) => String(r.active), "num"],
      ["Median time", (r) => seconds(r.p50_s), "num"], ["95th percentile", (r) => seconds(r.p95_s), "num"],
    ], data.jobs, "No jobs in this window."),
    h("dl", { class: "figures" },
      h("dt", {}, "Failures by kind"),
      h("dd", { id: "failures" }, failures.length ? failures.map(([k, n]) => `${k}: ${n}`).join(", ") : "none"),
      h("dt", {}, "Refunds"),
      h("dd", { id: "refunds" }, `${data.refunds.count} job(s), ${data.refunds.credits} credit(s)`),
      h("dt", {}, "Videos copied from providers"),
      h("dd", { id: "mirrored" }, `${data.mirrored.videos} (${bytes(data.mirrored.bytes)})`)));
}

function webhooks(data) {
  const w = data.outgoing_webhooks;
  const disabled = Object.entries(w.endpoints_disabled);
  return section("webhooks-title", "Customers' webhooks",
    h("dl", { class: "figures" },
      h("dt", {}, "Deliveries in the window"),
      h("dd", { id: "webhook-deliveries" }, `${w.delivered} delivered, ${w.failed} failed for good`),
      h("dt", {}, "Waiting now"), h("dd", { id: "webhook-pending" }, String(w.pending)),
      h("dt", {}, "Endpoints failing now"), h("dd", { id: "endpoints-failing" }, String(w.endpoints_failing)),
      h("dt", {}, "Endpoints disabled in the window"),
      h("dd", { id: "endpoints-disabled" }, disabled.length ? disabled.map(([why, n]) => `${why}: ${n}`).join(", ") : "none")));
}

function stuck(data) {
  return section("stuck-title", "Unfinished jobs, waiting longest",
    table("stuck", "Unfinished jobs, oldest first", [
      ["Job", (r) => r.job_id, "mono"], ["Model", (r) => r.model, "mono"], ["Provider", (r) => r.provider],
      ["Status", (r) => r.awaiting_copy ? `${r.status} (copying)` : r.status],
      ["Provider says", (r) => r.provider_status || "–"],
      ["Age", (r) => seconds(r.age_s), "num"], ["Last change", (r) => when(r.updated_at)],
    ], data.stuck, "No unfinished jobs."));
}

function instance(data) {
  const calls = byLabel(seriesOf(data, "provider_call_seconds"), "provider");
  const errors = byLabel(seriesOf(data, "provider_errors"), "provider");
  const breakers = byLabel(seriesOf(data, "circuit_breaker_open"), "provider");
  const providers = [...new Set([...calls.keys(), ...errors.keys(), ...breakers.keys()])].sort();
  const lag = [...byLabel(seriesOf(data, "webhook_lag_seconds"), "provider")];
  const mirror = byLabel(seriesOf(data, "mirror_seconds"), "outcome");
  const mirrorBytes = seriesOf(data, "mirror_bytes").reduce((sum, s) => sum + s.value, 0);
  const actions = seriesOf(data, "reconciler_actions").map((s) => [s.labels.action, s.value]);
  return section("instance-title", `This server since ${when(data.instance_started_at)}`,
    h("p", { class: "hint" }, "Counted by the process that answered (on AWS Lambda: one container; CloudWatch has the deployment's metrics)."),
    h("h3", {}, "Provider calls"),
    table("provider-calls", "Provider calls", [
      ["Provider", (p) => p],
      ["Calls", (p) => String(calls.get(p)?.count || 0), "num"],
      ["Mean latency", (p) => (calls.get(p)?.count ? ms(calls.get(p).value / calls.get(p).count) : "–"), "num"],
      ["Errors", (p) => errors.get(p) ? errors.get(p).parts.map((s) => `${s.labels.reason}: ${s.value}`).join(", ") : "none"],
      ["Circuit breaker", (p) => (breakers.get(p)?.value ? "open" : "closed")],
    ], providers, "No provider calls yet."),
    h("h3", {}, "Webhook delivery lag"),
    table("webhook-lag", "Webhook delivery lag", [
      ["Provider", ([p]) => p], ["Deliveries", ([, s]) => String(s.count), "num"],
      ["Mean lag", ([, s]) => seconds(s.value / s.count), "num"],
    ], lag, "No webhook deliveries yet."),
    h("dl", { class: "figures" },
      h("dt", {}, "Copies"),
      h("dd", { id: "copies" }, `${mirror.get("ok")?.count || 0} done (${bytes(mirrorBytes)}), ${mirror.get("failed")?.count || 0} failed`),
      h("dt", {}, "Reconciler actions"),
      h("dd", { id: "reconciler" }, actions.length ? actions.map(([a, n]) => `${a}: ${n}`).join(", ") : "none")));
}

export async function render(main, { api }) {
  const error = messageBox("error");
  const hours = h("select", { id: "window" }, WINDOWS.map(([value, label]) => h("option", { value, selected: value === "24" }, label)));
  const refresh = h("button", { type: "button", class: "secondary", id: "refresh" }, "Refresh");
  const updated = h("p", { class: "hint", id: "updated", "aria-live": "polite" });
  const body = h("div", { class: "operator", id: "operator" });
  main.append(h("h1", {}, "Operations"), error,
    h("div", { class: "actions toolbar" }, h("label", { for: "window" }, "Window"), hours, refresh, updated), body);

  let timer = null;
  let stopped = false;
  async function load() {
    clearTimeout(timer);
    try {
      const data = await api.get("operator-overview", { hours: hours.value, stuck: 20 });
      if (stopped) return;
      error.clear();
      body.replaceChildren(checks(data), jobs(data), stuck(data), webhooks(data), instance(data));
      updated.textContent = `Updated ${when(data.now)}`;
    } catch (e) {
      if (stopped) return;
      error.show(e.status === 403 ? `This page is for operators. ${api.describe(e)}` : `The figures could not be read: ${api.describe(e)}`);
      if (e.status === 403) return;
    }
    if (!stopped) timer = setTimeout(load, REFRESH_MS);
  }
  hours.addEventListener("change", load);
  refresh.addEventListener("click", load);
  await load();
  return () => {
    stopped = true;
    clearTimeout(timer);
  };
}
