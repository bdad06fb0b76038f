import type { ScoreEvent } from '../rating.js'
import { parseEventId, START_ID } from './event-id.js'

/** A published score event with its id in one history (a user's, or a `ratings:all` partition's). */
export interface StoredEvent {
  id: string
  event: ScoreEvent
  /** Live events only, when tracing is on: the publish span's traceparent, so delivery joins the trace. */
  trace?: string
}

/**
 * A key set in the same atomic step as a publish, in the user's hash slot: the forwarder's dedup
 * mark, so a replica dying between "marked forwarded" and "published" cannot leave one without
 * the other (Redis stores only; a memory store is lost with its process anyway).
 */
export interface PublishMark {
  key: string
  value: string
  ttlS: number
}

/**
 * A history with a live channel: a user's events, or one partition of every user's events
 * (`ratings:all`). Ids are ordered within a topic only. The store names its topics.
 */
export type Topic = string

/** What a history holds after a given id. */
export interface TopicRead {
  /** The newest id of the topic (START_ID when it holds nothing): its position now. */
  last: string
  /** The events after the id asked for, in order (none when no id was asked for). */
  events: StoredEvent[]
  /** Events after the id asked for were trimmed off: the oldest id still held. */
  gap?: string
  /** The id asked for is newer than any event the topic can have had. */
  future: boolean
}

/**
 * A resume from `afterId` against a history that holds nothing (never written, or expired after
 * HISTORY_TTL): an id from after `horizonMs` cannot exist yet (future); any other id but START_ID
 * may have had events after it that expired unseen, so it starts with a gap.
 */
export function nothingHeld(afterId: string, horizonMs: number): TopicRead {
  const future = (parseEventId(afterId)?.ms ?? 0) >= horizonMs
  const gap = future || afterId === START_ID ? undefined : START_ID
  return { last: START_ID, events: [], gap, future }
}

export interface EventLimits {
  /** Events kept per user for resuming. */
  historyMax: number
  historyTtlS: number
  /** Seconds a user's latest score per item is kept. */
  scoresTtlS: number
  /** Events `ratings:all` can replay, over all its partitions. */
  allMax: number
  /** Partitions of the `ratings:all` history. */
  allPartitions: number
}

/** Live events of the topics a store listens to, and the news that some may have been missed. */
export interface LiveSink {
  event(topic: Topic, stored: StoredEvent): void
  /**
   * Live delivery was interrupted (a reconnect): every topic must catch up from its history once
   * `subscribed` resolves (its live channel is back). Called before any live event of the new
   * connection is delivered.
   */
  resync(subscribed: Promise<void>): void
}

/**
 * Per-user history and latest scores, the `ratings:all` history, and live delivery of the
 * topics this replica listens to (only those: a replica never sees the events of users with no
 * stream open on it).
 */
export interface EventStore {
  /**
   * Stores the event in its user's history (and `ratings:all`), publishes it live (with `trace`,
   * a traceparent, when given), and sets `mark` in the same step; resolves to its id in the
   * user's history.
   */
  publish(event: ScoreEvent, trace?: string, mark?: PublishMark): Promise<string>
  latest(userId: string, items: string[]): Promise<ScoreEvent[]>
  userTopic(userId: string): Topic
  /** The `ratings:all` partitions, in position order. */
  allTopics(): Topic[]
  /** The topic's newest id, and its events after `afterId` when given. */
  read(topic: Topic, afterId: string | null): Promise<TopicRead>
  /** Live events go to `sink` from now on (for the topics listened to). */
  start(sink: LiveSink): void
  /** Resolves once live events of `topic` are delivered. */
  listen(topic: Topic): Promise<void>
  unlisten(topic: Topic): Promise<void>
  /** Sends a canary through the live path: null once it came back within `timeoutMs`, else the reason. */
  canary(timeoutMs: number): Promise<string | null>
  close(): Promise<void>
}
