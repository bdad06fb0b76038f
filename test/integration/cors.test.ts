/**
 * CORS for pages on other origins (CORS_ORIGINS): preflights, credentials, exposed headers, the
 * refusals a page must be able to read (401, 429), the SSE stream, and origins not on the list.
 * The browser side of the same (a real Chromium page on another origin) is test/browser/cross-origin.test.ts.
 */
import t from 'tap'
import { corsOrigins, loadConfig } from '../../src/config.js'
import { buildTestApp, listen, TEST_SECRET } from '../helpers/app.js'
import { bucketsFile, openStream } from '../helpers/sse.js'
import { bearer, mint } from '../helpers/tokens.js'

const APP = 'https://app.example.com'
const OTHER = 'https://evil.example.net'
const STREAM = '/events/personalized-rating'

const preflight = (origin: string, url = '/v1/sse-tickets', method = 'POST') => ({
  method: 'OPTIONS' as const,
  url,
  headers: { origin, 'access-control-request-method': method, 'access-control-request-headers': 'authorization' }
})

t.test('a listed origin: preflight answered before auth and the IP limit, cached, credentials allowed', async (t) => {
  const app = await buildTestApp(t, { CORS_ORIGINS: `${APP},http://localhost:5173`, IP_RATE_LIMIT_MAX: '1' }, { memory: true })
  for (const url of ['/v1/sse-tickets', '/v1/sse-session', '/v1/rating', STREAM]) {
    const res = await app.inject(preflight(APP, url))
    t.equal(res.statusCode, 204, `${url}: preflight answered without a token`)
    t.equal(res.headers['access-control-allow-origin'], APP, 'the origin echoed, never *')
    t.equal(res.headers['access-control-allow-credentials'], 'true')
    t.match(res.headers['access-control-allow-headers'], /Authorization/)
    t.match(res.headers['access-control-allow-headers'], /Last-Event-ID/, 'an EventSource reconnect may send Last-Event-ID')
    t.match(res.headers['access-control-allow-methods'], /DELETE/, 'DELETE /v1/sse-session')
    t.equal(res.headers['access-control-max-age'], '7200', 'the preflight is cached')
    t.match(res.headers.vary, /Origin/)
  }
  // Preflights do not count against IP_RATE_LIMIT_MAX=1: the one request left is this one.
  const refused = await app.inject({ method: 'POST', url: '/v1/sse-tickets', headers: { origin: APP } })
  t.equal(refused.statusCode, 401)
  t.equal(refused.headers['access-control-allow-origin'], APP, 'a 401 is readable by the page')
  const limited = await app.inject({ method: 'POST', url: '/v1/sse-tickets', headers: { origin: APP } })
  t.equal(limited.statusCode, 429, 'the per-IP limit')
  t.equal(limited.headers['access-control-allow-origin'], APP, 'a 429 is readable by the page')
  t.match(limited.headers['access-control-expose-headers'], /Retry-After/, 'and so is its Retry-After')
})

t.test('answers expose RateLimit, RateLimit-Policy, Retry-After and ETag to the listed origin', async (t) => {
  const BUCKETS_FILE = await bucketsFile(t, { capacity: 10, refill_rate: 10 })
  const app = await buildTestApp(t, { CORS_ORIGINS: APP, BUCKETS_FILE })
  const headers = { origin: APP, ...bearer(await mint({ sub: 'cors-u', agent_id: 'cors-a' })) }
  const scores = await app.inject({ url: '/v1/scores?items=a', headers })
  t.equal(scores.statusCode, 200)
  t.equal(scores.headers['access-control-allow-origin'], APP)
  const exposed = String(scores.headers['access-control-expose-headers']).split(/,\s*/)
  for (const name of ['RateLimit', 'RateLimit-Policy', 'Retry-After', 'ETag']) t.ok(exposed.includes(name), `${name} exposed`)
  t.ok(scores.headers.etag && scores.headers.ratelimit, 'and present')
  t.match(scores.headers.vary, /Origin/, 'a cached answer is never reused for another origin')
  t.match(scores.headers.vary, /Authorization/)
})

t.test('an origin not on the list gets no Access-Control-Allow-Origin; no list: none for anyone', async (t) => {
  const listed = await buildTestApp(t, { CORS_ORIGINS: APP }, { memory: true })
  const open = await buildTestApp(t, {}, { memory: true })
  const token = await mint({ sub: 'cors-v', agent_id: 'cors-b' })
  for (const [app, origin, name] of [
    [listed, OTHER, 'an origin not listed'],
    [listed, `${APP}.evil.net`, 'a listed origin as a prefix of another'],
    [open, APP, 'CORS_ORIGINS unset']
  ] as const) {
    const pre = await app.inject(preflight(origin))
    t.notOk(pre.headers['access-control-allow-origin'], `${name}: no preflight approval`)
    const real = await app.inject({ method: 'POST', url: '/v1/sse-tickets', headers: { origin, ...bearer(token) } })
    t.equal(real.statusCode, 201, `${name}: the request itself is served (a server-to-server caller has no Origin rules)`)
    t.notOk(real.headers['access-control-allow-origin'], `${name}: but a browser page may not read it`)
  }
})

t.test('the SSE stream carries the CORS headers, though the hub writes its head itself', async (t) => {
  const app = await buildTestApp(t, { CORS_ORIGINS: APP })
  const base = await listen(app)
  const token = await mint({ sub: 'cors-w', agent_id: 'cors-c' })
  const stream = await openStream(t, `${base}${STREAM}`, { origin: APP, ...bearer(token) })
  t.equal(stream.status, 200)
  t.equal(stream.headers['access-control-allow-origin'], APP)
  t.equal(stream.headers['access-control-allow-credentials'], 'true')
  t.match(stream.headers['content-type'], /text\/event-stream/)
  const other = await openStream(t, `${base}${STREAM}`, { origin: OTHER, ...bearer(token) })
  t.notOk(other.headers['access-control-allow-origin'], 'an unlisted origin: a browser drops the stream')
  stream.close()
  other.close()
})

t.test('CORS_ORIGINS must list origins: `*`, paths and bad schemes are refused, naming the variable', async (t) => {
  t.same(corsOrigins('https://a.example, http://localhost:8080'), ['https://a.example', 'http://localhost:8080'])
  const bad: Array<[string, RegExp]> = [
    ['*', /CORS_ORIGINS.*`\*` is not allowed with credentials/],
    ['https://a.example/', /CORS_ORIGINS.*"https:\/\/a.example\/" is not an origin/],
    ['https://a.example/app', /CORS_ORIGINS.*not an origin/],
    ['a.example', /CORS_ORIGINS.*not an origin/],
    ['ftp://a.example', /CORS_ORIGINS.*not an origin/],
    ['https://a.example,,https://b.example', /CORS_ORIGINS/]
  ]
  for (const [value, message] of bad) {
    t.throws(() => loadConfig({ JWT_SECRET: TEST_SECRET, CORS_ORIGINS: value }), { name: 'ConfigError', message }, value)
  }
})
