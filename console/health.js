// Health: GET /healthz, and headline figures from GET /metrics.

import { getText } from "./api.js";
import { bytes, el, show } from "./dom.js";

/** The samples of a Prometheus text page, by name with labels. */
export function samples(text) {
  const m = new Map();
  for (const line of text.split("\n")) {
    if (!line || line.startsWith("#")) continue;
    const i = line.lastIndexOf(" ");
    if (i > 0) m.set(line.slice(0, i), Number(line.slice(i + 1)));
  }
  return m;
}

export function healthView(main) {
  const health = el("p", { id: "health", class: "banner", text: "Asking…" });
  const cards = el("div", { class: "cards", id: "figures" });
  const error = el("p", { class: "error", role: "alert" });
  show(main, el("h1", { text: "Health" }), health, el("h2", { text: "Figures" }), error, cards);
  let stopped = false;
  let timer = 0;
  async function poll() {
    try {
      const r = await fetch("/healthz", { signal: AbortSignal.timeout(10000) });
      const body = await r.json().catch(() => ({}));
      health.textContent = r.ok ? "Healthy: the controller and its container engine answer."
        : `Unhealthy: ${body.error || `HTTP ${r.status}`}`;
      health.className = r.ok ? "banner" : "banner error";
    } catch {
      health.textContent = "The controller does not answer.";
      health.className = "banner error";
    }
    try {
      const s = samples(await getText("/metrics"));
      const get = (k) => s.get(k) ?? 0;
      const figures = [
        ["starting", get('bento_sessions{state="starting"}')],
        ["running", get('bento_sessions{state="running"}')],
        ["ended", get('bento_sessions{state="ended"}')],
        ["attached", get("bento_sessions_attached")],
        ["output buffered", bytes(get("bento_output_buffered_bytes"))],
        ["output spooled", bytes(get("bento_output_spooled_bytes"))],
        ["sessions created", get("bento_sessions_created_total")],
        ["warm ready", [...s].filter(([k]) => k.startsWith("bento_pool_ready")).reduce((a, [, v]) => a + v, 0)],
      ];
      error.textContent = "";
      cards.replaceChildren(...figures.map(([k, v]) => el("div", { class: "card", "data-figure": k }, el("b", { text: String(v) }), k)));
    } catch (e) {
      error.textContent = `Cannot read /metrics: ${e.message}`;
    }
    if (!stopped) timer = setTimeout(poll, 2000);
  }
  poll();
  return () => { stopped = true; clearTimeout(timer); };
}
