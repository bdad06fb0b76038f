import type { Principal } from '../auth/credentials.js'
import { compareEventIds } from '../events/event-id.js'
import type { Replay, StoredEvent } from '../events/event-store.js'
import type { Metrics } from '../metrics.js'
import type { Clock } from '../shared/clock.js'
import { ConflatingBuffer } from './conflation.js'
import type { DeliveryBucket } from './delivery.js'
import { EXPIRED_FRAME, gapFrame, HEARTBEAT_FRAME, retryFrame, REVOKED_FRAME, serializeEvent, type SerializedEvent } from './frame.js'

export type CloseReason = 'client' | 'slow_consumer' | 'overflow' | 'expired' | 'drain' | 'revoked'

/** A socket that does not take a stream's last message (expired event, retry hint) within this is cut. */
export const LAST_MESSAGE_MS = 2000

const ALL_SCOPE = 'ratings:all'

/** The socket side of an SSE response: a node:http ServerResponse, or any Writable. */
export interface StreamSink {
  write(chunk: string): boolean
  end(): unknown
  destroy(): unknown
  readonly destroyed: boolean
  readonly writableEnded: boolean
  /** Bytes written but not yet taken by the socket. */
  readonly writableLength: number
  on(event: 'close' | 'drain', listener: () => void): unknown
}

export type StreamMetrics = Pick<Metrics, 'sseOpen' | 'sseEventsSent' | 'sseConflated' | 'sseClosed'>

export interface StreamSettings {
  heartbeatMs: number
  /** The reconnect delay the browser is told. */
  retryMs: number
  /**
   * What a stream holds for its client (socket + conflating buffer) stays under this: a stalled
   * socket is cut, a stream held back by its delivery bucket ends with a retry hint.
   */
  maxUnsentBytes: number
}

/** What every stream of a hub shares. */
export interface StreamContext {
  /** Live events of `userId` (null: every user) as they reach this replica; returns unsubscribe. */
  subscribe(listener: (event: SerializedEvent) => void, userId: string | null): () => void
  replay(userId: string | null, afterId: string): Promise<Replay>
  /** Keeps the stream's slot under the agent's cap alive (each heartbeat). */
  refreshSlot(agentId: string, streamId: string): Promise<void>
  releaseSlot(agentId: string, streamId: string): Promise<void>
  metrics: StreamMetrics
  clock: Clock
  settings: StreamSettings
}

export interface StreamParams {
  id: string
  principal: Pick<Principal, 'sub' | 'agentId' | 'scopes' | 'exp' | 'iat'>
  /** Only these items (the `items=` query); null: every item. */
  items: string[] | null
  sink: StreamSink
  /** The agent's delivery bucket, shared with its other streams on this replica. */
  delivery: DeliveryBucket
  /** Called once, when the stream is over. */
  onFinish(): void
}

/**
 * One subscriber's SSE stream: live events and the history it missed, in id order, paced by the
 * agent's delivery bucket and conflated while the socket is backed up.
 */
export class Stream {
  readonly id: string
  readonly done: Promise<void>
  private readonly buffer = new ConflatingBuffer<SerializedEvent>(
    (event) => event.key,
    (event) => event.bytes
  )
  private readonly userId: string | null
  private readonly items: Set<string> | null
  private lastQueued: string | null = null
  private ending: CloseReason | null = null
  private finished = false
  private heartbeatDue = false
  /** Headers and the first messages are out: the pump may write. */
  private attached = false
  /** The socket asked us to wait (write returned false) and has not drained yet. */
  private blocked = false
  /** A pump is due in this tick's microtasks: events that arrive together leave in one write. */
  private scheduled = false
  /** Pumps again when the agent's delivery bucket has the next token. */
  private cancelRetry: (() => void) | undefined
  private readonly cancelTimers: (() => void)[] = []
  private unsubscribe: () => void = () => {}
  private resolveDone: () => void = () => {}

  constructor(
    private readonly context: StreamContext,
    private readonly params: StreamParams
  ) {
    this.id = params.id
    this.done = new Promise((resolve) => (this.resolveDone = resolve))
    this.userId = params.principal.scopes.includes(ALL_SCOPE) ? null : params.principal.sub
    this.items = params.items ? new Set(params.items) : null
    context.metrics.sseOpen.inc()
  }

  /** Whose stream this is. */
  get principal(): StreamParams['principal'] {
    return this.params.principal
  }

  private matches(stored: StoredEvent): boolean {
    const { user_id: user, item_id: item } = stored.event
    return (this.userId === null || user === this.userId) && (!this.items || this.items.has(item))
  }

  /**
   * Live first (buffered), then the history, then the buffer minus what the history already
   * gave: no gap and no duplicate at the seam. Returns the gap id, if any: the history's, or the
   * oldest id kept when what was missed does not fit in half the bound (the newest are kept,
   * leaving the other half for live events).
   */
  async start(lastEventId: string | null): Promise<string | undefined> {
    const early: SerializedEvent[] = []
    let live = false
    this.unsubscribe = this.context.subscribe((event) => {
      if (!this.matches(event)) return
      if (live) this.enqueue(event)
      else early.push(event)
    }, this.userId)
    let gap: string | undefined
    if (lastEventId) {
      const replay = await this.context.replay(this.userId, lastEventId)
      gap = replay.gap
      this.lastQueued = lastEventId
      for (const stored of replay.events) if (this.matches(stored)) this.enqueue(serializeEvent(stored))
    }
    for (const event of early) this.enqueue(event)
    live = true
    const room = this.context.settings.maxUnsentBytes / 2
    if (this.buffer.size <= room) return gap
    while (this.buffer.size > room) this.buffer.shift()
    return this.buffer.first()?.id ?? this.lastQueued ?? undefined
  }

