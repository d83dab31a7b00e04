// Sign in: the local stack's dev sign-in, or Supabase Auth (password or emailed link).
import { h, messageBox } from "../ui.js";

export function render(main, { auth, go }) {
  const error = messageBox("error");
  const status = messageBox("success");
  const reason = sessionStorage.getItem("i2v.signin-reason");
  sessionStorage.removeItem("i2v.signin-reason");
  const panel = h("section", { class: "panel signin" }, h("h1", {}, "Sign in"));
  if (reason) panel.append(h("p", { class: "warning" }, `You were signed out: ${reason}`));
  panel.append(error, status);
  const mode = auth.signInMode();

  if (mode === "dev") {
    const input = h("input", { id: "dev-user", type: "text", name: "user_id", value: auth.lastDevUser(), autocomplete: "off", spellcheck: "false", class: "mono", required: true });
    const form = h(
      "form",
      { "aria-describedby": "dev-hint" },
      h("p", { class: "notice", id: "dev-hint" },
        "Local stack: the dev sign-in mints a token for any user id (it exists only while the server uses its own dev secret). ",
        "New accounts start with SIGNUP_CREDITS (0 by default); grant credits with ",
        h("code", {}, "i2v credits grant USER_ID 20"), "."),
      h("div", { class: "field" }, h("label", { for: "dev-user" }, "User id (UUID)"), input),
      h("div", { class: "actions" },
        h("button", { type: "submit", id: "dev-sign-in" }, "Sign in"),
        h("button", { type: "button", class: "secondary", onclick: () => (input.value = crypto.randomUUID()) }, "New user id")),
    );
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      error.clear();
      try {
        await auth.signInDev(input.value.trim());
        go("generate");
      } catch (e) {
        error.show(`Sign-in failed: ${e.message}`);
      }
    });
    panel.append(form);
  } else if (mode === "supabase") {
    const email = h("input", { id: "email", type: "email", autocomplete: "email", required: true });
    const password = h("input", { id: "password", type: "password", autocomplete: "current-password" });
    const form = h(
      "form",
      {},
      h("div", { class: "field" }, h("label", { for: "email" }, "Email"), email),
      h("div", { class: "field" }, h("label", { for: "password" }, "Password"), password,
        h("p", { class: "hint" }, "Leave empty to get a sign-in link by email.")),
      h("div", { class: "actions" },
        h("button", { type: "submit", id: "password-sign-in" }, "Sign in"),
        h("button", { type: "button", class: "secondary", id: "magic-link" }, "Email me a link")),
    );
    const sendLink = async () => {
      error.clear();
      try {
        await auth.sendMagicLink(email.value.trim());
        status.show(`A sign-in link was sent to ${email.value.trim()}.`);
      } catch (e) {
        error.show(`Could not send the link: ${e.message}`);
      }
    };
    form.querySelector("#magic-link").addEventListener("click", sendLink);
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      if (!password.value) return sendLink();
      error.clear();
      try {
        await auth.signInPassword(email.value.trim(), password.value);
        go("generate");
      } catch (e) {
        error.show(`Sign-in failed: ${e.message}`);
      }
    });
    panel.append(form);
  } else {
    panel.append(h("p", { class: "error", role: "alert" },
      "This console has no sign-in configured: set supabase_url and supabase_anon_key in its config.json."));
  }
  main.append(panel);
}
