import { randomUUID } from 'node:crypto'
import { HttpError } from '../errors.js'
import { parsePosition, type Position } from '../events/event-id.js'
import type { EventBus } from '../events/event-bus.js'
import type { Topic } from '../events/event-store.js'
import { retryAfterSeconds } from '../limits/token-bucket.js'
import type { Log } from '../logger.js'
import type { Metrics } from '../metrics.js'
import { REQUEST_STORE_BUDGET_MS } from '../shared/store-budget.js'
import { withTimeout } from '../shared/timeout.js'
import { settledWithin } from '../shared/wait.js'
import { systemClock, type Clock } from '../shared/clock.js'
import { Channel } from './channel.js'
import { DeliveryBucket, type DeliveryRule } from './delivery.js'
import { Heartbeats } from './heartbeats.js'
import type { StreamSlots } from './stream-slots.js'
import { Stream } from './stream.js'
import { LAST_MESSAGE_MS, type StreamContext, type StreamParams, type StreamSettings } from './stream-contract.js'

type StreamOwner = Stream['principal']

/** The scope whose streams get every user's events. */
const ALL_SCOPE = 'ratings:all'
const ALL_FEED = '*'

/** The channel key of an owner's streams: `u:<user>`, or ALL_FEED for `ratings:all`. */
const feedOf = (owner: StreamOwner) => (owner.scopes.includes(ALL_SCOPE) ? ALL_FEED : `u:${owner.sub}`)
/** A slot outlives this many missed heartbeats, then frees itself (its replica died). */
const SLOT_HEARTBEATS = 3
/** How long a drain waits beyond DRAIN_MS: the last stream is told at DRAIN_MS, then has LAST_MESSAGE_MS to take it. */
const DRAIN_SLACK_MS = LAST_MESSAGE_MS + 1000

export interface SseHubSettings extends StreamSettings {
  maxStreamsPerAgent: number
  /** Shutdown closes the open streams spread over this long. */
  drainMs: number
}

export interface SseHubDeps {
  bus: Pick<EventBus, 'join' | 'read' | 'userTopic' | 'allTopics'>
  /** Counts open streams per agent across replicas; closed by close(). */
  slots: StreamSlots
  /** The delivery rule of an agent now: how fast its streams on this replica get events. */
  delivery(agentId: string): DeliveryRule
  metrics: Pick<Metrics, 'sseOpen' | 'sseEventsSent' | 'sseConflated' | 'sseClosed' | 'sseRefused' | 'bucketDecisions'>
  log: Log
  clock?: Clock
}

export interface OpenRequest extends Pick<StreamParams, 'principal' | 'items' | 'sink'> {
  /** Resume after this position (Last-Event-ID header or `lastEventId` query), and where it came from (for a 400). */
  resume: { id: string; field: string } | null
  /** Uses up the ticket the stream was opened with (throws when it is gone): called last, once nothing else can refuse. */
  redeem?: (() => Promise<void>) | null
  /** Takes the response over and sends the status and headers: called once the stream can start. */
  begin(): void
  /** The request's logger. */
  log: Log
}

/**
 * The open SSE streams of this replica: admission (cap, drain), their channels (one per user with
 * a stream here, one for `ratings:all`: events serialized once per channel), delivery buckets, drain.
 */
export class SseHub {
  private readonly streams = new Set<Stream>()
  private readonly agents = new Map<string, DeliveryBucket>()
  /** By feedOf; each closed when its last stream goes. */
  private readonly channels = new Map<string, Channel>()
  private readonly context: StreamContext
  private readonly clock: Clock
  private readonly slotTtlMs: number
  private draining = false
  /** A shadow delivery policy would have held an event back (it was sent). */
  private readonly shadowLimited = () => this.deps.metrics.bucketDecisions.inc({ action: 'delivery', result: 'shadow_limited' })

  constructor(
    private readonly deps: SseHubDeps,
    private readonly settings: SseHubSettings
  ) {
    const { bus, slots, metrics } = deps
    this.clock = deps.clock ?? systemClock
    this.slotTtlMs = settings.heartbeatMs * SLOT_HEARTBEATS
    this.context = {
      read: (topic, afterId) => bus.read(topic, afterId),
      refreshSlot: (agentId, streamId) => slots.refresh(agentId, streamId, this.slotTtlMs),
      releaseSlot: (agentId, streamId) => slots.release(agentId, streamId),
      metrics,
      clock: this.clock,
      settings,
      heartbeats: new Heartbeats(this.clock, settings.heartbeatMs),
      finished: (stream) => this.closed(stream)
    }
  }

