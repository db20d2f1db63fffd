"use strict";
// Open registration: create a recognize account, then sign in with it.
document.addEventListener("DOMContentLoaded", () => {
  const form = document.getElementById("register");
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const data = new FormData(form);
    const username = String(data.get("username") || "").trim();
    const password = String(data.get("password") || "");
    const refuse = (detail) => facerec.showProblem(new facerec.Problem(400, { detail }));
    if (!username) return refuse("Choose a username.");
    if (password.length < 8) return refuse("The password needs at least 8 characters.");
    if (password !== String(data.get("again") || "")) return refuse("The two passwords differ.");
    facerec.busy(form.querySelector("button"), async () => {
      await facerec.api("POST", "/v1/auth/register", { json: { username, password } });
      await facerec.api("POST", "/v1/auth/login", { json: { username, password } });
      location.assign("/");
    });
  });
});
