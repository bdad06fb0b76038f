import { randomBytes } from 'node:crypto'
import { hostname } from 'node:os'
import type { RedisClient } from '../redis/client.js'
import { feedRatingValidator, type FeedRating } from '../rating.js'

/** What is stored per queued rating: the rating and when it was read off the feed (Date.now() ms). */
export interface QueuedRating {
  rating: FeedRating
  readAt: number
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
export interface ForwardQueue {
  add(values: QueuedRating[]): Promise<void>
  /** Up to `count` entries for this consumer (reclaimed ones first); waits up to `blockMs` for new ones. */
  read(count: number, blockMs: number): Promise<QueueEntry[]>
  /** Done with an entry: it leaves the queue for good. */
  ack(id: string): Promise<void>
  /** Entries still held by this consumer: reset their idle time so nobody reclaims them. */
  touch(ids: string[]): Promise<void>
  /** Unacknowledged entries. */
  depth(): Promise<number>
  /** Ends a blocked read (resolves empty or rejects); no read after this. */
  close(): void
}

function isQueuedRating(value: unknown): value is QueuedRating {
  if (typeof value !== 'object' || value === null) return false
  const { rating, readAt } = value as Partial<Record<keyof QueuedRating, unknown>>
  return typeof readAt === 'number' && feedRatingValidator.Check(rating)
}

function parse(raw: string): QueuedRating | null {
  try {
    const value: unknown = JSON.parse(raw)
    return isQueuedRating(value) ? value : null
  } catch {
    return null
  }
}

/** Process memory: one replica, lost with the process (no REDIS_URL). */
export class MemoryQueue implements ForwardQueue {
  private readonly unacked = new Map<string, string>()
  private fresh: string[] = []
  private seq = 0
  private wake: (() => void) | null = null
  private closed = false

  async add(values: QueuedRating[]): Promise<void> {
    for (const value of values) {
      const id = String(++this.seq)
      this.unacked.set(id, JSON.stringify(value))
      this.fresh.push(id)
    }
    this.wake?.()
  }

  async read(count: number, blockMs: number): Promise<QueueEntry[]> {
    if (this.fresh.length === 0 && !this.closed) {
      await new Promise<void>((resolve) => {
        const timer = setTimeout(() => this.wake?.(), blockMs)
        this.wake = () => {
          clearTimeout(timer)
          this.wake = null
          resolve()
        }
      })
    }
    return this.fresh.splice(0, count).map((id) => ({ id, value: parse(this.unacked.get(id) ?? '') }))
  }

  async ack(id: string): Promise<void> {
    this.unacked.delete(id)
  }

  async touch(): Promise<void> {}

  async depth(): Promise<number> {
    return this.unacked.size
  }

  close(): void {
    this.closed = true
    this.wake?.()
  }
}

type StreamEntry = [id: string, fields: string[]]

/** XREADGROUP / XAUTOCLAIM entries: `[id, [field, value, ...]]`, or null for an entry deleted meanwhile. */
function entries(raw: unknown): QueueEntry[] {
  if (!Array.isArray(raw)) return []
  return raw.flatMap((entry: StreamEntry | null) => {
    if (!entry) return []
    const [id, fields] = entry
    const at = fields.indexOf('r')
    return [{ id, value: at >= 0 ? parse(fields[at + 1]) : null }]
  })
}

/**
 * The entries of the one stream read: Redis answers `[[key, entries]]` (null when the block timed
 * out); ioredis hands a single stream's reply over as `[key, entries]`.
 */
function firstStream(raw: unknown): unknown {
  if (!Array.isArray(raw)) return null
  return Array.isArray(raw[0]) ? raw[0][1] : raw[1]
}

const GROUP = 'forwarders'

/**
 * A Redis Stream with one consumer group shared by every replica. Blocking reads use their own
 * connection; everything else the shared client. One key, so Cluster-safe.
 */
export class RedisQueue implements ForwardQueue {
  /** Unique per process, so a restarted replica never mistakes a dead one's entries for its own. */
  readonly consumer = `${hostname()}-${process.pid}-${randomBytes(4).toString('hex')}`
  private group: Promise<void> | null = null
  private claimCursor = '0-0'
  private lastClaim = 0

  constructor(
    private readonly redis: RedisClient,
    private readonly blocking: RedisClient,
    private readonly key: string,
    private readonly claimMs: number
  ) {}

  async add(values: QueuedRating[]): Promise<void> {
    const pipeline = this.redis.pipeline()
    for (const value of values) pipeline.xadd(this.key, '*', 'r', JSON.stringify(value))
    const results = (await pipeline.exec()) ?? []
    const failed = results.find(([err]) => err)
    if (failed) throw failed[0]
  }

  async read(count: number, blockMs: number): Promise<QueueEntry[]> {
    await this.ensureGroup()
    await this.connected(blockMs)
    try {
      const reclaimed = await this.reclaim(count)
      if (reclaimed.length) return reclaimed
      const raw = await this.blocking.call('XREADGROUP', [
        'GROUP', GROUP, this.consumer, 'COUNT', count, 'BLOCK', Math.min(blockMs, Math.ceil(this.claimMs / 2)),
        'STREAMS', this.key, '>'
      ])
      return entries(firstStream(raw))
    } catch (err) {
      // The stream (and its group) was deleted: create them again on the next read.
      if (err instanceof Error && err.message.includes('NOGROUP')) this.group = null
      throw err
    }
  }

  async ack(id: string): Promise<void> {
    await this.redis.multi().xack(this.key, GROUP, id).xdel(this.key, id).exec()
  }

  async touch(ids: string[]): Promise<void> {
    if (ids.length) await this.redis.call('XCLAIM', [this.key, GROUP, this.consumer, 0, ...ids, 'JUSTID'])
  }

  async depth(): Promise<number> {
    return this.redis.xlen(this.key)
  }

  close(): void {
    this.blocking.disconnect()
  }

  /** The blocking connection fails fast until it is up (no offline queue): wait for it, bounded. */
  private connected(timeoutMs: number): Promise<void> {
    if (this.blocking.status === 'ready') return Promise.resolve()
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer)
        this.blocking.off('ready', done)
        resolve()
      }
      const timer = setTimeout(done, timeoutMs)
      this.blocking.once('ready', done)
    })
  }

  /** Entries idle for the claim timeout (their consumer died), looked for at most every half timeout. */
  private async reclaim(count: number): Promise<QueueEntry[]> {
    const now = performance.now()
    if (now - this.lastClaim < this.claimMs / 2) return []
    const raw = await this.redis.call('XAUTOCLAIM', [this.key, GROUP, this.consumer, this.claimMs, this.claimCursor, 'COUNT', count])
    if (!Array.isArray(raw)) return []
    this.claimCursor = String(raw[0])
    // A full scan done: rest until the next half timeout.
    if (this.claimCursor === '0-0') this.lastClaim = now
    return entries(raw[1])
  }

  private ensureGroup(): Promise<void> {
    this.group ??= this.redis
      .xgroup('CREATE', this.key, GROUP, '0', 'MKSTREAM')
      .then(
        () => undefined,
        (err: Error) => {
          if (!err.message.includes('BUSYGROUP')) {
            this.group = null
            throw err
          }
        }
      )
    return this.group
  }
}
