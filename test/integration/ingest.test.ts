import { Redis } from 'ioredis'
import t from 'tap'
import type { FeedRating } from '../../src/rating.js'
import type { MoltbookOptions } from '../../src/simulators/moltbook.js'
import { buildTestApp, logCapture, type Teardown } from '../helpers/app.js'
import { moltbook } from '../helpers/moltbook.js'
import { metric } from '../helpers/metrics.js'
import { waitFor } from '../helpers/wait.js'
import { openclawEnv, startTestOpenClaw } from '../helpers/openclaw.js'
import { startRedisServer } from '../helpers/redis-server.js'

/** A gateway reading a simulated feed and forwarding to a simulated OpenClaw; connected on return. */
async function pipeline(t: Teardown, env: Record<string, string> = {}, feedOptions: MoltbookOptions = {}) {
  const openclaw = await startTestOpenClaw(t)
  const feed = await moltbook(t, feedOptions)
  const logs = logCapture()
  const app = await buildTestApp(
    t,
    {
      ...openclawEnv(openclaw),
      MOLTBOOK_URL: feed.url,
      MOLTBOOK_BACKOFF_BASE_MS: '20',
      MOLTBOOK_BACKOFF_MAX_MS: '300',
      ...env
    },
    { logStream: logs.stream }
  )
  await waitFor('the gateway to connect to the feed', () => feed.clients() === 1 && app.ingest.connected)
  return { app, feed, openclaw, logs }
}

let seq = 0
function rating(user = 'u1', extra: Partial<FeedRating> = {}): FeedRating {
  seq++
  return { user_id: user, item_id: `item-${seq}`, timestamp: 1721234567 + seq, rating: (seq % 50) / 10, ...extra }
}

const v1 = ({ user_id, item_id, timestamp, rating }: FeedRating) => ({ user_id, item_id, timestamp, rating })
/** OpenClaw is called concurrently: compare what arrived regardless of order. */
const sorted = (values: unknown[]) => values.map((v) => JSON.stringify(v)).sort()
const bodies = (openclaw: { received: { body: unknown }[] }) => openclaw.received.map((r) => r.body)

t.test('a feed rating reaches OpenClaw as the exact v1 JSON with the Bearer key', async (t) => {
  const { feed, openclaw, logs } = await pipeline(t)
  const plain = rating('u-seed')
  const charged = rating('u-seed', { agent_id: 'agent-7' })
  feed.send(plain)
  feed.send(charged)
  await waitFor('both ratings at OpenClaw', () => openclaw.received.length >= 2)
  t.same(sorted(bodies(openclaw)), sorted([plain, v1(charged)]), 'the 4 contract fields, agent_id stripped')
  for (const r of openclaw.received) t.equal(r.authorization, `Bearer ${openclaw.apiKey}`)
  t.notOk(
    logs.lines.some((l) => l.includes(openclaw.apiKey)),
    'the OpenClaw key never reaches a log line'
  )
})

t.test('garbage is counted and skipped; the valid ratings around it are forwarded', async (t) => {
  const { app, feed, openclaw, logs } = await pipeline(t)
  const valid = [rating(), rating(), rating(), rating(), rating()]
  feed.send(valid[0])
  feed.sendRaw('{"user_id": "u1", oops')
  feed.send({ user_id: 42, item_id: 'i', timestamp: 'yesterday', rating: 'great' })
  feed.sendRaw(JSON.stringify([valid[1], { ...valid[1], item_id: 'x'.repeat(1024 * 1024) }]))
  feed.send([])
  feed.sendRaw(Buffer.from(JSON.stringify(rating())))
  feed.send([valid[1], { ...valid[2], rating: 7 }, valid[2], 'nope', valid[3]])
  for (let i = 0; i < 20; i++) feed.sendRaw('not json either')
  feed.sendRaw(`[${'0,'.repeat(999)}0]`) // defect 12: a thousand invalid items, counted one by one
  feed.send(valid[4])

  await waitFor('every valid rating at OpenClaw', () => openclaw.received.length >= valid.length)
  t.same(sorted(bodies(openclaw)), sorted(valid), 'none lost, none invented')

  const invalid = (reason: string) => metric(app, 'moltbridge_moltbook_messages_total', `result="invalid",reason="${reason}"`)
  t.equal(await invalid('json'), 21)
  t.equal(await invalid('schema'), 1003)
  t.equal(await invalid('too_large'), 1)
  t.equal(await invalid('empty'), 1)
  t.equal(await invalid('binary'), 1)
  t.equal(await metric(app, 'moltbridge_moltbook_messages_total', 'result="valid",reason=""'), 5)
  t.equal(feed.connections, 1, 'garbage never cost the connection')

  const skipped = logs.lines.filter((l) => l.includes('moltbook message skipped'))
  t.equal(skipped.filter((l) => l.includes('"reason":"json"')).length, 1, 'one log line per reason per window, not per message')
  t.ok(skipped.some((l) => l.includes('"reason":"too_large"')))
  t.ok(
    logs.lines.every((l) => l.length < 2000),
    'no log line carries a message body'
  )
})

