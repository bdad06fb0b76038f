import t from 'tap'
import { SESSION_COOKIE } from '../../src/auth/session.js'
import { JwtVerifier } from '../../src/auth/verifier.js'
import { BURST_SIZE, type BurstOutcome, type DemoState } from '../../src/demo-controls.js'
import { DEMO_ITEMS, DEMO_USERS } from '../../src/demo-world.js'
import { startDemo } from '../../src/demo.js'
import { buildTestApp, listen } from '../helpers/app.js'

/** The switches and readings of `npm run demo` only: no other gateway has them, DEMO mode included. */
const DEMO_ONLY = [
  ['GET', '/demo/state?user=alice'],
  ['POST', '/demo/burst'],
  ['POST', '/demo/outage'],
  ['POST', '/demo/drop-socket']
] as const

t.test('without demo mode there is no page and no login', async (t) => {
  const app = await buildTestApp(t, {}, { memory: true })
  for (const [method, url] of [
    ['GET', '/'],
    ['GET', '/demo/app.js'],
    ['GET', '/demo/users'],
    ['POST', '/demo/login'],
    ...DEMO_ONLY
  ] as const) {
    const res = await app.inject({ method, url, payload: method === 'POST' ? { user_id: 'alice' } : undefined })
    t.equal(res.statusCode, 404, `${method} ${url}`)
  }
})

t.test('demo mode serves the page and its assets without a token', async (t) => {
  const app = await buildTestApp(t, {}, { memory: true, demo: true })
  const page = await app.inject({ url: '/' })
  t.equal(page.statusCode, 200)
  t.match(page.headers['content-type'], /text\/html/)
  t.match(page.body, /<main id="grid">/)
  t.match(page.body, /\/demo\/app\.js/)

  const script = await app.inject({ url: '/demo/app.js' })
  t.equal(script.statusCode, 200)
  t.match(script.headers['content-type'], /javascript/)
  const style = await app.inject({ url: '/demo/style.css' })
  t.equal(style.statusCode, 200)
  t.match(style.headers['content-type'], /text\/css/)
  t.equal((await app.inject({ url: '/demo/../package.json' })).statusCode, 404)
  t.equal((await app.inject({ url: '/demo/index.html' })).statusCode, 404)

  for (const file of ['chart.js', 'latency.js', 'buckets.js', 'metrics.js']) {
    t.equal((await app.inject({ url: `/demo/${file}` })).statusCode, 200, `/demo/${file}`)
  }

  const users = await app.inject({ url: '/demo/users' })
  t.same(users.json(), { users: DEMO_USERS, items: DEMO_ITEMS })

  // Demo mode alone is not `npm run demo`: no simulators to steer, no switches.
  for (const [method, url] of DEMO_ONLY) {
    const res = await app.inject({ method, url, payload: method === 'POST' ? { user_id: 'alice' } : undefined })
    t.equal(res.statusCode, 404, `${method} ${url}`)
  }
})

