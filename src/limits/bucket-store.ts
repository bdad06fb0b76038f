import { LRUCache } from 'lru-cache'
import { performance } from 'node:perf_hooks'
import type { Result, ClientContext } from 'ioredis'
import type { RedisClient } from '../redis/client.js'
import type { Keys } from '../redis/keys.js'
import { defineScripts, NOW_MS_LUA } from '../redis/scripts.js'
import { take, type BucketLimits, type BucketState } from './token-bucket.js'
import { limitsOf, type Action, type BucketPolicy } from './policies.js'

export interface Decision {
  allowed: boolean
  /** Tokens left after this decision (whole tokens). */
  remaining: number
  /** Milliseconds until the next token is due (0 when one is available). */
  retryAfterMs: number
  /** Milliseconds until the bucket is full again. */
  resetMs: number
  /** The limits decided with: the policy's, or the agent's override (RateLimit headers show them). */
  limits: BucketLimits
  /** Set when the limiter could not decide (Redis down, RATE_LIMIT_FAIL_MODE=closed): a 503, not a 429. */
  unavailable?: boolean
  /** A shadow policy refused it, and it was admitted anyway. */
  shadow?: boolean
}

/** Where buckets live: one atomic take per call, on the bucket of `agentId` for `action`. */
export interface BucketStore {
  take(agentId: string, action: Action, policy: BucketPolicy): Promise<Decision>
  close(): void
}

interface Entry {
  state: BucketState
  limits: BucketLimits
}

export interface MemoryBucketStoreOptions {
  /** Most buckets kept; the least recently used goes first beyond it. */
  maxEntries?: number
  /** How often buckets that are full again are dropped. */
  sweepMs?: number
  /** Milliseconds from any monotonic origin. */
  clock?: () => number
}

/**
 * In-process buckets (one replica only): the token-bucket math on a monotonic clock. Each bucket
 * is kept until it would be full again, since a full bucket is the same as no bucket (as the
 * Redis key expires); at most `maxEntries`, least recently used out first.
 */
export class MemoryBucketStore implements BucketStore {
  private readonly entries: LRUCache<string, Entry>
  private readonly clock: () => number
  private readonly timer: NodeJS.Timeout

  constructor({ maxEntries = 100_000, sweepMs = 10_000, clock = () => performance.now() }: MemoryBucketStoreOptions = {}) {
    this.clock = clock
    // ttlResolution 0: the clock is read on every check, so a test's fake clock is obeyed at once.
    this.entries = new LRUCache({ max: maxEntries, ttlResolution: 0, perf: { now: clock } })
    this.timer = setInterval(() => this.sweep(), sweepMs).unref()
  }

  async take(agentId: string, action: Action, policy: BucketPolicy): Promise<Decision> {
    const key = `${action}:${agentId}`
    const limits = limitsOf(policy)
    const now = this.clock()
    const result = take(this.entries.get(key)?.state, limits, now)
    // An lru-cache ttl of 0 means "forever": a bucket full again is dropped instead.
    if (result.resetMs > 0) this.entries.set(key, { state: result.state, limits }, { ttl: result.resetMs, start: now })
    else this.entries.delete(key)
    const { allowed, remaining, retryAfterMs, resetMs } = result
    return { allowed, remaining, retryAfterMs, resetMs, limits }
  }

  get size(): number {
    return this.entries.size
  }

  /** Drops the buckets that are full again (they would read as full anyway). */
  sweep(): void {
    this.entries.purgeStale()
  }

  close(): void {
    clearInterval(this.timer)
    this.entries.clear()
  }
}

/**
 * One token-bucket decision, the same steps as token-bucket.ts `take`, on the clock `now_ms()`.
 * KEYS[1] bucket hash {tokens, ts(ms)}, KEYS[2] the agent's overrides (admin API: fields
 * `<action>:capacity`, `<action>:refill_rate`); ARGV capacity, refill_rate (tokens/s), cost,
 * action. An override wins over the policy in the same atomic step. Returns {allowed 0/1,
 * remaining, retryAfterMs, resetMs, capacity, refill_rate (a string: Lua numbers come back as
 * integers)}. The key expires when the bucket would be full again (a missing key is a full bucket).
 * Exported for the property test, which runs this same body on a clock it controls.
 */
export const TAKE_BODY = `
local capacity = tonumber(ARGV[1])
local rate = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])
local own = redis.call('HMGET', KEYS[2], ARGV[4] .. ':capacity', ARGV[4] .. ':refill_rate')
if own[1] and own[2] then
  capacity = tonumber(own[1])
  rate = tonumber(own[2])
end
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
return {allowed, math.floor(tokens), retryAfter, reset, capacity, string.format('%.17g', rate)}
`

/** The decision on Redis's own clock (TIME): what every replica runs. */
const TAKE = `${NOW_MS_LUA}${TAKE_BODY}`

declare module 'ioredis' {
  interface RedisCommander<Context extends ClientContext> {
    moltbridgeBucketTake(
      key: string,
      overrides: string,
      capacity: number,
      refillRate: number,
      cost: number,
      action: string
    ): Result<[number, number, number, number, number, string], Context>
  }
}

/** Buckets shared by every replica: one Lua script per decision on Redis's clock. */
export class RedisBucketStore implements BucketStore {
  constructor(
    private readonly redis: RedisClient,
    private readonly keys: Keys
  ) {
    defineScripts(redis, { BucketTake: { keys: 2, lua: TAKE } })
  }

  async take(agentId: string, action: Action, policy: BucketPolicy): Promise<Decision> {
    const [allowed, remaining, retryAfterMs, resetMs, capacity, refillRate] = await this.redis.moltbridgeBucketTake(
      this.keys.bucket(agentId, action),
      this.keys.limits(agentId),
      policy.capacity,
      policy.refill_rate,
      1,
      action
    )
    return { allowed: allowed === 1, remaining, retryAfterMs, resetMs, limits: { capacity, refillRate: Number(refillRate) } }
  }

  close(): void {
    /* the connection belongs to the redis plugin */
  }
}