  /**
   * Opens the caller's stream: 400 for a resume position that is malformed or newer than any
   * event, 429 over the agent's cap, 503 while draining or when the history cannot be read. The
   * ticket is redeemed last: a refused request leaves it for the next try.
   */
  async open(request: OpenRequest): Promise<void> {
    const { metrics, slots } = this.deps
    if (this.draining) {
      metrics.sseRefused.inc({ reason: 'draining' })
      throw new HttpError(503, 'shutting down: reconnect to another replica', { 'Retry-After': '1' })
    }
    const { principal } = request
    const feed = feedOf(principal)
    const all = feed === ALL_FEED
    const resume = request.resume && this.position(request.resume, all)
    const { agentId } = principal
    const cap = this.settings.maxStreamsPerAgent
    const id = randomUUID()
    const slot = await withTimeout(slots.acquire(agentId, id, cap, this.slotTtlMs), REQUEST_STORE_BUDGET_MS).catch((err: Error) => {
      // The cap is a safety bound: a Redis outage (or a hung one) must not take every stream down with it.
      request.log.warn({ err: err.message }, 'stream cap unavailable: stream admitted')
      return { acquired: true, retryAfterMs: 0 }
    })
    if (!slot.acquired) {
      metrics.sseRefused.inc({ reason: 'cap' })
      const retryAfter = String(retryAfterSeconds(slot.retryAfterMs))
      throw new HttpError(429, `agent already has ${cap} open streams`, { 'Retry-After': retryAfter })
    }
    const delivery = this.agents.get(agentId) ?? this.deliveryBucket(agentId)
    this.agents.set(agentId, delivery)
    delivery.streams++
    const channel = this.channel(feed, () => (all ? this.deps.bus.allTopics() : [this.deps.bus.userTopic(principal.sub)]))
    const stream = new Stream(this.context, { id, principal, channel, items: request.items, sink: request.sink, delivery })
    this.streams.add(stream)
    let future: boolean
    try {
      // Joining the live channel and reading the history, within a request's budget (a hung Redis: 503).
      ;({ future } = await withTimeout(stream.start(resume), REQUEST_STORE_BUDGET_MS))
    } catch (err) {
      stream.finish(null)
      request.log.warn({ err: err instanceof Error ? err.message : String(err) }, 'history unavailable')
      throw new HttpError(503, 'history unavailable, retry shortly', { 'Retry-After': '1' })
    }
    if (future) {
      stream.finish(null)
      throw new HttpError(400, `${request.resume?.field} is newer than any event of this stream`)
    }
    try {
      await request.redeem?.()
    } catch (err) {
      stream.finish(null) // a ticket used meanwhile by another request: this one frees its slot
      throw err
    }
    stream.attach(request.begin)
  }

  /** The resume position of a user's stream (one event id) or of `ratings:all` (one per partition), or a 400. */
  private position({ id, field }: { id: string; field: string }, all: boolean): Position {
    const parts = all ? this.deps.bus.allTopics().length : 1
    const position = parsePosition(id, parts)
    if (position) return position
    const shape = parts === 1 ? 'an event id (<ms>-<seq>)' : `a ratings:all position (${parts} event ids joined by '.')`
    throw new HttpError(400, `${field} must be ${shape}`)
  }

  private channel(feed: string, topics: () => Topic[]): Channel {
    const known = this.channels.get(feed)
    if (known) return known
    const channel = new Channel(this.deps.bus, topics())
    // A failed join is reported by the stream that waited for it; the next stream tries afresh.
    channel.ready.catch(() => this.release(feed))
    this.channels.set(feed, channel)
    return channel
  }

  /** Closes the feed's channel once no stream is left on it. */
  private release(feed: string): void {
    const channel = this.channels.get(feed)
    if (!channel?.empty) return
    this.channels.delete(feed)
    channel.close()
  }

  /**
   * Called by a stream once it is over (whatever ended it): the hub lets go of it, and of its
   * agent's delivery bucket and its channel if it was their last stream. Found from the stream's
   * owner, so that a stream holds no closure over its request for this.
   */
  private closed(stream: Stream): void {
    this.streams.delete(stream)
    const { principal } = stream
    const delivery = this.agents.get(principal.agentId)
    if (delivery && --delivery.streams === 0) this.agents.delete(principal.agentId)
    this.release(feedOf(principal))
  }

  private deliveryBucket(agentId: string): DeliveryBucket {
    return new DeliveryBucket(agentId, this.deps.delivery, this.shadowLimited)
  }

  /** Ends every open stream whose owner `revoked` says is revoked (after an `event: revoked`); returns how many. */
  revoke(revoked: (owner: StreamOwner) => boolean): number {
    let ended = 0
    for (const stream of this.streams) {
      if (!revoked(stream.principal)) continue
      stream.end('revoked')
      ended++
    }
    return ended
  }

  /** Open streams per agent over every replica (the per-agent slots count them). */
  openPerAgent(): Promise<Map<string, number>> {
    return this.deps.slots.counts()
  }

  /**
   * Shutdown: refuses new streams, then closes the open ones spread over DRAIN_MS, each told to
   * retry, so the clients do not reconnect to the other replicas as one herd.
   */
  async drain(): Promise<void> {
    this.draining = true
    const streams = [...this.streams]
    const step = streams.length > 1 ? this.settings.drainMs / (streams.length - 1) : 0
    const cancels = streams.map((stream, index) => this.clock.after(index * step, () => stream.end('drain')))
    await settledWithin(Promise.all(streams.map((stream) => stream.done)), this.settings.drainMs + DRAIN_SLACK_MS)
    for (const cancel of cancels) cancel()
    for (const stream of this.streams) stream.cut('drain')
  }

  async close(): Promise<void> {
    for (const channel of this.channels.values()) channel.close()
    this.channels.clear()
    await this.deps.slots.close()
  }
}