t.test('npm run demo: the switches and readings of the page', async (t) => {
  const demo = await startDemo({ port: 0, logLevel: 'silent' })
  t.teardown(() => demo.close())
  const state = async (since?: number) => {
    const res = await fetch(new URL(`/demo/state?user=${demo.user}${since === undefined ? '' : `&since=${since}`}`, demo.url))
    t.equal(res.status, 200)
    return (await res.json()) as DemoState
  }
  const first = await state()
  t.same(first.sent, [], 'a first call only sets the cursor')
  t.same(first.policies.rest, { capacity: 40, refill_rate: 20 }, 'the seed rest policy: 40 tokens, 20/s')
  t.type(first.queueDepth, 'number')
  t.type(first.feed.connected, 'boolean')

  const rating = { user_id: demo.user, item_id: DEMO_ITEMS[3], timestamp: Math.floor(Date.now() / 1000) + 7200, rating: 2.5 }
  demo.moltbook.send(rating)
  const next = await state(first.cursor)
  const sent = next.sent.find(([item, timestamp]) => item === rating.item_id && timestamp === rating.timestamp)
  t.ok(sent, 'the feed rating sent since the cursor is listed')
  t.ok(next.sent.every(([item]) => DEMO_ITEMS.includes(item)), 'only the user\'s ratings: items of the demo')
  t.ok(sent && sent[2] <= next.now && sent[2] > 0, 'with the time the feed sent it')
  t.type(next.counters.forwardAttempts, 'object')

  const burst = await fetch(new URL('/demo/burst', demo.url), {
    method: 'POST',
    headers: { authorization: `Bearer ${demo.token}`, 'content-type': 'application/json' },
    body: JSON.stringify({ user_id: demo.user })
  })
  t.equal(burst.status, 200)
  const outcome = (await burst.json()) as BurstOutcome
  t.equal(outcome.admitted + outcome.refused, BURST_SIZE)
  // 40 tokens, plus what refilled (20/s) while the 50 went through: a slow machine admits more.
  t.ok(outcome.admitted >= 40, `${outcome.admitted} admitted, ${outcome.refused} refused`)
  t.equal(outcome.retryAfter.length, outcome.refused)
  t.ok(outcome.retryAfter.every((s) => s >= 1), 'each refusal has a Retry-After')

  const unauthenticated = await fetch(new URL('/demo/burst', demo.url), {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ user_id: demo.user })
  })
  t.same(((await unauthenticated.json()) as BurstOutcome).admitted, 0, 'without the page\'s token nothing is admitted')

  const outage = await fetch(new URL('/demo/outage', demo.url), { method: 'POST' })
  t.same(((await outage.json()) as { down: boolean }).down, true)
  t.equal(demo.openclaw.mode().down, true, 'the simulated OpenClaw is down')
  t.equal((await state()).openclaw.down, true)

  const drop = await fetch(new URL('/demo/drop-socket', demo.url), { method: 'POST' })
  t.equal(drop.status, 200)
})

t.test('demo login sets the stream cookie of POST /v1/sse-session (HttpOnly, Lax, Path=/events) that opens the stream', async (t) => {
  const app = await buildTestApp(t, {}, { memory: true, demo: true })
  const res = await app.inject({ method: 'POST', url: '/demo/login', payload: { user_id: 'bob' } })
  t.equal(res.statusCode, 200)
  const body = res.json<{ user_id: string; token: string; expires_in: number }>()
  t.equal(body.user_id, 'bob')
  t.ok(body.expires_in > 0)

  const cookie = [res.headers['set-cookie']].flat().find((c) => c?.startsWith(`${SESSION_COOKIE}=`))
  t.ok(cookie, 'session cookie set')
  t.match(cookie, /HttpOnly/i)
  t.match(cookie, /SameSite=Lax/i)
  t.match(cookie, /Path=\/events(;|$)/)
  t.match(cookie, /Max-Age=900(;|$)/, 'expires with the login token')
  t.equal(cookie?.split(';')[0], `${SESSION_COOKIE}=${body.token}`)

  const principal = await new JwtVerifier(app.config, app.log).verify(body.token)
  t.equal(principal.sub, 'bob')
  t.equal(principal.agentId, 'bob')

  // The cookie alone authenticates the SSE route (what the page's EventSource relies on).
  const base = await listen(app)
  const controller = new AbortController()
  t.teardown(() => controller.abort())
  const stream = await fetch(`${base}/events/personalized-rating`, {
    headers: { cookie: `${SESSION_COOKIE}=${body.token}` },
    signal: controller.signal
  })
  t.equal(stream.status, 200)
  t.match(stream.headers.get('content-type'), /text\/event-stream/)
  controller.abort()
})

t.test('demo login refuses a body that breaks the schema, naming the field', async (t) => {
  const app = await buildTestApp(t, {}, { memory: true, demo: true })
  const missing = await app.inject({ method: 'POST', url: '/demo/login', payload: {} })
  t.equal(missing.statusCode, 400)
  t.match(missing.json().message, /user_id/)
  const extra = await app.inject({ method: 'POST', url: '/demo/login', payload: { user_id: 'a', admin: true } })
  t.equal(extra.statusCode, 400)
  t.match(extra.json().message, /admin/)
  const long = await app.inject({ method: 'POST', url: '/demo/login', payload: { user_id: 'x'.repeat(129) } })
  t.equal(long.statusCode, 400)
  t.match(long.json().message, /user_id/)
})