t.test('a dropped socket is replaced; ratings sent afterwards are forwarded', async (t) => {
  const { app, feed, openclaw } = await pipeline(t)
  feed.dropAll()
  await waitFor('a new connection', () => feed.connections === 2 && feed.clients() === 1 && app.ingest.connected)
  const after = rating()
  feed.send(after)
  await waitFor('the rating at OpenClaw', () => openclaw.received.length === 1)
  t.same(bodies(openclaw), [after])
  t.equal(await metric(app, 'moltbridge_moltbook_connects_total'), 2)
  t.ok((await metric(app, 'moltbridge_moltbook_reconnects_total')) >= 1)
  t.equal(await metric(app, 'moltbridge_moltbook_connected'), 1)
})

t.test('a peer that stops answering pings is detected and replaced', async (t) => {
  const { app, feed, openclaw, logs } = await pipeline(t, { MOLTBOOK_PING_MS: '250' })
  feed.silent(true)
  await waitFor('the silent peer to be replaced', () => feed.connections >= 2, 10_000)
  feed.silent(false)
  t.ok(logs.lines.some((l) => l.includes('moltbook peer silent')))
  await waitFor('a connected feed', () => feed.clients() === 1 && app.ingest.connected)
  const after = rating()
  feed.send(after)
  await waitFor('the rating at OpenClaw', () => openclaw.received.length === 1)
  t.same(bodies(openclaw), [after])
})

t.test('stop() closes the feed for good, start() opens it again; the URL is logged without credentials', async (t) => {
  const feed = await moltbook(t)
  const openclaw = await startTestOpenClaw(t)
  const logs = logCapture()
  const url = new URL(feed.url)
  url.username = 'reader'
  url.password = 's3cret-pass'
  url.searchParams.set('token', 'feed-token-abc')
  const app = await buildTestApp(
    t,
    { ...openclawEnv(openclaw), MOLTBOOK_URL: url.href, MOLTBOOK_BACKOFF_BASE_MS: '20', MOLTBOOK_BACKOFF_MAX_MS: '100' },
    { logStream: logs.stream }
  )
  await waitFor('connected', () => feed.clients() === 1 && app.ingest.connected)

  await app.ingest.stop()
  await app.ingest.stop()
  t.notOk(app.ingest.connected)
  await waitFor('the feed to see the socket go', () => feed.clients() === 0)
  await new Promise((resolve) => setTimeout(resolve, 500))
  t.equal(feed.connections, 1, 'no reconnect after stop()')

  app.ingest.start()
  app.ingest.start()
  await waitFor('connected again', () => feed.clients() === 1 && app.ingest.connected)
  t.equal(feed.connections, 2, 'start() twice opens one socket')

  const connected = logs.lines.filter((l) => l.includes('moltbook connected'))
  t.equal(connected.length, 2)
  t.match(connected[0], `"url":"${url.origin}/feed"`)
  t.notOk(
    logs.lines.some((l) => l.includes('s3cret-pass') || l.includes('feed-token-abc')),
    'credentials in the URL never reach the logs'
  )
})

t.test('when OpenClaw is down the feed is paused, the queue stays bounded, and every rating arrives once', async (t) => {
  const QUEUE_MAX = 50
  const BATCH = 10
  const users = Array.from({ length: 20 }, (_, i) => `bp-u${i}`)
  const { app, feed, openclaw } = await pipeline(t, { QUEUE_MAX: String(QUEUE_MAX) })
  await openclaw.set({ down: true })

  let maxDepth = 0
  const sample = setInterval(() => {
    void metric(app, 'moltbridge_forward_queue_depth').then((d) => {
      maxDepth = Math.max(maxDepth, d)
    })
  }, 50)
  t.teardown(() => clearInterval(sample))

  for (let m = 0; m < 60; m++) feed.send(Array.from({ length: BATCH }, (_, i) => rating(users[(m + i) % users.length])))
  const sent = [...feed.sent]
  t.equal(sent.length, 600)

  await waitFor('the feed socket to be paused', async () => (await metric(app, 'moltbridge_moltbook_paused')) === 1)
  await new Promise((resolve) => setTimeout(resolve, 1000))
  t.equal(await metric(app, 'moltbridge_moltbook_paused'), 1, 'still paused while OpenClaw is down')
  // The forwarder's depth is polled, so one message may slip in on a stale reading: bound + 2 messages at most.
  const limit = QUEUE_MAX + 2 * BATCH
  t.ok(maxDepth <= limit, `queue depth ${maxDepth} stays within the bound plus a message or two`)
  t.equal(openclaw.received.length, 0)

  await openclaw.set({ down: false })
  await waitFor('every rating at OpenClaw', () => openclaw.received.length >= sent.length, 45_000)
  await new Promise((resolve) => setTimeout(resolve, 300))
  t.equal(openclaw.received.length, sent.length, 'nothing forwarded twice')
  t.ok(
    sent.every((r) => openclaw.count(r) === 1),
    'each sent rating reached OpenClaw exactly once'
  )
  t.equal(await metric(app, 'moltbridge_moltbook_paused'), 0, 'reading again')
  t.ok(maxDepth <= limit, `queue depth ${maxDepth} stayed bounded`)
})

