import t from 'tap'
import { MemoryDedup } from '../../src/forward/dedup.js'

const rating = { user_id: 'u', item_id: 'i', timestamp: 1721234567, rating: 4 }

t.test('claim, done, duplicate, expiry', async (t) => {
  let now = 0
  const dedup = new MemoryDedup(10, 100, () => now)
  t.equal(await dedup.claim(rating, 1000), 'claimed')
  t.equal(await dedup.claim(rating, 1000), 'inflight', 'a second consumer waits while the first forwards')
  await dedup.done(rating)
  t.equal(await dedup.claim(rating, 1000), 'done', 'forwarded: a duplicate is skipped')
  now = 10_001
  t.equal(await dedup.claim(rating, 1000), 'claimed', 'forgotten after DEDUP_TTL')
})

t.test('a released or expired claim can be taken again (a failed forward is never lost)', async (t) => {
  let now = 0
  const dedup = new MemoryDedup(10, 100, () => now)
  await dedup.claim(rating, 1000)
  await dedup.release(rating)
  t.equal(await dedup.claim(rating, 1000), 'claimed')
  now = 1001
  t.equal(await dedup.claim(rating, 1000), 'claimed', 'a dead claimer does not block the rating')
})
