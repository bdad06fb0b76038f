import t from 'tap'
import { VerifiedTokens } from '../../src/auth/verified-tokens.js'

t.test('a verified token is remembered until it expires, never longer', async (t) => {
  const cache = new VerifiedTokens<string>(10, 60_000)
  cache.set('a', 'alice', 5_000, 1_000)
  t.equal(cache.get('a', 4_999), 'alice')
  t.equal(cache.get('a', 5_000), undefined, 'gone at its exp')
  t.equal(cache.size, 0)
})

t.test('at most maxAgeMs, so a rotated-out key stops being trusted', async (t) => {
  const cache = new VerifiedTokens<string>(10, 1_000)
  cache.set('a', 'alice', undefined, 0)
  t.equal(cache.get('a', 999), 'alice')
  t.equal(cache.get('a', 1_000), undefined)
})

t.test('bounded: the oldest entry makes room', async (t) => {
  const cache = new VerifiedTokens<number>(2, 60_000)
  cache.set('a', 1, undefined, 0)
  cache.set('b', 2, undefined, 0)
  cache.set('c', 3, undefined, 0)
  t.equal(cache.size, 2)
  t.equal(cache.get('a', 1), undefined)
  t.equal(cache.get('c', 1), 3)
})
