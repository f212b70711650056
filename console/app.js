// The console's shell: the key form, the navigation and the views, one at
// a time, chosen by the URL's hash (#/sessions, #/session/ID, #/functions,
// #/images, #/health). A view is a function that fills <main> and returns
// what stops it (its timers, its sockets).

import { check, key, setKey } from "./api.js";
import { el, show } from "./dom.js";
import { sessionsView } from "./sessions.js";
import { sessionView } from "./session.js";
import { functionsView } from "./functions.js";
import { imagesView } from "./images.js";
import { healthView } from "./health.js";

const main = document.getElementById("main");
let stop = null;
let authed = false;

function route() {
  const [, name = "sessions", arg] = location.hash.split("/");
  return { name: decodeURIComponent(name), arg: arg && decodeURIComponent(arg) };
}

function render() {
  if (stop) { stop(); stop = null; }
  if (!authed) return;
  const r = route();
  for (const a of document.querySelectorAll("[data-nav]")) {
    const here = a.dataset.nav === r.name || (r.name === "session" && a.dataset.nav === "sessions");
    if (here) a.setAttribute("aria-current", "page"); else a.removeAttribute("aria-current");
  }
  const view = {
    sessions: sessionsView,
    session: sessionView,
    functions: functionsView,
    images: imagesView,
    health: healthView,
  }[r.name] || sessionsView;
  stop = view(main, r.arg) || null;
}

function login(message) {
  authed = false;
  if (stop) { stop(); stop = null; }
  const input = el("input", {
    type: "password", id: "key", name: "key", autocomplete: "current-password", required: true,
  });
  const form = el("form", { class: "login", id: "login" },
    el("h1", { text: "API key" }),
    el("p", { text: "This controller needs its API key. It is kept for this browser tab only." }),
    message ? el("p", { class: "error", id: "login-error", role: "alert", text: message }) : null,
    el("label", {}, "Key", input),
    el("div", { class: "row" }, el("button", { type: "submit", text: "Open" })));
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    setKey(input.value.trim());
    await start();
  });
  show(main, form);
  input.focus();
}

async function start() {
  let refused;
  try {
    refused = await check();
  } catch (e) {
    show(main, el("p", { class: "error", role: "alert", text: `${e.message}: is bento serve running?` }),
      el("button", { type: "button", text: "Retry", onclick: start }));
    return;
  }
  if (refused !== null) {
    const wrong = key() !== "";
    setKey("");
    login(wrong ? "That key was refused: wrong API key." : null);
    return;
  }
  authed = true;
  document.getElementById("logout").hidden = key() === "";
  render();
}

window.addEventListener("hashchange", render);
// Any request refused later (the key changed on the server): ask again.
window.addEventListener("bento-auth", () => {
  if (authed) { setKey(""); login("The controller refused the key: enter it again."); }
});
document.getElementById("logout").addEventListener("click", () => {
  setKey("");
  document.getElementById("logout").hidden = true;
  login(null);
});
start();
