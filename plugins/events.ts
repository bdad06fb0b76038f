import fp from 'fastify-plugin'
import { EventBus } from '../src/events/event-bus.js'
import { MemoryEventStore } from '../src/events/memory-event-store.js'
import { RedisEventStore } from '../src/events/redis-event-store.js'
import { newReplicaId } from '../src/shared/replica-id.js'
import { StoreBudget } from '../src/shared/store-budget.js'

declare module 'fastify' {
  interface FastifyInstance {
    /** Publish score events, subscribe to what reaches this replica, replay a user's history. */
    events: EventBus
  }
}

/** The event bus: whoever publishes (REST route, forwarder), every replica's subscribers get it. */
export default fp(
  async (app) => {
    const { config, metrics } = app
    const limits = {
      historyMax: config.HISTORY_MAX,
      historyTtlS: config.HISTORY_TTL,
      scoresTtlS: config.SCORES_TTL,
      streamMax: config.EVENTS_STREAM_MAX
    }
    // One id per app when src/app.ts provides it, else one of our own (canary tokens only).
    const replicaId = app.hasDecorator('replicaId') ? app.getDecorator<string>('replicaId') : newReplicaId()
    const store = app.redis
      ? new RedisEventStore(app.redis, app.keys, { ...limits, reader: app.redisConnection('events'), metrics, replicaId })
      : new MemoryEventStore(limits)
    const bus = new EventBus(store, {
      published: metrics.published,
      budget: app.redis ? new StoreBudget('event store', metrics, app.log) : undefined,
      onListenerError: (err) => app.log.error({ err }, 'event listener failed')
    })
    await bus.start()
    app.decorate('events', bus)
    app.readiness.add('fanout', () => bus.canary(config.READY_CANARY_MS))
    app.addHook('onClose', () => bus.close())
  },
  { name: 'events', dependencies: ['metrics', 'health', 'redis'] }
)
