import { performance } from 'node:perf_hooks'
import type { Result, ClientContext } from 'ioredis'
import type { RedisClient } from '../redis/client.js'
import { take, type BucketLimits, type BucketState } from './token-bucket.js'
import { limitsOf, type BucketPolicy } from './policies.js'
import { BUCKET_TAKE } from './bucket-take.js'

export interface Decision {
  allowed: boolean
  /** Tokens left after this decision (whole tokens). */
  remaining: number
  /** Milliseconds until the next token is due (0 when one is available). */
  retryAfterMs: number
  /** Milliseconds until the bucket is full again. */
  resetMs: number
  /** Set when the limiter could not decide (Redis down, RATE_LIMIT_FAIL_MODE=closed): a 503, not a 429. */
  unavailable?: boolean
}

/** Where buckets live: one atomic take per call. */
export interface BucketStore {
  take(key: string, policy: BucketPolicy): Promise<Decision>
  close(): void
}

interface Entry {
  state: BucketState
  limits: BucketLimits
}

export interface MemoryStoreOptions {
  /** Most buckets kept; the least recently used goes first beyond it. */
  maxEntries?: number
  /** How often buckets that are full again are dropped. */
  sweepMs?: number
}

/** In-process buckets (one replica only): the domain math on `performance.now()`, bounded. */
export class MemoryBucketStore implements BucketStore {
  private readonly entries = new Map<string, Entry>()
  private readonly maxEntries: number
  private readonly timer: NodeJS.Timeout

  constructor({ maxEntries = 100_000, sweepMs = 10_000 }: MemoryStoreOptions = {}) {
    this.maxEntries = maxEntries
    this.timer = setInterval(() => this.sweep(), sweepMs).unref()
  }

  async take(key: string, policy: BucketPolicy): Promise<Decision> {
    const limits = limitsOf(policy)
    const previous = this.entries.get(key)
    const result = take(previous?.state, limits, performance.now())
    // Re-insert so Map order is least recently used first.
    this.entries.delete(key)
    this.entries.set(key, { state: result.state, limits })
    if (this.entries.size > this.maxEntries) this.entries.delete(this.entries.keys().next().value as string)
    const { allowed, remaining, retryAfterMs, resetMs } = result
    return { allowed, remaining, retryAfterMs, resetMs }
  }

  get size(): number {
    return this.entries.size
  }

  /** A bucket that is full again is the same as no bucket: drop it (like the Redis key expiry). */
  sweep(now = performance.now()): void {
    for (const [key, { state, limits }] of this.entries) {
      if (state.tokens + ((now - state.updatedAt) * limits.refillRate) / 1000 >= limits.capacity) this.entries.delete(key)
    }
  }

  close(): void {
    clearInterval(this.timer)
    this.entries.clear()
  }
}

declare module 'ioredis' {
  interface RedisCommander<Context extends ClientContext> {
    moltbridgeBucketTake(
      key: string,
      capacity: number,
      refillRate: number,
      cost: number
    ): Result<[number, number, number, number], Context>
  }
}

/** Buckets shared by every replica: one Lua script per decision on Redis's clock. */
export class RedisBucketStore implements BucketStore {
  constructor(private readonly redis: RedisClient) {
    redis.defineCommand('moltbridgeBucketTake', { numberOfKeys: 1, lua: BUCKET_TAKE })
  }

  async take(key: string, policy: BucketPolicy): Promise<Decision> {
    const [allowed, remaining, retryAfterMs, resetMs] = await this.redis.moltbridgeBucketTake(
      key,
      policy.capacity,
      policy.refill_rate,
      1
    )
    return { allowed: allowed === 1, remaining, retryAfterMs, resetMs }
  }

  close(): void {
    /* the connection belongs to the redis plugin */
  }
}
