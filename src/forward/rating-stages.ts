import pLimit, { type LimitFunction } from 'p-limit'
import type { Log } from '../logger.js'
import type { Metrics } from '../metrics.js'
import { agentOf, toRating, type FeedRating, type Rating, type ScoreEvent } from '../rating.js'
import type { OutageLog } from '../shared/outage-log.js'
import { traced } from '../tracing/spans.js'
import { refusedForGood, UpstreamError } from '../upstream/errors.js'
import type { DeadLetterReason, DeadLetterStore } from './dead-letters.js'
import type { PublishMark } from '../events/event-store.js'
import type { DedupStore } from './dedup.js'
import type { QueueStore } from './queue.js'

/** Seconds since a rating was read off the feed at `readAt` (Date.now() ms), for the stage latencies. */
export const sinceRead = (readAt: number) => Math.max(0, Date.now() - readAt) / 1000

/** Stages up to OpenClaw's answer: they hold a call slot (OPENCLAW_CONCURRENCY). */
const beforeAnswer = (held: Held) => held.progress.stage === 'claim' || held.progress.stage === 'charge' || held.progress.stage === 'call'

/** What an attempt that waited for a slot until close comes to: nothing done, tried again by whoever reads next. */
const CLOSED: Outcome = { kind: 'backoff' }

/** How long a 429 without Retry-After pauses the calls to OpenClaw. */
const LIMITED_PAUSE_MS = 1000

/** The agent's bucket: a token taken, or when the next one is due. */
export interface BucketAnswer {
  allowed: boolean
  retryAfterMs: number
}

/** What a rating's stages call: the stores, the agent's bucket, OpenClaw and the event bus. */
export interface StageDeps {
  queue: QueueStore
  dedup: DedupStore
  /** Where a rating OpenClaw refuses for good goes, so the queue moves on. */
  deadLetters: Pick<DeadLetterStore, 'add'>
  /** Takes one token from `agent`'s bucket of the `forward` policy. */
  take(action: 'forward', agent: string): Promise<BucketAnswer>
  /** OpenClaw: the score event for a rating, or an UpstreamError. */
  rate(rating: Rating): Promise<ScoreEvent>
  /** Stores the score event in the user's history and fans it out. */
  /** `mark`: the dedup mark, set in the publish's own atomic step. */
  publish(event: ScoreEvent, mark?: PublishMark): Promise<unknown>
  metrics: Pick<Metrics, 'queueDepth' | 'dedupHits' | 'forwardDelayed' | 'feedStage' | 'feedToPublish' | 'forwardDeadLettered'>
  log: Log
}

/**
 * Where a held rating stands, in order: `claim` the dedup key (a duplicate goes straight to
 * `ack`), `charge` the agent's forward token, `call` OpenClaw, `remember` it as forwarded and
 * `publish` the score (with Redis, one atomic step), `ack` the queue entry. A rating OpenClaw
 * refuses for good goes from `call` to `deadletter` (set aside and marked handled, so a replica
 * that reclaims the entry does not call OpenClaw again), then `ack`. A retry resumes at its
 * stage; a stop at `charge` or `call` gives the claim back and resumes at `claim` (a token paid
 * stays paid).
 */
export type Progress =
  | { stage: 'claim' | 'charge' | 'call' | 'ack' }
  | { stage: 'remember' | 'publish'; score: ScoreEvent }
  | { stage: 'deadletter'; reason: DeadLetterReason; status: number | null; detail: string }

/** One rating this replica works on: read from the queue, not yet acknowledged. */
export interface Held {
  id: string
  rating: FeedRating
  /** When it was read off the feed (Date.now() ms), for the feed-to-publish latency. */
  readAt: number
  /** The traceparent of its ingest (tracing on): each attempt is a span of that trace. */
  trace?: string
  progress: Progress
  /** Its forward token is paid: a retry does not charge the agent again. */
  charged: boolean
  /** Backoff retries so far. */
  retries: number
  /** Calls to OpenClaw so far. */
  calls: number
}

/** What became of one attempt, and so when the rating is tried again (the kind is the delay's metric label). */
export type Outcome =
  | { kind: 'acked' }
  | { kind: 'bucket' | 'upstream_429'; waitMs: number }
  | { kind: 'backoff' | 'inflight' }

/**
 * Takes one held rating through its stages as far as it goes now (see Progress). The Forwarder
 * decides when an attempt runs; this decides what an attempt does.
 */
export class RatingStages {
  /** Attempts short of their OpenClaw answer run in one of these slots, the steps after it do not. */
  private readonly callSlots: LimitFunction
  private closing = false

  constructor(
    private readonly deps: StageDeps,
    /** Covers one attempt (bucket, OpenClaw with its timeout, marking it done); a dead claimer's claim expires. */
    private readonly claimMs: number,
    private readonly outage: OutageLog,
    callConcurrency: number
  ) {
    this.callSlots = pLimit(callConcurrency)
  }

  /** Takes the rating through its stages as far as it goes now. */
  attempt(held: Held): Promise<Outcome> {
    const attributes = { 'moltbridge.stage': held.progress.stage, 'moltbridge.calls': held.calls }
    return traced('forward.attempt', () => this.advanceAll(held), { parent: held.trace ?? null, attributes })
  }

  private async advanceAll(held: Held): Promise<Outcome> {
    try {
      // The slot is taken before the claim, so waiting for it never eats into the claim's time.
      const early = beforeAnswer(held) ? await this.callSlots(() => (this.closing ? CLOSED : this.advanceWhile(held, beforeAnswer))) : null
      if (early) return early
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

  /** Attempts still waiting for a call slot end at once, untried (the entry stays in the queue). */
  close(): void {
    this.closing = true
  }

  /** Does stage after stage while `more` holds; an outcome ends the attempt there (null: `more` stopped it). */
  private async advanceWhile(held: Held, more: (held: Held) => boolean): Promise<Outcome | null> {
    while (more(held)) {
      const outcome = await this.advance(held)
      if (outcome) return outcome
    }
    return null
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
        // With Redis the mark goes with the publish, in one atomic step (below): a replica dying
        // in between cannot leave the rating marked forwarded with its score never published.
        if (!this.deps.dedup.publishMark(rating)) await this.deps.dedup.done(rating)
        held.progress = { stage: 'publish', score: progress.score }
        return null
      case 'publish':
        await this.deps.publish(progress.score, this.deps.dedup.publishMark(rating) ?? undefined)
        this.deps.metrics.feedToPublish.observe(sinceRead(held.readAt))
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
      this.deps.metrics.feedStage.observe({ stage: 'answered' }, sinceRead(held.readAt))
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

  /**
   * Sets the rating aside for an operator (admin API) and marks it handled: a replica that
   * reclaims the entry (this one died or stalled before the ack) acks it instead of calling
   * OpenClaw and dead-lettering it a second time. An operator's retry forgets the mark.
   */
  private async deadLetter(held: Held, { reason, status, detail }: Extract<Progress, { stage: 'deadletter' }>): Promise<void> {
    const { deadLetters, dedup, metrics, log } = this.deps
    await deadLetters.add({ rating: held.rating, reason, status, detail, attempts: held.calls, at: Date.now() })
    metrics.forwardDeadLettered.inc({ reason })
    log.warn({ entry: held.id, reason, status, attempts: held.calls }, 'rating dead-lettered: OpenClaw refused it for good')
    await dedup.done(held.rating).catch(() => {
      /* unmarked: a replica that reclaims the entry may set it aside a second time; nothing is lost */
    })
  }
}
