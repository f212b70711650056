// Watch: read-only, like `bento logs -f`. Pages through
// GET /v1/sessions/{token}/output from the start of what the session holds,
// then asks again every POLL_MS until the exit. It never acknowledges and
// never takes the session over, so any number of watchers may run beside
// an attached client. The next page is asked for only once the last one is
// on screen, so a flood is taken at the page's pace.

import { getJson } from "./api.js";
import { dataText } from "./output.js";

const POLL_MS = 250;
const RETRY_MS = 2000;

export function watch(token, view, on) {
  let stopped = false;
  let timer = 0;
  const sleep = (ms) => new Promise((r) => { timer = setTimeout(r, ms); });
  (async () => {
    let after = 0;
    let first = true;
    while (!stopped) {
      let page;
      try {
        page = await getJson(`/v1/sessions/${token}/output?after=${after}`);
      } catch (e) {
        if (stopped) return;
        if (e.status === 404) return on.gone(first);
        if (e.status === 401) return;
        on.error(e);
        await sleep(RETRY_MS);
        continue;
      }
      if (stopped) return;
      first = false;
      const skipped = page.messages.length ? page.messages[0].seq - after - 1 : 0;
      if (after > 0 && skipped > 0) {
        // Fell behind the newest output the controller keeps for watchers.
        view.write("note", `[${skipped} messages not shown: no longer held]\n`);
      }
      for (const m of page.messages) {
        view.write(m.stream, m.stream === "data" ? dataText(m.text, m.end) : m.text);
      }
      const before = after;
      after = Math.max(after, page.next_after);
      await view.rendered();
      if (page.exit) return on.exit(page.exit);
      if (!page.complete) {
        if (after > before) continue;
        // A page that neither ends nor moves on would be asked for forever.
        return on.error(new Error(`the server cannot read this session's output after seq ${after}`));
      }
      await sleep(POLL_MS);
    }
  })();
  return () => { stopped = true; clearTimeout(timer); };
}

/** Fetches everything the session holds, as one text, for a download. */
export async function heldText(token) {
  const parts = [];
  let after = 0;
  for (;;) {
    const page = await getJson(`/v1/sessions/${token}/output?after=${after}`);
    for (const m of page.messages) parts.push(m.stream === "data" ? dataText(m.text, m.end) : m.text);
    if (page.exit) parts.push(`\n[bento: ${page.exit.message}]\n`);
    if (page.complete || page.exit || page.next_after <= after) break;
    after = page.next_after;
  }
  return parts.join("");
}
