// Small DOM helpers. Data from the server only ever reaches the page as
// text (textContent, attribute values): never as HTML.

/** el("td", {class: "x"}, "text", child) */
export function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else if (k === "text") e.textContent = v;
    else e.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children) {
    if (c === null || c === undefined) continue;
    e.append(typeof c === "string" || typeof c === "number" ? String(c) : c);
  }
  return e;
}

/** Replaces what `parent` shows. */
export function show(parent, ...children) {
  parent.replaceChildren(...children.filter((c) => c !== null && c !== undefined));
}

export function bytes(n) {
  if (n === null || n === undefined) return "–";
  const u = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < u.length - 1) { n /= 1024; i++; }
  return `${i ? n.toFixed(1) : n} ${u[i]}`;
}

/** How long ago a unix time (seconds) was, in words. */
export function age(unix) {
  if (!unix) return "–";
  const s = Math.max(0, Math.round(Date.now() / 1000 - unix));
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m ${s % 60}s`;
  if (s < 86400) return `${Math.floor(s / 3600)}h ${Math.floor((s % 3600) / 60)}m`;
  return `${Math.floor(s / 86400)}d ${Math.floor((s % 86400) / 3600)}h`;
}

export function time(unix) {
  return unix ? new Date(unix * 1000).toLocaleString() : "–";
}

/** A token shortened for display: its first 8 characters. */
export function short(token) {
  return token ? `${token.slice(0, 8)}…` : "";
}

/** An exit in words: the server's message, else the reason's kind. */
export function exitWords(exit) {
  if (!exit) return "";
  const r = exit.reason || {};
  const why = {
    exited: "exited",
    signaled: `killed by signal ${r.signal}`,
    oom_killed: "killed: out of memory",
    timeout: "killed: its timeout ran out",
    killed: "killed",
    output_cap: "killed: it wrote more output than the cap allows",
    protocol_error: `protocol error: ${r.message || ""}`,
    start_failed: `did not start: ${r.message || ""}`,
    lost: `lost: ${r.message || ""}`,
    node_lost: `its node ${r.node || ""} was lost`,
    diverged: `killed: a fork whose replay differed from its parent (input ${r.input ?? ""})`,
  }[r.kind];
  const msg = exit.message || why || r.kind || "ended";
  return /\bcode\b/.test(msg) ? msg : `${msg} (code ${exit.code})`;
}

/** Asks for a yes or no in the page's dialog; resolves true for OK. */
export function confirmAction(text, ok = "OK") {
  const d = document.getElementById("confirm");
  document.getElementById("confirm-text").textContent = text;
  document.getElementById("confirm-ok").textContent = ok;
  d.returnValue = "";
  return new Promise((resolve) => {
    d.addEventListener("close", () => resolve(d.returnValue === "ok"), { once: true });
    d.showModal();
  });
}

/** A line in the status bar (cleared after a while). */
let statusTimer = 0;
export function status(text) {
  const s = document.getElementById("status");
  s.textContent = text;
  clearTimeout(statusTimer);
  statusTimer = setTimeout(() => { s.textContent = ""; }, 6000);
}

/** Copies text to the clipboard, saying so. */
export async function copy(text, what) {
  try {
    await navigator.clipboard.writeText(text);
    status(`${what} copied`);
  } catch {
    status(`cannot copy ${what} here: select it instead`);
  }
}
