// Output on screen, bounded. Text only: every piece is a text node in a
// <span> whose class names its stream (stdout, stderr, data).
//
// Policy: the page keeps the last MAX_CHARS characters. What arrives is
// queued and drawn once per frame (so a flood costs one layout a frame, not
// one per message); the queue is bounded the same way, its oldest pieces
// dropped first. Whatever is dropped is counted, and the session view
// offers the full held output as a download instead.

export const MAX_CHARS = 256 * 1024;

export class OutputView {
  constructor(pre, onFlush = () => {}) {
    this.pre = pre;
    this.onFlush = onFlush;
    this.queue = []; // [{cls, parts: [string]}]
    this.queued = 0;
    this.shown = 0;
    /** Characters received, and those not on screen (trimmed or skipped). */
    this.total = 0;
    this.dropped = 0;
    this.waiters = [];
    this.scheduled = false;
  }

  /** Queues `text` of `stream` ("stdout", "stderr" or "data"). */
  write(stream, text) {
    if (!text) return;
    this.total += text.length;
    const last = this.queue[this.queue.length - 1];
    if (last && last.cls === stream) last.parts.push(text);
    else this.queue.push({ cls: stream, parts: [text], len: 0 });
    this.queue[this.queue.length - 1].len += text.length;
    this.queued += text.length;
    while (this.queued - this.queue[0].len > MAX_CHARS) {
      const gone = this.queue.shift();
      this.queued -= gone.len;
      this.dropped += gone.len;
    }
    this.schedule();
  }

  /** Resolves once everything written so far is on screen. */
  rendered() {
    if (!this.queue.length) return Promise.resolve();
    return new Promise((resolve) => this.waiters.push(resolve));
  }

  schedule() {
    if (this.scheduled) return;
    this.scheduled = true;
    // A hidden tab gets no frames: draw on a timer there instead, so
    // watching and acking go on.
    if (document.hidden) setTimeout(() => this.flush(), 100);
    else requestAnimationFrame(() => this.flush());
  }

  flush() {
    this.scheduled = false;
    const pre = this.pre;
    const stick = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 8;
    for (const q of this.queue) {
      let text = q.parts.join("");
      if (text.length > MAX_CHARS) {
        this.dropped += text.length - MAX_CHARS;
        text = text.slice(-MAX_CHARS);
      }
      const tail = pre.lastChild;
      if (tail && tail.className === q.cls) tail.firstChild.appendData(text);
      else {
        const span = document.createElement("span");
        span.className = q.cls;
        span.append(document.createTextNode(text));
        pre.append(span);
      }
      this.shown += text.length;
    }
    this.queue = [];
    this.queued = 0;
    while (this.shown > MAX_CHARS && pre.firstChild) {
      const node = pre.firstChild.firstChild;
      const over = this.shown - MAX_CHARS;
      if (node.length <= over) {
        pre.firstChild.remove();
        this.shown -= node.length;
        this.dropped += node.length;
      } else {
        node.deleteData(0, over);
        this.shown -= over;
        this.dropped += over;
      }
    }
    if (stick) pre.scrollTop = pre.scrollHeight;
    const w = this.waiters;
    this.waiters = [];
    w.forEach((r) => r());
    this.onFlush(this);
  }

  clear() {
    this.pre.replaceChildren();
    this.queue = [];
    this.queued = this.shown = this.total = this.dropped = 0;
  }
}

/** The text of a data message shows as a line of its own. */
export function dataText(text, end) {
  return end ? `${text}\n` : text;
}
