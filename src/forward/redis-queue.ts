import type { RedisClient } from '../redis/client.js'
import type { Keys } from '../redis/keys.js'
import { execReplicated, type ReplicatedWrites } from '../redis/replicated.js'
import type { RedisSubscriber } from '../redis/subscriber.js'
import { agentOf } from '../rating.js'
import { partitionOf } from '../shared/partition.js'
import { onceWithin, Wakeable } from '../shared/wait.js'
import { parseQueued, type QueueEntry, type QueuedRating, type QueueStore } from './queue.js'

type StreamEntry = [id: string, fields: string[]]

/** XREADGROUP / XAUTOCLAIM entries of partition `partition`: `[id, [field, value, ...]]`, or null for an entry deleted meanwhile. */
function entries(partition: number, raw: unknown): QueueEntry[] {
  if (!Array.isArray(raw)) return []
  return raw.flatMap((entry: StreamEntry | null) => {
    if (!entry) return []
    const [id, fields] = entry
    const field = fields.indexOf('r')
    return [{ id: `${partition}/${id}`, value: field >= 0 ? parseQueued(fields[field + 1]) : null }]
  })
}

/**
 * The entries per stream of an XREADGROUP reply: Redis answers a map of stream → entries (null
 * when the block timed out), which ioredis hands over flat, `[key, entries, key, entries, ...]`.
 */
function perStream(raw: unknown): [key: string, entries: unknown][] {
  if (!Array.isArray(raw)) return []
  if (Array.isArray(raw[0])) return raw.map(([key, found]: [unknown, unknown]) => [String(key), found]) // nested pairs
  const streams: [string, unknown][] = []
  for (let i = 0; i + 1 < raw.length; i += 2) streams.push([String(raw[i]), raw[i + 1]])
  return streams
}

/** `values` by partition. */
function grouped<T>(values: T[], partition: (value: T) => number): Map<number, T[]> {
  const groups = new Map<number, T[]>()
  for (const value of values) {
    const key = partition(value)
    const group = groups.get(key)
    if (group) group.push(value)
    else groups.set(key, [value])
  }
  return groups
}

/** A queue entry's partition and its id in that partition's stream. */
function located(id: string): [partition: number, streamId: string] {
  const slash = id.indexOf('/')
  return [Number(id.slice(0, slash)), id.slice(slash + 1)]
}

const GROUP = 'forwarders'

export interface RedisQueueOptions {
  /** Partitions (streams keyed by agent, each in its own slot). */
  partitions: number
  /** Single Redis: a connection of its own for the blocking read over every partition (closed by close()). */
  blocking?: RedisClient
  /** Redis Cluster: where the doorbells ring (a blocking read cannot span slots there). */
  subscriber?: RedisSubscriber
  /** An entry pending this long with a consumer is taken over by another one. */
  claimMs: number
  /** This replica's consumer name, unique per process: a restarted replica never takes a dead one's entries for its own. */
  consumer: string
  /** REDIS_WAIT_REPLICAS > 0: an add resolves only once that many replicas hold it. */
  replicated?: ReplicatedWrites
  now?: () => number
}

/**
 * The forward queue as `partitions` Redis Streams, a rating going to its agent's partition (so an
 * agent's ratings keep their order), each stream with one consumer group shared by every replica:
 * no single key carries every rating, and on a Redis Cluster the partitions spread over the shards.
 * Every replica reads every partition, an equal share of each read per partition.
 *
 * Waiting for new entries: on a single Redis one XREADGROUP BLOCK over all partitions, on its own
 * connection. On a Cluster a multi-key read cannot span slots, so readers read without blocking
 * and sleep until a partition's doorbell rings (SPUBLISH in the same pipeline as the XADDs, same
 * slot), or the block time passes (then every partition is read again: a lost ring costs at most
 * that long). README "Forward queue" has the measurements behind this choice.
 */
