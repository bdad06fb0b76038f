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
  t.test(`${memory ? 'memory' : 'Redis'} tickets: issued for the caller, redeemed once`, async (t) => {
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

    t.match(await app.tickets.redeem(ticket), { sub: 'user-t', agentId: 'agent-t', scopes: ['ratings:all'], exp: Number })
    t.equal(await app.tickets.redeem(ticket), null, 'a second redeem fails')
    t.equal(await app.tickets.redeem('not-a-ticket'), null)
    t.equal(await app.tickets.redeem('x'.repeat(43)), null)
  })

  t.test(`${memory ? 'memory' : 'Redis'} tickets expire after TICKET_TTL_S and never outlive the token`, async (t) => {
    const app = await buildTestApp(t, { TICKET_TTL_S: '1', JWT_CLOCK_TOLERANCE_S: '0' }, { memory })
    const ticket = await issue(app)
    await new Promise((r) => setTimeout(r, 2100))
    t.equal(await app.tickets.redeem(ticket), null, 'expired ticket')

    const principal = await new JwtVerifier(app.config, app.log).verify(await mint({}, { expiresIn: 600 }))
    const { ticket: stale } = await app.tickets.issue({ ...principal, exp: Math.floor(Date.now() / 1000) - 1 })
    t.equal(await app.tickets.redeem(stale), null, "the caller's token has expired")
  })
}

t.test('a ticket issued on one replica is redeemed on another, once', async (t) => {
  const prefix = uniquePrefix()
  t.teardown(() => deletePrefix(prefix))
  const a = await buildTestApp(t, { KEY_PREFIX: prefix })
  const b = await buildTestApp(t, { KEY_PREFIX: prefix })
  const ticket = await issue(a, { sub: 'user-x' })
  t.match(await b.tickets.redeem(ticket), { sub: 'user-x' })
  t.equal(await a.tickets.redeem(ticket), null)
  t.equal(await b.tickets.redeem(ticket), null)
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
  await t.rejects(app.tickets.redeem('x'.repeat(43)), { statusCode: 503, message: /ticket store/ })
})
