import { randomBytes } from 'node:crypto'
import type { Result } from 'ioredis'
import type { RedisClient } from '../redis/client.js'
import { dedupKey, type Rating } from '../rating.js'
import type { Keys } from '../redis/keys.js'
import { COMPARE_AND_DELETE, defineScripts } from '../redis/scripts.js'

/**
 * `claimed`: this consumer may forward the rating now; `done`: it was forwarded already (ack it,
 * do not forward); `inflight`: another consumer is forwarding it right now (try again later).
 */
export type ClaimResult = 'claimed' | 'done' | 'inflight'

/**
 * Remembers forwarded ratings by `(user_id, item_id, timestamp)` (SPEC 6). Marked `done` only
 * after OpenClaw answered 2xx, so a failure never loses a rating; a short in-flight claim keeps
 * two consumers from forwarding the same rating at once.
 */
export interface DedupStore {
  /** Claims the rating for `claimMs`, unless it is done or claimed by someone else. */
  claim(rating: Rating, claimMs: number): Promise<ClaimResult>
  /** Forwarded: remember it for the dedup TTL. */
  done(rating: Rating): Promise<void>
  /** Not forwarded after all: drop our claim (only ours) so it can be tried again. */
  release(rating: Rating): Promise<void>
}

const DONE = 'done'

/** This process's claims carry its token, so a release never drops another consumer's claim. */
const claimToken = () => `inflight:${randomBytes(6).toString('hex')}`

const CLAIM = `
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return 'claimed' end
if redis.call('GET', KEYS[1]) == 'done' then return 'done' end
return 'inflight'`

declare module 'ioredis' {
  interface RedisCommander<Context> {
    moltbridgeDedupClaim(key: string, token: string, claimMs: number): Result<ClaimResult, Context>
  }
}

export class RedisDedup implements DedupStore {
  private readonly token = claimToken()

  constructor(
    private readonly redis: RedisClient,
    private readonly keys: Keys,
    private readonly ttlSeconds: number
  ) {
    defineScripts(redis, { DedupClaim: { keys: 1, lua: CLAIM }, CompareAndDelete: COMPARE_AND_DELETE })
  }

  claim(rating: Rating, claimMs: number): Promise<ClaimResult> {
    return this.redis.moltbridgeDedupClaim(this.key(rating), this.token, claimMs)
  }

  async done(rating: Rating): Promise<void> {
    await this.redis.set(this.key(rating), DONE, 'EX', this.ttlSeconds)
  }

  async release(rating: Rating): Promise<void> {
    await this.redis.moltbridgeCompareAndDelete(this.key(rating), this.token)
  }

  private key(rating: Rating): string {
    return this.keys.dedup(rating.user_id, rating.item_id, rating.timestamp)
  }
}

/**
 * One process: forwarded keys in expiry order (all share one TTL), so expired ones are swept
 * from the front; at most `max` are kept (the oldest go first).
 */
export class MemoryDedup implements DedupStore {
  private readonly forwarded = new Map<string, number>()
  private readonly inflight = new Map<string, number>()

  constructor(
    private readonly ttlSeconds: number,
    private readonly max = 100_000,
    private readonly now = () => performance.now()
  ) {}

  async claim(rating: Rating, claimMs: number): Promise<ClaimResult> {
    const key = dedupKey(rating)
    const now = this.sweep()
    if (this.forwarded.has(key)) return 'done'
    if ((this.inflight.get(key) ?? 0) > now) return 'inflight'
    this.inflight.set(key, now + claimMs)
    return 'claimed'
  }

  async done(rating: Rating): Promise<void> {
    const key = dedupKey(rating)
    this.inflight.delete(key)
    this.forwarded.delete(key)
    this.forwarded.set(key, this.now() + this.ttlSeconds * 1000)
    if (this.forwarded.size > this.max) {
      for (const oldest of this.forwarded.keys()) {
        this.forwarded.delete(oldest)
        break
      }
    }
  }

  async release(rating: Rating): Promise<void> {
    this.inflight.delete(dedupKey(rating))
  }

  private sweep(): number {
    const now = this.now()
    for (const [key, expiresAt] of this.forwarded) {
      if (expiresAt > now) break
      this.forwarded.delete(key)
    }
    return now
  }
}
