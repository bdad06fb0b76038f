import t from 'tap'
import { buildTestApp, listen, logCapture } from '../helpers/app.js'
import { freePort } from '../helpers/ports.js'
import { openStream } from '../helpers/sse.js'
import { bearer, mint } from '../helpers/tokens.js'
import { waitFor } from '../helpers/wait.js'

const ADMIN = { scope: 'moltbridge:admin' }
const nowS = () => Math.floor(Date.now() / 1000)

/** Every admin route, with a request that would succeed for an admin. */
const ROUTES = [
  { method: 'POST', url: '/admin/revoke', payload: { user_id: 'nobody' } },
  { method: 'GET', url: '/admin/streams' },
  { method: 'GET', url: '/admin/queue' },
  { method: 'GET', url: '/admin/leader' },
  { method: 'GET', url: '/admin/dead-letters' },
  { method: 'POST', url: '/admin/dead-letters/1-1/retry' },
  { method: 'DELETE', url: '/admin/dead-letters/1-1' },
  { method: 'GET', url: '/admin/limits' },
  { method: 'PUT', url: '/admin/limits/agent-x', payload: { rest: { refill_rate: 1, capacity: 5 } } },
  { method: 'DELETE', url: '/admin/limits/agent-x' }
] as const

t.test('admin routes: 401 without a valid token, 403 without the moltbridge:admin scope, served with it', async (t) => {
  const app = await buildTestApp(t)
  const user = await mint({ scope: 'ratings:read' })
  const admin = await mint({ sub: 'ops', ...ADMIN })
  for (const route of ROUTES) {
    const anonymous = await app.inject({ ...route })
    t.equal(anonymous.statusCode, 401, `${route.method} ${route.url} without a token`)
    const refused = await app.inject({ ...route, headers: bearer(user) })
    t.equal(refused.statusCode, 403, `${route.method} ${route.url} without the scope`)
    t.match(refused.json().message, /moltbridge:admin/)
    const served = await app.inject({ ...route, headers: bearer(admin) })
    t.ok([200, 204, 404].includes(served.statusCode), `${route.method} ${route.url} for an admin: ${served.statusCode} ${served.body}`)
  }
  t.equal((await app.inject({ method: 'PUT', url: '/admin/limits/agent-x', payload: {}, headers: bearer(admin) })).statusCode, 400, 'an empty override is a 400')
  const both = await app.inject({ method: 'POST', url: '/admin/revoke', payload: { user_id: 'a', agent_id: 'b' }, headers: bearer(admin) })
  t.equal(both.statusCode, 400, 'revoke names one user or one agent')
})

t.test('every admin action is logged at info with the caller sub, never the token', async (t) => {
  const logs = logCapture()
  const app = await buildTestApp(t, {}, { logStream: logs.stream })
  const admin = await mint({ sub: 'ops-alice', ...ADMIN })
  const user = await mint({ sub: 'mallory' })
  await app.inject({ method: 'POST', url: '/admin/revoke', payload: { agent_id: 'agent-9' }, headers: bearer(admin) })
  await app.inject({ method: 'PUT', url: '/admin/limits/agent-9', payload: { rest: { refill_rate: 1, capacity: 5 } }, headers: bearer(admin) })
  await app.inject({ method: 'GET', url: '/admin/streams', headers: bearer(user) })
  const actions = logs.lines.map((line) => JSON.parse(line) as { level: number; msg: string; admin?: Record<string, unknown> }).filter((l) => l.admin)
  t.match(actions, [
    { level: 30, msg: 'admin action', admin: { sub: 'ops-alice', action: 'POST /admin/revoke', body: { agent_id: 'agent-9' }, status: 200 } },
    { level: 30, msg: 'admin action', admin: { sub: 'ops-alice', action: 'PUT /admin/limits/agent-9', status: 200 } },
    { level: 30, msg: 'admin action refused', admin: { sub: 'mallory', action: 'GET /admin/streams', status: 403 } }
  ])
  for (const token of [admin, user]) t.notOk(logs.lines.some((line) => line.includes(token) || line.includes(token.split('.')[2])), 'no token in any log line')
})

t.test('revoke: the open streams end with `event: revoked`, older tokens and tickets are 401, a token issued after works', async (t) => {
  const app = await buildTestApp(t)
  const url = await listen(app)
  const admin = await mint({ sub: 'ops', ...ADMIN })
  const old = await mint({ sub: 'rev-user', agent_id: 'rev-agent' }, { issuedAt: nowS() - 5 })
  const bystander = await mint({ sub: 'other-user', agent_id: 'other-agent' }, { issuedAt: nowS() - 5 })
  const ticket = (await app.inject({ method: 'POST', url: '/v1/sse-tickets', headers: bearer(old) })).json().ticket as string
  const stream = await openStream(t, `${url}/events/personalized-rating`, bearer(old))
  const other = await openStream(t, `${url}/events/personalized-rating`, bearer(bystander))
  t.equal(stream.status, 200)

  const res = await app.inject({ method: 'POST', url: '/admin/revoke', payload: { user_id: 'rev-user' }, headers: bearer(admin) })
  t.equal(res.statusCode, 200)
  const revokedAt = res.json().revoked_at as number
  t.match(res.json(), { kind: 'user', id: 'rev-user' })
  await stream.ended
  t.ok(stream.messages.some((m) => m.event === 'revoked'), 'the stream was told why it ends')

  const scores = await app.inject({ url: '/v1/scores?items=a', headers: bearer(old) })
  t.equal(scores.statusCode, 401, 'the old token is refused (after it was verified and cached)')
  t.match(scores.json().message, /revoked/)
  const reconnect = await openStream(t, `${url}/events/personalized-rating`, bearer(old))
  t.equal(reconnect.status, 401, 'a reconnect with the old token is refused')
  const byTicket = await openStream(t, `${url}/events/personalized-rating?ticket=${ticket}`)
  t.equal(byTicket.status, 401, 'a ticket issued for the old token is refused')

  t.equal((await app.inject({ url: '/v1/scores?items=a', headers: bearer(bystander) })).statusCode, 200, 'other users are untouched')
  await app.events.publish({ user_id: 'other-user', item_id: 'i', rating: 1, timestamp: 1 }, 'rest')
  await other.waitFor((messages) => messages.some((m) => m.data !== undefined))

  // iat has whole seconds: a token of the revocation's own second may predate it.
  await waitFor('the second after the revocation', () => Date.now() >= Math.ceil(revokedAt / 1000) * 1000 + 1)
  const fresh = await mint({ sub: 'rev-user', agent_id: 'rev-agent' })
  t.equal((await app.inject({ url: '/v1/scores?items=a', headers: bearer(fresh) })).statusCode, 200, 'a token issued after the revocation works')
  const again = await openStream(t, `${url}/events/personalized-rating`, bearer(fresh))
  t.equal(again.status, 200, 'and opens a stream')
})

