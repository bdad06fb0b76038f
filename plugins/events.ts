import fp from 'fastify-plugin'
import { EventBus } from '../src/events/event-bus.js'
import { MemoryEventStore } from '../src/events/memory-event-store.js'
import { RedisEventStore } from '../src/events/redis-event-store.js'
import { CachedCheck } from '../src/shared/cached-check.js'
import { StoreBudget } from '../src/shared/store-budget.js'

declare module 'fastify' {
  interface FastifyInstance {
    /** Publish score events, read histories, join the live topics this replica's streams need. */
    events: EventBus
  }
}

/** A canary result is shared by every /readyz call within this long. */
const CANARY_REUSE_MS = 1000

/** The event bus: whoever publishes (REST route, forwarder), the subscribers of that user get it on any replica. */
export default fp(
  async (app) => {
    const { config, metrics, redis, redisSubscriber } = app
    const limits = {
      historyMax: config.HISTORY_MAX,
      historyTtlS: config.HISTORY_TTL,
      scoresTtlS: config.SCORES_TTL,
      allMax: config.EVENTS_STREAM_MAX,
      allPartitions: config.EVENTS_PARTITIONS
    }
    const store =
      redis && redisSubscriber
        ? new RedisEventStore(redis, app.keys, { ...limits, subscriber: redisSubscriber, metrics, replicaId: app.replicaId })
        : new MemoryEventStore({ ...limits, maxUsers: config.MEMORY_USERS_MAX })
    const bus = new EventBus(store, {
      published: metrics.published,
      budget: redis ? new StoreBudget('event store', metrics, app.log) : undefined,
      topics: metrics.fanoutTopics,
      recovered: metrics.fanoutRecovered,
      lag: metrics.fanoutLag,
      onError: (err) => app.log.warn({ err }, 'live fan-out')
    })
    app.decorate('events', bus)
    const canary = new CachedCheck(() => bus.canary(config.READY_CANARY_MS), CANARY_REUSE_MS)
    app.readiness.add('fanout', () => canary.run())
    app.addHook('onClose', () => bus.close())
  },
  { name: 'events', dependencies: ['metrics', 'health', 'redis'] }
)
