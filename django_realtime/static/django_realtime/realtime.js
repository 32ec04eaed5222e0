/**
 * realtime.js: the browser client of django_realtime's stream protocol.
 *
 * An ES module with no dependencies and no build step. It keeps one
 * WebSocket to a StreamConsumer open, reconnects with exponential backoff
 * and full jitter, resumes every subscription from the position of the last
 * publication it delivered (so nothing is missed and nothing arrives twice),
 * dispatches publications to handlers by stream and type, correlates
 * requests with their replies, and takes the new session cookie the server
 * hands over after a login over the socket.
 *
 * Where a WebSocket cannot be had (a proxy strips the Upgrade header, a
 * network blocks it), it falls back by itself to server-sent events, then
 * to long-polling, served by the same consumer under `httpUrl` (see
 * docs/topics/streams-http.rst), and tries the WebSocket again later.
 *
 *     import { connect } from "/static/django_realtime/realtime.js";
 *     const rt = connect("/ws/feed/");
 *     const sub = rt.subscribe("feed", { onLost: reloadSnapshot });
 *     sub.on("tick", (data) => render(data.n));
 *     const echoed = await rt.request("echo", { hello: "world" });
 *
 * The API is documented in docs/topics/browser-client.rst, the wire
 * protocol in docs/reference/streams-protocol.rst.
 *
 * @module realtime
 */

/** Stream names the server accepts. */
const STREAM_NAME = /^[A-Za-z0-9_.:@=-]{1,200}$/;

/** Where a Subscription keeps the state only this module changes. */
const internal = Symbol("realtime.internal");

/**
 * Options of {@link connect}; times in ms.
 * @typedef {object} Options
 * @property {{initial?: number, max?: number, factor?: number, jitter?: number}}
 *     [backoff] delays before reconnecting (see {@link backoffDelay});
 *     defaults 500, 30000, 2 and 1 ("full jitter")
 * @property {number} [pingInterval=25000] silence before a ping; 0: never
 * @property {number} [pongTimeout=10000] silence after a ping before the
 *     connection counts as dead and is replaced
 * @property {number} [connectTimeout=10000] for the WebSocket to open
 * @property {number} [requestTimeout=10000] default timeout of request()
 * @property {number[]} [fatalCloseCodes=[1008, 4003]] close codes that stop
 *     reconnection: the server said "do not come back"
 * @property {(url: string) => WebSocket} [createSocket] makes each WebSocket
 * @property {?string} [httpUrl] the URL prefix of the consumer's HTTP
 *     transports ("/realtime/chat/"); without it, only the WebSocket is used
 * @property {Array<"websocket"|"sse"|"poll">} [transports=["websocket",
 *     "sse", "poll"]] tried in this order: the next one when a connection
 *     fails before it opens
 * @property {number} [retryWebSocket=60000] after this long on a fallback
 *     transport, a WebSocket is tried in the background, and the client
 *     moves to it if it opens; 0: never
 * @property {number} [pollTimeout=25] seconds a long-poll may wait
 */

/** @typedef {{epoch: string, offset: number}} Position */
/** @typedef {{stream: string, epoch: string, offset: number, data: *}} Publication */
/**
 * What the server said when a subscription (re)started: the stream's newest
 * position then, whether all after `since` is replayed, and if not why.
 * @typedef {{epoch: string, offset: number, recovered: boolean,
 *     replayed: number, reason: ?string}} SubscribedInfo
 */
/**
 * Messages lost for good ("epoch_changed", "outside_window",
 * "invalid_position"); the subscription goes on after (epoch, offset).
 * @typedef {{reason: string, epoch: string, offset: number}} LostInfo
 */

/**
 * Options of {@link Realtime#subscribe}.
 * @typedef {object} SubscribeOptions
 * @property {?Position} [since] resume after this position (one saved before
 *     a page reload); without it, start with new messages
 * @property {(data: *, publication: Publication) => void} [onPublication]
 * @property {(info: LostInfo) => void} [onLost] reload the stream's state
 * @property {(info: SubscribedInfo) => void} [onSubscribed] each (re)start
 * @property {(position: Position) => void} [onPosition] the position moved,
 *     after the handlers ran: save it here to resume after a reload
 * @property {(error: RealtimeError) => void} [onError] the server refused
 *     the subscription (code "forbidden", say); it is closed
 */

/** An Error with the `code` of an error frame, or "timeout", "disconnected", "closed". */
export class RealtimeError extends Error {
  constructor(code, message) {
    super(message);
    this.name = "RealtimeError";
    this.code = code;
  }
}

/** Return the ws: or wss: URL of `url`, resolved against `base` (the page). */
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
 * Return the delay in ms before reconnection `attempt` (1, 2, ...): drawn
 * from [(1 - jitter) * ceiling, ceiling], where the ceiling grows from
 * `initial` by `factor` per attempt up to `max`.
 */
export function backoffDelay(attempt, { initial, max, factor, jitter }, random = Math.random) {
  const ceiling = Math.min(max, initial * factor ** (attempt - 1));
  return Math.round(ceiling * (1 - jitter * random()));
}

/** The request header that carries a session token to the server. */
const TOKEN_HEADER = "X-Realtime-Session-Token";

/**
 * A session frame: the server gave the connection's session a new key (a
 * login rotates it) and hands its cookie over with a single-use token.
 * @typedef {{kind: "session", token: string, url: string}} SessionFrame
 */

/**
 * Take the session cookie a session frame hands over: POST its token to its
 * URL, whose answer sets the cookie, so that the page's HTTP requests use
 * the same session as the socket. Connections made by {@link connect} do
 * this by themselves; call it for frames of other WebSockets.
 * @param {SessionFrame} frame
 * @param {{timeout?: number}} [options] ms, default 10000
 * @returns {Promise<void>} resolves once the browser holds the cookie;
 *     rejects with a RealtimeError: the server's code ("invalid_token",
 *     "wrong_session", "session_gone"...), "bad_frame", "timeout" or
 *     "network"
 */
export async function takeSessionCookie(frame, { timeout = 10000 } = {}) {
  if (frame?.kind !== "session" || typeof frame.token !== "string" || typeof frame.url !== "string") {
    throw new RealtimeError(
      "bad_frame",
      `Expected a session frame {kind: "session", token, url}, got ${JSON.stringify(frame)}.`,
    );
  }
  const url = new URL(frame.url, globalThis.location?.href);
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(), timeout);
  let response;
  try {
    response = await fetch(url, {
      method: "POST",
      headers: { [TOKEN_HEADER]: frame.token },
      credentials: "same-origin",
      cache: "no-store",
      signal: controller.signal,
    });
  } catch (error) {
    if (controller.signal.aborted) {
      throw new RealtimeError("timeout", `No answer from ${url.pathname} within ${timeout} ms.`);
    }
    throw new RealtimeError("network", `Could not reach ${url.pathname}: ${error.message}`);
  } finally {
    clearTimeout(timer);
  }
  if (response.ok) return;
  let body = null;
  try {
    body = await response.json();
  } catch {
    // Not the view's JSON: a proxy's page, a 404 of an unrouted URL.
  }
  throw new RealtimeError(
    body?.code ?? `http_${response.status}`,
    body?.message ?? `Expected ${url.pathname} to set the session cookie, got HTTP ${response.status}.`,
  );
}

/** Report an error to the page (its "error" event, the console) and go on. */
function report(error) {
  (globalThis.reportError ?? console.error)(error);
}

/** Call an application callback: its exception must not stop the client. */
function call(callback, ...args) {
  try {
    callback?.(...args);
  } catch (error) {
    report(error);
  }
}

/** The HTTP transports, as named in the `transports` option. */
const HTTP_TRANSPORTS = ["sse", "poll"];
/** Errors of a POST after which the transport starts again with a new client. */
const CLIENT_ERRORS = ["client_expired", "client_unknown", "client_mismatch", "csrf_failed"];

