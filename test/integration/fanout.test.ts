import type { FastifyInstance } from 'fastify'
import { Redis } from 'ioredis'
import t, { type Test } from 'tap'
import { buildTestApp, listen, uniquePrefix } from '../helpers/app.js'
import { metricValue } from '../helpers/metrics.js'
import { startRedisCluster } from '../helpers/redis-cluster.js'
import { startRedisServer } from '../helpers/redis-server.js'
import { bucketsFile, openStream, score, type SseClient } from '../helpers/sse.js'
import { bearer, mint } from '../helpers/tokens.js'
import { waitFor } from '../helpers/wait.js'

const PATH = '/events/personalized-rating'
const itemOf = (e: { data: unknown }) => (e.data as { item_id: string }).item_id

interface Backend {
  env: Record<string, string | undefined>
  /** One client per Redis node (one for a single server). */
  nodes: Redis[]
  /** Subscribers of a sharded channel, counted on every node. */
  subscribers(channel: string): Promise<number>
}

async function singleRedis(t: Test): Promise<Backend> {
  const server = await startRedisServer()
  t.teardown(() => server.stop())
  return backend(t, { REDIS_URL: server.url }, [server.port])
}

async function cluster(t: Test): Promise<Backend> {
  const nodes = await startRedisCluster(t)
  return backend(t, { REDIS_URL: undefined, REDIS_CLUSTER_NODES: nodes.nodes }, nodes.ports)
}

function backend(t: Test, env: Backend['env'], ports: number[]): Backend {
  const nodes = ports.map((port) => new Redis({ port, host: '127.0.0.1' }))
  t.teardown(() => nodes.forEach((node) => node.disconnect()))
  const subscribers = async (channel: string) => {
    const counts = await Promise.all(nodes.map((node) => node.call('PUBSUB', 'SHARDNUMSUB', channel) as Promise<[string, number]>))
    return counts.reduce((sum, [, count]) => sum + Number(count), 0)
  }
  return { env, nodes, subscribers }
}

/** Publishes `count` events for `users` in turn (item `<tag>-<n>`), a few at a time; returns them in order. */
async function publishSome(app: FastifyInstance, users: string[], count: number, tag: string) {
  const published: { user: string; item: string; id: string }[] = []
  for (let i = 0; i < count; i++) {
    const user = users[i % users.length]
    const item = `${tag}-${i}`
    published.push({ user, item, id: await app.events.publish(score(user, item, 1, i), 'rest') })
    if (i % 10 === 0) await new Promise((resolve) => setTimeout(resolve, 2))
  }
  return published
}

const ready = (client: SseClient) => client.waitFor((m) => m.some((x) => x.id !== undefined))

