import { createParser } from 'eventsource-parser'
import { Writable } from 'node:stream'
import t from 'tap'
import { compareEventIds } from '../../src/events/event-id.js'
import { EventBus } from '../../src/events/event-bus.js'
import type { Replay } from '../../src/events/event-store.js'
import { ListenerIndex } from '../../src/events/listener-index.js'
import { MemoryEventStore } from '../../src/events/memory-event-store.js'
import type { BucketLimits } from '../../src/limits/token-bucket.js'
import { createMetrics } from '../../src/metrics.js'
import { DeliveryBucket } from '../../src/sse/delivery.js'
import { serializeEvent, type SerializedEvent } from '../../src/sse/frame.js'
import { LAST_MESSAGE_MS, Stream, type StreamParams } from '../../src/sse/stream.js'
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
  /** Wraps the history read (the seam test publishes while it runs). */
  replay?: (read: () => Promise<Replay>) => Promise<Replay>
}

const HEARTBEAT_MS = 1000
const RETRY_MS = 1500

async function openTestStream(options: Options = {}) {
  const clock = new FakeClock()
  const metrics = createMetrics()
  const bus = new EventBus(new MemoryEventStore({ historyMax: 100, historyTtlS: 60, scoresTtlS: 60, streamMax: 100, now: clock.wallMs }), {
    published: metrics.published,
    onListenerError: (err) => {
      throw err
    }
  })
  await bus.start()
  // What the hub does: each event serialized once, handed to the streams of its user. While
  // `reader.late`, the fan-out holds events back, like a Redis reader behind the history.
  const listeners = new ListenerIndex<SerializedEvent>((err) => {
    throw err
  })
  const reader = { late: false, held: [] as SerializedEvent[] }
  bus.subscribe((stored) => {
    const event = serializeEvent(stored)
    if (reader.late) reader.held.push(event)
    else listeners.notify(stored.event.user_id, event)
  })
  const catchUp = async () => {
    reader.late = false
    for (const event of reader.held.splice(0)) listeners.notify(event.event.user_id, event)
    await settle()
  }
  const socket = options.socket ?? new TestSocket(16 * 1024)
  const slotRefreshes: string[] = []
  let finished = 0
  const params: StreamParams = {
    id: 'stream-1',
    principal: { sub: 'alice', agentId: 'agent-1', scopes: [], exp: options.exp },
    items: null,
    sink: socket,
    delivery: new DeliveryBucket(() => ({ limits: options.delivery ?? { capacity: 100_000, refillRate: 100_000 }, shadow: false })),
    onFinish: () => finished++
  }
  const stream = new Stream(
    {
      subscribe: (listener, userId) => listeners.add(listener, userId),
      replay: (userId, afterId) => (options.replay ?? ((read) => read()))(() => bus.replay(userId, afterId)),
      refreshSlot: async (_agentId, streamId) => void slotRefreshes.push(streamId),
      releaseSlot: async () => {},
      metrics,
      clock,
      settings: { heartbeatMs: HEARTBEAT_MS, retryMs: RETRY_MS, maxUnsentBytes: options.maxUnsentBytes ?? 64 * 1024 }
    },
    params
  )
  const publish = async (item: string, rating = 3, user = 'alice') => {
    const id = await bus.publish(score(user, item, rating), 'rest')
    await settle()
    return id
  }
  const closed = (reason: string) => metricValue(metrics.sseClosed, { reason })
  return { clock, metrics, socket, stream, publish, closed, slotRefreshes, finished: () => finished, reader, catchUp }
}

