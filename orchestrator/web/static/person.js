"use strict";
// One person: its fields and its enrolled faces; an admin edits the fields, adds photos
// (each file's outcome said on its own), deletes a face or the whole person.

(() => {
  const { api, el, Problem, showProblem, clearProblem, busy, when, percent } = facerec;
  const $ = (id) => document.getElementById(id);
  const personId = Number(document.body.dataset.personId);
  const FIELDS = ["name", "external_id", "age", "gender", "address"];
  let person = null;

  const shown = (value) => (value === null || value === undefined || value === "" ? "—" : String(value));

  async function loadPerson() {
    try {
      person = await api("GET", `/v1/people/${personId}`);
    } catch (error) {
      $("loading").hidden = true;
      if (error.status === 404) {
        $("name").textContent = "No such person";
        document.title = "No such person · facerec";
        $("missing").hidden = false;
        showProblem(new Problem(404, { detail: `No such person: there is no person ${personId} in the gallery.` }));
      } else {
        showProblem(error);
      }
      return false;
    }
    showPerson();
    return true;
  }

  function showPerson() {
    $("name").textContent = person.name;
    document.title = `${person.name} · facerec`;
    const facts = [
      ["External id", person.external_id],
      ["Age", person.age],
      ["Gender", person.gender],
      ["Address", person.address],
      ["Faces", person.face_count],
      ["Added", when(person.created_at)],
    ];
    if (Object.keys(person.attributes || {}).length) facts.push(["Attributes", JSON.stringify(person.attributes)]);
    $("fields").replaceChildren(
      ...facts.flatMap(([label, value]) => [
        el("dt", {}, label),
        el("dd", { dataset: { field: label.toLowerCase().replace(" ", "_") } }, shown(value)),
      ]),
    );
  }

  async function loadFaces() {
    const { items } = await api("GET", `/v1/people/${personId}/faces`);
    $("face-count").textContent = items.length
      ? `${items.length} face${items.length > 1 ? "s" : ""} enrolled.`
      : "No face enrolled yet." + (facerec.isAdmin() ? " Add photos below." : "");
    $("crops").replaceChildren(...items.map(crop));
  }

  function crop(face) {
    const remove = facerec.isAdmin()
      ? el("button", {
          type: "button",
          class: "danger small",
          "aria-label": `Delete face ${face.face_id}`,
          onclick: (event) => deleteFace(event.currentTarget, face.face_id),
        }, "Delete")
      : null;
    return el(
      "figure",
      { class: "crop", dataset: { faceId: String(face.face_id) } },
      el("img", {
        src: `/v1/faces/${face.face_id}/image`,
        alt: `Face ${face.face_id} of ${person.name}`,
        width: 112,
        height: 112,
      }),
      el(
        "figcaption",
        { class: "muted" },
        el("span", {}, `Face ${face.face_id}`),
        el("span", {}, `quality ${percent(face.quality, 0)}`),
      ),
      remove,
    );
  }

  function deleteFace(button, faceId) {
    if (!confirm(`Delete face ${faceId} of ${person.name}? Recognition will no longer use it.`)) return;
    busy(button, async () => {
      await api("DELETE", `/v1/faces/${faceId}`);
      await refresh();
      $("face-count").focus();
    });
  }

  async function refresh() {
    if (await loadPerson()) await loadFaces();
  }

  // Editing: blank fields are sent as null, which removes them (the name cannot be blank).
  function openEditor(open) {
    const editor = $("editor");
    editor.hidden = !open;
    $("edit").setAttribute("aria-expanded", String(open));
    clearProblem($("edit-problem"));
    if (open) {
      for (const name of FIELDS) editor.elements[name].value = person[name] ?? "";
      editor.elements.name.focus();
    } else {
      $("edit").focus();
    }
  }

  function changes(editor) {
    const body = {};
    for (const name of FIELDS) {
      const text = editor.elements[name].value.trim();
      body[name] = text === "" ? null : text;
    }
    if (body.name === null) throw new Problem(0, { detail: "A person needs a name." });
    if (body.age !== null) {
      if (!/^\d+$/.test(body.age) || Number(body.age) > 150) {
        throw new Problem(0, { detail: "The age is a whole number of years, 0 to 150." });
      }
      body.age = Number(body.age);
    }
    return body;
  }

  async function save(editor) {
    person = await api("PATCH", `/v1/people/${personId}`, { json: changes(editor) });
    showPerson();
    openEditor(false);
  }

  // Photos go one request each, so each file's outcome (a face, or why not) is its own.
  async function addPhotos(form) {
    const photos = [...form.elements.files.files];
    if (!photos.length) throw new Problem(0, { detail: "Choose one or more photos first." });
    const query = {
      pick: form.elements.largest.checked ? "largest" : undefined,
      force: form.elements.force.checked ? "true" : undefined,
    };
    const progress = $("add-progress");
    const results = $("add-results");
    results.replaceChildren();
    progress.max = photos.length;
    progress.value = 0;
    progress.hidden = false;
    for (const photo of photos) {
      const body = new FormData();
      body.append("file", photo, photo.name);
      let outcome;
      try {
        const face = await api("POST", `/v1/people/${personId}/faces`, { form: body, query });
        outcome = el("li", { class: "good", dataset: { file: photo.name, outcome: "enrolled" } },
          `${photo.name}: enrolled as face ${face.face_id} (quality ${percent(face.quality, 0)}).`);
      } catch (error) {
        if (error.status === 401) throw error;
        const words = error instanceof Problem ? error.message : String(error);
        const refused = { file: photo.name, outcome: "refused" };
        outcome = el("li", { class: "bad", dataset: refused }, `${photo.name}: ${words}`);
      }
      results.append(outcome);
      progress.value += 1;
    }
    progress.hidden = true;
    form.elements.files.value = "";
    await refresh();
  }

  function askToDelete() {
    const dialog = $("confirm-delete");
    const count = person.face_count;
    const faces = count === 0 ? "" : count === 1 ? " and its face" : ` and its ${count} faces`;
    $("confirm-words").textContent = `${person.name}${faces} will be removed from the gallery. This cannot be undone.`;
    dialog.returnValue = "";
    dialog.showModal();
  }

  function deletePerson() {
    busy($("delete"), async () => {
      await api("DELETE", `/v1/people/${personId}`);
      location.assign("/people");
    });
  }

  document.addEventListener("DOMContentLoaded", async () => {
    if (facerec.isAdmin()) {
      const editor = $("editor");
      $("edit").addEventListener("click", () => openEditor(editor.hidden));
      $("cancel").addEventListener("click", () => openEditor(false));
      editor.addEventListener("submit", (event) => {
        event.preventDefault();
        busy(editor.querySelector("button[type=submit]"), () => save(editor), $("edit-problem"));
      });
      const add = $("add");
      add.addEventListener("submit", (event) => {
        event.preventDefault();
        busy(add.querySelector("button[type=submit]"), () => addPhotos(add));
      });
      $("delete").addEventListener("click", askToDelete);
      $("confirm-delete").addEventListener("close", (event) => {
        if (event.target.returnValue === "delete") deletePerson();
      });
    }
    try {
      if (await loadPerson()) {
        await loadFaces();
        $("loading").hidden = true;
        $("found").hidden = false;
      }
    } catch (error) {
      $("loading").hidden = true;
      showProblem(error);
    }
  });
})();
