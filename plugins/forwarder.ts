import type { FastifyInstance } from 'fastify'
import fp from 'fastify-plugin'
import { DeadLetters, MemoryDeadLetterStore, RedisDeadLetterStore } from '../src/forward/dead-letters.js'
import { MemoryDedupStore, RedisDedupStore } from '../src/forward/dedup.js'
import { Forwarder } from '../src/forward/forwarder.js'
import { MemoryQueueStore, RedisQueueStore, type QueueStore } from '../src/forward/queue.js'

/** What the feed needs of the forwarder (a durable queue with a high- and a low-water mark), and its depth. */
type ForwardIntake = Pick<Forwarder, 'enqueue' | 'full' | 'waitForRoom' | 'depths'>

declare module 'fastify' {
  interface FastifyInstance {
    forwarder: ForwardIntake
    /** Ratings OpenClaw refused for good: list, retry once, drop (admin API). */
    deadLetters: Pick<DeadLetters, 'list' | 'size' | 'retry' | 'drop'>
  }
}

/** Without OPENCLAW_URL: nothing is queued, nothing is dead-lettered. */
const disabled: ForwardIntake = {
  enqueue: () => Promise.reject(new Error('the forwarder needs OPENCLAW_URL')),
  full: () => false,
  waitForRoom: () => Promise.resolve(),
  depths: async () => []
}
const noDeadLetters: FastifyInstance['deadLetters'] = { list: async () => [], size: async () => 0, retry: async () => false, drop: async () => false }

/** The forward queue: Redis Streams partitioned by agent, or process memory without Redis. */
function queueStore(app: FastifyInstance): QueueStore {
  const { config, redis, keys, replicaId } = app
  if (!redis) return new MemoryQueueStore()
  const replicated = config.REDIS_WAIT_REPLICAS
    ? { connection: app.redisConnection('enqueue'), replicas: config.REDIS_WAIT_REPLICAS, timeoutMs: config.REDIS_WAIT_TIMEOUT_MS }
    : undefined
  // A single Redis blocks one read over every partition; a Cluster cannot, and rings doorbells instead.
  const wake = redis.isCluster ? { subscriber: app.redisSubscriber ?? undefined } : { blocking: app.redisConnection('queue') }
  const partitions = config.QUEUE_PARTITIONS
  return new RedisQueueStore(redis, keys, { ...wake, partitions, claimMs: config.QUEUE_CLAIM_MS, consumer: replicaId, replicated })
}

/** Forwards each queued feed rating to OpenClaw once and publishes its score (src/forward/forwarder.ts). */
export default fp(
  async (app) => {
    const { config, redis, keys, replicaId } = app
    if (!config.OPENCLAW_URL) {
      app.decorate('forwarder', disabled)
      app.decorate('deadLetters', noDeadLetters)
      return
    }
    const claimMs = config.QUEUE_CLAIM_MS
    const queue = queueStore(app)
    const dedup = redis
      ? new RedisDedupStore(redis, keys, { ttlSeconds: config.DEDUP_TTL, owner: replicaId })
      : new MemoryDedupStore({ ttlSeconds: config.DEDUP_TTL })
    const deadLetters = redis ? new RedisDeadLetterStore(redis, keys, config.DEAD_LETTERS_MAX) : new MemoryDeadLetterStore(config.DEAD_LETTERS_MAX)
    const forwarder = new Forwarder(
      {
        queue,
        dedup,
        deadLetters,
        take: (action, agent) => app.buckets.take(action, agent),
        rate: (rating) => app.openclaw.rate(rating, 'feed'),
        publish: (event) => app.events.publish(event, 'feed'),
        metrics: app.metrics,
        log: app.log
      },
      {
        concurrency: config.OPENCLAW_CONCURRENCY,
        heldMax: config.FORWARD_HELD_MAX,
        queueMax: config.QUEUE_MAX,
        queueClaimMs: claimMs,
        callTimeoutMs: config.OPENCLAW_TIMEOUT_MS,
        backoff: { baseMs: config.FORWARD_BACKOFF_BASE_MS, maxMs: config.FORWARD_BACKOFF_MAX_MS }
      }
    )
    forwarder.start()
    app.decorate('forwarder', forwarder)
    app.decorate('deadLetters', new DeadLetters(deadLetters, queue))
    app.addHook('onClose', async () => {
      await forwarder.close()
      await deadLetters.close()
    })
  },
  { name: 'forwarder', dependencies: ['metrics', 'redis', 'buckets', 'openclaw', 'events'] }
)
