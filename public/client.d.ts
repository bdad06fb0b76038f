/** Types of the moltbridge browser client (client.js, served as GET /client.js). */

/** A personalized score event, as the stream and GET /v1/scores carry it. */
export interface ScoreEvent {
  user_id: string
  item_id: string
  rating: number
  timestamp: number
}

/**
 * `connecting` until the first stream opens, `live` while one is open (here or in the tab that
 * holds the shared stream), `retrying` between a lost or refused stream and the next, `closed`
 * after close().
 */
export type Status = 'connecting' | 'live' | 'retrying' | 'closed'

export interface SubscribeOptions {
  /** The gateway's origin (a path prefix is kept); default: the origin that served client.js. */
  url?: string
  /**
   * A valid JWT, asked before every connection (a fresh ticket each time) and every /v1/scores
   * call; cache it yourself if minting is costly. Omit it to use the stream cookie session.
   */
  getToken?: () => string | Promise<string>
  /** Only these items (the stream and the paint from GET /v1/scores); omitted or empty: every item. */
  items?: readonly string[]
  /**
   * Each score event once per id, in id order, with its id (the stream position; ids of one user
   * start with the publish time in ms). Painted scores (from /v1/scores) come without an id.
   */
  onScore(event: ScoreEvent, id?: string): void
  /** Scores were missed; the scores of `items` have already been refetched and passed to onScore. */
  onGap?(): void
  /**
   * Called when the status changes, or while retrying when the reason changes: `httpStatus` is
   * the status of the refused request (401, 429, 503…), undefined for a network error or a stream
   * that ended. In cookie mode, `retrying` with 401 means the session cookie has expired: renew it
   * (POST /v1/sse-session) and the next attempt uses it.
   */
  onStatus?(status: Status, httpStatus?: number): void
  /** Share one stream among this origin's tabs of the same owner (Web Locks + BroadcastChannel); default true. */
  shared?: boolean
  /** A stream silent this long (no heartbeat either) is taken as dead and reopened; default 45000 ms. */
  idleMs?: number
}

export interface Subscription {
  /** Stops everything: the stream, its timers, the tab sharing. Idempotent. */
  close(): void
}

export function subscribe(options: SubscribeOptions): Subscription

export interface ReconnectOptions {
  /** The server's `retry:` (ms); default 1000, at least 100 is used. */
  retryMs?: number
  /** What `Retry-After` asked for (ms); the delay never goes below it. Default 0. */
  retryAfterMs?: number
  /** Ceiling of the jittered part (ms); default 30000. */
  maxMs?: number
  /** A number in [0, 1); default Math.random. */
  random?: () => number
}

/** The reconnect policy: retryAfterMs + random() × min(max(maxMs, base), base × 2^attempt), base = max(retryMs, 100). */
export function reconnectDelay(attempt: number, options?: ReconnectOptions): number

/** A `Retry-After` value (seconds or an HTTP date) in ms from `now`; 0 when absent, invalid or past. */
export function retryAfterMs(value: string | null | undefined, now?: number): number

export interface SseMessage {
  /** The message's own `id:` field, if it had one. */
  id?: string
  /** The `event:` field; `message` without one. */
  event: string
  /** The `data:` lines joined by `\n`; undefined for an id-only message (no event to dispatch). */
  data?: string
}

/** An event-stream parser (WHATWG rules): feed it decoded text in chunks of any size. */
export function sseParser(onMessage: (message: SseMessage) => void, onRetry?: (ms: number) => void): (text: string) => void
