import type { ScoreEvent } from '../rating.js'
import { compareEventIds, nextEventId } from './event-id.js'
import type { EventLimits, EventStore, Replay, StoredEvent } from './event-store.js'

export interface MemoryEventStoreOptions extends EventLimits {
  /** Wall-clock milliseconds: ids are `<ms>-<seq>` like Redis stream ids. */
  now?: () => number
}

/** Events in order, and the newest id that was trimmed off their front (null: none yet). */
interface History {
  events: StoredEvent[]
  trimmed: string | null
}

/** One process (demo, single replica): same ids and semantics, history bounded by count only. */
export class MemoryEventStore implements EventStore {
  private lastId: string | null = null
  private readonly everyone: History = { events: [], trimmed: null }
  private readonly histories = new Map<string, History>()
  private readonly scores = new Map<string, Map<string, ScoreEvent>>()
  private onEvent: (event: StoredEvent) => void = () => {}
  private readonly now: () => number

  constructor(private readonly options: MemoryEventStoreOptions) {
    this.now = options.now ?? Date.now
  }

  async publish(event: ScoreEvent): Promise<string> {
    const id = nextEventId(this.lastId, this.now())
    this.lastId = id
    const stored = { id, event }
    append(this.everyone, stored, this.options.streamMax)
    const history = this.histories.get(event.user_id) ?? { events: [], trimmed: null }
    this.histories.set(event.user_id, history)
    append(history, stored, this.options.historyMax)
    const scores = this.scores.get(event.user_id) ?? new Map<string, ScoreEvent>()
    this.scores.set(event.user_id, scores)
    scores.set(event.item_id, event)
    // Delivered after publish resolves, like the Redis reader.
    queueMicrotask(() => this.onEvent(stored))
    return id
  }

  async replay(userId: string | null, afterId: string): Promise<Replay> {
    const history = userId === null ? this.everyone : this.histories.get(userId)
    if (!history) return { events: [] }
    const gap = history.trimmed && compareEventIds(afterId, history.trimmed) < 0 ? history.events[0]?.id : undefined
    return { gap, events: history.events.filter((stored) => compareEventIds(stored.id, afterId) > 0) }
  }

  async latest(userId: string, items: string[]): Promise<ScoreEvent[]> {
    const scores = this.scores.get(userId)
    return items.flatMap((item) => scores?.get(item) ?? [])
  }

  async start(onEvent: (event: StoredEvent) => void): Promise<void> {
    this.onEvent = onEvent
  }

  async canary(): Promise<string | null> {
    return null
  }

  async close(): Promise<void> {
    this.onEvent = () => {}
  }
}

function append(history: History, stored: StoredEvent, max: number): void {
  history.events.push(stored)
  if (history.events.length > max) history.trimmed = history.events.shift()?.id ?? null
}
