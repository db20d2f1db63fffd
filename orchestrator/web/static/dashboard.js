"use strict";
// The dashboard: GET /v1/stats/live every few seconds (one call per refresh), shown as tiles,
// two charts of the last minutes and a table of routes. A failed refresh keeps the last
// figures on screen, marked stale, with the reason in words.

(() => {
  const { api, el, svg, ms, percent, showProblem, clearProblem } = facerec;
  const EVERY_S = 3;
  const MINUTES = 30;
  const TRITON_SPAN_MS = 60_000;
  // Triton's counters are cumulative and global: differencing a reading against one up to a
  // minute older gives the batch size and queue time of that minute, whichever replica answered.
  let tritonReadings = [];
  let lastGood = null;

  const number = (value, digits = 0) =>
    value === null || value === undefined
      ? "—"
      : value.toLocaleString(undefined, { maximumFractionDigits: digits });
  const rate = (value) => (value === null || value === undefined ? "—" : number(value, value < 10 ? 2 : 1));
  const mib = (bytes) => `${number(bytes / 2 ** 20)} MiB`;
  const gib = (bytes) => number(bytes / 2 ** 30, 1);
  const clock = (iso) => new Date(iso).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });

  function tile(id, value, ...detail) {
    const node = document.getElementById(id);
    node.querySelector(".value").textContent = value;
    const lines = detail.filter(Boolean).map((line) => el("div", {}, line));
    node.querySelector(".dash-detail").replaceChildren(...lines);
  }

  function unavailable(ids, error) {
    for (const id of ids) tile(id, "—", `unavailable: ${error}`);
  }

  function showNow(replica) {
    const traffic = replica.traffic;
    document.getElementById("replica").textContent =
      `(this replica, pid ${replica.pid}, last ${Math.round(replica.window_s)} s)`;
    tile("tile-rate", rate(traffic.rate_per_s), `${number(traffic.requests)} requests`);
    tile("tile-p50", ms(traffic.p50_ms));
    tile("tile-p99", ms(traffic.p99_ms));
    tile("tile-errors", percent(traffic.error_rate), `${number(traffic.errors)} errors`);
    tile(
      "tile-cache",
      percent(traffic.cache_hit_ratio),
      `${number(traffic.cache_hits)} hits`,
      `cache ${replica.cache.state}`,
    );
    const rows = replica.routes.map((route) =>
      el(
        "tr",
        {},
        el("td", {}, el("code", {}, route.route)),
        el("td", {}, number(route.requests)),
        el("td", {}, rate(route.rate_per_s)),
        el("td", {}, `${number(route.errors)} (${percent(route.error_rate)})`),
        el("td", {}, ms(route.p50_ms)),
        el("td", {}, ms(route.p99_ms)),
      ),
    );
    if (!rows.length) {
      rows.push(el("tr", {}, el("td", { colspan: 6, class: "muted" }, "No requests just now.")));
    }
    document.getElementById("routes").replaceChildren(...rows);
  }

  // Per model: the batch size and queue time since the oldest reading kept, or since Triton
  // started when nothing ran in between.
  function showTriton(models, at) {
    const now = Date.parse(at);
    tritonReadings.push({ at: now, models });
    tritonReadings = tritonReadings.filter((reading) => now - reading.at <= TRITON_SPAN_MS);
    const oldest = tritonReadings[0];
    const seconds = Math.round((now - oldest.at) / 1000);
    const tiles = models.map((model) => {
      const before = oldest.models.find((m) => m.model === model.model && m.version === model.version);
      const executions = before ? model.execution_count - before.execution_count : 0;
      const successes = before ? model.success_count - before.success_count : 0;
      const recent = executions > 0 && successes > 0;
      const batch = recent
        ? (model.inference_count - before.inference_count) / executions
        : model.average_batch_size;
      const queue = recent ? (model.queue_ns - before.queue_ns) / successes / 1e6 : model.average_queue_ms;
      const label = `${model.model} v${model.version}`;
      return el(
        "div",
        { class: "tile", role: "group", "aria-label": label, dataset: { model: label } },
        el("div", { class: "label" }, `${label}: batch size`),
        el("div", { class: "value" }, batch === null ? "—" : number(batch, 2)),
        el(
          "div",
          { class: "dash-detail" },
          el("div", {}, `queue ${queue === null ? "—" : `${number(queue, 2)} ms`}`),
          el("div", { class: "dash-inferences" }, `${number(model.inference_count)} inferences`),
          el("div", {}, recent ? `over the last ${seconds} s` : "average since Triton started"),
        ),
      );
    });
    if (!tiles.length) tiles.push(el("p", { class: "muted" }, "Triton reports no model."));
    document.getElementById("triton").replaceChildren(...tiles);
  }

  function showJobs(live) {
    if (live.queues) {
      const total = Object.values(live.queues).reduce((sum, n) => sum + n, 0);
      const each = Object.entries(live.queues).map(([priority, n]) => `${priority} ${number(n)}`);
      tile("tile-queues", number(total), each.join(" · "));
    } else {
      unavailable(["tile-queues"], live.errors.queues);
    }
    if (live.workers) {
      const alive = live.workers.filter((worker) => worker.alive);
      const lines = live.workers.map(
        (worker) =>
          `${worker.name}: ${worker.alive ? `${worker.running} of ${worker.concurrency} slots busy` : "lost"}`,
      );
      const seen = lines.length ? lines : ["no worker heard from in the last hour"];
      tile("tile-workers", `${alive.length} of ${live.workers.length}`, ...seen);
    } else {
      unavailable(["tile-workers"], live.errors.workers);
    }
  }

  function showGalleryAndHost(live) {
    if (live.gallery) {
      tile("tile-faces", number(live.gallery.faces));
      tile("tile-people", number(live.gallery.people));
    } else {
      unavailable(["tile-faces", "tile-people"], live.errors.gallery);
    }
    if (live.process && live.machine) {
      const { process, machine } = live;
      const used = machine.memory_total_bytes - machine.memory_available_bytes;
      tile(
        "tile-cpu",
        `${number(process.cpu_percent)} %`,
        `of one core; the machine ${number(machine.cpu_percent)} % of ${machine.cpus} cores`,
      );
      tile(
        "tile-memory",
        mib(process.rss_bytes),
        `the machine: ${gib(used)} of ${gib(machine.memory_total_bytes)} GiB used`,
      );
    } else {
      unavailable(["tile-cpu", "tile-memory"], live.errors.host);
    }
  }

  // A line over the minutes; a minute without a value (no requests: no p99) breaks it, and a
  // lone minute between such gaps is a short dash.
  function chart(id, title, minutes, value, format) {
    const values = minutes.map(value);
    const has = (i) => values[i] !== null && values[i] !== undefined;
    const known = values.filter((v, i) => has(i));
    const top = Math.max(...known, 0) || 1;
    const width = 300;
    const height = 100;
    const x = (i) => (minutes.length > 1 ? (i / (minutes.length - 1)) * width : width / 2);
    const y = (v) => height - 4 - (v / top) * (height - 8);
    const point = (px, py) => `${px.toFixed(1)},${py.toFixed(1)}`;
    const path = values
      .map((v, i) => {
        if (!has(i)) return "";
        if (!has(i - 1) && !has(i + 1)) return `M${point(x(i) - 2, y(v))} L${point(x(i) + 2, y(v))}`;
        return `${has(i - 1) ? "L" : "M"}${point(x(i), y(v))}`;
      })
      .join(" ")
      .trim();
    const peak = known.length ? format(Math.max(...known)) : "—";
    const drawing = svg(
      "svg",
      { viewBox: `0 0 ${width} ${height}`, preserveAspectRatio: "none", class: "dash-svg", role: "img" },
      svg("title", {}, `${title} per minute over the last ${minutes.length} minutes; the highest ${peak}`),
      svg("line", { x1: 0, y1: height - 4, x2: width, y2: height - 4, class: "dash-axis" }),
      svg("line", { x1: 0, y1: 4, x2: width, y2: 4, class: "dash-axis" }),
      path ? svg("path", { d: path, class: "dash-line" }) : null,
    );
    const axis = minutes.length
      ? el(
          "div",
          { class: "dash-axis-labels" },
          el("span", {}, clock(minutes[0].minute)),
          el("span", {}, clock(minutes[minutes.length - 1].minute)),
        )
      : null;
    const caption = el("figcaption", {}, el("strong", {}, title), el("span", { class: "muted" }, ` highest ${peak}`));
    document.getElementById(id).replaceChildren(caption, drawing, axis);
  }

  function showMinutes(live) {
    const note = document.getElementById("minutes-note");
    if (!live.window) {
      note.textContent = `The per-minute figures are unavailable: ${live.errors.window}`;
      return;
    }
    note.textContent = "Each minute appears once it is over and every replica has written it.";
    const minutes = live.window.minutes;
    chart("chart-rate", "Requests/s", minutes, (m) => m.rate_per_s, rate);
    chart("chart-p99", "Latency p99", minutes, (m) => m.p99_ms, ms);
  }

  function fresh(live) {
    const state = document.getElementById("fresh-state");
    state.textContent = "live";
    state.className = "badge good";
    document.getElementById("refreshed").textContent = `refreshed at ${new Date(live.at).toLocaleTimeString()}`;
    document.getElementById("dashboard").classList.remove("dash-stale");
  }

  function stale(error) {
    const state = document.getElementById("fresh-state");
    state.textContent = "stale";
    state.className = "badge bad";
    const since = lastGood ? `last refreshed at ${new Date(lastGood).toLocaleTimeString()}` : "never refreshed";
    document.getElementById("refreshed").textContent = `${since}; the figures below are old`;
    document.getElementById("dashboard").classList.add("dash-stale");
    showProblem(error);
  }

  async function refresh() {
    if (document.hidden) return true; // nobody looks: no load on the service
    let live;
    try {
      live = await api("GET", "/v1/stats/live", { query: { minutes: MINUTES } });
    } catch (error) {
      stale(error);
      return true;
    }
    clearProblem();
    showNow(live.replica);
    if (live.triton) showTriton(live.triton, live.at);
    else {
      const words = `Triton's statistics are unavailable: ${live.errors.triton}`;
      document.getElementById("triton").replaceChildren(el("p", { class: "problem" }, words));
    }
    showJobs(live);
    showGalleryAndHost(live);
    showMinutes(live);
    lastGood = live.at;
    fresh(live);
    return true;
  }

  document.addEventListener("DOMContentLoaded", () => facerec.every(EVERY_S, refresh));
})();
