/**
 * The demo's switches and readings (`npm run demo` only: src/demo.ts makes them, and the routes
 * of routes/demo-controls.ts exist only when it passed them to buildApp). They steer the two
 * simulators and read the gateway's own metrics registry, so the page can show the system at work.
 */
import type { Action, BucketPolicy } from './limits/policies.js'
import type { Metrics } from './metrics.js'
import type { Rating } from './rating.js'
import type { MoltbookSimulator } from './simulators/moltbook.js'
import type { OpenClawSimulator } from './simulators/openclaw.js'

/** How long `POST /demo/outage` keeps the simulated OpenClaw down. */
export const OUTAGE_MS = 10_000
/** Ratings one burst fires at once. */
export const BURST_SIZE = 50
/** Most feed ratings one state answer lists (a page that fell far behind gets the newest). */
const SENT_MAX = 2000

/** What the state reads of the running gateway (given by the route, which has the app). */
export interface DemoReadings {
  metrics: Metrics
  queueDepth(): Promise<number>
  policy(action: Action, agentId: string): BucketPolicy
}

/** One POST /v1/rating through the whole gateway (auth, bucket, OpenClaw, publish): its status and headers. */
export type PostRating = (rating: Rating) => Promise<{ status: number; headers: Record<string, unknown> }>

export interface BurstOutcome {
  /** Answers that passed the rest bucket (200, or a 5xx: OpenClaw failed after it); a 401 or 403 is neither. */
  admitted: number
  /** 429s: the bucket was empty. */
  refused: number
  /** Admitted, then failed at OpenClaw (an outage): a 5xx. */
  failed: number
  /** The Retry-After (s) of each refusal. */
  retryAfter: number[]
  /** The `r=` of the RateLimit header of each answer that had one (tokens left), in answer order. */
  remaining: number[]
}

/** One feed rating of the user: item, its timestamp (the key with the user), and Date.now() when the feed sent it. */
export type SentRating = [item: string, timestamp: number, sentAtMs: number]

export interface DemoState {
  /** Date.now() of this answer. */
  now: number
  /** Pass it back as `since`: `sent` then lists only the feed ratings sent after this answer. */
  cursor: number
  /** The user's feed ratings sent since `since` (none on a first call: it only sets the cursor). */
  sent: SentRating[]
  feed: { connected: boolean; connections: number }
  openclaw: { down: boolean; outageEndsInMs: number }
  queueDepth: number
  policies: Record<'rest' | 'delivery', { capacity: number; refill_rate: number }>
  counters: {
    reconnects: number
    invalidMessages: number
    /** Calls to OpenClaw by outcome (2xx, 429, 5xx, timeout, network, invalid), feed and REST together. */
    forwardAttempts: Record<string, number>
    /** Bucket refusals by action (a 429 for rest and read; held back for forward and delivery). */
    limited: Record<string, number>
    openStreams: number
  }
}

export interface DemoControls {
  state(readings: DemoReadings, user: string, since?: number): Promise<DemoState>
  /**
   * BURST_SIZE concurrent POST /v1/rating for `user` (each as `post` sends it: the caller's token).
   * Timestamps an hour back, one apart, keep their keys apart from the feed's.
   */
  burst(post: PostRating, user: string, items: readonly string[]): Promise<BurstOutcome>
  /** Stops the simulated OpenClaw for OUTAGE_MS (a second call while down changes nothing). */
  outage(): Promise<{ down: boolean; outageEndsInMs: number }>
  /** Terminates the gateway's Moltbook socket: the ingest reconnects on its own. */
  dropSocket(): { dropped: number }
  close(): Promise<void>
}

type Reading = { values: Array<{ value: number; labels: Record<string, string | number | undefined> }> }

/** Sums a metric's values by one label (all values when `label` is omitted, under "total"). */
async function sumBy(metric: { get(): Promise<Reading> }, label?: string, where: Record<string, string> = {}): Promise<Record<string, number>> {
  const sums: Record<string, number> = {}
  for (const { value, labels } of (await metric.get()).values) {
    if (Object.entries(where).some(([name, wanted]) => labels[name] !== wanted)) continue
    const key = label ? String(labels[label] ?? '') : 'total'
    sums[key] = (sums[key] ?? 0) + value
  }
  return sums
}

