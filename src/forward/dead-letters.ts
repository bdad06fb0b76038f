import type { FeedRating } from '../rating.js'
import { feedRatingValidator } from '../rating.js'
import type { RedisClient } from '../redis/client.js'
import type { Keys } from '../redis/keys.js'
import type { DedupStore } from './dedup.js'
import type { QueueStore } from './queue.js'

/** Why OpenClaw's answer will not change on a retry: a 4xx other than 429, or a 2xx that is not the score event. */
export type DeadLetterReason = 'rejected' | 'invalid_response'

/** A rating OpenClaw refused for good, set aside so the queue moves on. */
export interface DeadLetter {
  /** The dead letter's own id (`<ms>-<seq>`). */
  id: string
  rating: FeedRating
  reason: DeadLetterReason
  /** OpenClaw's HTTP status. */
  status: number | null
  /** What OpenClaw's answer was, in words (never the key or the body). */
  detail: string
  /** Calls to OpenClaw for it. */
  attempts: number
  /** When it was set aside (Unix ms). */
  at: number
}

export type NewDeadLetter = Omit<DeadLetter, 'id'>

/** Dead letters in order of arrival, at most `max` (the oldest go first). */
export interface DeadLetterStore {
  add(letter: NewDeadLetter): Promise<string>
  /** The oldest `count`. */
  list(count: number): Promise<DeadLetter[]>
  get(id: string): Promise<DeadLetter | null>
  /** False when there was no such dead letter. */
  remove(id: string): Promise<boolean>
  size(): Promise<number>
  close(): Promise<void>
}

/** A stream id: the only ids a store knows, and the only ones passed on to Redis. */
export const DEAD_LETTER_ID = /^\d{1,15}-\d{1,15}$/

function parse(id: string, json: string): DeadLetter | null {
  try {
    const value = JSON.parse(json) as NewDeadLetter
    return feedRatingValidator.Check(value.rating) ? { ...value, id } : null
  } catch {
    return null
  }
}

/** One replica (no Redis). */
export class MemoryDeadLetterStore implements DeadLetterStore {
  private readonly letters = new Map<string, DeadLetter>()
  private seq = 0

  constructor(private readonly max: number) {}

  async add(letter: NewDeadLetter): Promise<string> {
    const id = `${letter.at}-${++this.seq}`
    this.letters.set(id, { ...letter, id })
    for (const oldest of this.letters.keys()) {
      if (this.letters.size <= this.max) break
      this.letters.delete(oldest)
    }
    return id
  }

  async list(count: number): Promise<DeadLetter[]> {
    return [...this.letters.values()].slice(0, count)
  }

  async get(id: string): Promise<DeadLetter | null> {
    return this.letters.get(id) ?? null
  }

  async remove(id: string): Promise<boolean> {
    return this.letters.delete(id)
  }

  async size(): Promise<number> {
    return this.letters.size
  }

  async close(): Promise<void> {
    this.letters.clear()
  }
}

type StreamEntry = [id: string, fields: string[]]

/** A Redis Stream of its own (`MAXLEN ~ max`), one JSON field per entry. */
export class RedisDeadLetterStore implements DeadLetterStore {
  private readonly key: string

  constructor(
    private readonly redis: RedisClient,
    keys: Pick<Keys, 'deadLetters'>,
    private readonly max: number
  ) {
    this.key = keys.deadLetters
  }

  async add(letter: NewDeadLetter): Promise<string> {
    const id = await this.redis.xadd(this.key, 'MAXLEN', '~', String(this.max), '*', 'd', JSON.stringify(letter))
    if (!id) throw new Error('XADD returned no id')
    return id
  }

  async list(count: number): Promise<DeadLetter[]> {
    return this.letters(await this.redis.xrange(this.key, '-', '+', 'COUNT', count))
  }

  async get(id: string): Promise<DeadLetter | null> {
    if (!DEAD_LETTER_ID.test(id)) return null
    return this.letters(await this.redis.xrange(this.key, id, id))[0] ?? null
  }

  async remove(id: string): Promise<boolean> {
    return DEAD_LETTER_ID.test(id) && (await this.redis.xdel(this.key, id)) > 0
  }

  size(): Promise<number> {
    return this.redis.xlen(this.key)
  }

  async close(): Promise<void> {
    /* the connection belongs to the redis plugin */
  }

  private letters(entries: StreamEntry[]): DeadLetter[] {
    return entries.flatMap(([id, fields]) => {
      const letter = fields[0] === 'd' ? parse(id, fields[1]) : null
      return letter ? [letter] : []
    })
  }
}

/** What operators do with dead letters (admin API): list, put one back in the queue once, or drop it. */
export class DeadLetters {
  constructor(
    private readonly store: DeadLetterStore,
    private readonly queue: Pick<QueueStore, 'add'>,
    /** A dead-lettered rating is marked handled: a retry forgets that first, or it would be acked unforwarded. */
    private readonly dedup: Pick<DedupStore, 'forget'>,
    private readonly now: () => number = Date.now
  ) {}

  list(count: number): Promise<DeadLetter[]> {
    return this.store.list(count)
  }

  size(): Promise<number> {
    return this.store.size()
  }

  /**
   * Back into the forward queue, as if just read off the feed; false when unknown. Queued first,
   * removed second: a crash in between leaves it in both, and dedup forwards it once.
   */
  async retry(id: string): Promise<boolean> {
    const letter = await this.store.get(id)
    if (!letter) return false
    await this.dedup.forget(letter.rating)
    await this.queue.add([{ rating: letter.rating, readAt: this.now() }])
    await this.store.remove(id)
    return true
  }

  drop(id: string): Promise<boolean> {
    return this.store.remove(id)
  }
}
