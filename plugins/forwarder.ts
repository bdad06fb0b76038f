import type { FastifyInstance } from 'fastify'
import fp from 'fastify-plugin'
import { AgentLanes } from '../src/forward/agent-lanes.js'
import { backoffDelay } from '../src/shared/backoff.js'
import { agentOf, toRating, type FeedRating, type ScoreEvent } from '../src/rating.js'
import { MemoryDedup, RedisDedup, type DedupStore } from '../src/forward/dedup.js'
import { MemoryQueue, RedisQueue, type ForwardQueue, type QueueEntry } from '../src/forward/queue.js'
import { UpstreamError } from '../src/upstream/errors.js'

declare module 'fastify' {
  interface FastifyInstance {
    forwarder: {
      /** Durably queue feed ratings (read off the socket at `readAt`, Date.now() ms, for the feed-to-publish latency). */
      enqueue(ratings: FeedRating[], readAt: number): Promise<void>
      /** True while the queue is above its high-water mark: the feed must pause. */
      full(): boolean
      /** Resolves once the queue is below its low-water mark. */
      waitForRoom(): Promise<void>
    }
  }
}

/** How often the queue depth is read (never a Redis call per rating). */
const DEPTH_POLL_MS = 250
/** Entries asked for per read, and how long a read waits for new ones. */
const READ_BATCH = 100
const READ_BLOCK_MS = 1000

/** One rating this replica works on: read from the queue, not yet acknowledged. */
interface Held {
  id: string
  rating: FeedRating
  readAt: number
  /** Its forwarding token is paid: a retry does not charge the agent again. */
  charged: boolean
  attempts: number
  /** OpenClaw's answer, kept so a failed publish is retried without forwarding again. */
  score: ScoreEvent | null
  remembered: boolean
  /** Published, or a duplicate of a forwarded rating: only the ack is left. */
  finished: boolean
}

/** What became of one attempt, and so when the rating is tried again. */
type Step =
  | { kind: 'acked' }
  | { kind: 'bucket'; waitMs: number }
  | { kind: 'limited'; waitMs: number }
  | { kind: 'retry'; reason: 'backoff' | 'inflight' }

/**
 * The queue depth as last read, the high-water mark (`full`) and the low-water mark that
 * releases `waitForRoom`: hysteresis, so the feed does not flap around one value.
 */
class DepthGauge {
  private depth = 0
  private waiters: (() => void)[] = []

  constructor(
    private readonly max: number,
    private readonly report: (depth: number) => void
  ) {}

  set(depth: number): void {
    this.depth = depth
    this.report(depth)
    if (depth < this.max / 2) this.release()
  }

  add(count: number): void {
    this.set(this.depth + count)
  }

  full(): boolean {
    return this.depth >= this.max
  }

  waitForRoom(): Promise<void> {
    if (this.depth < this.max / 2) return Promise.resolve()
    return new Promise((resolve) => this.waiters.push(resolve))
  }

  /** Lets every waiter go (the depth fell, or the app closes). */
  release(): void {
    for (const resolve of this.waiters.splice(0)) resolve()
  }
}

function disabled(): FastifyInstance['forwarder'] {
  return {
    enqueue: () => Promise.reject(new Error('the forwarder needs OPENCLAW_URL')),
    full: () => false,
    waitForRoom: () => Promise.resolve()
  }
}

/**
 * The feed half of the pipeline (SPEC 6): queue → dedup claim → the agent's `forward` bucket →
 * OpenClaw → publish → ack. Entries are acknowledged only once their score is published (or
 * they turn out to be duplicates), so whatever a dead or closed replica held is reclaimed.
 */
