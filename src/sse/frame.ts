import type { StoredEvent } from '../events/event-store.js'

/**
 * A score event as it goes out on SSE, serialized once when it reaches this replica: every
 * stream it goes to shares this one object, so the JSON is made once however many streams wait.
 */
export interface SerializedEvent extends StoredEvent {
  /** The SSE message, `id: <id>\ndata: <json>\n\n` (JSON has no raw newline: the data is one line). */
  frame: string
  /** `<user>\0<item>`: a newer score under the same key replaces an unsent older one (conflation). */
  key: string
  /** UTF-8 length of `frame`, counted against the stream's bound on unsent data. */
  bytes: number
}

export function serializeEvent(stored: StoredEvent): SerializedEvent {
  const frame = `id: ${stored.id}\ndata: ${JSON.stringify(stored.event)}\n\n`
  return {
    id: stored.id,
    event: stored.event,
    frame,
    key: `${stored.event.user_id}\u0000${stored.event.item_id}`,
    bytes: Buffer.byteLength(frame)
  }
}

/** A comment line: the browser shows nothing, proxies and the client see the stream is alive. */
export const HEARTBEAT_FRAME = ': heartbeat\n\n'

/** How long the browser waits before it reconnects. */
export const retryFrame = (ms: number): string => `retry: ${ms}\n\n`

/** The requested resume point is older than the history: `oldestId` is the oldest id still held. */
export const gapFrame = (oldestId: string): string => `event: gap\ndata: ${oldestId}\n\n`

/** Sent when the caller's token expires, just before the stream ends. */
export const EXPIRED_FRAME = `event: expired\ndata: ${JSON.stringify({ reason: 'token expired' })}\n\n`

/** Sent when an operator revoked the caller's user or agent, just before the stream ends. */
export const REVOKED_FRAME = `event: revoked\ndata: ${JSON.stringify({ reason: 'access revoked' })}\n\n`

/** Response headers of every stream (README: why the hub writes to the socket itself). */
export const SSE_HEADERS = {
  'Content-Type': 'text/event-stream; charset=utf-8',
  Connection: 'keep-alive',
  'Cache-Control': 'no-cache,no-transform',
  'x-no-compression': 1
} as const
