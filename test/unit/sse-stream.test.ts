import { createParser } from 'eventsource-parser'
import { Writable } from 'node:stream'
import t from 'tap'
import { compareEventIds, parsePosition, START_ID } from '../../src/events/event-id.js'
import { EventBus } from '../../src/events/event-bus.js'
import type { LiveSink, StoredEvent, Topic, TopicRead } from '../../src/events/event-store.js'
import { MemoryEventStore } from '../../src/events/memory-event-store.js'
import type { BucketLimits } from '../../src/limits/token-bucket.js'
import { createMetrics } from '../../src/metrics.js'
import { Channel } from '../../src/sse/channel.js'
import { DeliveryBucket } from '../../src/sse/delivery.js'
import { serializeEvent } from '../../src/sse/frame.js'
import { Heartbeats } from '../../src/sse/heartbeats.js'
import { Stream } from '../../src/sse/stream.js'
import { LAST_MESSAGE_MS, type StreamParams } from '../../src/sse/stream-contract.js'
import { FakeClock, settle } from '../helpers/fake-clock.js'
import { metricValue } from '../helpers/metrics.js'
import { score } from '../helpers/sse.js'

/** A socket stand-in: a real Writable whose peer can stop taking data (write callbacks held back). */
class TestSocket extends Writable {
  /** What the peer took, in order. */
  received = ''
  private held: (() => void)[] = []

  constructor(
    highWaterMark: number,
    private paused = false
  ) {
    super({ highWaterMark, decodeStrings: false })
  }

  override _write(chunk: string, _encoding: BufferEncoding, callback: () => void): void {
    this.received += chunk
    if (this.paused) this.held.push(callback)
    else callback()
  }

  /** The SSE messages received so far. */
  messages(): { id?: string; event?: string; data?: string; retry?: number; comment?: string }[] {
    const found: ReturnType<TestSocket['messages']> = []
    const parser = createParser({
      onEvent: (message) => found.push({ id: message.id, event: message.event, data: message.data }),
      onRetry: (retry) => found.push({ retry }),
      onComment: (comment) => found.push({ comment: comment.trim() })
    })
    parser.feed(this.received)
    return found
  }

  /** Score events received: data messages without an event name. */
  scores(): { id: string; item: string; rating: number }[] {
    return this.messages().flatMap((message) => {
      if (message.data === undefined || message.event !== undefined) return []
      const data = JSON.parse(message.data) as { item_id: string; rating: number }
      return [{ id: message.id ?? '', item: data.item_id, rating: data.rating }]
    })
  }
}

interface Options {
  socket?: TestSocket
  delivery?: BucketLimits
  maxUnsentBytes?: number
  exp?: number
  /** The users whose topics the stream's channel reads (one: a user stream; several: like ratings:all). */
  users?: string[]
  /** Wraps the history read (the seam test publishes while it runs). */
  read?: (read: () => Promise<TopicRead>) => Promise<TopicRead>
}

const HEARTBEAT_MS = 1000
const RETRY_MS = 1500

/** A memory store whose live delivery can run late, like a Redis message behind a history read. */
class LateLiveStore extends MemoryEventStore {
  late = false
  private readonly held: [Topic, StoredEvent][] = []
  private sinkOfBus: LiveSink | null = null

  override start(sink: LiveSink): void {
    this.sinkOfBus = sink
    super.start({
      event: (topic, stored) => {
        if (this.late) this.held.push([topic, stored])
        else sink.event(topic, stored)
      },
      resync: (subscribed) => sink.resync(subscribed)
    })
  }

  /** What was held back arrives now. */
  async catchUp(): Promise<void> {
    this.late = false
    for (const [topic, stored] of this.held.splice(0)) this.sinkOfBus?.event(topic, stored)
    await settle()
  }

  /** What was held back never arrives (a dropped connection); the bus is told to catch up. */
  async reconnect(): Promise<void> {
    this.late = false
    this.held.length = 0
    this.sinkOfBus?.resync(Promise.resolve())
    await settle()
  }
}

