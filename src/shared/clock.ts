import { performance } from 'node:perf_hooks'

/** Cancels a scheduled call; a no-op once it ran. */
export type Cancel = () => void

/**
 * Time as seen by logic that waits: a monotonic `now()` in milliseconds and calls scheduled on
 * that same clock, so a test moves time instead of sleeping through it.
 */
export interface Clock {
  now(): number
  /** Runs `run` once `ms` milliseconds of this clock have passed. */
  after(ms: number, run: () => void): Cancel
}

/** `performance.now()` and Node's timers. */
export const systemClock: Clock = {
  now: () => performance.now(),
  after(ms, run) {
    const timer = setTimeout(run, ms)
    return () => clearTimeout(timer)
  }
}
