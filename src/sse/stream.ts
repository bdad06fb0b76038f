import { compareEventIds, formatPosition, type Position } from '../events/event-id.js'
import type { StoredEvent, TopicRead } from '../events/event-store.js'
import type { ChannelEvent } from './channel.js'
import { ConflatingBuffer } from './conflation.js'
import { EXPIRED_FRAME, gapFrame, HEARTBEAT_FRAME, openingFrame, retryFrame, REVOKED_FRAME, serializeEvent, type SerializedEvent } from './frame.js'
import { LAST_MESSAGE_MS, type CloseReason, type Start, type StreamContext, type StreamParams } from './stream-contract.js'

/**
 * One subscriber's SSE stream: live events and the history it missed, in id order, paced by the
 * agent's delivery bucket and conflated while the socket is backed up. Its position is one id
 * per topic of its channel; each event goes out with the position after it as its SSE id, so a
 * client resumes from whichever message it got last, on any replica.
 */
export class Stream {
  readonly id: string
  readonly done: Promise<void>
  private readonly buffer = new ConflatingBuffer<SerializedEvent>(
    (event) => event.key,
    (event) => event.bytes
  )
  private readonly items: Set<string> | null
  /** Per topic of the channel: the last id this stream has passed (queued, conflated or filtered out). */
  private position: Position = []
  /** Equal to the channel's position: its shared frames carry the right id for this stream. */
  private inStep = false
  /** What the opening message and a gap event say. */
  private opening = ''
  private gap: string | undefined
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
  /**
   * Conflation is for a stream held back (socket backed up, delivery bucket empty): events that
   * merely arrive together (a replay, one Redis read) are all sent. Asked on a key collision only.
   */
  private readonly heldBack = () => this.blocked || !this.params.delivery.hasToken(this.context.clock.now())

  constructor(
    private readonly context: StreamContext,
    private readonly params: StreamParams
  ) {
    this.id = params.id
    this.done = new Promise((resolve) => (this.resolveDone = resolve))
    this.items = params.items ? new Set(params.items) : null
    context.metrics.sseOpen.inc()
  }

  /** Whose stream this is. */
  get principal(): StreamParams['principal'] {
    return this.params.principal
  }

  private matches(stored: StoredEvent): boolean {
    return !this.items || this.items.has(stored.event.item_id)
  }

  /**
   * Live first (held back), then the history after `resume` (null: none, the stream starts at the
   * channel's position now), then what was held back minus what the history gave: no gap and no
   * duplicate at the seam. What was missed beyond half the bound is dropped, oldest first (the
   * newest are kept, leaving the other half for live events), and the stream starts with a gap.
   */
  async start(resume: Position | null): Promise<Start> {
    const { channel } = this.params
    const early: ChannelEvent[] = []
    let live = false
    this.unsubscribe = channel.add({
      event: (event) => (live ? this.onLive(event) : early.push(event)),
      lost: () => this.end('lost')
    })
    await channel.ready
    if (resume === null) {
      this.position = channel.position
      this.inStep = true
    } else {
      const reads = await Promise.all(channel.topics.map((topic, index) => this.context.read(topic, resume[index])))
      if (reads.some((read) => read.future)) return { future: true }
      if (reads.some((read) => read.gap)) this.gap = formatPosition(resume.map((id, index) => reads[index].gap ?? id))
      this.position = resume
      for (const { index, stored } of merged(reads)) this.pass(index, stored)
    }
    this.opening = formatPosition(resume ?? this.position)
    for (const event of early) this.onLive(event)
    live = true
    const room = this.context.settings.maxUnsentBytes / 2
    if (this.buffer.size > room) {
      while (this.buffer.size > room) this.buffer.shift()
      this.gap = this.buffer.first()?.position ?? formatPosition(this.position)
    }
    return { future: false }
  }

  /** A live event: the channel's frame when this stream is in step with it, else one of its own. */
  private onLive({ index, event, position }: ChannelEvent): void {
    if (compareEventIds(event.id, this.position[index]) <= 0) return // the history gave it already
    if (!this.inStep && !this.behind(position)) return this.pass(index, event)
    this.inStep = true
    this.position = position
    if (this.matches(event)) this.enqueue(event)
  }

  /** True when the channel has passed everything this stream has (so its position fits this stream). */
  private behind(position: Position): boolean {
    return this.position.every((id, index) => position[index] !== '' && compareEventIds(id, position[index]) <= 0)
  }

  /** Moves this stream's own position past `stored` and queues it with that position as its id. */
  private pass(index: number, stored: StoredEvent): void {
    const position = [...this.position]
    position[index] = stored.id
    this.position = position
    if (this.matches(stored)) this.enqueue(serializeEvent(stored, formatPosition(position)))
  }

  /**
   * Starts writing: `begin` takes the response over and sends the status and headers, then the
   * stream writes straight to the socket (README: why no SSE plugin).
   */
  attach(begin: () => void): void {
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
    this.write(openingFrame(settings.retryMs, this.opening) + (this.gap ? gapFrame(this.gap) : ''))
    this.pump()
  }

  private enqueue(event: SerializedEvent): void {
    if (this.ending) return
    if (this.buffer.push(event, this.heldBack)) this.context.metrics.sseConflated.inc()
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
    if (this.ending === 'drain' || this.ending === 'overflow' || this.ending === 'lost') chunk += retryFrame(settings.retryMs)
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

/** Every event of the reads, tagged with its topic's index, in id order across topics. */
function merged(reads: TopicRead[]): { index: number; stored: StoredEvent }[] {
  const all = reads.flatMap((read, index) => read.events.map((stored) => ({ index, stored })))
  return reads.length > 1 ? all.sort((left, right) => compareEventIds(left.stored.id, right.stored.id)) : all
}
