// Small DOM helpers shared by the pages.

/** Create an element: h("p", {class: "x"}, "text", child). Attributes starting with "on" are listeners. */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === false || value === null || value === undefined) continue;
    if (key.startsWith("on")) el.addEventListener(key.slice(2), value);
    else if (key === "dataset") Object.assign(el.dataset, value);
    else el.setAttribute(key, value === true ? "" : value);
  }
  for (const child of children.flat()) {
    if (child !== null && child !== undefined && child !== false) el.append(child);
  }
  return el;
}

/** Say something to screen-reader users (a polite live region). */
export function announce(text) {
  const region = document.getElementById("announcer");
  region.textContent = "";
  setTimeout(() => (region.textContent = text), 50);
}

/** A message box (role=alert for errors) whose text can be set and cleared. */
export function messageBox(kind = "error") {
  const el = h("div", { class: kind, role: kind === "error" ? "alert" : "status" });
  el.show = (text) => (el.textContent = text || "");
  el.clear = () => (el.textContent = "");
  return el;
}

/** "2026-05-01 12:03:04" (local time) from an ISO timestamp. */
export function when(iso) {
  if (!iso) return "";
  const d = new Date(iso);
  const pad = (n) => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

/** The download name the CLI uses too: {job_id}_{model}_{YYYYmmdd_HHMMSS}.mp4, the job's creation time in UTC. */
export function videoFilename(job) {
  const d = job.created_at ? new Date(job.created_at) : new Date();
  const pad = (n) => String(n).padStart(2, "0");
  const stamp = `${d.getUTCFullYear()}${pad(d.getUTCMonth() + 1)}${pad(d.getUTCDate())}_${pad(d.getUTCHours())}${pad(d.getUTCMinutes())}${pad(d.getUTCSeconds())}`;
  const model = (job.model || "video").replace(/[^A-Za-z0-9._-]/g, "-");
  return `${job.job_id}_${model}_${stamp}.mp4`;
}

export const credits = (n) => `${n} credit${n === 1 ? "" : "s"}`;

/** The JSON stored under ``key`` in ``storage``, or null when there is none or it does not parse. */
export function readJson(storage, key) {
  try {
    return JSON.parse(storage.getItem(key) || "null");
  } catch {
    return null;
  }
}

/** A labelled <select> of ``values`` with ``chosen`` selected: {el, field}. */
export function select(id, label, values, chosen) {
  const el = h("select", { id, name: id }, values.map((v) => h("option", { value: String(v), selected: String(v) === String(chosen) }, String(v))));
  return { el, field: h("div", { class: "field" }, h("label", { for: id }, label), el) };
}

/** A panel showing a secret the API answers only once (an API key, a webhook signing secret), with a copy button. */
export function secretPanel(id, title, value, hint) {
  const copy = h("button", { type: "button", class: "secondary" }, "Copy");
  copy.addEventListener("click", async () => {
    try {
      await navigator.clipboard.writeText(value);
      copy.textContent = "Copied";
    } catch {
      copy.textContent = "Select it and copy";
    }
  });
  return h("section", { class: "panel success", role: "status", "aria-labelledby": `${id}-title` },
    h("h2", { id: `${id}-title` }, title),
    h("p", { class: "secret" }, h("code", { id }, value), copy),
    h("p", { class: "hint" }, hint));
}

/** A button for an action that cannot be undone: the first press asks "sure?", a second within 6 s does it. */
export function confirmButton(label, confirmLabel, action, attrs = {}) {
  const button = h("button", { type: "button", class: "danger", ...attrs }, label);
  let armed = null;
  button.addEventListener("click", async () => {
    if (!armed) {
      button.textContent = confirmLabel;
      button.dataset.armed = "1";
      armed = setTimeout(() => {
        armed = null;
        button.textContent = label;
        delete button.dataset.armed;
      }, 6000);
      return;
    }
    clearTimeout(armed);
    armed = null;
    button.disabled = true;
    try {
      await action();
    } finally {
      button.disabled = false;
      button.textContent = label;
      delete button.dataset.armed;
    }
  });
  return button;
}

/** Labelled checkboxes in a fieldset: {el, values()} with ``checked`` ticked at first. */
export function checkboxes(name, legend, options, checked) {
  const boxes = options.map((value) => h("input", { type: "checkbox", name, value, id: `${name}-${value}`, checked: checked.includes(value) }));
  const el = h("fieldset", { class: "checks", id: name }, h("legend", {}, legend),
    boxes.map((box) => h("label", { for: box.id }, box, box.value)));
  return { el, values: () => boxes.filter((b) => b.checked).map((b) => b.value) };
}

/** A table with a caption for screen readers, column headings and ``rows`` (<tr> elements). */
export function table(id, caption, headings, rows) {
  return h("table", { id },
    h("caption", { class: "sr-only" }, caption),
    h("thead", {}, h("tr", {}, headings.map((t) => h("th", { scope: "col" }, t)))),
    h("tbody", {}, rows));
}
