import { compareEventIds, formatPosition, type Position } from '../events/event-id.js'
import type { StoredEvent, TopicRead } from '../events/event-store.js'
import type { Cancel } from '../shared/clock.js'
import type { ChannelEvent, ChannelListener } from './channel.js'
import { ConflatingBuffer } from './conflation.js'
import { EXPIRED_FRAME, gapFrame, HEARTBEAT_FRAME, openingFrame, retryFrame, REVOKED_FRAME, serializeEvent, type SerializedEvent } from './frame.js'
import type { Beating } from './heartbeats.js'
import { LAST_MESSAGE_MS, type CloseReason, type Start, type StreamContext, type StreamParams } from './stream-contract.js'

/** The buffer's key and size of an event: shared by every stream's buffer (no closures per stream). */
const keyOf = (event: SerializedEvent) => event.key
const sizeOf = (event: SerializedEvent) => event.bytes
/** A slot refresh or release that failed: the slot expires by itself (a missed refresh only shortens its life). */
const ignore = () => {}

/**
 * One subscriber's SSE stream: live events and the history it missed, in id order, paced by the
 * agent's delivery bucket and conflated while the socket is backed up. Its position is one id
 * per topic of its channel; each event goes out with the position after it as its SSE id, so a
 * client resumes from whichever message it got last, on any replica.
 *
 * An idle stream holds little beyond its socket: the hub's heartbeats beat it (no timer of its
 * own), it listens to its channel and its socket itself (no closures but the socket's `close`),
 * and its buffer, timers and drain listener are made only when needed.
 */
export class Stream implements ChannelListener, Beating {
  private readonly buffer = new ConflatingBuffer<SerializedEvent>(keyOf, sizeOf)
  private readonly items: Set<string> | null
  /** Per topic of the channel: the last id this stream has passed (queued, conflated or filtered out). */
  private position: Position = []
  /** Equal to the channel's position: its shared frames carry the right id for this stream. */
  private inStep = false
  /** The first message (retry hint, position, gap), from start until attach writes it. */
  private opening = ''
  /** Live events that arrive while start reads the history: handed on after it. */
  private early: ChannelEvent[] | undefined
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
  private cancelRetry: Cancel | undefined
  /** Ends the stream when its token expires: armed only once that is near (watchExpiry). */
  private cancelExpiry: Cancel | undefined
  /** Cuts a socket that does not take the last message in time (end). */
  private cancelCut: Cancel | undefined
  /** Made when something waits for the end (drain). */
  private whenDone: Promise<void> | undefined
  private resolveDone: (() => void) | undefined

  constructor(
    private readonly context: StreamContext,
    private readonly params: StreamParams
  ) {
    this.items = params.items ? new Set(params.items) : null
    context.metrics.sseOpen.inc()
  }

  /** Whose stream this is. */
  get principal(): StreamParams['principal'] {
    return this.params.principal
  }

  /** Resolves once the stream is over. */
  get done(): Promise<void> {
    if (this.finished) return Promise.resolve()
    return (this.whenDone ??= new Promise((resolve) => (this.resolveDone = resolve)))
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
    this.early = []
    channel.add(this)
    await channel.ready
    let gap: string | undefined
    if (resume === null) {
      this.position = channel.position
      this.inStep = true
    } else {
      const reads = await Promise.all(channel.topics.map((topic, index) => this.context.read(topic, resume[index])))
      if (reads.some((read) => read.future)) return { future: true }
      if (reads.some((read) => read.gap)) gap = formatPosition(resume.map((id, index) => reads[index].gap ?? id))
      this.position = resume
      for (const { index, stored } of merged(reads)) this.pass(index, stored)
    }
    const position = formatPosition(resume ?? this.position)
    const early = this.early
    this.early = undefined
    for (const event of early) this.onLive(event)
    const room = this.context.settings.maxUnsentBytes / 2
    if (this.buffer.size > room) {
      while (this.buffer.size > room) this.buffer.shift()
      gap = this.buffer.first()?.position ?? formatPosition(this.position)
    }
    this.opening = openingFrame(this.context.settings.retryMs, position) + (gap ? gapFrame(gap) : '')
    return { future: false }
  }

