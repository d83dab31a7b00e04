// Clients and campaigns: an agency's customers, and their campaigns with a credit budget. A job started with a
// campaign counts against its budget (the Generate and Image pages offer the active ones); refunds give budget back.
import { credits, h, messageBox, table } from "../ui.js";

export async function render(main, { api }) {
  const error = messageBox("error");
  const done = messageBox("success");
  main.append(h("h1", {}, "Clients and campaigns"), error, done);

  const clientName = h("input", { id: "client-name", type: "text", maxlength: "200", autocomplete: "off" });
  const clientForm = h("form", { class: "panel", novalidate: true, "aria-labelledby": "new-client-title" },
    h("h2", { id: "new-client-title" }, "New client"),
    h("div", { class: "field" }, h("label", { for: "client-name" }, "Name"), clientName),
    h("div", { class: "actions" }, h("button", { type: "submit", id: "create-client" }, "Add client")));

  const campaignClient = h("select", { id: "campaign-client", name: "client" });
  const campaignName = h("input", { id: "campaign-name", type: "text", maxlength: "200", autocomplete: "off" });
  const budget = h("input", { id: "campaign-budget", type: "number", min: "0", step: "1", inputmode: "numeric", "aria-describedby": "budget-hint" });
  const campaignForm = h("form", { class: "panel", novalidate: true, "aria-labelledby": "new-campaign-title" },
    h("h2", { id: "new-campaign-title" }, "New campaign"),
    h("div", { class: "row" },
      h("div", { class: "field" }, h("label", { for: "campaign-client" }, "Client"), campaignClient),
      h("div", { class: "field" }, h("label", { for: "campaign-name" }, "Name"), campaignName),
      h("div", { class: "field" }, h("label", { for: "campaign-budget" }, "Budget (credits)"), budget,
        h("p", { class: "hint", id: "budget-hint" }, "Empty: no limit."))),
    h("div", { class: "actions" }, h("button", { type: "submit", id: "create-campaign" }, "Add campaign")));
  const lists = h("div", { id: "clients" });
  main.append(h("div", { class: "row" }, clientForm, campaignForm), lists);

  async function act(what, call) {
    error.clear();
    done.clear();
    try {
      await call();
      done.show(what);
      await load();
      return true;
    } catch (e) {
      error.show(`${what.replace(/\.$/, "")} failed: ${api.describe(e)}`);
      return false;
    }
  }

  function budgetForm(campaign) {
    const id = `budget-${campaign.id}`;
    const input = h("input", { id, type: "number", min: "0", step: "1", value: campaign.budget_credits ?? "", "aria-label": `Budget of ${campaign.name} in credits (empty: no limit)` });
    const form = h("form", { class: "inline-form", novalidate: true }, input,
      h("button", { type: "submit", class: "secondary", "data-action": "set-budget" }, "Set budget"));
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      const value = input.value.trim() === "" ? null : Number(input.value);
      if (input.validity.badInput || (value !== null && !(Number.isInteger(value) && value >= 0))) {
        return error.show("A budget is a whole number of credits, 0 or more (empty: no limit).");
      }
      act(`Budget of ${campaign.name} set.`, () => api.post("update-campaign", { campaign_id: campaign.id, budget_credits: value }));
    });
    return form;
  }

  function campaignRow(campaign) {
    const archive = h("button", { type: "button", class: "secondary", "data-action": campaign.archived ? "restore" : "archive" },
      campaign.archived ? "Restore" : "Archive");
    archive.addEventListener("click", () => act(`${campaign.name} ${campaign.archived ? "restored" : "archived"}.`,
      () => api.post("update-campaign", { campaign_id: campaign.id, archived: !campaign.archived })));
    return h("tr", { "data-campaign-id": campaign.id },
      h("td", { "data-label": "Campaign" }, h("a", { href: `#/jobs?campaign=${campaign.id}`, "data-action": "jobs" }, campaign.name),
        h("div", { class: "hint mono" }, campaign.id)),
      h("td", { "data-label": "Budget", class: "num" }, campaign.budget_credits == null ? "no limit" : credits(campaign.budget_credits)),
      h("td", { "data-label": "Spent", class: "num campaign-spent" }, credits(campaign.credits_spent)),
      h("td", { "data-label": "Remaining", class: "num campaign-remaining" }, campaign.budget_remaining == null ? "—" : credits(campaign.budget_remaining)),
      h("td", { "data-label": "State" }, campaign.archived ? "archived" : "active"),
      h("td", { "data-label": "Actions" }, h("div", { class: "actions" }, budgetForm(campaign), archive)));
  }

  function clientSection(client, campaigns) {
    const archive = h("button", { type: "button", class: "secondary", "data-action": client.archived ? "restore-client" : "archive-client" },
      client.archived ? "Restore client" : "Archive client");
    archive.addEventListener("click", () => act(`${client.name} ${client.archived ? "restored" : "archived"}.`,
      () => api.post("update-client", { client_id: client.id, archived: !client.archived })));
    const titleId = `client-${client.id}`;
    return h("section", { class: "panel", "data-client-id": client.id, "aria-labelledby": titleId },
      h("div", { class: "actions" }, h("h2", { id: titleId }, client.name, client.archived ? " (archived)" : ""), archive),
      campaigns.length
        ? table(null, `Campaigns of ${client.name}`, ["Campaign", "Budget", "Spent", "Remaining", "State", ""], campaigns.map(campaignRow))
        : h("p", { class: "muted" }, "No campaigns yet."));
  }

  async function load() {
    let clients, campaigns;
    try {
      [clients, campaigns] = await Promise.all([api.get("list-clients"), api.get("list-campaigns")]);
    } catch (e) {
      error.show(`The clients could not be listed: ${api.describe(e)}`);
      return;
    }
    clients = clients.clients;
    campaigns = campaigns.campaigns;
    const chosen = campaignClient.value;
    campaignClient.replaceChildren(...clients.filter((c) => !c.archived).map((c) => h("option", { value: c.id, selected: c.id === chosen }, c.name)));
    campaignForm.querySelector("button").disabled = !campaignClient.options.length;
    lists.replaceChildren(...(clients.length
      ? clients.map((client) => clientSection(client, campaigns.filter((c) => c.client_id === client.id)))
      : [h("p", { class: "muted" }, "No clients yet: add one, then give it campaigns with a budget.")]));
  }

  clientForm.addEventListener("submit", (event) => {
    event.preventDefault();
    const name = clientName.value.trim();
    if (!name) return error.show("Give the client a name.");
    act(`Client ${name} added.`, () => api.post("create-client", { name })).then((ok) => { if (ok) clientName.value = ""; });
  });
  campaignForm.addEventListener("submit", (event) => {
    event.preventDefault();
    const name = campaignName.value.trim();
    if (!name) return error.show("Give the campaign a name.");
    const body = { client_id: campaignClient.value, name };
    const wanted = budget.value.trim() === "" ? null : Number(budget.value);
    if (budget.validity.badInput || (wanted !== null && !(Number.isInteger(wanted) && wanted >= 0))) {
      return error.show("A budget is a whole number of credits, 0 or more (empty: no limit).");
    }
    if (wanted !== null) body.budget_credits = wanted;
    act(`Campaign ${name} added.`, () => api.post("create-campaign", body)).then((ok) => {
      if (ok) {
        campaignName.value = "";
        budget.value = "";
      }
    });
  });

  await load();
}
