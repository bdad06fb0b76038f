import type { FastifyInstance } from 'fastify'
import { Redis } from 'ioredis'
import { setTimeout as sleep } from 'node:timers/promises'
import t, { type Test } from 'tap'
import { MemoryLeaseStore, RedisLeaseStore, type LeaseStore } from '../../src/feed/lease-store.js'
import { createKeys } from '../../src/redis/keys.js'
import { buildTestApp, deletePrefix, REDIS_URL, uniquePrefix } from '../helpers/app.js'
import { moltbook } from '../helpers/moltbook.js'
import { waitFor } from '../helpers/wait.js'

const TTL = 300

async function redisStore(t: Test): Promise<LeaseStore> {
  const redis = new Redis(REDIS_URL)
  const prefix = uniquePrefix()
  t.teardown(async () => {
    redis.disconnect()
    await deletePrefix(prefix)
  })
  return new RedisLeaseStore(redis, createKeys(prefix))
}

const stores: [string, (t: Test) => Promise<LeaseStore>][] = [
  ['memory', async () => new MemoryLeaseStore()],
  ['redis', redisStore]
]

for (const [name, make] of stores) {
  t.test(`${name} lease store`, async (t) => {
    t.test('one holder at a time, each term with a larger fencing token', async (t) => {
      const store = await make(t)
      const a = await store.acquire('a', TTL)
      t.ok(a.acquired, 'a takes the free lease')
      t.equal(a.holder, 'a')
      const b = await store.acquire('b', TTL)
      t.notOk(b.acquired, 'b cannot take a held lease')
      t.equal(b.holder, 'a', 'b sees who holds it')
      t.equal(b.fence, a.fence, 'b sees the current term')
      t.ok(b.ttlMs > 0 && b.ttlMs <= TTL, 'b knows when to try again')

      await sleep(TTL + 100)
      const b2 = await store.acquire('b', TTL)
      t.ok(b2.acquired, 'b takes the lease once it ran out')
      t.ok(b2.fence! > a.fence!, 'the new term has a larger token')
      t.notOk(await store.renew('a', a.fence!, TTL), 'the old holder cannot renew its way back')
    })

    t.test('renewal keeps the lease; a stale token of the same owner is refused', async (t) => {
      const store = await make(t)
      const first = await store.acquire('a', TTL)
      for (let i = 0; i < 4; i++) {
        await sleep(TTL / 2)
        t.ok(await store.renew('a', first.fence!, TTL), `renewal ${i + 1}`)
      }
      t.notOk((await store.acquire('b', TTL)).acquired, 'renewed lease is still held')

      const again = await store.acquire('a', TTL)
      t.ok(again.acquired, 'the holder may start a new term')
      t.ok(again.fence! > first.fence!)
      t.notOk(await store.renew('a', first.fence!, TTL), 'the token of the previous term is refused')
      t.ok(await store.renew('a', again.fence!, TTL), 'the current token is accepted')
    })

    t.test('release frees the lease, only for its holder', async (t) => {
      const store = await make(t)
      await store.acquire('a', 10_000)
      await store.release('b')
      t.notOk((await store.acquire('b', TTL)).acquired, 'a non-holder cannot release')
      await store.release('a')
      t.ok((await store.acquire('b', TTL)).acquired, 'released lease is free at once')
    })
  })
}

interface LeaseDetail {
  holder: string | null
  fence: number | null
  self: string
  leader: boolean
}

async function leaseOf(app: FastifyInstance): Promise<LeaseDetail> {
  const res = await app.inject('/readyz')
  return (res.json() as { details: { ingest_lease: LeaseDetail } }).details.ingest_lease
}

async function gauge(app: FastifyInstance): Promise<string | undefined> {
  const text = (await app.inject('/metrics')).body
  return /^moltbridge_ingest_leader (\d)/m.exec(text)?.[1]
}

t.test('replicas sharing Redis: exactly one reads the feed, another takes over when it leaves', async (t) => {
  const feed = await moltbook(t)
  const prefix = uniquePrefix()
  t.teardown(() => deletePrefix(prefix))
  const env = {
    KEY_PREFIX: prefix,
    LEASE_MS: '600',
    MOLTBOOK_URL: feed.url,
    OPENCLAW_URL: 'http://127.0.0.1:9',
    OPENCLAW_API_KEY: 'unused-key'
  }
  const replicas = [await buildTestApp(t, env), await buildTestApp(t, env), await buildTestApp(t, env)]

  const details = await Promise.all(replicas.map(leaseOf))
  const leaders = details.filter((d) => d.leader)
  t.equal(leaders.length, 1, 'exactly one leader')
  const leader = replicas[details.indexOf(leaders[0])]
  for (const d of details) t.equal(d.holder, leaders[0].self, 'every replica names the same holder')
  t.same(await Promise.all(replicas.map(gauge)), details.map((d) => (d.leader ? '1' : '0')), 'leader gauge')
  await waitFor('the leader connects to the feed', () => feed.clients() === 1)

  // Renewals keep it: still the same leader and one feed socket after several lease periods.
  await sleep(1500)
  t.same(await leaseOf(leader).then((d) => [d.leader, d.fence]), [true, leaders[0].fence], 'same term after renewals')
  t.equal(feed.clients(), 1, 'still one reader')

  await leader.close()
  const rest = replicas.filter((r) => r !== leader)
  await waitFor('another replica leads', async () => (await Promise.all(rest.map(leaseOf))).some((d) => d.leader), 10_000)
  const after = await Promise.all(rest.map(leaseOf))
  t.equal(after.filter((d) => d.leader).length, 1, 'exactly one new leader')
  t.ok(after.find((d) => d.leader)!.fence! > leaders[0].fence!, 'new term, larger token')
  await waitFor('the new leader reads the feed', () => feed.clients() === 1)
})

t.test('without Redis the replica always leads', async (t) => {
  const app = await buildTestApp(t, {}, { memory: true })
  const detail = await leaseOf(app)
  t.ok(detail.leader)
  t.equal(detail.holder, detail.self)
  t.equal(await gauge(app), '1')
})
