// The console's one way to the i2v HTTP API: the user's bearer token, the one error shape turned into words.

let base = "";
let tokenSource = async () => null;

/** An error answer of the API (or no answer at all: status 0), with the words to show a person. */
export class ApiError extends Error {
  constructor(status, body) {
    const err = (body && body.error) || {};
    super(err.message || `The API answered HTTP ${status}.`);
    this.status = status;
    this.code = err.code || "http_error";
    this.details = err.details || {};
    this.requestId = err.request_id || null;
  }
}

/** Where the API is ("" = this origin) and how to get the current access token. */
export function configure(apiUrl, getToken) {
  base = (apiUrl || "").replace(/\/+$/, "");
  tokenSource = getToken;
}

/** The whole explanation of an error, in sentences: the message, the field, the allowed values. */
export function describe(error) {
  if (!(error instanceof ApiError)) return String(error && error.message ? error.message : error);
  const parts = [error.message];
  const field = error.details.field;
  if (field && !error.message.includes(field)) parts.push(`(Field: ${field}.)`);
  if (Array.isArray(error.details.allowed) && error.details.allowed.length) {
    parts.push(`Allowed: ${error.details.allowed.join(", ")}.`);
  }
  return parts.join(" ");
}

/** Call /functions/v1/{name}; return {data, response}. Throws ApiError. */
export async function call(method, name, { query, body, headers = {}, auth = true } = {}) {
  const url = new URL(`${base}/functions/v1/${name}`, window.location.href);
  for (const [key, value] of Object.entries(query || {})) {
    if (value !== undefined && value !== null && value !== "") url.searchParams.set(key, value);
  }
  const sent = { ...headers };
  if (body !== undefined) sent["Content-Type"] = "application/json";
  if (auth) {
    const token = await tokenSource();
    if (token) sent.Authorization = `Bearer ${token}`;
  }
  let response;
  try {
    response = await fetch(url, { method, headers: sent, body: body === undefined ? undefined : JSON.stringify(body) });
  } catch (cause) {
    throw new ApiError(0, { error: { code: "unreachable", message: `Cannot reach the API at ${url.origin}: is it running, and is the network up?` } });
  }
  const data = await response.json().catch(() => null);
  if (!response.ok) {
    const error = new ApiError(response.status, data);
    if (response.status === 401) window.dispatchEvent(new CustomEvent("i2v:unauthorized", { detail: error }));
    throw error;
  }
  return { data, response };
}

export const get = (name, query) => call("GET", name, { query }).then((r) => r.data);
export const post = (name, body, headers) => call("POST", name, { body, headers }).then((r) => r.data);

/** Hex SHA-256 of a Blob, computed in the browser (Web Crypto). */
export async function sha256Hex(blob) {
  const digest = await crypto.subtle.digest("SHA-256", await blob.arrayBuffer());
  return Array.from(new Uint8Array(digest), (b) => b.toString(16).padStart(2, "0")).join("");
}

/** Store an image through create-upload-url (named by its SHA-256) and a PUT; return {image_url, already_uploaded}. */
export async function uploadImage(file) {
  const type = file.type === "image/jpg" ? "image/jpeg" : file.type;
  const target = await post("create-upload-url", { content_type: type, size: file.size, sha256: await sha256Hex(file) });
  if (target.already_uploaded) return target;
  let response;
  try {
    response = await fetch(target.upload_url, { method: target.upload_method || "PUT", headers: target.upload_headers || {}, body: file });
  } catch (cause) {
    throw new ApiError(0, { error: { code: "unreachable", message: "The upload could not be sent: is the network up?" } });
  }
  if (!response.ok) throw new ApiError(response.status, await response.json().catch(() => null));
  return target;
}

/** Start a billed job (generate-video, generate-image) under an Idempotency-Key kept in sessionStorage under
 * ``pendingKey`` until the request is answered: the same body sent again (a double click, a reload) reuses the key,
 * so it is charged once. Returns {data, replayed}; an unanswered request keeps its key for the next try
 * (``error.unanswered`` is then true). */
export async function startOnce(name, body, pendingKey) {
  let saved = null;
  try {
    saved = JSON.parse(sessionStorage.getItem(pendingKey) || "null");
  } catch {
    saved = null;
  }
  const entry = saved && JSON.stringify(saved.body) === JSON.stringify(body) ? saved : { key: crypto.randomUUID(), body };
  sessionStorage.setItem(pendingKey, JSON.stringify(entry));
  try {
    const { data, response } = await call("POST", name, { body, headers: { "Idempotency-Key": entry.key } });
    sessionStorage.removeItem(pendingKey);
    return { data, replayed: response.headers.get("Idempotent-Replayed") === "true" };
  } catch (e) {
    e.unanswered = e.status === 0 || e.status >= 500 || e.code === "idempotency_in_flight";
    if (!e.unanswered) sessionStorage.removeItem(pendingKey);
    throw e;
  }
}
