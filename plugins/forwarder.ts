import fp from 'fastify-plugin'
import { MemoryDedupStore, RedisDedupStore } from '../src/forward/dedup.js'
import { Forwarder } from '../src/forward/forwarder.js'
import { MemoryQueueStore, RedisQueueStore } from '../src/forward/queue.js'

/** What the feed needs of the forwarder: a durable queue with a high- and a low-water mark. */
type ForwardIntake = Pick<Forwarder, 'enqueue' | 'full' | 'waitForRoom'>

declare module 'fastify' {
  interface FastifyInstance {
    forwarder: ForwardIntake
  }
}

const disabled: ForwardIntake = {
  enqueue: () => Promise.reject(new Error('the forwarder needs OPENCLAW_URL')),
  full: () => false,
  waitForRoom: () => Promise.resolve()
}

/** Forwards each queued feed rating to OpenClaw once and publishes its score (src/forward/forwarder.ts). */
export default fp(
  async (app) => {
    const { config, redis, keys, replicaId } = app
    if (!config.OPENCLAW_URL) {
      app.decorate('forwarder', disabled)
      return
    }
    const claimMs = config.QUEUE_CLAIM_MS
    const queue = redis
      ? new RedisQueueStore(redis, keys, { blocking: app.redisConnection('queue'), claimMs, consumer: replicaId })
      : new MemoryQueueStore()
    const dedup = redis
      ? new RedisDedupStore(redis, keys, { ttlSeconds: config.DEDUP_TTL, owner: replicaId })
      : new MemoryDedupStore({ ttlSeconds: config.DEDUP_TTL })
    const forwarder = new Forwarder(
      {
        queue,
        dedup,
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
    app.addHook('onClose', () => forwarder.close())
  },
  { name: 'forwarder', dependencies: ['metrics', 'redis', 'buckets', 'openclaw', 'events'] }
)
