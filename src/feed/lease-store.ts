import type { ClientContext, Result } from 'ioredis'
import type { RedisClient } from '../redis/client.js'
import type { Keys } from '../redis/keys.js'
import { COMPARE_AND_DELETE, defineScripts } from '../redis/scripts.js'

/** What an acquisition attempt saw: whether `owner` now holds the lease, and the current facts. */
export interface LeaseView {
  acquired: boolean
  /** Who holds the lease now (null: nobody). */
  holder: string | null
  /** The fencing token of the current holder's term (null: none taken yet). */
  fence: number | null
  /** Milliseconds until the current lease expires (0 when nobody holds it). */
  ttlMs: number
}

/**
 * One exclusive, expiring lease with a fencing token: every acquisition takes a new, larger
 * token, and a renewal succeeds only while both the holder and its token are still current,
 * so a holder that was paused past its lease cannot renew its way back into stale ownership.
 */
export interface LeaseStore {
  /** Takes the lease when it is free (or already ours, then with a new token). */
  acquire(owner: string, ttlMs: number): Promise<LeaseView>
  /** Extends the lease for `ttlMs`; false when `owner` with `fence` no longer holds it. */
  renew(owner: string, fence: number, ttlMs: number): Promise<boolean>
  /** Gives the lease up if `owner` still holds it (never deletes another holder's lease). */
  release(owner: string): Promise<void>
  close(): Promise<void>
}

export interface MemoryLeaseOptions {
  now?: () => number
}

/** One process is one replica: the lease is only held against itself (tests, demo). */
export class MemoryLeaseStore implements LeaseStore {
  private holder: string | null = null
  private fence = 0
  private expiresAt = 0
  private readonly now: () => number

  constructor({ now = () => performance.now() }: MemoryLeaseOptions = {}) {
    this.now = now
  }

  async acquire(owner: string, ttlMs: number): Promise<LeaseView> {
    const now = this.now()
    const held = this.current()
    if (held !== null && held !== owner) {
      return { acquired: false, holder: held, fence: this.fence, ttlMs: Math.ceil(this.expiresAt - now) }
    }
    this.holder = owner
    this.fence += 1
    this.expiresAt = now + ttlMs
    return { acquired: true, holder: owner, fence: this.fence, ttlMs }
  }

  async renew(owner: string, fence: number, ttlMs: number): Promise<boolean> {
    if (this.current() !== owner || fence !== this.fence) return false
    this.expiresAt = this.now() + ttlMs
    return true
  }

  async release(owner: string): Promise<void> {
    if (this.current() === owner) this.holder = null
  }

  async close(): Promise<void> {}

  private current(): string | null {
    return this.holder !== null && this.now() < this.expiresAt ? this.holder : null
  }
}

// KEYS[1] lease, KEYS[2] fence (same hash tag); ARGV[1] owner, ARGV[2] ttl ms.
// SET NX PX takes a free lease; our own lease is re-taken (a new term, a new token).
// Returns { acquired 0|1, holder or false, fence or false, pttl }.
const ACQUIRE = `
local taken = redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2])
if not taken and redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  taken = true
end
if taken then
  return { 1, ARGV[1], redis.call('INCR', KEYS[2]), tonumber(ARGV[2]) }
end
return { 0, redis.call('GET', KEYS[1]), redis.call('GET', KEYS[2]), redis.call('PTTL', KEYS[1]) }
`

// Compare-and-extend: only the holder whose token is still the latest one.
const RENEW = `
if redis.call('GET', KEYS[1]) == ARGV[1] and redis.call('GET', KEYS[2]) == ARGV[3] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
`

declare module 'ioredis' {
  interface RedisCommander<Context extends ClientContext> {
    moltbridgeLeaseAcquire(
      lease: string,
      fence: string,
      owner: string,
      ttlMs: number
    ): Result<[number, string | null, string | number | null, number], Context>
    moltbridgeLeaseRenew(lease: string, fence: string, owner: string, ttlMs: number, token: number): Result<number, Context>
  }
}

/** The lease in Redis: its expiry runs on Redis's clock, so replicas' clocks never matter. */
export class RedisLeaseStore implements LeaseStore {
  constructor(
    private readonly redis: RedisClient,
    private readonly keys: Pick<Keys, 'lease' | 'fence'>
  ) {
    defineScripts(redis, {
      LeaseAcquire: { keys: 2, lua: ACQUIRE },
      LeaseRenew: { keys: 2, lua: RENEW },
      CompareAndDelete: COMPARE_AND_DELETE
    })
  }

  async acquire(owner: string, ttlMs: number): Promise<LeaseView> {
    const { lease, fence } = this.keys
    const [acquired, holder, token, pttl] = await this.redis.moltbridgeLeaseAcquire(lease, fence, owner, ttlMs)
    return {
      acquired: acquired === 1,
      holder: holder ?? null,
      fence: token === null ? null : Number(token),
      ttlMs: Math.max(0, pttl)
    }
  }

  async renew(owner: string, fence: number, ttlMs: number): Promise<boolean> {
    return (await this.redis.moltbridgeLeaseRenew(this.keys.lease, this.keys.fence, owner, ttlMs, fence)) === 1
  }

  async release(owner: string): Promise<void> {
    await this.redis.moltbridgeCompareAndDelete(this.keys.lease, owner)
  }

  /** The connection is the app's: nothing of its own to close. */
  async close(): Promise<void> {}
}
