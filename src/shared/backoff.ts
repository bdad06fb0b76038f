export interface BackoffOptions {
  baseMs: number
  maxMs: number
  /** The jitter's source in [0, 1) (Math.random unless a test fixes it). */
  random?: () => number
}

/**
 * Exponential backoff with full jitter (AWS architecture blog): a uniform delay in
 * [0, min(max, base·2^attempt)), so many clients retrying together spread out.
 */
export function backoffDelay(attempt: number, { baseMs, maxMs, random = Math.random }: BackoffOptions): number {
  const ceiling = Math.min(maxMs, baseMs * 2 ** Math.min(attempt, 30))
  return Math.floor(random() * ceiling)
}
