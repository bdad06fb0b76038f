import { performance } from 'node:perf_hooks'

/** Cancels a scheduled call; a no-op once it ran. */
export type Cancel = () => void

/** Longest delay Node's timers accept; a longer one would fire at once (every 1 ms, with a warning). */
export const MAX_TIMER_MS = 2 ** 31 - 1

/** A delay Node's timers keep: negative → 0, beyond MAX_TIMER_MS → MAX_TIMER_MS (never "at once, every 1 ms"). */
export function clampDelay(ms: number): number {
  return Math.min(Math.max(0, ms), MAX_TIMER_MS)
}

/**
 * Time as seen by logic that waits: monotonic and wall-clock milliseconds and calls scheduled
 * on that same clock, so a test moves time instead of sleeping through it.
 */
export interface Clock {
  /** Monotonic milliseconds (intervals, buckets, leases). */
  now(): number
  /** Unix milliseconds (token expiry). */
  wallMs(): number
  /** Runs `run` once `ms` milliseconds of this clock have passed. */
  after(ms: number, run: () => void): Cancel
  /** Runs `run` every `ms` milliseconds. */
  every(ms: number, run: () => void): Cancel
}

/**
 * `performance.now()`, `Date.now()` and Node's timers: delays clamped to what Node accepts,
 * unref'd (a socket or a server keeps the process up, never a timer of ours).
 */
export const systemClock: Clock = {
  now: () => performance.now(),
  wallMs: () => Date.now(),
  after(ms, run) {
    const timer = setTimeout(run, clampDelay(ms)).unref()
    return () => clearTimeout(timer)
  },
  every(ms, run) {
    const timer = setInterval(run, clampDelay(ms)).unref()
    return () => clearInterval(timer)
  }
}