  /** A live event from the channel: held back while start reads the history. */
  event(live: ChannelEvent): void {
    if (this.early) this.early.push(live)
    else this.onLive(live)
  }

  /** The channel may have missed events: the client resumes (and learns of a gap). */
  lost(): void {
    this.end('lost')
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
    const { sink } = this.params
    if (sink.destroyed) return this.finish('client') // gone while the history was read
    sink.on('close', () => this.finish(this.ending ?? 'client'))
    this.context.heartbeats.add(this)
    this.watchExpiry()
    begin()
    this.attached = true
    this.write(this.opening)
    this.opening = ''
    this.pump()
  }

  /** Every SSE_HEARTBEAT_MS: a comment (the connection is alive), the bound checked, the slot kept, the expiry watched. */
  beat(): void {
    this.heartbeatDue = true
    this.schedule()
    this.checkBound()
    this.watchExpiry()
    this.context.refreshSlot(this.params.principal.agentId, this.params.id).catch(ignore)
  }

  /**
   * Arms the end at the token's expiry once that is less than two heartbeats away: the heartbeat
   * before it always comes in time, and a stream far from its expiry holds no timer for it.
   */
  private watchExpiry(): void {
    const { exp } = this.params.principal
    if (exp === undefined || this.cancelExpiry) return
    const { clock, settings } = this.context
    const untilExpiry = exp * 1000 - clock.wallMs()
    if (untilExpiry < 2 * settings.heartbeatMs) this.cancelExpiry = clock.after(untilExpiry, () => this.end('expired'))
  }

  private enqueue(event: SerializedEvent): void {
    if (this.ending) return
    // Conflation is for a stream held back (socket backed up, delivery bucket empty): events that
    // merely arrive together (a replay, one Redis read) are all sent. Asked on a key collision only.
    const mayConflate = !this.buffer.holdsKeyOf(event) || this.heldBack()
    if (this.buffer.push(event, mayConflate)) this.context.metrics.sseConflated.inc()
    // A backed-up socket takes nothing until it drains: the buffer grows here. Otherwise the
    // pump (next microtask) sends what the bucket allows first, then checks.
    if (this.blocked) this.checkBound()
    this.schedule()
  }

  private heldBack(): boolean {
    return this.blocked || !this.params.delivery.hasToken(this.context.clock.now())
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
    this.cancelCut = this.context.clock.after(LAST_MESSAGE_MS, () => this.cut(reason))
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
    const { sink } = this.params
    if (sink.write(chunk) || this.blocked) return
    this.blocked = true
    // Listened for only while backed up: an idle stream holds no listener for it.
    sink.once('drain', () => {
      this.blocked = false
      this.pump()
    })
  }

  /** Releases everything; `reason` null: the stream never opened (nothing to count as closed). */
  finish(reason: CloseReason | null): void {
    if (this.finished) return
    this.finished = true
    this.ending = reason ?? 'client'
    this.cancelExpiry?.()
    this.cancelCut?.()
    this.cancelRetry?.()
    this.context.heartbeats.delete(this)
    this.params.channel.remove(this)
    this.context.releaseSlot(this.params.principal.agentId, this.params.id).catch(ignore)
    this.context.finished(this)
    this.context.metrics.sseOpen.dec()
    if (reason) this.context.metrics.sseClosed.inc({ reason })
    this.resolveDone?.()
  }
}

/** Every event of the reads, tagged with its topic's index, in id order across topics. */
function merged(reads: TopicRead[]): { index: number; stored: StoredEvent }[] {
  const all = reads.flatMap((read, index) => read.events.map((stored) => ({ index, stored })))
  return reads.length > 1 ? all.sort((left, right) => compareEventIds(left.stored.id, right.stored.id)) : all
}
