"use strict";
// The Jobs page: submit a batch (with the upload's progress), the list of jobs refreshed while
// any is unfinished, cancel and retry, and the dead letters.

(() => {
  const { api, el, Problem, showProblem, clearProblem, busy, poller, when, percent } = facerec;
  const PAGE = 20;
  const UNFINISHED = new Set(["queued", "running"]);
  const LIVE_SECONDS = 2;
  const $ = (id) => document.getElementById(id);
  const view = { offset: 0, deadOffset: 0 };

  const BADGES = { done: "good", failed: "bad", dead: "bad", running: "warn", queued: "warn" };
  const badge = (state) => el("span", { class: `badge ${BADGES[state] || ""}` }, state);

  function csrfToken() {
    const found = document.cookie.split("; ").find((pair) => pair.startsWith("facerec_csrf="));
    return found ? decodeURIComponent(found.slice("facerec_csrf=".length)) : "";
  }

  // fetch has no upload progress: XMLHttpRequest reports the bytes sent as they go.
  function upload(form, onProgress) {
    return new Promise((resolve, reject) => {
      const request = new XMLHttpRequest();
      request.open("POST", "/v1/jobs");
      request.responseType = "json";
      request.setRequestHeader("Accept", "application/json");
      request.setRequestHeader("X-CSRF-Token", csrfToken());
      request.upload.addEventListener("progress", (event) => {
        if (event.lengthComputable) onProgress(event.loaded / event.total);
      });
      request.addEventListener("load", () => {
        const body = request.response;
        if (request.status >= 200 && request.status < 300) {
          resolve(body);
          return;
        }
        if (request.status === 401) {
          location.assign(`/login?next=${encodeURIComponent(location.pathname + location.search)}`);
        }
        const problem = body && typeof body === "object" ? body : {};
        if (request.status === 413 && !problem.detail) problem.detail = "the upload is too large for the service";
        reject(new Problem(request.status, problem));
      });
      request.addEventListener("error", () =>
        reject(new Problem(0, { title: "No answer", detail: "the upload did not reach the service; is it running?" })),
      );
      request.send(form);
    });
  }

  function kindChanged() {
    const enrol = $("kind").value === "enrol";
    $("files-field").hidden = enrol;
    $("kind-hint").textContent = enrol
      ? "An enrol job takes one zip holding people.csv (external_id, name, photos…) and the photos it names."
      : "Each image is recognised on its own; choose images, a zip of images, or both.";
  }

  function showUpload(fraction, words) {
    $("upload").hidden = false;
    $("upload-progress").value = Math.round(fraction * 100);
    $("upload-status").textContent = words;
  }

  async function submit(event) {
    event.preventDefault();
    const region = $("submit-problem");
    const kind = $("kind").value;
    const files = kind === "enrol" ? [] : [...$("files").files];
    const archive = $("archive").files[0];
    $("submitted").hidden = true;
    if (kind === "enrol" && !archive) {
      showProblem(new Problem(400, { detail: "An enrol job needs a zip archive with people.csv and the photos." }), region);
      return;
    }
    if (!files.length && !archive) {
      showProblem(new Problem(400, { detail: "Choose one or more images, or a zip archive, first." }), region);
      return;
    }
    const form = new FormData();
    form.append("kind", kind);
    form.append("priority", $("priority").value);
    for (const file of files) form.append("files", file, file.name);
    if (archive) form.append("archive", archive, archive.name);
    const count = files.length + (archive ? 1 : 0);
    showUpload(0, `Uploading ${count} file${count === 1 ? "" : "s"}…`);
    const job = await busy(
      $("submit-button"),
      () =>
        upload(form, (fraction) =>
          showUpload(fraction, fraction < 1 ? `Uploading… ${percent(fraction, 0)}` : "Uploaded; the service is storing the job…"),
        ),
      region,
    );
    $("upload").hidden = true;
    if (!job) return;
    $("submit").reset();
    kindChanged();
    const notice = $("submitted");
    notice.replaceChildren(
      `Job ${job.job_id} is queued with ${job.total} item${job.total === 1 ? "" : "s"}: `,
      el("a", { href: `/jobs/${job.job_id}` }, `follow job ${job.job_id}`),
      ".",
    );
    notice.hidden = false;
    view.offset = 0;
    await refresh();
    watch();
  }

  function jobActions(job) {
    const actions = el("div", { class: "row" });
    if (UNFINISHED.has(job.state)) {
      actions.append(
        el("button", { type: "button", class: "secondary", "aria-label": `Cancel job ${job.job_id}`, onclick: (e) => act(e.currentTarget, job, "cancel") }, "Cancel"),
      );
    }
    if (job.failed > 0 && job.state !== "cancelled") {
      actions.append(
        el("button", { type: "button", "aria-label": `Retry job ${job.job_id}`, onclick: (e) => act(e.currentTarget, job, "retry") }, "Retry"),
      );
    }
    return actions;
  }

  async function act(button, job, action) {
    if (action === "cancel" && !confirm(`Cancel job ${job.job_id}? Its queued items will not be done.`)) return;
    await busy(button, async () => {
      await api("POST", `/v1/jobs/${job.job_id}/${action}`);
      await refresh();
      watch();
    });
  }

  function jobRow(job) {
    const bar = el("progress", { max: "100", value: String(Math.round(job.progress * 100)), "aria-label": `Job ${job.job_id} progress` });
    return el(
      "tr",
      { dataset: { jobId: String(job.job_id), state: job.state } },
      el("td", {}, el("a", { href: `/jobs/${job.job_id}` }, `Job ${job.job_id}`)),
      el("td", {}, job.kind),
      el("td", {}, job.priority),
      el("td", { class: "state" }, badge(job.state)),
      el("td", { class: "progress" }, bar, el("span", { class: "percent" }, percent(job.progress, 0))),
      el("td", {}, `${job.done} done, ${job.failed} failed of ${job.total}`),
      el("td", {}, when(job.created_at)),
      el("td", {}, jobActions(job)),
    );
  }

  function pager(nav, total, offset, go) {
    const pages = Math.max(1, Math.ceil(total / PAGE));
    const page = Math.floor(offset / PAGE) + 1;
    nav.replaceChildren(
      el("button", { type: "button", class: "secondary", disabled: page <= 1, onclick: () => go(offset - PAGE) }, "Previous"),
      el("span", {}, `Page ${page} of ${pages} (${total})`),
      el("button", { type: "button", class: "secondary", disabled: page >= pages, onclick: () => go(offset + PAGE) }, "Next"),
    );
  }

  function errorWords(problem) {
    if (!problem) return "—";
    const { title, detail } = problem;
    return title && detail ? `${title}: ${detail}` : detail || title || "it failed, without a reason given";
  }

  function deadRow(item) {
    return el(
      "tr",
      { dataset: { jobId: String(item.job_id), index: String(item.index) } },
      el("td", {}, el("a", { href: `/jobs/${item.job_id}` }, `Job ${item.job_id}`)),
      el("td", {}, String(item.index)),
      el("td", {}, item.filename),
      el("td", {}, String(item.attempts)),
      el("td", {}, when(item.finished_at)),
      el("td", { class: "error" }, errorWords(item.error)),
      el(
        "td",
        {},
        el("button", {
          type: "button",
          "aria-label": `Retry job ${item.job_id} item ${item.index}`,
          onclick: (e) => act(e.currentTarget, { job_id: item.job_id }, "retry"),
        }, "Retry"),
      ),
    );
  }

  async function loadJobs() {
    const page = await api("GET", "/v1/jobs", {
      query: { state: $("filter-state").value, kind: $("filter-kind").value, limit: PAGE, offset: view.offset },
    });
    const body = $("jobs").tBodies[0];
    body.replaceChildren(...page.items.map(jobRow));
    if (!page.items.length) body.append(el("tr", {}, el("td", { colspan: "8", class: "muted" }, "No jobs here.")));
    pager($("jobs-pager"), page.total, view.offset, (offset) => {
      view.offset = Math.max(0, offset);
      refresh();
    });
    return page.items.some((job) => UNFINISHED.has(job.state));
  }

  async function loadDead() {
    const page = await api("GET", "/v1/jobs/dead-letters", { query: { limit: PAGE, offset: view.deadOffset } });
    const body = $("dead").tBodies[0];
    body.replaceChildren(...page.items.map(deadRow));
    if (!page.items.length) body.append(el("tr", {}, el("td", { colspan: "7", class: "muted" }, "No dead letters.")));
    pager($("dead-pager"), page.total, view.deadOffset, (offset) => {
      view.deadOffset = Math.max(0, offset);
      loadDead().catch(showProblem);
    });
  }

  // Both lists; true while a job shown is unfinished.
  async function refresh() {
    const [unfinished] = await Promise.all([loadJobs(), loadDead()]);
    $("jobs-live").textContent = unfinished ? `Updating live every ${LIVE_SECONDS} s while a job is unfinished.` : "";
    return unfinished;
  }

  // Poll while a job on the page is unfinished; started again by anything that may change that.
  const watch = poller(LIVE_SECONDS, refresh);

  document.addEventListener("DOMContentLoaded", () => {
    $("kind").addEventListener("change", kindChanged);
    $("submit").addEventListener("submit", submit);
    $("filters").addEventListener("change", () => {
      view.offset = 0;
      clearProblem();
      refresh().then(watch, showProblem);
    });
    $("filters").addEventListener("submit", (event) => event.preventDefault());
    kindChanged();
    watch();
  });
})();
