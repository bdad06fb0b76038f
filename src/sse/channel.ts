import { compareEventIds, formatPosition, type Position } from '../events/event-id.js'
import type { EventBus } from '../events/event-bus.js'
import type { StoredEvent, Topic } from '../events/event-store.js'
import type { Membership } from '../events/live-topics.js'
import { tracedSync } from '../tracing/spans.js'
import { serializeEvent, type SerializedEvent } from './frame.js'

/** A live event as a channel hands it on: from topic `index`, with the channel's position after it. */
export interface ChannelEvent {
  index: number
  event: SerializedEvent
  position: Position
}

export interface ChannelListener {
  event(event: ChannelEvent): void
  /** The channel may have missed events (a catch-up found them trimmed): the stream should end and resume. */
  lost(): void
}

/**
 * What the streams of one feed share on this replica: a user's streams share that user's
 * channel, `ratings:all` streams the partitions'. The channel joins the feed's topics, keeps the
 * feed's position here (the last id handed on per topic) and serializes each event once, with
 * that position as its SSE id, for every stream that is in step with it.
 */
export class Channel {
  position: Position
  readonly ready: Promise<void>
  private readonly listeners = new Set<ChannelListener>()
  private memberships: Membership[] = []
  private closed = false

  constructor(
    private readonly bus: Pick<EventBus, 'join'>,
    readonly topics: Topic[]
  ) {
    this.position = topics.map(() => '')
    this.ready = this.open()
  }

  /** Hands this channel's live events to `listener` (until removed). */
  add(listener: ChannelListener): void {
    this.listeners.add(listener)
  }

  remove(listener: ChannelListener): void {
    this.listeners.delete(listener)
  }

  get empty(): boolean {
    return this.listeners.size === 0
  }

  /** Leaves the topics (the last stream went). */
  close(): void {
    this.closed = true
    for (const membership of this.memberships) membership.leave()
    this.memberships = []
  }

  private async open(): Promise<void> {
    const joins = await Promise.allSettled(
      this.topics.map((topic, index) =>
        this.bus.join(topic, { event: (stored) => this.hand(index, stored), lost: () => this.lost() })
      )
    )
    this.memberships = joins.flatMap((join) => (join.status === 'fulfilled' ? [join.value] : []))
    const failed = joins.find((join) => join.status === 'rejected')
    if (failed || this.closed) this.close()
    if (failed) throw failed.reason
    this.position = this.position.map((id, index) => {
      const joined = this.memberships[index].position
      return id && compareEventIds(id, joined) > 0 ? id : joined
    })
  }

  private hand(index: number, stored: StoredEvent): void {
    const position = [...this.position]
    position[index] = stored.id
    this.position = position
    const live = { index, event: serializeEvent(stored, formatPosition(position)), position }
    // The publisher's trace ends here, on each replica: handed to this replica's streams of that feed.
    if (!stored.trace) return this.deliver(live)
    tracedSync('sse.deliver', () => this.deliver(live), { parent: stored.trace, attributes: { 'moltbridge.streams': this.listeners.size } })
  }

  private deliver(live: ChannelEvent): void {
    for (const listener of this.listeners) listener.event(live)
  }

  private lost(): void {
    for (const listener of this.listeners) listener.lost()
  }
}
