// Generate: an image (uploaded by its SHA-256, or an earlier image or video's last frame from the Gallery) or a
// prompt, a video model and its allowed settings, the price from
// quote, then generate-video with an Idempotency-Key kept in sessionStorage until the request is answered, so a
// double click or a reload sends the same key again and the video is charged once.
import { campaignSelect, modelSelect as pickModel, pricePanel, startJob } from "../billed.js";
import { h, messageBox, readJson, select } from "../ui.js";

const PENDING = "i2v.generate.pending";
const RETRY = "i2v.retry";
const IMAGES = "i2v.job-images";

/** Remember which image a job was made from, so "retry as new" can use it again (the last 200 jobs). */
export function rememberImage(jobId, imageUrl) {
  if (!imageUrl) return;
  const images = readJson(localStorage, IMAGES) || {};
  images[jobId] = imageUrl;
  const ids = Object.keys(images);
  for (const old of ids.slice(0, Math.max(0, ids.length - 200))) delete images[old];
  localStorage.setItem(IMAGES, JSON.stringify(images));
}

export function imageOf(jobId) {
  return (readJson(localStorage, IMAGES) || {})[jobId] || null;
}

export async function render(main, { api, go }) {
  const error = messageBox("error");
  const started = messageBox("success");
  main.append(h("h1", {}, "Generate a video"), error, started);

  let models;
  try {
    models = (await api.get("list-models")).models;
  } catch (e) {
    error.show(`The models could not be listed: ${api.describe(e)}`);
    return;
  }
  models = models.filter((m) => m.kind !== "text-to-image"); // images are made on the Image page
  const retry = readJson(sessionStorage, RETRY);
  sessionStorage.removeItem(RETRY);
  const pending = readJson(sessionStorage, PENDING);
  const seed = (pending && pending.body) || retry || {};
  let imageUrl = seed.image_url || null;
  // An earlier result to start from: {image_id} (an image made here) or {video_id} (a video's last frame).
  let reference = seed.image_id ? { image_id: seed.image_id } : seed.video_id ? { video_id: seed.video_id } : null;

  const modelSelect = pickModel("model", models, seed.model_id);
  const file = h("input", { id: "image", type: "file", accept: "image/jpeg,image/png,image/webp", "aria-describedby": "image-hint upload-state" });
  const preview = h("img", { alt: "", hidden: true });
  const uploadState = h("p", { class: "upload-state", id: "upload-state", role: "status" },
    reference && reference.image_id ? `Starting from image ${reference.image_id}.`
      : reference ? `Continuing video ${reference.video_id} from its last frame.`
        : imageUrl ? "Using the image of the earlier job." : "");
  const drop = h("div", { class: "drop" }, preview,
    h("label", { for: "image", class: "label" }, "Image"),
    h("p", { class: "hint", id: "image-hint" }, "Drop a JPEG, PNG or WebP here, or press to choose one."), file);
  const prompt = h("textarea", { id: "prompt", name: "prompt", maxlength: "4000", "aria-describedby": "prompt-hint" }, seed.prompt || "");
  const settingsBox = h("div", { class: "row" });
  const campaign = campaignSelect(api, "campaign", seed.campaign_id, () => requote());
  const price = pricePanel(api, { prefix: "", submitId: "generate", verb: "Generate", what: "this video" });
  let settingSelects = {};

  function model() {
    return models.find((m) => m.slug === modelSelect.value);
  }

  function renderSettings(chosen = {}) {
    const m = model();
    const defaults = { ...m.defaults, ...chosen };
    settingSelects = {
      resolution: select("resolution", "Resolution", m.resolutions, defaults.resolution),
      aspect_ratio: select("aspect_ratio", "Aspect ratio", m.aspect_ratios, defaults.aspect_ratio),
      duration: select("duration", "Duration (seconds)", m.durations, defaults.duration),
    };
    settingsBox.replaceChildren(...Object.values(settingSelects).map((s) => s.field));
    for (const s of Object.values(settingSelects)) s.el.addEventListener("change", requote);
  }

  function body() {
    const b = {
      model_id: modelSelect.value,
      prompt: prompt.value,
      settings: {
        resolution: settingSelects.resolution.el.value,
        aspect_ratio: settingSelects.aspect_ratio.el.value,
        duration: Number(settingSelects.duration.el.value),
      },
    };
    if (imageUrl) b.image_url = imageUrl;
    else if (reference) Object.assign(b, reference);
    if (campaign.value()) b.campaign_id = campaign.value();
    return b;
  }

  function ready() {
    // Without an image the prompt alone is enough: the API makes a start image first, or sends the prompt to a
    // model that makes video from text.
    if (!imageUrl && !reference && !prompt.value.trim()) return "Choose an image, or type a prompt, to see the price.";
    return null;
  }

  const ask = () => api.post("quote", body());
  const requote = () => price.later(ready, ask);

  async function upload(chosen) {
    if (!chosen) return;
    error.clear();
    imageUrl = null;
    reference = null;
    preview.hidden = !chosen.type.startsWith("image/");
    if (!preview.hidden) {
      preview.src = URL.createObjectURL(chosen);
      preview.alt = `Preview of ${chosen.name}`;
    }
    uploadState.textContent = `Uploading ${chosen.name}…`;
    price.submit.disabled = true;
    try {
      const target = await api.uploadImage(chosen);
      imageUrl = target.image_url;
      uploadState.textContent = target.already_uploaded
        ? `${chosen.name} was already uploaded: nothing sent again.`
        : `${chosen.name} uploaded.`;
      requote();
    } catch (e) {
      uploadState.textContent = "";
      error.show(`The image could not be uploaded: ${api.describe(e)}`);
    }
  }

  async function send(b) {
    const data = await startJob(api, price, {
      name: "generate-video", body: b, pendingKey: PENDING, started, error,
      label: "Started job ", codeId: "started-job", then: requote,
    });
    if (data) rememberImage(data.job_id, b.image_url);
  }

  const form = h("form", { class: "generate", novalidate: true },
    h("section", { class: "panel", "aria-labelledby": "what" },
      h("h2", { id: "what" }, "What to animate"),
      h("div", { class: "field" }, h("label", { for: "model" }, "Model"), modelSelect),
      drop, uploadState,
      h("div", { class: "field" }, h("label", { for: "prompt" }, "Prompt"), prompt,
        h("p", { class: "hint", id: "prompt-hint" }, "Camera words work with local-motion: zoom in, pan left, orbit, pull back.")),
      settingsBox,
      campaign.field),
    price.el);
  main.append(form);
  renderSettings(seed.settings || {});

  modelSelect.addEventListener("change", () => {
    renderSettings();
    requote();
  });
  prompt.addEventListener("input", requote);
  file.addEventListener("change", () => upload(file.files[0]));
  drop.addEventListener("dragover", (event) => {
    event.preventDefault();
    drop.classList.add("over");
  });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (event) => {
    event.preventDefault();
    drop.classList.remove("over");
    upload(event.dataTransfer.files[0]);
  });
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    send(body());
  });

  if (pending) {
    started.show("A request made before the page was reloaded had no answer yet: sending it again with the same Idempotency-Key (charged once).");
    await send(pending.body);
  } else {
    await price.now(ready(), ask);
  }
  return price.stop;
}
