// Image: a prompt (and optionally a reference image to edit), an image model and its settings, the price from
// quote-image, then generate-image with an Idempotency-Key kept in sessionStorage until the request is answered
// (a double click or a reload is charged once), as on the Generate page.
import { credits, h, messageBox, readJson, select } from "../ui.js";

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
  const usable = models.filter((m) => m.available);
  if (!usable.length) {
    main.append(h("p", { class: "notice" }, "No image model is available on this deployment."));
    return;
  }
  const pending = readJson(sessionStorage, PENDING);
  const retry = readJson(sessionStorage, RETRY);
  sessionStorage.removeItem(RETRY);
  const seed = (pending && pending.body) || retry || {};
  let referenceUrl = (seed.image_urls || [])[0] || null;
  let quoteTimer = null;
  let quoteSeq = 0;
  let sending = false;

  const modelSelect = h("select", { id: "image-model", name: "model" },
    models.map((m) => h("option", { value: m.slug, disabled: !m.available, selected: m.slug === (seed.model_id || usable[0].slug) },
      m.available ? `${m.name} (${m.slug})` : `${m.name} (${m.slug}) — unavailable: ${m.unavailable_reason || "switched off"}`)));
  const prompt = h("textarea", { id: "image-prompt", name: "prompt", maxlength: "4000", required: true }, seed.prompt || "");
  const file = h("input", { id: "reference", type: "file", accept: "image/jpeg,image/png,image/webp", "aria-describedby": "reference-hint reference-state" });
  const referenceState = h("p", { class: "upload-state", id: "reference-state", role: "status" }, referenceUrl ? "Editing the earlier reference image." : "");
  const referenceField = h("div", { class: "field" }, h("label", { for: "reference" }, "Reference image (optional)"), file,
    h("p", { class: "hint", id: "reference-hint" }, "An image to edit with the prompt; without one the image is made from the prompt alone."),
    referenceState);
  const settingsBox = h("div", { class: "row" });
  const amount = h("p", { class: "amount", id: "image-price" }, "—");
  const priceNote = h("p", { class: "hint", id: "image-price-note" }, "");
  const balanceDd = h("dd", { id: "image-balance" }, "—");
  const afterDd = h("dd", { id: "image-balance-after" }, "—");
  const submit = h("button", { type: "submit", id: "make-image", disabled: true }, "Make");
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
    return b;
  }

  function requote() {
    clearTimeout(quoteTimer);
    quoteTimer = setTimeout(quote, 250);
  }

  async function quote() {
    const seq = ++quoteSeq;
    submit.disabled = true;
    if (!prompt.value.trim()) {
      amount.textContent = "—";
      priceNote.className = "hint";
      priceNote.textContent = "Describe the image to see the price.";
      submit.textContent = "Make";
      return;
    }
    priceNote.textContent = "Pricing…";
    try {
      const q = await api.post("quote-image", body());
      if (seq !== quoteSeq) return;
      amount.textContent = credits(q.credits);
      balanceDd.textContent = credits(q.balance);
      afterDd.textContent = credits(q.balance_after);
      priceNote.className = q.balance_after < 0 ? "warning" : "hint";
      priceNote.textContent = q.balance_after < 0
        ? `Your balance of ${credits(q.balance)} does not cover this.`
        : "Charged once, when you press Make; refunded if the job fails or is canceled.";
      submit.textContent = `Make for ${credits(q.credits)}`;
      submit.disabled = sending;
    } catch (e) {
      if (seq !== quoteSeq) return;
      amount.textContent = "—";
      priceNote.className = "error";
      priceNote.textContent = api.describe(e);
    }
  }

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

  async function send(b) {
    if (sending) return;
    sending = true;
    submit.disabled = true;
    error.clear();
    started.clear();
    try {
      const { data, replayed } = await api.startOnce("generate-image", b, PENDING);
      started.replaceChildren(
        replayed ? "This request was already answered: " : "Started image job ",
        h("code", { id: "started-image-job" }, data.job_id),
        ` (${credits(data.credits_used)}). `,
        h("a", { href: "#/jobs" }, "Follow it on the Jobs page"), ".");
    } catch (e) {
      error.show(e.unanswered
        ? `${api.describe(e)} Press Make again: the same request is sent again and charged at most once.`
        : api.describe(e));
    } finally {
      sending = false;
      requote();
    }
  }

  const form = h("form", { class: "generate", novalidate: true },
    h("section", { class: "panel", "aria-labelledby": "image-what" },
      h("h2", { id: "image-what" }, "What to make"),
      h("div", { class: "field" }, h("label", { for: "image-model" }, "Model"), modelSelect),
      h("div", { class: "field" }, h("label", { for: "image-prompt" }, "Prompt"), prompt),
      referenceField,
      settingsBox),
    h("section", { class: "panel price", "aria-labelledby": "image-price-title", "aria-live": "polite" },
      h("h2", { id: "image-price-title" }, "Price"),
      amount,
      h("dl", {}, h("dt", {}, "Balance"), balanceDd, h("dt", {}, "After"), afterDd),
      priceNote,
      submit));
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
    await quote();
  }
  return () => clearTimeout(quoteTimer);
}
