// Type declarations of realtime.js, the browser client of django_realtime's
// stream protocol. The API is documented in docs/topics/browser-client.rst.

/** A stream position: the epoch of its history and an offset in it. */
export interface Position {
  epoch: string;
  offset: number;
}

/** One message of a stream, as delivered to the page. */
export interface Publication<T = unknown> {
  stream: string;
  epoch: string;
  offset: number;
  data: T;
}

/** What the server said when a subscription (re)started. */
export interface SubscribedInfo {
  epoch: string;
  offset: number;
  recovered: boolean;
  replayed: number;
  reason: string | null;
}

/** Messages lost for good; the subscription goes on after (epoch, offset). */
export interface LostInfo {
  reason: "epoch_changed" | "outside_window" | "invalid_position" | string;
  epoch: string;
  offset: number;
}

/**
 * The server gave the connection's session a new key (a login rotates it)
 * and hands its cookie over with a single-use token.
 */
export interface SessionFrame {
  kind: "session";
  token: string;
  url: string;
}

/** After a session cookie handover: taken, or refused with `error`. */
export type SessionEvent = { ok: true } | { ok: false; error: RealtimeError };

/** A transport, as named in the `transports` option and in state events. */
export type Transport = "websocket" | "sse" | "poll";

export type StateEvent =
  | { state: "connecting"; attempt: number; transport?: Transport }
  | { state: "open"; transport?: Transport }
  | { state: "reconnecting"; attempt: number; delay: number; code: number; reason: string }
  | { state: "closed"; code: number; reason: string };

export interface BackoffOptions {
  initial?: number;
  max?: number;
  factor?: number;
  jitter?: number;
}

/** Options of connect(); times in ms. */
export interface Options {
  backoff?: BackoffOptions;
  pingInterval?: number;
  pongTimeout?: number;
  connectTimeout?: number;
  requestTimeout?: number;
  fatalCloseCodes?: number[];
  createSocket?: (url: string) => WebSocket;
  /** The URL prefix of the consumer's HTTP transports; without it, WebSocket only. */
  httpUrl?: string | null;
  /** Tried in this order, the next when one fails before it opens. */
  transports?: Transport[];
  /** After this long on a fallback, try a WebSocket, and move to it if it opens. */
  retryWebSocket?: number;
  /** Seconds a long-poll may wait (at most the server's poll_timeout). */
  pollTimeout?: number;
}

export interface SubscribeOptions<T = unknown> {
  since?: Position | null;
  onPublication?: (data: T, publication: Publication<T>) => void;
  onLost?: (info: LostInfo) => void;
  onSubscribed?: (info: SubscribedInfo) => void;
  onPosition?: (position: Position) => void;
  onError?: (error: RealtimeError) => void;
}

/** An Error with the `code` of an error frame, or "timeout", "disconnected", "closed". */
export class RealtimeError extends Error {
  constructor(code: string, message: string);
  readonly name: "RealtimeError";
  code: string;
}

/** One stream the client receives; made by Realtime.subscribe(). */
export class Subscription<T = unknown> {
  readonly stream: string;
  readonly ready: Promise<SubscribedInfo>;
  readonly position: Position | null;
  readonly state: "pending" | "active" | "closed";
  on(type: string, handler: (data: T, publication: Publication<T>) => void): () => void;
  unsubscribe(): Promise<void>;
}

/** A connection to a StreamConsumer that reconnects by itself. */
export class Realtime {
  constructor(url: string, options?: Options);
  readonly url: string;
  readonly state: "connecting" | "open" | "reconnecting" | "closed";
  /** The transport in use, or being tried. */
  readonly transport: Transport;
  onState(listener: (event: StateEvent) => void): () => void;
  onSession(listener: (event: SessionEvent) => void): () => void;
  subscribe<T = unknown>(stream: string, options?: SubscribeOptions<T>): Subscription<T>;
  unsubscribe(stream: string): Promise<void>;
  on<T = unknown>(
    stream: string,
    type: string,
    handler: (data: T, publication: Publication<T>) => void,
  ): () => void;
  request<R = unknown>(type: string, data?: unknown, options?: { timeout?: number }): Promise<R>;
  close(code?: number, reason?: string): void;
}

