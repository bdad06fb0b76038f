import t from 'tap'
import { rateLimitHeaders, refill, retryAfterSeconds, take, type BucketState } from '../../src/limits/token-bucket.js'

const limits = { capacity: 40, refillRate: 20 }

t.test('a new bucket is full: capacity takes pass at once, the next is refused', async (t) => {
  let state: BucketState | undefined
  for (let i = 0; i < 40; i++) {
    const r = take(state, limits, 1000)
    t.ok(r.allowed)
    t.equal(r.remaining, 39 - i)
    state = r.state
  }
  const refused = take(state, limits, 1000)
  t.notOk(refused.allowed)
  t.equal(refused.remaining, 0)
  t.equal(refused.retryAfterMs, 50, 'one token every 50 ms at 20/s')
  t.equal(refused.resetMs, 2000, 'empty to full takes capacity / rate')
})

t.test('tokens come back at refill_rate and never beyond capacity', async (t) => {
  const empty: BucketState = { tokens: 0, updatedAt: 0 }
  t.equal(refill(empty, limits, 500).tokens, 10)
  t.equal(refill(empty, limits, 60_000).tokens, 40)
  t.notOk(take(empty, limits, 49).allowed, 'just before the next token')
  t.ok(take(empty, limits, 50).allowed, 'a retry at the advertised time succeeds')
})

t.test('retryAfter is the time to the next whole token, rounded up', async (t) => {
  const r = take({ tokens: 0.3, updatedAt: 0 }, { capacity: 3, refillRate: 3 }, 0)
  t.notOk(r.allowed)
  t.equal(r.retryAfterMs, Math.ceil((0.7 * 1000) / 3))
  const after = take(r.state, { capacity: 3, refillRate: 3 }, r.retryAfterMs)
  t.ok(after.allowed)
})

t.test('a clock that steps back never adds tokens', async (t) => {
  t.equal(refill({ tokens: 1, updatedAt: 1000 }, limits, 500).tokens, 1)
})

t.test('draft-10 header fields', async (t) => {
  t.same(rateLimitHeaders('rest', limits, { remaining: 12, resetMs: 1400 }), {
    'RateLimit-Policy': '"rest";q=40;w=2',
    RateLimit: '"rest";r=12;t=2'
  })
  t.equal(rateLimitHeaders('read', { capacity: 5, refillRate: 0.5 }, { remaining: 0, resetMs: 0 })['RateLimit-Policy'], '"read";q=5;w=10')
  t.equal(retryAfterSeconds(1), 1)
  t.equal(retryAfterSeconds(0), 1, 'never below 1')
  t.equal(retryAfterSeconds(1001), 2)
})
