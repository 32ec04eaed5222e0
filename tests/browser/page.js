// Helpers of the browser tests' page: the tests call them with page.evaluate
// through window.t, and read what they recorded.
import * as realtime from "django_realtime";

/** What crossed the client's sockets, and a filter that loses frames. */
const tap = { sent: [], received: [], dropped: [], sockets: [], drop: null };

/** A WebSocket that records frames and drops those tap.drop(frame) picks. */
class TappedSocket extends WebSocket {
  constructor(url) {
    super(url);
    tap.sockets.push(this);
  }

  send(text) {
    tap.sent.push(JSON.parse(text));
    super.send(text);
  }

  get onmessage() {
    return super.onmessage;
  }

  set onmessage(handler) {
    super.onmessage = handler && ((event) => {
      const frame = JSON.parse(event.data);
      if (tap.drop?.(frame)) {
        tap.dropped.push(frame);
        return;
      }
      tap.received.push(frame);
      handler(event);
    });
  }
}

/** Connect to the Feed consumer with quick backoff; record state and session events. */
function open(options = {}, url = "/ws/feed/") {
  const rt = realtime.connect(url, {
    backoff: { initial: 50, max: 400 },
    createSocket: (url) => new TappedSocket(url),
    ...options,
  });
  const log = { rt, states: [], sessions: [] };
  rt.onState((event) => log.states.push(event));
  rt.onSession(({ ok, error }) => log.sessions.push(ok ? { ok } : { ok, code: error.code }));
  return log;
}

/** Subscribe to `stream`, recording every callback. */
function follow(rt, stream, options = {}) {
  const got = { publications: [], lost: [], subscribed: [], errors: [], positions: [] };
  got.sub = rt.subscribe(stream, {
    ...options,
    onPublication: (data, p) => got.publications.push({ epoch: p.epoch, offset: p.offset, data }),
    onLost: (info) => got.lost.push(info),
    onSubscribed: (info) => got.subscribed.push(info),
    onError: (error) => got.errors.push({ code: error.code, message: error.message }),
    onPosition: (position) => {
      got.positions.push(position);
      options.onPosition?.(position);
    },
  });
  return got;
}

/** Lose the publications of `stream` at `offsets`, once each. */
function loseOnce(stream, offsets) {
  const lose = new Set(offsets);
  tap.drop = (frame) =>
    frame.kind === "publication" && frame.stream === stream && lose.delete(frame.offset);
}

/** Resolve once `predicate()` is true (checked every 10 ms). */
function until(predicate) {
  return new Promise((resolve) => {
    const check = () => (predicate() ? resolve() : setTimeout(check, 10));
    check();
  });
}

/** Settle `promise` into a plain object that page.evaluate can return. */
async function outcome(promise) {
  try {
    return { ok: true, value: await promise };
  } catch (error) {
    return { ok: false, name: error.name, code: error.code, message: error.message };
  }
}

const errors = [];
addEventListener("error", (event) => errors.push(String(event.error ?? event.message)));

window.t = { realtime, tap, open, follow, loseOnce, until, outcome, errors };
