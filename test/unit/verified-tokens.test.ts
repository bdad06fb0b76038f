import t from 'tap'
import { VerifiedTokens } from '../../src/auth/verified-tokens.js'

/** A clock the test moves by hand (never at 0: lru-cache reads a start of 0 as "no expiry"). */
function fakeClock(start: number) {
  const clock = { now: start, read: () => clock.now }
  return clock
}

t.test('a verified token is remembered until it expires, never longer', async (t) => {
  const clock = fakeClock(1_000)
  const cache = new VerifiedTokens<string>(10, 60_000, clock.read)
  cache.set('a', 'alice', 5_000)
  clock.now = 4_999
  t.equal(cache.get('a'), 'alice')
  clock.now = 5_000
  t.equal(cache.get('a'), undefined, 'gone at its exp')
  t.equal(cache.size, 0)
})

t.test('at most maxAgeMs, so a rotated-out key stops being trusted', async (t) => {
  const clock = fakeClock(1_000)
  const cache = new VerifiedTokens<string>(10, 1_000, clock.read)
  cache.set('a', 'alice', undefined)
  clock.now = 1_999
  t.equal(cache.get('a'), 'alice')
  clock.now = 2_000
  t.equal(cache.get('a'), undefined)
})

t.test('bounded: the oldest entry makes room', async (t) => {
  const clock = fakeClock(1_000)
  const cache = new VerifiedTokens<number>(2, 60_000, clock.read)
  cache.set('a', 1, undefined)
  cache.set('b', 2, undefined)
  cache.set('c', 3, undefined)
  t.equal(cache.size, 2)
  clock.now = 1_001
  t.equal(cache.get('a'), undefined)
  t.equal(cache.get('c'), 3)
})
