import type { Log } from '../logger.js'
import type { Metrics } from '../metrics.js'
import { agentOf, toRating, type FeedRating, type Rating, type ScoreEvent } from '../rating.js'
import { backoffDelay, type BackoffOptions } from '../shared/backoff.js'
import { clampDelay, systemClock, type Clock } from '../shared/clock.js'
import { OutageLog } from '../shared/outage-log.js'
import { settledWithin, Wakeable } from '../shared/wait.js'
import { refusedForGood, UpstreamError } from '../upstream/errors.js'
import type { DeadLetterReason, DeadLetterStore } from './dead-letters.js'
import type { DedupStore } from './dedup.js'
import { DepthGauge } from './depth-gauge.js'
import type { QueueEntry, QueueStore } from './queue.js'
import { ForwardSchedule } from './schedule.js'

/** How often the queue depth is read. */
const DEPTH_POLL_MS = 250
/** Entries asked for per read, and how long a read waits for new ones. */
const READ_BATCH = 100
const READ_BLOCK_MS = 1000
/** How long a 429 without Retry-After pauses the calls to OpenClaw. */
const LIMITED_PAUSE_MS = 1000

/** The agent's bucket: a token taken, or when the next one is due. */
export interface BucketAnswer {
  allowed: boolean
  retryAfterMs: number
}

export interface ForwarderDeps {
  queue: QueueStore
  dedup: DedupStore
  /** Where a rating OpenClaw refuses for good goes, so the queue moves on. */
  deadLetters: Pick<DeadLetterStore, 'add'>
  /** Takes one token from `agent`'s bucket of the `forward` policy. */
  take(action: 'forward', agent: string): Promise<BucketAnswer>
  /** OpenClaw: the score event for a rating, or an UpstreamError. */
  rate(rating: Rating): Promise<ScoreEvent>
  /** Stores the score event in the user's history and fans it out. */
  publish(event: ScoreEvent): Promise<unknown>
  metrics: Pick<Metrics, 'queueDepth' | 'dedupHits' | 'forwardDelayed' | 'feedToPublish' | 'forwardDeadLettered'>
  log: Log
  /** The clock of bucket waits, the 429 pause and retry delays. */
  clock?: Clock
}