async function openTestStream(options: Options = {}) {
  const clock = new FakeClock()
  const metrics = createMetrics()
  const store = new LateLiveStore({ historyMax: 100, historyTtlS: 60, scoresTtlS: 60, allMax: 100, allPartitions: 1, maxUsers: 100, clock })
  const bus = new EventBus(store, {
    published: metrics.published,
    onError: (err) => {
      throw err
    }
  })
  const channel = new Channel(bus, (options.users ?? ['alice']).map((user) => bus.userTopic(user)))
  const socket = options.socket ?? new TestSocket(16 * 1024)
  const slotRefreshes: string[] = []
  let finished = 0
  const params: StreamParams = {
    id: 'stream-1',
    principal: { sub: 'alice', agentId: 'agent-1', scopes: [], exp: options.exp },
    channel,
    items: null,
    sink: socket,
    delivery: new DeliveryBucket('agent-1', () => ({ limits: options.delivery ?? { capacity: 100_000, refillRate: 100_000 }, shadow: false }))
  }
  const stream = new Stream(
    {
      read: (topic, afterId) => (options.read ?? ((read) => read()))(() => bus.read(topic, afterId)),
      refreshSlot: async (_agentId, streamId) => void slotRefreshes.push(streamId),
      releaseSlot: async () => {},
      metrics,
      clock,
      settings: { heartbeatMs: HEARTBEAT_MS, retryMs: RETRY_MS, maxUnsentBytes: options.maxUnsentBytes ?? 64 * 1024 },
      heartbeats: new Heartbeats(clock, HEARTBEAT_MS),
      finished: () => finished++
    },
    params
  )
  const publish = async (item: string, rating = 3, user = 'alice') => {
    const id = await bus.publish(score(user, item, rating), 'rest')
    await settle()
    return id
  }
  /** Starts the stream (fresh, or resuming after `resume`) and attaches it to its socket. */
  const begin = async (resume: string[] | null = null) => {
    const start = await stream.start(resume)
    stream.attach(() => {})
    return start
  }
  const closed = (reason: string) => metricValue(metrics.sseClosed, { reason })
  return { clock, metrics, socket, stream, channel, publish, begin, closed, slotRefreshes, finished: () => finished, store }
}

/** Strictly increasing, part by part, as the browser client compares positions. */
function increasing(ids: string[], parts = 1): boolean {
  const positions = ids.map((id) => parsePosition(id, parts) ?? [])
  return positions.every(
    (position, index) =>
      index === 0 ||
      (position.every((id, part) => compareEventIds(positions[index - 1][part], id) <= 0) &&
        position.some((id, part) => compareEventIds(positions[index - 1][part], id) < 0))
  )
}

t.test('the live-then-history seam: events published while the history is read are neither lost nor doubled', async (t) => {
  const during: { publish: (item: string) => Promise<string>; store: { late: boolean } } = { publish: async () => '', store: { late: false } }
  const setup = await openTestStream({
    read: async (read) => {
      await during.publish('i6') // reaches the stream live before the read, and is in the history
      during.store.late = true
      await during.publish('i7') // in the history, but reaches the stream live only after it started
      const history = await read()
      await during.publish('i8') // after the read, live only (late too)
      return history
    }
  })
  during.publish = setup.publish
  during.store = setup.store
  const ids: string[] = []
  for (const item of ['i1', 'i2', 'i3', 'i4', 'i5']) ids.push(await setup.publish(item))

  t.same(await setup.begin([ids[1]]), { future: false }, 'the history still holds the resume point')
  await setup.store.catchUp()
  await setup.publish('i9')

  const received = setup.socket.scores()
  t.same(received.map((event) => event.item), ['i3', 'i4', 'i5', 'i6', 'i7', 'i8', 'i9'], 'everything after the resume point, once each')
  t.ok(increasing(received.map((event) => event.id)), 'ids strictly increasing')
  t.equal(await metricValue(setup.metrics.sseConflated), 0, 'no event met a copy of itself in the buffer')
  t.ok(setup.socket.received.startsWith(`retry: ${RETRY_MS}\nid: ${ids[1]}\n\n`), 'first the retry hint and the resume position')
})

