// Image: a prompt (and optionally a reference image to edit), an image model and its settings, the price from
// quote-image, then generate-image with an Idempotency-Key kept in sessionStorage until the request is answered
// (a double click or a reload is charged once), as on the Generate page.
import { campaignSelect, modelSelect as pickModel, pricePanel, startJob } from "../billed.js";
import { h, messageBox, readJson, select } from "../ui.js";

const PENDING = "i2v.image.pending";
export const RETRY = "i2v.image.retry";



export async function render(main, { api }) {
  const error = messageBox("error");
  const started = messageBox("success");
  main.append(h("h1", {}, "Make an image"), error, started);

  let models;
  try {
    models = (await api.get("list-models")).models.filter((m) => m.kind === "text-to-image");
  } catch (e) {
    error.show(`The models could not be listed: ${api.describe(e)}`);
    return;
  }
  if (!models.some((m) => m.available)) {
    main.append(h("p", { class: "notice" }, "No image model is available on this deployment."));
    return;
  }
  const pending = readJson(sessionStorage, PENDING);
  const retry = readJson(sessionStorage, RETRY);
  sessionStorage.removeItem(RETRY);
  const seed = (pending && pending.body) || retry || {};
  let referenceUrl = (seed.image_urls || [])[0] || null;

  const modelSelect = pickModel("image-model", models, seed.model_id);
  const prompt = h("textarea", { id: "image-prompt", name: "prompt", maxlength: "4000", required: true }, seed.prompt || "");
  const file = h("input", { id: "reference", type: "file", accept: "image/jpeg,image/png,image/webp", "aria-describedby": "reference-hint reference-state" });
  const referenceState = h("p", { class: "upload-state", id: "reference-state", role: "status" }, referenceUrl ? "Editing the earlier reference image." : "");
  const referenceField = h("div", { class: "field" }, h("label", { for: "reference" }, "Reference image (optional)"), file,
    h("p", { class: "hint", id: "reference-hint" }, "An image to edit with the prompt; without one the image is made from the prompt alone."),
    referenceState);
  const settingsBox = h("div", { class: "row" });
  const campaign = campaignSelect(api, "image-campaign", seed.campaign_id, () => requote());
  const price = pricePanel(api, { prefix: "image-", submitId: "make-image", verb: "Make", what: "this" });
  let settingSelects = {};

  const model = () => models.find((m) => m.slug === modelSelect.value);

  function renderSettings(chosen = {}) {
    const m = model();
    const defaults = { ...m.defaults, ...chosen };
    const counts = Array.from({ length: Math.max(1, m.max_images || 1) }, (_, i) => i + 1);
    settingSelects = {
      aspect_ratio: select("image-aspect", "Aspect ratio", m.aspect_ratios, defaults.aspect_ratio),
      output_format: select("image-format", "Format", m.output_formats, defaults.output_format),
      num_images: select("image-count", "Images", counts, defaults.num_images || 1),
    };
    settingsBox.replaceChildren(...Object.values(settingSelects).map((s) => s.field));
    for (const s of Object.values(settingSelects)) s.el.addEventListener("change", requote);
    referenceField.hidden = !m.max_input_images; // models that take no reference image (local-card)
    if (referenceField.hidden) referenceUrl = null;
  }

  function body() {
    const b = {
      model_id: modelSelect.value,
      prompt: prompt.value,
      settings: {
        aspect_ratio: settingSelects.aspect_ratio.el.value,
        output_format: settingSelects.output_format.el.value,
        num_images: Number(settingSelects.num_images.el.value),
      },
    };
    if (referenceUrl) b.image_urls = [referenceUrl];
    if (campaign.value()) b.campaign_id = campaign.value();
    return b;
  }

  const missing = () => (prompt.value.trim() ? null : "Describe the image to see the price.");
  const ask = () => api.post("quote-image", body());
  const requote = () => price.later(missing, ask);

  async function upload(chosen) {
    if (!chosen) return;
    error.clear();
    referenceUrl = null;
    referenceState.textContent = `Uploading ${chosen.name}…`;
    try {
      referenceUrl = (await api.uploadImage(chosen)).image_url;
      referenceState.textContent = `${chosen.name} will be edited.`;
      requote();
    } catch (e) {
      referenceState.textContent = "";
      error.show(`The image could not be uploaded: ${api.describe(e)}`);
    }
  }

  const send = (b) => startJob(api, price, {
    name: "generate-image", body: b, pendingKey: PENDING, started, error,
    label: "Started image job ", codeId: "started-image-job", then: requote,
  });

  const form = h("form", { class: "generate", novalidate: true },
    h("section", { class: "panel", "aria-labelledby": "image-what" },
      h("h2", { id: "image-what" }, "What to make"),
      h("div", { class: "field" }, h("label", { for: "image-model" }, "Model"), modelSelect),
      h("div", { class: "field" }, h("label", { for: "image-prompt" }, "Prompt"), prompt),
      referenceField,
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
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    send(body());
  });
  if (pending) {
    started.show("A request made before the page was reloaded had no answer yet: sending it again with the same Idempotency-Key (charged once).");
    await send(pending.body);
  } else {
    await price.now(missing(), ask);
  }
  return price.stop;
}
