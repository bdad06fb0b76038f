import type { FastifyInstance } from 'fastify'
import t from 'tap'
import { SESSION_COOKIE } from '../../src/auth/session.js'
import { JwtVerifier } from '../../src/auth/verifier.js'
import { buildTestApp, deletePrefix, listen, logCapture, uniquePrefix } from '../helpers/app.js'
import { bearer, mint } from '../helpers/tokens.js'

const STREAM = '/events/personalized-rating'

async function issue(app: FastifyInstance, claims = {}): Promise<string> {
  const res = await app.inject({ method: 'POST', url: '/v1/sse-tickets', headers: bearer(await mint(claims)) })
  if (res.statusCode !== 201) throw new Error(`ticket: ${res.statusCode} ${res.body}`)
  return res.json<{ ticket: string }>().ticket
}

/** Opens the SSE stream on a listening app; answers its status and content type, then hangs up. */
async function openStream(base: string, query = '', headers: Record<string, string> = {}) {
  const controller = new AbortController()
  const res = await fetch(`${base}${STREAM}${query}`, { headers, signal: controller.signal })
  const result = { status: res.status, type: res.headers.get('content-type') ?? '', body: '' }
  if (res.ok) controller.abort()
  else result.body = await res.text()
  return result
}

for (const memory of [false, true]) {
  t.test(`${memory ? 'memory' : 'Redis'} tickets: issued for the caller, read, used up once`, async (t) => {
    const app = await buildTestApp(t, {}, { memory })
    const res = await app.inject({
      method: 'POST',
      url: '/v1/sse-tickets',
      headers: bearer(await mint({ sub: 'user-t', agent_id: 'agent-t', scope: 'ratings:all' }))
    })
    t.equal(res.statusCode, 201)
    t.equal(res.headers['cache-control'], 'no-store')
    const { ticket, expires_in } = res.json()
    t.equal(expires_in, 30)

    const principal = { sub: 'user-t', agentId: 'agent-t', scopes: ['ratings:all'], exp: Number }
    t.match(await app.tickets.peek(ticket), principal)
    t.match(await app.tickets.peek(ticket), principal, 'reading a ticket does not use it up')
    t.equal(await app.tickets.consume(ticket), true)
    t.equal(await app.tickets.consume(ticket), false, 'a ticket is used up once')
    t.equal(await app.tickets.peek(ticket), null, 'and is gone')
    t.equal(await app.tickets.peek('not-a-ticket'), null)
    t.equal(await app.tickets.peek('x'.repeat(43)), null)
    t.equal(await app.tickets.consume('x'.repeat(43)), false)
  })

  t.test(`${memory ? 'memory' : 'Redis'} tickets expire after TICKET_TTL_S and never outlive the token`, async (t) => {
    const app = await buildTestApp(t, { TICKET_TTL_S: '1', JWT_CLOCK_TOLERANCE_S: '0' }, { memory })
    const ticket = await issue(app)
    await new Promise((r) => setTimeout(r, 2100))
    t.equal(await app.tickets.peek(ticket), null, 'expired ticket')
    t.equal(await app.tickets.consume(ticket), false)

    const principal = await new JwtVerifier(app.config, app.log).verify(await mint({}, { expiresIn: 600 }))
    const { ticket: stale } = await app.tickets.issue({ ...principal, exp: Math.floor(Date.now() / 1000) - 1 })
    t.equal(await app.tickets.peek(stale), null, "the caller's token has expired")
  })
}

t.test('a ticket issued on one replica is used on another, once', async (t) => {
  const prefix = uniquePrefix()
  t.teardown(() => deletePrefix(prefix))
  const a = await buildTestApp(t, { KEY_PREFIX: prefix })
  const b = await buildTestApp(t, { KEY_PREFIX: prefix })
  const ticket = await issue(a, { sub: 'user-x' })
  t.match(await b.tickets.peek(ticket), { sub: 'user-x' })
  t.equal(await b.tickets.consume(ticket), true)
  t.equal(await a.tickets.consume(ticket), false)
  t.equal(await a.tickets.peek(ticket), null)
})

