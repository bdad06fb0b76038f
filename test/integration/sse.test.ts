import t from 'tap'
import { buildTestApp, listen } from '../helpers/app.js'
import { bucketsFile, openStream, score } from '../helpers/sse.js'
import { metric } from '../helpers/metrics.js'
import { bearer, mint } from '../helpers/tokens.js'

const PATH = '/events/personalized-rating'

t.test('a subscriber gets its own events as id/data messages, with retry hint and heartbeats', async (t) => {
  const app = await buildTestApp(t, { SSE_HEARTBEAT_MS: '200', SSE_RETRY_MS: '1500' })
  const url = await listen(app)
  const alice = await openStream(t, `${url}${PATH}`, bearer(await mint({ sub: 'alice', agent_id: 'ag-a' })))
  t.equal(alice.status, 200)
  t.match(alice.headers['content-type'], /^text\/event-stream/)
  await alice.waitFor((m) => m.length > 0)
  t.equal(alice.messages[0].retry, 1500, 'retry hint first')

  await app.events.publish(score('bob', 'i1', 1), 'rest')
  const id = await app.events.publish(score('alice', 'i1', 4.5), 'rest')
  await alice.waitFor(() => alice.events().length === 1)
  const message = alice.messages.find((m) => m.data !== undefined)
  t.same(message, { id, data: JSON.stringify(score('alice', 'i1', 4.5)) }, 'id and data, no event field')
  t.same(alice.events()[0].data, { user_id: 'alice', item_id: 'i1', rating: 4.5, timestamp: 1721234567 })
  await alice.waitFor((m) => m.some((x) => x.comment !== undefined), 20_000)
  t.pass('heartbeat comment received')
  t.notOk(alice.events().some((e) => (e.data as { user_id: string }).user_id === 'bob'), 'never another user')
})

t.test('ratings:all gets every user; items= narrows', async (t) => {
  const app = await buildTestApp(t)
  const url = await listen(app)
  const admin = await openStream(t, `${url}${PATH}`, bearer(await mint({ sub: 'ops', agent_id: 'ag-o', scope: 'ratings:all' })))
  const narrow = await openStream(t, `${url}${PATH}?items=i2,i3`, bearer(await mint({ sub: 'carol', agent_id: 'ag-c' })))
  await admin.waitFor((m) => m.length > 0)
  await narrow.waitFor((m) => m.length > 0)
  await app.events.publish(score('dave', 'i1', 1), 'feed')
  await app.events.publish(score('carol', 'i1', 2), 'feed')
  await app.events.publish(score('carol', 'i2', 3), 'feed')
  await app.events.publish(score('carol', 'i3', 3.5), 'rest')
  await admin.waitFor(() => admin.events().length === 4)
  await narrow.waitFor(() => narrow.events().length === 2)
  t.same(
    narrow.events().map((e) => (e.data as { item_id: string }).item_id),
    ['i2', 'i3']
  )
  t.same(
    admin.events().map((e) => (e.data as { user_id: string }).user_id),
    ['dave', 'carol', 'carol', 'carol']
  )
})

t.test('a score published on one replica reaches a subscriber on another', async (t) => {
  const env = { KEY_PREFIX: `mbt-fan-${Date.now()}` }
  const a = await buildTestApp(t, env)
  const b = await buildTestApp(t, env)
  const url = await listen(b)
  const client = await openStream(t, `${url}${PATH}`, bearer(await mint({ sub: 'erin', agent_id: 'ag-e' })))
  await client.waitFor((m) => m.length > 0)
  const id = await a.events.publish(score('erin', 'x', 3), 'feed')
  await client.waitFor(() => client.events().length === 1)
  t.equal(client.events()[0].id, id)
})

t.test('expired token: named event expired, then the stream ends', async (t) => {
  const app = await buildTestApp(t)
  const url = await listen(app)
  const client = await openStream(t, `${url}${PATH}`, bearer(await mint({ sub: 'fay', agent_id: 'ag-f' }, { expiresIn: 2 })))
  t.equal(client.status, 200)
  await client.ended
  const last = client.messages.at(-1)
  t.equal(last?.event, 'expired')
  t.match(JSON.parse(last?.data ?? '{}'), { reason: /expired/ })
})

