// One session: its facts (polled), its output (watched by default,
// read-only; or attached, after a confirmation), close and kill, each
// after a confirmation, and extending its deadline.

import { getJson, post, postJson } from "./api.js";
import { age, bytes, confirmAction, copy, el, exitWords, show, short, status, time } from "./dom.js";
import { OutputView, MAX_CHARS } from "./output.js";
import { heldText, watch } from "./watch.js";
import { Attachment } from "./attach.js";
import { remember, tokens } from "./sessions.js";

const POLL_MS = 1000;

async function findToken(id) {
  if (tokens.has(id)) return tokens.get(id);
  remember(await getJson("/v1/sessions"));
  return tokens.get(id);
}

function limitsText(l) {
  if (!l) return "–";
  const t = l.timeout ? `${l.timeout}s` : "none";
  const idle = l.idle_timeout ? `, idle timeout ${l.idle_timeout}s` : "";
  return `memory ${bytes(l.memory)}, cpus ${l.cpus}, pids ${l.pids}, timeout ${t}${idle}`;
}

export function sessionView(main, id) {
  let stopped = false;
  const stops = [];
  const title = el("h1", {}, "Session ", el("code", { text: id || "" }));
  show(main, title, el("p", { text: "Loading…" }));
  (async () => {
    let token;
    try {
      token = await findToken(id);
    } catch (e) {
      show(main, title, el("p", { class: "error", role: "alert", text: e.message }));
      return;
    }
    if (stopped) return;
    if (!token) {
      show(main, title, el("p", { class: "banner", id: "gone", text:
        "No such session: it was reaped (its output was all delivered, or its time to live ran out), or it never existed." }),
        el("a", { href: "#/sessions", text: "All sessions" }));
      return;
    }
    stops.push(build(main, title, id, token));
  })();
  return () => { stopped = true; stops.forEach((s) => s()); };
}

