import t from 'tap'
import { buildTestApp, logCapture } from '../helpers/app.js'
import { feedRating } from '../helpers/forwarder.js'
import { metric } from '../helpers/metrics.js'
import { moltbook } from '../helpers/moltbook.js'
import { openclawEnv, startTestOpenClaw } from '../helpers/openclaw.js'
import { startRedisServer } from '../helpers/redis-server.js'
import { waitFor } from '../helpers/wait.js'

t.test('REDIS_WAIT_REPLICAS=1: with no replica the feed waits, paused, and loses nothing; a replica lets it flow', async (t) => {
  const primary = await startRedisServer()
  t.teardown(() => primary.stop())
  const openclaw = await startTestOpenClaw(t)
  const feed = await moltbook(t)
  const logs = logCapture()
  const app = await buildTestApp(
    t,
    {
      REDIS_URL: primary.url,
      REDIS_WAIT_REPLICAS: '1',
      REDIS_WAIT_TIMEOUT_MS: '100',
      MOLTBOOK_URL: feed.url,
      MOLTBOOK_BACKOFF_BASE_MS: '20',
      MOLTBOOK_BACKOFF_MAX_MS: '200',
      ...openclawEnv(openclaw)
    },
    { logStream: logs.stream }
  )
  await waitFor('the gateway to connect to the feed', () => app.ingest.connected)

  const before = [feedRating('wr-u1', 'wr-a', 1721000001), feedRating('wr-u2', 'wr-b', 1721000002)]
  for (const r of before) feed.send(r)
  await waitFor('the feed paused: no replica confirms the ratings', async () => (await metric(app, 'moltbridge_moltbook_paused')) === 1)
  t.ok(
    logs.lines.some((l) => l.includes('0 of 1 Redis replicas acknowledged the write within 100 ms')),
    'the log says why the ratings are not queued'
  )
  const during = feedRating('wr-u2', 'wr-d', 1721000004) // waits in the paused socket
  feed.send(during)

  const replica = await startRedisServer({ args: ['--replicaof', '127.0.0.1', String(primary.port)] })
  t.teardown(() => replica.stop())
  await waitFor('reading again once the replica confirms', async () => (await metric(app, 'moltbridge_moltbook_paused')) === 0, 20_000)
  const after = [feedRating('wr-u1', 'wr-c', 1721000003)]
  for (const r of after) feed.send(r)

  const sent = [...before, during, ...after]
  await waitFor('every rating at OpenClaw', () => sent.every((r) => openclaw.count(r) > 0))
  await new Promise((resolve) => setTimeout(resolve, 300)) // a late duplicate would show up here
  // Each retry stored the unconfirmed ratings again: dedup forwards them once.
  for (const r of sent) t.equal(openclaw.count(r), 1, `${r.item_id} forwarded once`)
})
