/**
 * realtime.js: the browser client of django_realtime's stream protocol.
 *
 * An ES module with no dependencies and no build step. It keeps one
 * WebSocket to a StreamConsumer open, reconnects with exponential backoff
 * and full jitter, resumes every subscription from the position of the last
 * publication it delivered (so nothing is missed and nothing arrives twice),
 * dispatches publications to handlers by stream and type, and correlates
 * requests with their replies.
 *
 *     import { connect } from "/static/django_realtime/realtime.js";
 *     const rt = connect("/ws/feed/");
 *     const sub = rt.subscribe("feed", { onLost: reloadSnapshot });
 *     sub.on("tick", (data) => render(data.n));
 *     const echoed = await rt.request("echo", { hello: "world" });
 *
 * The wire protocol is docs/topics/streams-protocol.rst; this API is
 * documented in docs/topics/browser-client.rst.
 *
 * @module realtime
 */

/** Stream names the server accepts: 1 to 200 of these characters. */
const STREAM_NAME = /^[A-Za-z0-9_.:@=-]{1,200}$/;

/** Symbol under which a Subscription keeps what only this module changes. */
const internal = Symbol("realtime.internal");

/**
 * @typedef {object} Backoff
 * @property {number} [initial=500] ceiling of the first delay, in ms
 * @property {number} [max=30000] largest ceiling, in ms
 * @property {number} [factor=2] growth of the ceiling per attempt
 * @property {number} [jitter=1] fraction of the ceiling drawn at random:
 *     1 is "full jitter" (a delay uniform in [0, ceiling]), 0 none
 */

/**
 * @typedef {object} Options
 * @property {Backoff} [backoff] reconnection delays
 * @property {number} [pingInterval=25000] ms of silence before a ping; 0: never
 * @property {number} [pongTimeout=10000] ms to hear anything after a ping,
 *     or the connection counts as dead and is replaced
 * @property {number} [connectTimeout=10000] ms for the WebSocket to open
 * @property {number} [requestTimeout=10000] default timeout of request()
 * @property {number[]} [fatalCloseCodes=[1008, 4003]] close codes after which
 *     the client does not reconnect: the server said "do not come back"
 * @property {(url: string) => WebSocket} [createSocket] makes the WebSocket;
 *     tests pass a wrapper here
 */

/** @typedef {{epoch: string, offset: number}} Position */

/**
 * @typedef {object} Publication
 * @property {string} stream
 * @property {string} epoch
 * @property {number} offset
 * @property {*} data the published message
 */

/**
 * What the server said when a subscription (re)started.
 * @typedef {object} SubscribedInfo
 * @property {string} epoch the stream's newest position then
 * @property {number} offset
 * @property {boolean} recovered every message after `since` is replayed
 * @property {number} replayed how many publications the replay holds
 * @property {?string} reason why nothing could be replayed, when `since`
 *     was given and `recovered` is false
 */

/**
 * Messages that cannot be replayed: reload the state of the stream.
 * @typedef {object} LostInfo
 * @property {string} reason "epoch_changed", "outside_window" or
 *     "invalid_position"
 * @property {string} epoch the subscription continues after this position
 * @property {number} offset
 */

/**
 * @typedef {object} SubscribeOptions
 * @property {?Position} [since] resume after this position (saved before a
 *     page reload, for instance); without it, start with new messages
 * @property {(data: *, publication: Publication) => void} [onPublication]
 *     every publication, before the handlers added with on()
 * @property {(info: LostInfo) => void} [onLost] messages were lost for good
 * @property {(info: SubscribedInfo) => void} [onSubscribed] each (re)start
 * @property {(position: Position) => void} [onPosition] the position moved;
 *     called after the handlers of a publication ran: save it here to resume
 *     after a reload
 * @property {(error: RealtimeError) => void} [onError] the server refused the
 *     subscription (error.code "forbidden", for instance); it is closed
 */

/** An error with a machine-readable `code`, as the protocol's error frames. */
export class RealtimeError extends Error {
  /**
   * @param {string} code "timeout", "disconnected", "closed", or a server
   *     code such as "forbidden", "unknown_request", "bad_frame"
   * @param {string} message
   */
  constructor(code, message) {
    super(message);
    this.name = "RealtimeError";
    this.code = code;
  }
}

/**
 * Return the ws: or wss: URL of `url`, resolved against the page's URL.
 * @param {string} url "/ws/feed/", "https://example.com/ws/", "ws://..."
 * @param {string} [base] the page's URL by default
 * @returns {string}
 */
