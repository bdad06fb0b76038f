import type { FastifyInstance } from 'fastify'
import { EventSource } from 'eventsource'
import { connect } from 'node:net'
import t from 'tap'
import { buildTestApp, listen, uniquePrefix } from '../helpers/app.js'
import { bucketsFile, openStream, score, type SseClient } from '../helpers/sse.js'
import { bearer, mint } from '../helpers/tokens.js'

const PATH = '/events/personalized-rating'
const itemOf = (e: { data: unknown }) => (e.data as { item_id: string }).item_id

/** Publishes `count` events for `user` (item n-<i>) on `app`, a few at a time, while the test runs. */
async function publishSlowly(app: FastifyInstance, user: string, count: number) {
  const ids: string[] = []
  for (let i = 0; i < count; i++) {
    ids.push(await app.events.publish(score(user, `n-${i}`, 1, i), 'feed'))
    if (i % 5 === 0) await new Promise((r) => setTimeout(r, 5))
  }
  return ids
}

/** Reads a stream until `n` events arrived, then drops it; returns the events it got. */
async function readSome(client: SseClient, n: number) {
  await client.waitFor(() => client.events().length >= n, 20000)
  client.close()
  await client.ended
  return client.events()
}

for (const via of ['header', 'query'] as const) {
  t.test(`Last-Event-ID by ${via}: nothing lost, nothing doubled while events keep flowing`, async (t) => {
    const BUCKETS_FILE = await bucketsFile(t, { capacity: 10000, refill_rate: 10000 })
    const app = await buildTestApp(t, { BUCKETS_FILE })
    const url = await listen(app)
    const token = await mint({ sub: 'kim', agent_id: 'ag-k' })
    const first = await openStream(t, `${url}${PATH}`, bearer(token))
    await first.waitFor((m) => m.length > 0)
    const publishing = publishSlowly(app, 'kim', 300)
    const got = await readSome(first, 50)
    const last = got.at(-1)?.id ?? ''
    const second =
      via === 'header'
        ? await openStream(t, `${url}${PATH}`, { ...bearer(token), 'last-event-id': last })
        : await openStream(t, `${url}${PATH}?lastEventId=${encodeURIComponent(last)}`, bearer(token))
    const ids = await publishing
    await second.waitFor(() => second.events().at(-1)?.id === ids.at(-1), 20000)
    const all = [...got, ...second.events()]
    t.same(all.map((e) => e.id), ids, 'every id once, in order')
    t.same(all.map(itemOf), ids.map((_, i) => `n-${i}`))
  })
}

t.test('resume on a different replica misses nothing', async (t) => {
  const BUCKETS_FILE = await bucketsFile(t, { capacity: 10000, refill_rate: 10000 })
  const env = { KEY_PREFIX: uniquePrefix(), BUCKETS_FILE }
  const a = await buildTestApp(t, env)
  const b = await buildTestApp(t, env)
  const [urlA, urlB] = [await listen(a), await listen(b)]
  const token = await mint({ sub: 'lee', agent_id: 'ag-l' })
  const first = await openStream(t, `${urlA}${PATH}`, bearer(token))
  await first.waitFor((m) => m.length > 0)
  const publishing = publishSlowly(a, 'lee', 200)
  const got = await readSome(first, 40)
  const second = await openStream(t, `${urlB}${PATH}`, { ...bearer(token), 'last-event-id': got.at(-1)?.id ?? '' })
  const ids = await publishing
  await second.waitFor(() => second.events().at(-1)?.id === ids.at(-1), 20000)
  t.same([...got, ...second.events()].map((e) => e.id), ids)
})

t.test('a Last-Event-ID older than the history starts with a gap event', async (t) => {
  const app = await buildTestApp(t, { HISTORY_MAX: '5' })
  const url = await listen(app)
  const ids: string[] = []
  for (let i = 0; i < 10; i++) ids.push(await app.events.publish(score('max', `g-${i}`, 2, i), 'rest'))
  const client = await openStream(t, `${url}${PATH}`, { ...bearer(await mint({ sub: 'max', agent_id: 'ag-m' })), 'last-event-id': ids[1] })
  await client.waitFor(() => client.events().length === 5)
  const gap = client.messages.find((m) => m.event === 'gap')
  t.equal(gap?.data, ids[5], 'gap data: the oldest id still held')
  t.ok(client.messages.indexOf(gap ?? {}) < client.messages.findIndex((m) => m.data !== undefined && !m.event), 'gap before the replay')
  t.same(client.events().map((e) => e.id), ids.slice(5))

  const recent = await openStream(t, `${url}${PATH}`, { ...bearer(await mint({ sub: 'max', agent_id: 'ag-m' })), 'last-event-id': ids[7] })
  await recent.waitFor(() => recent.events().length === 2)
  t.notOk(recent.messages.some((m) => m.event === 'gap'), 'no gap when the history covers it')
})