/**
 * One connection over the HTTP transports, with the part of the WebSocket
 * interface Realtime uses: frames out as POSTs, in over SSE or long-polls.
 */
export class HttpSocket {
  constructor(kind: "sse" | "poll", url: string, options?: { pollTimeout?: number });
  readonly transport: "sse" | "poll";
  onopen: ((event: object) => void) | null;
  onmessage: ((event: { data: string }) => void) | null;
  onclose: ((event: { code: number; reason: string }) => void) | null;
  onerror: ((event: object) => void) | null;
  send(text: string): void;
  close(): void;
}

/** Open a connection to the StreamConsumer at `url`. */
export function connect(url: string, options?: Options): Realtime;

/** Return the ws: or wss: URL of `url`, resolved against `base` (the page). */
export function resolveUrl(url: string, base?: string): string;

/** Return the delay in ms before reconnection `attempt` (1, 2, ...). */
export function backoffDelay(
  attempt: number,
  options: Required<BackoffOptions>,
  random?: () => number,
): number;

/**
 * Take the session cookie a session frame hands over; connections made by
 * connect() do this by themselves.
 */
export function takeSessionCookie(
  frame: SessionFrame,
  options?: { timeout?: number },
): Promise<void>;

/** How a topic closed; `final` false: it is opened again. */
export interface TopicCloseEvent {
  code: number;
  reason: string;
  final: boolean;
}

/** Options of Multiplex.topic(). */
export interface TopicOptions {
  onMessage?: (data: string | ArrayBuffer) => void;
  onOpen?: () => void;
  onClose?: (event: TopicCloseEvent) => void;
  onError?: (error: RealtimeError) => void;
  /** Server close codes after which the topic opens again; default [1012, 1013, 4008]. */
  reopenCodes?: number[];
}

/** Options of multiplex(). */
export interface MultiplexOptions {
  backoff?: BackoffOptions;
  pingInterval?: number;
  pongTimeout?: number;
  connectTimeout?: number;
  fatalCloseCodes?: number[];
  createSocket?: (url: string) => WebSocket;
  /** The URL prefix of multiplex_http_urls(): stream topics fall back under it. */
  httpUrl?: string | null;
  /** The stream topics' transports, tried in order ("websocket": this socket). */
  transports?: Transport[];
  retryWebSocket?: number;
  pollTimeout?: number;
}

/** One topic of a multiplexed socket: the frames of one consumer. */
export class Topic {
  readonly name: string;
  readonly state: "opening" | "open" | "closed";
  send(data: string | ArrayBuffer | ArrayBufferView): void;
  sendJson(value: unknown): void;
  onMessage(handler: (data: string | ArrayBuffer) => void): () => void;
  close(code?: number, reason?: string): void;
}

/** The WebSocket-like object of Multiplex.socket(). */
export interface TopicSocket {
  readyState: number;
  onopen: ((event: object) => void) | null;
  onmessage: ((event: { data: string | ArrayBuffer }) => void) | null;
  onclose: ((event: { code: number; reason: string; wasClean: boolean }) => void) | null;
  onerror: ((event: object) => void) | null;
  send(data: string | ArrayBuffer | ArrayBufferView): void;
  close(code?: number, reason?: string): void;
}

/** A WebSocket shared by topics, each served by its own consumer. */
export class Multiplex {
  readonly url: string;
  readonly state: "connecting" | "open" | "reconnecting" | "closed";
  onState(listener: (event: StateEvent) => void): () => void;
  topic(name: string, options?: TopicOptions): Topic;
  /**
   * The stream protocol inside a topic served by a StreamConsumer; with
   * httpUrl, over `<httpUrl><name>/` when the WebSocket cannot be had.
   */
  streams(name: string, options?: Omit<Options, "createSocket">): Realtime;
  socket(name: string): TopicSocket;
  close(code?: number, reason?: string): void;
}

/** Open a multiplexed socket to the Multiplexer at `url`. */
export function multiplex(url: string, options?: MultiplexOptions): Multiplex;

