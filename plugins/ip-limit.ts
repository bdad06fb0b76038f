import rateLimit from '@fastify/rate-limit'
import fp from 'fastify-plugin'
import { HttpError } from '../src/errors.js'
import { redisIpLimitStore } from '../src/limits/ip-limit-store.js'
import { retryAfterSeconds } from '../src/limits/token-bucket.js'

/** Probes and scrapers (often one address for a whole fleet) are never throttled or counted. */
const EXEMPT = new Set(['/healthz', '/readyz', '/metrics'])
const WINDOW_MS = 60_000

/**
 * The pre-auth limit: IP_RATE_LIMIT_MAX requests per minute per client address, so a
 * flood of bad tokens never reaches signature checks. Registered before auth; shared through
 * Redis when configured. A Redis that fails or misses REDIS_TIMEOUT_MS skips this limit
 * (skipOnError) rather than refusing or holding everyone: the agent buckets apply after auth.
 */
export default fp(
  async (app) => {
    const { IP_RATE_LIMIT_MAX: max, REDIS_TIMEOUT_MS: timeoutMs } = app.config
    if (max === 0) return

    await app.register(rateLimit, {
      // Not per route: route-level hooks run after app-level ones, i.e. after auth's (see below).
      global: false,
      max,
      timeWindow: WINDOW_MS,
      ...(app.redis ? { store: redisIpLimitStore(app.redis, app.keys, { timeoutMs, metrics: app.metrics }) } : {}),
      skipOnError: true,
      allowList: (request) => EXEMPT.has(request.routeOptions.url ?? ''),
      // Only the draft-10 fields (on the 429 below), not the legacy x-ratelimit-* ones.
      addHeaders: { 'x-ratelimit-limit': false, 'x-ratelimit-remaining': false, 'x-ratelimit-reset': false, 'retry-after': false },
      addHeadersOnExceeding: { 'x-ratelimit-limit': false, 'x-ratelimit-remaining': false, 'x-ratelimit-reset': false },
      errorResponseBuilder: (_request, { ttl }) => {
        const seconds = retryAfterSeconds(ttl)
        return new HttpError(429, `too many requests from this address: retry in ${seconds} s`, {
          'Retry-After': String(seconds),
          'RateLimit-Policy': `"ip";q=${max};w=${WINDOW_MS / 1000}`,
          RateLimit: `"ip";r=0;t=${seconds}`
        })
      }
    })

    // An app-level onRequest hook, added before auth's: it runs first on every request, and
    // also on unknown routes (404), so neither bad tokens nor path probing get past it.
    app.addHook('onRequest', app.rateLimit())
  },
  { name: 'ip-limit', dependencies: ['redis', 'metrics', 'load-shedding'] }
)
