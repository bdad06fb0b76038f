import type { FastifyInstance } from 'fastify'
import t from 'tap'
import { buildTestApp, deletePrefix, uniquePrefix } from '../helpers/app.js'
import { collect, feedRating, pendingPerPartition, sum } from '../helpers/forwarder.js'
import { metricValue } from '../helpers/metrics.js'
import { waitFor } from '../helpers/wait.js'
import { openclawEnv, startTestOpenClaw } from '../helpers/openclaw.js'

// Short retries keep the outages of these tests to seconds. A generous OpenClaw timeout: a call
// that timed out on a loaded machine may have reached OpenClaw, and its retry would count twice.
const fast = { FORWARD_BACKOFF_BASE_MS: '100', FORWARD_BACKOFF_MAX_MS: '1000', OPENCLAW_TIMEOUT_MS: '10000' }

t.test('OpenClaw down for seconds: once it is back every rating is forwarded once and published', async (t) => {
  const sim = await startTestOpenClaw(t, { down: true })
  const app = await buildTestApp(t, { ...openclawEnv(sim), ...fast })
  const seen = await collect(t, app)
  const ratings = Array.from({ length: 20 }, (_, i) => feedRating(`out-user-${i % 4}`, `out-item-${i}`, 1721200000 + i))
  for (const batch of [ratings.slice(0, 10), ratings.slice(10)]) {
    await app.forwarder.enqueue(batch, Date.now())
    await new Promise((resolve) => setTimeout(resolve, 1500))
  }
  t.equal(seen.length, 0, 'nothing published while OpenClaw is down')
  await sim.set({ down: false })
  await waitFor('every rating published', () => seen.length === ratings.length, 30000)
  for (const r of ratings) t.equal(sim.count(r), 1, `${r.item_id} forwarded once`)
  await waitFor('the queue emptied', async () => (await metricValue(app.metrics.queueDepth)) === 0)
})

t.test('entries a closed replica left unacknowledged are reclaimed by another one and forwarded once', async (t) => {
  const prefix = uniquePrefix()
  t.teardown(() => deletePrefix(prefix))
  const sim = await startTestOpenClaw(t, { down: true })
  const env = { ...openclawEnv(sim), ...fast, KEY_PREFIX: prefix, QUEUE_CLAIM_MS: '600' }

  const first = await buildTestApp(t, env)
  const ratings = Array.from({ length: 6 }, (_, i) => feedRating(`claim-user-${i}`, 'claim-item', 1721100000 + i))
  await first.forwarder.enqueue(ratings, Date.now())
  const pending = async (app: FastifyInstance) => (app.redis ? pendingPerPartition(app.redis, app.keys) : [])
  await waitFor('the first replica holds every entry', async () => sum(await pending(first)) === ratings.length)
  t.ok((await pending(first)).filter(Boolean).length > 1, 'held in several partitions')
  await first.close()

  await sim.set({ down: false })
  const second = await buildTestApp(t, env)
  const seen = await collect(t, second)
  await waitFor('every rating published by the second replica', () => seen.length === ratings.length)
  for (const r of ratings) t.equal(sim.count(r), 1, `${r.user_id} forwarded once`)
  await waitFor('nothing left pending', async () => sum(await pending(second)) === 0)
})