  /**
   * Starts writing: `begin` takes the response over and sends the status and headers, then the
   * stream writes straight to the socket (README: why no SSE plugin).
   */
  attach(gap: string | undefined, begin: () => void): void {
    const { sink, principal } = this.params
    const { clock, settings } = this.context
    if (sink.destroyed) return this.finish('client') // gone while the history was read
    sink.on('close', () => this.finish(this.ending ?? 'client'))
    sink.on('drain', () => {
      this.blocked = false
      this.pump()
    })
    const stopHeartbeat = clock.every(settings.heartbeatMs, () => {
      this.heartbeatDue = true
      this.schedule()
      this.checkBound()
      this.context.refreshSlot(principal.agentId, this.id).catch(() => {
        /* a missed refresh only shortens the slot's life */
      })
    })
    this.cancelTimers.push(stopHeartbeat)
    if (principal.exp !== undefined) {
      const untilExpiry = Math.max(0, principal.exp * 1000 - clock.wallMs())
      this.cancelTimers.push(clock.after(untilExpiry, () => this.end('expired')))
    }
    begin()
    this.attached = true
    this.write(retryFrame(settings.retryMs) + (gap ? gapFrame(gap) : ''))
    this.pump()
  }

  private enqueue(event: SerializedEvent): void {
    if (this.ending || (this.lastQueued && compareEventIds(event.id, this.lastQueued) <= 0)) return
    this.lastQueued = event.id
    if (this.buffer.push(event)) this.context.metrics.sseConflated.inc()
    // A backed-up socket takes nothing until it drains: the buffer grows here. Otherwise the
    // pump (next microtask) sends what the bucket allows first, then checks.
    if (this.blocked) this.checkBound()
    this.schedule()
  }

  /**
   * What the stream holds past the bound closes it, whatever holds it back: a socket that stopped
   * taking data (its unsent bytes and the buffer) is cut; a buffer the delivery bucket holds back
   * while the socket drains gets a retry hint and the end. Either way the client resumes from its
   * last id and the history replays what it missed.
   */
  private checkBound(): void {
    if (this.finished || this.ending) return
    const { maxUnsentBytes } = this.context.settings
    if (this.blocked) {
      if (this.params.sink.writableLength + this.buffer.size > maxUnsentBytes) this.cut('slow_consumer')
    } else if (this.buffer.size > maxUnsentBytes) {
      this.end('overflow')
    }
  }

  /** Ends the stream after its last message (expired event or retry hint); what is held is dropped. */
  end(reason: CloseReason): void {
    if (this.ending || this.finished) return
    this.ending = reason
    this.buffer.clear()
    this.schedule()
    this.cancelTimers.push(this.context.clock.after(LAST_MESSAGE_MS, () => this.cut(reason)))
  }

  /** Closes the socket now, whatever it still holds. */
  cut(reason: CloseReason): void {
    this.ending ??= reason
    this.params.sink.destroy()
  }

  private schedule(): void {
    if (this.scheduled) return
    this.scheduled = true
    queueMicrotask(() => {
      this.scheduled = false
      this.pump()
    })
  }

  /**
   * Delivery order: heartbeats, then events as fast as the agent's delivery bucket allows,
   * all that is ready in one write; nothing while the socket is backed up (the buffer conflates).
   */
  private pump(): void {
    const { sink, delivery } = this.params
    const { clock, metrics, settings } = this.context
    if (!this.attached || this.finished || this.blocked || sink.writableEnded || sink.destroyed) return
    let chunk = ''
    if (this.heartbeatDue && !this.ending) {
      this.heartbeatDue = false
      chunk += HEARTBEAT_FRAME
    }
    let sent = 0
    while (!this.ending && this.buffer.length > 0) {
      const decision = delivery.take(clock.now())
      if (!decision.allowed) {
        this.cancelRetry ??= clock.after(decision.retryAfterMs, () => {
          this.cancelRetry = undefined
          this.pump()
        })
        break
      }
      const next = this.buffer.shift()
      if (!next) break
      sent++
      chunk += next.frame
    }
    if (sent) metrics.sseEventsSent.inc(sent)
    if (this.ending === 'expired') chunk += EXPIRED_FRAME
    if (this.ending === 'revoked') chunk += REVOKED_FRAME
    if (this.ending === 'drain' || this.ending === 'overflow') chunk += retryFrame(settings.retryMs)
    if (chunk) this.write(chunk)
    if (this.ending) sink.end()
    else if (!this.blocked) this.checkBound()
  }

  private write(chunk: string): void {
    if (!this.params.sink.write(chunk)) this.blocked = true
  }

  /** Releases everything; `reason` null: the stream never opened (nothing to count as closed). */
  finish(reason: CloseReason | null): void {
    if (this.finished) return
    this.finished = true
    this.ending = reason ?? 'client'
    for (const cancel of this.cancelTimers) cancel()
    this.cancelRetry?.()
    this.unsubscribe()
    this.context.releaseSlot(this.params.principal.agentId, this.id).catch(() => {
      /* the slot expires by itself */
    })
    this.params.onFinish()
    this.context.metrics.sseOpen.dec()
    if (reason) this.context.metrics.sseClosed.inc({ reason })
    this.resolveDone()
  }
}