export default fp(
  async (app) => {
    const c = app.config
    if (!c.OPENCLAW_URL) {
      app.decorate('forwarder', disabled())
      return
    }
    const queue: ForwardQueue = app.redis
      ? new RedisQueue(app.redis, app.redisConnection('queue'), app.keys.queue, c.QUEUE_CLAIM_MS)
      : new MemoryQueue()
    const dedup: DedupStore = app.redis ? new RedisDedup(app.redis, app.keys, c.DEDUP_TTL) : new MemoryDedup(c.DEDUP_TTL)
    const gauge = new DepthGauge(c.QUEUE_MAX, (depth) => app.metrics.queueDepth.set(depth))
    const backoff = { baseMs: c.FORWARD_BACKOFF_BASE_MS, maxMs: c.FORWARD_BACKOFF_MAX_MS }
    // Covers one attempt (bucket, OpenClaw with its timeout, marking it done); a dead claimer's claim expires.
    const claimMs = 2 * c.OPENCLAW_TIMEOUT_MS + 1000

    const held = new Map<string, Held>()
    const lanes = new AgentLanes<Held>()
    const retryTimers = new Set<NodeJS.Timeout>()
    let active = 0
    let stopping = false
    /** OpenClaw answered 429: no call before this instant (performance.now()). */
    let pausedUntil = 0
    let wakeTimer: NodeJS.Timeout | null = null
    let wakeTimerAt = Infinity
    let wakeReader: (() => void) | null = null
    let idle: (() => void) | null = null
    let failing: string | null = null

    // One log line per kind of trouble, and one when it is over, never one per rating.
    const trouble = (kind: string, err: unknown) => {
      if (failing === kind) return
      failing = kind
      app.log.warn({ err: err instanceof Error ? err.message : String(err), kind }, 'forwarding delayed')
    }
    const recovered = () => {
      if (failing) app.log.info({ kind: failing }, 'forwarding recovered')
      failing = null
    }

    async function forwardClaimed(e: Held): Promise<Step | null> {
      try {
        if (!e.charged) {
          const decision = await app.buckets.take('forward', agentOf(e.rating))
          if (!decision.allowed) return { kind: 'bucket', waitMs: decision.retryAfterMs }
          e.charged = true
        }
        e.score = await app.openclaw.rate(toRating(e.rating), 'feed')
        return null
      } catch (err) {
        if (!(err instanceof UpstreamError)) throw err
        trouble(`openclaw_${err.kind}`, err)
        if (err.kind === 'limited') return { kind: 'limited', waitMs: err.retryAfterMs ?? 1000 }
        return { kind: 'retry', reason: 'backoff' }
      } finally {
        // Only a 2xx keeps the claim (and then turns it into `done`): anything else may be retried by anyone.
        if (!e.score) await dedup.release(e.rating).catch(() => {})
      }
    }

    /** Takes the rating as far as it goes now; each stage done is remembered, so a retry resumes there. */
    async function attempt(e: Held): Promise<Step> {
      if (!e.score && !e.finished) {
        const claim = await dedup.claim(e.rating, claimMs)
        if (claim === 'inflight') return { kind: 'retry', reason: 'inflight' }
        if (claim === 'done') {
          app.metrics.dedupHits.inc()
          e.finished = true
        } else {
          const step = await forwardClaimed(e)
          if (step) return step
        }
      }
      if (e.score && !e.remembered) {
        await dedup.done(e.rating)
        e.remembered = true
      }
      if (e.score && !e.finished) {
        await app.events.publish(e.score, 'feed')
        app.metrics.feedToPublish.observe(Math.max(0, Date.now() - e.readAt) / 1000)
        e.finished = true
      }
      await queue.ack(e.id)
      recovered()
      return { kind: 'acked' }
    }

    function schedule(e: Held, step: Step): void {
      if (step.kind === 'acked') {
        held.delete(e.id)
        wakeReader?.()
        return
      }
      // Closing: leave it unacknowledged in the queue for whoever reads next.
      if (stopping) return
      const agent = agentOf(e.rating)
      const now = performance.now()
      if (step.kind === 'bucket') {
        app.metrics.forwardDelayed.inc({ reason: 'bucket' })
        lanes.pushFront(agent, e)
        lanes.holdUntil(agent, now + step.waitMs)
      } else if (step.kind === 'limited') {
        app.metrics.forwardDelayed.inc({ reason: 'upstream_429' })
        lanes.pushFront(agent, e)
        pausedUntil = Math.max(pausedUntil, now + step.waitMs)
      } else {
        app.metrics.forwardDelayed.inc({ reason: step.reason })
        const timer = setTimeout(() => {
          retryTimers.delete(timer)
          lanes.push(agent, e)
          pump()
        }, backoffDelay(++e.attempts, backoff))
        retryTimers.add(timer)
      }
    }

    function run(e: Held): void {
      active++
      attempt(e)
        .catch((err: unknown): Step => {
          trouble('store', err) // Redis (dedup, bucket, publish or ack) failed: try again later
          return { kind: 'retry', reason: 'backoff' }
        })
        .then((step) => {
          active--
          schedule(e, step)
          if (active === 0) idle?.()
          pump()
        })
    }

    function wakeAt(at: number): void {
      if (wakeTimer && wakeTimerAt <= at) return
      if (wakeTimer) clearTimeout(wakeTimer)
      wakeTimerAt = at
      wakeTimer = setTimeout(() => {
        wakeTimer = null
        pump()
      }, Math.max(0, at - performance.now()))
    }

    /** Starts attempts while there is concurrency left and a ready rating; otherwise sleeps until one is due. */
    function pump(): void {
      while (!stopping && active < c.OPENCLAW_CONCURRENCY) {
        const now = performance.now()
        if (pausedUntil > now) return wakeAt(pausedUntil)
        const next = lanes.next(now)
        if (!next) return
        if ('wakeAt' in next) return wakeAt(next.wakeAt)
        run(next.item)
      }
    }

    function hold(entry: QueueEntry): void {
      if (held.has(entry.id)) return // reclaimed from ourselves: already being worked on
      if (!entry.value) {
        app.log.error({ id: entry.id }, 'unreadable forward queue entry dropped')
        queue.ack(entry.id).catch(() => {})
        return
      }
      const e: Held = {
        id: entry.id,
        ...entry.value,
        charged: false,
        attempts: 0,
        score: null,
        remembered: false,
        finished: false
      }
      held.set(e.id, e)
      lanes.push(agentOf(e.rating), e)
    }

    /** Until woken (an ack made room, or the app closes), or `ms` passed. */
    function pauseReader(ms?: number): Promise<void> {
      return new Promise((resolve) => {
        const timer = ms === undefined ? undefined : setTimeout(() => wakeReader?.(), ms)
        wakeReader = () => {
          clearTimeout(timer)
          wakeReader = null
          resolve()
        }
      })
    }

    /** Reads while fewer than FORWARD_HELD_MAX are held, so other agents keep flowing past a slow one. */
    async function readLoop(): Promise<void> {
      let failures = 0
      while (!stopping) {
        const room = c.FORWARD_HELD_MAX - held.size
        if (room <= 0) {
          await pauseReader()
          continue
        }
        try {
          const entries = await queue.read(Math.min(room, READ_BATCH), READ_BLOCK_MS)
          failures = 0
          for (const entry of entries) hold(entry)
          pump()
        } catch (err) {
          if (stopping) return
          trouble('queue', err)
          await pauseReader(backoffDelay(++failures, backoff))
        }
      }
    }

    let polling = false
    const poll = setInterval(() => {
      if (polling) return
      polling = true
      queue
        .depth()
        .then((depth) => gauge.set(depth))
        .catch(() => {}) // Redis away: keep the last value, the queue calls report the outage
        .finally(() => (polling = false))
    }, DEPTH_POLL_MS).unref()
    // Entries held here stay ours: reset their idle time well before anyone may reclaim them.
    const touch = setInterval(() => {
      if (held.size) queue.touch([...held.keys()]).catch(() => {})
    }, c.QUEUE_CLAIM_MS / 3).unref()

    const reading = readLoop()

    app.decorate('forwarder', {
      async enqueue(ratings: FeedRating[], readAt: number) {
        if (!ratings.length) return
        await queue.add(ratings.map((rating) => ({ rating, readAt })))
        gauge.add(ratings.length)
      },
      full: () => gauge.full(),
      waitForRoom: () => gauge.waitForRoom()
    })

    // Stop reading, let in-flight forwards finish (bounded), leave the rest unacknowledged.
    app.addHook('onClose', async () => {
      stopping = true
      clearInterval(poll)
      clearInterval(touch)
      if (wakeTimer) clearTimeout(wakeTimer)
      for (const timer of retryTimers) clearTimeout(timer)
      queue.close()
      wakeReader?.()
      gauge.release()
      if (active > 0) {
        let bound: NodeJS.Timeout | undefined
        await new Promise<void>((resolve) => {
          idle = resolve
          bound = setTimeout(resolve, c.OPENCLAW_TIMEOUT_MS + 1000)
        })
        clearTimeout(bound)
      }
      await reading
    })
  },
  { name: 'forwarder', dependencies: ['metrics', 'redis', 'buckets', 'openclaw', 'events'] }
)