for (const memory of [false, true]) {
  t.test(`open streams per agent are capped: 429 with Retry-After (${memory ? 'memory' : 'Redis'})`, async (t) => {
    const app = await buildTestApp(t, { SSE_MAX_STREAMS_PER_AGENT: '2' }, { memory })
    const url = await listen(app)
    const token = await mint({ sub: 'gus', agent_id: 'ag-g' })
    const first = await openStream(t, `${url}${PATH}`, bearer(token))
    const second = await openStream(t, `${url}${PATH}`, bearer(token))
    t.equal(first.status, 200)
    t.equal(second.status, 200)
    const third = await openStream(t, `${url}${PATH}`, bearer(token))
    t.equal(third.status, 429)
    t.ok(Number(third.headers['retry-after']) >= 1)
    await third.ended
    t.match(JSON.parse(third.body), { statusCode: 429, error: 'Too Many Requests' })
    const other = await openStream(t, `${url}${PATH}`, bearer(await mint({ sub: 'gus', agent_id: 'ag-other' })))
    t.equal(other.status, 200, 'another agent is not affected')
    first.close()
    await first.ended
    // The slot is released when the client goes away.
    let again = await openStream(t, `${url}${PATH}`, bearer(token))
    for (let i = 0; again.status !== 200 && i < 50; i++) {
      await new Promise((r) => setTimeout(r, 50))
      again = await openStream(t, `${url}${PATH}`, bearer(token))
    }
    t.equal(again.status, 200)
  })
}

t.test('conflation: a burst faster than the delivery bucket ends with the newest score per item', async (t) => {
  const BUCKETS_FILE = await bucketsFile(t, { capacity: 2, refill_rate: 5 })
  const app = await buildTestApp(t, { BUCKETS_FILE })
  const url = await listen(app)
  const client = await openStream(t, `${url}${PATH}`, bearer(await mint({ sub: 'hal', agent_id: 'ag-h' })))
  await client.waitFor((m) => m.length > 0)
  const items = ['a', 'b', 'c']
  const published = 60
  for (let i = 0; i < published; i++) await app.events.publish(score('hal', items[i % 3], (i % 50) / 10, 1000 + i), 'feed')
  const newest = (item: string) => {
    const got = client.events().filter((e) => (e.data as { item_id: string }).item_id === item)
    return (got.at(-1)?.data as { timestamp: number } | undefined)?.timestamp
  }
  await client.waitFor(() => newest('a') === 1057 && newest('b') === 1058 && newest('c') === 1059, 15000)
  t.ok(client.events().length < published, `fewer events (${client.events().length}) than published`)
  const ids = client.events().map((e) => e.id)
  t.same(ids, [...ids].sort((x, y) => Number(x.split('-')[0]) - Number(y.split('-')[0]) || Number(x.split('-')[1]) - Number(y.split('-')[1])), 'ids ascend')
  const metrics = await app.inject('/metrics')
  t.match(metrics.body, /moltbridge_sse_events_conflated_total [1-9]/)
})

t.test('bad Last-Event-ID is a 400 naming it', async (t) => {
  const app = await buildTestApp(t)
  const url = await listen(app)
  const client = await openStream(t, `${url}${PATH}?lastEventId=nope`, bearer(await mint({ sub: 'ivy', agent_id: 'ag-i' })))
  t.equal(client.status, 400)
  await client.ended
  t.match(JSON.parse(client.body).message, /lastEventId/)
})

t.test('shutdown drains open streams with a retry hint and refuses new ones', async (t) => {
  const app = await buildTestApp(t, { DRAIN_MS: '300', SSE_RETRY_MS: '700' })
  const url = await listen(app)
  const client = await openStream(t, `${url}${PATH}`, bearer(await mint({ sub: 'jon', agent_id: 'ag-j' })))
  await client.waitFor((m) => m.length > 0)
  await app.close()
  await client.ended
  t.equal(client.messages.at(-1)?.retry, 700)
})

