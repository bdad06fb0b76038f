import type { FastifyInstance } from 'fastify'
import type { FeedRating, ScoreEvent } from '../../src/rating.js'
import type { Teardown } from './app.js'

/** A feed rating; `agent` sets its agent_id (else it is charged to its user). */
export function feedRating(user: string, item: string, timestamp: number, agent?: string): FeedRating {
  return { user_id: user, item_id: item, timestamp, rating: 3.5, ...(agent ? { agent_id: agent } : {}) }
}

/** Bounded polling for an outcome (a correctness wait, not a speed check). */
export async function waitFor(what: string, check: () => boolean | Promise<boolean>, timeoutMs = 20000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await new Promise((resolve) => setTimeout(resolve, 50))
  }
}

/** Every score event reaching this app's subscribers, in order. */
export function collect(t: Teardown, app: FastifyInstance): ScoreEvent[] {
  const seen: ScoreEvent[] = []
  t.teardown(app.events.subscribe(({ event }) => seen.push(event)))
  return seen
}

/** The value of a counter or gauge for one label set (no labels: the unlabelled series). */
export async function metricValue(
  metric: { get(): Promise<{ values: { value: number; labels: object }[] }> },
  labels: Record<string, string> = {}
): Promise<number> {
  const { values } = await metric.get()
  const key = JSON.stringify(labels)
  return values.find((v) => JSON.stringify(v.labels) === key)?.value ?? 0
}
