// Vigil sign-in: a name and password, or a one-time link /login#token=… (a wall screen, the
// demo). The token is in the fragment, so it never reaches a server or proxy log; it is
// removed from the address bar before it is sent.
"use strict";

const $ = (id) => document.getElementById(id);

function show(message) {
  $("msg").textContent = message;
  $("msg").hidden = !message;
}

async function signIn(body) {
  $("submit").disabled = true;
  try {
    const r = await fetch("/api/login", {
      method: "POST", credentials: "same-origin",
      headers: { "Content-Type": "application/json" }, body: JSON.stringify(body),
    });
    if (r.ok) {
      const after = sessionStorage.getItem("vigil.after") || "";
      sessionStorage.removeItem("vigil.after");
      location.replace(`/${after}`);
      return;
    }
    const answer = await r.json().catch(() => ({}));
    let message = answer.error || `Sign-in failed (HTTP ${r.status})`;
    const wait = Number(r.headers.get("Retry-After"));
    if (r.status === 429 && wait) message += ` (about ${Math.ceil(wait / 60)} min)`;
    show(message);
  } catch (e) {
    show(`The board cannot be reached: ${e.message}`);
  } finally {
    $("submit").disabled = false;
  }
}

$("signin").addEventListener("submit", (e) => {
  e.preventDefault();
  show("");
  const password = $("password").value;
  $("password").value = "";
  signIn({ name: $("name").value.trim(), password });
});

const link = location.hash.match(/(?:^#|&)token=([^&]+)/);
if (link) {
  history.replaceState(null, "", "/login");
  show("Signing in with the link…");
  signIn({ token: decodeURIComponent(link[1]) });
}