t.test('a fresh stream opens with its position: the newest id, or 0-0 before any event', async (t) => {
  const empty = await openTestStream()
  await empty.begin()
  t.ok(empty.socket.received.startsWith(`retry: ${RETRY_MS}\nid: ${START_ID}\n\n`), 'no event yet: 0-0')
  const setup = await openTestStream()
  await setup.publish('i1')
  const newest = await setup.publish('i2')
  await setup.begin()
  t.ok(setup.socket.received.startsWith(`retry: ${RETRY_MS}\nid: ${newest}\n\n`), 'an id-only message with the newest id')
  t.same(setup.socket.scores(), [], 'and nothing from before it')
  const next = await setup.publish('i3')
  t.same(setup.socket.scores().map((event) => event.id), [next], 'the live events after it')
})

t.test('a stream over several topics (like ratings:all): positions hold one id per topic and only grow', async (t) => {
  const setup = await openTestStream({ users: ['alice', 'bob'] })
  const a1 = await setup.publish('a1', 1, 'alice')
  const b1 = await setup.publish('b1', 1, 'bob')
  const a2 = await setup.publish('a2', 1, 'alice')
  await setup.begin([a1, START_ID])
  const a3 = await setup.publish('a3', 1, 'alice')
  const b2 = await setup.publish('b2', 1, 'bob')
  const received = setup.socket.scores()
  t.same(received.map((event) => event.item), ['b1', 'a2', 'a3', 'b2'], 'what each topic holds after its part of the resume point, then live')
  t.same(
    received.map((event) => event.id),
    [`${a1}.${b1}`, `${a2}.${b1}`, `${a3}.${b1}`, `${a3}.${b2}`],
    'each event carries the position after it'
  )
  t.ok(increasing(received.map((event) => event.id), 2), 'every part only grows')
  t.equal(setup.channel.position.join('.'), `${a3}.${b2}`, 'in step with the channel: its frames are shared')
})

t.test('a resume replays every missed score, also several for one item (conflation is for a stream held back)', async (t) => {
  const setup = await openTestStream()
  const start = await setup.publish('x0')
  for (const rating of [1, 2, 3]) await setup.publish('a', rating)
  await setup.begin([start])
  const received = setup.socket.scores()
  t.same(received.map(({ item, rating }) => `${item}${rating}`), ['a1', 'a2', 'a3'], 'each score of item a, in order')
  t.equal(await metricValue(setup.metrics.sseConflated), 0, 'none conflated')
})

t.test('a resume point newer than any event of a topic is refused', async (t) => {
  const setup = await openTestStream()
  const id = await setup.publish('i1')
  const [ms, seq] = id.split('-').map(Number)
  t.same(await setup.stream.start([`${ms}-${seq + 1}`]), { future: true })
})

t.test('a channel that lost events ends its streams with a retry hint, so they resume and learn of the gap', async (t) => {
  const setup = await openTestStream()
  await setup.begin()
  setup.store.late = true // live delivery is cut...
  for (let i = 0; i < 101; i++) await setup.publish(`x${i}`) // ...while more than HISTORY_MAX events pass
  await setup.store.reconnect()
  await setup.stream.done
  t.ok(setup.socket.received.endsWith(`retry: ${RETRY_MS}\n\n`), 'told to reconnect')
  t.equal(await setup.closed('lost'), 1, 'counted as lost')
})

/** The bound on unsent data in the tests of it, and items long enough to reach it in a few dozen events. */
const BOUND = 8 * 1024
const PADDING = 'x'.repeat(150)
const FRAME_BYTES = serializeEvent({ id: '1800000000000-0', event: score('alice', `${PADDING}-0`, 3) }, '1800000000000-0').bytes

