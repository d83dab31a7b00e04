// The console's shell: configuration, sign-in state, hash routes, navigation.
import * as api from "./api.js";
import * as auth from "./auth.js";
import { announce, h } from "./ui.js";

// Every page: its route, the name in the navigation, and its module (loaded on first visit). A page module
// exports render(main, context) and may return a function that stops it (timers) when the page is left.
// Pages with `signedIn` need a signed-in user; pages with `operator` are listed only for operators (the API
// decides who is one: the page's own request answers 403 to anyone else).
export const PAGES = [
  { route: "generate", title: "Generate", module: "./pages/generate.js", signedIn: true },
  { route: "image", title: "Image", module: "./pages/image.js", signedIn: true },
  { route: "jobs", title: "Jobs", module: "./pages/jobs.js", signedIn: true },
  { route: "gallery", title: "Gallery", module: "./pages/gallery.js", signedIn: true },
  { route: "credits", title: "Credits", module: "./pages/credits.js", signedIn: true },
  { route: "campaigns", title: "Campaigns", module: "./pages/campaigns.js", signedIn: true },
  { route: "keys", title: "API keys", module: "./pages/keys.js", signedIn: true },
  { route: "webhooks", title: "Webhooks", module: "./pages/webhooks.js", signedIn: true },
  { route: "operator", title: "Operations", module: "./pages/operator.js", signedIn: true, operator: true },
  { route: "sign-in", title: "Sign in", module: "./pages/signin.js", signedIn: false, hidden: true },
];

const main = document.getElementById("main");
let stopPage = null;
let config = {};

async function loadConfig() {
  const response = await fetch("config.json", { cache: "no-store" });
  if (!response.ok) throw new Error(`config.json: HTTP ${response.status}`);
  return response.json();
}

function currentRoute() {
  const [route, query] = window.location.hash.replace(/^#\/?/, "").split("?");
  return { route: route || "generate", params: new URLSearchParams(query || "") };
}

/** Go to a page: go("jobs") or go("generate", {retry: "1"}). */
export function go(route, params) {
  const query = params ? `?${new URLSearchParams(params)}` : "";
  const target = `#/${route}${query}`;
  if (window.location.hash === target) show();
  else window.location.hash = target;
}

/** Whether the signed-in user is an operator: asked of the API once per user and session (403: no). */
async function isOperator(user) {
  if (!user) return false;
  const key = `i2v.operator.${user.id}`;
  const known = sessionStorage.getItem(key);
  if (known !== null) return known === "1";
  try {
    await api.get("operator-overview", { hours: 1, stuck: 1 });
    sessionStorage.setItem(key, "1");
    return true;
  } catch (error) {
    if (error.status === 403) sessionStorage.setItem(key, "0");
    return false;
  }
}

async function renderNav(user) {
  const nav = document.getElementById("nav");
  const { route } = currentRoute();
  const operator = PAGES.some((p) => p.operator) && (await isOperator(user));
  nav.replaceChildren(
    ...PAGES.filter((p) => !p.hidden && (user || !p.signedIn) && (operator || !p.operator)).map((p) =>
      h("li", {}, h("a", { href: `#/${p.route}`, "aria-current": p.route === route ? "page" : false }, p.title)),
    ),
  );
  document.getElementById("who").hidden = !user;
  document.getElementById("who-id").textContent = user ? user.email || user.id : "";
}

// Each navigation renders into its own container. A page still loading when the user moves on keeps writing into
// its container, which is no longer in the document, so it can never mix into (or wipe) the page shown after it.
let showing = 0;

async function show() {
  if (stopPage) stopPage();
  stopPage = null;
  const mine = ++showing;
  const { route, params } = currentRoute();
  const user = await auth.user();
  let page = PAGES.find((p) => p.route === route) || PAGES[0];
  if (page.signedIn && !user) page = PAGES.find((p) => p.route === "sign-in");
  if (page.route === "sign-in" && user) page = PAGES[0];
  await renderNav(user);
  const module = await import(page.module);
  if (mine !== showing) return; // a later navigation has begun
  document.title = `${page.title} · i2v console`;
  const view = h("div", { class: "page" });
  main.replaceChildren(view);
  const stop = await module.render(view, { params, user, config, go, api, auth });
  if (mine !== showing) {
    if (typeof stop === "function") stop();
    return;
  }
  stopPage = typeof stop === "function" ? stop : null;
  const heading = view.querySelector("h1");
  if (heading) heading.setAttribute("tabindex", "-1");
  (heading || main).focus({ preventScroll: false });
  announce(`${page.title} page`);
}

async function start() {
  try {
    config = await loadConfig();
    await auth.init(config);
  } catch (error) {
    main.replaceChildren(h("p", { class: "error", role: "alert" }, `The console could not start: ${error.message}`));
    return;
  }
  api.configure(config.api_url, auth.token);
  window.addEventListener("hashchange", show);
  window.addEventListener("i2v:unauthorized", async (event) => {
    await auth.signOut();
    sessionStorage.setItem("i2v.signin-reason", event.detail.message);
    go("sign-in");
  });
  document.getElementById("sign-out").addEventListener("click", async () => {
    await auth.signOut();
    go("sign-in");
  });
  await show();
}

start();
