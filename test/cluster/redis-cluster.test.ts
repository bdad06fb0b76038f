import { Cluster } from 'ioredis'
import { performance } from 'node:perf_hooks'
import t from 'tap'
import { createKeys } from '../../src/redis/keys.js'
import { RedisLeaseStore } from '../../src/feed/lease-store.js'
import { buildTestApp, listen, logCapture, uniquePrefix } from '../helpers/app.js'
import { moltbook } from '../helpers/moltbook.js'
import { waitFor } from '../helpers/wait.js'
import { openclawEnv, startTestOpenClaw } from '../helpers/openclaw.js'
import { startRedisCluster } from '../helpers/redis-cluster.js'
import { openStream } from '../helpers/sse.js'
import { bearer, mint } from '../helpers/tokens.js'

// Every store of the gateway against a real 3-primary Redis Cluster: a command that spans two
// slots fails there with CROSSSLOT, so a green run means every multi-key step stays in one tag.
t.test('the gateway on a 3-primary Redis Cluster', async (t) => {
  const cluster = await startRedisCluster(t)
  const openclaw = await startTestOpenClaw(t)
  const feed = await moltbook(t)
  const logs = logCapture()
  const app = await buildTestApp(
    t,
    {
      REDIS_URL: undefined,
      REDIS_CLUSTER_NODES: cluster.nodes,
      MOLTBOOK_URL: feed.url,
      LEASE_MS: '1000',
      ...openclawEnv(openclaw)
    },
    { logStream: logs.stream }
  )
  const base = await listen(app)

  await t.test('ready: store and fan-out canary answer through the cluster; this replica holds the lease', async (t) => {
    await waitFor('ready', async () => (await app.inject('/readyz')).statusCode === 200, 15_000)
    const ready = (await app.inject('/readyz')).json() as { details: { ingest_lease: { leader: boolean; fence: number } } }
    t.ok(ready.details.ingest_lease.leader, 'lease acquired on the cluster')
    t.ok(ready.details.ingest_lease.fence >= 1, 'with a fencing token')
  })

  await t.test('lease renew and release (two keys, one slot)', async (t) => {
    const client = new Cluster(cluster.nodes.split(',').map((hp) => ({ host: '127.0.0.1', port: Number(hp.split(':')[1]) })))
    t.teardown(() => client.disconnect())
    const store = new RedisLeaseStore(client, createKeys(uniquePrefix()))
    const first = await store.acquire('a', 5000)
    t.ok(first.acquired, 'acquired')
    t.ok(await store.renew('a', first.fence!, 5000), 'renewed (lease and fence read in one script)')
    t.notOk((await store.acquire('b', 5000)).acquired, 'held against another owner')
    await store.release('a')
    t.ok((await store.acquire('b', 5000)).acquired, 'released, then taken by another owner')
  })

  await t.test('REST burst: the agent bucket admits its capacity, then 429', async (t) => {
    const token = await mint({ sub: 'cluster-user', agent_id: 'cluster-agent' })
    const started = performance.now()
    const statuses = await Promise.all(
      Array.from({ length: 50 }, (_, i) =>
        app
          .inject({
            method: 'POST',
            url: '/v1/rating',
            headers: bearer(token),
            payload: { user_id: 'cluster-user', item_id: `i${i}`, timestamp: 1721234567, rating: 4 }
          })
          .then((r) => r.statusCode)
      )
    )
    const ok = statuses.filter((s) => s === 200).length
    const most = 40 + (20 * (performance.now() - started)) / 1000 + 1
    t.ok(ok >= 39 && ok <= most, `admitted ${ok} of 50 (capacity 40 + 20/s × elapsed, ±1: at most ${most.toFixed(1)})`)
    t.equal(statuses.filter((s) => s === 429).length, 50 - ok, 'the rest are 429, never a 5xx')
  })

  await t.test('feed → queue → forwarder → history → SSE, ticket, and replay after a reconnect', async (t) => {
    const user = 'cluster-feed-user'
    const token = await mint({ sub: user, agent_id: 'cluster-feed-agent' })
    const ticket = await app.inject({ method: 'POST', url: '/v1/sse-tickets', headers: bearer(token) })
    t.equal(ticket.statusCode, 201, 'ticket issued')
    const { ticket: value } = ticket.json() as { ticket: string }
    const stream = await openStream(t, `${base}/events/personalized-rating?ticket=${value}`)
    t.equal(stream.status, 200, 'ticket redeemed')
    const again = await openStream(t, `${base}/events/personalized-rating?ticket=${value}`)
    t.equal(again.status, 401, 'a ticket opens one stream only')

    await waitFor('ingest connected', () => feed.clients() === 1)
    const ratings = Array.from({ length: 5 }, (_, i) => ({ user_id: user, item_id: `f${i}`, timestamp: 1721230000 + i, rating: 3 }))
    feed.send(ratings)
    await stream.waitFor(() => stream.events().length === 5, 15_000)
    t.same(
      stream.events().map((e) => (e.data as { item_id: string }).item_id),
      ratings.map((r) => r.item_id),
      'every feed rating reached the subscriber, in order'
    )
    for (const r of ratings) t.equal(openclaw.count(r), 1, `${r.item_id} forwarded once`)

    const first = stream.events()[0].id
    const resumed = await openStream(t, `${base}/events/personalized-rating`, { ...bearer(token), 'last-event-id': first })
    await resumed.waitFor(() => resumed.events().length === 4, 10_000)
    t.same(
      resumed.events().map((e) => e.id),
      stream.events().slice(1).map((e) => e.id),
      'replay from the history: what was missed, in order'
    )
    const scores = await app.inject({ url: `/v1/scores?items=f0,f4`, headers: bearer(token) })
    t.equal(scores.statusCode, 200, 'latest scores read back')
  })

  await t.test('admin: streams per agent from every primary, an override in the bucket script, a revocation by broadcast', async (t) => {
    const admin = bearer(await mint({ sub: 'ops', scope: 'moltbridge:admin' }))
    const agents = ['adm-a', 'adm-b', 'adm-c', 'adm-d']
    const old = await Promise.all(agents.map((agent) => mint({ sub: `${agent}-user`, agent_id: agent }, { issuedAt: Math.floor(Date.now() / 1000) - 5 })))
    const streams = await Promise.all(old.map((token) => openStream(t, `${base}/events/personalized-rating`, bearer(token))))
    const counts = (await app.inject({ url: '/admin/streams', headers: admin })).json() as { agents: { agent_id: string; streams: number }[] }
    t.same(counts.agents.filter((a) => agents.includes(a.agent_id)).map((a) => a.agent_id).sort(), agents, 'agents on every primary counted')

    const set = await app.inject({ method: 'PUT', url: '/admin/limits/adm-a', payload: { read: { refill_rate: 0.001, capacity: 2 } }, headers: admin })
    t.equal(set.statusCode, 200)
    const reads = await Promise.all(Array.from({ length: 4 }, () => app.inject({ url: '/v1/scores?items=x', headers: bearer(old[0]) })))
    t.same(reads.map((r) => r.statusCode).sort(), [200, 200, 429, 429], 'the override applies (bucket and override hash in one slot)')

    const revoked = await app.inject({ method: 'POST', url: '/admin/revoke', payload: { agent_id: 'adm-b' }, headers: admin })
    t.equal(revoked.statusCode, 200)
    await streams[1].ended
    t.ok(streams[1].messages.some((m) => m.event === 'revoked'), 'the revoked agent stream ended')
  })

  t.notOk(
    logs.lines.find((line) => /CROSSSLOT|MOVED|"level":50/.test(line)),
    'no cross-slot (or any error) line in the logs'
  )
})