t.test('the live-then-history seam: events published while the history is read are neither lost nor doubled', async (t) => {
  const during: { publish: (item: string) => Promise<string>; reader: { late: boolean } } = { publish: async () => '', reader: { late: false } }
  const setup = await openTestStream({
    replay: async (read) => {
      await during.publish('i6') // reaches the stream live before the read, and is in the history
      during.reader.late = true
      await during.publish('i7') // in the history, but reaches the stream live only after it started
      const history = await read()
      await during.publish('i8') // after the read, live only (late too)
      return history
    }
  })
  during.publish = setup.publish
  during.reader = setup.reader
  const ids: string[] = []
  for (const item of ['i1', 'i2', 'i3', 'i4', 'i5']) ids.push(await setup.publish(item))

  const gap = await setup.stream.start(ids[1])
  t.equal(gap, undefined, 'the history still holds the resume point')
  setup.stream.attach(gap, () => {})
  await setup.catchUp()
  await setup.publish('i9')

  const received = setup.socket.scores()
  t.same(received.map((event) => event.item), ['i3', 'i4', 'i5', 'i6', 'i7', 'i8', 'i9'], 'everything after the resume point, once each')
  t.ok(received.every((event, index) => index === 0 || compareEventIds(received[index - 1].id, event.id) < 0), 'ids strictly increasing')
  t.equal(await metricValue(setup.metrics.sseConflated), 0, 'no event met a copy of itself in the buffer')
  t.equal(setup.socket.messages()[0].retry, RETRY_MS, 'the retry hint comes first')
})

/** The bound on unsent data in the tests of it, and items long enough to reach it in a few dozen events. */
const BOUND = 8 * 1024
const PADDING = 'x'.repeat(150)
const FRAME_BYTES = serializeEvent({ id: '1800000000000-0', event: score('alice', `${PADDING}-0`, 3) }).bytes

/**
 * Opens the stream, then publishes distinct items one at a time until its socket is closed either
 * way (at most `max`), and waits for the stream's end: how many it took.
 */
async function floodUntilClosed(setup: Awaited<ReturnType<typeof openTestStream>>, max: number): Promise<number> {
  await setup.stream.start(null)
  setup.stream.attach(undefined, () => {})
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
  await draining.stream.start(null)
  draining.stream.attach(undefined, () => {})
  for (let index = 0; index < published; index++) await draining.publish(`${PADDING}-${index}`)
  t.notOk(draining.socket.destroyed, 'a socket that takes its data stays open')
  t.equal(draining.socket.scores().length, published, 'and gets every event')
  draining.stream.cut('client')
})

t.test('an empty delivery bucket holds events back and keeps only the newest per item', async (t) => {
  const setup = await openTestStream({ delivery: { capacity: 1, refillRate: 1 } })
  await setup.stream.start(null)
  setup.stream.attach(undefined, () => {})
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
  t.ok(received.every((event, index) => index === 0 || compareEventIds(received[index - 1].id, event.id) < 0), 'still in id order')
  setup.stream.cut('client')
})

t.test('the token expires: an expired event, then the stream ends', async (t) => {
  const clock = new FakeClock()
  const setup = await openTestStream({ exp: Math.floor(clock.wallMs() / 1000) + 30 })
  await setup.stream.start(null)
  setup.stream.attach(undefined, () => {})
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

t.test('heartbeats: a comment every SSE_HEARTBEAT_MS, each refreshing the stream slot', async (t) => {
  const setup = await openTestStream()
  await setup.stream.start(null)
  setup.stream.attach(undefined, () => {})
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
  await setup.stream.start(null)
  setup.stream.attach(undefined, () => {})
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
  const gap = await setup.stream.start(ids[0])
  t.ok(gap, 'a gap: the resume cannot hold all it missed')
  setup.stream.attach(gap, () => {})
  await settle()
  const messages = setup.socket.messages()
  t.same(messages[1], { id: undefined, event: 'gap', data: gap }, 'the gap comes before any score')
  const received = setup.socket.scores()
  t.equal(received.at(-1)?.id, ids.at(-1), 'the newest events are the ones kept')
  t.equal(received[0].id, gap, 'the gap names the oldest id the stream sends')
  t.ok(received.length < ids.length - 1, `only what fits (${received.length} of ${ids.length - 1})`)
  t.ok(received.every((event, index) => index === 0 || compareEventIds(received[index - 1].id, event.id) < 0), 'in id order')
  t.notOk(setup.socket.writableEnded, 'and the stream goes on')
  setup.stream.cut('client')
})
