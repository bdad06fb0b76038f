import { performance } from 'node:perf_hooks'
import type { Result, ClientContext } from 'ioredis'
import type { RedisClient } from '../redis/client.js'
import { take, type BucketLimits, type BucketState } from './token-bucket.js'
import { limitsOf, type BucketPolicy } from './policies.js'
import { defineScripts, NOW_MS_LUA } from '../redis/scripts.js'

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

/**
 * One token-bucket decision, the same steps as token-bucket.ts `take`, on Redis's clock.
 * KEYS[1] bucket hash {tokens, ts(ms)}; ARGV capacity, refill_rate (tokens/s), cost. Returns
 * {allowed 0/1, remaining, retryAfterMs, resetMs}. The key expires when the bucket would be
 * full again (a missing key is a full bucket).
 */
const TAKE = `${NOW_MS_LUA}
local capacity = tonumber(ARGV[1])
local rate = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])
local now = now_ms()
local state = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(state[1])
local ts = tonumber(state[2])
if tokens == nil or ts == nil then
  tokens = capacity
else
  tokens = math.min(capacity, tokens + math.max(0, now - ts) * rate / 1000)
end
local epsilon = 1e-9
local allowed = 0
if tokens >= cost - epsilon then
  allowed = 1
  tokens = math.max(0, tokens - cost)
end
local perToken = 1000 / rate
local retryAfter = 0
if tokens < cost - epsilon then retryAfter = math.ceil((cost - tokens) * perToken) end
local reset = math.ceil((capacity - tokens) * perToken)
if reset > 0 then
  redis.call('HSET', KEYS[1], 'tokens', string.format('%.17g', tokens), 'ts', string.format('%.17g', now))
  redis.call('PEXPIRE', KEYS[1], reset)
else
  redis.call('DEL', KEYS[1])
end
return {allowed, math.floor(tokens), retryAfter, reset}
`

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
    defineScripts(redis, { BucketTake: { keys: 1, lua: TAKE } })
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
