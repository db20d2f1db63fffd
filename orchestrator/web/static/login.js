"use strict";
document.addEventListener("DOMContentLoaded", () => {
  const form = document.getElementById("login");
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const data = new FormData(form);
    const username = String(data.get("username") || "").trim();
    const password = String(data.get("password") || "");
    if (!username || !password) {
      facerec.showProblem(new facerec.Problem(400, { detail: "Enter your username and password." }));
      return;
    }
    facerec.busy(form.querySelector("button"), async () => {
      try {
        await facerec.api("POST", "/v1/auth/login", { json: { username, password } });
      } catch (error) {
        if (error.status === 401) throw new facerec.Problem(401, { detail: "Wrong username or password." });
        throw error;
      }
      // The server checks the target too (only a path of this site); this keeps the same rule.
      const next = new URLSearchParams(location.search).get("next") || "/";
      location.assign(next.startsWith("/") && !next.startsWith("//") && !next.includes("\\") ? next : "/");
    });
  });
});
