import type { Principal } from '../auth/credentials.js'
import { HttpError } from '../errors.js'
import type { Limiter } from './limiter.js'
import type { Action } from './policies.js'
import { rateLimitHeaders, retryAfterSeconds } from './token-bucket.js'

/** What a bucket key is read from: the client address, or a claim of the verified caller. */
export interface Caller {
  ip: string
  principal?: Principal
}

/** The bucket key of a caller under a policy's `key_selector` (`ip` or `jwt.claims.<name>`). */
export function keySelector(selector: string): (caller: Caller) => string {
  if (selector === 'ip') return (caller) => `ip:${caller.ip}`
  const claim = selector.slice('jwt.claims.'.length)
  return (caller) => {
    const value = caller.principal?.claims?.[claim]
    if (typeof value === 'string' && value !== '') return value
    if (typeof value === 'number') return String(value)
    throw new HttpError(401, `token claim ${claim} is required`, { 'WWW-Authenticate': 'Bearer error="invalid_token"' })
  }
}

/**
 * The preHandler of a route limited by the bucket of `action`: charges the caller's bucket before
 * the handler, answers 429 with Retry-After when it is empty (503 when the limiter cannot decide),
 * and sets the RateLimit headers on every answer it lets through (a shadow policy's refusals
 * included). The policy is read per request: a reloaded BUCKETS_FILE applies at once.
 */
export function chargeBucket(limiter: Pick<Limiter, 'take' | 'policy'>, action: Action) {
  let selector = ''
  let keyOf: (caller: Caller) => string = () => ''
  return async (request: Caller, reply: { headers(values: Record<string, string>): unknown }): Promise<void> => {
    const { key_selector } = limiter.policy(action)
    if (key_selector !== selector) {
      selector = key_selector
      keyOf = keySelector(key_selector)
    }
    const decision = await limiter.take(action, keyOf(request))
    if (decision.unavailable) throw new HttpError(503, 'rate limiter unavailable, retry shortly', { 'Retry-After': '1' })
    const headers = rateLimitHeaders(action, decision.limits, decision)
    if (!decision.allowed) {
      const seconds = retryAfterSeconds(decision.retryAfterMs)
      throw new HttpError(429, `rate limit of ${action} exceeded: retry in ${seconds} s`, { ...headers, 'Retry-After': String(seconds) })
    }
    reply.headers(headers)
  }
}