t.test('the SSE stream opens with a ticket once, with the cookie, with the header; a query JWT is refused', async (t) => {
  const { lines, stream } = logCapture()
  const app = await buildTestApp(t, {}, { logStream: stream })
  const base = await listen(app)

  const ticket = await issue(app, { sub: 'user-s', agent_id: 'agent-s' })
  const first = await openStream(base, `?ticket=${ticket}`)
  t.equal(first.status, 200)
  t.match(first.type, /^text\/event-stream/)
  const again = await openStream(base, `?ticket=${ticket}`)
  t.equal(again.status, 401, 'the ticket was used up')
  t.match(JSON.parse(again.body), { statusCode: 401, message: /ticket/ })

  const token = await mint({ sub: 'user-s', agent_id: 'agent-s' })
  t.equal((await openStream(base, '', { cookie: `${SESSION_COOKIE}=${token}` })).status, 200, 'cookie')
  t.equal((await openStream(base, '', bearer(token))).status, 200, 'header')
  // A stale cookie gives way to a fresh ticket sent with it.
  const stale = await mint({}, { expiresIn: -600 })
  const fresh = await issue(app)
  t.equal((await openStream(base, `?ticket=${fresh}`, { cookie: `${SESSION_COOKIE}=${stale}` })).status, 200)

  const none = await openStream(base)
  t.equal(none.status, 401)
  t.match(JSON.parse(none.body).message, /ticket/)
  const inQuery = await openStream(base, `?access_token=${token}`)
  t.equal(inQuery.status, 401)
  t.match(JSON.parse(inQuery.body).message, /query string.*ticket/)

  // Hanging up ends the streams; then no log line may show a ticket or a token.
  await app.close()
  const logged = lines.join('\n')
  t.ok(lines.some((l) => l.includes('ticket=[REDACTED]')), 'stream requests are logged, redacted')
  for (const secret of [ticket, fresh, token.split('.')[2]]) t.notOk(logged.includes(secret), 'no credential in logs')
})

t.test('with Redis unreachable, issuing or redeeming a ticket is a 503, never a 500', async (t) => {
  const app = await buildTestApp(t, { REDIS_URL: 'redis://127.0.0.1:1' })
  const res = await app.inject({ method: 'POST', url: '/v1/sse-tickets', headers: bearer(await mint()) })
  t.equal(res.statusCode, 503)
  t.match(res.json(), { statusCode: 503, message: /ticket store unavailable/ })
  await t.rejects(app.tickets.peek('x'.repeat(43)), { statusCode: 503, message: /ticket store/ })
  await t.rejects(app.tickets.consume('x'.repeat(43)), { statusCode: 503, message: /ticket store/ })
})

for (const memory of [false, true]) {
  t.test(`defect 15: a ticket is redeemed only by a request that is otherwise valid (${memory ? 'memory' : 'Redis'})`, async (t) => {
    const app = await buildTestApp(t, { SSE_MAX_STREAMS_PER_AGENT: '1' }, { memory })
    const base = await listen(app)
    const claims = { sub: 'user-v', agent_id: 'agent-v' }
    const ticket = await issue(app, claims)

    t.equal((await openStream(base, `?ticket=${ticket}&lastEventId=nope`)).status, 400, 'a malformed lastEventId: 400')
    t.equal((await openStream(base, `?ticket=${ticket}`, { 'last-event-id': 'x-y' })).status, 400, 'a malformed Last-Event-ID: 400')
    t.equal((await openStream(base, `?ticket=${ticket}&items=`)).status, 400, 'a query that breaks the schema: 400')
    t.equal((await openStream(base, `?ticket=${ticket}&extra=1`)).status, 400, 'an unknown parameter: 400')

    const controller = new AbortController()
    const holder = await fetch(`${base}${STREAM}`, { headers: bearer(await mint(claims)), signal: controller.signal })
    t.equal(holder.status, 200, 'another stream holds the agent’s only slot')
    t.equal((await openStream(base, `?ticket=${ticket}`)).status, 429, 'over the cap: 429')
    controller.abort()

    let opened = await openStream(base, `?ticket=${ticket}`)
    for (let i = 0; opened.status === 429 && i < 100; i++) {
      await new Promise((resolve) => setTimeout(resolve, 50))
      opened = await openStream(base, `?ticket=${ticket}`)
    }
    t.equal(opened.status, 200, 'the ticket still opens a stream once the slot is free')
    t.equal((await openStream(base, `?ticket=${ticket}`)).status, 401, 'and only one')
  })
}

t.test('defect 15: two streams racing for one ticket: one opens, the other is refused and frees its slot', async (t) => {
  const app = await buildTestApp(t, { SSE_MAX_STREAMS_PER_AGENT: '2' })
  const base = await listen(app)
  const ticket = await issue(app, { sub: 'user-r', agent_id: 'agent-r' })
  const statuses = (await Promise.all([openStream(base, `?ticket=${ticket}`), openStream(base, `?ticket=${ticket}`)])).map((r) => r.status)
  t.same(statuses.sort(), [200, 401])
  const spare = await issue(app, { sub: 'user-r', agent_id: 'agent-r' })
  const controller = new AbortController()
  const kept = await fetch(`${base}${STREAM}?ticket=${spare}`, { signal: controller.signal })
  t.equal(kept.status, 200, 'the refused one released its slot')
  controller.abort()
})
