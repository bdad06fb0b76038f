import t from 'tap'
import { deletePrefix, REDIS_URL, TEST_SECRET, uniquePrefix } from '../helpers/app.js'
import { moltbook } from '../helpers/moltbook.js'
import { openclawEnv, startTestOpenClaw } from '../helpers/openclaw.js'
import { startOtlpReceiver, type ReceivedSpan } from '../helpers/otlp.js'
import { buildGateway, startGateways } from '../helpers/processes.js'
import { openStream } from '../helpers/sse.js'
import { bearer, mint } from '../helpers/tokens.js'
import { waitFor } from '../helpers/wait.js'

const USER = 'tr-user'
const FEED_RATINGS = 4

/** The spans of one trace, by name. */
function traceOf(spans: ReceivedSpan[], traceId: string) {
  const mine = spans.filter((span) => span.traceId === traceId)
  return { all: mine, named: (name: string) => mine.filter((span) => span.name === name) }
}

t.test('one trace per feed rating from ingest to the SSE write on both replicas; REST requests traced; no secret in any span', async (t) => {
  t.setTimeout(240_000)
  await buildGateway()
  const receiver = await startOtlpReceiver(t)
  const openclaw = await startTestOpenClaw(t)
  const feed = await moltbook(t)
  const prefix = uniquePrefix()
  t.teardown(() => deletePrefix(prefix))
  const [first, second] = await startGateways(t, 2, {
    REDIS_URL,
    KEY_PREFIX: prefix,
    JWT_SECRET: TEST_SECRET,
    MOLTBOOK_URL: feed.url,
    ...openclawEnv(openclaw),
    OTEL_EXPORTER_OTLP_ENDPOINT: receiver.url,
    OTEL_BSP_SCHEDULE_DELAY: '100'
  })
  await waitFor('one replica reads the feed', () => feed.clients() === 1, 30_000)

  const token = await mint({ sub: USER, agent_id: 'tr-agent' })
  // One stream by header on the first replica, one by ticket on the second.
  const onFirst = await openStream(t, `${first.url}/events/personalized-rating`, bearer(token))
  const ticketResponse = await fetch(`${second.url}/v1/sse-tickets`, { method: 'POST', headers: bearer(token) })
  const { ticket } = (await ticketResponse.json()) as { ticket: string }
  const onSecond = await openStream(t, `${second.url}/events/personalized-rating?ticket=${encodeURIComponent(ticket)}`)
  t.same([onFirst.status, onSecond.status], [200, 200], 'a stream of the user on each replica')

  // Several ratings in one feed message: still one trace each.
  const ratings = Array.from({ length: FEED_RATINGS }, (_, i) => ({ user_id: USER, item_id: `tr-${i}`, timestamp: 1721300000 + i, rating: 3 }))
  feed.send(ratings)
  for (const stream of [onFirst, onSecond]) await stream.waitFor(() => stream.events().length >= FEED_RATINGS, 60_000)

  const roots = () => receiver.spans.filter((span) => span.name === 'feed.ingest' && span.parentSpanId === '')
  const delivered = (traceId: string) => new Set(traceOf(receiver.spans, traceId).named('sse.deliver').map((span) => span.instance)).size
  await waitFor(
    'every feed rating trace exported with its deliveries on both replicas',
    () => roots().length >= FEED_RATINGS && roots().every((root) => delivered(root.traceId) === 2),
    60_000
  )
  t.equal(roots().length, FEED_RATINGS, 'one trace per feed rating')
  for (const root of roots()) {
    const trace = traceOf(receiver.spans, root.traceId)
    const attempts = trace.named('forward.attempt')
    t.ok(attempts.length >= 1 && attempts.every((span) => span.parentSpanId === root.spanId), 'forward attempts are children of the ingest')
    const [publish] = trace.named('events.publish')
    t.ok(publish, 'the publish is in the trace')
    const attempt = attempts.find((span) => span.spanId === publish?.parentSpanId)
    t.ok(attempt, 'the publish is a child of a forward attempt')
    for (const name of ['bucket.take', 'openclaw.rate']) {
      t.ok(trace.named(name).some((span) => span.parentSpanId === attempt?.spanId), `${name} is a child of that attempt`)
    }
    const deliveries = trace.named('sse.deliver')
    t.ok(deliveries.every((span) => span.parentSpanId === publish?.spanId), 'each delivery is a child of the publish')
    t.equal(new Set(deliveries.map((span) => span.instance)).size, 2, 'delivered on both replicas')
    t.equal(new Set(trace.all.map((span) => span.instance)).size, 2, 'the trace crosses the two replicas')
  }

  // A REST rating on the second replica: its request span is the parent of what it does.
  const rest = await fetch(`${second.url}/v1/rating`, {
    method: 'POST',
    headers: { ...bearer(token), 'content-type': 'application/json' },
    body: JSON.stringify({ user_id: USER, item_id: 'tr-rest', timestamp: 1721300100, rating: 4 })
  })
  t.equal(rest.status, 200, 'REST rating answered')
  const restRoot = () => receiver.spans.find((span) => span.name === 'request' && span.attributes['http.route'] === '/v1/rating')
  await waitFor('the REST trace exported with both deliveries', () => {
    const root = restRoot()
    return root !== undefined && delivered(root.traceId) === 2
  }, 60_000)
  const root = restRoot()
  const restTrace = traceOf(receiver.spans, root?.traceId ?? '')
  for (const name of ['bucket.take', 'openclaw.rate', 'events.publish']) {
    t.ok(restTrace.named(name).some((span) => span.parentSpanId === root?.spanId), `${name} is a child of the request span`)
  }

  // The ticket stream's request span ends with the stream: close it, then look at everything exported.
  onSecond.close()
  await waitFor('the stream request span exported', () => receiver.spans.some((span) => span.attributes['http.route'] === '/events/personalized-rating'), 30_000)
  const streamSpans = receiver.spans.filter((span) => span.attributes['http.route'] === '/events/personalized-rating')
  t.ok(streamSpans.every((span) => span.attributes['url.path'] === '/events/personalized-rating'), 'url.path carries no query')
  const exported = receiver.bodies.join('\n')
  for (const [what, secret] of [['the JWT', token], ['the ticket', ticket], ['the OpenClaw key', openclaw.apiKey]] as const) {
    t.notOk(exported.includes(secret), `${what} is in no exported span`)
  }
})
