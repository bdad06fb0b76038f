import type { ScoreEvent } from '../rating.js'

/** A published score event with its id (ordered across all replicas). */
export interface StoredEvent {
  id: string
  event: ScoreEvent
}

export interface Replay {
  /** Set when the requested id is older than the history: the oldest id still held. */
  gap?: string
  events: StoredEvent[]
}

export interface EventLimits {
  /** Events kept per user for resuming. */
  historyMax: number
  historyTtlS: number
  /** Seconds a user's latest score per item is kept. */
  scoresTtlS: number
  /** Length of the global fan-out stream (what `ratings:all` can replay). */
  streamMax: number
}

/**
 * Per-user history, latest score per item, and the fan-out that hands every published event to
 * every replica's `onEvent`, in id order.
 */
export interface EventStore {
  publish(event: ScoreEvent): Promise<string>
  replay(userId: string | null, afterId: string): Promise<Replay>
  latest(userId: string, items: string[]): Promise<ScoreEvent[]>
  /** Starts the fan-out reader; `onEvent` gets every event published by any replica from now on. */
  start(onEvent: (event: StoredEvent) => void): Promise<void>
  /** Sends a canary through the fan-out path: null once it came back, else the reason. */
  canary(timeoutMs: number): Promise<string | null>
  close(): Promise<void>
}
