"use strict";
// People: the gallery searched and filtered a page at a time. The view lives in the URL, so
// it reloads, bookmarks and walks back and forward as any page; admins create people here.

(() => {
  const { api, el, Problem, showProblem, clearProblem, busy } = facerec;
  const $ = (id) => document.getElementById(id);
  const FILTERS = ["q", "name", "gender", "address", "age_min", "age_max", "sort"];
  const PAGE = 20;
  const MAX_PHOTOS = 16; // the API's bound for one call
  let latest = 0; // an older answer arriving after a newer one is dropped

  const whole = (typed) => /^\d+$/.test(typed);

  // The view the URL asks for: its filters (only those given), and the page.
  function wanted() {
    const params = new URLSearchParams(location.search);
    const view = {};
    for (const name of FILTERS) {
      const value = (params.get(name) || "").trim();
      if (value) view[name] = value;
    }
    const offset = params.get("offset") || "";
    const limit = params.get("limit") || "";
    view.offset = whole(offset) ? Number(offset) : 0;
    view.limit = whole(limit) && Number(limit) >= 1 && Number(limit) <= 500 ? Number(limit) : PAGE;
    return view;
  }

  // The URL of a view, defaults left out.
  function addressOf(view) {
    const params = new URLSearchParams();
    for (const name of FILTERS) {
      if (view[name] && !(name === "sort" && view.sort === "id")) params.set(name, view[name]);
    }
    if (view.limit !== PAGE) params.set("limit", view.limit);
    if (view.offset) params.set("offset", view.offset);
    const query = params.toString();
    return query ? `/people?${query}` : "/people";
  }

  function go(view) {
    const target = addressOf(view);
    if (target !== location.pathname + location.search) history.pushState(null, "", target);
    load();
  }

  function viewOfForm(form) {
    const view = { offset: 0, limit: wanted().limit };
    for (const name of FILTERS) {
      const value = form.elements[name].value.trim();
      if (value) view[name] = value;
    }
    return view;
  }

  function fillForm(form, view) {
    for (const name of FILTERS) form.elements[name].value = view[name] || (name === "sort" ? "id" : "");
  }

  function ageProblem(view) {
    for (const name of ["age_min", "age_max"]) {
      if (view[name] && (!whole(view[name]) || Number(view[name]) > 150)) {
        return "An age is a whole number of years, 0 to 150.";
      }
    }
    if (view.age_min && view.age_max && Number(view.age_min) > Number(view.age_max)) {
      return `"Age from" (${view.age_min}) is above "Age to" (${view.age_max}).`;
    }
    return null;
  }

  async function load() {
    const view = wanted();
    fillForm($("filters"), view);
    const ticket = ++latest;
    clearProblem();
    const wrong = ageProblem(view);
    if (wrong) {
      $("count").textContent = "Nothing listed: the filters need fixing.";
      showProblem(new Problem(0, { detail: wrong }));
      return;
    }
    $("count").textContent = "Loading…";
    try {
      const answer = await api("GET", "/v1/people", { query: view });
      if (ticket === latest) show(answer, view);
    } catch (error) {
      if (ticket !== latest) return;
      $("count").textContent = "The list could not be loaded.";
      showProblem(error);
    }
  }

  const shown = (value) => (value === null || value === undefined || value === "" ? "—" : String(value));
  const cell = (value, optional = false) => el("td", { class: optional ? "optional" : undefined }, shown(value));

  function show(answer, view) {
    const { items, total } = answer;
    const rows = items.map((person) =>
      el(
        "tr",
        { dataset: { personId: String(person.id) } },
        el("td", {}, el("a", { href: `/people/${person.id}` }, person.name)),
        cell(person.external_id, true),
        cell(person.age),
        cell(person.gender),
        cell(person.address),
        cell(person.face_count, true),
      ),
    );
    if (!rows.length) {
      const none = total ? "No one on this page." : "Nobody matches.";
      rows.push(el("tr", {}, el("td", { colspan: 6, class: "muted" }, none)));
    }
    $("people").tBodies[0].replaceChildren(...rows);
    $("count").textContent = items.length
      ? `Showing ${view.offset + 1}–${view.offset + items.length} of ${total}`
      : `${total} ${total === 1 ? "person matches" : "people match"}`;
    const before = Math.max(0, Math.min(view.offset, total) - view.limit);
    pagerLink($("previous"), view.offset > 0, { ...view, offset: before });
    pagerLink($("next"), view.offset + items.length < total, { ...view, offset: view.offset + view.limit });
  }

  function pagerLink(link, available, view) {
    link.hidden = !available;
    if (available) link.href = addressOf(view);
    else link.removeAttribute("href");
  }

  // A plain click on a pager link stays in the page; a middle or modified click opens a tab.
  function follow(event) {
    if (event.button !== 0 || event.metaKey || event.ctrlKey || event.shiftKey || event.altKey) return;
    event.preventDefault();
    history.pushState(null, "", event.currentTarget.getAttribute("href"));
    load();
  }

  // The typed fields, blanks left out (the person does not have them).
  function personOf(data) {
    const person = { name: String(data.get("name") || "").trim() };
    if (!person.name) throw new Problem(0, { detail: "A person needs a name." });
    for (const name of ["external_id", "gender", "address"]) {
      const value = String(data.get(name) || "").trim();
      if (value) person[name] = value;
    }
    const age = String(data.get("age") || "").trim();
    if (age) {
      if (!whole(age) || Number(age) > 150) {
        throw new Problem(0, { detail: "The age is a whole number of years, 0 to 150." });
      }
      person.age = Number(age);
    }
    return person;
  }

  async function create(form) {
    const data = new FormData(form);
    const person = personOf(data);
    const photos = data.getAll("files").filter((file) => file.name);
    if (photos.length > MAX_PHOTOS) throw new Problem(0, { detail: `At most ${MAX_PHOTOS} photos at once.` });
    const progress = $("create-progress");
    let made;
    if (photos.length) {
      const count = photos.length > 1 ? `${photos.length} photos` : "1 photo";
      progress.textContent = `Creating ${person.name} and enrolling ${count}…`;
      const body = new FormData();
      for (const [name, value] of Object.entries(person)) body.append(name, value);
      for (const photo of photos) body.append("files", photo, photo.name);
      const query = {
        pick: data.get("largest") ? "largest" : undefined,
        force: data.get("force") ? "true" : undefined,
      };
      try {
        made = await api("POST", "/v1/people", { form: body, query });
      } finally {
        progress.textContent = "";
      }
    } else {
      made = await api("POST", "/v1/people", { json: person });
    }
    progress.textContent = `Created ${made.name}; opening the person's page…`;
    location.assign(`/people/${made.id}`);
  }

  document.addEventListener("DOMContentLoaded", () => {
    const filters = $("filters");
    filters.addEventListener("submit", (event) => {
      event.preventDefault();
      go(viewOfForm(filters));
    });
    $("clear").addEventListener("click", () => {
      fillForm(filters, {});
      go({ offset: 0, limit: wanted().limit });
    });
    $("previous").addEventListener("click", follow);
    $("next").addEventListener("click", follow);
    window.addEventListener("popstate", load);

    const form = $("create");
    if (form) {
      form.addEventListener("submit", (event) => {
        event.preventDefault();
        busy(form.querySelector("button[type=submit]"), () => create(form), $("create-problem"));
      });
    }
    load();
  });
})();
