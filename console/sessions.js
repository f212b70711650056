// The sessions list: polled every second, updated in place (focus and
// scroll stay where they are), filtered by state and function.

import { getJson } from "./api.js";
import { age, bytes, copy, el, exitWords, show, short } from "./dom.js";

/** id → token of every session seen: the page's URLs name a session by its
 *  id (which gives no access), never by its token. */
export const tokens = new Map();

const POLL_MS = 1000;
/** Columns a narrow screen leaves out (token, image, attached, transient,
 *  pending): the session's own page shows them all. */
const NARROW_HIDDEN = new Set([1, 3, 5, 6, 8]);

export function remember(list) {
  for (const s of list) tokens.set(s.id, s.token);
}

export function sessionsView(main) {
  const stateSel = el("select", { id: "filter-state" },
    ...["", "starting", "resuming", "running", "ended"].map((s) =>
      el("option", { value: s, text: s || "any" })));
  const fnInput = el("input", { id: "filter-function", type: "search", placeholder: "name or id" });
  const saved = JSON.parse(sessionStorage.getItem("bento.filter") || "{}");
  stateSel.value = saved.state || "";
  fnInput.value = saved.fn || "";
  const tbody = el("tbody");
  const note = el("p", { class: "muted", id: "sessions-note" });
  const error = el("p", { class: "error", role: "alert" });
  show(main,
    el("h1", { text: "Sessions" }),
    el("div", { class: "row" },
      el("label", {}, "State", stateSel),
      el("label", {}, "Function", fnInput)),
    error,
    el("div", { class: "table" }, el("table", { id: "sessions" },
      el("thead", {}, el("tr", {}, ...["session", "token", "function", "image", "state",
        "attached", "transient", "exit", "pending", "age"].map((h, i) =>
        el("th", { scope: "col", class: NARROW_HIDDEN.has(i) ? "hide-narrow" : null, text: h })))),
      tbody)),
    note);

  const rows = new Map();
  let last = [];
  let timer = 0;
  let stopped = false;

  function row(s) {
    let r = rows.get(s.id);
    if (!r) {
      const cells = Array.from({ length: 10 }, (_, i) =>
        el("td", { class: NARROW_HIDDEN.has(i) ? "hide-narrow" : null }));
      cells[0].append(el("a", { href: `#/session/${encodeURIComponent(s.id)}`, text: s.id }));
      cells[1].append(el("code", { text: short(s.token), title: "the session's token (shortened)" }), " ",
        el("button", {
          type: "button", text: "copy", "aria-label": `copy the token of ${s.id}`,
          onclick: () => copy(s.token, "token"),
        }));
      r = el("tr", { "data-id": s.id }, ...cells);
      rows.set(s.id, r);
    }
    const c = r.children;
    c[2].textContent = s.function_name || s.function;
    c[2].title = s.function;
    c[3].textContent = s.image;
    c[4].textContent = s.state;
    c[4].className = `state state-${s.state}`;
    c[5].textContent = s.attached ? "attached" : "–";
    c[6].textContent = s.transient ? "transient" : "–";
    c[7].textContent = s.exit ? exitWords(s.exit) : "";
    c[8].textContent = s.pending_messages ? `${s.pending_messages} (${bytes(s.pending_bytes)})` : "0";
    c[9].textContent = age(s.created_at);
    return r;
  }

  function draw() {
    const st = stateSel.value;
    const fn = fnInput.value.trim().toLowerCase();
    sessionStorage.setItem("bento.filter", JSON.stringify({ state: st, fn }));
    const shown = last.filter((s) => (!st || s.state === st) &&
      (!fn || (s.function_name || "").toLowerCase().includes(fn) || s.function.includes(fn)));
    // Newest first.
    shown.reverse();
    const keep = new Set(shown.map((s) => s.id));
    for (const [id, r] of rows) if (!keep.has(id)) { r.remove(); rows.delete(id); }
    shown.forEach((s, i) => {
      const r = row(s);
      if (tbody.children[i] !== r) tbody.insertBefore(r, tbody.children[i] || null);
    });
    note.textContent = `${shown.length} of ${last.length} sessions shown; updated ${new Date().toLocaleTimeString()}`;
  }

  async function poll() {
    try {
      last = await getJson("/v1/sessions");
      remember(last);
      error.textContent = "";
      draw();
    } catch (e) {
      error.textContent = `Cannot list sessions: ${e.message}`;
    }
    if (!stopped) timer = setTimeout(poll, POLL_MS);
  }
  stateSel.addEventListener("change", draw);
  fnInput.addEventListener("input", draw);
  poll();
  return () => { stopped = true; clearTimeout(timer); };
}
