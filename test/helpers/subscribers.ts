import { EventSource } from 'eventsource'
import type { Test } from 'tap'
import { compareEventIds } from '../../src/events/event-id.js'
import type { FeedRating } from '../../src/rating.js'
import type { Teardown } from './app.js'
import { mint } from './tokens.js'
import { waitFor } from './wait.js'

/** What identifies one rating end to end (feed, OpenClaw, SSE). */
export const ratingKey = (r: { user_id: string; item_id: string; timestamp: number }) => `${r.user_id}/${r.item_id}/${r.timestamp}`

export interface Subscriber {
  user: string
  /** Score events received, in arrival order (replays after a reconnect included). */
  events: { id: string; key: string }[]
  /** How many times the stream (re)opened. */
  opens: number
}

/** A real EventSource client (reconnects with Last-Event-ID by itself), open once this resolves. */
export async function subscribe(t: Teardown, url: string, user: string, agent: string, scope?: string): Promise<Subscriber> {
  const token = await mint({ sub: user, agent_id: agent, ...(scope ? { scope } : {}) }, { expiresIn: 600 })
  const sub: Subscriber = { user, events: [], opens: 0 }
  const es = new EventSource(url, {
    fetch: (input, init) => fetch(input, { ...init, headers: { ...init.headers, authorization: `Bearer ${token}` } })
  })
  t.teardown(() => es.close())
  es.onmessage = (m) => sub.events.push({ id: m.lastEventId, key: ratingKey(JSON.parse(m.data) as FeedRating) })
  es.onopen = () => sub.opens++
  await waitFor(`${user} stream open`, () => sub.opens > 0)
  return sub
}

/** Every rating sent so far reached every subscriber of its user. */
export function caughtUp(subscribers: Subscriber[], sent: FeedRating[]): boolean {
  return subscribers.every((s) => {
    const got = new Set(s.events.map((e) => e.key))
    return sent.every((r) => r.user_id !== s.user || got.has(ratingKey(r)))
  })
}

/** Ratings the feed sent that OpenClaw never received, and those it received more than once. */
export function forwardCounts(sent: FeedRating[], received: { body: unknown }[]): { lost: number; duplicates: number } {
  const times = new Map<string, number>()
  for (const { body } of received) {
    const key = ratingKey(body as FeedRating)
    times.set(key, (times.get(key) ?? 0) + 1)
  }
  const keys = sent.map(ratingKey)
  return { lost: keys.filter((k) => !times.has(k)).length, duplicates: keys.filter((k) => (times.get(k) ?? 0) > 1).length }
}

/**
 * Asserts what each subscriber got: every rating of its user and none other, in id order, no
 * event id twice. Returns how many ratings reached a subscriber more than once (a rating
 * published twice arrives under two ids).
 */
export function checkDelivery(t: Test, subscribers: Subscriber[], sent: FeedRating[]): number {
  let twice = 0
  for (const s of subscribers) {
    const expected = sent.filter((r) => r.user_id === s.user).map(ratingKey)
    const ids = s.events.map((e) => e.id)
    const keys = s.events.map((e) => e.key)
    t.equal(new Set(ids).size, ids.length, `${s.user}: no duplicate event`)
    t.ok(ids.every((id, i) => i === 0 || compareEventIds(ids[i - 1], id) < 0), `${s.user}: events in id order`)
    t.same(new Set(keys), new Set(expected), `${s.user}: every rating of the user, none other`)
    twice += keys.length - new Set(keys).size
  }
  return twice
}
