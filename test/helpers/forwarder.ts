import type { FastifyInstance } from 'fastify'
import type { FeedRating, ScoreEvent } from '../../src/rating.js'
import type { Teardown } from './app.js'

/** A feed rating; `agent` sets its agent_id (else it is charged to its user). */
export function feedRating(user: string, item: string, timestamp: number, agent?: string): FeedRating {
  return { user_id: user, item_id: item, timestamp, rating: 3.5, ...(agent ? { agent_id: agent } : {}) }
}

/** Every score event reaching this app's subscribers, in order. */
export function collect(t: Teardown, app: FastifyInstance): ScoreEvent[] {
  const seen: ScoreEvent[] = []
  t.teardown(app.events.subscribe(({ event }) => seen.push(event)))
  return seen
}
