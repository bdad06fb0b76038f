import { agentOf, type FeedRating } from '../rating.js'
import { backoffDelay, type BackoffOptions } from '../shared/backoff.js'
import { clampDelay, systemClock, type Clock } from '../shared/clock.js'
import { OutageLog } from '../shared/outage-log.js'
import { settledWithin, Wakeable } from '../shared/wait.js'
import { traceEach } from '../tracing/spans.js'
import { DepthGauge } from './depth-gauge.js'
import type { QueueEntry } from './queue.js'
import { RatingStages, sinceRead, type Held, type Outcome, type StageDeps } from './rating-stages.js'
import { ForwardSchedule } from './schedule.js'

/** How often the queue depth is read. */
const DEPTH_POLL_MS = 250
/** Entries asked for per read, and how long a read waits for new ones. */
const READ_BATCH = 100
const READ_BLOCK_MS = 1000

export interface ForwarderDeps extends StageDeps {
  /** The clock of bucket waits, the 429 pause and retry delays. */
  clock?: Clock
}

export interface ForwarderOptions {
  /** Ratings worked on at once (each attempt is Redis round trips besides its OpenClaw call). */
  concurrency: number
  /** Of those, at most this many before their OpenClaw answer (OPENCLAW_CONCURRENCY; default: all). */
  callConcurrency?: number
  /** Ratings read and not yet acknowledged, at most: the room to pass an agent that waits. */
  heldMax: number
  /** The queue depth at which the feed must pause. */
  queueMax: number
  /** A pending entry idle this long is reclaimed by another replica. */
  queueClaimMs: number
  /** OpenClaw's timeout: bounds a dedup claim, and the wait for calls in flight on close. */
  callTimeoutMs: number
  backoff: BackoffOptions
}

/**
 * The feed half of the pipeline: queue → dedup claim → the agent's `forward` bucket → OpenClaw →
 * publish → ack. An entry is acknowledged only once its score is published (or it turns out to be
 * a duplicate), so whatever a dead or closed replica held is reclaimed. Agents are served
 * round-robin: one whose bucket is empty waits while the others flow.
 */
export class Forwarder {
  private readonly held = new Map<string, Held>()
  private readonly schedule: ForwardSchedule<Held>
  private readonly gauge: DepthGauge
  private readonly outage: OutageLog
  private readonly stages: RatingStages
  /** The read loop sleeps here while `heldMax` are held, or after a failed read. */
  private readonly reader = new Wakeable()
  private readonly attempts = new Set<Promise<void>>()
  private toucher: NodeJS.Timeout | undefined
  private stopping = false
  private reading: Promise<void> = Promise.resolve()

  constructor(
    private readonly deps: ForwarderDeps,
    private readonly options: ForwarderOptions
  ) {
    this.schedule = new ForwardSchedule(deps.clock ?? systemClock, () => this.pump())
    this.gauge = new DepthGauge(options.queueMax, (depth) => deps.metrics.queueDepth.set(depth))
    this.outage = new OutageLog(deps.log, { down: 'forwarding delayed', up: 'forwarding recovered' })
    // A dedup claim covers one attempt (bucket, OpenClaw with its timeout, marking it done); a dead claimer's expires.
    this.stages = new RatingStages(deps, 2 * options.callTimeoutMs + 1000, this.outage, options.callConcurrency ?? options.concurrency)
  }

  /** Durably queues feed ratings read off the socket at `readAt` (Date.now() ms). */
  async enqueue(ratings: FeedRating[], readAt: number): Promise<void> {
    if (!ratings.length) return
    // Each feed rating starts a trace of its own, carried in its queue entry.
    await traceEach('feed.ingest', ratings.length, (traces) =>
      this.deps.queue.add(ratings.map((rating, index) => ({ rating, readAt, trace: traces[index] })))
    )
    this.gauge.add(ratings.length)
    const queued = sinceRead(readAt)
    for (let i = 0; i < ratings.length; i++) this.deps.metrics.feedStage.observe({ stage: 'queued' }, queued)
  }

  /** True while the queue is above its high-water mark: the feed must pause. */
  full(): boolean {
    return this.gauge.full()
  }

