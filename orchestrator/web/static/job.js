"use strict";
// One job: its record followed live until it ends, its items page by page with what each
// found, a recognised image drawn with its faces' boxes and names; cancel and retry.

(() => {
  const { api, el, svg, showProblem, busy, poller, when, ms, percent } = facerec;
  const PAGE = 24;
  const LIVE_SECONDS = 2;
  const UNFINISHED = new Set(["queued", "running"]);
  const BADGES = { done: "good", failed: "bad", dead: "bad", running: "warn", queued: "warn" };
  const $ = (id) => document.getElementById(id);
  const jobId = Number(document.body.dataset.jobId);
  const view = { job: null, offset: 0, shown: new Map() };

  function setBadge(node, state) {
    node.className = `badge ${BADGES[state] || ""}`;
    node.textContent = state;
  }

  function errorWords(problem) {
    const { title, detail } = problem;
    return title && detail ? `${title}: ${detail}` : detail || title || "it failed, without a reason given";
  }

  // What each face was taken for, best match first: "Name (0.71)" or "unknown".
  function faceNames(result) {
    return (result.faces || []).map((face) => {
      const best = face.decision === "match" && face.matches && face.matches[0];
      return best ? `${best.name} (${best.similarity.toFixed(2)})` : "unknown";
    });
  }

  function showJob(job) {
    view.job = job;
    setBadge($("job-state"), job.state);
    $("job-progress").value = Math.round(job.progress * 100);
    $("job-percent").textContent = `${percent(job.progress, 0)} of the items ended`;
    $("job-total").textContent = job.total;
    $("job-done").textContent = job.done;
    $("job-failed").textContent = job.failed;
    $("job-kind").textContent = `${job.kind}, ${job.priority}`;
    $("job-created").textContent = when(job.created_at);
    $("job-started").textContent = when(job.started_at);
    $("job-finished").textContent = when(job.finished_at);
    $("cancel").hidden = !UNFINISHED.has(job.state);
    $("retry").hidden = !(job.failed > 0 && job.state !== "cancelled");
    $("job-live").textContent = UNFINISHED.has(job.state) ? `updating every ${LIVE_SECONDS} s` : "";
  }

  // The uploaded image with each face's box and name drawn over it, in the image's own pixels.
  function annotated(item) {
    const names = faceNames(item.result);
    const image = el("img", {
      src: `/v1/jobs/${jobId}/items/${item.index}/image`,
      alt: `${item.filename}: ${names.length ? names.join(", ") : "no face found"}`,
      loading: "lazy",
    });
    const overlay = svg("svg", { "aria-hidden": "true", preserveAspectRatio: "none" });
    const figure = el("figure", { class: "figure annotated" }, image, overlay);
    image.addEventListener("load", () => {
      const width = image.naturalWidth;
      const height = image.naturalHeight;
      overlay.setAttribute("viewBox", `0 0 ${width} ${height}`);
      const size = Math.max(12, Math.round(Math.min(width, height) / 28));
      overlay.replaceChildren(
        ...item.result.faces.map((face, n) => {
          const [x1, y1, x2, y2] = face.box;
          const known = face.decision === "match";
          const words = names[n];
          const top = y1 - size * 1.4 >= 0 ? y1 - size * 1.4 : y1;
          return svg(
            "g",
            { class: "face" },
            svg("rect", { class: `box ${known ? "known" : "unknown"}`, x: x1, y: y1, width: x2 - x1, height: y2 - y1 }),
            svg("rect", { class: `tag-back ${known ? "known" : "unknown"}`, x: x1, y: top, width: words.length * size * 0.62 + size * 0.6, height: size * 1.4 }),
            svg("text", { class: "tag", x: x1 + size * 0.3, y: top + size * 1.05, "font-size": size }, words),
          );
        }),
      );
    });
    image.addEventListener("error", () => {
      figure.replaceChildren(el("p", { class: "hint" }, "The image is no longer kept (the job's retention has passed)."));
    });
    return figure;
  }

  function itemCard(item) {
    const facts = el(
      "dl",
      { class: "facts" },
      el("dt", {}, "Attempts"),
      el("dd", {}, String(item.attempts)),
      el("dt", {}, "Worker"),
      el("dd", {}, item.worker || "—"),
      el("dt", {}, "Took"),
      el("dd", {}, ms(item.duration_ms)),
      el("dt", {}, "Finished"),
      el("dd", {}, when(item.finished_at)),
    );
    const card = el(
      "article",
      { class: "job-item", dataset: { index: String(item.index), state: item.state } },
      el("h3", {}, `${item.index + 1}. `, el("span", { class: "filename" }, item.filename), " ", el("span", { class: `badge ${BADGES[item.state] || ""}` }, item.state)),
    );
    if (item.state === "done" && item.result && view.job.kind === "recognize") {
      const names = faceNames(item.result);
      card.append(
        annotated(item),
        el("p", { class: "names" }, names.length ? `Faces: ${names.join(", ")}` : "No face found."),
      );
    } else if (item.state === "done" && item.recognised) {
      card.append(el("p", { class: "names" }, `Enrolled: ${item.recognised}`));
    }
    if (item.error) {
      // A queued item keeps its last attempt's error until it is tried again.
      const words = errorWords(item.error);
      card.append(el("p", { class: "item-error", role: "note" }, item.state === "queued" ? `Last attempt: ${words}` : words));
    }
    card.append(facts);
    return card;
  }

  // Items are drawn again only when they change: an image is not fetched on every poll.
  function showItems(items) {
    const shown = new Map();
    const cards = items.map((item) => {
      const key = [item.state, item.attempts, item.finished_at, item.worker].join("|");
      const old = view.shown.get(item.index);
      const card = old && old.key === key ? old.card : itemCard(item);
      shown.set(item.index, { key, card });
      return card;
    });
    view.shown = shown;
    const list = $("items");
    list.replaceChildren(...cards);
    if (!cards.length) list.append(el("p", { class: "muted" }, "No items here."));
  }

  function pager(total) {
    const pages = Math.max(1, Math.ceil(total / PAGE));
    const page = Math.floor(view.offset / PAGE) + 1;
    const go = (offset) => {
      view.offset = Math.max(0, offset);
      loadItems().catch(showProblem);
    };
    $("items-pager").replaceChildren(
      el("button", { type: "button", class: "secondary", disabled: page <= 1, onclick: () => go(view.offset - PAGE) }, "Previous"),
      el("span", {}, `Page ${page} of ${pages} (${total} items)`),
      el("button", { type: "button", class: "secondary", disabled: page >= pages, onclick: () => go(view.offset + PAGE) }, "Next"),
    );
  }

  async function loadItems() {
    const page = await api("GET", `/v1/jobs/${jobId}/items`, {
      query: { state: $("item-state").value, limit: PAGE, offset: view.offset },
    });
    showItems(page.items);
    pager(page.total);
  }

  // The record, then its items; true while the job is unfinished.
  async function refresh() {
    showJob(await api("GET", `/v1/jobs/${jobId}`));
    await loadItems();
    return UNFINISHED.has(view.job.state);
  }

  const watch = poller(LIVE_SECONDS, refresh, (error) => error.status === 404); // 404: no such job

  async function act(button, action) {
    if (action === "cancel" && !confirm(`Cancel job ${jobId}? Its queued items will not be done.`)) return;
    await busy(button, async () => {
      showJob(await api("POST", `/v1/jobs/${jobId}/${action}`));
      await loadItems();
      watch();
    });
  }

  document.addEventListener("DOMContentLoaded", () => {
    $("cancel").addEventListener("click", (event) => act(event.currentTarget, "cancel"));
    $("retry").addEventListener("click", (event) => act(event.currentTarget, "retry"));
    $("item-filters").addEventListener("change", () => {
      view.offset = 0;
      loadItems().catch(showProblem);
    });
    $("item-filters").addEventListener("submit", (event) => event.preventDefault());
    watch();
  });
})();
