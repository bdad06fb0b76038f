/** Longest delay Node's timers accept; a longer one would fire at once. */
const MAX_TIMER_MS = 2 ** 31 - 1

/** Time as the SSE hub sees it: injected, so tests drive heartbeats, expiry and buckets by hand. */
export interface HubClock {
  /** Monotonic milliseconds (delivery buckets). */
  monotonicMs(): number
  /** Unix milliseconds (token expiry). */
  wallMs(): number
  /** Runs `task` once after `ms`; returns what cancels it. */
  after(ms: number, task: () => void): () => void
  /** Runs `task` every `ms`; returns what stops it. */
  every(ms: number, task: () => void): () => void
}

/** Node's timers, unref'd: an open stream's socket keeps the process up, never its timers. */
export const systemClock: HubClock = {
  monotonicMs: () => performance.now(),
  wallMs: () => Date.now(),
  after(ms, task) {
    const timer = setTimeout(task, Math.min(ms, MAX_TIMER_MS)).unref()
    return () => clearTimeout(timer)
  },
  every(ms, task) {
    const timer = setInterval(task, ms).unref()
    return () => clearInterval(timer)
  }
}
