import type { FastifyInstance } from 'fastify'
import type { Redis } from 'ioredis'
import type { RedisClient } from '../../src/redis/client.js'
import type { Keys } from '../../src/redis/keys.js'
import type { FeedRating, ScoreEvent } from '../../src/rating.js'
import type { Teardown } from './app.js'

/** A feed rating; `agent` sets its agent_id (else it is charged to its user). */
export function feedRating(user: string, item: string, timestamp: number, agent?: string): FeedRating {
  return { user_id: user, item_id: item, timestamp, rating: 3.5, ...(agent ? { agent_id: agent } : {}) }
}

/** Every score event published from now on (through this app's live path, as ratings:all streams get them). */
export async function collect(t: Teardown, app: FastifyInstance): Promise<ScoreEvent[]> {
  const seen: ScoreEvent[] = []
  const memberships = await Promise.all(
    app.events.allTopics().map((topic) => app.events.join(topic, { event: ({ event }) => seen.push(event), lost() {} }))
  )
  t.teardown(() => memberships.forEach((membership) => membership.leave()))
  return seen
}

/** Per forward-queue partition: entries read by a consumer and not yet acknowledged. */
export async function pendingPerPartition(redis: RedisClient | Redis, keys: Pick<Keys, 'queue'>, partitions = 16): Promise<number[]> {
  return Promise.all(
    Array.from({ length: partitions }, async (_, partition) => {
      const summary = (await redis.xpending(keys.queue(partition), 'forwarders').catch(() => [0])) as [number, ...unknown[]]
      return Number(summary[0])
    })
  )
}

export const sum = (values: number[]) => values.reduce((total, value) => total + value, 0)
