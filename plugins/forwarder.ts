import type { FastifyInstance } from 'fastify'
import fp from 'fastify-plugin'
import { DeadLetters } from '../src/forward/dead-letters.js'
import { Forwarder } from '../src/forward/forwarder.js'
import { forwardStores } from '../src/forward/stores.js'

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

/** Forwards each queued feed rating to OpenClaw once and publishes its score (src/forward/forwarder.ts). */
export default fp(
  async (app) => {
    const { config, redis, keys, replicaId } = app
    if (!config.OPENCLAW_URL) {
      app.decorate('forwarder', disabled)
      app.decorate('deadLetters', noDeadLetters)
      return
    }
    const { queue, dedup, deadLetters } = forwardStores({
      redis,
      keys,
      replicaId,
      partitions: config.QUEUE_PARTITIONS,
      claimMs: config.QUEUE_CLAIM_MS,
      dedupTtlSeconds: config.DEDUP_TTL,
      deadLettersMax: config.DEAD_LETTERS_MAX,
      blocking: () => app.redisConnection('queue'),
      subscriber: app.redisSubscriber ?? undefined,
      replicated: redis && config.REDIS_WAIT_REPLICAS
        ? { connection: app.redisConnection('enqueue'), replicas: config.REDIS_WAIT_REPLICAS, timeoutMs: config.REDIS_WAIT_TIMEOUT_MS }
        : undefined
    })
    const forwarder = new Forwarder(
      {
        queue,
        dedup,
        deadLetters,
        take: (action, agent) => app.buckets.take(action, agent),
        rate: (rating) => app.openclaw.rate(rating, 'feed'),
        publish: (event, mark) => app.events.publish(event, 'feed', mark),
        metrics: app.metrics,
        log: app.log
      },
      {
        concurrency: config.FORWARD_CONCURRENCY,
        callConcurrency: config.OPENCLAW_CONCURRENCY,
        heldMax: config.FORWARD_HELD_MAX,
        queueMax: config.QUEUE_MAX,
        queueClaimMs: config.QUEUE_CLAIM_MS,
        callTimeoutMs: config.OPENCLAW_TIMEOUT_MS,
        backoff: { baseMs: config.FORWARD_BACKOFF_BASE_MS, maxMs: config.FORWARD_BACKOFF_MAX_MS }
      }
    )
    forwarder.start()
    app.decorate('forwarder', forwarder)
    app.decorate('deadLetters', new DeadLetters(deadLetters, queue, dedup))
    app.addHook('onClose', async () => {
      await forwarder.close()
      await deadLetters.close()
    })
  },
  { name: 'forwarder', dependencies: ['metrics', 'redis', 'buckets', 'openclaw', 'events'] }
)