export class RedisQueueStore implements QueueStore {
  private readonly streams: string[]
  private readonly partitionOfKey = new Map<string, number>()
  private readonly now: () => number
  private groups: Promise<void> | null = null
  private readonly claims: { cursor: string; lastScan: number }[]
  /** Cluster: partitions that may hold entries not read yet, and the reader's sleep until one rings. */
  private readonly due = new Set<number>()
  private readonly bell = new Wakeable()
  private bells: Promise<void> | null = null
  private closed = false

  constructor(
    private readonly redis: RedisClient,
    private readonly keys: Pick<Keys, 'queue' | 'queueBell'>,
    private readonly options: RedisQueueOptions
  ) {
    this.streams = Array.from({ length: options.partitions }, (_, partition) => keys.queue(partition))
    this.streams.forEach((key, partition) => this.partitionOfKey.set(key, partition))
    this.claims = this.streams.map(() => ({ cursor: '0-0', lastScan: -Infinity }))
    this.now = options.now ?? (() => performance.now())
    this.ringAll()
  }

  /** One pipeline per partition (a Cluster pipeline cannot span slots), all in parallel. */
  async add(values: QueuedRating[]): Promise<void> {
    const { replicated, subscriber } = this.options
    const byPartition = grouped(values, (value) => partitionOf(agentOf(value.rating), this.options.partitions))
    await Promise.all(
      [...byPartition].map(async ([partition, group]) => {
        const pipeline = (replicated?.connection ?? this.redis).pipeline()
        for (const value of group) pipeline.xadd(this.streams[partition], '*', 'r', JSON.stringify(value))
        if (subscriber) pipeline.spublish(this.keys.queueBell(partition), '1')
        await execReplicated(pipeline, replicated)
      })
    )
  }

  /** Up to about `count` entries (reclaimed ones first), an equal share from each partition that has some. */
  async read(count: number, blockMs: number): Promise<QueueEntry[]> {
    if (this.closed) return []
    await this.ensureGroups()
    try {
      const reclaimed = await this.reclaim(count)
      if (reclaimed.length) return reclaimed
      const waitMs = Math.min(blockMs, Math.ceil(this.options.claimMs / 2))
      return this.options.blocking ? await this.readBlocking(this.options.blocking, count, waitMs) : await this.readRung(count, waitMs)
    } catch (err) {
      // A stream (and its group) was deleted: create them again on the next read.
      if (err instanceof Error && err.message.includes('NOGROUP')) this.groups = null
      throw err
    }
  }

  async ack(id: string): Promise<void> {
    const [partition, streamId] = located(id)
    const key = this.streams[partition]
    await this.redis.multi().xack(key, GROUP, streamId).xdel(key, streamId).exec()
  }

  async touch(ids: string[]): Promise<void> {
    const byPartition = grouped(ids.map(located), ([partition]) => partition)
    await Promise.all(
      [...byPartition].map(([partition, held]) =>
        this.redis.call('XCLAIM', [this.streams[partition], GROUP, this.options.consumer, 0, ...held.map(([, id]) => id), 'JUSTID'])
      )
    )
  }

  /** Entries in every partition, not yet acknowledged. */
  async depth(): Promise<number> {
    return (await this.depths()).reduce((sum, length) => sum + length, 0)
  }

  depths(): Promise<number[]> {
    return Promise.all(this.streams.map((key) => this.redis.xlen(key)))
  }

  async close(): Promise<void> {
    this.closed = true
    this.bell.wake()
    this.options.blocking?.disconnect()
    const { subscriber } = this.options
    if (subscriber && this.bells) await Promise.all(this.streams.map((_, partition) => subscriber.unsubscribe(this.keys.queueBell(partition))))
  }

