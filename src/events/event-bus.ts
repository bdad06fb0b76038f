import type { Counter } from 'prom-client'
import { toScoreEvent, type ScoreEvent } from '../rating.js'
import type { StoreBudget } from '../shared/store-budget.js'
import type { Source } from '../upstream/errors.js'
import type { EventStore, Replay, StoredEvent } from './event-store.js'
import { ListenerIndex, type Listener } from './listener-index.js'

export interface EventBusOptions {
  /** Published events by source (feed, rest). */
  published: Counter<'source'>
  /** Bounds the reads a request waits for (scores, history) when the store is over the network. */
  budget?: StoreBudget
  /** A listener threw: the other listeners still got the event. */
  onListenerError(err: unknown): void
}

/**
 * Whoever publishes (REST route, forwarder), every replica's subscribers get the event: the
 * store stores it and fans it out, this bus hands what reaches this replica to its listeners.
 */
export class EventBus {
  private readonly listeners: ListenerIndex<StoredEvent>

  constructor(
    private readonly store: EventStore,
    private readonly options: EventBusOptions
  ) {
    this.listeners = new ListenerIndex(options.onListenerError)
  }

  /** Starts the fan-out: from now on listeners get every event published by any replica. */
  start(): Promise<void> {
    return this.store.start((stored) => this.listeners.notify(stored.event.user_id, stored))
  }

  /** Stores in the user's history, remembers as latest score, fans out; resolves to the id. */
  async publish(event: ScoreEvent, source: Source): Promise<string> {
    const id = await this.store.publish(toScoreEvent(event))
    this.options.published.inc({ source })
    return id
  }

  /**
   * Every event reaching this replica through the fan-out, in id order (only `userId`'s when
   * given: a stream per user need not look at everyone's events). Returns unsubscribe.
   */
  subscribe(listener: Listener<StoredEvent>, userId: string | null = null): () => void {
    return this.listeners.add(listener, userId)
  }

  /** What the user missed after `afterId`, in order (userId null: every user); 503 past the budget. */
  replay(userId: string | null, afterId: string): Promise<Replay> {
    return this.read('replay', () => this.store.replay(userId, afterId))
  }

  /** The latest score event per listed item for a user; 503 past the budget. */
  latest(userId: string, items: string[]): Promise<ScoreEvent[]> {
    return this.read('scores', () => this.store.latest(userId, items))
  }

  private read<T>(op: string, call: () => Promise<T>): Promise<T> {
    return this.options.budget ? this.options.budget.call(op, call) : call()
  }

  /** Null once a canary came back through the fan-out within `timeoutMs`, else the reason. */
  canary(timeoutMs: number): Promise<string | null> {
    return this.store.canary(timeoutMs)
  }

  async close(): Promise<void> {
    this.listeners.clear()
    await this.store.close()
  }
}
