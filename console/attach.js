// Attach: the protocol of docs/api.md, as `bento attach` speaks it. It takes
// the session over. Output is resumed after the last seq received and any
// seq already had is dropped, so each message is shown exactly once; acks
// go out (batched) only once what they cover is on screen. Input is
// numbered from hello.input_next, kept until acknowledged and sent again
// from input_next after a reconnect, so each line reaches the function
// exactly once. Pings keep the connection honest both ways; a dropped one
// is retried with backoff. The constants are the Rust client's
// (src/client/attach/options.rs).

import { wsProtocols, wsUrl } from "./api.js";
import { dataText } from "./output.js";

const ACK_INTERVAL_MS = 50;
const HEARTBEAT_MS = 5000;
const HEARTBEAT_TIMEOUT_MS = 10000;
const BACKOFF_INITIAL_MS = 100;
const BACKOFF_MAX_MS = 5000;
const GIVE_UP_MS = 600000;
/** Unacknowledged input kept at most (as the Rust client). */
const MAX_UNACKED = 1024;
const MAX_UNACKED_BYTES = 16 << 20;
const MAX_INPUT_BYTES = 1 << 20;
const STREAMS = { 1: "data", 2: "stdout", 3: "stderr" };
/** Close reasons after which coming back makes no sense. */
const FINAL = new Set(["finished", "taken_over", "closed_by_user", "session_gone", "key_revoked"]);

export class Attachment {
  /** `on`: {state(text, hellos), exit(exit), ended(text), inputAcked(seq, waiting)} */
  constructor(token, view, on) {
    this.token = token;
    this.view = view;
    this.on = on;
    this.lastSeq = 0;
    this.ackedSeq = 0;
    this.exitSeen = false;
    this.inputNext = 0; // 0: not numbered yet (first hello sets it)
    this.unacked = []; // [{seq, bytes|null (eof)}]
    this.unackedBytes = 0;
    this.inputClosed = false;
    this.decoders = {};
    this.ws = null;
    this.ready = false;
    this.done = false;
    this.backoff = BACKOFF_INITIAL_MS;
    this.failingSince = 0;
    this.ackTimer = 0;
    this.ackPending = false;
    this.beat = 0;
    this.heard = 0;
    this.retry = 0;
    /** Connections that got as far as hello. */
    this.hellos = 0;
    this.connect();
  }

  connect() {
    if (this.done) return;
    this.ready = false;
    this.on.state(this.lastSeq ? "reconnecting…" : "connecting…");
    const ws = new WebSocket(
      wsUrl(`/v1/sessions/${this.token}/attach?after=${this.lastSeq}`), wsProtocols());
    ws.binaryType = "arraybuffer";
    this.ws = ws;
    ws.onopen = () => {
      this.heard = performance.now();
      this.beat = setInterval(() => this.heartbeat(), HEARTBEAT_MS);
    };
    ws.onmessage = (m) => {
      if (this.ws !== ws) return;
      this.heard = performance.now();
      if (typeof m.data === "string") this.control(m.data);
      else this.output(new Uint8Array(m.data));
    };
    ws.onclose = () => {
      clearInterval(this.beat);
      if (this.ws !== ws) return;
      this.ws = null;
      this.ready = false;
      this.reconnect();
    };
  }

  reconnect() {
    if (this.done) return;
    const now = performance.now();
    if (!this.failingSince) this.failingSince = now;
    if (now - this.failingSince > GIVE_UP_MS) {
      this.finish("gave up reconnecting after 10 minutes");
      return;
    }
    const wait = this.backoff;
    this.backoff = Math.min(this.backoff * 2, BACKOFF_MAX_MS);
    this.on.state(`connection lost: trying again in ${(wait / 1000).toFixed(1)}s`);
    this.retry = setTimeout(() => this.connect(), wait);
  }

  heartbeat() {
    if (!this.ws) return;
    if (performance.now() - this.heard > HEARTBEAT_TIMEOUT_MS) {
      // Nothing heard: the connection is dead even if the socket says not.
      const ws = this.ws;
      this.ws = null;
      clearInterval(this.beat);
      ws.close();
      this.reconnect();
      return;
    }
    this.sendJson({ type: "ping" });
  }

  sendJson(v) {
    if (this.ws && this.ws.readyState === WebSocket.OPEN) this.ws.send(JSON.stringify(v));
  }