export interface ForwarderOptions {
  /** OpenClaw calls at once. */
  concurrency: number
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
 * Where a held rating stands, in order: `claim` the dedup key (a duplicate goes straight to
 * `ack`), `charge` the agent's forward token, `call` OpenClaw, `remember` it as forwarded,
 * `publish` the score, `ack` the queue entry. A rating OpenClaw refuses for good goes from
 * `call` to `deadletter` (set aside, claim given back), then `ack`. A retry resumes at its
 * stage; a stop at `charge` or `call` gives the claim back and resumes at `claim` (a token paid
 * stays paid).
 */
type Progress =
  | { stage: 'claim' | 'charge' | 'call' | 'ack' }
  | { stage: 'remember' | 'publish'; score: ScoreEvent }
  | { stage: 'deadletter'; reason: DeadLetterReason; status: number | null; detail: string }

/** One rating this replica works on: read from the queue, not yet acknowledged. */
interface Held {
  id: string
  rating: FeedRating
  /** When it was read off the feed (Date.now() ms), for the feed-to-publish latency. */
  readAt: number
  progress: Progress
  /** Its forward token is paid: a retry does not charge the agent again. */
  charged: boolean
  /** Backoff retries so far. */
  retries: number
  /** Calls to OpenClaw so far. */
  calls: number
}

/** What became of one attempt, and so when the rating is tried again (the kind is the delay's metric label). */
type Outcome =
  | { kind: 'acked' }
  | { kind: 'bucket' | 'upstream_429'; waitMs: number }
  | { kind: 'backoff' | 'inflight' }

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
  /** Covers one attempt (bucket, OpenClaw with its timeout, marking it done); a dead claimer's claim expires. */
  private readonly claimMs: number
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
    this.claimMs = 2 * options.callTimeoutMs + 1000
    this.gauge = new DepthGauge(options.queueMax, (depth) => deps.metrics.queueDepth.set(depth))
    this.outage = new OutageLog(deps.log, { down: 'forwarding delayed', up: 'forwarding recovered' })
  }

  /** Durably queues feed ratings read off the socket at `readAt` (Date.now() ms). */
  async enqueue(ratings: FeedRating[], readAt: number): Promise<void> {
    if (!ratings.length) return
    await this.deps.queue.add(ratings.map((rating) => ({ rating, readAt })))
    this.gauge.add(ratings.length)
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
    const attempt: Promise<void> = this.attempt(held)
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

  /** Takes the rating through its stages as far as it goes now. */
  private async attempt(held: Held): Promise<Outcome> {
    try {
      for (;;) {
        const outcome = await this.advance(held)
        if (outcome) return outcome
      }
    } finally {
      const { stage } = held.progress
      // Claimed but not forwarded: anyone may try it again.
      if (stage === 'charge' || stage === 'call') {
        held.progress = { stage: 'claim' }
        await this.deps.dedup.release(held.rating).catch(() => {})
      }
    }
  }

  /** Does the current stage; an outcome ends the attempt there. */
  private async advance(held: Held): Promise<Outcome | null> {
    const { rating, progress } = held
    switch (progress.stage) {
      case 'claim': {
        const claim = await this.deps.dedup.claim(rating, this.claimMs)
        if (claim === 'inflight') return { kind: 'inflight' }
        if (claim === 'done') {
          this.deps.metrics.dedupHits.inc()
          held.progress = { stage: 'ack' }
        } else {
          held.progress = { stage: held.charged ? 'call' : 'charge' }
        }
        return null
      }
      case 'charge': {
        const bucket = await this.deps.take('forward', agentOf(rating))
        if (!bucket.allowed) return { kind: 'bucket', waitMs: bucket.retryAfterMs }
        held.charged = true
        held.progress = { stage: 'call' }
        return null
      }
      case 'call':
        return this.call(held)
      case 'remember':
        await this.deps.dedup.done(rating)
        held.progress = { stage: 'publish', score: progress.score }
        return null
      case 'publish':
        await this.deps.publish(progress.score)
        this.deps.metrics.feedToPublish.observe(Math.max(0, Date.now() - held.readAt) / 1000)
        held.progress = { stage: 'ack' }
        return null
      case 'deadletter':
        await this.deadLetter(held, progress)
        held.progress = { stage: 'ack' }
        return null
      case 'ack':
        await this.deps.queue.ack(held.id)
        this.outage.up()
        return { kind: 'acked' }
    }
  }

  private async call(held: Held): Promise<Outcome | null> {
    held.calls++
    try {
      held.progress = { stage: 'remember', score: await this.deps.rate(toRating(held.rating)) }
      return null
    } catch (err) {
      if (!(err instanceof UpstreamError)) throw err
      const reason = refusedForGood(err)
      if (reason) {
        held.progress = { stage: 'deadletter', reason, status: err.status ?? null, detail: err.message }
        return null
      }
      this.outage.down(err, `openclaw_${err.kind}`)
      if (err.kind === 'limited') return { kind: 'upstream_429', waitMs: err.retryAfterMs ?? LIMITED_PAUSE_MS }
      return { kind: 'backoff' }
    }
  }

  /** Sets the rating aside for an operator (admin API) and gives its claim back, so a retry of it is forwarded. */
  private async deadLetter(held: Held, { reason, status, detail }: Extract<Progress, { stage: 'deadletter' }>): Promise<void> {
    const { deadLetters, dedup, metrics, log } = this.deps
    await deadLetters.add({ rating: held.rating, reason, status, detail, attempts: held.calls, at: Date.now() })
    metrics.forwardDeadLettered.inc({ reason })
    log.warn({ entry: held.id, reason, status, attempts: held.calls }, 'rating dead-lettered: OpenClaw refused it for good')
    await dedup.release(held.rating).catch(() => {
      /* the claim expires by itself */
    })
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
