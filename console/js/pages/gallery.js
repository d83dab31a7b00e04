// Gallery: completed videos in real <video> players, their thumbnails as posters, and a download link each.
import { h, messageBox, videoFilename, when } from "../ui.js";

export async function render(main, { api, params }) {
  const error = messageBox("error");
  const grid = h("ul", { class: "gallery", id: "gallery", "aria-label": "Completed videos" });
  main.append(h("h1", {}, "Gallery"), error, grid);
  let page;
  try {
    page = await api.get("list-videos", { status: "completed", limit: 60 });
  } catch (e) {
    error.show(`The videos could not be listed: ${api.describe(e)}`);
    return;
  }
  if (!page.videos.length) {
    grid.replaceWith(h("p", { class: "notice" }, "No finished videos yet. ", h("a", { href: "#/generate" }, "Generate one"), "."));
    return;
  }
  for (const job of page.videos) {
    const label = job.prompt ? `Video: ${job.prompt}` : `Video of job ${job.job_id}`;
    const video = h("video", { controls: true, preload: "metadata", playsinline: true, poster: job.thumbnail_url || false, src: job.video_url, "aria-label": label });
    const name = videoFilename(job);
    grid.append(h("li", { id: `video-${job.job_id}` }, h("figure", { class: "panel card" },
      video,
      h("figcaption", {},
        h("span", {}, job.prompt || h("span", { class: "muted" }, "(no prompt)")),
        h("span", { class: "mono" }, job.job_id),
        h("span", { class: "muted" }, `${job.model} · ${when(job.created_at)}`),
        h("span", { class: "actions" },
          h("a", { class: "button secondary download", href: job.video_url, download: name }, "Download"),
          job.thumbnail_url ? h("a", { href: job.thumbnail_url, download: name.replace(/\.mp4$/, ".jpg") }, "Thumbnail") : null)))));
  }
  const wanted = params.get("job");
  const target = wanted && document.getElementById(`video-${wanted}`);
  if (target) {
    target.scrollIntoView({ block: "center" });
    target.querySelector("video").focus();
  }
}