// -- Feeds: live collections ------------------------------------------------

/** A row of a feed, as its binding serialises it; `pk` is always there. */
export interface FeedRow {
  pk: number | string;
  [field: string]: unknown;
}

export interface CollectionOptions<R extends FeedRow = FeedRow> {
  /** The order of list(); without it, the order rows arrived in. */
  compare?: (a: R, b: R) => number;
  /**
   * The server refused the feed ("unknown_feed", "unknown_query",
   * "bad_parameters"); the collection is closed.
   */
  onError?: (error: RealtimeError) => void;
  /** Follow the binding's query of that name only. */
  query?: string;
  /** The query's parameters (integers, strings, booleans). */
  params?: Record<string, number | string | boolean>;
  /** Follow this one row only (see record()). */
  pk?: R["pk"];
}

/** What a collection follows of its feed: one row, one query, or every row. */
export type FeedView<R extends FeedRow = FeedRow> =
  | { pk: R["pk"] }
  | { query: string; params: Record<string, number | string | boolean> }
  | Record<string, never>;

/** The rows of a feed the user may read, kept in sync. */
export class Collection<R extends FeedRow = FeedRow> {
  readonly feed: string;
  readonly view: FeedView<R>;
  readonly rows: Map<R["pk"], R>;
  /** A record()'s row (null: gone, or not readable), or the first row. */
  readonly row: R | null;
  /** Resolves once the first snapshot is in `rows`. */
  readonly ready: Promise<Collection<R>>;
  on(type: "reset", handler: (rows: R[]) => void): () => void;
  on(type: "enter", handler: (row: R) => void): () => void;
  on(type: "update", handler: (row: R, previous: R) => void): () => void;
  on(type: "leave", handler: (pk: R["pk"], previous: R) => void): () => void;
  on(type: "change", handler: (collection: Collection<R>) => void): () => void;
  list(): R[];
  close(): Promise<void>;
}

/**
 * Keep the rows of the feed `feed` the user may read in sync, over `realtime`.
 * Throws if another collection follows that feed on `realtime`: one view
 * (the whole feed, a query, or a record) per feed and connection.
 */
export function collection<R extends FeedRow = FeedRow>(
  realtime: Realtime,
  feed: string,
  options?: CollectionOptions<R>,
): Collection<R>;

/** Keep the row `pk` of the feed `feed` in sync: see Collection.row. */
export function record<R extends FeedRow = FeedRow>(
  realtime: Realtime,
  feed: string,
  pk: R["pk"],
  options?: CollectionOptions<R>,
): Collection<R>;

// -- Presence: who is here ------------------------------------------------------

/** A member of a stream: its public info and its number of connections. */
export interface PresenceMember<I = Record<string, unknown>> {
  info: I;
  connections: number;
  /** The version of its last change. */
  v: number;
}

export interface PresenceOptions {
  /** The server refused the presence ("forbidden", say); it is closed. */
  onError?: (error: RealtimeError) => void;
}

/** The members of a stream, kept in sync. */
export class Presence<I = Record<string, unknown>> {
  readonly stream: string;
  readonly members: Map<string, PresenceMember<I>>;
  /** Resolves once the first snapshot is in `members`. */
  readonly ready: Promise<Presence<I>>;
  on(type: "sync", handler: (members: Map<string, PresenceMember<I>>) => void): () => void;
  on(type: "join", handler: (key: string, member: PresenceMember<I>) => void): () => void;
  on(
    type: "update",
    handler: (key: string, member: PresenceMember<I>, previous: PresenceMember<I>) => void,
  ): () => void;
  on(type: "leave", handler: (key: string, previous: PresenceMember<I>) => void): () => void;
  on(type: "change", handler: (presence: Presence<I>) => void): () => void;
  /** The members' info, each member once. */
  list(): I[];
  close(): Promise<void>;
}

/** Be a member of `stream` and keep its members in sync, over `realtime`. */
export function presence<I = Record<string, unknown>>(
  realtime: Realtime,
  stream: string,
  options?: PresenceOptions,
): Presence<I>;
