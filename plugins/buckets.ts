import type { FastifyRequest } from 'fastify'
import fp from 'fastify-plugin'
import { performance } from 'node:perf_hooks'
import { rateLimitHeaders, retryAfterSeconds } from '../src/limits/token-bucket.js'
import { withTimeout } from '../src/shared/timeout.js'
import { HttpError } from '../src/errors.js'
import { limitsOf, loadPolicies, type Action, type BucketPolicy } from '../src/limits/policies.js'
import { MemoryBucketStore, RedisBucketStore, type BucketStore, type Decision } from '../src/limits/bucket-store.js'

export type { Action, BucketPolicy } from '../src/limits/policies.js'
export type { Decision } from '../src/limits/bucket-store.js'

declare module 'fastify' {
  interface FastifyInstance {
    buckets: {
      /** One atomic decision for `key` under the action's policy; applies the fail mode, never throws for Redis. */
      take(action: Action, key: string): Promise<Decision>
      policy(action: Action): BucketPolicy
    }
  }
  interface FastifyContextConfig {
    /** Charge the caller's bucket of this action before the handler (429 + RateLimit headers). */
    bucket?: Action
  }
}

/** Agents known to be empty, remembered at most this many at once. */
const KNOWN_EMPTY_MAX = 10_000
/** How long a fail-closed caller (forward, delivery) is told to wait. */
const CLOSED_RETRY_MS = 1000

/** The bucket key of a request: a JWT claim of the verified caller, or the client address. */
function selectKey(selector: string, request: FastifyRequest): string {
  if (selector === 'ip') return `ip:${request.ip}`
  const claim = selector.slice('jwt.claims.'.length)
  const value = request.principal?.claims?.[claim]
  if (typeof value === 'string' && value !== '') return value
  if (typeof value === 'number') return String(value)
  throw new HttpError(401, `token claim ${claim} is required`, { 'WWW-Authenticate': 'Bearer error="invalid_token"' })
}

/**
 * Token buckets per agent and action (SPEC 5): Redis when configured (shared by replicas),
 * process memory otherwise; RATE_LIMIT_FAIL_MODE when Redis fails or is slow.
 */
export default fp(
  async (app) => {
    const { BUCKETS_FILE, RATE_LIMIT_FAIL_MODE: failMode, REDIS_TIMEOUT_MS } = app.config
    const policies = loadPolicies(BUCKETS_FILE)
    const { metrics, keys } = app
    const store: BucketStore = app.redis ? new RedisBucketStore(app.redis) : new MemoryBucketStore()
    // Buckets of this replica alone, used only while Redis is unreachable in `local` mode.
    const local = app.redis ? new MemoryBucketStore() : store
    // agent+action -> instant (performance.now) before which the bucket cannot hold a token.
    const knownEmpty = new Map<string, number>()
    let outage = false

    app.log.info(
      { policies, store: app.redis ? 'redis' : 'memory (this replica only)', failMode },
      'token buckets ready'
    )

    const failed = (action: Action, policy: BucketPolicy, key: string, err: Error): Promise<Decision> => {
      metrics.redisErrors.inc({ op: 'bucket' })
      if (!outage) {
        outage = true
        app.log.warn({ err: err.message, failMode }, 'bucket store unavailable: applying RATE_LIMIT_FAIL_MODE')
      }
      metrics.bucketDecisions.inc({ action, result: `fail_${failMode}` })
      if (failMode === 'local') return local.take(key, policy)
      if (failMode === 'open') return Promise.resolve({ allowed: true, remaining: policy.capacity, retryAfterMs: 0, resetMs: 0 })
      return Promise.resolve({ allowed: false, remaining: 0, retryAfterMs: CLOSED_RETRY_MS, resetMs: 0, unavailable: true })
    }

    const take = async (action: Action, agent: string): Promise<Decision> => {
      const policy = policies[action]
      const key = keys.bucket(agent, action)
      const started = performance.now()
      const emptyUntil = knownEmpty.get(key)
      if (emptyUntil !== undefined) {
        // No token can appear before emptyUntil (other replicas only take), so the answer is the same as Redis's.
        if (started < emptyUntil) {
          metrics.bucketDecisions.inc({ action, result: 'limited' })
          metrics.bucketRemaining.observe({ action }, 0)
          const retryAfterMs = Math.ceil(emptyUntil - started)
          return { allowed: false, remaining: 0, retryAfterMs, resetMs: Math.ceil(retryAfterMs + ((policy.capacity - 1) * 1000) / policy.refill_rate) }
        }
        knownEmpty.delete(key)
      }

      let decision: Decision
      try {
        decision = app.redis ? await withTimeout(store.take(key, policy), REDIS_TIMEOUT_MS) : await store.take(key, policy)
      } catch (err) {
        return failed(action, policy, key, err as Error)
      }
      if (app.redis) {
        metrics.redisDuration.observe({ op: 'bucket' }, (performance.now() - started) / 1000)
        if (outage) {
          outage = false
          app.log.info('bucket store available again: shared limits apply')
        }
      }
      metrics.bucketDecisions.inc({ action, result: decision.allowed ? 'allowed' : 'limited' })
      metrics.bucketRemaining.observe({ action }, decision.remaining)
      if (!decision.allowed && app.redis) {
        // Measured from before the call: Redis decided no earlier, so this errs on the early side.
        if (knownEmpty.size >= KNOWN_EMPTY_MAX) knownEmpty.delete(knownEmpty.keys().next().value as string)
        knownEmpty.set(key, started + decision.retryAfterMs)
      }
      return decision
    }

    app.decorate('buckets', { take, policy: (action: Action) => policies[action] })

    app.addHook('preHandler', async (request, reply) => {
      const action = request.routeOptions.config.bucket
      if (!action) return
      const policy = policies[action]
      const decision = await take(action, selectKey(policy.key_selector, request))
      if (decision.unavailable) throw new HttpError(503, 'rate limiter unavailable, retry shortly', { 'Retry-After': '1' })
      const headers = rateLimitHeaders(action, limitsOf(policy), decision)
      if (!decision.allowed) {
        const seconds = retryAfterSeconds(decision.retryAfterMs)
        throw new HttpError(429, `rate limit of ${action} exceeded: retry in ${seconds} s`, {
          ...headers,
          'Retry-After': String(seconds)
        })
      }
      reply.headers(headers)
    })

    app.addHook('onClose', async () => {
      store.close()
      local.close()
      knownEmpty.clear()
    })
  },
  { name: 'buckets', dependencies: ['metrics', 'redis'] }
)