const total = (sums: Record<string, number>) => Object.values(sums).reduce((a, b) => a + b, 0)

/** A policy as the page shows it. */
const shown = ({ capacity, refill_rate }: BucketPolicy) => ({ capacity, refill_rate })

export function createDemoControls(sims: { moltbook: MoltbookSimulator; openclaw: OpenClawSimulator }): DemoControls {
  const { moltbook, openclaw } = sims
  let outageEndsAt = 0
  let timer: NodeJS.Timeout | undefined
  const outageEndsInMs = () => (openclaw.mode().down ? Math.max(0, outageEndsAt - Date.now()) : 0)

  const sentOf = (user: string, since: number): SentRating[] => {
    const list: SentRating[] = []
    for (let i = Math.max(since, moltbook.sent.length - SENT_MAX * 10); i < moltbook.sent.length; i++) {
      const rating = moltbook.sent[i]
      if (rating.user_id === user) list.push([rating.item_id, rating.timestamp, moltbook.sentAt[i]])
    }
    return list.slice(-SENT_MAX)
  }

  return {
    async state({ metrics, queueDepth, policy }, user, since) {
      const cursor = moltbook.sent.length
      const [reconnects, invalid, attempts, limited, open, connected, depth] = await Promise.all([
        sumBy(metrics.moltbookReconnects),
        sumBy(metrics.moltbookMessages, undefined, { result: 'invalid' }),
        sumBy(metrics.forwardAttempts, 'outcome'),
        sumBy(metrics.bucketDecisions, 'action', { result: 'limited' }),
        sumBy(metrics.sseOpen),
        sumBy(metrics.moltbookConnected),
        queueDepth()
      ])
      return {
        now: Date.now(),
        cursor,
        sent: since === undefined ? [] : sentOf(user, since),
        feed: { connected: total(connected) > 0, connections: moltbook.connections },
        openclaw: { down: openclaw.mode().down, outageEndsInMs: outageEndsInMs() },
        queueDepth: depth,
        policies: { rest: shown(policy('rest', user)), delivery: shown(policy('delivery', user)) },
        counters: {
          reconnects: total(reconnects),
          invalidMessages: total(invalid),
          forwardAttempts: attempts,
          limited,
          openStreams: total(open)
        }
      }
    },

    async burst(post, user, items) {
      const base = Math.floor(Date.now() / 1000) - 3600
      const answers = await Promise.all(
        Array.from({ length: BURST_SIZE }, (_, i) =>
          post({ user_id: user, item_id: items[i % items.length], timestamp: base + i, rating: Math.round(Math.random() * 50) / 10 })
        )
      )
      const header = (answer: (typeof answers)[number], name: string) => String(answer.headers[name] ?? '')
      const refused = answers.filter((a) => a.status === 429)
      const failed = answers.filter((a) => a.status >= 500).length
      return {
        admitted: answers.filter((a) => a.status === 200).length + failed,
        refused: refused.length,
        failed,
        retryAfter: refused.map((a) => Number(header(a, 'retry-after'))),
        remaining: answers.flatMap((a) => {
          const match = /;\s*r=(\d+)/.exec(header(a, 'ratelimit'))
          return match ? [Number(match[1])] : []
        })
      }
    },

    async outage() {
      if (!openclaw.mode().down) {
        outageEndsAt = Date.now() + OUTAGE_MS
        await openclaw.set({ down: true })
        timer = setTimeout(() => {
          timer = undefined
          openclaw.set({ down: false }).catch(() => {})
        }, OUTAGE_MS)
      }
      return { down: openclaw.mode().down, outageEndsInMs: outageEndsInMs() }
    },

    dropSocket() {
      const dropped = moltbook.clients()
      moltbook.dropAll()
      return { dropped }
    },

    async close() {
      if (timer) clearTimeout(timer)
      timer = undefined
    }
  }
}
