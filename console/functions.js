// Functions: the list, a form that submits code (pasted or from a file),
// and a form that runs one with arguments and limits, showing the token.

import { getJson, postJson } from "./api.js";
import { age, bytes, copy, el, show } from "./dom.js";
import { remember } from "./sessions.js";

export function functionsView(main) {
  const tbody = el("tbody");
  const listError = el("p", { class: "error", role: "alert" });

  // Submit.
  const code = el("textarea", { id: "code", rows: 10, spellcheck: "false",
    placeholder: "def main(name):\n    print(f'hello {name}')" });
  const file = el("input", { id: "code-file", type: "file", accept: ".py,text/x-python,text/plain" });
  const name = el("input", { id: "fn-name", pattern: "[a-z0-9][a-z0-9_-]{0,63}", placeholder: "hello" });
  const filename = el("input", { id: "fn-filename", placeholder: "hello.py" });
  const image = el("select", { id: "fn-image" });
  const submitOut = el("p", { id: "submit-result", role: "status" });
  const submitForm = el("form", { id: "submit-form" },
    el("div", { class: "row" },
      el("label", {}, "Name", name),
      el("label", {}, "Image", image),
      el("label", {}, "File name", filename),
      el("label", {}, "Or load a file", file)),
    el("label", { class: "block" }, "Code"), code,
    el("div", { class: "row" }, el("button", { type: "submit", text: "Submit" })),
    submitOut);

  // Run.
  const fnSel = el("select", { id: "run-function" });
  const args = el("textarea", { id: "run-args", rows: 3, spellcheck: "false",
    placeholder: "one argument a line (JSON where it parses): \"world\"" });
  const mem = el("input", { id: "run-memory", type: "number", min: 1, step: 1 });
  const cpus = el("input", { id: "run-cpus", type: "number", min: 0.01, step: 0.01 });
  const pids = el("input", { id: "run-pids", type: "number", min: 1, step: 1 });
  const timeout = el("input", { id: "run-timeout", type: "number", min: 1, step: 1 });
  const transient = el("input", { id: "run-transient", type: "checkbox" });
  const limitsNote = el("p", { class: "muted", id: "limits-note" });
  const runOut = el("div", { id: "run-result", role: "status" });
  const runForm = el("form", { id: "run-form" },
    el("div", { class: "row" }, el("label", {}, "Function", fnSel)),
    el("label", { class: "block" }, "Arguments"), args,
    el("div", { class: "row" },
      el("label", {}, "Memory (MiB)", mem), el("label", {}, "CPUs", cpus),
      el("label", {}, "Processes", pids), el("label", {}, "Timeout (s)", timeout),
      el("label", { class: "inline" }, transient, "transient")),
    limitsNote,
    el("div", { class: "row" }, el("button", { type: "submit", text: "Run" })),
    runOut);

  show(main, el("h1", { text: "Functions" }), listError,
    el("div", { class: "table" }, el("table", { id: "functions" },
      el("thead", {}, el("tr", {}, ...["name", "id", "image", "size", "age"].map((h) =>
        el("th", { scope: "col", text: h })))), tbody)),
    el("h2", { text: "Run a function" }), runForm,
    el("h2", { text: "Submit a function" }), submitForm);

  let images = [];
  let functions = [];

  function imageOf(fnId) {
    const f = functions.find((x) => x.id === fnId);
    return images.find((i) => i.name === (f && f.image));
  }

  function describeLimits() {
    const img = imageOf(fnSel.value);
    if (!img) { limitsNote.textContent = ""; return; }
    const d = img.limits;
    const m = img.max || d;
    mem.placeholder = Math.round(d.memory / 1048576); mem.max = Math.floor(m.memory / 1048576);
    cpus.placeholder = d.cpus; cpus.max = m.cpus;
    pids.placeholder = d.pids; pids.max = m.pids;
    timeout.placeholder = d.timeout || "none"; timeout.max = m.timeout || "";
    limitsNote.textContent = `Image ${img.name}: empty fields take its defaults; ` +
      `at most ${bytes(m.memory)}, ${m.cpus} CPUs, ${m.pids} processes, ` +
      `${m.timeout ? `${m.timeout}s` : "no"} timeout.`;
  }

  async function load() {
    try {
      [functions, images] = await Promise.all([getJson("/v1/functions"), getJson("/v1/images")]);
    } catch (e) {
      listError.textContent = `Cannot list functions: ${e.message}`;
      return;
    }
    listError.textContent = "";
    tbody.replaceChildren(...functions.slice().reverse().map((f) => el("tr", {},
      el("td", { text: f.name || "–" }), el("td", {}, el("code", { text: f.id })),
      el("td", { text: f.image }), el("td", { text: bytes(f.size) }), el("td", { text: age(f.created_at) }))));
    if (!functions.length) tbody.append(el("tr", {}, el("td", { colspan: 5, class: "muted", text: "No functions yet: submit one below." })));
    const keep = fnSel.value;
    fnSel.replaceChildren(...functions.slice().reverse().map((f) =>
      el("option", { value: f.id, text: f.name ? `${f.name} (${f.id})` : f.id })));
    if (keep && functions.some((f) => f.id === keep)) fnSel.value = keep;
    const keepImage = image.value;
    image.replaceChildren(...images.map((i) => el("option", { value: i.name, text: i.name + (i.default ? " (default)" : "") })));
    image.value = keepImage || (images.find((i) => i.default) || {}).name || "";
    describeLimits();
  }

  file.addEventListener("change", async () => {
    const f = file.files[0];
    if (!f) return;
    if (f.size > 1 << 20) { submitOut.textContent = "That file is over the 1 MiB limit."; return; }
    code.value = await f.text();
    if (!filename.value) filename.value = f.name;
    if (!name.value) name.value = f.name.replace(/\.py$/, "").toLowerCase().replace(/[^a-z0-9_-]/g, "-").slice(0, 64);
  });

  submitForm.addEventListener("submit", async (e) => {
    e.preventDefault();
    submitOut.className = "";
    submitOut.textContent = "Submitting (the code is compiled first)…";
    const body = { code: code.value, image: image.value || undefined };
    if (name.value.trim()) body.name = name.value.trim();
    if (filename.value.trim()) body.filename = filename.value.trim();
    try {
      const f = await postJson("/v1/functions", body);
      submitOut.textContent = `Stored ${f.name || ""} as ${f.id}.`;
      await load();
      fnSel.value = f.id;
      describeLimits();
    } catch (err) {
      submitOut.className = "error";
      submitOut.textContent = `Refused: ${err.message}`;
    }
  });

  fnSel.addEventListener("change", describeLimits);
  runForm.addEventListener("submit", async (e) => {
    e.preventDefault();
    const limits = {};
    if (mem.value) limits.memory = Math.round(Number(mem.value) * 1048576);
    if (cpus.value) limits.cpus = Number(cpus.value);
    if (pids.value) limits.pids = Number(pids.value);
    if (timeout.value) limits.timeout = Number(timeout.value);
    const body = {
      function: fnSel.value,
      args: args.value === "" ? [] : args.value.split("\n"),
      transient: transient.checked,
      limits,
    };
    runOut.className = "";
    runOut.textContent = "Starting…";
    try {
      const s = await postJson("/v1/sessions", body);
      remember([s]);
      runOut.replaceChildren(
        el("p", {}, "Started ", el("a", { href: `#/session/${encodeURIComponent(s.id)}`, id: "run-session", text: s.id }), ". Its token:"),
        el("p", {}, el("code", { id: "run-token", class: "mono", text: s.token }), " ",
          el("button", { type: "button", text: "copy", onclick: () => copy(s.token, "token") })));
    } catch (err) {
      runOut.className = "error";
      runOut.textContent = `Refused: ${err.message}`;
    }
  });

  load();
  return () => {};
}