t.test('a stream opens with a single-use ticket or the session cookie; a JWT in the query is refused', async (t) => {
  const app = await buildTestApp(t)
  const url = await listen(app)
  const token = await mint({ sub: 'kai', agent_id: 'ag-kai' })
  const issued = await app.inject({ method: 'POST', url: '/v1/sse-tickets', headers: bearer(token) })
  const { ticket } = issued.json() as { ticket: string }
  const byTicket = await openStream(t, `${url}${PATH}?ticket=${encodeURIComponent(ticket)}`)
  t.equal(byTicket.status, 200)
  const byCookie = await openStream(t, `${url}${PATH}`, { cookie: `mb_session=${token}` })
  t.equal(byCookie.status, 200)
  const id = await app.events.publish(score('kai', 'k1', 2.5), 'rest')
  await byTicket.waitFor(() => byTicket.events().length === 1)
  await byCookie.waitFor(() => byCookie.events().length === 1)
  t.equal(byTicket.events()[0].id, id)
  t.equal(byCookie.events()[0].id, id)
  const reused = await openStream(t, `${url}${PATH}?ticket=${encodeURIComponent(ticket)}`)
  t.equal(reused.status, 401, 'a ticket opens one stream only')
  const inQuery = await openStream(t, `${url}${PATH}?access_token=${token}`)
  t.equal(inQuery.status, 401)
})

t.test('defect 13: HEAD on the stream answers the headers and ends, leaving no stream open', async (t) => {
  const app = await buildTestApp(t)
  const url = await listen(app)
  const res = await fetch(`${url}${PATH}`, {
    method: 'HEAD',
    headers: bearer(await mint({ sub: 'hedy', agent_id: 'ag-hedy' })),
    signal: AbortSignal.timeout(10_000)
  })
  t.equal(res.status, 200)
  t.match(res.headers.get('content-type'), /^text\/event-stream/)
  t.equal(await res.text(), '')
  t.equal(await metric(app, 'moltbridge_sse_streams_open'), 0, 'no stream was opened')
  const anonymous = await fetch(`${url}${PATH}`, { method: 'HEAD', signal: AbortSignal.timeout(10_000) })
  t.equal(anonymous.status, 401, 'HEAD authenticates like GET')
})

t.test('defect 6: a ratings:all stream held back by a tiny delivery bucket, 100k distinct items: closed at the bound, and the reconnect resumes', async (t) => {
  const BUCKETS_FILE = await bucketsFile(t, { capacity: 5, refill_rate: 1 })
  const app = await buildTestApp(t, { BUCKETS_FILE, SSE_MAX_UNSENT_BYTES: String(64 * 1024), SSE_RETRY_MS: '500' }, { memory: true })
  const url = await listen(app)
  const headers = bearer(await mint({ sub: 'ops', agent_id: 'ag-ops', scope: 'ratings:all' }))
  const first = await openStream(t, `${url}${PATH}`, headers)
  t.equal(first.status, 200)
  await first.waitFor((m) => m.length > 0)
  const ITEMS = 100_000
  let published = 0
  let ended = false
  void first.ended.then(() => (ended = true))
  for (; published < ITEMS; published++) await app.events.publish(score(`user-${published % 100}`, `item-${published}`, 3, 1000 + published), 'feed')
  await first.ended
  t.ok(ended, 'the stream was closed')
  t.equal(await metric(app, 'moltbridge_sse_streams_closed_total', 'reason="overflow"'), 1, 'because what it held passed SSE_MAX_UNSENT_BYTES')
  t.equal(first.messages.at(-1)?.retry, 500, 'after a retry hint')
  const delivered = first.events()
  t.ok(delivered.length >= 1 && delivered.length < 100, `it got what its bucket allowed (${delivered.length}), not a backlog`)
  t.equal(await metric(app, 'moltbridge_sse_streams_open'), 0)

  const lastId = delivered.at(-1)?.id ?? ''
  const again = await openStream(t, `${url}${PATH}`, { ...headers, 'last-event-id': lastId })
  t.equal(again.status, 200, `the client reconnects with its last id ${lastId}: ${again.body}`)
  await again.waitFor(() => again.events().length >= 5)
  const gap = again.messages.find((message) => message.event === 'gap')
  t.ok(gap, 'told that it missed more than one stream can hold')
  const resumed = again.events().map((event) => event.id)
  t.equal(resumed[0], gap?.data, 'then the newest events that fit, from the id the gap names')
  const byId = (left: string, right: string) => {
    const [lm, ls] = left.split('-').map(Number)
    const [rm, rs] = right.split('-').map(Number)
    return lm - rm || ls - rs
  }
  t.ok(resumed.every((id, index) => byId(id, index === 0 ? lastId : resumed[index - 1]) > 0), 'after the last id, in order')
  again.close()
})