/**
 * Opens the stream, then publishes distinct items one at a time until its socket is closed either
 * way (at most `max`), and waits for the stream's end: how many it took.
 */
async function floodUntilClosed(setup: Awaited<ReturnType<typeof openTestStream>>, max: number): Promise<number> {
  await setup.begin()
  let published = 0
  while (!setup.socket.destroyed && !setup.socket.writableEnded && published < max) {
    await setup.publish(`${PADDING}-${published}`)
    published++
  }
  await setup.stream.done
  return published
}

t.test('a socket that stops draining is closed once its unsent data passes the bound; one that drains is not', async (t) => {
  const stalled = await openTestStream({ socket: new TestSocket(1024, true), maxUnsentBytes: BOUND })
  const published = await floodUntilClosed(stalled, 500)
  t.ok(stalled.socket.destroyed, 'the stalled socket is closed')
  t.equal(await stalled.closed('slow_consumer'), 1, 'counted as slow_consumer')
  t.ok(published * FRAME_BYTES > BOUND, `not before the bound (${published} events of ~${FRAME_BYTES} bytes)`)
  t.ok(published * FRAME_BYTES <= BOUND + 1024 + 2 * FRAME_BYTES, 'soon after it')
  t.equal(stalled.finished(), 1, 'the hub hears of it once')

  const draining = await openTestStream({ socket: new TestSocket(1024), maxUnsentBytes: BOUND })
  await draining.begin()
  for (let index = 0; index < published; index++) await draining.publish(`${PADDING}-${index}`)
  t.notOk(draining.socket.destroyed, 'a socket that takes its data stays open')
  t.equal(draining.socket.scores().length, published, 'and gets every event')
  draining.stream.cut('client')
})

t.test('an empty delivery bucket holds events back and keeps only the newest per item', async (t) => {
  const setup = await openTestStream({ delivery: { capacity: 1, refillRate: 1 } })
  await setup.begin()
  await setup.publish('a', 1)
  await setup.publish('a', 2)
  await setup.publish('b', 1)
  await setup.publish('a', 3)
  t.same(setup.socket.scores().map(({ item, rating }) => `${item}${rating}`), ['a1'], 'one token: one event now')
  t.equal(await metricValue(setup.metrics.sseConflated), 1, 'a2 replaced by a3 before it was sent')

  await setup.clock.pass(999)
  t.equal(setup.socket.scores().length, 1, 'nothing before the next token')
  await setup.clock.pass(1)
  await setup.clock.pass(1000)
  const received = setup.socket.scores()
  t.same(received.map(({ item, rating }) => `${item}${rating}`), ['a1', 'b1', 'a3'], 'b1, then the newest a')
  t.ok(increasing(received.map((event) => event.id)), 'still in id order')
  setup.stream.cut('client')
})

t.test('the token expires: an expired event, then the stream ends', async (t) => {
  const clock = new FakeClock()
  const setup = await openTestStream({ exp: Math.floor(clock.wallMs() / 1000) + 30 })
  await setup.begin()
  await setup.clock.pass(29_000)
  t.notOk(setup.socket.writableEnded, 'open until the expiry')
  await setup.clock.pass(1000)
  await setup.stream.done
  const last = setup.socket.messages().at(-1)
  t.equal(last?.event, 'expired')
  t.same(JSON.parse(last?.data ?? 'null'), { reason: 'token expired' })
  t.ok(setup.socket.writableEnded, 'the stream ended')
  t.equal(await setup.closed('expired'), 1)
})

t.test('a token that expires before the first heartbeat ends the stream at its expiry, not at the heartbeat', async (t) => {
  const clock = new FakeClock()
  const setup = await openTestStream({ exp: clock.wallMs() / 1000 + 1 }) // the clocks start on a whole second
  await setup.clock.pass(300) // opened 700 ms before the expiry, 1000 ms before its first heartbeat
  await setup.begin()
  await setup.clock.pass(699)
  t.notOk(setup.socket.writableEnded, 'open until the expiry')
  await setup.clock.pass(1)
  t.ok(setup.socket.writableEnded, 'ended at the expiry')
  t.equal(setup.socket.messages().at(-1)?.event, 'expired')
})