  control(text) {
    let m;
    try { m = JSON.parse(text); } catch { return; }
    switch (m.type) {
      case "hello":
        this.ready = true;
        this.hellos += 1;
        this.backoff = BACKOFF_INITIAL_MS;
        this.failingSince = 0;
        if (!this.inputNext) this.inputNext = Math.max(1, m.input_next);
        this.inputAcked(m.input_next - 1);
        if (m.input_closed) this.inputClosed = true;
        for (const u of this.unacked) this.transmit(u);
        this.on.state(this.inputClosed ? "attached (input has ended)" : "attached", this.hellos);
        break;
      case "exit":
        // Taken even at an old seq: after a controller restart that is how
        // a client learns the function ended (docs/api.md, rule 1).
        if (!this.exitSeen) {
          this.exitSeen = true;
          this.lastSeq = Math.max(this.lastSeq, m.seq);
          this.on.exit(m.exit);
          this.scheduleAck();
        }
        break;
      case "input_ack":
        this.inputAcked(m.seq);
        break;
      case "ping":
        this.sendJson({ type: "pong" });
        break;
      case "closed": {
        const kind = (m.reason && m.reason.kind) || "closed";
        if (kind === "taken_over") {
          // Stop taking output; ack what is on screen, then leave.
          this.done = true;
          this.view.rendered().then(() => {
            this.sendAck(this.lastSeq);
            this.sendJson({ type: "detach" });
          });
          this.finish("taken over by another client");
        } else if (FINAL.has(kind)) {
          this.finish({ finished: "the session finished", closed_by_user: "closed (detached by a user)",
            session_gone: "the session is gone" }[kind]);
        } else {
          this.on.state(`closed by the server (${kind}): reconnecting`);
        }
        break;
      }
      default:
        break;
    }
  }

  output(b) {
    if (this.done || b.length < 10) return;
    const stream = STREAMS[b[0]];
    const end = (b[1] & 1) === 1;
    const seq = Number(new DataView(b.buffer, b.byteOffset + 2, 8).getBigUint64(0));
    if (!stream || seq <= this.lastSeq) return; // a duplicate after a resume
    this.lastSeq = seq;
    const dec = this.decoders[stream] || (this.decoders[stream] = new TextDecoder("utf-8", { fatal: false }));
    const body = b.subarray(10);
    if (stream === "data") this.view.write(stream, dataText(dec.decode(body, { stream: !end }), end));
    else this.view.write(stream, dec.decode(body, { stream: true }));
    this.scheduleAck();
  }

  scheduleAck() {
    if (this.ackPending) return;
    this.ackPending = true;
    const upTo = this.lastSeq;
    this.view.rendered().then(() => {
      this.ackTimer = setTimeout(() => {
        this.ackPending = false;
        this.sendAck(upTo);
        if (this.lastSeq > upTo) this.scheduleAck();
      }, ACK_INTERVAL_MS);
    });
  }

  sendAck(upTo = this.ackedSeq) {
    if (upTo > this.ackedSeq) this.ackedSeq = upTo;
    if (this.ackedSeq) this.sendJson({ type: "ack", seq: this.ackedSeq });
  }

  inputAcked(seq) {
    while (this.unacked.length && this.unacked[0].seq <= seq) {
      const u = this.unacked.shift();
      this.unackedBytes -= u.bytes ? u.bytes.length : 0;
    }
    this.on.inputAcked(seq, this.unacked.length);
  }

  transmit(u) {
    if (!this.ready || !this.ws || this.ws.readyState !== WebSocket.OPEN) return;
    if (u.bytes === null) {
      this.sendJson({ type: "eof", seq: u.seq });
      return;
    }
    const f = new Uint8Array(9 + u.bytes.length);
    f[0] = 1;
    new DataView(f.buffer).setBigUint64(1, BigInt(u.seq));
    f.set(u.bytes, 9);
    this.ws.send(f);
  }

  /** Queues one input message; answers why not, or null. */
  send(text) {
    const bytes = new TextEncoder().encode(text);
    if (this.done) return "not attached";
    if (!this.inputNext) return "not connected yet: wait a moment";
    if (this.inputClosed) return "input has ended";
    if (bytes.length > MAX_INPUT_BYTES) return "a message is at most 1 MiB";
    if (this.unacked.length >= MAX_UNACKED || this.unackedBytes + bytes.length > MAX_UNACKED_BYTES) {
      return "too much input not yet taken by the function: wait";
    }
    return this.queue(bytes);
  }

  /** Ends the input. */
  eof() {
    if (this.done) return "not attached";
    if (!this.inputNext) return "not connected yet: wait a moment";
    if (this.inputClosed) return "input has ended";
    this.inputClosed = true;
    return this.queue(null);
  }

  queue(bytes) {
    const u = { seq: this.inputNext++, bytes };
    this.unacked.push(u);
    this.unackedBytes += bytes ? bytes.length : 0;
    this.transmit(u);
    return null;
  }

  finish(text) {
    this.done = true;
    clearTimeout(this.retry);
    this.on.ended(text);
  }

  /** Leaves: acks what is on screen, detaches; the function runs on. */
  detach() {
    const ws = this.ws;
    this.done = true;
    clearTimeout(this.retry);
    clearInterval(this.beat);
    this.view.rendered().then(() => {
      if (ws && ws.readyState === WebSocket.OPEN) {
        if (this.ackedSeq < this.lastSeq) this.ackedSeq = this.lastSeq;
        if (this.ackedSeq) ws.send(JSON.stringify({ type: "ack", seq: this.ackedSeq }));
        ws.send(JSON.stringify({ type: "detach" }));
      }
    });
  }
}
