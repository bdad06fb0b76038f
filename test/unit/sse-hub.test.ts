import { PassThrough } from 'node:stream'
import { pino } from 'pino'
import t from 'tap'
import { HttpError } from '../../src/errors.js'
import { EventBus } from '../../src/events/event-bus.js'
import { MemoryEventStore } from '../../src/events/memory-event-store.js'
import { createMetrics } from '../../src/metrics.js'
import { SseHub } from '../../src/sse/hub.js'
import { MemoryStreamSlots } from '../../src/sse/stream-slots.js'
import type { Teardown } from '../helpers/app.js'
import { FakeClock } from '../helpers/fake-clock.js'
import { metricValue } from '../helpers/metrics.js'
import { score } from '../helpers/sse.js'
import { waitFor } from '../helpers/wait.js'

const log = pino({ enabled: false })

async function testHub(t: Teardown, drainMs = 0) {
  const clock = new FakeClock()
  const metrics = createMetrics()
  const store = new MemoryEventStore({ historyMax: 10, historyTtlS: 60, scoresTtlS: 60, allMax: 10, allPartitions: 1, maxUsers: 100, clock })
  const bus = new EventBus(store, { published: metrics.published, topics: metrics.fanoutTopics, onError: (err) => log.error({ err }) })
  const slots = new MemoryStreamSlots({ now: clock.now })
  const hub = new SseHub(
    { bus, slots, delivery: () => ({ limits: { capacity: 1000, refillRate: 1000 }, shadow: false }), metrics, log, clock },
    { heartbeatMs: 60_000, retryMs: 1500, maxUnsentBytes: 64 * 1024, maxStreamsPerAgent: 2, drainMs }
  )
  t.teardown(async () => {
    await hub.close()
    await bus.close()
  })
  /** Opens a stream whose socket is a PassThrough read as it goes. */
  const open = async (user: string, agent = `agent-${user}`, resume: string | null = null) => {
    const sink = new PassThrough()
    let text = ''
    let closed = false
    sink.on('data', (chunk: Buffer) => (text += chunk.toString()))
    sink.on('close', () => (closed = true))
    let begun = false
    const request = { id: resume ?? '', field: 'headers/last-event-id' }
    await hub.open({ principal: { sub: user, agentId: agent, scopes: [] }, items: null, resume: resume === null ? null : request, sink, log, begin: () => (begun = true) })
    return { sink, text: () => text, begun: () => begun, closed: () => closed }
  }
  return { hub, bus, metrics, clock, open }
}

t.test('the streams of a user get each event, as on the wire; another user gets nothing', async (t) => {
  const { bus, open } = await testHub(t)
  const [first, second, other] = [await open('alice', 'agent-1'), await open('alice', 'agent-2'), await open('bob')]
  t.ok(first.begun(), 'the head is sent once the stream can start')
  const id = await bus.publish(score('alice', 'i1', 4), 'rest')
  const frame = `id: ${id}\ndata: ${JSON.stringify(score('alice', 'i1', 4))}\n\n`
  await waitFor('both alice streams', () => first.text().endsWith(frame) && second.text().endsWith(frame))
  t.equal(first.text(), `retry: 1500\nid: 0-0\n\n${frame}`, 'retry hint and position, then the event')
  t.notOk(other.text().includes('data:'), 'bob saw nothing of alice')
})

t.test('one channel per user: joined by the first stream, left with the last', async (t) => {
  const { metrics, open } = await testHub(t)
  const [first, second] = [await open('alice', 'agent-1'), await open('alice', 'agent-2')]
  await open('bob')
  t.equal(await metricValue(metrics.fanoutTopics), 2, 'alice and bob: two topics for three streams')
  first.sink.destroy()
  second.sink.destroy()
  await waitFor('alice’s topic left', async () => (await metricValue(metrics.fanoutTopics)) === 1)
})

t.test('a resume position that is malformed or newer than any event is a 400 naming the field', async (t) => {
  const { bus, open, metrics } = await testHub(t)
  const id = await bus.publish(score('alice', 'i1', 4), 'rest')
  for (const bad of ['12', '1-2-3', `${id}.${id}`]) {
    const refused = await open('alice', 'agent-1', bad).catch((err: unknown) => err)
    t.match(refused, { statusCode: 400, message: /^headers\/last-event-id must be an event id/ }, bad)
  }
  const [ms] = id.split('-').map(Number)
  const future = await open('alice', 'agent-1', `${ms + 1}-0`).catch((err: unknown) => err)
  t.match(future, { statusCode: 400, message: 'headers/last-event-id is newer than any event of this stream' })
  t.equal(await metricValue(metrics.sseOpen), 0, 'no stream left open')
  t.equal(await metricValue(metrics.fanoutTopics), 0, 'nor a topic')
})

t.test('the agent cap refuses a stream with 429 and Retry-After; a closed stream frees its slot', async (t) => {
  const { open, metrics } = await testHub(t)
  const first = await open('alice', 'agent-cap')
  await open('alice', 'agent-cap')
  const refused = await open('alice', 'agent-cap').catch((err: unknown) => err)
  t.ok(refused instanceof HttpError && refused.statusCode === 429, 'third stream refused')
  t.match(refused, { headers: { 'Retry-After': /^\d+$/ } })
  t.equal(await metricValue(metrics.sseRefused, { reason: 'cap' }), 1)
  first.sink.destroy()
  await waitFor('the slot is released', () => open('alice', 'agent-cap').then(() => true, () => false))
})

t.test('drain: streams told to retry and closed one by one over DRAIN_MS; new streams refused', async (t) => {
  const DRAIN_MS = 600
  const { hub, open, metrics, clock } = await testHub(t, DRAIN_MS)
  const streams = [await open('u1'), await open('u2'), await open('u3'), await open('u4')]
  const closedCount = () => streams.filter((stream) => stream.closed()).length
  const drained = hub.drain()
  const refused = await open('late').catch((err: unknown) => err)
  t.ok(refused instanceof HttpError && refused.statusCode === 503, 'a new stream is refused while draining')
  for (const [index, at] of [0, 200, 400, 600].entries()) {
    await clock.pass(index === 0 ? 0 : 200)
    await waitFor(`stream ${index} closed at ${at} ms`, () => closedCount() === index + 1)
    t.equal(closedCount(), index + 1, `${index + 1} of 4 closed at ${at} ms`)
  }
  await drained
  for (const stream of streams) t.ok(stream.text().endsWith('retry: 1500\n\n'), 'each ends with the retry hint')
  t.equal(await metricValue(metrics.sseClosed, { reason: 'drain' }), 4)
  t.equal(await metricValue(metrics.sseRefused, { reason: 'draining' }), 1)
})