t.test('a socket that stops draining is closed once its unsent data passes the bound', async (t) => {
  const BUCKETS_FILE = await bucketsFile(t, { capacity: 100000, refill_rate: 100000 })
  const app = await buildTestApp(t, { BUCKETS_FILE, SSE_MAX_UNSENT_BYTES: '1024' })
  const url = new URL(await listen(app))
  const token = await mint({ sub: 'ned', agent_id: 'ag-n' })
  const socket = connect(Number(url.port), '127.0.0.1')
  t.teardown(() => socket.destroy())
  let closed = false
  socket.on('close', () => (closed = true))
  socket.on('error', () => {})
  await new Promise((r) => socket.once('connect', r))
  socket.write(`GET ${PATH} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${token}\r\nAccept: text/event-stream\r\n\r\n`)
  socket.pause() // never reads: the kernel buffers fill, then the gateway's
  const slow = async () => (await app.metrics.sseClosed.get()).values.find((v) => v.labels.reason === 'slow_consumer')?.value ?? 0
  const item = 'x'.repeat(100)
  for (let i = 0; i < 200 && (await slow()) === 0; i++) {
    await Promise.all(Array.from({ length: 250 }, (_, j) => app.events.publish(score('ned', `${item}-${i}-${j}`, 3, i), 'feed')))
  }
  t.equal(await slow(), 1, 'closed as slow_consumer')
  t.equal((await app.metrics.sseOpen.get()).values[0]?.value, 0, 'no stream left open')
  socket.resume()
  for (let i = 0; !closed && i < 200; i++) await new Promise((r) => setTimeout(r, 50))
  t.ok(closed, 'the client sees its connection end')
})

t.test('a browser-style EventSource reconnects by itself with Last-Event-ID and misses nothing', async (t) => {
  const app = await buildTestApp(t, { SSE_RETRY_MS: '100' })
  const url = await listen(app)
  const token = await mint({ sub: 'ora', agent_id: 'ag-or' })
  const source = new EventSource(`${url}${PATH}`, {
    fetch: (input, init) => fetch(input, { ...init, headers: { ...init?.headers, authorization: `Bearer ${token}` } })
  })
  t.teardown(() => source.close())
  const received: { id: string; item: string }[] = []
  source.onmessage = (e) => received.push({ id: e.lastEventId, item: (JSON.parse(e.data) as { item_id: string }).item_id })
  await new Promise((resolve) => (source.onopen = resolve))
  const ids: string[] = []
  for (let i = 0; i < 3; i++) ids.push(await app.events.publish(score('ora', `e-${i}`, 1, i), 'rest'))
  for (let i = 0; received.length < 3 && i < 200; i++) await new Promise((r) => setTimeout(r, 25))
  app.server.closeAllConnections() // the connection drops (proxy restart, network)
  for (let i = 3; i < 6; i++) ids.push(await app.events.publish(score('ora', `e-${i}`, 1, i), 'rest'))
  for (let i = 0; received.length < 6 && i < 400; i++) await new Promise((r) => setTimeout(r, 25))
  t.same(received.map((r) => r.id), ids, 'all six, once each, in order')
  t.same(received.map((r) => r.item), ['e-0', 'e-1', 'e-2', 'e-3', 'e-4', 'e-5'])
})

