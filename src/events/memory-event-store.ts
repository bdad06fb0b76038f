import { LRUCache } from 'lru-cache'
import type { ScoreEvent } from '../rating.js'
import { systemClock, type Cancel, type Clock } from '../shared/clock.js'
import { compareEventIds, nextEventId, parseEventId, START_ID } from './event-id.js'
import { nothingHeld, type EventLimits, type EventStore, type LiveSink, type StoredEvent, type Topic, type TopicRead } from './event-store.js'

export interface MemoryEventStoreOptions extends EventLimits {
  /** Users whose history and scores are kept at most; the least recently published go first. */
  maxUsers: number
  /** Monotonic time (expiry) and wall-clock time (ids are `<ms>-<seq>` like Redis stream ids). */
  clock?: Clock
}

/** Events in order, and the newest id trimmed off their front (null: none yet). */
interface History {
  events: StoredEvent[]
  trimmed: string | null
}

/** How often expired users are dropped (lru-cache only notices an expired entry when it is read). */
const PURGE_MS = 10_000
const ALL: Topic = 'all'

/**
 * One process (demo, single replica): the same ids and semantics as Redis. Histories expire
 * HISTORY_TTL after a user's last event and scores SCORES_TTL after, and at most `maxUsers` users
 * are kept, so a stream of one-off users cannot grow the process. `ratings:all` is one history here.
 */
export class MemoryEventStore implements EventStore {
  private lastId: string | null = null
  private readonly all: History = { events: [], trimmed: null }
  private readonly histories: LRUCache<string, History>
  private readonly scores: LRUCache<string, Map<string, ScoreEvent>>
  private readonly listened = new Set<Topic>()
  private sink: LiveSink = { event() {}, resync() {} }
  private readonly clock: Clock
  private readonly stopPurge: Cancel

  constructor(private readonly options: MemoryEventStoreOptions) {
    this.clock = options.clock ?? systemClock
    // ttlResolution 0: expiry reads the (injectable) clock every time.
    const perf = { now: this.clock.now }
    this.histories = new LRUCache({ max: options.maxUsers, ttl: options.historyTtlS * 1000, ttlResolution: 0, perf })
    this.scores = new LRUCache({ max: options.maxUsers, ttl: options.scoresTtlS * 1000, ttlResolution: 0, perf })
    this.stopPurge = this.clock.every(PURGE_MS, () => {
      this.histories.purgeStale()
      this.scores.purgeStale()
    })
  }

  async publish(event: ScoreEvent, trace?: string): Promise<string> {
    const id = nextEventId(this.lastId, this.clock.wallMs())
    this.lastId = id
    const stored = { id, event }
    const user = event.user_id
    const history = this.histories.get(user) ?? { events: [], trimmed: null }
    append(history, stored, this.options.historyMax)
    this.histories.set(user, history)
    append(this.all, stored, this.options.allMax)
    const scores = this.scores.get(user) ?? new Map<string, ScoreEvent>()
    scores.set(event.item_id, event)
    this.scores.set(user, scores)
    // Delivered after publish resolves, like a message from Redis.
    queueMicrotask(() => {
      for (const topic of [this.userTopic(user), ALL]) if (this.listened.has(topic)) this.sink.event(topic, trace ? { ...stored, trace } : stored)
    })
    return id
  }

  async latest(userId: string, items: string[]): Promise<ScoreEvent[]> {
    const scores = this.scores.get(userId)
    return items.flatMap((item) => scores?.get(item) ?? [])
  }

  userTopic(userId: string): Topic {
    return `u:${userId}`
  }

  allTopics(): Topic[] {
    return [ALL]
  }

  async read(topic: Topic, afterId: string | null): Promise<TopicRead> {
    const history = topic === ALL ? this.all : this.histories.get(topic.slice(2))
    const last = history?.events.at(-1)?.id ?? START_ID
    if (afterId === null) return { last, events: [], future: false }
    // Without a history, nothing is newer than the newest id of all.
    if (!history) return nothingHeld(afterId, (parseEventId(this.lastId ?? START_ID)?.ms ?? 0) + 1)
    const future = compareEventIds(afterId, last) > 0
    if (future) return { last, events: [], future }
    const gap = history.trimmed && compareEventIds(afterId, history.trimmed) < 0 ? history.events[0]?.id : undefined
    return { last, events: history.events.filter((stored) => compareEventIds(stored.id, afterId) > 0), gap, future }
  }

  start(sink: LiveSink): void {
    this.sink = sink
  }

  async listen(topic: Topic): Promise<void> {
    this.listened.add(topic)
  }

  async unlisten(topic: Topic): Promise<void> {
    this.listened.delete(topic)
  }

  /** Live delivery is a function call here: nothing to check. */
  async canary(): Promise<string | null> {
    return null
  }

  async close(): Promise<void> {
    this.stopPurge()
    this.listened.clear()
    this.histories.clear()
    this.scores.clear()
  }
}

function append(history: History, stored: StoredEvent, max: number): void {
  history.events.push(stored)
  if (history.events.length > max) history.trimmed = history.events.shift()?.id ?? null
}
