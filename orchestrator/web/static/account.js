"use strict";
// Your own account: who you are (from the page) and changing your password.
document.addEventListener("DOMContentLoaded", () => {
  const form = document.getElementById("password");
  const done = document.getElementById("password-done");
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    done.hidden = true;
    const data = new FormData(form);
    const current = String(data.get("current") || "");
    const next = String(data.get("new") || "");
    const refuse = (detail) => facerec.showProblem(new facerec.Problem(400, { detail }));
    if (!current) return refuse("Enter your current password.");
    if (next.length < 8) return refuse("The new password needs at least 8 characters.");
    if (next !== String(data.get("again") || "")) return refuse("The two new passwords differ.");
    facerec.busy(form.querySelector("button"), async () => {
      await facerec.api("POST", "/v1/auth/password", {
        json: { current_password: current, new_password: next },
      });
      form.reset();
      done.textContent = "Your password is changed. Your other sessions have ended; this one stays.";
      done.hidden = false;
    });
  });
});
