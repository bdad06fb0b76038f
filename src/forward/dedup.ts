import { LRUCache } from 'lru-cache'
import type { Result } from 'ioredis'
import type { RedisClient } from '../redis/client.js'
import { dedupKey, type Rating } from '../rating.js'
import type { Keys } from '../redis/keys.js'
import type { PublishMark } from '../events/event-store.js'
import { COMPARE_AND_DELETE, defineScripts } from '../redis/scripts.js'

/**
 * `claimed`: this consumer may forward the rating now; `done`: it was forwarded already (ack it,
 * do not forward); `inflight`: another consumer is forwarding it right now (try again later).
 */
export type ClaimResult = 'claimed' | 'done' | 'inflight'

/**
 * Remembers forwarded ratings by `(user_id, item_id, timestamp)`, so a rating delivered twice
 * (feed redelivery, a reclaimed queue entry) reaches OpenClaw once. Marked `done` only
 * after OpenClaw answered 2xx, so a failure never loses a rating; a short in-flight claim keeps
 * two consumers from forwarding the same rating at once.
 */
export interface DedupStore {
  /** Claims the rating for `claimMs`, unless it is done or claimed by someone else. */
  claim(rating: Rating, claimMs: number): Promise<ClaimResult>
  /** Forwarded: remember it for the dedup TTL. */
  done(rating: Rating): Promise<void>
  /**
   * The same as `done`, as a key for the event store to set in the publish's atomic step (Redis:
   * the key shares the user's hash slot); null when `done` must be called instead (memory).
   */
  publishMark(rating: Rating): PublishMark | null
  /** Not forwarded after all: drop our claim (only ours) so it can be tried again. */
  release(rating: Rating): Promise<void>
  /** Whatever is remembered of it goes: an operator retries a dead-lettered rating. */
  forget(rating: Rating): Promise<void>
  close(): Promise<void>
}

const DONE = 'done'

const CLAIM = `
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return 'claimed' end
if redis.call('GET', KEYS[1]) == 'done' then return 'done' end
return 'inflight'`

declare module 'ioredis' {
  interface RedisCommander<Context> {
    moltbridgeDedupClaim(key: string, token: string, claimMs: number): Result<ClaimResult, Context>
  }
}

export interface RedisDedupOptions {
  /** How long a forwarded rating is remembered. */
  ttlSeconds: number
  /** This replica's id: its claims carry it, so a release never drops another consumer's claim. */
  owner: string
}

export class RedisDedupStore implements DedupStore {
  private readonly token: string

  constructor(
    private readonly redis: RedisClient,
    private readonly keys: Pick<Keys, 'dedup'>,
    private readonly options: RedisDedupOptions
  ) {
    this.token = `inflight:${options.owner}`
    defineScripts(redis, { DedupClaim: { keys: 1, lua: CLAIM }, CompareAndDelete: COMPARE_AND_DELETE })
  }

  claim(rating: Rating, claimMs: number): Promise<ClaimResult> {
    return this.redis.moltbridgeDedupClaim(this.key(rating), this.token, claimMs)
  }

  async done(rating: Rating): Promise<void> {
    await this.redis.set(this.key(rating), DONE, 'EX', this.options.ttlSeconds)
  }

  publishMark(rating: Rating): PublishMark {
    return { key: this.key(rating), value: DONE, ttlS: this.options.ttlSeconds }
  }

  async release(rating: Rating): Promise<void> {
    await this.redis.moltbridgeCompareAndDelete(this.key(rating), this.token)
  }

  async forget(rating: Rating): Promise<void> {
    await this.redis.del(this.key(rating))
  }

  /** The connection is the app's: nothing of its own to close. */
  async close(): Promise<void> {}

  private key(rating: Rating): string {
    return this.keys.dedup(rating.user_id, rating.item_id, rating.timestamp)
  }
}

export interface MemoryDedupOptions {
  ttlSeconds: number
  /** Most ratings remembered (forwarded or claimed); the least recently used go first. */
  max?: number
  /** A monotonic clock in ms, never 0 (lru-cache reads a start at 0 as "never expires"). */
  now?: () => number
}

/** One process: the same states as in Redis (`done`, or claimed until an instant), in an LRU with TTL. */
export class MemoryDedupStore implements DedupStore {
  private readonly states: LRUCache<string, 'done' | 'inflight'>

  constructor({ ttlSeconds, max = 100_000, now = () => performance.now() }: MemoryDedupOptions) {
    // ttlResolution 0: every expiry check reads the clock (an injected one may jump).
    this.states = new LRUCache({ max, ttl: ttlSeconds * 1000, ttlResolution: 0, perf: { now } })
  }

  async claim(rating: Rating, claimMs: number): Promise<ClaimResult> {
    const key = dedupKey(rating)
    const state = this.states.get(key)
    if (state) return state
    this.states.set(key, 'inflight', { ttl: claimMs })
    return 'claimed'
  }

  async done(rating: Rating): Promise<void> {
    this.states.set(dedupKey(rating), DONE)
  }

  publishMark(): null {
    return null
  }

  async release(rating: Rating): Promise<void> {
    const key = dedupKey(rating)
    if (this.states.get(key) === 'inflight') this.states.delete(key)
  }

  async forget(rating: Rating): Promise<void> {
    this.states.delete(dedupKey(rating))
  }

  async close(): Promise<void> {
    this.states.clear()
  }
}
