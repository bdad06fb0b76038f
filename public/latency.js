// Feed→screen latency, measured in the page: from the moment the simulated Moltbook feed sent a
// rating (Date.now() in the demo process, listed by GET /demo/state) to the animation frame that
// shows its personalized score on the card. Page and demo run on the same machine: one clock.
// Ratings are matched by their key (item, timestamp) for the page's user; whichever of the two
// (the send time, the score on screen) comes first waits for the other.

const WINDOW_MS = 60_000
const KEEP_MS = 120_000

export function latencyTracker() {
  const sentAt = new Map() // key -> feed send time, the score not on screen yet
  const shownAt = new Map() // key -> time on screen, the send time not known yet
  const samples = [] // { at, ms }, oldest first

  const record = (at, ms) => samples.push({ at, ms: Math.max(0, ms) })

  function prune(now) {
    while (samples.length && samples[0].at < now - WINDOW_MS) samples.shift()
    for (const [key, at] of shownAt) if (at < now - KEEP_MS) shownAt.delete(key)
    for (const [key, at] of sentAt) if (at < now - KEEP_MS) sentAt.delete(key)
  }

  return {
    /** The feed sent the rating `key` at `ms`. */
    sent(key, ms) {
      const at = shownAt.get(key)
      if (at === undefined) return void sentAt.set(key, ms)
      shownAt.delete(key)
      record(at, at - ms)
    },
    /** The score of `key` was on screen at `at`. */
    shown(key, at) {
      const ms = sentAt.get(key)
      if (ms === undefined) return void shownAt.set(key, at)
      sentAt.delete(key)
      record(at, at - ms)
    },
    /** p50/p95/p99 (ms) of the last minute's samples; NaN without any. */
    percentiles(now = Date.now()) {
      prune(now)
      const sorted = samples.map((s) => s.ms).sort((a, b) => a - b)
      const at = (q) => (sorted.length ? sorted[Math.min(sorted.length - 1, Math.ceil(q * sorted.length) - 1)] : NaN)
      return { p50: at(0.5), p95: at(0.95), p99: at(0.99), count: sorted.length }
    },
    reset() {
      sentAt.clear()
      shownAt.clear()
      samples.length = 0
    }
  }
}
