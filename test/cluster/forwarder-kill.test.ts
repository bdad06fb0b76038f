import { Cluster, Redis } from 'ioredis'
import t, { type Test } from 'tap'
import { createKeys } from '../../src/redis/keys.js'
import { deletePrefix, REDIS_URL, TEST_SECRET, uniquePrefix } from '../helpers/app.js'
import { moltbook } from '../helpers/moltbook.js'
import { waitFor } from '../helpers/wait.js'
import { openclawEnv, startTestOpenClaw } from '../helpers/openclaw.js'
import { buildGateway, startGateway } from '../helpers/processes.js'
import { openStream } from '../helpers/sse.js'
import { pendingPerPartition, sum } from '../helpers/forwarder.js'
import { startRedisCluster } from '../helpers/redis-cluster.js'
import { bearer, mint } from '../helpers/tokens.js'

const USER = 'fk-user'
const COUNT = 10
const key = (r: { user_id: string; item_id: string; timestamp: number }) => `${r.user_id}/${r.item_id}/${r.timestamp}`

/** The gateway's Redis settings, and a client of the same Redis for the test. */
async function singleRedis(t: Test) {
  const client = new Redis(REDIS_URL)
  t.teardown(() => client.disconnect())
  return { env: { REDIS_URL }, client }
}

async function redisCluster(t: Test) {
  const cluster = await startRedisCluster(t)
  const client = new Cluster(cluster.ports.map((port) => ({ host: '127.0.0.1', port })))
  t.teardown(() => client.disconnect())
  return { env: { REDIS_CLUSTER_NODES: cluster.nodes }, client }
}

for (const [name, backend] of [['one Redis', singleRedis], ['a 3-primary Redis Cluster', redisCluster]] as const) {
  t.test(`on ${name}: a replica killed with unacknowledged forwards in several partitions: another reclaims them and forwards each once`, async (t) => {
    await buildGateway()
    const openclaw = await startTestOpenClaw(t, { stall: true })
    const feed = await moltbook(t)
    const prefix = uniquePrefix()
    t.teardown(() => deletePrefix(prefix))
    const { env: redisEnv, client: redis } = await backend(t)
    const keys = createKeys(prefix)
    const pending = async () => sum(await pendingPerPartition(redis, keys))
    const env = {
      ...redisEnv,
      KEY_PREFIX: prefix,
      JWT_SECRET: TEST_SECRET,
      MOLTBOOK_URL: feed.url,
      // Stalled calls time out and are retried: the entries stay held (unacknowledged) by this replica.
      ...openclawEnv(openclaw, 1000),
      LEASE_MS: '1500',
      QUEUE_CLAIM_MS: '1500'
    }

    const first = await startGateway(t, 'first', env)
    await waitFor('the first replica reads the feed', () => feed.clients() === 1, 15_000)
    // Five agents: the ratings sit in several queue partitions.
    const ratings = Array.from({ length: COUNT }, (_, i) => ({ user_id: USER, item_id: `fk-i${i}`, timestamp: 1721200000 + i, rating: 2.5, agent_id: `fk-agent-${i % 5}` }))
    feed.send(ratings)
    await waitFor('the ratings are read from the queue and held unacknowledged', async () => (await pending()) === COUNT, 15_000)
    const partitions = (await pendingPerPartition(redis, keys)).filter(Boolean).length
    t.ok(partitions > 1, `held in ${partitions} partitions`)
    await waitFor('OpenClaw calls in flight', () => openclaw.received.length > 0, 15_000)
    t.equal(await pending(), COUNT, `${COUNT} entries pending on the replica about to die`)
    await first.stop('SIGKILL')

    await openclaw.set({ stall: false })
    const before = openclaw.received.length
    const second = await startGateway(t, 'second', env)
    const token = await mint({ sub: USER, agent_id: 'fk-agent' })
    const stream = await openStream(t, `${second.url}/events/personalized-rating`, { ...bearer(token), 'last-event-id': '0-0' })
    t.equal(stream.status, 200, 'subscriber on the surviving replica')

    await stream.waitFor(() => stream.events().length >= COUNT, 30_000)
    await waitFor('queue drained', async () => (await pending()) === 0, 10_000)
    await new Promise((resolve) => setTimeout(resolve, 500)) // a late duplicate would show up here

    const published = stream.events().map((e) => key(e.data as (typeof ratings)[number]))
    t.equal(published.length, COUNT, 'one score event per rating, no duplicate')
    t.same(new Set(published), new Set(ratings.map(key)), 'every pending rating published')
    const after = openclaw.received.slice(before).map((r) => key(r.body as (typeof ratings)[number]))
    for (const r of ratings) t.equal(after.filter((k) => k === key(r)).length, 1, `${r.item_id} forwarded once after the reclaim`)
  })
}