for (const [name, start] of [['a single Redis', singleRedis], ['a 3-primary Redis Cluster', cluster]] as const) {
  t.test(`fan-out on ${name}`, async (t) => {
    const redis = await start(t)
    const BUCKETS_FILE = await bucketsFile(t, { capacity: 100000, refill_rate: 100000 })
    const env = { ...redis.env, KEY_PREFIX: uniquePrefix(), BUCKETS_FILE, SSE_RETRY_MS: '100' }
    const a = await buildTestApp(t, env)
    const b = await buildTestApp(t, env)
    const [urlA, urlB] = [await listen(a), await listen(b)]
    const headers = async (user: string, scope?: string) => bearer(await mint({ sub: user, agent_id: `ag-${user}`, ...(scope ? { scope } : {}) }))

    await t.test('a replica listens only to the users with a stream open on it', async (t) => {
      const alice = await openStream(t, `${urlA}${PATH}`, await headers('iso-alice'))
      await ready(alice)
      const channel = (user: string) => a.keys.live(a.keys.userEvents(user))
      t.equal(await redis.subscribers(channel('iso-alice')), 1, 'alice’s channel: one subscriber (replica A)')
      t.equal(await redis.subscribers(channel('iso-bob')), 0, 'bob has no stream: nobody listens to him')
      await publishSome(b, ['iso-bob'], 20, 'bob')
      const [aliceEvent] = await publishSome(b, ['iso-alice'], 1, 'alice')
      await alice.waitFor(() => alice.events().length === 1)
      t.same(alice.events().map((e) => e.id), [aliceEvent.id], 'alice gets hers only')
      t.equal(await metricValue(a.metrics.fanoutTopics), 1, 'replica A listens to one topic')
      alice.close()
      await waitFor('alice’s channel left', async () => (await redis.subscribers(channel('iso-alice'))) === 0)
    })

    await t.test('a fresh stream’s first message is its position: resumed on the other replica it misses nothing', async (t) => {
      const h = await headers('fresh-user')
      const first = await openStream(t, `${urlA}${PATH}`, h)
      await ready(first)
      const opening = first.messages[0].id ?? ''
      t.match(opening, /^\d+-\d+$/, 'an id before any score')
      t.equal(first.headers['x-accel-buffering'], 'no', 'proxies are told not to buffer')
      first.close() // the connection drops before any score
      const published = await publishSome(a, ['fresh-user'], 5, 'fresh')
      const again = await openStream(t, `${urlB}${PATH}`, { ...h, 'last-event-id': opening })
      await again.waitFor(() => again.events().length === 5)
      t.same(again.events().map((e) => e.id), published.map((p) => p.id), 'every score published while away, in order')
    })

    await t.test('ratings:all: live on one replica, resumed on the other, every event once', async (t) => {
      const h = await headers('ops', 'ratings:all')
      const users = ['all-u1', 'all-u2', 'all-u3', 'all-u4', 'all-u5']
      const live = await openStream(t, `${urlA}${PATH}`, h)
      await ready(live)
      const first = await publishSome(b, users, 25, 'all')
      await live.waitFor(() => live.events().length >= 10)
      live.close()
      await live.ended
      const got = live.events()
      const second = await publishSome(a, users, 25, 'all2')
      const resumed = await openStream(t, `${urlB}${PATH}`, { ...h, 'last-event-id': got.at(-1)?.id ?? '' })
      const expected = [...first, ...second].map((p) => p.item)
      await resumed.waitFor(() => got.length + resumed.events().length >= expected.length)
      const items = [...got, ...resumed.events()].map(itemOf)
      t.equal(items.length, expected.length, 'no duplicate')
      t.same(new Set(items), new Set(expected), 'no event lost')
      for (const user of users) {
        const mine = items.filter((item) => first.concat(second).find((p) => p.item === item)?.user === user)
        t.same(mine, expected.filter((item) => first.concat(second).find((p) => p.item === item)?.user === user), `${user}: in order`)
      }
    })

    await t.test('the subscriber connection dropped: every open stream catches up from the history, nothing lost', async (t) => {
      const users = ['drop-u1', 'drop-u2', 'drop-u3']
      const streams = await Promise.all(users.map(async (user) => openStream(t, `${urlA}${PATH}`, await headers(user))))
      const all = await openStream(t, `${urlA}${PATH}`, await headers('drop-ops', 'ratings:all'))
      await Promise.all([...streams, all].map(ready))
      const publishing = publishSome(b, users, 300, 'drop')
      await waitFor('some events delivered', () => streams.every((s) => s.events().length > 5))
      const killed = await Promise.all(redis.nodes.map((node) => node.call('CLIENT', 'KILL', 'TYPE', 'pubsub') as Promise<number>))
      t.ok(killed.reduce((sum, count) => sum + count, 0) >= 1, 'subscriber connections killed')
      const published = await publishing
      for (const [index, user] of users.entries()) {
        const mine = published.filter((p) => p.user === user)
        await streams[index].waitFor(() => streams[index].events().length >= mine.length, 20_000)
        t.same(streams[index].events().map((e) => e.id), mine.map((p) => p.id), `${user}: every event once, in order`)
      }
      await all.waitFor(() => all.events().filter((e) => itemOf(e).startsWith('drop-')).length >= published.length, 20_000)
      const items = all.events().map(itemOf).filter((item) => item.startsWith('drop-'))
      t.equal(items.length, published.length, 'ratings:all: no duplicate')
      t.same(new Set(items), new Set(published.map((p) => p.item)), 'ratings:all: nothing lost')
      t.comment(`events read back from histories after the drop: ${await metricValue(a.metrics.fanoutRecovered)}`)
      t.ok(streams.every((s) => !s.messages.some((m) => m.event === 'gap')), 'no gap: the histories held everything')
    })

    await t.test('gap: a resume older than the history says so first', async (t) => {
      const small = await buildTestApp(t, { ...env, HISTORY_MAX: '5' })
      const url = await listen(small)
      const published = await publishSome(small, ['gap-user'], 10, 'gap')
      const client = await openStream(t, `${url}${PATH}`, { ...(await headers('gap-user')), 'last-event-id': published[1].id })
      await client.waitFor(() => client.events().length === 5)
      t.equal(client.messages.find((m) => m.event === 'gap')?.data, published[5].id, 'gap: the oldest id held')
      t.same(client.events().map((e) => e.id), published.slice(5).map((p) => p.id))
    })
  })
}
