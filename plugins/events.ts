import fp from 'fastify-plugin'
import { toScoreEvent, type ScoreEvent } from '../src/rating.js'
import {
  MemoryEventStore,
  RedisEventStore,
  type EventStore,
  type Replay,
  type StoredEvent
} from '../src/events/event-store.js'
import type { Source } from '../src/upstream/errors.js'

export type { Replay, StoredEvent }

declare module 'fastify' {
  interface FastifyInstance {
    events: {
      /** Store in the user's history, remember as latest score, fan out to every replica; resolves to the id. */
      publish(event: ScoreEvent, source: Source): Promise<string>
      /**
       * Every event reaching this replica through the fan-out, in id order (only `userId`'s when
       * given: a stream per user need not look at everyone's events). Returns unsubscribe.
       */
      subscribe(listener: (event: StoredEvent) => void, userId?: string | null): () => void
      /** What the user missed after `afterId`, in order (userId null: every user). */
      replay(userId: string | null, afterId: string): Promise<Replay>
      /** The latest score event per listed item for a user. */
      latest(userId: string, items: string[]): Promise<ScoreEvent[]>
    }
  }
}

/** The event bus: whoever publishes (REST route, forwarder), every replica's subscribers get it. */
export default fp(
  async (app) => {
    const c = app.config
    const limits = {
      historyMax: c.HISTORY_MAX,
      historyTtlS: c.HISTORY_TTL,
      scoresTtlS: c.SCORES_TTL,
      streamMax: c.EVENTS_STREAM_MAX
    }
    const store: EventStore = app.redis
      ? new RedisEventStore(app.redis, app.redisConnection('events'), app.keys, limits, app.metrics)
      : new MemoryEventStore(limits)

    type Listener = (event: StoredEvent) => void
    const everyone = new Set<Listener>()
    const byUser = new Map<string, Set<Listener>>()
    const notify = (listeners: Set<Listener> | undefined, event: StoredEvent) => {
      if (!listeners) return
      for (const listener of listeners) {
        try {
          listener(event)
        } catch (err) {
          app.log.error({ err }, 'event listener failed')
        }
      }
    }
    await store.start((event) => {
      notify(everyone, event)
      notify(byUser.get(event.event.user_id), event)
    })

    app.decorate('events', {
      async publish(event: ScoreEvent, source: Source) {
        const id = await store.publish(toScoreEvent(event))
        app.metrics.published.inc({ source })
        return id
      },
      subscribe(listener: Listener, userId?: string | null) {
        if (userId == null) {
          everyone.add(listener)
          return () => void everyone.delete(listener)
        }
        const listeners = byUser.get(userId) ?? new Set<Listener>()
        byUser.set(userId, listeners)
        listeners.add(listener)
        return () => {
          listeners.delete(listener)
          if (listeners.size === 0 && byUser.get(userId) === listeners) byUser.delete(userId)
        }
      },
      replay: (userId: string | null, afterId: string) => store.replay(userId, afterId),
      latest: (userId: string, items: string[]) => store.latest(userId, items)
    })

    app.readiness.add('fanout', () => store.canary(c.READY_CANARY_MS))

    app.addHook('onClose', async () => {
      everyone.clear()
      byUser.clear()
      await store.close()
    })
  },
  { name: 'events', dependencies: ['metrics', 'health', 'redis'] }
)