t.test('revoke an agent: every user of that agent is refused', async (t) => {
  const app = await buildTestApp(t, {}, { memory: true })
  const admin = await mint({ sub: 'ops', ...ADMIN })
  const tokens = await Promise.all(['u1', 'u2'].map((sub) => mint({ sub, agent_id: 'shared-agent' }, { issuedAt: nowS() - 5 })))
  const elsewhere = await mint({ sub: 'u1', agent_id: 'own-agent' }, { issuedAt: nowS() - 5 })
  await app.inject({ method: 'POST', url: '/admin/revoke', payload: { agent_id: 'shared-agent' }, headers: bearer(admin) })
  for (const token of tokens) t.equal((await app.inject({ url: '/v1/scores?items=a', headers: bearer(token) })).statusCode, 401)
  t.equal((await app.inject({ url: '/v1/scores?items=a', headers: bearer(elsewhere) })).statusCode, 200, 'the same user under another agent is not revoked')
})

t.test('GET /admin/streams: open streams per agent', async (t) => {
  for (const memory of [false, true]) {
    const app = await buildTestApp(t, {}, { memory })
    const url = await listen(app)
    const admin = await mint({ sub: 'ops', ...ADMIN })
    for (const [sub, agent] of [['s1', 'agent-a'], ['s2', 'agent-a'], ['s3', 'agent-b']]) {
      const stream = await openStream(t, `${url}/events/personalized-rating`, bearer(await mint({ sub, agent_id: agent })))
      t.equal(stream.status, 200)
    }
    const res = await app.inject({ url: '/admin/streams', headers: bearer(admin) })
    t.same(res.json(), { total: 3, agents: [{ agent_id: 'agent-a', streams: 2 }, { agent_id: 'agent-b', streams: 1 }] }, memory ? 'memory' : 'redis')
  }
})

t.test('GET /admin/queue and /admin/leader: the forward queue and the ingest lease', async (t) => {
  const app = await buildTestApp(t)
  const admin = await mint({ sub: 'ops', ...ADMIN })
  t.same((await app.inject({ url: '/admin/queue', headers: bearer(admin) })).json(), { depth: 0, partitions: [], dead_letters: 0 }, 'no forwarder without OPENCLAW_URL')
  const leader = (await app.inject({ url: '/admin/leader', headers: bearer(admin) })).json()
  t.equal(leader.self, app.replicaId)
  await waitFor('this replica leads', async () => (await app.inject({ url: '/admin/leader', headers: bearer(admin) })).json().holder === app.replicaId)
})

t.test('ADMIN_PORT: the admin API on its own listener, not on the public one', async (t) => {
  const adminPort = await freePort()
  const app = await buildTestApp(t, { ADMIN_PORT: String(adminPort) })
  const url = await listen(app)
  const admin = bearer(await mint({ sub: 'ops', ...ADMIN }))
  const adminUrl = `http://127.0.0.1:${adminPort}`
  t.equal((await fetch(`${url}/admin/streams`, { headers: admin })).status, 404, 'not found on the public port')
  t.equal((await fetch(`${adminUrl}/admin/streams`, { headers: admin })).status, 200, 'served on ADMIN_PORT')
  t.equal((await fetch(`${adminUrl}/admin/streams`)).status, 401, 'still authenticated there')
  t.equal((await fetch(`${adminUrl}/v1/scores?items=a`, { headers: admin })).status, 404, 'the public API is not on ADMIN_PORT')
  t.equal((await fetch(`${url}/v1/scores?items=a`, { headers: admin })).status, 200, 'the public API is on PORT')
})

t.test('/docs describes the admin API', async (t) => {
  const app = await buildTestApp(t)
  const paths = (await app.inject('/docs/json')).json().paths as Record<string, Record<string, { requestBody?: unknown }>>
  for (const path of ['/admin/revoke', '/admin/streams', '/admin/queue', '/admin/leader', '/admin/dead-letters', '/admin/dead-letters/{id}/retry', '/admin/dead-letters/{id}', '/admin/limits', '/admin/limits/{agent_id}']) {
    t.ok(paths[path], `${path} documented`)
  }
  t.ok(paths['/admin/limits/{agent_id}'].put.requestBody, 'with its body schema')
})
