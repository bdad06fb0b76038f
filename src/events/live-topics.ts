import { backoffDelay } from '../shared/backoff.js'
import { systemClock, type Cancel, type Clock } from '../shared/clock.js'
import { compareEventIds, parseEventId } from './event-id.js'
import type { EventStore, StoredEvent, Topic } from './event-store.js'

/** What a topic hands on: each event once, in id order, and the news that some were lost. */
export interface TopicListener {
  event(stored: StoredEvent): void
  /** A catch-up found events trimmed off the history: the listener may have missed some. */
  lost(): void
}

export interface Membership {
  /** The topic's position when the join completed: events after it will reach the listener. */
  position: string
  leave(): void
}

export interface LiveTopicsOptions {
  /** Topics listened to, and events recovered from a history after an interruption. */
  topics?: { set(value: number): void }
  recovered?: { inc(value?: number): void }
  /** Seconds from an event's publish (its id's time) to its arrival here, for topics with listeners. */
  lag?: { observe(seconds: number): void }
  onError(err: unknown): void
  clock?: Clock
}

/** A failed catch-up read is tried again after this backoff. */
const RETRY = { baseMs: 100, maxMs: 5000 }

interface TopicState {
  readonly topic: Topic
  readonly listeners: Set<TopicListener>
  /** Events up to this id are handed on (or came before every listener): only later ones go out. */
  last: string
  /** While joining or catching up: live events wait here, then go out after what the history gave. */
  held: StoredEvent[] | null
  /** A catch-up read is in flight. */
  reading: boolean
  /** Live delivery was interrupted since the last read began: read (again). */
  stale: boolean
  ready: Promise<void>
  retries: number
  cancelRetry?: Cancel
}

/**
 * The topics this replica listens to, shared by every stream that needs them: subscribed when the
 * first listener joins, unsubscribed when the last leaves. Each topic hands its listeners each
 * event once and in order, whatever the live channel does: a join reads the topic's position
 * after subscribing (what was published before it is not owed), and after a reconnect every topic
 * reads its history from the last id it handed on, holding live events back meanwhile, then drops
 * those the history already gave (the seam of Mercure's local subscriber, per topic).
 */
export class LiveTopics {
  private readonly states = new Map<Topic, TopicState>()
  private readonly clock: Clock
  /** Resolves once the live channels are subscribed again after the latest interruption. */
  private subscribed: Promise<void> = Promise.resolve()

  constructor(
    private readonly store: Pick<EventStore, 'read' | 'listen' | 'unlisten' | 'start'>,
    private readonly options: LiveTopicsOptions
  ) {
    this.clock = options.clock ?? systemClock
    store.start({ event: (topic, stored) => this.deliver(topic, stored), resync: (subscribed) => this.resync(subscribed) })
  }

  /** Adds `listener` to `topic`; resolves once the topic is live (rejects when Redis cannot say so). */
  async join(topic: Topic, listener: TopicListener): Promise<Membership> {
    let state = this.states.get(topic)
    if (!state) {
      const created: TopicState = {
        topic,
        listeners: new Set(),
        last: '',
        held: [],
        reading: false,
        stale: false,
        ready: Promise.resolve(),
        retries: 0
      }
      created.ready = this.open(created)
      this.states.set(topic, created)
      this.options.topics?.set(this.states.size)
      state = created
    }
    state.listeners.add(listener)
    const joined = state
    try {
      await joined.ready
    } catch (err) {
      this.remove(joined, listener)
      throw err
    }
    return { position: joined.last, leave: () => this.remove(joined, listener) }
  }

  /** Listeners of every topic left (close). */
  clear(): void {
    for (const state of this.states.values()) state.cancelRetry?.()
    this.states.clear()
    this.options.topics?.set(0)
  }

  private async open(state: TopicState): Promise<void> {
    await this.store.listen(state.topic)
    const { last } = await this.store.read(state.topic, null)
    this.release(state, last)
    if (state.stale) this.catchUp(state)
  }

  private remove(state: TopicState, listener: TopicListener): void {
    state.listeners.delete(listener)
    if (state.listeners.size > 0 || this.states.get(state.topic) !== state) return
    this.states.delete(state.topic)
    state.cancelRetry?.()
    this.options.topics?.set(this.states.size)
    this.store.unlisten(state.topic).catch((err: unknown) => this.options.onError(err))
  }

  private deliver(topic: Topic, stored: StoredEvent): void {
    const state = this.states.get(topic)
    if (!state) return
    this.options.lag?.observe(this.sincePublished(stored.id))
    if (state.held) state.held.push(stored)
    else this.handOn(state, stored)
  }

  /** Seconds since an event was published, read from its id (`<ms>-<seq>`). */
  private sincePublished(id: string): number {
    const published = parseEventId(id)?.ms ?? this.clock.wallMs()
    return Math.max(0, this.clock.wallMs() - published) / 1000
  }

  private handOn(state: TopicState, stored: StoredEvent): void {
    if (state.last && compareEventIds(stored.id, state.last) <= 0) return
    state.last = stored.id
    for (const listener of state.listeners) {
      try {
        listener.event(stored)
      } catch (err) {
        this.options.onError(err)
      }
    }
  }

  /** The history is handed on up to `last`: the held live events after it follow. */
  private release(state: TopicState, last: string): void {
    if (!state.last || compareEventIds(last, state.last) > 0) state.last = last
    const held = state.held ?? []
    state.held = null
    for (const stored of held) this.handOn(state, stored)
  }

  /**
   * Live delivery was interrupted: from now on every topic holds its live events back, and once
   * `subscribed` (the channels are back) reads what it missed after its last id. Holding starts
   * before the channels are back, so no live event overtakes the missed ones.
   */
  private resync(subscribed: Promise<void>): void {
    this.subscribed = subscribed
    for (const state of this.states.values()) {
      state.held ??= []
      state.stale = true
      // Still joining, or reading already: that one reads again when done.
      if (state.last && !state.reading) this.catchUp(state)
    }
  }

  private catchUp(state: TopicState): void {
    state.held ??= []
    state.reading = true
    state.stale = false
    const current = () => this.states.get(state.topic) === state
    this.subscribed
      .then(() => this.store.read(state.topic, state.last))
      .then(
        (read) => {
          state.reading = false
          if (!current()) return
          state.retries = 0
          if (read.gap) for (const listener of state.listeners) listener.lost()
          this.options.recovered?.inc(read.events.length)
          for (const stored of read.events) this.handOn(state, stored)
          if (state.stale) this.catchUp(state)
          else this.release(state, read.last)
        },
        (err: unknown) => {
          state.reading = false
          if (!current()) return
          this.options.onError(err)
          state.cancelRetry = this.clock.after(backoffDelay(++state.retries, RETRY), () => this.catchUp(state))
        }
      )
  }
}
