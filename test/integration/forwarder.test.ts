import { writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t from 'tap'
import { buildTestApp } from '../helpers/app.js'
import { collect, feedRating } from '../helpers/forwarder.js'
import { metricValue } from '../helpers/metrics.js'
import { waitFor } from '../helpers/wait.js'
import { openclawEnv, startTestOpenClaw } from '../helpers/openclaw.js'

t.test('memory queue: feed ratings are forwarded once and published without Redis', async (t) => {
  const sim = await startTestOpenClaw(t)
  const app = await buildTestApp(t, openclawEnv(sim), { memory: true })
  const seen = await collect(t, app)
  const ratings = [1, 2, 3, 4, 5].map((i) => feedRating('mem-user', `item-${i}`, 1721234560 + i))
  await app.forwarder.enqueue(ratings, Date.now())
  await waitFor('5 published scores', () => seen.length === 5)
  for (const r of ratings) t.equal(sim.count(r), 1, `${r.item_id} forwarded once`)
  t.same(seen.map((e) => e.item_id).sort(), ratings.map((r) => r.item_id).sort())
  await waitFor('queue drained', () => !app.forwarder.full() && metricValue(app.metrics.queueDepth).then((d) => d === 0))
})

t.test('a rating delivered twice is forwarded once, also after the first was forwarded', async (t) => {
  const sim = await startTestOpenClaw(t)
  const app = await buildTestApp(t, openclawEnv(sim))
  const seen = await collect(t, app)
  const twice = feedRating('dup-user', 'dup-item', 1721234567)
  await app.forwarder.enqueue([twice, { ...twice }], Date.now())
  await waitFor('the score published', () => seen.length === 1)
  await app.forwarder.enqueue([{ ...twice, rating: 1 }], Date.now())
  await waitFor('every copy acknowledged', async () => (await metricValue(app.metrics.queueDepth)) === 0)
  t.equal(sim.count(twice), 1, 'OpenClaw saw the rating once')
  t.equal(seen.length, 1, 'one score event published')
  t.equal(await metricValue(app.metrics.dedupHits), 2, 'both copies counted as dedup hits')
})

t.test('OpenClaw 429: retried after Retry-After, nothing lost', async (t) => {
  // The first three calls (all three ratings at once) are refused with Retry-After: 1.
  const sim = await startTestOpenClaw(t, { limited: { retryAfterS: 1, count: 3 } })
  const app = await buildTestApp(t, openclawEnv(sim))
  const seen = await collect(t, app)
  const ratings = [1, 2, 3].map((i) => feedRating(`lim-user-${i}`, 'lim-item', 1721234500 + i))
  await app.forwarder.enqueue(ratings, Date.now())
  await waitFor('3 published scores', () => seen.length === 3)
  for (const r of ratings) t.equal(sim.count(r) >= 1, true, `${r.user_id} reached OpenClaw`)
  const limitedAt = sim.received[0].at
  const retries = sim.received.slice(3)
  t.ok(retries.length >= 3, 'each refused rating was tried again')
  t.ok(
    retries.every((r) => r.at >= limitedAt + 900),
    'no call to OpenClaw before its Retry-After passed'
  )
  t.ok((await metricValue(app.metrics.forwardDelayed, { reason: 'upstream_429' })) >= 1, 'counted as upstream_429 delays')
})

t.test('an agent over its forward bucket is delayed, not dropped, while another agent keeps flowing', async (t) => {
  const file = join(tmpdir(), `buckets-forward-${process.pid}-${Date.now()}.json`)
  await writeFile(
    file,
    JSON.stringify([
      { action: 'forward', bucket_name: 'forward-test', refill_rate: 2, capacity: 2, key_selector: 'jwt.claims.agent_id' }
    ])
  )
  const sim = await startTestOpenClaw(t)
  const app = await buildTestApp(t, { ...openclawEnv(sim), BUCKETS_FILE: file })
  const seen = await collect(t, app)
  const slow = Array.from({ length: 8 }, (_, i) => feedRating('slow-user', `slow-${i}`, 1721230000 + i, 'agent-slow'))
  await app.forwarder.enqueue(slow, Date.now())
  await waitFor('the slow agent used its burst', () => seen.length >= 2)
  const fast = [feedRating('fast-user', 'fast-1', 1721230100, 'agent-fast'), feedRating('fast-user', 'fast-2', 1721230101, 'agent-fast')]
  await app.forwarder.enqueue(fast, Date.now())
  await waitFor('every rating published', () => seen.length === slow.length + fast.length, 30000)
  const order = seen.map((e) => e.item_id)
  const lastFast = Math.max(order.indexOf('fast-1'), order.indexOf('fast-2'))
  t.ok(lastFast < order.length - 1, 'the other agent did not wait behind the slow backlog')
  t.equal(order.at(-1)?.startsWith('slow-'), true, 'the slow backlog finished last')
  for (const r of [...slow, ...fast]) t.equal(sim.count(r), 1, `${r.item_id} forwarded once`)
  t.ok((await metricValue(app.metrics.forwardDelayed, { reason: 'bucket' })) >= 1, 'counted as bucket delays')
})

t.test('a score that cannot be published leaves its rating unmarked: the dedup mark goes with the publish, in one step', async (t) => {
  const sim = await startTestOpenClaw(t)
  const app = await buildTestApp(t, { ...openclawEnv(sim), FORWARD_BACKOFF_BASE_MS: '50', FORWARD_BACKOFF_MAX_MS: '200' })
  const seen = await collect(t, app)
  const redis = app.redis
  if (!redis) throw new Error('this test needs Redis')
  const rating = feedRating('mark-user', 'mark-item', 1721234600)
  const dedupKey = app.keys.dedup(rating.user_id, rating.item_id, rating.timestamp)
  // Every publish for this user fails (WRONGTYPE) until the key is gone: what a replica dying
  // between "marked forwarded" and "published" would leave behind, without the death.
  const events = app.keys.userEvents(rating.user_id)
  await redis.set(events, 'not a stream')
  await app.forwarder.enqueue([rating], Date.now())
  await waitFor('OpenClaw answered', () => sim.count(rating) === 1)
  await waitFor('publishes failing', async () => (await metricValue(app.metrics.forwardDelayed, { reason: 'backoff' })) >= 2)
  t.not(await redis.get(dedupKey), 'done', 'not marked forwarded while its score is unpublished: a replica taking the entry over forwards it')
  await redis.del(events)
  await waitFor('published once Redis takes it', () => seen.length === 1)
  t.equal(await redis.get(dedupKey), 'done', 'marked by the publish')
  t.equal(sim.count(rating), 1, 'OpenClaw called once')
})
