// The sign-in card (log in or register) and the signed-in user in the top bar.

import { describe } from "./api.js";
import { byId, say } from "./dom.js";

export function startAuth(session) {
  const overlay = byId("auth");
  const form = byId("auth-form");
  const status = byId("auth-status");
  const who = byId("who");
  const logout = byId("logout");

  function show() {
    const signedIn = session.signedIn;
    overlay.hidden = signedIn;
    logout.hidden = !signedIn;
    who.textContent = signedIn ? session.email : "";
    if (!signedIn) form.elements.email.focus();
  }

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const action = event.submitter?.dataset.action || "login";
    const email = form.elements.email.value.trim();
    const password = form.elements.password.value;
    const buttons = form.querySelectorAll("button");
    buttons.forEach((b) => { b.disabled = true; });
    say(status, action === "register" ? "Creating your account…" : "Signing in…");
    try {
      if (action === "register") await session.register(email, password);
      else await session.login(email, password);
      form.elements.password.value = "";
      say(status, "");
    } catch (error) {
      say(status, describe(error), "error");
    } finally {
      buttons.forEach((b) => { b.disabled = false; });
    }
  });

  logout.addEventListener("click", () => session.logout());
  session.addEventListener("change", show);
  if (session.email) form.elements.email.value = session.email;
  session.restore().then(show);
}
