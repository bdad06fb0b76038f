import type { Counter, Gauge, Histogram } from 'prom-client'
import { toScoreEvent, type ScoreEvent } from '../rating.js'
import type { StoreBudget } from '../shared/store-budget.js'
import type { Clock } from '../shared/clock.js'
import { activeTraceparent, traced } from '../tracing/spans.js'
import type { Source } from '../upstream/errors.js'
import type { EventStore, PublishMark, Topic, TopicRead } from './event-store.js'
import { LiveTopics, type Membership, type TopicListener } from './live-topics.js'

export interface EventBusOptions {
  /** Published events by source (feed, rest). */
  published: Counter<'source'>
  /** Bounds the reads a request waits for (scores, history) when the store is over the network. */
  budget?: StoreBudget
  /** Topics this replica listens to. */
  topics?: Gauge
  /** Events recovered from a history after the live channel was interrupted. */
  recovered?: Counter
  /** Seconds from an event's publish to its arrival on this replica. */
  lag?: Histogram
  /** A listener threw, or a topic could not catch up yet: the others go on. */
  onError(err: unknown): void
  clock?: Clock
}

/**
 * Whoever publishes (REST route, forwarder), the streams of that user get the event on whichever
 * replica they are open, and `ratings:all` streams get every event: the store keeps the
 * histories and publishes live; this bus joins the topics this replica's streams need.
 */
export class EventBus {
  private readonly topics: LiveTopics

  constructor(
    private readonly store: EventStore,
    private readonly options: EventBusOptions
  ) {
    this.topics = new LiveTopics(store, {
      topics: options.topics,
      recovered: options.recovered,
      lag: options.lag,
      onError: options.onError,
      clock: options.clock
    })
  }

  /**
   * Stores in the user's history, remembers as latest score, publishes live, sets `mark` in the
   * same step; resolves to its id in the user's history.
   */
  publish(event: ScoreEvent, source: Source, mark?: PublishMark): Promise<string> {
    return traced('events.publish', async () => {
      const id = await this.store.publish(toScoreEvent(event), activeTraceparent(), mark)
      this.options.published.inc({ source })
      return id
    })
  }

  /** The latest score event per listed item for a user; 503 past the budget. */
  latest(userId: string, items: string[]): Promise<ScoreEvent[]> {
    return this.budgeted('scores', () => this.store.latest(userId, items))
  }

  private budgeted<T>(op: string, call: () => Promise<T>): Promise<T> {
    return this.options.budget ? this.options.budget.call(op, call) : call()
  }

  userTopic(userId: string): Topic {
    return this.store.userTopic(userId)
  }

  /** The partitions of `ratings:all`, in the order of its positions. */
  allTopics(): Topic[] {
    return this.store.allTopics()
  }

  /** The topic's newest id, and what it holds after `afterId` when given; 503 past the budget. */
  read(topic: Topic, afterId: string | null): Promise<TopicRead> {
    return this.budgeted('replay', () => this.store.read(topic, afterId))
  }

  /** Live events of `topic`, each once and in order, from its position when joined. */
  join(topic: Topic, listener: TopicListener): Promise<Membership> {
    return this.topics.join(topic, listener)
  }

  /** Null once a canary came back through the live path within `timeoutMs`, else the reason. */
  canary(timeoutMs: number): Promise<string | null> {
    return this.store.canary(timeoutMs)
  }

  async close(): Promise<void> {
    this.topics.clear()
    await this.store.close()
  }
}
