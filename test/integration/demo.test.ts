import t from 'tap'
import { SESSION_COOKIE } from '../../src/auth/session.js'
import { JwtVerifier } from '../../src/auth/verifier.js'
import { DEMO_ITEMS, DEMO_USERS } from '../../src/demo-world.js'
import { buildTestApp, listen } from '../helpers/app.js'

t.test('without demo mode there is no page and no login', async (t) => {
  const app = await buildTestApp(t, {}, { memory: true })
  for (const [method, url] of [
    ['GET', '/'],
    ['GET', '/demo/app.js'],
    ['GET', '/demo/users'],
    ['POST', '/demo/login']
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

  const users = await app.inject({ url: '/demo/users' })
  t.same(users.json(), { users: DEMO_USERS, items: DEMO_ITEMS })
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
