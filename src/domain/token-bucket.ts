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

export function refill(state: BucketState | undefined, limits: BucketLimits, now: number): BucketState {
  if (!state) return { tokens: limits.capacity, updatedAt: now }
  const elapsed = Math.max(0, now - state.updatedAt)
  return { tokens: Math.min(limits.capacity, state.tokens + (elapsed * limits.refillRate) / 1000), updatedAt: now }
}

/** Takes `cost` tokens if they are there; either way reports what is left and when more come. */
export function take(state: BucketState | undefined, limits: BucketLimits, now: number, cost = 1): TakeResult {
  const current = refill(state, limits, now)
  const allowed = current.tokens >= cost
  const tokens = allowed ? current.tokens - cost : current.tokens
  const next = { tokens, updatedAt: now }
  const perTokenMs = 1000 / limits.refillRate
  return {
    allowed,
    state: next,
    remaining: Math.floor(tokens),
    retryAfterMs: tokens >= cost ? 0 : Math.ceil((cost - tokens) * perTokenMs),
    resetMs: Math.ceil((limits.capacity - tokens) * perTokenMs)
  }
}