function build(main, title, id, token) {
  let stopped = false;
  let timer = 0;
  let info = null;
  let mode = null; // { kind: "watch"|"attach", stop }
  const facts = el("dl", { class: "facts", id: "facts" });
  const exitBanner = el("p", { class: "banner exit", id: "exit", role: "status", hidden: true });
  const modeLine = el("p", { class: "muted", id: "mode" });
  const pre = el("pre", { class: "output", id: "output", tabindex: "0", "aria-label": "output" });
  const counter = el("span", { class: "muted", id: "counter" });
  const download = el("button", { type: "button", id: "download", text: "Download held output" });
  const trimmed = el("p", { class: "muted", id: "trimmed", hidden: true });
  const view = new OutputView(pre, (v) => {
    counter.textContent = `${v.total.toLocaleString()} characters received`;
    if (v.dropped) {
      trimmed.hidden = false;
      trimmed.textContent = `Showing the last ${MAX_CHARS.toLocaleString()} characters; ${v.dropped.toLocaleString()} earlier ones are not on screen. Download the held output for all of it.`;
    }
  });
  const watchBtn = el("button", { type: "button", id: "watch", text: "Watch" });
  const attachBtn = el("button", { type: "button", id: "attach", text: "Attach…" });
  const detachBtn = el("button", { type: "button", id: "detach", text: "Detach", hidden: true });
  const closeBtn = el("button", { type: "button", id: "close", text: "Close…" });
  const killBtn = el("button", { type: "button", id: "kill", class: "danger", text: "Kill…" });
  const wrapBtn = el("button", { type: "button", id: "wrap", "aria-pressed": "false", text: "Wrap lines" });
  // Moves the deadline, as `bento extend` does; shown while it has one.
  const extendBy = el("select", { id: "extend-by" },
    ...["15m", "1h", "4h"].map((v) => el("option", { value: v, text: v })));
  const extendForm = el("form", { id: "extend", class: "row", hidden: true },
    el("label", {}, "Extend the deadline by", extendBy),
    el("button", { type: "submit", text: "Extend" }));
  const input = el("input", { id: "input", type: "text", autocomplete: "off", placeholder: "a line of input", size: 30 });
  const inputForm = el("form", { id: "input-form", class: "row", hidden: true },
    el("label", {}, "Input (one message per line)", input),
    el("button", { type: "submit", text: "Send" }),
    el("button", { type: "button", id: "eof", text: "End input" }),
    el("span", { class: "muted", id: "input-state" }));

  show(main, title,
    el("div", { class: "row" }, el("code", { title: "token (shortened)", text: short(token) }),
      el("button", { type: "button", id: "copy-token", text: "copy token", onclick: () => copy(token, "token") }),
      el("a", { href: "#/sessions", text: "All sessions" })),
    exitBanner,
    el("h2", { text: "Facts" }), facts, extendForm,
    el("h2", { text: "Output" }),
    el("div", { class: "row" }, watchBtn, attachBtn, detachBtn, closeBtn, killBtn, wrapBtn, download),
    modeLine,
    el("p", { class: "legend", "aria-hidden": "true" },
      el("span", { text: "stdout" }), el("span", { class: "stderr", text: "stderr" }),
      el("span", { class: "data", text: "messages (send)" })),
    trimmed, pre, el("p", {}, counter), inputForm);

  function showExit(exit) {
    exitBanner.hidden = false;
    exitBanner.textContent = `The function ${exitWords(exit)}.`;
  }

  function drawFacts() {
    const i = info;
    const rows = [
      ["state", i.state + (i.attached ? ", attached" : "") + (i.transient ? ", transient" : "")],
      ["function", `${i.function_name || ""} (${i.function})`],
      ["image", i.image + (i.warm ? " (warm container)" : "")],
      ["limits", limitsText(i.limits)],
      ["created", `${time(i.created_at)} (${age(i.created_at)} ago)`],
      ["ended", i.ended_at ? time(i.ended_at) : "–"],
      ["deadline", i.state !== "ended" && i.deadline ? time(i.deadline) : "–"],
      // Only while it runs with nobody attached: activity moves it.
      ...(i.idle_deadline ? [["idle until", `${time(i.idle_deadline)} unless there is activity`]] : []),
      ["output", `last seq ${i.last_seq}; pending ${i.pending_messages} messages (${bytes(i.pending_bytes)}); spooled ${bytes(i.spooled_bytes)}`],
      ["exit", i.exit ? exitWords(i.exit) : "–"],
    ];
    facts.replaceChildren(...rows.flatMap(([k, v]) => [el("dt", { text: k }), el("dd", { "data-fact": k, text: v })]));
    extendForm.hidden = i.state === "ended" || !i.deadline;
    if (i.exit) showExit(i.exit);
  }

  async function poll() {
    try {
      info = await getJson(`/v1/sessions/${token}`);
      drawFacts();
    } catch (e) {
      if (e.status === 404) {
        facts.replaceChildren(el("dt", { text: "state" }), el("dd", { "data-fact": "state", text: "gone (reaped)" }));
        return;
      }
      status(`Cannot inspect ${id}: ${e.message}`);
    }
    if (!stopped) timer = setTimeout(poll, POLL_MS);
  }

  function stopMode() {
    if (mode) mode.stop();
    mode = null;
    inputForm.hidden = true;
    detachBtn.hidden = true;
    attachBtn.hidden = false;
    watchBtn.disabled = false;
  }

  function startWatch() {
    stopMode();
    view.clear();
    watchBtn.disabled = true;
    modeLine.textContent = "Watching (read-only: takes nothing over, acknowledges nothing).";
    const stop = watch(token, view, {
      exit: (exit) => { showExit(exit); modeLine.textContent = "Watched to the end."; },
      gone: (first) => {
        modeLine.textContent = first ? "The session is gone." :
          "The session is gone: an attached client took the rest of its output and it was reaped.";
      },
      error: (e) => { modeLine.textContent = `Watching: ${e.message}; trying again.`; },
    });
    mode = { kind: "watch", stop };
  }

  async function startAttach() {
    const ok = await confirmAction(
      "Attach takes this session over from whoever is attached (a CLI, another page). Their output stops; yours starts where they left off.",
      "Attach");
    if (!ok || stopped) return;
    stopMode();
    view.clear();
    watchBtn.disabled = false;
    attachBtn.hidden = true;
    detachBtn.hidden = false;
    inputForm.hidden = false;
    const inputState = inputForm.querySelector("#input-state");
    const a = new Attachment(token, view, {
      state: (t, hellos) => {
        modeLine.textContent = `Attached: ${t}`;
        if (hellos) modeLine.dataset.connections = hellos;
      },
      exit: showExit,
      ended: (t) => { modeLine.textContent = `Attachment ended: ${t}.`; inputForm.hidden = true; },
      inputAcked: (seq, waiting) => {
        inputState.textContent = waiting ? `${waiting} waiting for the function` : (seq > 0 ? "all input taken" : "");
      },
    });
    mode = { kind: "attach", stop: () => a.detach(), attachment: a };
    input.focus();
  }

  inputForm.addEventListener("submit", (e) => {
    e.preventDefault();
    const why = mode && mode.attachment && mode.attachment.send(input.value);
    if (why) status(`Not sent: ${why}`); else input.value = "";
  });
  inputForm.querySelector("#eof").addEventListener("click", () => {
    const why = mode && mode.attachment && mode.attachment.eof();
    if (why) status(`Not sent: ${why}`);
  });
  watchBtn.addEventListener("click", startWatch);
  attachBtn.addEventListener("click", startAttach);
  detachBtn.addEventListener("click", () => { stopMode(); modeLine.textContent = "Detached: the function runs on."; });
  wrapBtn.addEventListener("click", () => {
    const on = pre.classList.toggle("wrap");
    wrapBtn.setAttribute("aria-pressed", String(on));
  });
  closeBtn.addEventListener("click", async () => {
    if (!(await confirmAction("Close: detach whoever is attached. The function keeps running.", "Close"))) return;
    try { await post(`/v1/sessions/${token}/close`); status(`${id}: closed`); } catch (e) { status(`Close failed: ${e.message}`); }
  });
  extendForm.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    try {
      const r = await postJson(`/v1/sessions/${token}/extend`, { by: extendBy.value });
      status(`${id}: the deadline is now ${time(r.deadline)}`);
      if (info) { info.deadline = r.deadline; drawFacts(); }
    } catch (e) {
      status(`Extend failed: ${e.message}`);
    }
  });
  killBtn.addEventListener("click", async () => {
    if (!(await confirmAction(`Kill ${id}? The function is stopped at once.`, "Kill"))) return;
    try { await post(`/v1/sessions/${token}/kill`); status(`${id}: kill sent`); } catch (e) { status(`Kill failed: ${e.message}`); }
  });
  download.addEventListener("click", async () => {
    download.disabled = true;
    try {
      const text = await heldText(token);
      const url = URL.createObjectURL(new Blob([text], { type: "text/plain;charset=utf-8" }));
      const a = el("a", { href: url, download: `${id}.txt` });
      document.body.append(a);
      a.click();
      a.remove();
      setTimeout(() => URL.revokeObjectURL(url), 60000);
    } catch (e) {
      status(`Download failed: ${e.message}`);
    } finally {
      download.disabled = false;
    }
  });

  poll();
  startWatch();
  return () => { stopped = true; clearTimeout(timer); stopMode(); };
}
