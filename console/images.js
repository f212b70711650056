// Images: each function image with its default and maximum limits and its
// warm pool.

import { getJson } from "./api.js";
import { bytes, el, show } from "./dom.js";

function limits(l) {
  if (!l) return "only lower than the defaults";
  return `${bytes(l.memory)}, ${l.cpus} CPUs, ${l.pids} processes, timeout ${l.timeout ? `${l.timeout}s` : "none"}`;
}

export function imagesView(main) {
  const tbody = el("tbody");
  const error = el("p", { class: "error", role: "alert" });
  show(main, el("h1", { text: "Images" }), error,
    el("div", { class: "table" }, el("table", { id: "images" },
      el("thead", {}, el("tr", {}, ...["name", "runtime", "defaults", "most a run may ask", "warm pool"].map((h) =>
        el("th", { scope: "col", text: h })))), tbody)));
  let stopped = false;
  let timer = 0;
  async function poll() {
    try {
      const list = await getJson("/v1/images");
      error.textContent = "";
      tbody.replaceChildren(...list.map((i) => el("tr", {},
        el("td", { text: i.name + (i.default ? " (default)" : "") }),
        el("td", { text: i.runtime }),
        el("td", { class: "wrap", text: limits(i.limits) }),
        el("td", { class: "wrap", text: limits(i.max) }),
        el("td", { text: i.warm ? `${i.warm_ready} of ${i.warm} ready` : "none" }))));
    } catch (e) {
      error.textContent = `Cannot list images: ${e.message}`;
    }
    if (!stopped) timer = setTimeout(poll, 3000);
  }
  poll();
  return () => { stopped = true; clearTimeout(timer); };
}
