import t from 'tap'
import { MemoryDedupStore } from '../../src/forward/dedup.js'

const rating = { user_id: 'u', item_id: 'i', timestamp: 1721234567, rating: 4 }
/** Where the test clock starts: like performance.now(), never 0. */
const START = 1000

t.test('claim, done, duplicate, expiry', async (t) => {
  let now = START
  const dedup = new MemoryDedupStore({ ttlSeconds: 10, max: 100, now: () => now })
  t.equal(await dedup.claim(rating, 1000), 'claimed')
  t.equal(await dedup.claim(rating, 1000), 'inflight', 'a second consumer waits while the first forwards')
  await dedup.done(rating)
  t.equal(await dedup.claim(rating, 1000), 'done', 'forwarded: a duplicate is skipped')
  now = START + 10_001
  t.equal(await dedup.claim(rating, 1000), 'claimed', 'forgotten after DEDUP_TTL')
})

t.test('a released or expired claim can be taken again (a failed forward is never lost)', async (t) => {
  let now = START
  const dedup = new MemoryDedupStore({ ttlSeconds: 10, max: 100, now: () => now })
  await dedup.claim(rating, 1000)
  await dedup.release(rating)
  t.equal(await dedup.claim(rating, 1000), 'claimed')
  now = START + 1001
  t.equal(await dedup.claim(rating, 1000), 'claimed', 'a dead claimer does not block the rating')
})

t.test('a release drops a claim, never a forwarded rating', async (t) => {
  const dedup = new MemoryDedupStore({ ttlSeconds: 10 })
  await dedup.claim(rating, 1000)
  await dedup.done(rating)
  await dedup.release(rating)
  t.equal(await dedup.claim(rating, 1000), 'done')
})

t.test('bounded: beyond `max` ratings the least recently used is forgotten', async (t) => {
  const dedup = new MemoryDedupStore({ ttlSeconds: 600, max: 3 })
  const ratings = [1, 2, 3, 4].map((number) => ({ ...rating, item_id: `item-${number}` }))
  for (const each of ratings) await dedup.done(each)
  t.equal(await dedup.claim(ratings[0], 1000), 'claimed', 'the oldest was evicted')
  t.equal(await dedup.claim(ratings[3], 1000), 'done', 'the newest is remembered')
})
