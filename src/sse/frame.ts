import type { StoredEvent } from '../events/event-store.js'

/**
 * A score event as it goes out on SSE, serialized once when it reaches this replica: every
 * stream it goes to shares this one object, so the JSON is made once however many streams wait.
 */
export interface SerializedEvent extends StoredEvent {
  /** The event as JSON (one line: JSON has no raw newline). */
  json: string
  /** Its SSE id: the stream's position once it has this event. */
  position: string
  /** The SSE message, `id: <position>\ndata: <json>\n\n`. */
  frame: string
  /** `<user>\0<item>`: a newer score under the same key replaces an unsent older one (conflation). */
  key: string
  /** UTF-8 length of `frame`, counted against the stream's bound on unsent data. */
  bytes: number
}

/** `stored` as the SSE message whose id is `position` (the stream's position once it has this event). */
export function serializeEvent(stored: StoredEvent, position: string, json = JSON.stringify(stored.event)): SerializedEvent {
  const frame = `id: ${position}\ndata: ${json}\n\n`
  return {
    id: stored.id,
    event: stored.event,
    json,
    position,
    frame,
    key: `${stored.event.user_id}\u0000${stored.event.item_id}`,
    bytes: Buffer.byteLength(frame)
  }
}

/** A comment line: the browser shows nothing, proxies and the client see the stream is alive. */
export const HEARTBEAT_FRAME = ': heartbeat\n\n'

/** How long the browser waits before it reconnects. */
export const retryFrame = (ms: number): string => `retry: ${ms}\n\n`

/**
 * A stream's first message: the reconnect delay and its position. An id with no data sets the
 * browser's lastEventId without dispatching anything, so a client that got no score yet still
 * resumes from here.
 */
export const openingFrame = (retryMs: number, position: string): string => `retry: ${retryMs}\nid: ${position}\n\n`

/** The requested resume point is older than the history: `oldest` is the oldest position still held. */
export const gapFrame = (oldest: string): string => `event: gap\ndata: ${oldest}\n\n`

/** Sent when the caller's token expires, just before the stream ends. */
export const EXPIRED_FRAME = `event: expired\ndata: ${JSON.stringify({ reason: 'token expired' })}\n\n`

/** Sent when an operator revoked the caller's user or agent, just before the stream ends. */
export const REVOKED_FRAME = `event: revoked\ndata: ${JSON.stringify({ reason: 'access revoked' })}\n\n`

/**
 * Response headers of every stream, HTTP/1.1 and HTTP/2 (README: why the hub writes to the socket
 * itself). HTTP/1.1 adds HTTP1_SSE_HEADERS; HTTP/2 forbids `Connection` (Node drops it, warning).
 */
export const SSE_HEADERS = {
  'Content-Type': 'text/event-stream; charset=utf-8',
  'Cache-Control': 'no-cache,no-transform',
  // nginx (and proxies that honour it) must not buffer the stream.
  'X-Accel-Buffering': 'no',
  'x-no-compression': 1
} as const

/**
 * HTTP/1.1 only. Set explicitly, `Connection: keep-alive` also keeps Node from adding its
 * `Keep-Alive: timeout=…` hint (72 s): a client told that holds the socket of a drained stream
 * that long, and with it the replica's shutdown.
 */
export const HTTP1_SSE_HEADERS = { Connection: 'keep-alive' } as const