export function resolveUrl(url, base = globalThis.location?.href) {
  const resolved = new URL(url, base);
  const schemes = { "http:": "ws:", "https:": "wss:", "ws:": "ws:", "wss:": "wss:" };
  if (!(resolved.protocol in schemes)) {
    throw new TypeError(`Expected an http(s) or ws(s) URL, got ${resolved.href}.`);
  }
  resolved.protocol = schemes[resolved.protocol];
  return resolved.href;
}

/**
 * Return the delay in ms before reconnection attempt `attempt` (from 1).
 * @param {number} attempt
 * @param {Required<Backoff>} backoff
 * @param {() => number} [random] uniform in [0, 1)
 * @returns {number}
 */
export function backoffDelay(attempt, backoff, random = Math.random) {
  const { initial, max, factor, jitter } = backoff;
  const ceiling = Math.min(max, initial * factor ** (attempt - 1));
  return Math.round(ceiling * (1 - jitter * random()));
}

/** Report an error to the page (window "error" event, console) and go on. */
function report(error) {
  (globalThis.reportError ?? console.error)(error);
}

/** Call an application callback; its exception must not stop the client. */
function call(callback, ...args) {
  if (!callback) return;
  try {
    callback(...args);
  } catch (error) {
    report(error);
  }
}

/**
 * One stream the client receives; made by {@link Realtime#subscribe}.
 */
export class Subscription {
  /**
   * @param {Realtime} realtime
   * @param {string} stream
   * @param {SubscribeOptions} options
   */
  constructor(realtime, stream, options) {
    /** The stream's name. */
    this.stream = stream;
    /**
     * Resolves with the first {@link SubscribedInfo}; rejects with the
     * RealtimeError of a refusal.
     * @type {Promise<SubscribedInfo>}
     */
    this.ready = new Promise((resolve, reject) => {
      this[internal] = {
        realtime,
        options,
        position: options.since ? { ...options.since } : null,
        since: null, // the position the subscribe in flight resumes from
        state: "pending",
        subscribeId: null,
        resolve,
        reject,
      };
    });
    this.ready.catch(() => {}); // a refusal also goes to onError
  }

  /** @returns {?Position} where the app is: the last publication delivered */
  get position() {
    const position = this[internal].position;
    return position && { ...position };
  }

  /** @returns {"pending"|"active"|"closed"} */
  get state() {
    return this[internal].state;
  }

  /**
   * Call `handler(data, publication)` for publications whose `data.type` is
   * `type` ("*": every publication).
   * @returns {() => void} removes the handler
   */
  on(type, handler) {
    return this[internal].realtime.on(this.stream, type, handler);
  }

  /**
   * Stop receiving the stream; handlers added with on() stay registered.
   * @returns {Promise<void>} settles when the server confirmed, or at once
   *     when not connected
   */
  unsubscribe() {
    return this[internal].realtime.unsubscribe(this.stream);
  }
}

/**
 * A connection to a StreamConsumer that reconnects by itself; made by
 * {@link connect}.
 */
export class Realtime {
  #url;
  #options;
  #socket = null;
  #state = "connecting";
  #closed = false;
  #attempt = 0;
  #nextId = 1;
  /** @type {Map<number, {answer: Function, drop: Function}>} frames sent */
  #pending = new Map();
  /** Requests made while not connected, sent once open. */
  #queue = [];
  /** @type {Map<string, Subscription>} */
  #subscriptions = new Map();
  /** @type {Map<string, Map<string, Set<Function>>>} stream → type → handlers */
  #buses = new Map();
  #stateListeners = new Set();
  #timer = null; // connect timeout, reconnection delay or heartbeat
  #lastHeard = 0;
  #pingSentAt = null;
  #onOnline = () => {
    if (this.#state === "reconnecting") this.#open();
  };

