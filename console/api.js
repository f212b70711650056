// Talking to the controller: every request carries the API key the way the
// CLI's do (Authorization: Bearer). The key lives in sessionStorage: for
// this tab only, gone when it closes.

const KEY = "bento.key";

export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

export function key() {
  return sessionStorage.getItem(KEY) || "";
}

export function setKey(k) {
  if (k) sessionStorage.setItem(KEY, k);
  else sessionStorage.removeItem(KEY);
}

/** Every request gives up after this long. */
const DEADLINE_MS = 30000;

function headers(extra = {}) {
  const h = { ...extra };
  const k = key();
  if (k) h.Authorization = `Bearer ${k}`;
  return h;
}

async function request(method, path, body) {
  const init = { method, headers: headers(), signal: AbortSignal.timeout(DEADLINE_MS) };
  if (body !== undefined) {
    init.headers["content-type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  let r;
  try {
    r = await fetch(path, init);
  } catch (e) {
    throw new ApiError(0, e.name === "TimeoutError"
      ? "the controller did not answer in time"
      : "cannot reach the controller");
  }
  if (r.status === 401) {
    const msg = await errorText(r);
    window.dispatchEvent(new CustomEvent("bento-auth", { detail: msg }));
    throw new ApiError(401, msg);
  }
  if (!r.ok) throw new ApiError(r.status, await errorText(r));
  return r;
}

async function errorText(r) {
  const t = await r.text().catch(() => "");
  try { return JSON.parse(t).error || t; } catch { return t || `HTTP ${r.status}`; }
}

export async function getJson(path) {
  return (await request("GET", path)).json();
}

export async function getText(path) {
  return (await request("GET", path)).text();
}

export async function postJson(path, body) {
  const r = await request("POST", path, body);
  return r.status === 204 ? null : r.json();
}

export async function post(path) {
  await request("POST", path);
}

/** Whether the key (or none) is taken: GET /v1/sessions answers 200. */
export async function check() {
  try {
    await request("GET", "/v1/sessions");
    return null;
  } catch (e) {
    if (e.status === 401) return e.message;
    throw e;
  }
}

/** The WebSocket subprotocols to offer: the protocol's name, and the key
 *  as hex (browsers cannot set headers on a WebSocket; the key is in no
 *  URL this way). */
export function wsProtocols() {
  const k = key();
  if (!k) return ["bento.v1"];
  const hex = Array.from(new TextEncoder().encode(k), (b) => b.toString(16).padStart(2, "0")).join("");
  return ["bento.v1", `bento.key.${hex}`];
}

export function wsUrl(path) {
  const proto = location.protocol === "https:" ? "wss:" : "ws:";
  return `${proto}//${location.host}${path}`;
}
