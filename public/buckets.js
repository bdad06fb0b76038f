// The demo agent's `rest` and `delivery` buckets as the page sees them, and the "Burst 50".
// rest: the RateLimit headers of the burst's POST /v1/rating answers (`r=` tokens left), then
// refilled at the policy's rate until the next answer. delivery: no request carries it, so it is
// modeled from the events this page received (one token each, the stream being the agent's only
// one), with the policy GET /demo/state reports. Both are drawn between 0 and the capacity.

/** A token bucket known at one instant (`tokens` at `at`), refilled at `rate` per second up to `capacity`. */
export function bucketModel() {
  let capacity = 0
  let rate = 0
  let tokens = 0
  let at = 0
  const level = (now = Date.now()) => Math.min(capacity, tokens + ((now - at) / 1000) * rate)
  return {
    get capacity() {
      return capacity
    },
    level,
    /** The policy (from /demo/state); a bucket never seen starts full, as the gateway's does. */
    policy(next) {
      if (next.capacity === capacity && next.refill_rate === rate) return
      const first = capacity === 0
      capacity = next.capacity
      rate = next.refill_rate
      if (first) [tokens, at] = [capacity, Date.now()]
    },
    /** The gateway said `remaining` tokens are left (a RateLimit header). */
    known(remaining, now = Date.now()) {
      tokens = Math.min(level(now), remaining)
      at = now
    },
    /** One token spent (a delivered event); never below 0 (the gateway would have held it back). */
    spend(now = Date.now()) {
      tokens = Math.max(0, level(now) - 1)
      at = now
    }
  }
}

/**
 * "Burst 50": POST /demo/burst has the demo process fire 50 concurrent POST /v1/rating with this
 * page's token (a browser would send them 6 at a time). Returns the counts, each refusal's
 * Retry-After and the RateLimit `r=` of each answer.
 */
export async function burst({ token, user }) {
  const res = await fetch('/demo/burst', {
    method: 'POST',
    headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
    body: JSON.stringify({ user_id: user })
  })
  if (!res.ok) throw new Error(`POST /demo/burst: ${res.status}`)
  return res.json()
}