  /** Single Redis: one XREADGROUP BLOCK over every partition, COUNT being per partition. */
  private async readBlocking(blocking: RedisClient, count: number, waitMs: number): Promise<QueueEntry[]> {
    if (blocking.status !== 'ready') await onceWithin(blocking, 'ready', waitMs)
    const perPartition = Math.ceil(count / this.streams.length)
    const raw = await blocking.call('XREADGROUP', [
      'GROUP', GROUP, this.options.consumer, 'COUNT', perPartition, 'BLOCK', waitMs,
      'STREAMS', ...this.streams, ...this.streams.map(() => '>')
    ])
    return perStream(raw).flatMap(([key, found]) => entries(this.partitionOfKey.get(key) ?? 0, found))
  }

  /** Cluster: reads the partitions that may have entries; none had any: sleeps until a doorbell or `waitMs`. */
  private async readRung(count: number, waitMs: number): Promise<QueueEntry[]> {
    await this.listenToBells()
    const found = await this.readDue(count)
    if (found.length || this.closed) return found
    await this.bell.sleep(waitMs)
    if (this.due.size === 0) this.ringAll() // no ring within the wait: look everywhere once
    return this.readDue(count)
  }

  private async readDue(count: number): Promise<QueueEntry[]> {
    const partitions = [...this.due]
    this.due.clear()
    if (partitions.length === 0) return []
    const perPartition = Math.ceil(count / partitions.length)
    const reads = await Promise.all(
      partitions.map(async (partition) => {
        const raw = await this.redis.call('XREADGROUP', [
          'GROUP', GROUP, this.options.consumer, 'COUNT', perPartition, 'STREAMS', this.streams[partition], '>'
        ])
        const read = perStream(raw).flatMap(([, found]) => entries(partition, found))
        if (read.length === perPartition) this.due.add(partition) // maybe more where these came from
        return read
      })
    )
    return reads.flat()
  }

  private ringAll(): void {
    for (let partition = 0; partition < this.streams.length; partition++) this.due.add(partition)
  }

  private listenToBells(): Promise<void> {
    const { subscriber } = this.options
    if (!subscriber) return Promise.resolve()
    this.bells ??= (async () => {
      subscriber.onReconnect((subscribed) =>
        subscribed.then(() => {
          this.ringAll() // rings may have been missed while the subscriber was away
          this.bell.wake()
        }, () => {})
      )
      await Promise.all(
        this.streams.map((_, partition) =>
          subscriber.subscribe(this.keys.queueBell(partition), () => {
            this.due.add(partition)
            this.bell.wake()
          })
        )
      )
    })().catch((err: unknown) => {
      this.bells = null
      throw err
    })
    return this.bells
  }

  /** Entries idle for the claim timeout (their consumer died), looked for in each partition at most every half timeout. */
  private async reclaim(count: number): Promise<QueueEntry[]> {
    const { consumer, claimMs } = this.options
    const now = this.now()
    const due = this.claims.flatMap((claim, partition) => (now - claim.lastScan >= claimMs / 2 ? [partition] : []))
    const perPartition = Math.ceil(count / Math.max(1, due.length))
    const reclaimed = await Promise.all(
      due.map(async (partition) => {
        const claim = this.claims[partition]
        const raw = await this.redis.call('XAUTOCLAIM', [this.streams[partition], GROUP, consumer, claimMs, claim.cursor, 'COUNT', perPartition])
        if (!Array.isArray(raw)) return []
        claim.cursor = String(raw[0])
        // A full scan of the partition done: rest until the next half timeout.
        if (claim.cursor === '0-0') claim.lastScan = now
        return entries(partition, raw[1])
      })
    )
    return reclaimed.flat()
  }

  private ensureGroups(): Promise<void> {
    this.groups ??= Promise.all(
      this.streams.map((key) =>
        this.redis.xgroup('CREATE', key, GROUP, '0', 'MKSTREAM').then(
          () => undefined,
          (err: Error) => {
            if (!err.message.includes('BUSYGROUP')) throw err
          }
        )
      )
    ).then(
      () => undefined,
      (err: unknown) => {
        this.groups = null
        throw err
      }
    )
    return this.groups
  }
}
