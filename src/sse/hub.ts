import { randomUUID } from 'node:crypto'
import { HttpError } from '../errors.js'
import type { EventBus } from '../events/event-bus.js'
import { ListenerIndex } from '../events/listener-index.js'
import { retryAfterSeconds } from '../limits/token-bucket.js'
import type { Log } from '../logger.js'
import type { Metrics } from '../metrics.js'
import { REQUEST_STORE_BUDGET_MS } from '../shared/store-budget.js'
import { withTimeout } from '../shared/timeout.js'
import { settledWithin } from '../shared/wait.js'
import { systemClock, type Clock } from '../shared/clock.js'
import { DeliveryBucket, type DeliveryRule } from './delivery.js'
import { serializeEvent, type SerializedEvent } from './frame.js'
import type { StreamSlots } from './stream-slots.js'
import { LAST_MESSAGE_MS, Stream, type StreamContext, type StreamParams, type StreamSettings } from './stream.js'

type StreamOwner = Stream['principal']

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
  bus: Pick<EventBus, 'subscribe' | 'replay'>
  /** Counts open streams per agent across replicas; closed by close(). */
  slots: StreamSlots
  /** The delivery rule of an agent now: how fast its streams on this replica get events. */
  delivery(agentId: string): DeliveryRule
  metrics: Pick<Metrics, 'sseOpen' | 'sseEventsSent' | 'sseConflated' | 'sseClosed' | 'sseRefused' | 'bucketDecisions'>
  log: Log
  clock?: Clock
}

export interface OpenRequest extends Pick<StreamParams, 'principal' | 'items' | 'sink'> {
  /** Resume after this id (Last-Event-ID header or `lastEventId` query). */
  lastEventId: string | null
  /** Uses up the ticket the stream was opened with (throws when it is gone): called last, once nothing else can refuse. */
  redeem?: (() => Promise<void>) | null
  /** Takes the response over and sends the status and headers: called once the stream can start. */
  begin(): void
  /** The request's logger. */
  log: Log
}

/** The open SSE streams of this replica: admission (cap, drain), serialized fan-out, delivery buckets, drain. */
export class SseHub {
  private readonly streams = new Set<Stream>()
  private readonly agents = new Map<string, DeliveryBucket>()
  /** The streams' listeners: each event is serialized once here and shared by every stream. */
  private readonly listeners: ListenerIndex<SerializedEvent>
  private readonly context: StreamContext
  private readonly clock: Clock
  private readonly slotTtlMs: number
  private readonly unsubscribe: () => void
  private draining = false

  constructor(
    private readonly deps: SseHubDeps,
    private readonly settings: SseHubSettings
  ) {
    const { bus, slots, metrics, log } = deps
    this.clock = deps.clock ?? systemClock
    this.listeners = new ListenerIndex((err) => log.error({ err }, 'event listener failed'))
    this.slotTtlMs = settings.heartbeatMs * SLOT_HEARTBEATS
    this.context = {
      subscribe: (listener, userId) => this.listeners.add(listener, userId),
      replay: (userId, afterId) => bus.replay(userId, afterId),
      refreshSlot: (agentId, streamId) => slots.refresh(agentId, streamId, this.slotTtlMs),
      releaseSlot: (agentId, streamId) => slots.release(agentId, streamId),
      metrics,
      clock: this.clock,
      settings
    }
    this.unsubscribe = bus.subscribe((stored) => {
      if (!this.listeners.empty) this.listeners.notify(stored.event.user_id, serializeEvent(stored))
    })
  }

  /**
   * Opens the caller's stream (429 over the agent's cap, 503 while draining or without history),
   * redeeming its ticket last: a refused request leaves the ticket for the next try.
   */
  async open(request: OpenRequest): Promise<void> {
    const { metrics, slots } = this.deps
    if (this.draining) {
      metrics.sseRefused.inc({ reason: 'draining' })
      throw new HttpError(503, 'shutting down: reconnect to another replica', { 'Retry-After': '1' })
    }
    const { agentId } = request.principal
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
    const stream: Stream = new Stream(this.context, {
      id,
      principal: request.principal,
      items: request.items,
      sink: request.sink,
      delivery,
      onFinish: () => {
        this.streams.delete(stream)
        if (--delivery.streams === 0) this.agents.delete(agentId)
      }
    })
    this.streams.add(stream)
    let gap: string | undefined
    try {
      gap = await stream.start(request.lastEventId)
    } catch (err) {
      stream.finish(null)
      request.log.warn({ err: err instanceof Error ? err.message : String(err) }, 'history unavailable')
      throw new HttpError(503, 'history unavailable, retry shortly', { 'Retry-After': '1' })
    }
    try {
      await request.redeem?.()
    } catch (err) {
      stream.finish(null) // a ticket used meanwhile by another request: this one frees its slot
      throw err
    }
    stream.attach(gap, request.begin)
  }

  private deliveryBucket(agentId: string): DeliveryBucket {
    const { delivery, metrics } = this.deps
    return new DeliveryBucket(
      () => delivery(agentId),
      () => metrics.bucketDecisions.inc({ action: 'delivery', result: 'shadow_limited' })
    )
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
    this.unsubscribe()
    this.listeners.clear()
    await this.deps.slots.close()
  }
}
