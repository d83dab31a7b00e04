// Credits: the balance, the ledger, and credit packs bought through Stripe Checkout when the deployment sells them.
import { credits, h, messageBox, table, when } from "../ui.js";

export async function render(main, { api, user }) {
  const error = messageBox("error");
  main.append(h("h1", {}, "Credits"), error);
  let account, packs;
  try {
    [account, packs] = await Promise.all([api.get("get-credits", { limit: 50 }), api.get("list-credit-packs")]);
  } catch (e) {
    error.show(`The balance could not be read: ${api.describe(e)}`);
    return;
  }
  main.append(h("section", { class: "panel", "aria-labelledby": "balance-title" },
    h("h2", { id: "balance-title" }, "Balance"),
    h("p", { class: "balance", id: "balance" }, credits(account.balance)),
    account.debt ? h("p", { class: "warning" }, `The account owes ${credits(account.debt)} (a refunded purchase); new credits pay that first.`) : null,
    h("p", { class: "hint" }, "Account id: ", h("code", { id: "account-id" }, user.id))));

  const buy = h("section", { class: "panel", "aria-labelledby": "buy-title" }, h("h2", { id: "buy-title" }, "Buy credits"));
  if (packs.purchases_enabled) {
    buy.append(h("ul", { class: "packs" }, packs.packs.map((pack) => {
      const price = new Intl.NumberFormat(undefined, { style: "currency", currency: pack.currency.toUpperCase() }).format(pack.price_cents / 100);
      const button = h("button", { type: "button" }, `Buy ${pack.name}`);
      button.addEventListener("click", async () => {
        button.disabled = true;
        error.clear();
        const key = sessionStorage.getItem(`i2v.checkout.${pack.id}`) || crypto.randomUUID();
        sessionStorage.setItem(`i2v.checkout.${pack.id}`, key);
        try {
          const session = await api.post("create-checkout-session", { pack_id: pack.id }, { "Idempotency-Key": key });
          sessionStorage.removeItem(`i2v.checkout.${pack.id}`);
          window.location.assign(session.checkout_url);
        } catch (e) {
          error.show(`The checkout could not start: ${api.describe(e)}`);
          button.disabled = false;
        }
      });
      return h("li", { class: "pack panel" }, h("strong", {}, pack.name), h("span", {}, `${credits(pack.credits)} for ${price}`), button);
    })));
  } else {
    buy.append(h("p", { class: "notice" },
      "This deployment does not sell credits (Stripe is not configured). On the local stack an operator grants them: ",
      h("code", {}, `i2v credits grant ${user.id} 20`), "."));
  }
  main.append(buy);

  const rows = account.entries.map((e) => h("tr", {},
    h("td", { "data-label": "When" }, when(e.created_at)),
    h("td", { class: "num", "data-label": "Change" }, e.delta > 0 ? `+${e.delta}` : String(e.delta)),
    h("td", { "data-label": "Kind" }, e.kind),
    h("td", { "data-label": "Reason" }, e.reason || ""),
    h("td", { "data-label": "Job", class: "mono" }, e.job_id || "")));
  main.append(h("section", { "aria-labelledby": "ledger-title" },
    h("h2", { id: "ledger-title" }, "Ledger"),
    rows.length
      ? table("ledger", "Credit ledger, newest first", ["When", "Change", "Kind", "Reason", "Job"], rows)
      : h("p", { class: "muted" }, "No entries yet.")));
}
