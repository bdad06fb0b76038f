import type { Principal } from '../auth/credentials.js'
import type { Topic, TopicRead } from '../events/event-store.js'
import type { Metrics } from '../metrics.js'
import type { Clock } from '../shared/clock.js'
import type { Channel } from './channel.js'
import type { DeliveryBucket } from './delivery.js'
import type { Heartbeats } from './heartbeats.js'
import type { Stream } from './stream.js'

/** `lost`: a catch-up after a reconnect to Redis found events trimmed off: the client resumes and learns of the gap. */
export type CloseReason = 'client' | 'slow_consumer' | 'overflow' | 'expired' | 'drain' | 'revoked' | 'lost'

/** A socket that does not take a stream's last message (expired event, retry hint) within this is cut. */
export const LAST_MESSAGE_MS = 2000

/** The socket side of an SSE response: a node:http ServerResponse, or any Writable. */
export interface StreamSink {
  write(chunk: string): boolean
  end(): unknown
  destroy(): unknown
  readonly destroyed: boolean
  readonly writableEnded: boolean
  /** Bytes written but not yet taken by the socket. */
  readonly writableLength: number
  on(event: 'close', listener: () => void): unknown
  once(event: 'drain', listener: () => void): unknown
}

export type StreamMetrics = Pick<Metrics, 'sseOpen' | 'sseEventsSent' | 'sseConflated' | 'sseClosed'>

export interface StreamSettings {
  heartbeatMs: number
  /** The reconnect delay the browser is told. */
  retryMs: number
  /**
   * What a stream holds for its client (socket + conflating buffer) stays under this: a stalled
   * socket is cut, a stream held back by its delivery bucket ends with a retry hint.
   */
  maxUnsentBytes: number
}

/** What every stream of a hub shares. */
export interface StreamContext {
  /** A topic's newest id, and its events after `afterId`. */
  read(topic: Topic, afterId: string): Promise<TopicRead>
  /** Keeps the stream's slot under the agent's cap alive (each heartbeat). */
  refreshSlot(agentId: string, streamId: string): Promise<void>
  releaseSlot(agentId: string, streamId: string): Promise<void>
  metrics: StreamMetrics
  clock: Clock
  settings: StreamSettings
  /** Beats every attached stream each `heartbeatMs`. */
  heartbeats: Pick<Heartbeats, 'add' | 'delete'>
  /** Called once per stream, when it is over. */
  finished(stream: Stream): void
}

export interface StreamParams {
  id: string
  principal: Pick<Principal, 'sub' | 'agentId' | 'scopes' | 'exp' | 'iat'>
  /** The feed: the caller's user, or every user (`ratings:all`). */
  channel: Pick<Channel, 'add' | 'remove' | 'ready' | 'position' | 'topics'>
  /** Only these items (the `items=` query); null: every item. */
  items: string[] | null
  sink: StreamSink
  /** The agent's delivery bucket, shared with its other streams on this replica. */
  delivery: DeliveryBucket
}

/** How a resume went. */
export interface Start {
  /** The resume point was newer than any event of the feed (nothing can follow it: a 400). */
  future: boolean
}
