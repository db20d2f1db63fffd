"use strict";
// Users (admin): the list, adding a user, changing a role, resetting a password, deleting
// with a confirmation. Refusals (the last admin user, a taken name) come back in words.
document.addEventListener("DOMContentLoaded", () => {
  const { api, el, busy, when, showProblem, clearProblem, Problem } = facerec;
  const ROLES = ["recognize", "admin"];
  const rows = document.querySelector("#users tbody");
  const done = document.getElementById("users-done");
  const me = Number(document.body.dataset.userId) || null;

  const say = (words) => {
    done.textContent = words;
    done.hidden = false;
  };
  const refuse = (detail, region) => showProblem(new Problem(400, { detail }), region);

  async function load() {
    const { items } = await api("GET", "/v1/users");
    rows.replaceChildren(...items.map(row));
    if (!items.length) rows.append(el("tr", {}, el("td", { colspan: 4, class: "hint" }, "No users yet.")));
  }

  function row(user) {
    const role = el(
      "select",
      { "aria-label": `Role of ${user.username}` },
      ROLES.map((name) => el("option", { value: name, selected: name === user.role }, name)),
    );
    const save = el("button", { type: "button", class: "secondary" }, "Change role");
    save.addEventListener("click", () => changeRole(user, role, save));
    return el(
      "tr",
      { dataset: { username: user.username } },
      el("th", { scope: "row" }, user.username, user.id === me ? el("span", { class: "badge" }, "you") : null),
      el("td", { dataset: { label: "Role" } }, el("div", { class: "row" }, role, save)),
      el("td", { dataset: { label: "Created" } }, when(user.created_at)),
      el(
        "td",
        { dataset: { label: "Actions" } },
        el(
          "div",
          { class: "row" },
          el("button", { type: "button", class: "secondary", onclick: () => openReset(user) }, "Reset password"),
          el("button", { type: "button", class: "danger", onclick: () => openDelete(user) }, "Delete"),
        ),
      ),
    );
  }

  function changeRole(user, select, button) {
    done.hidden = true;
    busy(button, async () => {
      let changed;
      try {
        changed = await api("PATCH", `/v1/users/${user.id}`, { json: { role: select.value } });
      } catch (error) {
        select.value = user.role; // the role it still has
        throw error;
      }
      if (changed.id === me && changed.role !== "admin") {
        location.assign("/account"); // this page is for admins only
        return;
      }
      await load(); // the table shows it before the message says it
      say(`${changed.username} now has the role ${changed.role}.`);
    });
  }

  // Closing buttons of both dialogs.
  for (const button of document.querySelectorAll("dialog [data-close]")) {
    button.addEventListener("click", () => button.closest("dialog").close());
  }

  const resetDialog = document.getElementById("reset-dialog");
  const resetForm = document.getElementById("reset-form");
  const resetProblem = document.getElementById("reset-problem");
  let resetting = null;

  function openReset(user) {
    resetting = user;
    resetForm.reset();
    clearProblem(resetProblem);
    document.getElementById("reset-for").textContent = `For ${user.username}.`;
    resetDialog.showModal();
  }

  resetForm.addEventListener("submit", (event) => {
    event.preventDefault();
    const password = String(new FormData(resetForm).get("password") || "");
    if (password.length < 8) return refuse("The password needs at least 8 characters.", resetProblem);
    const user = resetting;
    busy(
      resetForm.querySelector("button[type=submit]"),
      async () => {
        await api("PATCH", `/v1/users/${user.id}`, { json: { password } });
        resetDialog.close();
        say(
          user.id === me
            ? "Your password is changed; your other sessions have ended."
            : `The password of ${user.username} is changed; their sessions have ended.`,
        );
      },
      resetProblem,
    );
  });

  const deleteDialog = document.getElementById("delete-dialog");
  const deleteForm = document.getElementById("delete-form");
  let deleting = null;

  function openDelete(user) {
    deleting = user;
    document.getElementById("delete-for").textContent =
      `${user.username} (${user.role}) can no longer sign in, and their sessions end now.`;
    deleteDialog.showModal();
  }

  deleteForm.addEventListener("submit", (event) => {
    event.preventDefault();
    const user = deleting;
    deleteDialog.close();
    done.hidden = true;
    busy(null, async () => {
      await api("DELETE", `/v1/users/${user.id}`);
      if (user.id === me) {
        location.assign("/login"); // the session ended with the user
        return;
      }
      await load();
      say(`${user.username} is deleted.`);
    });
  });

  const addForm = document.getElementById("add-user");
  addForm.addEventListener("submit", (event) => {
    event.preventDefault();
    done.hidden = true;
    const data = new FormData(addForm);
    const username = String(data.get("username") || "").trim();
    const password = String(data.get("password") || "");
    if (!username) return refuse("Enter a username.");
    if (password.length < 8) return refuse("The password needs at least 8 characters.");
    busy(addForm.querySelector("button[type=submit]"), async () => {
      const made = await api("POST", "/v1/users", { json: { username, password, role: data.get("role") } });
      addForm.reset();
      await load();
      say(`${made.username} is added with the role ${made.role}.`);
    });
  });

  busy(null, load);
});