t.test('heartbeats: a comment every SSE_HEARTBEAT_MS, each refreshing the stream slot', async (t) => {
  const setup = await openTestStream()
  await setup.begin()
  await setup.clock.pass(HEARTBEAT_MS - 1)
  t.same(setup.socket.messages().filter((message) => message.comment !== undefined), [], 'none before the interval')
  await setup.clock.pass(1 + 2 * HEARTBEAT_MS)
  t.same(
    setup.socket.messages().filter((message) => message.comment !== undefined),
    [{ comment: 'heartbeat' }, { comment: 'heartbeat' }, { comment: 'heartbeat' }]
  )
  t.same(setup.slotRefreshes, ['stream-1', 'stream-1', 'stream-1'])
  setup.stream.cut('client')
  await setup.stream.done
  await setup.clock.pass(5 * HEARTBEAT_MS)
  t.equal(setup.slotRefreshes.length, 3, 'no heartbeat after the stream is over')
})

t.test('a socket that does not take the last message is cut after LAST_MESSAGE_MS', async (t) => {
  const setup = await openTestStream({ socket: new TestSocket(64, true) })
  await setup.begin()
  await setup.publish('i1')
  setup.stream.end('drain')
  await setup.clock.pass(LAST_MESSAGE_MS - 1)
  t.notOk(setup.socket.destroyed, 'the socket gets its time')
  await setup.clock.pass(1)
  await setup.stream.done
  t.ok(setup.socket.destroyed, 'then it is cut')
  t.equal(await setup.closed('drain'), 1, 'counted under the reason it was ending for')
})

t.test('defect 6: an empty delivery bucket cannot grow the buffer past the bound: the stream ends with a retry hint', async (t) => {
  const setup = await openTestStream({ delivery: { capacity: 1, refillRate: 0.001 }, maxUnsentBytes: BOUND })
  const published = await floodUntilClosed(setup, 2000)
  t.ok(setup.socket.writableEnded, 'the stream ended although its socket takes everything')
  t.equal(await setup.closed('overflow'), 1, 'counted as overflow')
  t.ok(published * FRAME_BYTES > BOUND, `not before the bound (${published} events of ~${FRAME_BYTES} bytes)`)
  t.ok(published * FRAME_BYTES <= BOUND + 2 * FRAME_BYTES, 'as soon as it is passed')
  t.equal(setup.socket.scores().length, 1, 'the one token was spent; the rest waits in the history for the resume')
  t.equal(setup.socket.messages().at(-1)?.retry, RETRY_MS, 'the last message tells the client when to reconnect')
})

t.test('defect 6: a resume that would hold more than the bound keeps the newest that fit and starts with a gap', async (t) => {
  const setup = await openTestStream({ delivery: { capacity: 1000, refillRate: 1000 }, maxUnsentBytes: BOUND })
  const ids: string[] = []
  for (let index = 0; index < 90; index++) ids.push(await setup.publish(`${PADDING}-${index}`))
  await setup.begin([ids[0]])
  await settle()
  const messages = setup.socket.messages()
  const gap = messages.find((message) => message.event === 'gap')
  t.ok(gap, 'a gap: the resume cannot hold all it missed')
  t.ok(messages.indexOf(gap ?? {}) < messages.findIndex((message) => message.data !== undefined && !message.event), 'before any score')
  const received = setup.socket.scores()
  t.equal(received.at(-1)?.id, ids.at(-1), 'the newest events are the ones kept')
  t.equal(received[0].id, gap?.data, 'the gap names the oldest position the stream sends')
  t.ok(received.length < ids.length - 1, `only what fits (${received.length} of ${ids.length - 1})`)
  t.ok(increasing(received.map((event) => event.id)), 'in id order')
  t.notOk(setup.socket.writableEnded, 'and the stream goes on')
  setup.stream.cut('client')
})
