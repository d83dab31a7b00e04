// Gallery: completed videos in real <video> players (their thumbnails as posters) and completed images, each with
// a download link; an image can be animated and a video continued from its last frame on the Generate page.
import { h, messageBox, videoFilename, when } from "../ui.js";

const RETRY = "i2v.retry";

function startFrom(go, seed) {
  sessionStorage.setItem(RETRY, JSON.stringify(seed));
  go("generate");
}

function caption(job, ...actions) {
  return h("figcaption", {},
    h("span", {}, job.prompt || h("span", { class: "muted" }, "(no prompt)")),
    h("span", { class: "mono" }, job.job_id),
    h("span", { class: "muted" }, `${job.model} · ${when(job.created_at)}`),
    h("span", { class: "actions" }, ...actions));
}

function videoCard(job, go) {
  const label = job.prompt ? `Video: ${job.prompt}` : `Video of job ${job.job_id}`;
  const video = h("video", { controls: true, preload: "metadata", playsinline: true, poster: job.thumbnail_url || false, src: job.video_url, "aria-label": label });
  const name = videoFilename(job);
  return h("li", { id: `video-${job.job_id}` }, h("figure", { class: "panel card" },
    video,
    caption(job,
      h("a", { class: "button secondary download", href: job.video_url, download: name }, "Download"),
      h("button", { type: "button", class: "secondary", "data-action": "continue",
        onclick: () => startFrom(go, { video_id: job.job_id, model_id: job.model, prompt: job.prompt || "", settings: job.settings || {} }) },
      "Continue"),
      job.thumbnail_url ? h("a", { href: job.thumbnail_url, download: name.replace(/\.mp4$/, ".jpg") }, "Thumbnail") : null)));
}

function imageCards(job, go) {
  return (job.images || []).map((image, index) => {
    const ext = image.content_type === "image/png" ? ".png" : ".jpg";
    const name = videoFilename(job).replace(/\.mp4$/, `_${index}${ext}`);
    return h("li", { id: `image-${image.image_id}`, dataset: { job: job.job_id } }, h("figure", { class: "panel card" },
      h("img", { src: image.url, alt: job.prompt ? `Image: ${job.prompt}` : `Image ${index + 1} of job ${job.job_id}`, loading: "lazy",
        width: image.width || false, height: image.height || false }),
      caption(job,
        h("a", { class: "button secondary download", href: image.url, download: name }, "Download"),
        h("button", { type: "button", class: "secondary", "data-action": "animate",
          onclick: () => startFrom(go, { image_id: image.image_id, prompt: "" }) },
        "Animate"))));
  });
}

export async function render(main, { api, params, go }) {
  const error = messageBox("error");
  const grid = h("ul", { class: "gallery", id: "gallery", "aria-label": "Completed videos and images" });
  main.append(h("h1", {}, "Gallery"), error, grid);
  let page;
  try {
    page = await api.get("list-jobs", { status: "completed", limit: 60 });
  } catch (e) {
    error.show(`The gallery could not be listed: ${api.describe(e)}`);
    return;
  }
  if (!page.jobs.length) {
    grid.replaceWith(h("p", { class: "notice" }, "Nothing finished yet. ", h("a", { href: "#/generate" }, "Generate a video"),
      " or ", h("a", { href: "#/image" }, "make an image"), "."));
    return;
  }
  for (const job of page.jobs) {
    if (job.kind === "image") grid.append(...imageCards(job, go));
    else grid.append(videoCard(job, go));
  }
  const wanted = params.get("job");
  const target = wanted && (document.getElementById(`video-${wanted}`) || grid.querySelector(`[data-job="${CSS.escape(wanted)}"]`));
  if (target) {
    target.scrollIntoView({ block: "center" });
    (target.querySelector("video") || target.querySelector("a")).focus();
  }
}
