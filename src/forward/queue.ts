import { feedRatingValidator, type FeedRating } from '../rating.js'

/** What is stored per queued rating: the rating and when it was read off the feed (Date.now() ms). */
export interface QueuedRating {
  rating: FeedRating
  readAt: number
  /** When tracing is on: the traceparent of its ingest span, so the forward joins that trace on any replica. */
  trace?: string
}

export interface QueueEntry {
  id: string
  /** null when the stored entry cannot be parsed (written by something else): ack it and move on. */
  value: QueuedRating | null
}

/**
 * The durable forward queue: at-least-once delivery to the consumers of all replicas.
 * An entry read by a consumer stays pending until acknowledged; entries a dead consumer left
 * pending are handed to another one after the claim timeout.
 */
export interface QueueStore {
  add(values: QueuedRating[]): Promise<void>
  /** Up to `count` entries for this consumer (reclaimed ones first); waits up to `blockMs` for new ones. */
  read(count: number, blockMs: number): Promise<QueueEntry[]>
  /** Done with an entry: it leaves the queue for good. */
  ack(id: string): Promise<void>
  /** Entries still held by this consumer: reset their idle time so nobody reclaims them. */
  touch(ids: string[]): Promise<void>
  /** Unacknowledged entries, all partitions together. */
  depth(): Promise<number>
  /** Unacknowledged entries per partition, in partition order. */
  depths(): Promise<number[]>
  /** Ends a blocked read (resolves empty or rejects); no read after this. */
  close(): Promise<void>
}

function isQueuedRating(value: unknown): value is QueuedRating {
  if (typeof value !== 'object' || value === null) return false
  const { rating, readAt } = value as Partial<Record<keyof QueuedRating, unknown>>
  return typeof readAt === 'number' && feedRatingValidator.Check(rating)
}

/** A stored entry's value, or null when it is not a queued rating (written by something else). */
export function parseQueued(raw: string): QueuedRating | null {
  try {
    const value: unknown = JSON.parse(raw)
    return isQueuedRating(value) ? value : null
  } catch {
    return null
  }
}