  /** Resolves once the queue is below its low-water mark. */
  waitForRoom(): Promise<void> {
    return this.gauge.waitForRoom()
  }

  /** Unacknowledged entries per queue partition. */
  async depths(): Promise<{ partition: number; depth: number }[]> {
    return (await this.deps.queue.depths()).map((depth, partition) => ({ partition, depth }))
  }

  /** Starts reading the queue. */
  start(): void {
    const { queue } = this.deps
    this.gauge.poll(() => queue.depth(), DEPTH_POLL_MS)
    // Entries held here stay ours: reset their idle time well before anyone may reclaim them.
    this.toucher = setInterval(() => {
      if (this.held.size) queue.touch([...this.held.keys()]).catch(() => {})
    }, clampDelay(this.options.queueClaimMs / 3)).unref()
    this.reading = this.readLoop()
  }

  /** Stops reading, lets calls in flight finish (bounded), leaves the rest unacknowledged; closes both stores. */
  async close(): Promise<void> {
    this.stopping = true
    this.stages.close()
    clearInterval(this.toucher)
    this.gauge.close()
    this.schedule.close()
    await this.deps.queue.close()
    this.reader.wake()
    if (this.attempts.size) await settledWithin(Promise.all(this.attempts), this.options.callTimeoutMs + 1000)
    await this.reading
    await this.deps.dedup.close()
  }

  /** Reads while fewer than `heldMax` are held, so other agents keep flowing past one that waits. */
  private async readLoop(): Promise<void> {
    let failures = 0
    while (!this.stopping) {
      const room = this.options.heldMax - this.held.size
      if (room <= 0) {
        await this.reader.sleep()
        continue
      }
      try {
        const entries = await this.deps.queue.read(Math.min(room, READ_BATCH), READ_BLOCK_MS)
        failures = 0
        for (const entry of entries) this.hold(entry)
        this.pump()
      } catch (err) {
        if (this.stopping) return
        this.outage.down(err, 'queue')
        await this.reader.sleep(backoffDelay(++failures, this.options.backoff))
      }
    }
  }

  private hold(entry: QueueEntry): void {
    if (this.held.has(entry.id)) return // reclaimed from ourselves: already being worked on
    if (!entry.value) {
      this.deps.log.error({ id: entry.id }, 'unreadable forward queue entry dropped')
      this.deps.queue.ack(entry.id).catch(() => {})
      return
    }
    const held: Held = { id: entry.id, ...entry.value, progress: { stage: 'claim' }, charged: false, retries: 0, calls: 0 }
    this.held.set(held.id, held)
    this.deps.metrics.feedStage.observe({ stage: 'picked' }, sinceRead(held.readAt))
    this.schedule.add(agentOf(held.rating), held)
  }

  /** Starts attempts while there is concurrency left and a rating is due (the schedule calls again when one is). */
  private pump(): void {
    while (!this.stopping && this.attempts.size < this.options.concurrency) {
      const held = this.schedule.next()
      if (!held) return
      this.run(held)
    }
  }

  private run(held: Held): void {
    const attempt: Promise<void> = this.stages.attempt(held)
      .catch((err: unknown): Outcome => {
        this.outage.down(err, 'store') // a store (dedup, bucket, history or queue) failed: try again later
        return { kind: 'backoff' }
      })
      .then((outcome) => {
        this.attempts.delete(attempt)
        this.reschedule(held, outcome)
        this.pump()
      })
    this.attempts.add(attempt)
  }

  /** After an attempt: forget an acknowledged rating, or put it back to be tried when its wait is over. */
  private reschedule(held: Held, outcome: Outcome): void {
    if (outcome.kind === 'acked') {
      this.held.delete(held.id)
      this.reader.wake()
      return
    }
    // Closing: leave it unacknowledged in the queue for whoever reads next.
    if (this.stopping) return
    this.deps.metrics.forwardDelayed.inc({ reason: outcome.kind })
    const agent = agentOf(held.rating)
    if (outcome.kind === 'bucket') this.schedule.afterBucket(agent, held, outcome.waitMs)
    else if (outcome.kind === 'upstream_429') this.schedule.afterPause(agent, held, outcome.waitMs)
    else this.schedule.retry(agent, held, backoffDelay(++held.retries, this.options.backoff))
  }
}
