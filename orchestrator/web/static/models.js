"use strict";
// The Models page: the embedder's versions, a rollout started and followed step by step until
// it ends, its rollback, and the rollouts before it.

(() => {
  const { api, el, showProblem, busy, every, when, percent } = facerec;
  const STEPS = ["pending", "loading", "reembedding", "switching", "draining", "done"];
  const STEP_WORDS = {
    pending: "waiting to start",
    loading: "loading the version in Triton",
    reembedding: "re-embedding every stored face",
    switching: "switching recognition over",
    draining: "draining the old version",
    done: "done",
  };
  const FINISHED = new Set(["done", "failed", "rolled_back"]);
  const BADGES = { done: "good", failed: "bad", rolled_back: "warn", READY: "good", LOADING: "warn" };
  const LIVE_SECONDS = 1;
  const PAGE = 10;
  const $ = (id) => document.getElementById(id);
  const view = { latest: null, following: null, historyOffset: 0 };

  const badge = (state) => el("span", { class: `badge ${BADGES[state] || ""}` }, state.replace("_", " "));
  const running = () => view.latest !== null && !FINISHED.has(view.latest.state);

  async function loadVersions() {
    const models = await api("GET", "/v1/models");
    $("active-version").textContent = `${models.active.name} version ${models.active.version}`;
    const rows = models.versions.map((version) => {
      const active = version.version === models.active.version;
      const action = active
        ? el("span", { class: "badge good" }, "active")
        : el("button", {
            type: "button",
            class: "secondary",
            disabled: running(),
            "aria-label": `Roll out version ${version.version}`,
            onclick: (event) => start(event.currentTarget, version.version),
          }, "Roll out");
      return el(
        "tr",
        { dataset: { version: version.version } },
        el("td", {}, version.version, active ? " (active)" : ""),
        el("td", {}, badge(version.state)),
        el("td", {}, version.source, version.origin ? el("span", { class: "muted" }, ` from ${version.origin}`) : ""),
        el("td", {}, when(version.created_at)),
        el("td", {}, action),
      );
    });
    $("versions").tBodies[0].replaceChildren(...rows);
  }

  function showSteps(rollout) {
    const failed = rollout.state === "failed";
    const reached = failed || rollout.state === "rolled_back" ? -1 : STEPS.indexOf(rollout.state);
    $("rollout-steps").replaceChildren(
      ...STEPS.map((step, n) => {
        const where = reached < 0 ? "ahead" : n < reached || rollout.state === "done" ? "past" : n === reached ? "current" : "ahead";
        return el(
          "li",
          { class: where, "aria-current": where === "current" ? "step" : null, dataset: { step } },
          STEP_WORDS[step],
        );
      }),
    );
  }

  function showRollout(rollout) {
    view.latest = rollout;
    $("no-rollout").hidden = true;
    $("rollout-body").hidden = false;
    const what = rollout.kind === "rebuild" ? `Rebuild of version ${rollout.to_version}` : `Version ${rollout.from_version} → ${rollout.to_version}`;
    $("rollout-what").textContent = `Rollout ${rollout.rollout_id}: ${what}${rollout.reverses ? ` (rolls back rollout ${rollout.reverses})` : ""}`;
    const state = $("rollout-state");
    state.className = `badge ${BADGES[rollout.state] || "warn"}`;
    state.textContent = rollout.state.replace("_", " ");
    showSteps(rollout);
    $("rollout-progress").value = Math.round(rollout.progress * 100);
    $("rollout-percent").textContent = `${percent(rollout.progress, 0)} of the faces re-embedded`;
    const error = $("rollout-error");
    error.hidden = !rollout.error;
    error.textContent = rollout.error ? `It failed and was undone: ${rollout.error}` : "";
    $("rollout-times").textContent = `Started ${when(rollout.created_at)}, last change ${when(rollout.updated_at)}.`;
    $("rollout-live").textContent = FINISHED.has(rollout.state) ? "" : `updating every ${LIVE_SECONDS} s`;
    $("rollback").hidden = !(rollout.state === "done" && rollout.kind === "rollout");
  }

  async function loadHistory() {
    const page = await api("GET", "/v1/models/rollouts", { query: { limit: PAGE, offset: view.historyOffset } });
    if (view.historyOffset === 0 && page.items.length && !view.following) showRollout(page.items[0]);
    const rows = page.items.map((r) =>
      el(
        "tr",
        { dataset: { rolloutId: String(r.rollout_id) } },
        el("td", {}, String(r.rollout_id)),
        el("td", {}, r.kind, r.reverses ? ` (rolls back ${r.reverses})` : ""),
        el("td", {}, `${r.from_version} → ${r.to_version}`),
        el("td", {}, badge(r.state)),
        el("td", {}, when(r.created_at)),
        el("td", {}, when(r.updated_at)),
      ),
    );
    const body = $("history").tBodies[0];
    body.replaceChildren(...rows);
    if (!rows.length) body.append(el("tr", {}, el("td", { colspan: "6", class: "muted" }, "No rollouts yet.")));
    const pages = Math.max(1, Math.ceil(page.total / PAGE));
    const at = Math.floor(view.historyOffset / PAGE) + 1;
    const go = (offset) => {
      view.historyOffset = Math.max(0, offset);
      loadHistory().catch(showProblem);
    };
    $("history-pager").replaceChildren(
      el("button", { type: "button", class: "secondary", disabled: at <= 1, onclick: () => go(view.historyOffset - PAGE) }, "Previous"),
      el("span", {}, `Page ${at} of ${pages} (${page.total})`),
      el("button", { type: "button", class: "secondary", disabled: at >= pages, onclick: () => go(view.historyOffset + PAGE) }, "Next"),
    );
  }

  // Poll one rollout until it ends, then show the versions and the history as they are now.
  function follow(rollout) {
    showRollout(rollout);
    if (FINISHED.has(rollout.state) || view.following === rollout.rollout_id) return;
    view.following = rollout.rollout_id;
    every(LIVE_SECONDS, async () => {
      let record;
      try {
        record = await api("GET", `/v1/models/rollouts/${rollout.rollout_id}`);
      } catch (error) {
        showProblem(error);
        return error.status !== 404;
      }
      showRollout(record);
      if (!FINISHED.has(record.state)) return true;
      view.following = null;
      await Promise.all([loadVersions(), loadHistory()]);
      return false;
    });
    loadVersions().catch(showProblem); // its Roll out buttons wait for this one to end
  }

  async function start(button, version) {
    if (!confirm(`Roll out embedder version ${version}? Every stored face is re-embedded with it.`)) return;
    await busy(button, async () => {
      follow(await api("POST", "/v1/models/rollouts", { json: { version } }));
      await loadHistory();
    });
  }

  async function rollback(button) {
    const rollout = view.latest;
    if (!confirm(`Roll back rollout ${rollout.rollout_id}, to version ${rollout.from_version}?`)) return;
    await busy(button, async () => {
      follow(await api("POST", `/v1/models/rollouts/${rollout.rollout_id}/rollback`));
      await loadHistory();
    });
  }

  document.addEventListener("DOMContentLoaded", async () => {
    $("rollback").addEventListener("click", (event) => rollback(event.currentTarget));
    try {
      await loadHistory();
      await loadVersions();
      if (running()) follow(view.latest);
    } catch (error) {
      showProblem(error);
    }
  });
})();
