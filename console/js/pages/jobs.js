// Jobs: the caller's jobs (videos and images), newest first; unfinished ones are followed live (progress, queue position) in rows
// that keep their size; cancel, and retry as a new job.
import { announce, h, messageBox, when } from "../ui.js";
import { imageOf } from "./generate.js";
import { RETRY as IMAGE_RETRY } from "./image.js";

const ACTIVE = new Set(["pending", "processing"]);
const POLL_MS = 1000;

export function progressText(job) {
  // A video from a prompt alone makes its start image first (stage "image"), then the video (stage "video").
  const active = ACTIVE.has(job.status);
  if (active && job.stage === "image") return "Step 1 of 2: making the start image";
  const step = active && job.stage === "video" ? "Step 2 of 2, the video: " : "";
  if (job.status === "pending") {
    return step + (job.queue_position != null ? `Waiting: position ${job.queue_position} in the queue` : "Waiting to start");
  }
  if (job.status === "processing") {
    return step + (job.progress != null ? `Rendering: ${Math.round(job.progress * 100)}%` : "Rendering");
  }
  if (job.status === "failed") return job.error_message ? `Failed: ${job.error_message}` : "Failed (refunded)";
  if (job.status === "canceled") return "Canceled (refunded)";
  return "Done";
}

export async function render(main, { api, go, params }) {
  const error = messageBox("error");
  const list = h("ol", { class: "jobs", id: "jobs", "aria-label": "Jobs, newest first" });
  // #/jobs?campaign=ID: only that campaign's jobs (the Campaigns page links here).
  const campaignId = params.get("campaign");
  const scope = campaignId
    ? h("p", { class: "notice", id: "jobs-scope" }, "Jobs of one campaign only. ", h("a", { href: "#/jobs" }, "Show all jobs"), ".")
    : null;
  main.append(h("h1", {}, "Jobs"), scope, error, list);
  const rows = new Map();
  let timer = null;
  let stopped = false;

  function update(row, job) {
    const { badge, progress, line, actions } = row.parts;
    const was = row.job && row.job.status;
    row.job = job;
    row.el.dataset.status = job.status;
    badge.dataset.status = job.status;
    badge.textContent = job.status;
    const fraction = job.status === "completed" ? 1 : job.progress;
    if (fraction != null && job.status !== "failed" && job.status !== "canceled") progress.value = fraction;
    else progress.removeAttribute("value");
    progress.hidden = !ACTIVE.has(job.status) && job.status !== "completed";
    progress.setAttribute("aria-label", `Progress of job ${job.job_id}`);
    line.textContent = progressText(job);
    actions.replaceChildren(...buttons(job));
    if (was && was !== job.status) announce(`Job ${job.job_id} is ${job.status}.`);
  }

  function buttons(job) {
    if (ACTIVE.has(job.status)) {
      return [h("button", { type: "button", class: "danger", "data-action": "cancel", onclick: () => cancel(job) }, "Cancel")];
    }
    const retry = h("button", { type: "button", class: "secondary", "data-action": "retry", onclick: () => retryAsNew(job) }, "Retry as new");
    const view = job.kind === "image" ? "View" : "Watch";
    if (job.status === "completed") return [h("a", { class: "button secondary", href: `#/gallery?job=${job.job_id}` }, view), retry];
    return [retry];
  }

  function row(job) {
    const parts = {
      badge: h("span", { class: "badge" }),
      progress: h("progress", { max: "1" }),
      line: h("p", { class: "line" }),
      actions: h("div", { class: "actions" }),
    };
    const el = h("li", { class: "panel job", id: `job-${job.job_id}` },
      parts.badge,
      h("div", { class: "meta" },
        h("p", { class: "prompt" }, job.prompt || h("span", { class: "muted" }, "(no prompt)")),
        h("p", { class: "line" }, h("span", { class: "mono" }, job.job_id)),
        h("p", { class: "line" }, `${job.kind === "image" ? "Image" : "Video"} · ${job.model || ""} · ${job.credits_used ?? "?"} credits · ${when(job.created_at)}`),
        parts.progress, parts.line),
      parts.actions);
    const r = { el, parts, job: null };
    update(r, job);
    return r;
  }

  async function cancel(job) {
    error.clear();
    try {
      update(rows.get(job.job_id), await api.post("cancel-video", { job_id: job.job_id }));
    } catch (e) {
      error.show(`Job ${job.job_id} could not be canceled: ${api.describe(e)}`);
    }
  }

  function retryAsNew(job) {
    if (job.kind === "image") {
      sessionStorage.setItem(IMAGE_RETRY, JSON.stringify({ model_id: job.model, prompt: job.prompt || "", settings: job.settings || {} }));
      go("image");
      return;
    }
    const retry = { model_id: job.model, prompt: job.prompt || "", settings: job.settings || {} };
    const image = imageOf(job.job_id);
    if (image) retry.image_url = image;
    sessionStorage.setItem("i2v.retry", JSON.stringify(retry));
    go("generate");
  }

  async function poll() {
    const active = [...rows.values()].filter((r) => ACTIVE.has(r.job.status));
    await Promise.all(active.map(async (r) => {
      try {
        update(r, { ...r.job, ...(await api.get("get-video-status", { job_id: r.job.job_id })) });
      } catch (e) {
        error.show(`Job ${r.job.job_id}: ${api.describe(e)}`);
      }
    }));
    if (!stopped) timer = setTimeout(poll, POLL_MS);
  }

  try {
    const page = await api.get("list-jobs", { limit: 50, campaign_id: campaignId });
    if (!page.jobs.length && campaignId) {
      list.replaceWith(h("p", { class: "muted" }, "This campaign has no jobs yet."));
      return;
    }
    if (!page.jobs.length) {
      list.replaceWith(h("p", { class: "notice" }, "No jobs yet. ", h("a", { href: "#/generate" }, "Generate a video"),
        " or ", h("a", { href: "#/image" }, "make an image"), "."));
      return;
    }
    for (const job of page.jobs) {
      const r = row(job);
      rows.set(job.job_id, r);
      list.append(r.el);
    }
    if (page.next_cursor) main.append(h("p", { class: "hint" }, "The 50 newest jobs are shown."));
  } catch (e) {
    error.show(`The jobs could not be listed: ${api.describe(e)}`);
    return;
  }
  timer = setTimeout(poll, POLL_MS);
  return () => {
    stopped = true;
    clearTimeout(timer);
  };
}