/**
 * Ratings read while Redis is down (the feed paused), then the lease lost as on a failed renewal
 * (ingest stopped), then Redis back: what the tests below start from.
 */
async function readDuringOutage(t: Teardown, user: string) {
  const redis = await startRedisServer()
  t.teardown(() => redis.stop())
  const { app, feed, openclaw } = await pipeline(t, { REDIS_URL: redis.url, LEASE_MS: '30000' })
  await redis.stop()
  const during = [rating(`${user}1`), rating(`${user}2`), rating(`${user}1`)]
  feed.send(during[0])
  feed.send([during[1], during[2]])
  await waitFor('the feed socket to be paused', async () => (await metric(app, 'moltbridge_moltbook_paused')) === 1)
  await app.ingest.stop()
  await redis.restart()
  return { app, feed, openclaw, during, redis }
}

t.test('while Redis is down the feed is paused and nothing read is dropped, even across stop()/start()', async (t) => {
  const { app, openclaw, during } = await readDuringOutage(t, 'rd-u')
  // The lease won again: the ratings read meanwhile were kept.
  app.ingest.start()
  await waitFor('every rating read during the outage at OpenClaw', () => openclaw.received.length >= during.length, 20_000)
  t.same(sorted(bodies(openclaw)), sorted(during), 'each rating once')
  await waitFor('reading again', async () => (await metric(app, 'moltbridge_moltbook_paused')) === 0)
})

t.test('a leader that lost the lease during a Redis outage queues what it read, though another replica leads now', async (t) => {
  const { app, feed, openclaw, during, redis } = await readDuringOutage(t, 'lo-u')
  // Another replica took the lease (after a failover, whoever asks first wins): this one never leads again.
  const other = new Redis(redis.url)
  await other.set(app.keys.lease, 'another-replica', 'PX', 60_000)
  other.disconnect()
  await waitFor('every rating read before the lease was lost at OpenClaw', () => openclaw.received.length >= during.length, 20_000)
  t.same(sorted(bodies(openclaw)), sorted(during), 'each rating once')
  t.equal(feed.clients(), 0, 'queued by a replica that no longer reads the feed')
})

t.test("the simulator's own feed: unique ratings at a rate, each forwarded once", async (t) => {
  const { feed, openclaw } = await pipeline(t, {}, { users: ['rate-u1', 'rate-u2'], items: ['a', 'b'], agents: ['rate-agent'] })
  feed.setRate(40)
  await waitFor('some ratings emitted', () => feed.sent.length >= 30)
  feed.setRate(0)
  const sent = [...feed.sent]
  const keys = new Set(sent.map((r) => `${r.user_id}/${r.item_id}/${r.timestamp}`))
  t.equal(keys.size, sent.length, 'no (user, item, timestamp) repeats, even within one second')
  t.ok(sent.every((r) => r.agent_id === 'rate-agent'))
  await waitFor('every emitted rating at OpenClaw', () => openclaw.received.length >= sent.length, 20_000)
  t.ok(
    sent.every((r) => openclaw.count(r) === 1),
    'each forwarded once'
  )
})

t.test('an unreachable feed is retried with backoff until stop(), which ends it cleanly', async (t) => {
  const gone = await moltbook(t)
  await gone.close()
  const openclaw = await startTestOpenClaw(t)
  const logs = logCapture()
  const app = await buildTestApp(
    t,
    { ...openclawEnv(openclaw), MOLTBOOK_URL: gone.url, MOLTBOOK_BACKOFF_BASE_MS: '10', MOLTBOOK_BACKOFF_MAX_MS: '50' },
    { logStream: logs.stream }
  )
  await waitFor('a few reconnect attempts', async () => (await metric(app, 'moltbridge_moltbook_reconnects_total')) >= 3)
  t.equal(logs.lines.filter((l) => l.includes('moltbook socket error')).length, 1, 'one warning per outage')
  await app.ingest.stop()
  const attempts = await metric(app, 'moltbridge_moltbook_reconnects_total')
  await new Promise((resolve) => setTimeout(resolve, 300))
  t.equal(await metric(app, 'moltbridge_moltbook_reconnects_total'), attempts, 'no attempt after stop()')
  t.equal(await metric(app, 'moltbridge_moltbook_connected'), 0)
})

t.test('stop() closes with a handshake: what Moltbook sent before it is still queued and forwarded', async (t) => {
  const { app, feed, openclaw } = await pipeline(t)
  const last = [rating('cl-u1'), rating('cl-u2'), rating('cl-u1')]
  feed.send(last[0])
  feed.send([last[1], last[2]])
  await app.ingest.stop() // in the same tick: none of them has been read yet
  t.equal(feed.clients(), 0)
  await waitFor('the last ratings at OpenClaw', () => openclaw.received.length >= last.length)
  t.same(sorted(bodies(openclaw)), sorted(last))
})
