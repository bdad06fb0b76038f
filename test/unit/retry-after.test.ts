import t from 'tap'
import { parseRetryAfter } from '../../src/upstream/retry-after.js'

t.test('Retry-After in seconds or as an HTTP date', async (t) => {
  const now = Date.parse('2026-01-01T00:00:00Z')
  t.equal(parseRetryAfter('7', now), 7000)
  t.equal(parseRetryAfter(' 0 ', now), 0)
  t.equal(parseRetryAfter('Thu, 01 Jan 2026 00:00:03 GMT', now), 3000)
  t.equal(parseRetryAfter('Wed, 31 Dec 2025 23:59:00 GMT', now), 0, 'a past date means now')
  t.equal(parseRetryAfter(undefined, now), 1000, 'absent: 1 s')
  t.equal(parseRetryAfter('soon', now), 1000, 'unreadable: 1 s')
  t.equal(parseRetryAfter(['2', '9'], now), 2000)
})