t.test('ratings:all resumes on another replica from its position: every event after it once, with a gap once trimmed', async (t) => {
  const BUCKETS_FILE = await bucketsFile(t, { capacity: 10000, refill_rate: 10000 })
  const env = { KEY_PREFIX: uniquePrefix(), BUCKETS_FILE }
  const [a, b] = [await buildTestApp(t, env), await buildTestApp(t, env)]
  const [urlA, urlB] = [await listen(a), await listen(b)]
  const headers = bearer(await mint({ sub: 'ops', agent_id: 'ag-ops', scope: 'ratings:all' }))
  const first = await openStream(t, `${urlA}${PATH}`, headers)
  await first.waitFor((m) => m.length > 0)
  const opening = first.messages[0].id ?? ''
  t.equal(opening.split('.').length, 16, 'the position: one id per partition (EVENTS_PARTITIONS 16)')
  for (let i = 0; i < 30; i++) await a.events.publish(score(`u-${i % 7}`, `all-${i}`, 1, i), 'feed')
  const got = await readSome(first, 12)
  for (let i = 30; i < 40; i++) await b.events.publish(score(`u-${i % 7}`, `all-${i}`, 1, i), 'feed')
  const resumed = await openStream(t, `${urlB}${PATH}`, { ...headers, 'last-event-id': got[11].id })
  await resumed.waitFor(() => resumed.events().length >= 28)
  const items = [...got.slice(0, 12), ...resumed.events()].map(itemOf)
  t.equal(items.length, 40, 'nothing lost, nothing doubled')
  t.same(new Set(items), new Set(Array.from({ length: 40 }, (_, i) => `all-${i}`)), 'every user’s events')
  t.notOk(resumed.messages.some((m) => m.event === 'gap'))
  const fresh = await openStream(t, `${urlB}${PATH}`, { ...headers, 'last-event-id': opening })
  await fresh.waitFor(() => fresh.events().length >= 40)
  t.equal(fresh.events().length, 40, 'from the opening position: all 40 again')

  // Partitions are trimmed in whole blocks (~100 entries): two partitions, a few hundred events.
  const small = await buildTestApp(t, { EVENTS_STREAM_MAX: '10', EVENTS_PARTITIONS: '2', BUCKETS_FILE })
  const url = await listen(small)
  const early = await openStream(t, `${url}${PATH}`, headers)
  await early.waitFor((m) => m.length > 0)
  for (let i = 0; i < 400; i++) await small.events.publish(score(`u-${i % 9}`, `s-${i}`, 1, i), 'feed')
  const old = await openStream(t, `${url}${PATH}`, { ...headers, 'last-event-id': early.messages[0].id ?? '' })
  await old.waitFor((m) => m.some((x) => x.event === 'gap'))
  const gap = old.messages.find((m) => m.event === 'gap')?.data ?? ''
  t.equal(gap.split('.').length, 2, 'gap data: a position, the oldest ids still held where trimmed')
  await old.waitFor(() => old.events().length >= 10)
  t.ok(old.events().length < 400, `then what is still held (${old.events().length} of 400)`)
})

t.test('defect 14: a Last-Event-ID newer than any event is a 400 naming the field, not a stream that drops everything', async (t) => {
  const app = await buildTestApp(t)
  const url = await listen(app)
  const headers = bearer(await mint({ sub: 'fut', agent_id: 'ag-fut' }))
  const known = await app.events.publish(score('fut', 'a', 1), 'rest')
  const ahead = '99999999999999-0'
  const byHeader = await openStream(t, `${url}${PATH}`, { ...headers, 'last-event-id': ahead })
  t.equal(byHeader.status, 400)
  t.match(JSON.parse(byHeader.body), { statusCode: 400, message: /headers\/last-event-id.*newer than any event/ })
  const byQuery = await openStream(t, `${url}${PATH}?lastEventId=${ahead}`, headers)
  t.equal(byQuery.status, 400)
  t.match(JSON.parse(byQuery.body), { message: /querystring\/lastEventId/ })
  const [ms, seq] = known.split('-').map(Number)
  const justAfter = await openStream(t, `${url}${PATH}`, { ...headers, 'last-event-id': `${ms}-${seq + 1}` })
  t.equal(justAfter.status, 400, 'one past the newest event is already in the future')
  const fine = await openStream(t, `${url}${PATH}`, { ...headers, 'last-event-id': known })
  t.equal(fine.status, 200, 'the newest id itself resumes')
  const next = await app.events.publish(score('fut', 'b', 2), 'rest')
  await fine.waitFor(() => fine.events().length === 1)
  t.equal(fine.events()[0].id, next, 'and the live events after it arrive')
})
