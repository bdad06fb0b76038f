/**
 * Token-bucket math, shared by the memory store and mirrored step by step by the Redis Lua
 * script. Times are milliseconds from any monotonic clock; tokens are fractional internally.
 */
export interface BucketState {
  tokens: number
  /** When `tokens` was last brought up to date. */
  updatedAt: number
}

export interface BucketLimits {
  capacity: number
  /** Tokens per second. */
  refillRate: number
}

export interface TakeResult {
  allowed: boolean
  state: BucketState
  /** Whole tokens left after the decision. */
  remaining: number
  /** Milliseconds until the next whole token (0 when one is available now). */
  retryAfterMs: number
  /** Milliseconds until the bucket is full again. */
  resetMs: number
}

const EPSILON = 1e-9

export function refill(state: BucketState | undefined, limits: BucketLimits, now: number): BucketState {
  if (!state) return { tokens: limits.capacity, updatedAt: now }
  const elapsed = Math.max(0, now - state.updatedAt)
  return { tokens: Math.min(limits.capacity, state.tokens + (elapsed * limits.refillRate) / 1000), updatedAt: now }
}

/** Takes `cost` tokens if they are there; either way reports what is left and when more come. */
export function take(state: BucketState | undefined, limits: BucketLimits, now: number, cost = 1): TakeResult {
  const current = refill(state, limits, now)
  // The epsilon absorbs float error, so a retry exactly at the advertised time succeeds.
  const allowed = current.tokens >= cost - EPSILON
  const tokens = allowed ? Math.max(0, current.tokens - cost) : current.tokens
  const next = { tokens, updatedAt: now }
  const perTokenMs = 1000 / limits.refillRate
  return {
    allowed,
    state: next,
    remaining: Math.floor(tokens),
    retryAfterMs: tokens >= cost - EPSILON ? 0 : Math.ceil((cost - tokens) * perTokenMs),
    resetMs: Math.ceil((limits.capacity - tokens) * perTokenMs)
  }
}

/**
 * The fields of draft-ietf-httpapi-ratelimit-headers-10 for one bucket, named `name`:
 * - `RateLimit-Policy: "<name>";q=<capacity>;w=<window>`: the quota is the bucket capacity
 *   and the window `w` is the seconds an empty bucket takes to refill completely
 *   (capacity / refill rate, rounded up), i.e. the interval over which `q` units come back.
 * - `RateLimit: "<name>";r=<remaining>;t=<seconds>`: `r` is whole tokens left and `t` the
 *   seconds (rounded up) until the quota is fully restored (the bucket is full again).
 * The 429's `Retry-After` (next token) is separate and usually shorter than `t`.
 */
export function rateLimitHeaders(
  name: string,
  limits: BucketLimits,
  decision: { remaining: number; resetMs: number }
): { 'RateLimit-Policy': string; RateLimit: string } {
  const window = Math.max(1, Math.ceil(limits.capacity / limits.refillRate))
  return {
    'RateLimit-Policy': `"${name}";q=${limits.capacity};w=${window}`,
    RateLimit: `"${name}";r=${Math.max(0, decision.remaining)};t=${Math.ceil(decision.resetMs / 1000)}`
  }
}

/** Whole seconds a limited client should wait for the next token: rounded up, at least 1. */
export function retryAfterSeconds(retryAfterMs: number): number {
  return Math.max(1, Math.ceil(retryAfterMs / 1000))
}
