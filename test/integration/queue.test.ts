import { Cluster, Redis } from 'ioredis'
import t, { type Test } from 'tap'
import { RedisQueueStore } from '../../src/forward/redis-queue.js'
import type { RedisClient } from '../../src/redis/client.js'
import { createKeys } from '../../src/redis/keys.js'
import { RedisSubscriber } from '../../src/redis/subscriber.js'
import { partitionOf } from '../../src/shared/partition.js'
import { settledWithin } from '../../src/shared/wait.js'
import { deletePrefix, REDIS_URL, uniquePrefix } from '../helpers/app.js'
import { feedRating } from '../helpers/forwarder.js'
import { startRedisCluster } from '../helpers/redis-cluster.js'

const PARTITIONS = 4

/** Two agents whose ratings land in different partitions. */
const [SLOW, OTHER] = (() => {
  const first = 'agent-busy'
  for (let i = 0; ; i++) if (partitionOf(`agent-${i}`, PARTITIONS) !== partitionOf(first, PARTITIONS)) return [first, `agent-${i}`]
})()

const ratings = (agent: string, count: number) =>
  Array.from({ length: count }, (_, i) => ({ rating: feedRating(`user-${agent}`, `item-${i}`, 1721200000 + i, agent), readAt: Date.now() }))

interface Backend {
  /** A connection like the gateway's main one. */
  connect(): RedisClient
  /** The queue's own way to wait: a blocking connection (single Redis) or doorbells (Cluster). */
  waiting(): Pick<ConstructorParameters<typeof RedisQueueStore>[2], 'blocking' | 'subscriber'>
}

async function singleRedis(t: Test): Promise<Backend> {
  const connect = () => {
    const client = new Redis(REDIS_URL)
    t.teardown(() => client.disconnect())
    return client
  }
  return { connect, waiting: () => ({ blocking: connect() }) }
}

async function redisCluster(t: Test): Promise<Backend> {
  const cluster = await startRedisCluster(t)
  const nodes = cluster.ports.map((port) => ({ host: '127.0.0.1', port }))
  const connect = (shardedSubscribers = false) => {
    const client = new Cluster(nodes, { shardedSubscribers })
    t.teardown(() => client.disconnect())
    return client
  }
  return { connect: () => connect(), waiting: () => ({ subscriber: new RedisSubscriber(connect(true), (err) => t.error(err)) }) }
}

for (const [name, start] of [['one Redis', singleRedis], ['a 3-primary Redis Cluster', redisCluster]] as const) {
  t.test(`the partitioned forward queue on ${name}`, async (t) => {
    const backend = await start(t)
    const keys = createKeys(uniquePrefix())
    t.teardown(() => deletePrefix(keys.prefix))
    const queue = (consumer: string, claimMs = 60_000) => {
      const store = new RedisQueueStore(backend.connect(), keys, { ...backend.waiting(), partitions: PARTITIONS, claimMs, consumer })
      t.teardown(() => store.close())
      return store
    }

    await t.test('a busy agent’s backlog does not starve another partition; depth sums every partition', async (t) => {
      const first = queue('c1')
      await first.add([...ratings(SLOW, 40), ...ratings(OTHER, 2)])
      t.equal(await first.depth(), 42)
      const read = await first.read(8, 1000)
      const agents = read.map((entry) => entry.value?.rating.agent_id)
      t.equal(agents.filter((agent) => agent === OTHER).length, 2, 'the other agent’s ratings come in the first read')
      t.equal(agents.filter((agent) => agent === SLOW).length, 2, 'the busy agent gets its share (8 over 4 partitions), not the whole read')
      for (const entry of read) await first.ack(entry.id)
      t.equal(await first.depth(), 42 - read.length, 'acknowledged entries leave the queue')
      let left = await first.read(100, 1000)
      while (left.length) {
        for (const entry of left) await first.ack(entry.id)
        left = await first.read(100, 200)
      }
      t.equal(await first.depth(), 0)
    })

    await t.test('a consumer that went away: another reclaims its entries in every partition', async (t) => {
      const gone = queue('gone', 300)
      await gone.add([...ratings(SLOW, 3), ...ratings(OTHER, 3)])
      const held = await gone.read(10, 1000)
      t.equal(held.length, 6, 'read and never acknowledged')
      await gone.close()
      const survivor = queue('survivor', 300)
      const reclaimed: string[] = []
      for (let i = 0; i < 50 && reclaimed.length < 6; i++) {
        for (const entry of await survivor.read(10, 200)) {
          reclaimed.push(entry.value?.rating.agent_id ?? '')
          await survivor.ack(entry.id)
        }
      }
      t.same(reclaimed.sort(), [...Array(3).fill(SLOW), ...Array(3).fill(OTHER)].sort(), 'all six, from both partitions')
    })

    await t.test('a reader waiting for entries wakes when they are added, not when its wait is over', async (t) => {
      const reader = queue('waiter')
      await reader.read(10, 100) // groups created, doorbells listened to
      const waiting = reader.read(10, 30_000)
      await reader.add(ratings(OTHER, 1))
      t.ok(await settledWithin(waiting, 20_000), 'woken')
      t.equal((await waiting).length, 1)
    })
  })
}
