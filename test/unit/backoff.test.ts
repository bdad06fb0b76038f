import t from 'tap'
import { backoffDelay } from '../../src/shared/backoff.js'

const opts = { baseMs: 100, maxMs: 1000 }

t.test('the ceiling doubles per attempt up to the cap', async (t) => {
  const top = () => 0.999999
  t.equal(backoffDelay(0, opts, top), 99)
  t.equal(backoffDelay(1, opts, top), 199)
  t.equal(backoffDelay(3, opts, top), 799)
  t.equal(backoffDelay(4, opts, top), 999, 'capped at maxMs')
  t.equal(backoffDelay(1000, opts, top), 999, 'huge attempt counts stay capped')
})

t.test('full jitter: anywhere from 0 below the ceiling', async (t) => {
  t.equal(backoffDelay(5, opts, () => 0), 0)
  t.equal(backoffDelay(2, opts, () => 0.5), 200)
  const outside = Array.from({ length: 200 }, (_, i) => i % 8).filter((attempt) => {
    const d = backoffDelay(attempt, opts)
    return !(Number.isInteger(d) && d >= 0 && d < Math.min(1000, 100 * 2 ** attempt))
  })
  t.same(outside, [], 'every random delay is a whole number of ms below its ceiling')
})