/**
 * One connection over the HTTP transports, with the interface of a
 * WebSocket that {@link Realtime} uses (send, close, onopen, onmessage,
 * onclose): frames go out as POSTs, each answered in its response; frames
 * come in over server-sent events ("sse") or long-polls ("poll"). It keeps
 * the client id, the CSRF token and each stream's position, so that any
 * server process can serve any of its requests. The wire format is in
 * docs/reference/streams-protocol.rst.
 */
export class HttpSocket {
  #kind;
  #url;
  #options;
  #client = null;
  #csrf = "";
  #positions = new Map(); // stream -> [epoch, offset]
  #posts = Promise.resolve(); // POSTs go one at a time, in order
  #generation = 0; // bumped when a POST changes the streams
  #queued = 0; // POSTs waiting or in flight
  #changed = false; // the streams changed since the stream was opened
  #opened = false;
  #closed = false;
  #events = null; // the EventSource
  #abort = null; // the long-poll in flight

  /**
   * @param {"sse"|"poll"} kind
   * @param {string} url the absolute URL prefix of the HTTP transports
   * @param {{pollTimeout?: number}} [options]
   */
  constructor(kind, url, options = {}) {
    if (!HTTP_TRANSPORTS.includes(kind)) {
      throw new TypeError(`Expected "sse" or "poll", got ${JSON.stringify(kind)}.`);
    }
    this.#kind = kind;
    this.#url = url;
    this.#options = { pollTimeout: 25, ...options };
    this.onopen = this.onmessage = this.onclose = this.onerror = null;
    queueMicrotask(() => (kind === "sse" ? this.#openEvents() : this.#pollLoop()));
  }

  /** @returns {"sse"|"poll"} */
  get transport() {
    return this.#kind;
  }

  /** Send one frame (JSON text) as a POST; its answer comes as a message. */
  send(text) {
    if (this.#closed) return;
    this.#queued += 1;
    this.#posts = this.#posts.then(async () => {
      await this.#post(text);
      this.#queued -= 1;
      // Once the POSTs queued have gone: one reconnection for many subscribes.
      if (this.#changed && this.#queued === 0 && !this.#closed) {
        this.#changed = false;
        this.#restart();
      }
    });
  }

  /** Close: no event follows. */
  close() {
    if (this.#closed) return;
    this.#closed = true;
    this.#events?.close();
    this.#abort?.abort();
  }

  #query(path, extra = {}) {
    const url = new URL(path, this.#url);
    if (this.#client) url.searchParams.set("client", this.#client);
    url.searchParams.set("positions", JSON.stringify(Object.fromEntries(this.#positions)));
    for (const [key, value] of Object.entries(extra)) url.searchParams.set(key, value);
    return url.href;
  }

  #took(body, generation) {
    if (body.csrf) this.#csrf = body.csrf;
    // A response to a request sent before the streams changed has an old id.
    if (generation === this.#generation) this.#client = body.client;
    if (!this.#opened) {
      this.#opened = true;
      this.onopen?.({});
    }
  }

  #end(code, reason) {
    if (this.#closed) return;
    this.close();
    this.onclose?.({ code, reason });
  }

  /** Hand one frame to the client, moving the stream's position. */
  #deliver(frame) {
    const { kind, stream } = frame;
    if (kind === "publication" || kind === "lost" || kind === "subscribed") {
      const known = this.#positions.get(stream);
      if (!known || known[0] !== frame.epoch || known[1] < frame.offset || kind !== "publication") {
        this.#positions.set(stream, [frame.epoch, frame.offset]);
      }
    } else if (kind === "unsubscribed" || (kind === "error" && frame.id === null && stream)) {
      this.#positions.delete(stream);
    }
    this.onmessage?.({ data: JSON.stringify(frame) });
  }

  async #post(text) {
    if (this.#closed) return;
    const frame = JSON.parse(text);
    let response;
    let body;
    try {
      response = await fetch(this.#url, {
        method: "POST",
        credentials: "same-origin",
        headers: {
          "Content-Type": "application/json",
          "X-CSRFToken": this.#csrf,
          "X-Realtime-Client": this.#client ?? "",
        },
        body: text,
      });
      body = await response.json();
    } catch (error) {
      this.#end(1006, `a POST failed: ${error}`);
      return;
    }
    if (this.#closed) return;
    if (!response.ok) {
      if (response.status >= 500 || CLIENT_ERRORS.includes(body?.error) || body?.close_code) {
        // The consumer's connect() refused: its close code says whether to retry.
        this.#end(body?.close_code ?? 1006, body?.message ?? `HTTP ${response.status}`);
      } else {
        // This frame was refused: that is its answer.
        const code = body?.error ?? `http_${response.status}`;
        this.#deliver({ kind: "error", id: frame.id ?? null, code, message: body?.message ?? "" });
      }
      return;
    }
    const changed = body.frames.some(
      (answer) => answer.kind === "subscribed" || answer.kind === "unsubscribed",
    );
    if (changed) {
      this.#generation += 1;
      this.#changed = true;
    }
    this.#took(body, this.#generation);
    for (const answer of body.frames) this.#deliver(answer);
  }

  /** The streams changed: read them with the new client id from now on. */
  #restart() {
    if (this.#kind === "sse") {
      this.#events?.close();
      this.#openEvents();
    } else {
      this.#abort?.abort(); // the loop polls again at once
    }
  }

  #openEvents() {
    if (this.#closed) return;
    const generation = this.#generation;
    const events = (this.#events = new EventSource(this.#query("events")));
    const mine = () => this.#events === events && !this.#closed;
    events.addEventListener("client", (event) => {
      if (mine()) {
        this.#took(JSON.parse(event.data), generation);
        this.onmessage?.({ data: '{"kind":"heartbeat"}' });
      }
    });
    events.onmessage = (event) => mine() && this.#deliver(JSON.parse(event.data));
    events.addEventListener("close", (event) => {
      if (mine()) this.#end(JSON.parse(event.data).code, "the server ended the stream");
    });
    // EventSource would reconnect from its first URL: the client reconnects
    // from its positions instead.
    events.onerror = () => mine() && this.#end(1006, "the event stream failed");
  }

  async #pollLoop() {
    while (!this.#closed) {
      const abort = (this.#abort = new AbortController());
      const generation = this.#generation;
      const timeout = this.#client ? this.#options.pollTimeout : 0;
      let response;
      let body;
      try {
        response = await fetch(this.#query("poll", { timeout }), {
          credentials: "same-origin",
          signal: abort.signal,
        });
        body = await response.json();
      } catch (error) {
        if (abort.signal.aborted && !this.#closed) continue; // the streams changed
        this.#end(1006, `a poll failed: ${error}`);
        return;
      }
      if (this.#closed) return;
      if (!response.ok) {
        this.#end(body?.close_code ?? 1006, body?.message ?? `HTTP ${response.status}`);
        return;
      }
      this.#took(body, generation);
      this.onmessage?.({ data: '{"kind":"heartbeat"}' });
      for (const frame of body.frames) this.#deliver(frame);
    }
  }
}

/** One stream the client receives; made by {@link Realtime#subscribe}. */
export class Subscription {
  constructor(realtime, stream, options) {
    /** The stream's name. */
    this.stream = stream;
    /**
     * Resolves with the first {@link SubscribedInfo}; rejects with the
     * RealtimeError of a refusal (or "closed").
     * @type {Promise<SubscribedInfo>}
     */
    this.ready = new Promise((resolve, reject) => {
      this[internal] = {
        realtime,
        options,
        position: options.since ? { ...options.since } : null,
        since: null, // what the subscribe in flight resumes from
        state: "pending",
        subscribeId: null,
        resolve,
        reject,
      };
    });
    this.ready.catch(() => {}); // a refusal also goes to onError
  }

  /** @returns {?Position} the last publication delivered to the app */
  get position() {
    const position = this[internal].position;
    return position && { ...position };
  }

  /** @returns {"pending"|"active"|"closed"} */
  get state() {
    return this[internal].state;
  }

  /** Add a handler of this stream: see {@link Realtime#on}. */
  on(type, handler) {
    return this[internal].realtime.on(this.stream, type, handler);
  }

  /** Stop receiving the stream: see {@link Realtime#unsubscribe}. */
  unsubscribe() {
    return this[internal].realtime.unsubscribe(this.stream);
  }
}

/** A connection to a StreamConsumer that reconnects by itself; see {@link connect}. */
export class Realtime {
  #url;
  #options;
  #socket = null;
  #state = "connecting";
  #closed = false;
  #attempt = 0;
  #nextId = 1;
  #pending = new Map(); // id of a frame sent -> {answer(frame), drop(code)}
  #queue = []; // requests made while not connected
  #subscriptions = new Map(); // stream -> Subscription
  #buses = new Map(); // stream -> type -> Set of handlers
  #stateListeners = new Set();
  #sessionListeners = new Set();
  #held = null; // frames that arrived while a session cookie is being taken
  #timer = null; // the connect timeout, reconnection delay or heartbeat
  #lastHeard = 0;
  #pingSentAt = null;
  #transports; // the transports to try, in order
  #transport = 0; // the index of the one in use or being tried
  #fallbackSince = null; // when a fallback transport first opened
  #socketOpened = false;
  #worked = new Set(); // the transports that opened at least once
  #probeTimer = null; // when to try the WebSocket again, on a fallback
  #onOnline = () => this.#state === "reconnecting" && this.#open();

  /** Use {@link connect}. */
  constructor(url, options = {}) {
    this.#url = resolveUrl(url);
    this.#options = {
      pingInterval: 25000,
      pongTimeout: 10000,
      connectTimeout: 10000,
      requestTimeout: 10000,
      fatalCloseCodes: [1008, 4003],
      createSocket: (socketUrl) => new WebSocket(socketUrl),
      httpUrl: null,
      transports: ["websocket", ...HTTP_TRANSPORTS],
      retryWebSocket: 60000,
      pollTimeout: 25,
      ...options,
      backoff: { initial: 500, max: 30000, factor: 2, jitter: 1, ...options.backoff },
    };
    const { httpUrl, transports } = this.#options;
    this.#transports = transports.filter(
      (name) => name === "websocket" || (httpUrl && HTTP_TRANSPORTS.includes(name)),
    );
    if (this.#transports.length === 0) {
      throw new TypeError(
        `Expected transports among "websocket", "sse" and "poll" (the last two ` +
          `with httpUrl), got ${JSON.stringify(transports)}.`,
      );
    }
    globalThis.addEventListener?.("online", this.#onOnline);
    // After the caller's synchronous code: its listeners are in place.
    queueMicrotask(() => this.#open());
  }

  /** @returns {string} the ws: or wss: URL */
  get url() {
    return this.#url;
  }

  /** @returns {"connecting"|"open"|"reconnecting"|"closed"} */
  get state() {
    return this.#state;
  }

  /** @returns {"websocket"|"sse"|"poll"} the transport in use or being tried */
  get transport() {
    return this.#transports[this.#transport];
  }

  /**
   * Call `listener({state, ...})` on each change of state: "connecting"
   * (`attempt`: 0, then the reconnection's number), "open", "reconnecting"
   * (`attempt`, its `delay`, and the `code` and `reason` of the close),
   * "closed" (`code`, `reason`: no more reconnecting). With more than one
   * transport (httpUrl given), "connecting" and "open" also carry the
   * `transport`: "websocket", "sse" or "poll".
   * @returns {() => void} removes the listener
   */
  onState(listener) {
    this.#stateListeners.add(listener);
    return () => this.#stateListeners.delete(listener);
  }

  /**
   * Call `listener({ok, error})` after each session cookie handover: the
   * server gave the session a new key (a login over the socket rotates it),
   * and the client took its cookie (`ok` true) or could not (`error`, a
   * RealtimeError, also reported to the page).
   * @returns {() => void} removes the listener
   */
  onSession(listener) {
    this.#sessionListeners.add(listener);
    return () => this.#sessionListeners.delete(listener);
  }

  /**
   * Receive `stream`, and after each reconnection resume where the app is.
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
   * Stop receiving `stream`; its handlers stay registered.
   * @returns {Promise<void>} resolves once the server confirmed, or at once
   *     when not connected
   */
  unsubscribe(stream) {
    const subscription = this.#subscriptions.get(stream);
    if (!subscription) return Promise.resolve();
    this.#subscriptions.delete(stream);
    this.#stop(subscription, "Unsubscribed before the server answered.");
    if (this.#state !== "open") return Promise.resolve();
    return new Promise((resolve) => {
      this.#sendFrame({ kind: "unsubscribe", stream }, resolve, resolve);
    });
  }

  /**
   * Call `handler(data, publication)` for the publications of `stream` whose
   * `data.type` is `type`, or for all of them with "*". Handlers belong to
   * the stream, not to a subscription: they outlive unsubscribe().
   * @returns {() => void} removes the handler
   */
  on(stream, type, handler) {
    if (!this.#buses.has(stream)) this.#buses.set(stream, new Map());
    const bus = this.#buses.get(stream);
    if (!bus.has(type)) bus.set(type, new Set());
    bus.get(type).add(handler);
    return () => bus.get(type).delete(handler);
  }

  /**
   * Call the consumer's `request_<type>` handler with `data`.
   *
   * A request made while disconnected is sent once connected. One sent on a
   * connection that drops rejects with code "disconnected": it may or may
   * not have run, so it is not sent again.
   * @param {string} type dotted names: "echo", "chat.post"
   * @param {*} [data]
   * @param {{timeout?: number}} [options] ms; the requestTimeout option
   * @returns {Promise<*>} the reply's data; rejects with a RealtimeError
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

  /** Close the connection for good: requests waiting reject with "closed". */
  close(code = 1000, reason = "") {
    if (this.#closed) return;
    this.#closed = true;
    globalThis.removeEventListener?.("online", this.#onOnline);
    this.#detach()?.close(code, reason);
    this.#dropPending("closed");
    this.#rejectQueue();
    for (const subscription of this.#subscriptions.values()) {
      this.#stop(subscription, "The client closed before the server answered.");
    }
    this.#subscriptions.clear();
    this.#setState("closed", { code, reason });
  }

  // -- the connection -------------------------------------------------------

  #open() {
    if (this.#closed) return;
    clearTimeout(this.#timer);
    const transport = this.transport;
    this.#socketOpened = false;
    this.#setState("connecting", { attempt: this.#attempt, ...this.#named() });
    let socket;
    try {
      socket = this.#socket =
        transport === "websocket"
          ? this.#options.createSocket(this.#url)
          : new HttpSocket(transport, new URL(this.#options.httpUrl, globalThis.location?.href).href, {
              pollTimeout: this.#options.pollTimeout,
            });
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
    this.#socketOpened = true;
    this.#worked.add(this.transport);
    if (this.#transport === 0) this.#fallbackSince = null;
    else {
      this.#fallbackSince ??= Date.now();
      this.#scheduleProbe();
    }
    this.#lastHeard = Date.now();
    this.#pingSentAt = null;
    this.#setState("open", this.#named());
    for (const subscription of this.#subscriptions.values()) {
      this.#sendSubscribe(subscription);
    }
    const queue = this.#queue;
    this.#queue = [];
    for (const job of queue) this.#sendRequest(job);
    this.#heartbeat();
  }

  /**
   * On a fallback, try a WebSocket after retryWebSocket ms; if one opens,
   * move to it (once no answer is awaited), resuming every stream.
   */
  #scheduleProbe() {
    clearTimeout(this.#probeTimer);
    if (this.#transports[0] !== "websocket" || !this.#options.retryWebSocket) return;
    this.#probeTimer = setTimeout(() => this.#probe(), this.#options.retryWebSocket);
  }

  #probe() {
    if (this.#closed || this.#state !== "open" || this.#transport === 0) return;
    let probe;
    try {
      probe = this.#options.createSocket(this.#url);
    } catch {
      this.#scheduleProbe();
      return;
    }
    const done = (upgrade) => {
      clearTimeout(timer);
      probe.onopen = probe.onclose = probe.onmessage = null;
      probe.close();
      if (upgrade) this.#upgrade();
      else this.#scheduleProbe();
    };
    const timer = setTimeout(() => done(false), this.#options.connectTimeout);
    probe.onopen = () => done(true);
    probe.onclose = () => done(false);
    probe.onerror = () => {};
  }

  #upgrade() {
    if (this.#closed || this.#state !== "open" || this.#transport === 0) return;
    if (this.#pending.size > 0) {
      this.#probeTimer = setTimeout(() => this.#upgrade(), 100); // answers first
      return;
    }
    this.#detach()?.close();
    for (const subscription of this.#subscriptions.values()) {
      Object.assign(subscription[internal], { state: "pending", subscribeId: null });
    }
    this.#transport = 0;
    this.#fallbackSince = null;
    this.#open();
  }

  /** Forget the socket, so its late events are ignored; return it. */
  #detach() {
    const socket = this.#socket;
    clearTimeout(this.#timer);
    clearTimeout(this.#probeTimer);
    this.#socket = null;
    this.#held = null; // frames of this connection: their requests are dropped
    if (socket) socket.onopen = socket.onmessage = socket.onclose = null;
    return socket;
  }

  /** The connection is gone: reconnect after a delay, unless told not to. */
  #lost(code, reason) {
    const opened = this.#socketOpened;
    this.#socketOpened = false;
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
    if (
      !opened &&
      !this.#worked.has(this.transport) &&
      this.#transport < this.#transports.length - 1
    ) {
      // A transport that never opened failed before it opened: fall back
      // to the next one now. (One that worked before meets a server that
      // is down: it is tried again, after the backoff.)
      this.#transport += 1;
      this.#setState("reconnecting", { attempt: this.#attempt, delay: 0, code, reason });
      this.#timer = setTimeout(() => this.#open(), 0);
      return;
    }
    if (
      this.#fallbackSince !== null &&
      Date.now() - this.#fallbackSince >= this.#options.retryWebSocket
    ) {
      this.#transport = 0; // try the first transport again
      this.#fallbackSince = null;
    }
    this.#attempt += 1;
    const delay = backoffDelay(this.#attempt, this.#options.backoff);
    this.#setState("reconnecting", { attempt: this.#attempt, delay, code, reason });
    this.#timer = setTimeout(() => this.#open(), delay);
  }

  /**
   * Ping after pingInterval of silence; replace a connection still silent
   * pongTimeout after a ping. It compares timestamps rather than restarting
   * a timer per frame, so busy streams cost nothing, and a timer that a
   * background tab delays cannot declare a live connection dead.
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
    const due = this.#pingSentAt ?? this.#lastHeard;
    const wait = (this.#pingSentAt === null ? pingInterval : pongTimeout) + due - now;
    this.#timer = setTimeout(() => this.#heartbeat(), Math.max(0, wait));
  }

  /** The transport, for state events: when there is more than one to name. */
  #named() {
    return this.#transports.length > 1 ? { transport: this.transport } : {};
  }

  #setState(state, details) {
    this.#state = state;
    for (const listener of [...this.#stateListeners]) call(listener, { state, ...details });
  }

  #stop(subscription, message) {
    subscription[internal].state = "closed";
    subscription[internal].reject(new RealtimeError("closed", message)); // if pending
  }

  // -- frames out -----------------------------------------------------------

  /** Send `frame` with a new id; its answer goes to `answer(frame)`. */
  #sendFrame(frame, answer, drop) {
    const id = this.#nextId++;
    this.#pending.set(id, { answer, drop });
    this.#socket.send(JSON.stringify({ ...frame, id }));
    return id;
  }

  #sendSubscribe(subscription) {
    const record = subscription[internal];
    const since = (record.since = record.position);
    record.state = "pending";
    const frame = { kind: "subscribe", stream: subscription.stream };
    if (since) frame.since = { epoch: since.epoch, offset: since.offset };
    const answer = (reply) => this.#subscribeAnswered(subscription, reply);
    record.subscribeId = this.#sendFrame(frame, answer, () => {});
  }

  #sendRequest(job) {
    const answer = (reply) => {
      clearTimeout(job.timer);
      if (reply.kind === "reply") job.resolve(reply.data);
      else job.reject(new RealtimeError(reply.code, reply.message));
    };
    const drop = (code) => {
      clearTimeout(job.timer);
      job.reject(new RealtimeError(code, `The connection closed before ${job.type} was answered.`));
    };
    job.id = this.#sendFrame({ kind: "request", type: job.type, data: job.data }, answer, drop);
  }

  /** Settle what waits for answers that will not come; requests with `code`. */
  #dropPending(code = "disconnected") {
    const pending = [...this.#pending.values()];
    this.#pending.clear();
    for (const { drop } of pending) drop(code);
  }

  #rejectQueue() {
    for (const job of this.#queue.splice(0)) {
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
    if (this.#held) this.#held.push(frame);
    else this.#dispatch(frame);
  }

  #dispatch(frame) {
    if (frame.kind === "publication") this.#publication(frame);
    else if (frame.kind === "lost") this.#streamLost(frame);
    else if (frame.kind === "session") this.#takeSession(frame);
    else if (this.#pending.has(frame.id)) {
      const { answer } = this.#pending.get(frame.id);
      this.#pending.delete(frame.id);
      answer(frame);
    } else if (frame.kind === "error") {
      report(new RealtimeError(frame.code, `The server refused a frame: ${frame.message}`));
    }
    // Other frames (late answers, kinds added later) are ignored.
  }

  /**
   * Take the cookie of the session frame, holding the frames that follow
   * until it is taken: the reply to the request that logged in then
   * arrives once HTTP requests see the login.
   */
  #takeSession(frame) {
    const held = (this.#held = []);
    takeSessionCookie(frame, { timeout: this.#options.requestTimeout })
      .then(
        () => ({ ok: true }),
        (error) => {
          report(error);
          return { ok: false, error };
        },
      )
      .then((event) => {
        for (const listener of [...this.#sessionListeners]) call(listener, event);
        if (this.#held !== held) return; // the connection was lost meanwhile
        this.#held = null;
        while (held.length > 0 && this.#held === null) this.#dispatch(held.shift());
        this.#held?.push(...held); // behind another session frame
      });
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
    // Recovered: the replay follows, from where the app is.
    if (!(record.since && recovered)) record.position = { epoch, offset };
    record.resolve(info);
    call(record.options.onSubscribed, info);
    if (record.since && !recovered) {
      call(record.options.onLost, { reason: info.reason, epoch, offset });
      call(record.options.onPosition, { epoch, offset });
    }
  }

  #publication(frame) {
    const subscription = this.#subscriptions.get(frame.stream);
    const record = subscription?.[internal];
    // Before "subscribed", or while resubscribing: the replay will hold it.
    if (record?.state !== "active") return;
    const { epoch, offset } = record.position;
    if (frame.epoch === epoch && frame.offset <= offset) return; // a duplicate
    // A filtered subscription (a feed) says how many it withheld before this.
    const expected = offset + 1 + (frame.withheld ?? 0);
    if (frame.epoch !== epoch || frame.offset !== expected) {
      // A gap: subscribe again from where the app is, and the server replays.
      console.warn(
        `realtime: ${frame.stream}: expected offset ${expected} of epoch ` +
          `${epoch}, got ${frame.offset} of ${frame.epoch}; resubscribing.`,
      );
      this.#sendFrame({ kind: "unsubscribe", stream: frame.stream }, () => {}, () => {});
      this.#sendSubscribe(subscription);
      return;
    }
    record.position = { epoch, offset: frame.offset };
    const publication = { stream: frame.stream, epoch, offset: frame.offset, data: frame.data };
    call(record.options.onPublication, frame.data, publication);
    const bus = this.#buses.get(frame.stream);
    const type = frame.data?.type;
    const typed = typeof type === "string" && type !== "*" ? bus?.get(type) : null;
    for (const handler of [...(typed ?? []), ...(bus?.get("*") ?? [])]) {
      call(handler, frame.data, publication);
    }
    call(record.options.onPosition, { ...record.position });
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

// -- multiplexing -------------------------------------------------------------

/** Topic names the server accepts. */
const TOPIC_NAME = /^[A-Za-z0-9_.:@=~+/-]{1,200}$/;
/** Errors that refuse a topic's open: the topic is closed with them. */
const OPEN_ERRORS = ["unknown_topic", "too_many_topics", "already_open", "bad_envelope"];
const encoder = new TextEncoder();
const decoder = new TextDecoder();

/**
 * Options of {@link Multiplex#topic}.
 * @typedef {object} TopicOptions
 * @property {(data: string|ArrayBuffer) => void} [onMessage] each frame
 * @property {() => void} [onOpen] each time the server accepted the topic
 * @property {(info: {code: number, reason: string, final: boolean}) => void}
 *     [onClose] the topic closed; `final` false: it is opened again (after
 *     a reconnection, or a close with one of `reopenCodes`)
 * @property {(error: RealtimeError) => void} [onError] the server refused
 *     the open ("unknown_topic", "too_many_topics"...); the topic is closed
 * @property {number[]} [reopenCodes=[1012, 1013, 4008]] server close codes
 *     after which the topic is opened again, after the backoff
 */

/**
 * One topic of a {@link Multiplex}: the frames of one consumer on the
 * shared socket. Made by {@link Multiplex#topic}.
 */
export class Topic {
  constructor(mux, name, options) {
    /** The topic's name. */
    this.name = name;
    this[internal] = { mux, options, state: "opening", queue: [], handlers: new Set(), attempt: 0, timer: null };
    if (options.onMessage) this[internal].handlers.add(options.onMessage);
  }

  /** @returns {"opening"|"open"|"closed"} */
  get state() {
    return this[internal].state;
  }

  /**
   * Send a text (string) or binary (ArrayBuffer, typed array) frame to the
   * topic's consumer; while the topic is opening, it waits for the open.
   */
  send(data) {
    const record = this[internal];
    if (record.state === "closed") throw new RealtimeError("closed", `Topic ${this.name} is closed.`);
    if (record.state === "open") record.mux._sendTo(this, data);
    else record.queue.push(data);
  }

  /** Send `value` as JSON text. */
  sendJson(value) {
    this.send(JSON.stringify(value));
  }

  /**
   * Call `handler(data)` for each frame: a string, or an ArrayBuffer.
   * @returns {() => void} removes the handler
   */
  onMessage(handler) {
    const handlers = this[internal].handlers;
    handlers.add(handler);
    return () => handlers.delete(handler);
  }

  /** Close the topic for good; its consumer gets websocket.disconnect(code). */
  close(code = 1000, reason = "") {
    this[internal].mux._closeTopic(this, code, reason);
  }
}

/**
 * A WebSocket shared by topics; see {@link multiplex}. It reconnects with
 * the backoff of {@link connect}, then opens its topics again.
 */
export class Multiplex {
  #url;
  #options;
  #socket = null;
  #state = "connecting";
  #closed = false;
  #attempt = 0;
  #timer = null;
  #topics = new Map(); // name -> Topic (opening or open)
  #streams = new Set(); // the Realtime clients of streams(): closed with the socket
  #stateListeners = new Set();

  /** Use {@link multiplex}. */
  constructor(url, options = {}) {
    this.#url = resolveUrl(url);
    this.#options = {
      pingInterval: 25000,
      pongTimeout: 10000,
      connectTimeout: 10000,
      fatalCloseCodes: [1008, 4003],
      createSocket: (socketUrl) => new WebSocket(socketUrl),
      httpUrl: null,
      transports: ["websocket", ...HTTP_TRANSPORTS],
      ...options,
      backoff: { initial: 500, max: 30000, factor: 2, jitter: 1, ...options.backoff },
    };
    globalThis.addEventListener?.("online", this.#onOnline);
    queueMicrotask(() => this.#open());
  }

  #lastHeard = 0;
  #pingSentAt = null;

  #onOnline = () => this.#state === "reconnecting" && this.#open();

  /** @returns {string} the ws: or wss: URL */
  get url() {
    return this.#url;
  }

  /** @returns {"connecting"|"open"|"reconnecting"|"closed"} */
  get state() {
    return this.#state;
  }

  /** Call `listener({state, ...})` on each change of state, as {@link Realtime#onState}. */
  onState(listener) {
    this.#stateListeners.add(listener);
    return () => this.#stateListeners.delete(listener);
  }

  /**
   * Open `name` on the socket (and again after each reconnection).
   * @param {string} name
   * @param {TopicOptions} [options]
   * @returns {Topic}
   */
  topic(name, options = {}) {
    if (typeof name !== "string" || !TOPIC_NAME.test(name)) {
      throw new TypeError(
        "Expected a topic name of 1 to 200 ASCII letters, digits and " +
          `"_ . : @ = ~ + / -", got ${JSON.stringify(name)}.`,
      );
    }
    if (this.#topics.has(name)) {
      throw new Error(`Topic ${name} is already open on this socket: close() it first.`);
    }
    if (this.#closed) throw new RealtimeError("closed", "The client is closed.");
    const topic = new Topic(this, name, { reopenCodes: [1012, 1013, 4008], ...options });
    this.#topics.set(name, topic);
    if (this.#state === "open") this.#sendOpen(topic);
    return topic;
  }

  /**
   * Return a {@link Realtime} speaking the stream protocol inside the topic
   * `name` (served by a StreamConsumer): subscriptions and requests as on a
   * socket of their own; after a reconnection the topic opens again and
   * the streams resume. With `httpUrl` (the prefix of the server's
   * multiplex_http_urls()), when the shared WebSocket cannot open the
   * topic falls back as {@link connect} does, to server-sent events then
   * long-polling under `<httpUrl><name>/`, and moves back to the socket
   * once it gets through.
   * @param {string} name
   * @param {Options} [options] those of {@link connect}; "websocket" in
   *     `transports` is this socket; `httpUrl` and `transports` default to
   *     those of {@link multiplex}
   * @returns {Realtime} closed when this socket closes for good
   */
  streams(name, options = {}) {
    if (this.#closed) throw new RealtimeError("closed", "The client is closed.");
    const { httpUrl, transports, retryWebSocket, pollTimeout } = this.#options;
    const base = options.httpUrl === undefined ? httpUrl : options.httpUrl;
    const client = new Realtime(this.#url, {
      ...(retryWebSocket === undefined ? {} : { retryWebSocket }),
      ...(pollTimeout === undefined ? {} : { pollTimeout }),
      transports,
      ...options,
      // The topic's own URLs under the prefix; "./": a name with ":" is no scheme.
      httpUrl: base ? new URL(`./${name}/`, topicBase(base)).href : null,
      createSocket: () => this.socket(name),
    });
    this.#streams.add(client);
    return client;
  }

  /**
   * Return an object with the interface of a WebSocket (send, close,
   * onopen, onmessage, onclose) for the topic `name`, for code written for
   * a WebSocket. It closes (code 1006) when the shared socket is lost;
   * open a new one to reopen the topic.
   */
  socket(name) {
    const virtual = { onopen: null, onmessage: null, onclose: null, onerror: null, readyState: 0 };
    const closed = (code, reason) => {
      if (virtual.readyState === 3) return;
      virtual.readyState = 3;
      virtual.onclose?.({ code, reason, wasClean: code !== 1006 });
    };
    const topic = this.topic(name, {
      reopenCodes: [],
      onOpen: () => {
        virtual.readyState = 1;
        virtual.onopen?.({});
      },
      onMessage: (data) => virtual.onmessage?.({ data }),
      onClose: ({ code, reason, final }) => {
        if (!final) this._closeTopic(topic, 1000, "", true); // no reopening
        closed(code, reason);
      },
      onError: (error) => closed(1006, error.message),
    });
    topic[internal].virtual = true;
    virtual.send = (data) => topic.send(data);
    virtual.close = (code = 1000, reason = "") => {
      if (topic.state !== "closed") topic.close(code, reason);
      closed(code, reason);
    };
    return virtual;
  }

  /** Close the socket for good; every topic closes. */
  close(code = 1000, reason = "") {
    if (this.#closed) return;
    this.#closed = true;
    globalThis.removeEventListener?.("online", this.#onOnline);
    clearTimeout(this.#timer);
    const socket = this.#socket;
    this.#socket = null;
    if (socket) {
      socket.onopen = socket.onmessage = socket.onclose = null;
      socket.close(code, reason);
    }
    this.#endAll(code, reason, true);
    this.#closeStreams(code, reason);
    this.#setState("closed", { code, reason });
  }

  #closeStreams(code, reason) {
    for (const client of this.#streams) client.close(code, reason);
    this.#streams.clear();
  }

  // -- topics -----------------------------------------------------------------

  /** Send one frame of `topic`; called by Topic#send once the topic is open. */
  _sendTo(topic, data) {
    if (typeof data === "string") {
      this.#socket.send(`${topic.name}\n${data}`); // a data frame: no JSON around it
      return;
    }
    const payload = ArrayBuffer.isView(data)
      ? new Uint8Array(data.buffer, data.byteOffset, data.byteLength)
      : new Uint8Array(data);
    const name = encoder.encode(topic.name);
    const frame = new Uint8Array(1 + name.length + payload.length);
    frame[0] = name.length;
    frame.set(name, 1);
    frame.set(payload, 1 + name.length);
    this.#socket.send(frame);
  }

  /** Close `topic` from the client's side; `quiet`: call no onClose. */
  _closeTopic(topic, code, reason, quiet = false) {
    const record = topic[internal];
    if (record.state === "closed") return;
    clearTimeout(record.timer);
    const sent = record.sent;
    record.state = "closed";
    record.queue = [];
    if (this.#topics.get(topic.name) === topic) this.#topics.delete(topic.name);
    if (sent && this.#state === "open" && this.#socket) {
      this.#socket.send(JSON.stringify({ topic: topic.name, kind: "close", code, reason }));
    }
    if (!quiet) call(record.options.onClose, { code, reason, final: true });
  }

  #sendOpen(topic) {
    const record = topic[internal];
    record.state = "opening";
    record.sent = true;
    this.#socket.send(JSON.stringify({ topic: topic.name, kind: "open" }));
  }

  #topicOpened(topic) {
    const record = topic[internal];
    if (record.state !== "opening") return;
    record.state = "open";
    record.attempt = 0;
    call(record.options.onOpen);
    const queue = record.queue;
    record.queue = [];
    for (const data of queue) if (record.state === "open") this._sendTo(topic, data);
  }

  #topicClosed(topic, code, reason) {
    const record = topic[internal];
    record.sent = false;
    if (!record.options.reopenCodes.includes(code)) {
      this._closeTopic(topic, code, reason);
      return;
    }
    record.state = "opening";
    record.attempt += 1;
    call(record.options.onClose, { code, reason, final: false });
    const delay = backoffDelay(record.attempt, this.#options.backoff);
    record.timer = setTimeout(() => {
      if (record.state === "opening" && this.#state === "open" && !record.sent) this.#sendOpen(topic);
    }, delay);
  }

  /** The socket is gone: topics wait for the next one; `final`: for good. */
  #endAll(code, reason, final) {
    for (const topic of [...this.#topics.values()]) {
      const record = topic[internal];
      clearTimeout(record.timer);
      record.sent = false;
      if (final || record.virtual) this._closeTopic(topic, final ? code : 1006, reason);
      else {
        record.state = "opening";
        call(record.options.onClose, { code: 1006, reason, final: false });
      }
    }
  }

  // -- the connection ---------------------------------------------------------

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
    socket.binaryType = "arraybuffer";
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
    this.#attempt = 0;
    this.#lastHeard = Date.now();
    this.#pingSentAt = null;
    this.#setState("open", {});
    for (const topic of this.#topics.values()) {
      if (topic[internal].state === "opening") this.#sendOpen(topic);
    }
    this.#heartbeat();
  }

  /** Ping after pingInterval of silence; a socket silent pongTimeout after it is replaced. */
  #heartbeat() {
    const { pingInterval, pongTimeout } = this.#options;
    if (!pingInterval || !this.#socket) return;
    const now = Date.now();
    if (this.#pingSentAt !== null && this.#lastHeard >= this.#pingSentAt) this.#pingSentAt = null;
    if (this.#pingSentAt !== null && now - this.#pingSentAt >= pongTimeout) {
      this.#socket.close();
      this.#lost(1006, `no answer to a ping within ${pongTimeout} ms`);
      return;
    }
    if (this.#pingSentAt === null && now - this.#lastHeard >= pingInterval) {
      this.#pingSentAt = now;
      this.#socket.send('{"kind":"ping"}');
    }
    const due = this.#pingSentAt ?? this.#lastHeard;
    const wait = (this.#pingSentAt === null ? pingInterval : pongTimeout) + due - now;
    this.#timer = setTimeout(() => this.#heartbeat(), Math.max(0, wait));
  }

  #lost(code, reason) {
    const socket = this.#socket;
    this.#socket = null;
    clearTimeout(this.#timer);
    if (socket) socket.onopen = socket.onmessage = socket.onclose = null;
    const fatal = this.#options.fatalCloseCodes.includes(code);
    this.#endAll(code, reason, fatal);
    if (fatal) {
      this.#closed = true;
      this.#closeStreams(code, reason);
      this.#setState("closed", { code, reason });
      return;
    }
    this.#attempt += 1;
    const delay = backoffDelay(this.#attempt, this.#options.backoff);
    this.#setState("reconnecting", { attempt: this.#attempt, delay, code, reason });
    this.#timer = setTimeout(() => this.#open(), delay);
  }

  #setState(state, details) {
    this.#state = state;
    for (const listener of [...this.#stateListeners]) call(listener, { state, ...details });
  }

  #received(data) {
    this.#lastHeard = Date.now();
    if (typeof data !== "string") {
      const bytes = new Uint8Array(data);
      const size = bytes[0] ?? 0;
      const name = decoder.decode(bytes.subarray(1, 1 + size));
      const topic = this.#topics.get(name);
      if (topic?.[internal].state === "open") {
        for (const handler of [...topic[internal].handlers]) call(handler, data.slice(1 + size));
      }
      return;
    }
    if (data[0] !== "{") {
      // A data frame: the topic, a line feed, the payload.
      const cut = data.indexOf("\n");
      const record = this.#topics.get(data.slice(0, cut))?.[internal];
      if (cut > 0 && record?.state === "open") {
        const text = data.slice(cut + 1);
        for (const handler of [...record.handlers]) call(handler, text);
      }
      return;
    }
    let frame;
    try {
      frame = JSON.parse(data);
    } catch {
      report(new Error(`Expected a JSON control frame from the server, got ${data}`));
      return;
    }
    const topic = this.#topics.get(frame.topic);
    const record = topic?.[internal];
    if (frame.kind === "open") {
      if (topic) this.#topicOpened(topic);
    } else if (frame.kind === "close") {
      if (topic && record.sent) this.#topicClosed(topic, frame.code, frame.reason);
    } else if (frame.kind === "error") {
      if (topic && record.state === "opening" && OPEN_ERRORS.includes(frame.code)) {
        const error = new RealtimeError(frame.code, frame.message);
        call(record.options.onError, error);
        record.sent = false; // the server has no such topic: nothing to close
        this._closeTopic(topic, 1006, frame.message);
      } else if (frame.code !== "not_open") {
        report(new RealtimeError(frame.code, `The server refused a frame: ${frame.message}`));
      }
    }
  }
}

/** The absolute URL of an httpUrl prefix, ending with "/". */
function topicBase(httpUrl) {
  const base = new URL(httpUrl, globalThis.location?.href);
  if (!base.pathname.endsWith("/")) base.pathname += "/";
  return base;
}

/**
 * Open a multiplexed socket to the Multiplexer at `url`; open topics on it
 * with {@link Multiplex#topic} and {@link Multiplex#streams}.
 *
 * Topics travel on the WebSocket. With `httpUrl`, the URL prefix of the
 * server's multiplex_http_urls(), the stream topics of
 * {@link Multiplex#streams} fall back to server-sent events, then to
 * long-polling (in the order of `transports`) when the WebSocket cannot
 * be had; the other topics need the WebSocket and wait for it.
 * @param {string} url absolute, or relative to the page ("/ws/")
 * @param {{backoff?: object, pingInterval?: number, pongTimeout?: number,
 *     connectTimeout?: number, fatalCloseCodes?: number[],
 *     createSocket?: (url: string) => WebSocket, httpUrl?: ?string,
 *     transports?: Array<"websocket"|"sse"|"poll">, retryWebSocket?: number,
 *     pollTimeout?: number}} [options] as those of {@link connect}: the
 *     socket pings after pingInterval (25000 ms) of silence, and is
 *     replaced if still silent pongTimeout (10000 ms) later
 * @returns {Multiplex}
 */
export function multiplex(url, options = {}) {
  return new Multiplex(url, options);
}

// -- Feeds: live collections ------------------------------------------------
//
// A feed (django_realtime.feeds) publishes a model's changes, filtered per
// user by the server. collection() keeps the rows the user may read in sync:
// a snapshot, then enter / update / leave events, resumed like any stream.
// It may follow a view of the feed instead: a named query (options.query and
// options.params), or one row (record()). One view per feed and connection.
// See docs/topics/feeds.rst and docs/topics/browser-client.rst.

/**
 * Options of {@link collection}.
 * @typedef {object} CollectionOptions
 * @property {(a: object, b: object) => number} [compare] the order of
 *     {@link Collection#list}; without it, the order rows arrived in
 * @property {(error: RealtimeError) => void} [onError] the server refused the
 *     feed ("unknown_feed", "unknown_query", "bad_parameters"); the
 *     collection is closed
 * @property {string} [query] follow the binding's query of that name only
 * @property {object} [params] the query's parameters
 * @property {number|string} [pk] follow this one row only (see {@link record})
 */

// Realtime -> the feeds a collection follows on it: one view per feed and
// connection (the server keeps one per subscription to the feed's stream).
const followedFeeds = new WeakMap();

/** The rows of a feed the user may read, kept in sync; see {@link collection}. */
export class Collection {
  #realtime;
  #options;
  #handlers = new Map(); // type -> Set of handlers
  #versionField = null;
  #subscription = null;
  #stopState = null;
  #closed = false;
  #loading = null;

  constructor(realtime, feed, options = {}) {
    const followed = followedFeeds.get(realtime) ?? new Set();
    if (followed.has(feed)) {
      throw new Error(
        `Expected one collection of the feed ${JSON.stringify(feed)} per connection, ` +
          "got a second: close the first, or open another connection for this view.",
      );
    }
    followed.add(feed);
    followedFeeds.set(realtime, followed);
    /** The feed's name ("jobs.job"). */
    this.feed = feed;
    /** The rows, by primary key. @type {Map<*, object>} */
    this.rows = new Map();
    this.#realtime = realtime;
    this.#options = options;
    /** The view followed: `{pk}`, `{query, params}`, or `{}` (every row). */
    this.view =
      options.pk !== undefined
        ? { pk: options.pk }
        : options.query !== undefined
          ? { query: options.query, params: options.params ?? {} }
          : {};
    // Before the streams resume on a new connection: say which rows are held,
    // and the view, so the server sends "leave" for those no longer in it.
    this.#stopState = realtime.onState(({ state }) => {
      if (state !== "open" || !this.#subscription || this.#closed) return;
      const pks = [...this.rows.keys()];
      realtime.request("feed.resume", { feed, pks, ...this.view }).catch(() => {});
    });
    /**
     * Resolves once the first snapshot is in {@link Collection#rows}; rejects
     * with the RealtimeError of a refusal.
     * @type {Promise<Collection>}
     */
    this.ready = this.#load().then(() => this);
    this.ready.catch(() => {}); // a refusal also goes to onError
  }

  /**
   * Call `handler` on "reset" (a snapshot replaced the rows: `(rows)`),
   * "enter" (`(row)`), "update" (`(row, previous)`), "leave"
   * (`(pk, previous)`), and "change" (after each of those: `(collection)`).
   * @returns {() => void} removes the handler
   */
  on(type, handler) {
    if (!this.#handlers.has(type)) this.#handlers.set(type, new Set());
    this.#handlers.get(type).add(handler);
    return () => this.#handlers.get(type).delete(handler);
  }

  /** The row of a {@link record} (null: gone, or not readable), or the first row. */
  get row() {
    if (this.view.pk !== undefined) return this.rows.get(this.view.pk) ?? null;
    return this.list()[0] ?? null;
  }

  /** @returns {object[]} the rows, in the `compare` option's order */
  list() {
    const rows = [...this.rows.values()];
    return this.#options.compare ? rows.sort(this.#options.compare) : rows;
  }

  /** Stop following the feed. */
  close() {
    this.#closed = true;
    this.#release();
    const subscription = this.#subscription;
    this.#subscription = null;
    return subscription ? subscription.unsubscribe() : Promise.resolve();
  }

  /** Stop resuming, and free the feed for another collection on the connection. */
  #release() {
    this.#stopState();
    this.#stopState = () => {};
    followedFeeds.get(this.#realtime)?.delete(this.feed);
  }

  #emit(type, ...args) {
    for (const handler of [...(this.#handlers.get(type) ?? [])]) call(handler, ...args);
  }

  /** Take a snapshot, then follow the feed from its position. */
  async #load() {
    const realtime = this.#realtime;
    let snapshot;
    try {
      snapshot = await realtime.request("feed.snapshot", { feed: this.feed, ...this.view });
    } catch (error) {
      if (error.code === "disconnected" && !this.#closed) return this.#load();
      this.#closed = true;
      this.#release();
      call(this.#options.onError, error);
      throw error;
    }
    if (this.#closed) return;
    this.#versionField = snapshot.version_field ?? null;
    const previous = this.rows;
    this.rows = new Map(snapshot.rows.map((row) => [row.pk, row]));
    this.#emit("reset", this.list());
    if (previous.size > 0) {
      // A reload: tell the page what changed meanwhile.
      for (const [pk, row] of previous) if (!this.rows.has(pk)) this.#emit("leave", pk, row);
    }
    this.#emit("change", this);
    this.#subscription = realtime.subscribe(snapshot.stream, {
      since: { epoch: snapshot.epoch, offset: snapshot.offset },
      onPublication: (data) => this.#apply(data),
      onLost: () => this.#reload(),
      onError: (error) => call(this.#options.onError, error),
    });
    await this.#subscription.ready;
  }

  /** The feed's history is lost: take a new snapshot. */
  #reload() {
    if (this.#closed || this.#loading) return;
    const subscription = this.#subscription;
    this.#subscription = null;
    this.#loading = (subscription ? subscription.unsubscribe() : Promise.resolve())
      .then(() => this.#load())
      .catch(report)
      .finally(() => {
        this.#loading = null;
      });
  }

  #newer(row, held) {
    const field = this.#versionField;
    return !held || !field || !(row[field] <= held[field]);
  }

  #apply(event) {
    if (event?.type === "recheck") {
      for (const pk of event.leave ?? []) this.#leave(pk);
      for (const row of event.enter ?? []) this.#set(row);
    } else if (event?.type === "leave") {
      this.#leave(event.pk);
    } else if (event?.type === "enter" || event?.type === "update") {
      this.#set(event.row);
    } else {
      return;
    }
    this.#emit("change", this);
  }

  #set(row) {
    const held = this.rows.get(row.pk);
    // Already in the snapshot, or an older change arriving late: skip it.
    if (!this.#newer(row, held)) return;
    this.rows.set(row.pk, row);
    if (held) this.#emit("update", row, held);
    else this.#emit("enter", row);
  }

  #leave(pk) {
    const held = this.rows.get(pk);
    if (!held) return;
    this.rows.delete(pk);
    this.#emit("leave", pk, held);
  }
}

/**
 * Keep the rows of the feed `feed` the user may read in sync, over `realtime`:
 * a snapshot, then every change, resumed after reconnections like any stream.
 * @param {Realtime} realtime a connection to a FeedConsumer
 * @param {string} feed the feed's name ("jobs.job")
 * @param {CollectionOptions} [options]
 * @returns {Collection}
 */
export function collection(realtime, feed, options = {}) {
  return new Collection(realtime, feed, options);
}

/**
 * Keep one row of the feed `feed` in sync: {@link Collection#row} is the row,
 * or null while the user may not read it or once it is deleted ("leave").
 * @param {Realtime} realtime a connection to a FeedConsumer
 * @param {string} feed the feed's name ("jobs.job")
 * @param {number|string} pk the row's primary key
 * @param {CollectionOptions} [options]
 * @returns {Collection}
 */
export function record(realtime, feed, pk, options = {}) {
  return new Collection(realtime, feed, { ...options, pk });
}

// -- Presence: who is here ------------------------------------------------------
//
// A PresenceConsumer (django_realtime.presence) tracks who is subscribed to
// "presence:<stream>": the members, keyed by user, with their public info and
// their number of connections. presence() keeps them in sync: a snapshot
// (the request "presence.members"), then the diffs published on the presence
// stream, resumed like any stream. Every change carries a version: a change
// at or below the snapshot's version, or below the member's, is skipped, so
// diffs may arrive in any order. See docs/topics/presence.rst.

/**
 * Options of {@link presence}.
 * @typedef {object} PresenceOptions
 * @property {(error: RealtimeError) => void} [onError] the server refused the
 *     presence ("forbidden", say); it is closed
 */

/** The members of a stream, kept in sync; see {@link presence}. */
export class Presence {
  #realtime;
  #options;
  #handlers = new Map(); // type -> Set of handlers
  #subscription = null;
  #version = null; // the snapshot's; null while one is awaited
  #versions = new Map(); // key -> version of its last change applied
  #pending = []; // diffs that arrived before the snapshot
  #closed = false;
  #loading = false;

  constructor(realtime, stream, options = {}) {
    /** The stream whose members these are. */
    this.stream = stream;
    /** The members, by key: `{info, connections, v}`. @type {Map<string, object>} */
    this.members = new Map();
    this.#realtime = realtime;
    this.#options = options;
    let ready;
    /**
     * Resolves once the first snapshot is in {@link Presence#members};
     * rejects with the RealtimeError of a refusal.
     * @type {Promise<Presence>}
     */
    this.ready = new Promise((resolve, reject) => {
      ready = { resolve, reject };
    });
    this.ready.catch(() => {}); // a refusal also goes to onError
    this.#subscription = realtime.subscribe(`presence:${stream}`, {
      onPublication: (data) => this.#diff(data),
      onSubscribed: (info) => {
        // A resume that replayed what was missed needs no snapshot.
        if (this.#version === null || !info.recovered) this.#load(ready);
      },
      onLost: () => this.#load(ready),
      onError: (error) => {
        this.#closed = true;
        ready.reject(error);
        call(this.#options.onError, error);
      },
    });
  }

  /**
   * Call `handler` on "sync" (a snapshot replaced the members: `(members)`),
   * "join" (`(key, member)`), "update" (its info or connections changed:
   * `(key, member, previous)`), "leave" (`(key, previous)`), and "change"
   * (after each of those: `(presence)`).
   * @returns {() => void} removes the handler
   */
  on(type, handler) {
    if (!this.#handlers.has(type)) this.#handlers.set(type, new Set());
    this.#handlers.get(type).add(handler);
    return () => this.#handlers.get(type).delete(handler);
  }

  /** @returns {object[]} the members' `info`, each member once */
  list() {
    return [...this.members.values()].map((member) => member.info);
  }

  /** Stop being a member (once the server's grace period is over) and following. */
  close() {
    this.#closed = true;
    const subscription = this.#subscription;
    this.#subscription = null;
    return subscription ? subscription.unsubscribe() : Promise.resolve();
  }

  #emit(type, ...args) {
    for (const handler of [...(this.#handlers.get(type) ?? [])]) call(handler, ...args);
  }

  /** Take a snapshot; diffs wait meanwhile, then apply if newer. */
  async #load(ready) {
    if (this.#closed || this.#loading) return;
    this.#loading = true;
    this.#version = null;
    let snapshot;
    try {
      snapshot = await this.#realtime.request("presence.members", { stream: this.stream });
    } catch (error) {
      this.#loading = false;
      // The next (re)subscribe asks again.
      if (error.code !== "disconnected" && error.code !== "closed") report(error);
      return;
    }
    this.#loading = false;
    if (this.#closed) return;
    const previous = this.members;
    this.members = new Map(Object.entries(snapshot.members));
    this.#version = snapshot.version;
    this.#versions = new Map([...this.members].map(([key, member]) => [key, member.v]));
    this.#emit("sync", this.members);
    for (const [key, member] of previous) {
      if (!this.members.has(key)) this.#emit("leave", key, member);
    }
    for (const [key, member] of this.members) {
      if (!previous.has(key)) this.#emit("join", key, member);
    }
    const pending = this.#pending;
    this.#pending = [];
    for (const data of pending) this.#apply(data);
    this.#emit("change", this);
    ready.resolve(this);
  }

  #diff(data) {
    if (data?.type !== "presence.diff") return;
    if (this.#version === null) this.#pending.push(data);
    else {
      this.#apply(data);
      this.#emit("change", this);
    }
  }

  #newer(key, version) {
    return version > Math.max(this.#version, this.#versions.get(key) ?? 0);
  }

  #apply(data) {
    for (const [key, member] of Object.entries(data.joins ?? {})) {
      if (!this.#newer(key, member.v)) continue;
      this.#versions.set(key, member.v);
      const held = this.members.get(key);
      this.members.set(key, member);
      if (held) this.#emit("update", key, member, held);
      else this.#emit("join", key, member);
    }
    for (const [key, version] of Object.entries(data.leaves ?? {})) {
      if (!this.#newer(key, version)) continue;
      this.#versions.set(key, version);
      const held = this.members.get(key);
      if (!held) continue;
      this.members.delete(key);
      this.#emit("leave", key, held);
    }
  }
}

/**
 * Be a member of `stream` and keep its members in sync, over `realtime`: a
 * snapshot, then joins, updates and leaves, resumed after reconnections.
 * @param {Realtime} realtime a connection to a PresenceConsumer
 * @param {string} stream the stream whose presence to join ("chat.lobby")
 * @param {PresenceOptions} [options]
 * @returns {Presence}
 */
export function presence(realtime, stream, options = {}) {
  return new Presence(realtime, stream, options);
}
