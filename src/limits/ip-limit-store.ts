import type { FastifyRateLimitStore, FastifyRateLimitStoreCtor } from '@fastify/rate-limit'
import type { ClientContext, Result } from 'ioredis'
import type { RedisClient } from '../redis/client.js'
import type { Keys } from '../redis/keys.js'
import { defineScripts } from '../redis/scripts.js'
import { timedCall, type CallMetrics } from '../shared/timed-call.js'

/**
 * One fixed-window count per client address: KEYS[1] counter; ARGV[1] window (ms). Returns
 * {count, ms left in the window}. A counter found without expiry gets one, so an address is
 * never refused for good.
 */
const INCR = `
local count = redis.call('INCR', KEYS[1])
local ttl = redis.call('PTTL', KEYS[1])
if count == 1 or ttl < 0 then
  ttl = tonumber(ARGV[1])
  redis.call('PEXPIRE', KEYS[1], ttl)
end
return {count, ttl}
`

declare module 'ioredis' {
  interface RedisCommander<Context extends ClientContext> {
    moltbridgeIpLimitIncr(key: string, windowMs: number): Result<[number, number], Context>
  }
}

export interface RedisIpLimitOptions {
  /** Budget of one count (REDIS_TIMEOUT_MS): past it the request goes on uncounted (skipOnError). */
  timeoutMs: number
  metrics: CallMetrics
}

/**
 * The `store` of @fastify/rate-limit for the per-IP limit, in Redis and shared by replicas. Its
 * own Redis store has no deadline: a Redis that stops answering would hold every request (even
 * probes of unknown routes) until it came back.
 */
export function redisIpLimitStore(redis: RedisClient, keys: Keys, options: RedisIpLimitOptions): FastifyRateLimitStoreCtor {
  defineScripts(redis, { IpLimitIncr: { keys: 1, lua: INCR } })
  return class RedisIpLimitStore implements FastifyRateLimitStore {
    incr(address: string, callback: (error: Error | null, result?: { current: number; ttl: number }) => void, windowMs: number): void {
      timedCall(options.metrics, 'ip_limit', options.timeoutMs, () => redis.moltbridgeIpLimitIncr(keys.ipLimit + address, windowMs)).then(
        ([current, ttl]) => callback(null, { current, ttl }),
        (err: Error) => callback(err)
      )
    }

    /** One count for every route: the limit is per address, not per route. */
    child(): FastifyRateLimitStore {
      return this
    }
  }
}
