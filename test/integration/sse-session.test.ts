/**
 * The stream cookie session: POST /v1/sse-session (Bearer) sets the cookie a plain EventSource
 * authenticates with, DELETE clears it; the demo login sets the very same cookie.
 */
import { SignJWT } from 'jose'
import t from 'tap'
import { SESSION_COOKIE } from '../../src/auth/session.js'
import { buildTestApp, listen, TEST_SECRET } from '../helpers/app.js'
import { openStream, score } from '../helpers/sse.js'
import { bearer, mint } from '../helpers/tokens.js'

const STREAM = '/events/personalized-rating'

/** The Set-Cookie line of the session cookie, parsed into its attributes (lower-case names). */
function sessionCookie(setCookie: string | string[] | undefined) {
  const line = [setCookie ?? []].flat().find((c) => c.startsWith(`${SESSION_COOKIE}=`))
  if (!line) return undefined
  const [pair, ...attributes] = line.split(/;\s*/)
  const attrs = Object.fromEntries(attributes.map((a) => [a.split('=')[0].toLowerCase(), a.split('=')[1] ?? true]))
  return { value: pair.slice(SESSION_COOKIE.length + 1), attrs }
}

t.test('POST sets the stream cookie: HttpOnly, SameSite=Lax, Path=/events, Secure, Max-Age = the token life left', async (t) => {
  const app = await buildTestApp(t)
  const token = await mint({ sub: 'ses-a', agent_id: 'ses-ag' }, { expiresIn: 900 })
  const res = await app.inject({ method: 'POST', url: '/v1/sse-session', headers: bearer(token) })
  t.equal(res.statusCode, 200)
  t.equal(res.headers['cache-control'], 'no-store')
  const cookie = sessionCookie(res.headers['set-cookie'])
  t.ok(cookie, 'the cookie is set')
  t.equal(cookie?.value, token, 'it holds the caller’s token')
  t.match(cookie?.attrs, { httponly: true, samesite: 'Lax', path: '/events', secure: true })
  const maxAge = Number(cookie?.attrs['max-age'])
  t.ok(maxAge > 890 && maxAge <= 900, `Max-Age ${maxAge} s: the token's remaining life`)
  t.same(res.json(), { expires_in: maxAge }, 'the page learns when to renew it')
  t.ok(res.headers.ratelimit, 'charged to the read bucket like a ticket')

  // The cookie alone opens the stream, and the stream is the caller's.
  const base = await listen(app)
  const stream = await openStream(t, `${base}${STREAM}`, { cookie: `${SESSION_COOKIE}=${cookie?.value}` })
  t.equal(stream.status, 200)
  await stream.waitFor((m) => m.some((message) => message.retry !== undefined))
  await app.events.publish(score('ses-b', 'x', 1), 'rest')
  await app.events.publish(score('ses-a', 'y', 2), 'rest')
  await stream.waitFor(() => stream.events().length === 1)
  t.match(stream.events()[0].data, { user_id: 'ses-a', item_id: 'y' })
  stream.close()
})

t.test('SSE_COOKIE_SECURE=false drops Secure (plain-HTTP development); DELETE clears the cookie', async (t) => {
  const app = await buildTestApp(t, { SSE_COOKIE_SECURE: 'false' }, { memory: true })
  const headers = bearer(await mint({ sub: 'ses-c', agent_id: 'ses-ag2' }))
  const set = sessionCookie((await app.inject({ method: 'POST', url: '/v1/sse-session', headers })).headers['set-cookie'])
  t.notOk(set?.attrs.secure, 'no Secure')
  const cleared = await app.inject({ method: 'DELETE', url: '/v1/sse-session', headers })
  t.equal(cleared.statusCode, 204)
  const cookie = sessionCookie(cleared.headers['set-cookie'])
  t.equal(cookie?.value, '', 'emptied')
  t.match(cookie?.attrs, { path: '/events', httponly: true, samesite: 'Lax' }, 'the same cookie (same path), so the browser drops it')
  t.ok(cookie?.attrs.expires && Date.parse(String(cookie.attrs.expires)) <= Date.now(), 'expired')
})

t.test('no cookie without a valid Bearer token; a cookie is no credential for the session routes', async (t) => {
  const app = await buildTestApp(t, {}, { memory: true })
  const token = await mint({ sub: 'ses-d', agent_id: 'ses-ag3' })
  const cases = [
    { name: 'no token', headers: {} },
    { name: 'expired token', headers: bearer(await mint({ sub: 'ses-d' }, { expiresIn: -600 })) },
    { name: 'cookie instead of the header', headers: { cookie: `${SESSION_COOKIE}=${token}` } }
  ]
  for (const { name, headers } of cases) {
    for (const method of ['POST', 'DELETE'] as const) {
      const res = await app.inject({ method, url: '/v1/sse-session', headers })
      t.equal(res.statusCode, 401, `${method} ${name}: 401`)
      t.notOk(sessionCookie(res.headers['set-cookie']), `${method} ${name}: cookie untouched`)
    }
  }
})

t.test('a token without exp (allowed with JWT_REQUIRE_EXP=false): the cookie lasts the browser session', async (t) => {
  const app = await buildTestApp(t, { JWT_REQUIRE_EXP: 'false' }, { memory: true })
  const token = await new SignJWT({ sub: 'ses-e', agent_id: 'ses-ag4' }).setProtectedHeader({ alg: 'HS256' }).sign(new TextEncoder().encode(TEST_SECRET))
  const res = await app.inject({ method: 'POST', url: '/v1/sse-session', headers: bearer(token) })
  t.equal(res.statusCode, 200)
  t.same(res.json(), {}, 'no expires_in')
  const cookie = sessionCookie(res.headers['set-cookie'])
  t.equal(cookie?.value, token)
  t.notOk(cookie?.attrs['max-age'] ?? cookie?.attrs.expires, 'no Max-Age, no Expires')
})
