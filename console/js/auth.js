// Signing in: the local stack's dev sign-in, or Supabase Auth (supabase-js, vendored from the npm registry).

const DEV_SESSION = "i2v.dev-session";
const DEV_USER = "i2v.dev-user";
let supabase = null;
let mode = "none";

/** Pick the sign-in from the console's config: Supabase when configured, else the dev sign-in when offered. */
export async function init(config) {
  if (config.supabase_url && config.supabase_anon_key) {
    await loadScript("vendor/supabase.js");
    supabase = window.supabase.createClient(config.supabase_url, config.supabase_anon_key, {
      auth: { persistSession: true, autoRefreshToken: true, detectSessionInUrl: true },
    });
    mode = "supabase";
  } else if (config.dev_sign_in) {
    mode = "dev";
  }
  return mode;
}

export const signInMode = () => mode;

function loadScript(src) {
  return new Promise((resolve, reject) => {
    const script = document.createElement("script");
    script.src = src;
    script.onload = resolve;
    script.onerror = () => reject(new Error(`Could not load ${src}.`));
    document.head.append(script);
  });
}

function devSession() {
  try {
    const session = JSON.parse(localStorage.getItem(DEV_SESSION) || "null");
    return session && session.expires_at > Date.now() / 1000 + 30 ? session : null;
  } catch {
    return null;
  }
}

/** The current access token, or null when signed out. */
export async function token() {
  if (mode === "supabase") {
    const { data } = await supabase.auth.getSession();
    return data.session ? data.session.access_token : null;
  }
  const session = devSession();
  return session ? session.access_token : null;
}

/** The signed-in user's id (and email when known), or null. */
export async function user() {
  if (mode === "supabase") {
    const { data } = await supabase.auth.getSession();
    return data.session ? { id: data.session.user.id, email: data.session.user.email } : null;
  }
  const session = devSession();
  return session ? { id: session.user_id, email: null } : null;
}

/** The user id the dev sign-in used last on this browser (a new one the first time). */
export function lastDevUser() {
  let id = localStorage.getItem(DEV_USER);
  if (!id) {
    id = crypto.randomUUID();
    localStorage.setItem(DEV_USER, id);
  }
  return id;
}

/** Dev sign-in (local stack only): the server mints a token for this user id. */
export async function signInDev(userId) {
  let response;
  try {
    response = await fetch("console/dev-sign-in", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ user_id: userId }),
    });
  } catch {
    throw new Error("Cannot reach the local server: is `i2v serve` running?");
  }
  const body = await response.json().catch(() => null);
  if (!response.ok) throw new Error((body && body.error && body.error.message) || `HTTP ${response.status}`);
  const session = { ...body, expires_at: Date.now() / 1000 + body.expires_in };
  localStorage.setItem(DEV_SESSION, JSON.stringify(session));
  localStorage.setItem(DEV_USER, body.user_id);
  return session;
}

/** Supabase sign-in with email and password. */
export async function signInPassword(email, password) {
  const { error } = await supabase.auth.signInWithPassword({ email, password });
  if (error) throw new Error(error.message);
}

/** Supabase sign-in by an emailed link that returns to this page. */
export async function sendMagicLink(email) {
  const redirect = window.location.href.split("#")[0];
  const { error } = await supabase.auth.signInWithOtp({ email, options: { emailRedirectTo: redirect } });
  if (error) throw new Error(error.message);
}

export async function signOut() {
  localStorage.removeItem(DEV_SESSION);
  if (mode === "supabase") await supabase.auth.signOut();
}
