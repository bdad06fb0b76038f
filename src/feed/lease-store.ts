import { performance } from 'node:perf_hooks'
import type { ClientContext, Result } from 'ioredis'
import type { RedisClient } from '../redis/client.js'
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
}

/** One process is one replica: the lease is only held against itself (tests, demo). */
export function createMemoryLeaseStore(): LeaseStore {
  let holder: string | null = null
  let fence = 0
  let expiresAt = 0
  const current = () => (holder !== null && performance.now() < expiresAt ? holder : null)
  return {
    async acquire(owner, ttlMs) {
      const now = performance.now()
      const held = current()
      if (held !== null && held !== owner) {
        return { acquired: false, holder: held, fence, ttlMs: Math.ceil(expiresAt - now) }
      }
      holder = owner
      fence += 1
      expiresAt = now + ttlMs
      return { acquired: true, holder, fence, ttlMs }
    },
    async renew(owner, token, ttlMs) {
      if (current() !== owner || token !== fence) return false
      expiresAt = performance.now() + ttlMs
      return true
    },
    async release(owner) {
      if (current() === owner) holder = null
    }
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
export function createRedisLeaseStore(redis: RedisClient, keys: { lease: string; fence: string }): LeaseStore {
  defineScripts(redis, {
    LeaseAcquire: { keys: 2, lua: ACQUIRE },
    LeaseRenew: { keys: 2, lua: RENEW },
    CompareAndDelete: COMPARE_AND_DELETE
  })
  return {
    async acquire(owner, ttlMs) {
      const [acquired, holder, fence, pttl] = await redis.moltbridgeLeaseAcquire(keys.lease, keys.fence, owner, ttlMs)
      return {
        acquired: acquired === 1,
        holder: holder ?? null,
        fence: fence === null ? null : Number(fence),
        ttlMs: Math.max(0, pttl)
      }
    },
    async renew(owner, fence, ttlMs) {
      return (await redis.moltbridgeLeaseRenew(keys.lease, keys.fence, owner, ttlMs, fence)) === 1
    },
    async release(owner) {
      await redis.moltbridgeCompareAndDelete(keys.lease, owner)
    }
  }
}