  /**
   * @param {string} url
   * @param {Options} [options]
   */
  constructor(url, options = {}) {
    this.#url = resolveUrl(url);
    this.#options = {
      pingInterval: 25000,
      pongTimeout: 10000,
      connectTimeout: 10000,
      requestTimeout: 10000,
      fatalCloseCodes: [1008, 4003],
      createSocket: (socketUrl) => new WebSocket(socketUrl),
      ...options,
      backoff: { initial: 500, max: 30000, factor: 2, jitter: 1, ...options.backoff },
    };
    globalThis.addEventListener?.("online", this.#onOnline);
    // Open after the caller's synchronous code: its onState() listeners and
    // subscriptions are then in place.
    queueMicrotask(() => this.#open());
  }

  /** @returns {string} the resolved ws: or wss: URL */
  get url() {
    return this.#url;
  }

  /** @returns {"connecting"|"open"|"reconnecting"|"closed"} */
  get state() {
    return this.#state;
  }

  /**
   * Call `listener({state, attempt, delay, code, reason})` on each change of
   * state: "connecting" (attempt: 0 for the first connection, then the
   * number of the reconnection), "open", "reconnecting" (attempt, the delay
   * in ms before it, and the close code and reason of the connection that
   * ended), "closed" (code, reason: no more reconnecting).
   * @returns {() => void} removes the listener
   */
  onState(listener) {
    this.#stateListeners.add(listener);
    return () => this.#stateListeners.delete(listener);
  }

  /**
   * Receive `stream`; on reconnection, resume where the app is.
   * @param {string} stream
   * @param {SubscribeOptions} [options]
   * @returns {Subscription}
   */
  subscribe(stream, options = {}) {
    if (typeof stream !== "string" || !STREAM_NAME.test(stream)) {
      throw new TypeError(
        "Expected a stream name of 1 to 200 ASCII letters, digits and " +
          `"_ . : @ = -", got ${JSON.stringify(stream)}.`,
      );
    }
    if (this.#subscriptions.has(stream)) {
      throw new Error(
        `Already subscribed to ${stream}: add handlers to that subscription ` +
          "with on(), or unsubscribe() it first.",
      );
    }
    if (this.#closed) throw new RealtimeError("closed", "The client is closed.");
    const subscription = new Subscription(this, stream, options);
    this.#subscriptions.set(stream, subscription);
    if (this.#state === "open") this.#sendSubscribe(subscription);
    return subscription;
  }

  /**
   * Stop receiving `stream` (see {@link Subscription#unsubscribe}).
   * @returns {Promise<void>}
   */
  unsubscribe(stream) {
    const subscription = this.#subscriptions.get(stream);
    if (!subscription) return Promise.resolve();
    this.#subscriptions.delete(stream);
    const record = subscription[internal];
    record.state = "closed";
    if (this.#state !== "open") return Promise.resolve();
    return new Promise((resolve) => {
      this.#sendFrame({ kind: "unsubscribe", stream }, resolve, resolve);
    });
  }

  /**
   * Call `handler(data, publication)` for publications of `stream` whose
   * `data.type` is `type` ("*": every publication). Handlers belong to the
   * stream, not to one subscription: they outlive unsubscribe().
   * @returns {() => void} removes the handler
   */
  on(stream, type, handler) {
    if (!this.#buses.has(stream)) this.#buses.set(stream, new Map());
    const bus = this.#buses.get(stream);
    if (!bus.has(type)) bus.set(type, new Set());
    bus.get(type).add(handler);
    return () => bus.get(type)?.delete(handler);
  }

  /**
   * Call the consumer's `request_<type>` handler with `data`.
   *
   * A request made while disconnected waits for the connection. One sent on
   * a connection that drops rejects with code "disconnected": it may or may
   * not have run, so it is not sent again.
   * @param {string} type dotted names: "echo", "chat.post"
   * @param {*} [data]
   * @param {{timeout?: number}} [options] ms; the client's requestTimeout
   * @returns {Promise<*>} the reply's data; rejects with a RealtimeError
   *     whose code is the server's, "timeout", "disconnected" or "closed"
   */
  request(type, data = null, { timeout = this.#options.requestTimeout } = {}) {
    if (this.#closed) {
      return Promise.reject(new RealtimeError("closed", "The client is closed."));
    }
    return new Promise((resolve, reject) => {
      const job = { type, data, resolve, reject, id: null };
      job.timer = setTimeout(() => {
        this.#queue = this.#queue.filter((queued) => queued !== job);
        this.#pending.delete(job.id);
        reject(new RealtimeError("timeout", `No reply to ${type} within ${timeout} ms.`));
      }, timeout);
      if (this.#state === "open") this.#sendRequest(job);
      else this.#queue.push(job);
    });
  }

  /**
   * Close the connection and stop reconnecting. Waiting requests reject
   * with code "closed"; subscriptions stop.
   */
  close(code = 1000, reason = "") {
    if (this.#closed) return;
    this.#closed = true;
    globalThis.removeEventListener?.("online", this.#onOnline);
    const socket = this.#detach();
    socket?.close(code, reason);
    this.#dropPending("closed");
    this.#rejectQueue();
    for (const subscription of this.#subscriptions.values()) {
      subscription[internal].state = "closed";
    }
    this.#subscriptions.clear();
    this.#setState("closed", { code, reason });
  }

  // -- the connection -------------------------------------------------------

  #open() {
    if (this.#closed) return;
    clearTimeout(this.#timer);
    this.#setState("connecting", { attempt: this.#attempt });
    let socket;
    try {
      socket = this.#socket = this.#options.createSocket(this.#url);
    } catch (error) {
      report(error);
      this.#lost(1006, String(error));
      return;
    }
    socket.onopen = () => this.#opened();
    socket.onmessage = (event) => this.#received(event.data);
    socket.onclose = (event) => this.#lost(event.code, event.reason);
    socket.onerror = () => {}; // a close event follows
    this.#timer = setTimeout(() => {
      socket.close();
      this.#lost(1006, `not open within ${this.#options.connectTimeout} ms`);
    }, this.#options.connectTimeout);
  }

  #opened() {
    clearTimeout(this.#timer);
    this.#lastHeard = Date.now();
    this.#pingSentAt = null;
    this.#setState("open", {});
    for (const subscription of this.#subscriptions.values()) {
      this.#sendSubscribe(subscription);
    }
    const queue = this.#queue;
    this.#queue = [];
    for (const job of queue) this.#sendRequest(job);
    this.#heartbeat();
  }

  /** Forget the socket (its late events are ignored); return it. */
  #detach() {
    const socket = this.#socket;
    clearTimeout(this.#timer);
    this.#socket = null;
    if (socket) socket.onopen = socket.onmessage = socket.onclose = null;
    return socket;
  }

  /** The connection is gone: reconnect after a delay, unless told not to. */
  #lost(code, reason) {
    this.#detach();
    this.#dropPending();
    for (const subscription of this.#subscriptions.values()) {
      Object.assign(subscription[internal], { state: "pending", subscribeId: null });
    }
    if (this.#options.fatalCloseCodes.includes(code)) {
      this.#closed = true;
      this.#rejectQueue();
      this.#setState("closed", { code, reason });
      return;
    }
    this.#attempt += 1;
    const delay = backoffDelay(this.#attempt, this.#options.backoff);
    this.#setState("reconnecting", { attempt: this.#attempt, delay, code, reason });
    this.#timer = setTimeout(() => this.#open(), delay);
  }

  /**
   * Ping after pingInterval of silence; replace a connection that stays
   * silent for pongTimeout after a ping. Timestamps, not a timer per frame,
   * so that busy streams cost nothing and throttled background timers cannot
   * declare a live connection dead.
   */
  #heartbeat() {
    const { pingInterval, pongTimeout } = this.#options;
    if (!pingInterval) return;
    const now = Date.now();
    if (this.#pingSentAt !== null && this.#lastHeard >= this.#pingSentAt) {
      this.#pingSentAt = null;
    }
    if (this.#pingSentAt !== null && now - this.#pingSentAt >= pongTimeout) {
      this.#socket.close();
      this.#lost(1006, `no answer to a ping within ${pongTimeout} ms`);
      return;
    }
    if (this.#pingSentAt === null && now - this.#lastHeard >= pingInterval) {
      this.#pingSentAt = now;
      this.#sendFrame({ kind: "ping" }, () => {}, () => {});
    }
    const due = this.#pingSentAt === null
      ? this.#lastHeard + pingInterval
      : this.#pingSentAt + pongTimeout;
    this.#timer = setTimeout(() => this.#heartbeat(), Math.max(0, due - now));
  }

  #setState(state, details) {
    this.#state = state;
    for (const listener of [...this.#stateListeners]) {
      call(listener, { state, ...details });
    }
  }

  // -- frames out -----------------------------------------------------------

  /** Send a frame with a new id; `answer(frame)` gets its answer. */
  #sendFrame(frame, answer, drop) {
    const id = this.#nextId++;
    this.#pending.set(id, { answer, drop });
    this.#socket.send(JSON.stringify({ ...frame, id }));
    return id;
  }

  #sendSubscribe(subscription) {
    const record = subscription[internal];
    const since = record.position;
    record.state = "pending";
    record.since = since;
    const frame = { kind: "subscribe", stream: subscription.stream };
    if (since) frame.since = { epoch: since.epoch, offset: since.offset };
    record.subscribeId = this.#sendFrame(
      frame,
      (answer) => this.#subscribeAnswered(subscription, answer),
      () => {},
    );
  }

  #sendRequest(job) {
    const settle = (answer) => {
      clearTimeout(job.timer);
      if (answer.kind === "reply") job.resolve(answer.data);
      else job.reject(new RealtimeError(answer.code, answer.message));
    };
    const drop = (code) => {
      clearTimeout(job.timer);
      job.reject(new RealtimeError(code, `The connection closed before ${job.type} was answered.`));
    };
    job.id = this.#sendFrame({ kind: "request", type: job.type, data: job.data }, settle, drop);
  }

  /** Settle what waits for an answer that will not come; `code` for requests. */
  #dropPending(code = "disconnected") {
    const pending = [...this.#pending.values()];
    this.#pending.clear();
    for (const { drop } of pending) drop(code);
  }

  #rejectQueue() {
    const queue = this.#queue;
    this.#queue = [];
    for (const job of queue) {
      clearTimeout(job.timer);
      job.reject(new RealtimeError("closed", `The client closed before ${job.type} was sent.`));
    }
  }

  // -- frames in ------------------------------------------------------------

  #received(text) {
    this.#lastHeard = Date.now();
    this.#attempt = 0; // the server answers: the next drop starts backoff anew
    let frame;
    try {
      frame = JSON.parse(text);
    } catch {
      report(new Error(`Expected a JSON frame from the server, got ${text}`));
      return;
    }
    if (frame.kind === "publication") this.#publication(frame);
    else if (frame.kind === "lost") this.#streamLost(frame);
    else if (this.#pending.has(frame.id)) {
      const { answer } = this.#pending.get(frame.id);
      this.#pending.delete(frame.id);
      answer(frame);
    } else if (frame.kind === "error") {
      report(new RealtimeError(frame.code, `The server refused a frame: ${frame.message}`));
    }
    // Anything else (a late answer, a kind this version does not know) is
    // ignored, so that servers can add frames.
  }

  #subscribeAnswered(subscription, frame) {
    const record = subscription[internal];
    if (record.state === "closed" || record.subscribeId !== frame.id) return;
    record.subscribeId = null;
    if (frame.kind === "error") {
      this.#subscriptions.delete(subscription.stream);
      record.state = "closed";
      const error = new RealtimeError(frame.code, frame.message);
      record.reject(error);
      call(record.options.onError, error);
      return;
    }
    const { epoch, offset, recovered, replayed } = frame;
    const info = { epoch, offset, recovered, replayed, reason: frame.reason ?? null };
    record.state = "active";
    const since = record.since;
    if (!(since && recovered)) record.position = { epoch, offset };
    record.resolve(info);
    call(record.options.onSubscribed, info);
    if (since && !recovered) {
      call(record.options.onLost, { reason: info.reason, epoch, offset });
      call(record.options.onPosition, { epoch, offset });
    }
  }

  #publication(frame) {
    const subscription = this.#subscriptions.get(frame.stream);
    const record = subscription?.[internal];
    // Before "subscribed", or during a resync: the subscribe replays it.
    if (record?.state !== "active") return;
    const { epoch, offset } = record.position;
    if (frame.epoch === epoch && frame.offset <= offset) return; // a duplicate
    if (frame.epoch !== epoch || frame.offset !== offset + 1) {
      // A gap: subscribe again from where the app is; the server replays.
      console.warn(
        `realtime: ${frame.stream}: expected offset ${offset + 1} of epoch ` +
          `${epoch}, got ${frame.offset} of ${frame.epoch}; resubscribing.`,
      );
      this.#sendFrame({ kind: "unsubscribe", stream: frame.stream }, () => {}, () => {});
      this.#sendSubscribe(subscription);
      return;
    }
    record.position = { epoch: frame.epoch, offset: frame.offset };
    this.#dispatch(subscription, frame);
    call(record.options.onPosition, { ...record.position });
  }

  #dispatch(subscription, frame) {
    const { stream, epoch, offset, data } = frame;
    const publication = { stream, epoch, offset, data };
    call(subscription[internal].options.onPublication, data, publication);
    const bus = this.#buses.get(stream);
    if (!bus) return;
    const type = typeof data?.type === "string" ? data.type : null;
    const handlers = [...(type !== null ? bus.get(type) ?? [] : []), ...(bus.get("*") ?? [])];
    for (const handler of handlers) call(handler, data, publication);
  }

  #streamLost(frame) {
    const record = this.#subscriptions.get(frame.stream)?.[internal];
    if (record?.state !== "active") return;
    const { epoch, offset, reason } = frame;
    record.position = { epoch, offset };
    call(record.options.onLost, { reason, epoch, offset });
    call(record.options.onPosition, { epoch, offset });
  }
}

/**
 * Open a connection to the StreamConsumer at `url`.
 * @param {string} url absolute, or relative to the page ("/ws/feed/")
 * @param {Options} [options]
 * @returns {Realtime}
 */
export function connect(url, options = {}) {
  return new Realtime(url, options);
}
