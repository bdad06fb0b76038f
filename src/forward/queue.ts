import type { RedisClient } from '../redis/client.js'
import type { Keys } from '../redis/keys.js'
import { execReplicated, type ReplicatedWrites } from '../redis/replicated.js'
import { feedRatingValidator, type FeedRating } from '../rating.js'
import { onceWithin, Wakeable } from '../shared/wait.js'

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
export interface QueueStore {
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
  close(): Promise<void>
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
export class MemoryQueueStore implements QueueStore {
  private readonly unacked = new Map<string, string>()
  private fresh: string[] = []
  private seq = 0
  /** A blocked read, woken by add() or close(). */
  private readonly reader = new Wakeable()
  private closed = false

  async add(values: QueuedRating[]): Promise<void> {
    for (const value of values) {
      const id = String(++this.seq)
      this.unacked.set(id, JSON.stringify(value))
      this.fresh.push(id)
    }
    this.reader.wake()
  }

  async read(count: number, blockMs: number): Promise<QueueEntry[]> {
    if (this.fresh.length === 0 && !this.closed) await this.reader.sleep(blockMs)
    return this.fresh.splice(0, count).map((id) => ({ id, value: parse(this.unacked.get(id) ?? '') }))
  }

  async ack(id: string): Promise<void> {
    this.unacked.delete(id)
  }

  async touch(): Promise<void> {}

  async depth(): Promise<number> {
    return this.unacked.size
  }

  async close(): Promise<void> {
    this.closed = true
    this.reader.wake()
  }
}

type StreamEntry = [id: string, fields: string[]]

/** XREADGROUP / XAUTOCLAIM entries: `[id, [field, value, ...]]`, or null for an entry deleted meanwhile. */
function entries(raw: unknown): QueueEntry[] {
  if (!Array.isArray(raw)) return []
  return raw.flatMap((entry: StreamEntry | null) => {
    if (!entry) return []
    const [id, fields] = entry
    const field = fields.indexOf('r')
    return [{ id, value: field >= 0 ? parse(fields[field + 1]) : null }]
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

export interface RedisQueueOptions {
  /** A connection of its own for the blocking reads (closed by close()). */
  blocking: RedisClient
  /** An entry pending this long with a consumer is taken over by another one. */
  claimMs: number
  /** This replica's consumer name, unique per process: a restarted replica never takes a dead one's entries for its own. */
  consumer: string
  /** REDIS_WAIT_REPLICAS > 0: an add resolves only once that many replicas hold it. */
  replicated?: ReplicatedWrites
  now?: () => number
}

/**
 * A Redis Stream with one consumer group shared by every replica. Blocking reads use their own
 * connection; everything else the shared client. One key, so Cluster-safe.
 */
export class RedisQueueStore implements QueueStore {
  private readonly key: string
  private readonly now: () => number
  private group: Promise<void> | null = null
  private claimCursor = '0-0'
  private lastClaim = -Infinity

  constructor(
    private readonly redis: RedisClient,
    keys: Pick<Keys, 'queue'>,
    private readonly options: RedisQueueOptions
  ) {
    this.key = keys.queue
    this.now = options.now ?? (() => performance.now())
  }

  async add(values: QueuedRating[]): Promise<void> {
    const { replicated } = this.options
    const pipeline = (replicated?.connection ?? this.redis).pipeline()
    for (const value of values) pipeline.xadd(this.key, '*', 'r', JSON.stringify(value))
    await execReplicated(pipeline, replicated)
  }

  async read(count: number, blockMs: number): Promise<QueueEntry[]> {
    await this.ensureGroup()
    await this.connected(blockMs)
    try {
      const reclaimed = await this.reclaim(count)
      if (reclaimed.length) return reclaimed
      const { blocking, consumer, claimMs } = this.options
      const raw = await blocking.call('XREADGROUP', [
        'GROUP', GROUP, consumer, 'COUNT', count, 'BLOCK', Math.min(blockMs, Math.ceil(claimMs / 2)),
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
    if (ids.length) await this.redis.call('XCLAIM', [this.key, GROUP, this.options.consumer, 0, ...ids, 'JUSTID'])
  }

  async depth(): Promise<number> {
    return this.redis.xlen(this.key)
  }

  async close(): Promise<void> {
    this.options.blocking.disconnect()
  }

  /** The blocking connection fails fast until it is up (no offline queue): wait for it, bounded. */
  private async connected(timeoutMs: number): Promise<void> {
    if (this.options.blocking.status !== 'ready') await onceWithin(this.options.blocking, 'ready', timeoutMs)
  }

  /** Entries idle for the claim timeout (their consumer died), looked for at most every half timeout. */
  private async reclaim(count: number): Promise<QueueEntry[]> {
    const { consumer, claimMs } = this.options
    const now = this.now()
    if (now - this.lastClaim < claimMs / 2) return []
    const raw = await this.redis.call('XAUTOCLAIM', [this.key, GROUP, consumer, claimMs, this.claimCursor, 'COUNT', count])
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
