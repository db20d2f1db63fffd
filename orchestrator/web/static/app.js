"use strict";
// What every page shares: calls to the /v1 API with the session, problems shown in words,
// and a small DOM builder (text is always set as text, never parsed as HTML).

const facerec = (() => {
  const CSRF_COOKIE = "facerec_csrf";
  const UNSAFE = new Set(["POST", "PUT", "PATCH", "DELETE"]);

  class Problem extends Error {
    constructor(status, problem) {
      const words = problem.detail || problem.title || `the server answered ${status}`;
      super(problem.title && problem.detail ? `${problem.title}: ${problem.detail}` : words);
      this.status = status;
      this.problem = problem;
    }
  }

  function cookie(name) {
    const found = document.cookie.split("; ").find((pair) => pair.startsWith(`${name}=`));
    return found ? decodeURIComponent(found.slice(name.length + 1)) : null;
  }

  function signIn() {
    const here = location.pathname + location.search;
    location.assign(`/login?next=${encodeURIComponent(here)}`);
  }

  // fetch for the API: JSON or a FormData body, problem+json answers thrown as a Problem.
  async function api(method, path, { json, form, query } = {}) {
    const headers = { Accept: "application/json" };
    if (UNSAFE.has(method)) headers["X-CSRF-Token"] = cookie(CSRF_COOKIE) || "";
    let body;
    if (json !== undefined) {
      headers["Content-Type"] = "application/json";
      body = JSON.stringify(json);
    } else if (form !== undefined) {
      body = form;
    }
    let url = path;
    if (query) {
      const params = new URLSearchParams();
      for (const [name, value] of Object.entries(query)) {
        if (value !== undefined && value !== null && value !== "") params.append(name, value);
      }
      if ([...params].length) url += `?${params}`;
    }
    let response;
    try {
      response = await fetch(url, { method, headers, body, credentials: "same-origin" });
    } catch (error) {
      throw new Problem(0, { title: "No answer", detail: "the service did not answer; is it running?" });
    }
    if (response.status === 401 && path !== "/v1/auth/login") {
      signIn();
      throw new Problem(401, { title: "Signed out", detail: "your session has ended; sign in again" });
    }
    if (response.status === 204) return null;
    const type = response.headers.get("Content-Type") || "";
    const data = type.includes("json") ? await response.json() : await response.text();
    if (!response.ok) {
      const problem = typeof data === "object" ? data : { detail: String(data).slice(0, 300) };
      if (response.status === 429 || response.status === 503) {
        const wait = response.headers.get("Retry-After");
        if (wait) problem.detail = `${problem.detail || problem.title} (try again in ${wait} s)`;
      }
      throw new Problem(response.status, problem);
    }
    return data;
  }

  // A problem in words, in the page's alert region (or the one given).
  function showProblem(error, region = document.getElementById("problem")) {
    if (!region) return;
    const message = error instanceof Problem ? error.message : `Something went wrong: ${error.message || error}`;
    region.textContent = message;
    region.hidden = false;
    console.error(error);
  }

  function clearProblem(region = document.getElementById("problem")) {
    if (region) {
      region.hidden = true;
      region.textContent = "";
    }
  }

  // el("a", {href: "/x", class: "y"}, "text", child…): attributes, then children (text or nodes).
  function el(tag, attributes = {}, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attributes)) {
      if (value === undefined || value === null || value === false) continue;
      if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
      else if (name === "dataset") Object.assign(node.dataset, value);
      else node.setAttribute(name, value === true ? "" : value);
    }
    for (const child of children.flat()) {
      if (child === undefined || child === null || child === false) continue;
      node.append(child instanceof Node ? child : String(child));
    }
    return node;
  }

  function svg(tag, attributes = {}, ...children) {
    const node = document.createElementNS("http://www.w3.org/2000/svg", tag);
    for (const [name, value] of Object.entries(attributes)) {
      if (value === undefined || value === null) continue;
      if (name === "dataset") Object.assign(node.dataset, value);
      else node.setAttribute(name, value);
    }
    for (const child of children.flat()) {
      if (child !== undefined && child !== null) node.append(child instanceof Node ? child : String(child));
    }
    return node;
  }

  const isAdmin = () => document.body.dataset.role === "admin";
  const when = (iso) => (iso ? new Date(iso).toLocaleString() : "—");
  const ms = (value) => (value === null || value === undefined ? "—" : `${Math.round(value)} ms`);
  const percent = (value, digits = 1) =>
    value === null || value === undefined || Number.isNaN(value) ? "—" : `${(value * 100).toFixed(digits)} %`;

  // Run an async action from a button or form: the button is busy meanwhile, problems shown.
  async function busy(control, action, region) {
    if (control) control.disabled = true;
    clearProblem(region);
    try {
      return await action();
    } catch (error) {
      showProblem(error, region);
      return undefined;
    } finally {
      if (control) control.disabled = false;
    }
  }

  // Poll `step` every `seconds` while the page is shown; `step` returns false to stop.
  function every(seconds, step) {
    let timer = null;
    const run = async () => {
      let again = true;
      try {
        again = (await step()) !== false;
      } catch (error) {
        showProblem(error);
      }
      if (again) timer = setTimeout(run, seconds * 1000);
    };
    run();
    return () => clearTimeout(timer);
  }

  // A poll of `refresh` (true while there is more to wait for) that anything may start again:
  // the start it returns does nothing while the poll runs. A failed refresh is shown and tried
  // again, unless `final(error)` says there is nothing left to wait for.
  function poller(seconds, refresh, final = () => false) {
    let polling = false;
    return function start() {
      if (polling) return;
      polling = true;
      every(seconds, async () => {
        let more = true;
        try {
          more = await refresh();
        } catch (error) {
          showProblem(error);
          if (final(error)) more = false;
        }
        polling = more;
        return more;
      });
    };
  }

  document.addEventListener("DOMContentLoaded", () => {
    const out = document.getElementById("sign-out");
    if (out) {
      out.addEventListener("click", () =>
        busy(out, async () => {
          await api("POST", "/v1/auth/logout");
          location.assign("/login");
        }),
      );
    }
  });

  return { api, Problem, showProblem, clearProblem, el, svg, isAdmin, when, ms, percent, busy, every, poller };
})();
