import t from 'tap'
import { backoffDelay } from '../../src/shared/backoff.js'

const opts = { baseMs: 100, maxMs: 1000 }

t.test('the ceiling doubles per attempt up to the cap', async (t) => {
  const top = { ...opts, random: () => 0.999999 }
  t.equal(backoffDelay(0, top), 99)
  t.equal(backoffDelay(1, top), 199)
  t.equal(backoffDelay(3, top), 799)
  t.equal(backoffDelay(4, top), 999, 'capped at maxMs')
  t.equal(backoffDelay(1000, top), 999, 'huge attempt counts stay capped')
})

t.test('full jitter: anywhere from 0 below the ceiling', async (t) => {
  t.equal(backoffDelay(5, { ...opts, random: () => 0 }), 0)
  t.equal(backoffDelay(2, { ...opts, random: () => 0.5 }), 200)
  const outside = Array.from({ length: 200 }, (_, index) => index % 8).filter((attempt) => {
    const delay = backoffDelay(attempt, opts)
    return !(Number.isInteger(delay) && delay >= 0 && delay < Math.min(1000, 100 * 2 ** attempt))
  })
  t.same(outside, [], 'every random delay is a whole number of ms below its ceiling')
})
