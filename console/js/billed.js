// What the pages that start a billed job (Generate, Image) share: the model picker, the price panel fed by a
// quote (debounced, a late answer to an older question dropped), and starting the job under an Idempotency-Key
// kept until the request is answered (api.startOnce), so a double click or a reload is charged once.
import { credits, h } from "./ui.js";

/** A <select> of ``models``: unavailable ones listed, disabled, with the reason; ``chosen`` (else the first
 * available one) selected. */
export function modelSelect(id, models, chosen) {
  const first = (models.find((m) => m.available) || {}).slug;
  return h("select", { id, name: "model" },
    models.map((m) => h("option", { value: m.slug, disabled: !m.available, selected: m.slug === (chosen || first) },
      m.available ? `${m.name} (${m.slug})` : `${m.name} (${m.slug}) — unavailable: ${m.unavailable_reason || "switched off"}`)));
}

/** The price panel: the amount, the balance before and after, a note and the submit button saying ``verb``.
 * Its elements' ids are ``prefix`` + price, price-note, price-title, balance, balance-after; the button's is
 * ``submitId``. ``what`` names the thing priced in the note when the balance falls short. */
export function pricePanel(api, { prefix, submitId, verb, what }) {
  const amount = h("p", { class: "amount", id: `${prefix}price` }, "—");
  const note = h("p", { class: "hint", id: `${prefix}price-note` }, "");
  const balance = h("dd", { id: `${prefix}balance` }, "—");
  const after = h("dd", { id: `${prefix}balance-after` }, "—");
  const submit = h("button", { type: "submit", id: submitId, disabled: true }, verb);
  const el = h("section", { class: "panel price", "aria-labelledby": `${prefix}price-title`, "aria-live": "polite" },
    h("h2", { id: `${prefix}price-title` }, "Price"),
    amount,
    h("dl", {}, h("dt", {}, "Balance"), balance, h("dt", {}, "After"), after),
    note,
    submit);
  let seq = 0;
  let timer = null;

  /** Price now: ``missing`` (what the form still lacks, or null) else the quote ``ask()`` answers. */
  async function now(missing, ask) {
    const mine = ++seq;
    submit.disabled = true;
    if (missing) {
      amount.textContent = "—";
      note.className = "hint";
      note.textContent = missing;
      submit.textContent = verb;
      return;
    }
    note.textContent = "Pricing…";
    try {
      const q = await ask();
      if (mine !== seq) return;
      amount.textContent = q.parts
        ? `${credits(q.credits)} (start image ${q.parts.image} + video ${q.parts.video})`
        : credits(q.credits);
      balance.textContent = credits(q.balance);
      after.textContent = credits(q.balance_after);
      const overBudget = q.campaign_budget_after != null && q.campaign_budget_after < 0;
      note.className = q.balance_after < 0 || overBudget ? "warning" : "hint";
      note.textContent = q.balance_after < 0
        ? `Your balance of ${credits(q.balance)} does not cover ${what}.`
        : overBudget
          ? `The campaign has ${credits(q.campaign_budget_remaining)} of its budget left: not enough for ${what}.`
          : `Charged once, when you press ${verb}; refunded if the job fails or is canceled.`;
      submit.textContent = `${verb} for ${credits(q.credits)}`;
      submit.disabled = panel.busy;
    } catch (e) {
      if (mine !== seq) return;
      amount.textContent = "—";
      note.className = "error";
      note.textContent = api.describe(e);
    }
  }

  const panel = {
    el,
    submit,
    verb,
    busy: false,
    now,
    /** Price again a quarter of a second after the last change (``missing`` is asked then). */
    later(missing, ask) {
      clearTimeout(timer);
      timer = setTimeout(() => now(missing(), ask), 250);
    },
    stop: () => clearTimeout(timer),
  };
  return panel;
}

/** Start the job ``name`` with ``body`` (once at a time per panel): the answer goes to ``started`` (its job id in
 * a <code id=codeId>, after ``label``), a refusal to ``error``; ``then()`` runs either way (the page prices
 * again). Returns the answer's data, or null. */
export async function startJob(api, panel, { name, body, pendingKey, started, error, label, codeId, then }) {
  if (panel.busy) return null; // a second click while the first request is out
  panel.busy = true;
  panel.submit.disabled = true;
  error.clear();
  started.clear();
  try {
    const { data, replayed } = await api.startOnce(name, body, pendingKey);
    started.replaceChildren(
      replayed ? "This request was already answered: " : label,
      h("code", { id: codeId }, data.job_id),
      ` (${credits(data.credits_used)}). `,
      h("a", { href: "#/jobs" }, "Follow it on the Jobs page"), ".");
    return data;
  } catch (e) {
    error.show(e.unanswered
      ? `${api.describe(e)} Press ${panel.verb} again: the same request is sent again and charged at most once.`
      : api.describe(e));
    return null;
  } finally {
    panel.busy = false;
    then();
  }
}

/** An optional "Campaign" choice for agencies: the active campaigns (client — campaign, with the budget left), or
 * nothing shown when there are none. ``value()`` is the chosen campaign id or null; ``chosen`` preselects one. */
export function campaignSelect(api, id, chosen, onChange) {
  const el = h("select", { id, name: "campaign" }, h("option", { value: "" }, "None"));
  const field = h("div", { class: "field", hidden: true }, h("label", { for: id }, "Campaign (optional)"), el,
    h("p", { class: "hint" }, "The job counts against the campaign's budget."));
  el.addEventListener("change", () => onChange && onChange());
  (async () => {
    try {
      const [clients, campaigns] = await Promise.all([api.get("list-clients"), api.get("list-campaigns", { archived: false })]);
      const names = Object.fromEntries(clients.clients.map((c) => [c.id, c.name]));
      for (const c of campaigns.campaigns) {
        const left = c.budget_remaining == null ? "no limit" : `${credits(c.budget_remaining)} left`;
        el.append(h("option", { value: c.id, selected: c.id === chosen }, `${names[c.client_id] || "?"} — ${c.name} (${left})`));
      }
      field.hidden = !campaigns.campaigns.length;
    } catch {
      field.hidden = true; // an API key without the read scope, say: the job is simply not tied to a campaign
    }
  })();
  return { field, value: () => el.value || null };
}
